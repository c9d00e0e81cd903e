/**
 * flowgpu: normalizing flows and disentanglement models on any GPU through WebGPU. Every op is
 * a hand-written WGSL compute shader (see `shaders/`) with its backward beside it.
 *
 * ```ts
 * import { backward, conv2d, initGpu, mean, ParamStore, square, Tensor } from "./mod.ts";
 * await initGpu();
 * const store = new ParamStore(1);
 * const w = store.scope("net").param("w", [8, 3, 3, 3], (n, rng) => rng.normalArray(n, 0.1));
 * const x = Tensor.from(new Float32Array(2 * 3 * 16 * 16).fill(1), [2, 3, 16, 16]);
 * const loss = mean(square(conv2d(x, w, { padding: 1 })));
 * backward(loss);
 * console.log(await loss.item(), (await w.grad!.read())[0]);
 * ```
 *
 * @module
 */

// GPU runtime
export { device, deviceInfo, flush, initGpu, poolStats, sync } from "./src/gpu/mod.ts";
export type { DeviceInfo } from "./src/gpu/device.ts";
export type { Bindable, Dispatch, Param } from "./src/gpu/encoder.ts";
export type { Constants } from "./src/gpu/kernels.ts";
export type { Access } from "./src/gpu/kernel_check.ts";
export { type Bindings, type Kernel, kernel, type Launch, type Slot } from "./src/gpu/kernel.ts";

// Tensors and autodiff
export { type Shape, Tensor } from "./src/ops/tensor.ts";
export {
  accumulate,
  backward,
  type BackwardOptions,
  clearTape,
  detach,
  noGrad,
  record,
} from "./src/ops/tape.ts";

// Ops
export {
  add,
  div,
  exp,
  log,
  mul,
  neg,
  relu,
  scale,
  sigmoid,
  softplus,
  sqrt,
  square,
  sub,
  tanh,
} from "./src/ops/elementwise.ts";
export {
  mean,
  meanBatch,
  meanPerChannel,
  sum,
  sumBatch,
  sumPerChannel,
  sumPerSample,
} from "./src/ops/reduce.ts";
export { linear, matmul } from "./src/ops/matmul.ts";
export { conv2d, type Conv2dOptions, type Padding } from "./src/ops/conv.ts";
export {
  convTranspose2d,
  type ConvTranspose2dOptions,
  convTranspose2dShape,
} from "./src/ops/conv_transpose.ts";
export {
  spectralNorm,
  type SpectralNormOptions,
  weightNorm,
  type WeightNormOptions,
} from "./src/ops/weight_norm.ts";
export { avgPool2d, type AvgPool2dOptions } from "./src/ops/pool.ts";
export {
  concatChannels,
  evenOddChannels,
  reshape,
  sliceChannels,
  splitChannels,
} from "./src/ops/shape.ts";
export { crossEntropy, gaussianLogProb, logSoftmax, nll } from "./src/ops/loss.ts";
export { actnorm, actnormInit, actnormInverse, actnormLogdet } from "./src/ops/actnorm.ts";
export { affineCoupling, affineCouplingInverse } from "./src/ops/coupling.ts";
export { squeeze, unsqueeze } from "./src/ops/squeeze.ts";
export { inverseLogdet } from "./src/ops/linalg.ts";
export { Adam, type AdamOptions, type Group as AdamGroup } from "./src/ops/adam.ts";

// Layers and parameters
export {
  constant,
  type Flag,
  Group,
  type Init,
  normal,
  type ParamSlot,
  ParamStore,
  Scope,
  uniform,
  zeros,
} from "./src/nn/store.ts";
export { ActNorm, Conv2d, fanIn, Linear, ZeroConv } from "./src/nn/layers.ts";
export { Rng } from "./src/util/rng.ts";

// Models
export {
  ActNorm as ActNormFlow,
  addLogdet,
  Coupling,
  CouplingNet,
  type FlowLayer,
  FlowStep,
  InvConv1x1,
  type InverseOptions,
  SplitPrior,
} from "./src/models/flow.ts";
export { defaultGlowConfig, Glow, type GlowConfig, type GlowLevel } from "./src/models/glow.ts";
export { Autoencoder, type AutoencoderConfig } from "./src/models/ae.ts";

// Training
export { loadMnist, type Mnist } from "./src/data/mnist.ts";
export type {
  Config,
  Evaluation,
  Model,
  OptimizerSpec,
  Task,
  Terms,
  Update,
} from "./src/train/task.ts";
export { defineTask } from "./src/train/task.ts";
export { type AnyConfig, Session, train } from "./src/train/trainer.ts";
export { GpuMetrics, type Summary } from "./src/train/metrics.ts";
export type { RunState } from "./src/train/state.ts";
export type {
  Flag as FlagSpec,
  FlagTable,
  Value as FlagValue,
  Values,
  Widen,
} from "./src/train/flags.ts";
export { type TrainerFlags, trainerFlags } from "./src/train/trainer_flags.ts";
export { tasks } from "./src/train/registry.ts";

// Ops and layers for the FUNS encoder/decoder and the VAE models
/** Elementwise leaky ReLU: x for x > 0, slope * x otherwise (default slope 0.2). */
export { leakyRelu } from "./src/ops/elementwise.ts";
/** Nearest-neighbour upsampling (optionally cropped), tiling over H x W, per-sample shifts. */
export { tile2d, translate2d, upsample2x, type Upsample2xOptions } from "./src/ops/resample.ts";
/** Batch normalisation per channel, training (batch statistics) or eval (running statistics). */
export { batchNorm, type BatchNormOptions } from "./src/ops/norm.ts";
/** Batch normalisation layer: trainable gamma, beta and checkpointed running statistics. */
export { BatchNorm } from "./src/nn/layers.ts";
export {
  Funs,
  type FunsConfig,
  type FunsLosses,
  type FunsPrior,
  ResBlock,
  SqueezeModule,
} from "./src/models/funs.ts";

// The VAE toolbox (vae-disentangle.md §7): activations, classification and GAN losses,
// divergences, indexing, GPU random numbers.
export {
  abs,
  clamp,
  erf,
  pow,
  prelu,
  wnPrelu,
  type WnPreluMoments,
  wnPreluMoments,
} from "./src/ops/activation.ts";
export {
  type LabelLossOptions,
  type Labels,
  logsumexp,
  nllLoss,
  nluClassWeights,
  nluLoss,
  softCrossEntropy,
  softmax,
} from "./src/ops/classify.ts";
export { bceWithLogits, type GanTarget, hingeLoss, lsganLoss } from "./src/ops/gan.ts";
export {
  type ErrorReduction,
  gaussianNll,
  type GaussianNllOptions,
  gmLogits,
  klDiagGaussians,
  type KlReduction,
  klStdNormal,
  klStdNormalSigma,
  mse,
  squaredError,
  sse,
} from "./src/ops/divergence.ts";
export { embedding, gatherBatch, type Index, projectionTerm, where } from "./src/ops/gather.ts";
export { GpuRng, reparameterize } from "./src/ops/random.ts";

// Labelled substitute data sets (vae-disentangle.md §4)
export {
  type Factor,
  factorCounts,
  LABELLED_SETS,
  type LabelledBatch,
  type LabelledOptions,
  type LabelledPixels,
  type LabelledSet,
  labelledSet,
  splitBatch,
} from "./src/data/labelled.ts";
export { estimateColour } from "./src/data/cmnist.ts";

// Disentanglement and image metrics (vae-disentangle.md §5)
export {
  dci,
  dciFromImportance,
  equalMassBuckets,
  logisticProbe,
  mig,
  MIG_NOISE,
  migGap,
  mutualInformation,
  ridgeProbe,
  sap,
} from "./src/eval/disentangle.ts";
export type {
  MigEncoder,
  MigFactor,
  MigOptions,
  MigResult,
  PosteriorCode,
} from "./src/eval/disentangle.ts";
export { migGpu } from "./src/eval/disentangle_gpu.ts";
export { intraClassDiversity, msSsim, ssim, ssimVariant } from "./src/eval/ssim.ts";
export { codeDrift, inceptionScore, MseMeter, reconMse, retargetError } from "./src/eval/recon.ts";

// The plain VAE / β-VAE baseline (`--model vae`)
export { ConvTranspose2d } from "./src/nn/layers.ts";
export {
  type DuNetSizes,
  duNetSizes,
  Vae,
  type VaeConfig,
  type VaeLoss,
} from "./src/models/vae.ts";
export * from "./src/data/synthlips.ts";

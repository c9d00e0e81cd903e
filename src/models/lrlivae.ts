// Zheng & Sun (CVPR 2019), the label relevant/irrelevant VAE (vae-disentangle.md §3), and the
// cVAE-GAN baseline it is compared with (§3.5).
//
// Lr-LiVAE: Enc_s maps x to a point ẑ_s (the label-relevant code), whose prior is a Gaussian
// mixture with one learned diagonal Gaussian N(μ_c, σ²_c) per class; Enc_u maps x to
// N(μ, e^logvar) (the label-irrelevant code z_u, prior N(0, I)); Dec(ẑ_s, z_u) reconstructs x.
// A latent classifier q_ω(c | z_u) learns the label from z_u while Enc_u is pushed towards its
// uniform output; a projection discriminator D(x, y) (spectral norm, LeakyReLU 0.1) sees real
// images, reconstructions and prior samples Dec(z'_s ~ N(μ_y, σ²_y), z'_u ~ N(0, I)).
// Every group trains on its own loss (Algorithm 1, §3.2):
//   GM stage (n_gm times, own batches)   Enc_s, {μ_c, σ²_c}  on L_cls + λ_lkd L_lkd
//   end-to-end (one forward pass)        Enc_s  on L_rec + λ_lkd L_lkd
//                                        Enc_u  on L_E^adv + λ_kl L_kl + λ_rec L_rec
//                                        q_ω    on L_C^adv
//                                        Dec    on L_rec + L_GD
//                                        D      on L_D
// Reductions as §8 Z2: L_rec = ½ Σ_pix (x − x')² and L_kl = Σ_d KL per sample, batch means (a
// pixel weight keeps the paper's balance on a shrunk image, `pixelWeight`); the
// GM terms through `gmLogits` (L_lkd = −logit_y, constants dropped), variances floored at 1e-3
// (Z4); the pixel GAN is the paper's non-saturating log loss (Z3).
//
// cVAE-GAN: one encoder of x with the one-hot label tiled as extra channels, N(μ, e^logvar) of
// d_s + d_u dims, Dec(z ⊕ one-hot(y)), the same D: encoder on L_rec + λ_kl L_kl, decoder on
// L_rec + L_GD, D on L_D (Bao et al.'s extra classifier and feature matching are left out, §3.5).
//
// Networks (§3.4, 64-px variant [R], for any side 4·2^L): trunk = L x (conv 4x4 s2 p1, BN, ReLU)
// with channels base·2^i (capped at 8·base), FC F, BN, ReLU; decoder = FC to the top map, BN,
// ReLU, then L transposed convolutions 4x4 s2 p1 (BN, ReLU between, tanh at the end); D = the
// trunk with spectral norm and LeakyReLU(0.1) instead of BN and ReLU. BN follows §3.4: batch
// statistics in training, per call (the decoder's reconstructions and prior samples apart),
// running statistics (decay 0.9) in evaluation; D has none, and scores its three batches at once.
import { BatchNorm, ConvTranspose2d, fanIn, Linear } from "../nn/layers.ts";
import { normal, type Scope, uniform, zeros } from "../nn/store.ts";
import { clamp } from "../ops/activation.ts";
import { nllLoss, softCrossEntropy } from "../ops/classify.ts";
import { conv2d } from "../ops/conv.ts";
import { gmLogits, klStdNormal, squaredError } from "../ops/divergence.ts";
import { add, leakyRelu, mul, relu, scale, tanh } from "../ops/elementwise.ts";
import { bceWithLogits } from "../ops/gan.ts";
import { embedding, projectionTerm } from "../ops/gather.ts";
import { linear } from "../ops/matmul.ts";
import { GpuRng, reparameterize } from "../ops/random.ts";
import { mean, sum } from "../ops/reduce.ts";
import { tile2d } from "../ops/resample.ts";
import { concatChannels, reshape, splitChannels } from "../ops/shape.ts";
import { detach } from "../ops/tape.ts";
import { fmtShape, Tensor } from "../ops/tensor.ts";
import { spectralNorm } from "../ops/weight_norm.ts";

/** The model and its baseline. */
export const LRLIVAE_VARIANTS = ["lrlivae", "cvaegan"] as const;
export type LrLiVaeVariant = typeof LRLIVAE_VARIANTS[number];

/** Shape and objective of an `LrLiVae`. */
export interface LrLiVaeConfig {
  /** "lrlivae" (default) or the "cvaegan" baseline. */
  variant?: LrLiVaeVariant;
  /** Image channels. */
  channels: number;
  /** Image side, 4·2^L (L >= 1 stride-2 levels down to 4 x 4). */
  size: number;
  /** Classes of the label. */
  classes: number;
  /** Dims of the label-relevant code z_s (cVAE-GAN: its code has zs + zu dims). */
  zs: number;
  /** Dims of the label-irrelevant code z_u. */
  zu: number;
  /** Channels of the first level (doubling per level, at most 8·base; default 64, §3.4). */
  base?: number;
  /** Width F of the fully connected layers (default 1024). */
  fc?: number;
  /** Hidden width of the latent classifier q_ω (default 256). */
  advHidden?: number;
  /** λ_lkd (default 0.1). */
  lambdaLkd?: number;
  /** λ_kl (default 10 / N_pixel). */
  lambdaKl?: number;
  /** λ_rec of Enc_u's loss (default 1 / d_u). */
  lambdaRec?: number;
  /** Train with the pixel discriminator (default true); without it Dec trains on L_rec only. */
  gan?: boolean;
  /** Floor of the mixture variances σ²_c (default 1e-3, §8 Z4). */
  varFloor?: number;
  /**
   * Weight w of each pixel in L_rec = (w/2) Σ_pix (x − x')², and N_pixel of λ_kl counts w per
   * pixel (default 1). A set shrunk from side S0 to S takes w = (S0/S)², so every loss weighs an
   * image region as at the paper's side.
   */
  pixelWeight?: number;
}

/** One loss and the parameter group it trains (the optimizer of that group steps on it). */
export interface GroupLoss {
  group: string;
  loss: Tensor;
}

/** The losses of one end-to-end step, in Algorithm 1's update order, and their terms. */
export interface StepLosses {
  /**
   * Per-group losses of one forward pass. Each group's update may pass backward only through
   * groups later in the list (their weights are still those of the forward), which this order
   * guarantees.
   */
  updates: GroupLoss[];
  /** Scalar terms for logging ([1] tensors). */
  terms: Record<string, Tensor>;
  /** The reconstructions x'_f. */
  xf: Tensor;
}

/** Channels per level for `levels` levels of `base` channels doubling (capped at 8·base). */
export function levelChannels(levels: number, base: number): number[] {
  return Array.from({ length: levels }, (_, i) => base * 2 ** Math.min(i, 3));
}

/** Stride-2 levels from side `size` down to 4; throws unless size = 4·2^L with L >= 1. */
export function levelsOf(size: number): number {
  const l = Math.log2(size / 4);
  if (!(Number.isInteger(l) && l >= 1)) {
    throw new Error(`flowgpu: lrlivae: image size ${size} is not 4·2^L (8, 16, 32, 64, ...)`);
  }
  return l;
}

/** He initialisation for ReLU, N(0, 2 / fan_in). */
const he = (fan: number) => fanIn(fan, Math.SQRT2);

/** conv 4x4 s2 p1 without bias (BN follows), BN, ReLU per level; then FC F, BN, ReLU. */
class Trunk {
  readonly convs: Tensor[] = [];
  readonly bns: BatchNorm[] = [];
  readonly fc: Linear;
  readonly fcBn: BatchNorm;

  constructor(s: Scope, cin: number, readonly chans: number[], fc: number) {
    chans.forEach((c, i) => {
      const ci = i === 0 ? cin : chans[i - 1];
      this.convs.push(s.child(`conv${i}`).param("weight", [c, ci, 4, 4], he(ci * 16)));
      this.bns.push(new BatchNorm(s.child(`bn${i}`), c, { momentum: 0.9 }));
    });
    const flat = chans[chans.length - 1] * 16;
    this.fc = new Linear(s.child("fc"), flat, fc, { bias: false, init: he(flat) });
    this.fcBn = new BatchNorm(s.child("fc_bn"), fc, { momentum: 0.9 });
  }

  apply(x: Tensor): Tensor {
    let h = x;
    this.convs.forEach((w, i) => {
      h = relu(this.bns[i].apply(conv2d(h, w, { stride: 2, padding: 1 })));
    });
    return relu(this.fcBn.apply(this.fc.apply(reshape(h, [x.shape[0], -1]))));
  }

  get norms(): BatchNorm[] {
    return [...this.bns, this.fcBn];
  }
}

/** Code -> image: FC to [c_top, 4, 4], BN, ReLU, transposed convolutions 4x4 s2 p1, tanh. */
class Decoder {
  readonly fc: Linear;
  readonly fcBn: BatchNorm;
  readonly convs: ConvTranspose2d[] = [];
  readonly bns: BatchNorm[] = [];

  constructor(s: Scope, readonly inp: number, readonly chans: number[], cout: number) {
    const top = chans[chans.length - 1];
    this.fc = new Linear(s.child("fc"), inp, top * 16, { bias: false, init: he(inp) });
    this.fcBn = new BatchNorm(s.child("fc_bn"), top, { momentum: 0.9 });
    for (let i = chans.length - 1; i >= 0; i--) {
      const co = i === 0 ? cout : chans[i - 1];
      const last = i === 0;
      this.convs.push(
        new ConvTranspose2d(s.child(`convt${i}`), chans[i], co, 4, {
          stride: 2,
          padding: 1,
          bias: last,
          // Each output pixel sums c_i · 4 taps of a stride-2 4x4 kernel.
          init: last ? fanIn(chans[i] * 4) : he(chans[i] * 4),
        }),
      );
      if (!last) this.bns.push(new BatchNorm(s.child(`bn${i}`), co, { momentum: 0.9 }));
    }
  }

  apply(z: Tensor): Tensor {
    if (z.shape.length !== 2 || z.shape[1] !== this.inp) {
      throw new Error(
        `flowgpu: lrlivae: decoder input ${fmtShape(z.shape)} is not [N, ${this.inp}]`,
      );
    }
    const top = this.chans[this.chans.length - 1];
    let h = reshape(this.fc.apply(z), [z.shape[0], top, 4, 4]);
    h = relu(this.fcBn.apply(h));
    this.convs.forEach((c, j) => {
      h = c.apply(h);
      if (j < this.bns.length) h = relu(this.bns[j].apply(h));
    });
    return tanh(h);
  }

  get norms(): BatchNorm[] {
    return [this.fcBn, ...this.bns];
  }
}

/** A weight with spectral norm: the raw parameter and its power-iteration vector u. */
interface SnWeight {
  w: Tensor;
  u: Tensor;
  b?: Tensor;
}

function snWeight(s: Scope, shape: number[], init: ReturnType<typeof fanIn>, bias: boolean) {
  const w = s.param("weight", shape, init);
  // u is a unit-scale random start (normalised by the first iteration), saved, never trained.
  const u = s.fixed("sn_u", [shape[0]], normal(1));
  return { w, u, b: bias ? s.param("bias", [shape[0]], zeros) : undefined } as SnWeight;
}

/** The spectrally normalised weights of one D step (one power iteration per step). */
export interface DiscWeights {
  convs: Tensor[];
  fc: Tensor;
  out: Tensor;
  embed: Tensor;
}

/**
 * Projection discriminator D(x, y) (Miyato & Koyama 2018): SN conv 4x4 s2 p1 + LeakyReLU(0.1)
 * per level, SN FC F + LeakyReLU(0.1) = h; score = SN-FC(h) + <SN-embed(y), h>, a logit [N, 1].
 */
export class Discriminator {
  readonly convs: SnWeight[] = [];
  readonly fc: SnWeight;
  readonly out: SnWeight;
  readonly embed: SnWeight;
  /**
   * Advance the power iterations on every `weights()` call (training); false keeps u, so that
   * repeated forwards are identical (gradient checks).
   */
  snUpdate = true;

  constructor(s: Scope, cin: number, chans: number[], fc: number, classes: number) {
    const lrelu = Math.sqrt(2 / (1 + 0.01));
    chans.forEach((c, i) => {
      const ci = i === 0 ? cin : chans[i - 1];
      this.convs.push(snWeight(s.child(`conv${i}`), [c, ci, 4, 4], fanIn(ci * 16, lrelu), true));
    });
    const flat = chans[chans.length - 1] * 16;
    this.fc = snWeight(s.child("fc"), [fc, flat], fanIn(flat, lrelu), true);
    this.out = snWeight(s.child("out"), [1, fc], fanIn(fc), true);
    this.embed = snWeight(s.child("embed"), [classes, fc], fanIn(fc), false);
  }

  /** This step's normalised weights (one power iteration each, kept in u if `snUpdate`). */
  weights(): DiscWeights {
    const sn = (p: SnWeight) => spectralNorm(p.w, p.u, { update: this.snUpdate });
    return {
      convs: this.convs.map(sn),
      fc: sn(this.fc),
      out: sn(this.out),
      embed: sn(this.embed),
    };
  }

  /** Scores [N, 1] of images x [N, C, S, S] with labels y under weights `w`. */
  score(x: Tensor, y: ArrayLike<number>, w: DiscWeights): Tensor {
    let h = x;
    w.convs.forEach((k, i) => {
      h = leakyRelu(conv2d(h, k, { stride: 2, padding: 1, bias: this.convs[i].b }), 0.1);
    });
    h = leakyRelu(linear(reshape(h, [x.shape[0], -1]), w.fc, this.fc.b), 0.1);
    return add(linear(h, w.out, this.out.b), projectionTerm(w.embed, y, h));
  }
}

/** q_ω(c | z_u): FC H, ReLU, FC C (logits). */
class LatentClassifier {
  readonly l1: Linear;
  readonly l2: Linear;

  constructor(s: Scope, zu: number, hidden: number, classes: number) {
    this.l1 = new Linear(s.child("fc1"), zu, hidden, { init: he(zu) });
    this.l2 = new Linear(s.child("fc2"), hidden, classes);
  }

  apply(z: Tensor): Tensor {
    return this.l2.apply(relu(this.l1.apply(z)));
  }
}

/** One-hot rows [N, C] of labels, as a tensor. */
export function oneHot(y: ArrayLike<number>, classes: number): Tensor {
  const v = new Float32Array(y.length * classes);
  for (let i = 0; i < y.length; i++) {
    if (!(Number.isInteger(y[i]) && y[i] >= 0 && y[i] < classes)) {
      throw new Error(`flowgpu: lrlivae: label ${y[i]} at ${i} is not a class in [0, ${classes})`);
    }
    v[i * classes + y[i]] = 1;
  }
  return Tensor.from(v, [y.length, classes]);
}

/** Fixed noise of a step (tests): ε of z_u, and the prior sample's ε_s and z'_u. */
export interface StepNoise {
  eps: Tensor;
  zs?: Tensor;
  zu: Tensor;
}

/** Codes of a batch: z_s (Lr-LiVAE: the point ẑ_s; cVAE-GAN: none) and q(z_u | x). */
export interface Codes {
  /** ẑ_s [N, zs] (Lr-LiVAE only). */
  zs?: Tensor;
  /** Posterior mean and log-variance of z_u (cVAE-GAN: of its whole code), [N, dims]. */
  mu: Tensor;
  logvar: Tensor;
}

/** Zheng & Sun's label relevant/irrelevant VAE, or the cVAE-GAN baseline, on a parameter store. */
export class LrLiVae {
  readonly variant: LrLiVaeVariant;
  readonly levels: number;
  readonly chans: number[];
  /** Enc_s (Lr-LiVAE) */
  readonly encS?: { trunk: Trunk; head: Linear };
  /** Enc_u (Lr-LiVAE) or the cVAE's encoder. */
  readonly encU: { trunk: Trunk; mu: Linear; logvar: Linear };
  readonly dec: Decoder;
  readonly disc: Discriminator;
  /** q_ω (Lr-LiVAE). */
  readonly adv?: LatentClassifier;
  /** Class means μ_c [C, zs] and log-variances [C, zs] (Lr-LiVAE). */
  readonly gmMu?: Tensor;
  readonly gmLogvar?: Tensor;
  readonly lambdaLkd: number;
  readonly lambdaKl: number;
  readonly lambdaRec: number;
  readonly gan: boolean;
  readonly varFloor: number;
  readonly pixelWeight: number;
  /** Dims of q(z_u | x) (cVAE-GAN: zs + zu). */
  readonly codeDims: number;

  /**
   * Declares the groups under the root scope `s`: Lr-LiVAE `encs`, `gm`, `encu`, `advcls`,
   * `dec`, `disc`; cVAE-GAN `enc`, `dec`, `disc`.
   */
  constructor(s: Scope, readonly cfg: LrLiVaeConfig) {
    this.variant = cfg.variant ?? "lrlivae";
    if (!LRLIVAE_VARIANTS.includes(this.variant)) {
      throw new Error(
        `flowgpu: lrlivae: unknown variant '${this.variant}' (${LRLIVAE_VARIANTS.join(", ")})`,
      );
    }
    const { channels: cin, size, classes, zs, zu } = cfg;
    for (const [k, v, lo] of [["zs", zs, 1], ["zu", zu, 1], ["classes", classes, 2]] as const) {
      if (!(Number.isInteger(v) && v >= lo)) {
        throw new Error(`flowgpu: lrlivae: ${k} ${v} must be an integer >= ${lo}`);
      }
    }
    this.levels = levelsOf(size);
    const base = cfg.base ?? 64, fc = cfg.fc ?? 1024;
    this.chans = levelChannels(this.levels, base);
    this.lambdaLkd = cfg.lambdaLkd ?? 0.1;
    this.pixelWeight = cfg.pixelWeight ?? 1;
    if (!(this.pixelWeight > 0)) {
      throw new Error(`flowgpu: lrlivae: pixel weight ${this.pixelWeight} must be > 0`);
    }
    this.lambdaKl = cfg.lambdaKl ?? 10 / (cin * size * size * this.pixelWeight);
    this.lambdaRec = cfg.lambdaRec ?? 1 / zu;
    this.gan = cfg.gan ?? true;
    this.varFloor = cfg.varFloor ?? 1e-3;
    if (!(this.varFloor > 0)) {
      throw new Error(`flowgpu: lrlivae: variance floor ${this.varFloor} must be > 0`);
    }
    const lr = this.variant === "lrlivae";
    this.codeDims = lr ? zu : zs + zu;
    if (lr) {
      const e = s.child("encs");
      this.encS = {
        trunk: new Trunk(e, cin, this.chans, fc),
        head: new Linear(e.child("zs"), fc, zs),
      };
      // Xavier-uniform means (§3.4); σ² = 1 to start.
      const a = Math.sqrt(6 / (classes + zs));
      this.gmMu = s.child("gm").param("mu", [classes, zs], uniform(-a, a));
      this.gmLogvar = s.child("gm").param("logvar", [classes, zs], zeros);
    }
    const u = s.child(lr ? "encu" : "enc");
    this.encU = {
      trunk: new Trunk(u, lr ? cin : cin + classes, this.chans, fc),
      mu: new Linear(u.child("mu"), fc, this.codeDims),
      // Small initial log-variances: the posterior starts near N(mu, 1).
      logvar: new Linear(u.child("logvar"), fc, this.codeDims, { init: fanIn(fc, 0.1) }),
    };
    if (lr) this.adv = new LatentClassifier(s.child("advcls"), zu, cfg.advHidden ?? 256, classes);
    this.dec = new Decoder(s.child("dec"), lr ? zs + zu : zs + zu + classes, this.chans, cin);
    this.disc = new Discriminator(s.child("disc"), cin, this.chans, fc, classes);
  }

  /** Every batch-norm layer. */
  get norms(): BatchNorm[] {
    return [...(this.encS?.trunk.norms ?? []), ...this.encU.trunk.norms, ...this.dec.norms];
  }

  /** Batch statistics (training, the default) or running statistics (evaluation). */
  setTraining(training: boolean): void {
    for (const n of this.norms) n.training = training;
  }

  #checkImages(x: Tensor): void {
    const { channels: c, size } = this.cfg, s = x.shape;
    if (s.length !== 4 || s[1] !== c || s[2] !== size || s[3] !== size) {
      throw new Error(`flowgpu: lrlivae: input ${fmtShape(s)} is not [N, ${c}, ${size}, ${size}]`);
    }
  }

  #checkLabels(y: ArrayLike<number> | undefined, n: number, what: string): ArrayLike<number> {
    if (!y || y.length !== n) {
      throw new Error(`flowgpu: lrlivae: ${what} needs ${n} labels, got ${y?.length ?? "none"}`);
    }
    return y;
  }

  /** The mixture's log-variances with the §8 Z4 floor. */
  gmLogvarFloored(): Tensor {
    return clamp(this.gmLogvar!, Math.log(this.varFloor), Infinity);
  }

  /** GM logits [N, C] of points ẑ_s [N, zs] (log N(ẑ_s; μ_c, σ²_c) up to a shared constant). */
  logits(zs: Tensor): Tensor {
    if (!this.gmMu) throw new Error("flowgpu: lrlivae: the cVAE-GAN has no mixture prior");
    return gmLogits(zs, this.gmMu, this.gmLogvarFloored());
  }

  /** ẑ_s of a batch (Lr-LiVAE). */
  encodeS(x: Tensor): Tensor {
    if (!this.encS) throw new Error("flowgpu: lrlivae: the cVAE-GAN has no label-relevant encoder");
    this.#checkImages(x);
    return this.encS.head.apply(this.encS.trunk.apply(x));
  }

  /** q(z_u | x) (cVAE-GAN: q(z | x, y), which needs the labels). */
  encodeU(x: Tensor, y?: ArrayLike<number>): { mu: Tensor; logvar: Tensor } {
    this.#checkImages(x);
    let inp = x;
    if (this.variant === "cvaegan") {
      const labels = this.#checkLabels(y, x.shape[0], "the cVAE-GAN encoder");
      const s = this.cfg.size;
      inp = concatChannels([x, tile2d(oneHot(labels, this.cfg.classes), s, s)]);
    }
    const h = this.encU.trunk.apply(inp);
    return { mu: this.encU.mu.apply(h), logvar: this.encU.logvar.apply(h) };
  }

  /** Both codes of a batch (labels only for the cVAE-GAN). */
  encode(x: Tensor, y?: ArrayLike<number>): Codes {
    const q = this.encodeU(x, y);
    return this.encS ? { zs: this.encodeS(x), ...q } : q;
  }

  /**
   * Images of codes: Lr-LiVAE Dec(z_s ⊕ z_u); cVAE-GAN Dec(z ⊕ one-hot(y)) with its whole code
   * as `zu` (`zs` undefined) and labels `y`.
   */
  decode(zs: Tensor | undefined, zu: Tensor, y?: ArrayLike<number>): Tensor {
    if (this.variant === "lrlivae") {
      if (!zs) throw new Error("flowgpu: lrlivae: decode needs z_s");
      return this.dec.apply(concatChannels([zs, zu]));
    }
    const labels = this.#checkLabels(y, zu.shape[0], "the cVAE-GAN decoder");
    return this.dec.apply(concatChannels([zu, oneHot(labels, this.cfg.classes)]));
  }

  /** L_cls and L_lkd (batch means) of points ẑ_s with labels y, and their logits. */
  gmTerms(zs: Tensor, y: ArrayLike<number>): { cls: Tensor; lkd: Tensor; logits: Tensor } {
    const logits = this.logits(zs);
    const cls = nllLoss(logits, y);
    // L_lkd = −logit_y = ½ Σ_d ((ẑ − μ_y)² / σ²_y + log σ²_y).
    const lkd = scale(sum(mul(logits, oneHot(y, this.cfg.classes))), -1 / y.length);
    return { cls, lkd, logits };
  }

  /** The GM stage's loss L_GM = L_cls + λ_lkd L_lkd on a batch (trains Enc_s and the mixture). */
  gmLoss(x: Tensor, y: ArrayLike<number>): { loss: Tensor; cls: Tensor; lkd: Tensor } {
    this.#checkLabels(y, x.shape[0], "the GM loss");
    const { cls, lkd } = this.gmTerms(this.encodeS(x), y);
    return { loss: add(cls, scale(lkd, this.lambdaLkd)), cls, lkd };
  }

  /**
   * A prior sample's codes for labels y: Lr-LiVAE z'_s = μ_y + σ_y ε_s (the mixture detached) and
   * z'_u = ε_u; cVAE-GAN z' = ε. Noise from a GpuRng, or given as tensors.
   */
  priorCodes(
    y: ArrayLike<number>,
    noise: GpuRng | { zs?: Tensor; zu: Tensor },
  ): { zs?: Tensor; zu: Tensor } {
    const rng = noise instanceof GpuRng ? noise : undefined;
    const zu = rng ? rng.normal([y.length, this.codeDims]) : (noise as { zu: Tensor }).zu;
    if (this.variant === "cvaegan") return { zu };
    const mu = embedding(detach(this.gmMu!), y);
    const lv = embedding(detach(this.gmLogvarFloored()), y);
    const eps = rng ?? (noise as { zs?: Tensor }).zs;
    if (!eps) throw new Error("flowgpu: lrlivae: a prior z_s needs noise");
    return { zs: reparameterize(mu, lv, eps), zu };
  }

  /**
   * Every loss of one end-to-end step on a batch (x, y): z_u = μ + σ ε (ε from `noise`), x'_f,
   * the prior sample x'_p, and the per-group losses in update order.
   */
  stepLosses(
    x: Tensor,
    y: ArrayLike<number>,
    noise: GpuRng | StepNoise,
  ): StepLosses {
    const rng = noise instanceof GpuRng ? noise : undefined;
    const n = x.shape[0];
    this.#checkLabels(y, n, "a training step");
    const lr = this.variant === "lrlivae";
    const q = this.encodeU(x, y);
    const kl = mean(klStdNormal(q.mu, q.logvar));
    const z = reparameterize(q.mu, q.logvar, rng ?? (noise as StepNoise).eps);
    const terms: Record<string, Tensor> = { kl };
    let zs: Tensor | undefined, lkd: Tensor | undefined;
    let eAdv: Tensor | undefined, cAdv: Tensor | undefined;
    if (lr) {
      const logits = this.adv!.apply(z);
      eAdv = softCrossEntropy(logits, "uniform");
      cAdv = nllLoss(logits, y);
      zs = this.encodeS(x);
      lkd = this.gmTerms(zs, y).lkd;
      Object.assign(terms, { lkd, e_adv: eAdv, c_adv: cAdv });
    }
    const xf = this.decode(zs, z, y);
    const rec = scale(mean(squaredError(xf, x, "perSample")), 0.5 * this.pixelWeight);
    terms.rec = rec;
    let gd: Tensor | undefined, ld: Tensor | undefined;
    if (this.gan) {
      const p = this.priorCodes(y, rng ?? (noise as StepNoise));
      const xp = this.decode(p.zs, p.zu, y);
      // D has no batch norm, so one call on [x; x'_f; x'_p] scores each image as three calls
      // would, with a third of the dispatches.
      const flat = (t: Tensor) => reshape(t, [1, t.size]);
      const all = reshape(concatChannels([flat(x), flat(xf), flat(xp)]), [
        3 * n,
        ...x.shape.slice(1),
      ]);
      const scores = this.disc.score(
        all,
        [...Array.from(y), ...Array.from(y), ...Array.from(y)],
        this.disc.weights(),
      );
      const [sr, sf, sp] = splitChannels(reshape(scores, [1, 3 * n]), [n, n, n]);
      ld = add(add(bceWithLogits(sr, 1), bceWithLogits(sf, 0)), bceWithLogits(sp, 0));
      gd = add(bceWithLogits(sf, 1), bceWithLogits(sp, 1));
      Object.assign(terms, { d_loss: ld, g_loss: gd });
    }
    const updates: GroupLoss[] = [];
    if (lr) {
      updates.push({ group: "encs", loss: add(rec, scale(lkd!, this.lambdaLkd)) });
      updates.push({
        group: "encu",
        loss: add(add(eAdv!, scale(kl, this.lambdaKl)), scale(rec, this.lambdaRec)),
      });
      updates.push({ group: "advcls", loss: cAdv! });
    } else {
      updates.push({ group: "enc", loss: add(rec, scale(kl, this.lambdaKl)) });
    }
    updates.push({ group: "dec", loss: gd ? add(rec, gd) : rec });
    if (ld) updates.push({ group: "disc", loss: ld });
    return { updates, terms, xf };
  }
}

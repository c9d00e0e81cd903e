// DisUnknown (Xiang et al., ICCV 2021; vae-disentangle.md §1): disentangling an unknown factor
// (everything without labels) from labelled ones in three stages.
//   Stage I   unknown encoder E, label embedders B_i and generator G_I reconstruct x from
//             (E(x), B(y)); an image classifier C tries to read y from G_I(E(x), B(y')) for
//             labels y' of other samples, and E, B and G_I's fully connected layers fight it with
//             the weighted negative log-unlikelihood NLU_q: whatever of y survives in that image
//             came through E's code, so E learns to drop it.
//   Stage C   classifiers R_i (m_i + 1 classes: the last one "fake") on real images.
//   Stage II  E frozen; labelled encoders S and G_II (a copy of G_I) reconstruct and swap codes,
//             against an LSGAN discriminator D and the adversarial R (NLU on generated images),
//             with the code distance through frozen E ("unknown code condition", L_match).
// Networks are the "DU-net" of §1.3: weight-normalised layers without bias, WN-PReLU
// activations, residual ResDown / ResUp / FCRes blocks mixed by WNAdd. Every code goes through
// the nested dropout of §1.4 (a per-sample prefix of dims kept, the rest drawn from the prior;
// the generator also sees which dims were dropped).
//
// Parameter groups (the first name component): enc (E), emb (B), gen1 (G_I), cls1 (C), rcls (R of
// Stage C), lenc (S), gen2 (G_II), disc (D), rcls2 (R of Stage II). G_II and R of Stage II are
// separate groups initialised by copying gen1 and rcls (`copyGroup`), so Stage II has its own
// optimizers and learning rate, as the released code builds new ones per stage.
import { clamp } from "../ops/activation.ts";
import { nllLoss, nluClassWeights, nluLoss } from "../ops/classify.ts";
import { conv2d } from "../ops/conv.ts";
import { convTranspose2d } from "../ops/conv_transpose.ts";
import { gaussianNll, klStdNormal, klStdNormalSigma } from "../ops/divergence.ts";
import {
  add,
  div,
  exp,
  log,
  mul,
  neg,
  scale,
  softplus,
  sqrt,
  square,
  sub,
  tanh,
} from "../ops/elementwise.ts";
import { lsganLoss } from "../ops/gan.ts";
import { embedding, gatherBatch, where } from "../ops/gather.ts";
import { linear, matmul } from "../ops/matmul.ts";
import { avgPool2d } from "../ops/pool.ts";
import { GpuRng } from "../ops/random.ts";
import { mean, meanBatch, sum, sumBatch } from "../ops/reduce.ts";
import { translate2d, upsample2x } from "../ops/resample.ts";
import { concatChannels, reshape, sliceChannels, splitChannels } from "../ops/shape.ts";
import { detach } from "../ops/tape.ts";
import { fmtShape, Tensor } from "../ops/tensor.ts";
import { wnPrelu } from "../ops/activation.ts";
import { weightNorm } from "../ops/weight_norm.ts";
import { copyBuffer } from "../gpu/encoder.ts";
import { constant, normal, type ParamStore, type Scope, zeros } from "../nn/store.ts";
import { type DuNetSizes, duNetSizes } from "./vae.ts";

// ---------------------------------------------------------------------------------------------
// DU-net primitives (§1.3). A weight-normalised layer's output ignores the scale of its raw
// weight, but Adam's step does not: it moves each raw element by about lr, so the direction turns
// by lr / |element|. Raw weights start at N(0, 1/fan_in) (rows of norm ~1, PyTorch's scale up to
// √3), so the spec's learning rates turn them as fast as in the released code. `sg` (stop-gradient) applies a layer with detached parameters:
// activations still carry gradients to the layer's input, its parameters get none. Stage I's
// adversarial branch runs G_I's convolutional part that way (§1.5 step 7, gen_conv_adv = false).

const P = (t: Tensor, sg: boolean) => (sg ? detach(t) : t);
const optP = (t: Tensor | undefined, sg: boolean) => (t && sg ? detach(t) : t);

/** Options of the weight-normalised layers: `affine` adds a gain (init `gain`) and a bias. */
interface WnOptions {
  affine?: boolean;
  /** Initial gain (default 1). */
  gain?: number;
  /** Initial bias (default 0). */
  bias?: number;
}

/** WNLinear: y = g ⊙ Ŵx + b with unit-norm rows Ŵ (no g, b unless affine). */
export class WnLinear {
  readonly w: Tensor;
  readonly g?: Tensor;
  readonly b?: Tensor;
  constructor(s: Scope, readonly inp: number, readonly out: number, o: WnOptions = {}) {
    this.w = s.param("weight", [out, inp], normal(1 / Math.sqrt(inp)));
    if (o.affine) {
      this.g = s.param("gain", [out], constant(o.gain ?? 1));
      this.b = s.param("bias", [out], constant(o.bias ?? 0));
    }
  }
  apply(x: Tensor, sg = false): Tensor {
    const w = weightNorm(P(this.w, sg), { gain: optP(this.g, sg) });
    return linear(x, w, optP(this.b, sg));
  }
}

/** WNConv2d: each output filter normalised over (cin, k, k). */
export class WnConv {
  readonly w: Tensor;
  readonly g?: Tensor;
  readonly b?: Tensor;
  constructor(
    s: Scope,
    cin: number,
    cout: number,
    k: number,
    readonly stride: 1 | 2,
    readonly padding: number,
    o: WnOptions = {},
  ) {
    this.w = s.param("weight", [cout, cin, k, k], normal(1 / Math.sqrt(cin * k * k)));
    if (o.affine) {
      this.g = s.param("gain", [cout], constant(o.gain ?? 1));
      this.b = s.param("bias", [cout], constant(o.bias ?? 0));
    }
  }
  apply(x: Tensor, sg = false): Tensor {
    const w = weightNorm(P(this.w, sg), { gain: optP(this.g, sg) });
    return conv2d(x, w, { bias: optP(this.b, sg), stride: this.stride, padding: this.padding });
  }
}

/**
 * WNConvT2d: weight [cin, cout, k, k] normalised per output channel over (cin, k, k), times the
 * stride (each output pixel sees 1/s² of the taps).
 */
export class WnConvT {
  readonly w: Tensor;
  readonly g?: Tensor;
  readonly b?: Tensor;
  constructor(
    s: Scope,
    cin: number,
    cout: number,
    k: number,
    readonly stride: 1 | 2,
    readonly padding: number,
    o: WnOptions = {},
  ) {
    this.w = s.param("weight", [cin, cout, k, k], normal(1 / Math.sqrt(cin * k * k)));
    if (o.affine) {
      this.g = s.param("gain", [cout], constant(o.gain ?? 1));
      this.b = s.param("bias", [cout], constant(o.bias ?? 0));
    }
  }
  apply(x: Tensor, sg = false): Tensor {
    const w = scale(weightNorm(P(this.w, sg), { gain: optP(this.g, sg), dim: 1 }), this.stride);
    return convTranspose2d(x, w, {
      bias: optP(this.b, sg),
      stride: this.stride,
      padding: this.padding,
    });
  }
}

/** WN-PReLU: a self-normalising PReLU with per-channel slope a (init 0.25) and pre-bias β. */
export class WnPrelu {
  readonly a: Tensor;
  readonly beta: Tensor;
  constructor(s: Scope, c: number) {
    this.a = s.param("slope", [c], constant(0.25));
    this.beta = s.param("prebias", [c], zeros);
  }
  apply(x: Tensor, sg = false): Tensor {
    return wnPrelu(x, P(this.a, sg), P(this.beta, sg));
  }
}

/** WNAdd: (α x1 + β x2) / √(α² + β²) per channel, α and β initialised to (α0, β0) normalised. */
export class WnAdd {
  readonly alpha: Tensor;
  readonly beta: Tensor;
  constructor(s: Scope, c: number, a0: number, b0: number) {
    const n = Math.hypot(a0, b0);
    this.alpha = s.param("alpha", [c], constant(a0 / n));
    this.beta = s.param("beta", [c], constant(b0 / n));
  }
  apply(x1: Tensor, x2: Tensor, sg = false): Tensor {
    const a = P(this.alpha, sg), b = P(this.beta, sg);
    const n = sqrt(add(square(a), square(b)));
    return add(mul(x1, div(a, n)), mul(x2, div(b, n)));
  }
}

/** FCRes: WNAdd(F, 1, 0)(x, WNPReLU(WNLinear(F, F)(x))), the identity at init. */
export class FcRes {
  readonly lin: WnLinear;
  readonly act: WnPrelu;
  readonly mix: WnAdd;
  constructor(s: Scope, f: number) {
    this.lin = new WnLinear(s.child("lin"), f, f);
    this.act = new WnPrelu(s.child("act"), f);
    this.mix = new WnAdd(s.child("mix"), f, 1, 0);
  }
  apply(x: Tensor, sg = false): Tensor {
    return this.mix.apply(x, this.act.apply(this.lin.apply(x, sg), sg), sg);
  }
}

/** ResDown: WNPReLU(WNConv 4x4 s2) against AvgPool (+ 1x1 WNConv when channels change). */
export class ResDown {
  readonly conv: WnConv;
  readonly act: WnPrelu;
  readonly short?: WnConv;
  readonly mix: WnAdd;
  constructor(s: Scope, cin: number, cout: number, readonly extra: number, r: number) {
    this.conv = new WnConv(s.child("conv"), cin, cout, 4, 2, 1 + extra);
    this.act = new WnPrelu(s.child("act"), cout);
    if (cin !== cout) this.short = new WnConv(s.child("short"), cin, cout, 1, 1, 0);
    this.mix = new WnAdd(s.child("mix"), cout, Math.sqrt(1 - r), Math.sqrt(r));
  }
  apply(x: Tensor, sg = false): Tensor {
    const res = this.act.apply(this.conv.apply(x, sg), sg);
    let sc = avgPool2d(x, { padding: this.extra });
    if (this.short) sc = this.short.apply(sc, sg);
    return this.mix.apply(sc, res, sg);
  }
}

/** ResUp: WNPReLU(WNConvT 4x4 s2) against (1x1 WNConv when channels change) + nearest x2 + crop. */
export class ResUp {
  readonly conv: WnConvT;
  readonly act: WnPrelu;
  readonly short?: WnConv;
  readonly mix: WnAdd;
  constructor(s: Scope, cin: number, cout: number, readonly extra: number, r: number) {
    this.conv = new WnConvT(s.child("convt"), cin, cout, 4, 2, 1 + extra);
    this.act = new WnPrelu(s.child("act"), cout);
    if (cin !== cout) this.short = new WnConv(s.child("short"), cin, cout, 1, 1, 0);
    this.mix = new WnAdd(s.child("mix"), cout, Math.sqrt(1 - r), Math.sqrt(r));
  }
  apply(x: Tensor, sg = false): Tensor {
    const res = this.act.apply(this.conv.apply(x, sg), sg);
    const sc = upsample2x(this.short ? this.short.apply(x, sg) : x, { crop: this.extra });
    return this.mix.apply(sc, res, sg);
  }
}

/**
 * Trunk(S, Cin, n_fc): WNPReLU(WNConv 6x6 s2) -> ResDown per further level -> flatten ->
 * WNPReLU(WNLinear(c t², F)) -> n_fc FCRes. Images [N, Cin, S, S] -> features [N, F].
 */
export class Trunk {
  readonly first: WnConv;
  readonly firstAct: WnPrelu;
  readonly downs: ResDown[] = [];
  readonly fc: WnLinear;
  readonly fcAct: WnPrelu;
  readonly res: FcRes[] = [];
  constructor(s: Scope, readonly sizes: DuNetSizes, cin: number, nfc: number) {
    const { levels, channels: c, extra: e, top: t, fc } = sizes;
    this.first = new WnConv(s.child("conv0"), cin, c[0], 6, 2, 2 + e[0]);
    this.firstAct = new WnPrelu(s.child("act0"), c[0]);
    for (let i = 1; i < levels; i++) {
      this.downs.push(new ResDown(s.child(`down${i}`), c[i - 1], c[i], e[i], 1 / (i + 1)));
    }
    this.fc = new WnLinear(s.child("fc"), c[levels - 1] * t * t, fc);
    this.fcAct = new WnPrelu(s.child("fcact"), fc);
    for (let i = 0; i < nfc; i++) this.res.push(new FcRes(s.child(`res${i}`), fc));
  }
  apply(x: Tensor): Tensor {
    let h = this.firstAct.apply(this.first.apply(x));
    for (const d of this.downs) h = d.apply(h);
    h = this.fcAct.apply(this.fc.apply(reshape(h, [x.shape[0], -1])));
    for (const r of this.res) h = r.apply(h);
    return h;
  }
}

/** softplus⁻¹(1) = log(e − 1): a σ head with this bias and gain 0 starts at σ = 1. */
const SOFTPLUS_INV_1 = Math.log(Math.E - 1);

/**
 * Encoder (E, S): Trunk(n_fc = 2) and, for every code, μ = WNLinear_aff and σ = softplus(WNLinear_aff)
 * — all codes' heads as one WNLinear each (weight norm is per output row, so that is the same
 * as one head per code). `zeroInit` (S): μ = 0 and σ = 1 at the start.
 */
export class DuEncoder {
  readonly trunk: Trunk;
  readonly mu: WnLinear;
  readonly sigma: WnLinear;
  readonly dim: number;
  constructor(
    s: Scope,
    sizes: DuNetSizes,
    cin: number,
    readonly codes: number[],
    zeroInit = false,
  ) {
    this.trunk = new Trunk(s.child("trunk"), sizes, cin, 2);
    this.dim = codes.reduce((a, b) => a + b, 0);
    const f = sizes.fc;
    this.mu = new WnLinear(s.child("mu"), f, this.dim, { affine: true, gain: zeroInit ? 0 : 1 });
    this.sigma = new WnLinear(s.child("sigma"), f, this.dim, {
      affine: true,
      gain: zeroInit ? 0 : 1,
      bias: zeroInit ? SOFTPLUS_INV_1 : 0,
    });
  }
  /** Posterior (μ, σ) of images: two [N, Σ codes]. */
  apply(x: Tensor): { mu: Tensor; sigma: Tensor } {
    const h = this.trunk.apply(x);
    return { mu: this.mu.apply(h), sigma: softplus(this.sigma.apply(h)) };
  }
}

/** Image classifier (C, R) or discriminator (D): Trunk(n_fc = 0) -> WNLinear_aff(F, Σ classes). */
export class DuClassifier {
  readonly trunk: Trunk;
  readonly head: WnLinear;
  readonly offsets: number[] = [];
  constructor(s: Scope, sizes: DuNetSizes, cin: number, readonly classes: number[]) {
    this.trunk = new Trunk(s.child("trunk"), sizes, cin, 0);
    let total = 0;
    for (const c of classes) {
      this.offsets.push(total);
      total += c;
    }
    this.head = new WnLinear(s.child("head"), sizes.fc, total, { affine: true });
  }
  /** Logits of every head, [N, Σ classes]. */
  apply(x: Tensor): Tensor {
    return this.head.apply(this.trunk.apply(x));
  }
  /** The logits of head i. */
  part(logits: Tensor, i: number): Tensor {
    if (this.classes.length === 1) return logits;
    return sliceChannels(logits, this.offsets[i], this.offsets[i] + this.classes[i]);
  }
}

/**
 * Generator (G_I, G_II): [z, 1 − mask] (2 Σ codes) -> WNLinear(F) -> 2 FCRes -> h;
 * σ_rec = softplus(WNLinear_aff(F, 1)(h)); WNPReLU(WNLinear(F, c t²)(h)) -> [c, t, t] -> ResUp per
 * level -> tanh(WNConvT_aff 6x6 s2). Returns the image and log σ_rec [N, 1].
 */
export class DuGenerator {
  readonly inp: WnLinear;
  readonly res: FcRes[] = [];
  readonly sigma: WnLinear;
  readonly top: WnLinear;
  readonly topAct: WnPrelu;
  readonly ups: ResUp[] = [];
  readonly out: WnConvT;
  constructor(s: Scope, readonly sizes: DuNetSizes, readonly cout: number, readonly dim: number) {
    const { levels: L, channels: c, extra: e, top: t, fc } = sizes;
    this.inp = new WnLinear(s.child("in"), 2 * dim, fc);
    for (let i = 0; i < 2; i++) this.res.push(new FcRes(s.child(`res${i}`), fc));
    this.sigma = new WnLinear(s.child("sigma"), fc, 1, { affine: true });
    this.top = new WnLinear(s.child("top"), fc, c[L - 1] * t * t);
    this.topAct = new WnPrelu(s.child("topact"), c[L - 1] * t * t);
    for (let i = L - 1; i >= 1; i--) {
      this.ups.push(new ResUp(s.child(`up${i}`), c[i], c[i - 1], e[i], 1 / (L - i + 1)));
    }
    this.out = new WnConvT(s.child("out"), c[0], cout, 6, 2, 2 + e[0], { affine: true });
  }
  /**
   * Images from codes z [N, dim] and the dropped-dims indicator holes = 1 − mask [N, dim]. With
   * `convSg` the convolutional part's parameters get no gradient (the fully connected part's
   * do, and gradients still reach z).
   */
  apply(z: Tensor, holes: Tensor, convSg = false): { x: Tensor; logSigma: Tensor } {
    if (z.shape.length !== 2 || z.shape[1] !== this.dim) {
      throw new Error(
        `flowgpu: disunknown: generator code ${fmtShape(z.shape)} is not [N, ${this.dim}]`,
      );
    }
    const { levels: L, channels: c, top: t } = this.sizes;
    let h = this.inp.apply(concatChannels([z, holes]));
    for (const r of this.res) h = r.apply(h);
    const logSigma = log(softplus(this.sigma.apply(h)));
    let g = this.topAct.apply(this.top.apply(h));
    g = reshape(g, [z.shape[0], c[L - 1], t, t]);
    for (const u of this.ups) g = u.apply(g, convSg);
    return { x: tanh(this.out.apply(g, convSg)), logSigma };
  }
}

/**
 * Label embedder B_i: class c emits N(μ̃_c, σ̃_c²), normalised so that the q-weighted mixture over
 * classes has zero mean and unit variance per dim. Raw tables M, Λ (init 0) are stored divided
 * by `lrGain`: Adam moves a stored value by about lr per step, so the tables move `lrGain` times
 * faster than other parameters — the released code's 10x learning rate for embedders, without a
 * separate optimizer (and a second forward pass) for them.
 */
export class LabelEmbedder {
  readonly m: Tensor;
  readonly lambda: Tensor;
  readonly q: Tensor;
  constructor(
    s: Scope,
    readonly classes: number,
    readonly dim: number,
    q: ArrayLike<number>,
    readonly lrGain = 10,
  ) {
    if (q.length !== classes) {
      throw new Error(`flowgpu: disunknown: ${q.length} class frequencies for ${classes} classes`);
    }
    this.m = s.param("means", [classes, dim], zeros);
    this.lambda = s.param("logstds", [classes, dim], zeros);
    this.q = s.fixed("freq", [1, classes], q);
  }
  /** The normalised tables μ̃ and σ̃, [classes, dim] each. */
  tables(): { mu: Tensor; sigma: Tensor } {
    const m = scale(this.m, this.lrGain), lam = scale(this.lambda, this.lrGain);
    const mbar = matmul(this.q, m); // [1, d]
    const v = sub(matmul(this.q, square(m)), square(mbar));
    const ev = matmul(this.q, exp(scale(lam, 2)));
    const sd = sqrt(clamp(add(v, ev), 1e-8, Infinity));
    return { mu: div(sub(m, mbar), sd), sigma: div(exp(lam), sd) };
  }
}

// ---------------------------------------------------------------------------------------------
// Nested dropout (§1.4)

/**
 * Keep-probabilities k_0..k_{n-1} of a code of size n from a list [p_0..p_{r-1}]: k_0 = 1,
 * k_1..k_{r-1} = p_0..p_{r-2}, k_{n-1} = p_{r-1}, geometric in between. No list: all ones.
 */
export function keepProbs(n: number, list: readonly number[]): Float64Array {
  const k = new Float64Array(n).fill(1);
  const r = list.length;
  if (r === 0 || n < 2) return k;
  for (let i = 1; i < r && i < n; i++) k[i] = list[i - 1];
  const a = r - 1, last = list[r - 1];
  if (n - 1 <= a) {
    k[n - 1] = last;
    return k;
  }
  const from = k[a];
  for (let d = a + 1; d < n; d++) k[d] = from * (last / from) ** ((d - a) / (n - 1 - a));
  return k;
}

/** Per-sample prefix masks [b, n] (1 = kept): dim d is kept iff k_d >= u, u ~ U(0, 1) per sample. */
export function prefixMasks(k: ArrayLike<number>, b: number, uniform: () => number): Float32Array {
  const n = k.length, out = new Float32Array(b * n);
  for (let i = 0; i < b; i++) {
    const u = uniform();
    for (let d = 0; d < n; d++) out[i * n + d] = k[d] >= u ? 1 : 0;
  }
  return out;
}

/** A noise source: the model's GPU stream, or fixed draws (tests) by shape. */
export type Noise = GpuRng | ((shape: number[]) => Tensor);
const draw = (noise: Noise, shape: number[]) =>
  noise instanceof GpuRng ? noise.normal(shape) : noise(shape);

/** Nested-dropout sample z = mask ⊙ (μ + σ ε) + (1 − mask) ⊙ ε (dropped dims from the prior). */
export function sampleCode(
  mu: Tensor,
  sigma: Tensor,
  mask: Tensor | undefined,
  noise: Noise,
): Tensor {
  const eps = draw(noise, [...mu.shape]);
  const z = add(mu, mul(sigma, eps));
  return mask ? where(mask, z, eps) : z;
}

/** Σ_d k_d mean_b KL(N(μ, σ²) ‖ N(0, 1))_d, [1]. */
export function weightedKl(mu: Tensor, sigma: Tensor, k: Tensor): Tensor {
  return scale(sum(mul(klStdNormalSigma(mu, sigma, "none"), k)), 1 / mu.shape[0]);
}

/**
 * The batch-aggregate code KL Σ_d k_d KL(N(m̄_d, v̄_d) ‖ N(0, 1)), m̄ = mean_b μ,
 * v̄ = unbiased var_b μ + mean_b σ², [1].
 */
export function aggregateKl(mu: Tensor, sigma: Tensor, k: Tensor): Tensor {
  const b = mu.shape[0];
  if (b < 2) {
    throw new Error("flowgpu: disunknown: the batch-aggregate KL needs a batch of 2 or more");
  }
  const m = meanBatch(mu);
  const v = add(scale(sumBatch(square(sub(mu, m))), 1 / (b - 1)), meanBatch(square(sigma)));
  const n = mu.shape[1];
  return sum(mul(klStdNormal(reshape(m, [1, n]), reshape(log(v), [1, n]), "none"), k));
}

// ---------------------------------------------------------------------------------------------
// The model

/** Loss weights of §1.7. */
export interface DuWeights {
  rec: number;
  cla1: number;
  u: number;
  ub: number;
  l: number;
  lb: number;
  dis: number;
  cla2: number;
  match: number;
}

export const DU_WEIGHTS: DuWeights = {
  rec: 1,
  cla1: 0.5,
  u: 0.001,
  ub: 0.1,
  l: 0.01,
  lb: 0.1,
  dis: 1,
  cla2: 1,
  match: 0.1,
};

/** Shape and objective of a `DisUnknown`. */
export interface DisUnknownConfig {
  channels: number;
  size: number;
  /** §1.3 channel scale (32: the spec's). */
  width: number;
  /** Unknown code size m_0. */
  unknownSize: number;
  /** Per labelled factor: classes m_i, code size, class frequencies q_i. */
  factors: { name: string; classes: number; codeSize: number; freq: ArrayLike<number> }[];
  /** Nested dropout on (default true). */
  nestedDropout?: boolean;
  /** Stage I adversary: "nlu" (the paper's) or "nll" (maximise the classifier's NLL). */
  adversary?: "nlu" | "nll";
  weights?: Partial<DuWeights>;
}

/** One batch: images and, per labelled factor, its labels. */
export interface DuBatch {
  x: Tensor;
  y: Int32Array[];
}

/** The random choices of one step (drawn by the caller, so a step is reproducible and testable). */
export interface DuDraws {
  /** Unknown-code masks [B, m_0] (undefined: keep all). */
  mask0?: Tensor;
  holes0: Tensor;
  /** Labelled masks [B, Σ code sizes] and holes = 1 − mask, for the batch's own codes. */
  maskL?: Tensor;
  holesL: Tensor;
  /** The same for the mismatched / swapped codes (Stage I: fresh draws; Stage II: rolled). */
  maskL2?: Tensor;
  holesL2: Tensor;
  /** Per labelled factor: the batch permutation giving the other samples' labels (a roll). */
  roll: Uint32Array[];
  /** Random offsets (dy, dx) per sample for each of the D / R inputs (Stages C and II). */
  shifts: Int32Array[];
  noise: Noise;
}

/** DisUnknown's networks and losses; the task schedules them (src/train/disunknown_task.ts). */
export class DisUnknown {
  readonly sizes: DuNetSizes;
  readonly enc: DuEncoder;
  readonly emb: LabelEmbedder[];
  readonly gen1: DuGenerator;
  readonly cls1: DuClassifier;
  readonly rcls: DuClassifier;
  readonly lenc: DuEncoder;
  readonly gen2: DuGenerator;
  readonly disc: DuClassifier;
  readonly rcls2: DuClassifier;
  readonly w: DuWeights;
  /** Keep-probabilities of the unknown code and of the labelled codes (concatenated). */
  readonly keep0: Float64Array;
  readonly keepL: Float64Array;
  readonly k0: Tensor;
  readonly kL: Tensor;
  /** Per labelled factor: its code's keep-probabilities k_i, [size_i]. */
  readonly kPer: Tensor[];
  /** Per labelled factor: q_c k_d, [classes, size_i] (L_l's weights). */
  readonly #klWeights: Tensor[];
  readonly codeSizes: number[];
  readonly labelledDim: number;
  readonly nluWeights: Float32Array[];
  /** Stage II's per-dim scale s_d of the unknown code (set by `setCodeScale`). */
  readonly codeScale: Tensor;

  constructor(readonly store: ParamStore, readonly cfg: DisUnknownConfig) {
    const { channels: c, size, width, unknownSize } = cfg;
    if (cfg.factors.length < 1) {
      throw new Error("flowgpu: disunknown: needs at least one labelled factor");
    }
    if (!(Number.isInteger(unknownSize) && unknownSize >= 1)) {
      throw new Error(
        `flowgpu: disunknown: unknown code size ${unknownSize} must be an integer >= 1`,
      );
    }
    this.sizes = duNetSizes(size, width);
    this.w = { ...DU_WEIGHTS, ...cfg.weights };
    this.codeSizes = cfg.factors.map((f) => f.codeSize);
    this.labelledDim = this.codeSizes.reduce((a, b) => a + b, 0);
    const classes = cfg.factors.map((f) => f.classes);
    const root = store.scope();
    const dim = unknownSize + this.labelledDim;
    this.enc = new DuEncoder(root.child("enc"), this.sizes, c, [unknownSize]);
    this.emb = cfg.factors.map((f, i) =>
      new LabelEmbedder(root.child("emb").child(`f${i}`), f.classes, f.codeSize, f.freq)
    );
    this.gen1 = new DuGenerator(root.child("gen1"), this.sizes, c, dim);
    this.cls1 = new DuClassifier(root.child("cls1"), this.sizes, c, classes);
    this.rcls = new DuClassifier(root.child("rcls"), this.sizes, c, classes.map((m) => m + 1));
    this.lenc = new DuEncoder(root.child("lenc"), this.sizes, c, this.codeSizes, true);
    this.gen2 = new DuGenerator(root.child("gen2"), this.sizes, c, dim);
    this.disc = new DuClassifier(root.child("disc"), this.sizes, c, [1]);
    this.rcls2 = new DuClassifier(root.child("rcls2"), this.sizes, c, classes.map((m) => m + 1));
    const nd = cfg.nestedDropout ?? true;
    // §1.7 [R]: unknown [0.2]; class-like codes [0.95, 0.2]; codes of size <= 2 none.
    this.keep0 = keepProbs(unknownSize, nd ? [0.2] : []);
    this.keepL = new Float64Array(this.labelledDim);
    let at = 0;
    for (const n of this.codeSizes) {
      this.keepL.set(keepProbs(n, nd && n > 2 ? [0.95, 0.2] : []), at);
      at += n;
    }
    this.k0 = store.fixed("stats.keep0", [unknownSize], this.keep0);
    this.kL = store.fixed("stats.keepl", [this.labelledDim], this.keepL);
    this.nluWeights = cfg.factors.map((f) => nluClassWeights(f.freq));
    at = 0;
    this.kPer = [];
    this.#klWeights = [];
    cfg.factors.forEach((f, i) => {
      const k = this.keepL.slice(at, at + f.codeSize);
      at += f.codeSize;
      this.kPer.push(store.fixed(`stats.keep_f${i}`, [f.codeSize], k));
      const w = new Float32Array(f.classes * f.codeSize);
      for (let c = 0; c < f.classes; c++) {
        for (let d = 0; d < f.codeSize; d++) w[c * f.codeSize + d] = f.freq[c] * k[d];
      }
      this.#klWeights.push(store.fixed(`stats.klw_f${i}`, [f.classes, f.codeSize], w));
    });
    this.codeScale = store.fixed("stats.code_scale", [unknownSize], constant(1));
  }

  get unknownSize(): number {
    return this.cfg.unknownSize;
  }

  /** Rows of the per-factor parts of a labelled [N, Σ codes] tensor. */
  splitCodes(t: Tensor): Tensor[] {
    return this.codeSizes.length === 1 ? [t] : splitChannels(t, this.codeSizes);
  }

  /** Stage I: the embedders' posteriors of labels y, concatenated over factors [B, Σ codes]. */
  embed(y: Int32Array[]): { mu: Tensor; sigma: Tensor } {
    const mus: Tensor[] = [], sigmas: Tensor[] = [];
    this.emb.forEach((e, i) => {
      const t = e.tables();
      mus.push(embedding(t.mu, y[i]));
      sigmas.push(embedding(t.sigma, y[i]));
    });
    return mus.length === 1
      ? { mu: mus[0], sigma: sigmas[0] }
      : { mu: concatChannels(mus), sigma: concatChannels(sigmas) };
  }

  /** L_l: Σ_i Σ_d k_{i,d} Σ_c q_{i,c} KL(N(μ̃_{i,c}, σ̃²_{i,c}) ‖ N(0, 1))_d over the embedders. */
  embedderKl(): Tensor {
    return this.#sumFactors((i) => {
      const t = this.emb[i].tables();
      return sum(mul(klStdNormalSigma(t.mu, t.sigma, "none"), this.#klWeights[i]));
    });
  }

  /** Σ_i of a per-factor loss. */
  #sumFactors(f: (i: number) => Tensor): Tensor {
    let t = f(0);
    for (let i = 1; i < this.cfg.factors.length; i++) t = add(t, f(i));
    return t;
  }

  /** Mean of the Gaussian NLL with the generator's learned σ_rec (L_rec of §1.5). */
  reconLoss(x: Tensor, xbar: Tensor, logSigma: Tensor): Tensor {
    return mean(gaussianNll(x, xbar, logSigma));
  }

  /**
   * Stage I's objective for E, B and G_I (§1.5): reconstruction, the adversarial loss on the
   * mismatched image (gradient into E, B and G_I's fully connected part only), code KLs.
   * Returns the loss, its terms, the mismatched image and C's logits of it: C's own update
   * (`stage1ClassifierLoss`) reuses them, as the paper steps all groups on one forward pass.
   */
  stage1(b: DuBatch, d: DuDraws): {
    loss: Tensor;
    terms: Record<string, Tensor>;
    fake: Tensor;
    logits: Tensor;
  } {
    const { mu: mu0, sigma: s0 } = this.enc.apply(b.x);
    const z0 = sampleCode(mu0, s0, d.mask0, d.noise);
    const own = this.embed(b.y);
    const zl = sampleCode(own.mu, own.sigma, d.maskL, d.noise);
    const rec = this.gen1.apply(concatChannels([z0, zl]), concatChannels([d.holes0, d.holesL]));
    const lRec = this.reconLoss(b.x, rec.x, rec.logSigma);
    const yOther = b.y.map((y, i) => Int32Array.from(d.roll[i], (j) => y[j]));
    const other = this.embed(yOther);
    const zl2 = sampleCode(other.mu, other.sigma, d.maskL2, d.noise);
    const fake = this.gen1.apply(
      concatChannels([z0, zl2]),
      concatChannels([d.holes0, d.holesL2]),
      true,
    ).x;
    const logits = this.cls1.apply(fake);
    const adversary = this.cfg.adversary ?? "nlu";
    const lAdv = this.#sumFactors((i) =>
      adversary === "nlu"
        ? nluLoss(this.cls1.part(logits, i), b.y[i], { classWeights: this.nluWeights[i] })
        : neg(nllLoss(this.cls1.part(logits, i), b.y[i]))
    );
    const lU = weightedKl(mu0, s0, this.k0);
    const lUb = aggregateKl(mu0, s0, this.k0);
    const lL = this.embedderKl();
    const w = this.w;
    const loss = add(
      add(scale(lRec, w.rec), scale(lAdv, w.cla1)),
      add(add(scale(lU, w.u), scale(lUb, w.ub)), scale(lL, w.l)),
    );
    return {
      loss,
      terms: { rec: lRec, adv: lAdv, kl_u: lU, kl_ub: lUb, kl_l: lL },
      fake,
      logits,
    };
  }

  /**
   * Stage I classifier C's loss Σ_i NLL(C_i(x̄′), y_i) from its logits of mismatched images
   * (backpropagated into C only: the images count as given).
   */
  stage1ClassifierLoss(logits: Tensor, y: Int32Array[]): Tensor {
    return this.#sumFactors((i) => nllLoss(this.cls1.part(logits, i), y[i]));
  }

  /** Stage C: R on real images (with random offsets), softmax over the m_i real classes only. */
  stageC(b: DuBatch, shifts: Int32Array): Tensor {
    const logits = this.rcls.apply(translate2d(b.x, shifts));
    return this.#sumFactors((i) =>
      nllLoss(this.rcls.part(logits, i), b.y[i], {
        classes: this.cfg.factors[i].classes,
        ignoreExtra: true,
      })
    );
  }

  /** D's score of images moved by the random offsets `shifts`. */
  scoreD(x: Tensor, shifts: Int32Array): Tensor {
    return this.disc.apply(translate2d(x, shifts));
  }

  /** R's logits of images moved by the random offsets `shifts` (Stage II's R, or Stage C's). */
  scoreR(x: Tensor, shifts: Int32Array, r: DuClassifier = this.rcls2): Tensor {
    return r.apply(translate2d(x, shifts));
  }

  /**
   * Stage II's objective for S and G_II (§1.6): reconstruction and swap branches, the LSGAN and
   * R terms on both generated images, the code distance through frozen E (unless w.match = 0),
   * S's code KLs. `r` is the R that judges (Stage II's, or Stage C's frozen one). Returns the
   * generated images, the swapped labels, and D's scores and R's logits of both generated images,
   * which D's and R's updates reuse (neither network changes in S's and G_II's step).
   */
  stage2(
    b: DuBatch,
    d: DuDraws,
    r: DuClassifier,
  ): {
    loss: Tensor;
    terms: Record<string, Tensor>;
    rec: Tensor;
    swap: Tensor;
    ySwap: Int32Array[];
    dRec: Tensor;
    dSwap: Tensor;
    rRec: Tensor;
    rSwap: Tensor;
  } {
    const bsz = b.x.shape[0];
    const post = this.enc.apply(b.x);
    const mu0 = detach(post.mu);
    const z0 = sampleCode(mu0, detach(post.sigma), undefined, d.noise);
    const s = this.lenc.apply(b.x);
    const zl = sampleCode(s.mu, s.sigma, d.maskL, d.noise);
    const rec = this.gen2.apply(concatChannels([z0, zl]), concatChannels([d.holes0, d.holesL]));
    const lRec = this.reconLoss(b.x, rec.x, rec.logSigma);
    const parts = this.splitCodes(zl);
    const swapped = parts.map((p, i) => gatherBatch(p, d.roll[i]));
    const zl2 = swapped.length === 1 ? swapped[0] : concatChannels(swapped);
    const ySwap = b.y.map((y, i) => Int32Array.from(d.roll[i], (j) => y[j]));
    const swap =
      this.gen2.apply(concatChannels([z0, zl2]), concatChannels([d.holes0, d.holesL2])).x;
    const w = this.w;
    const dRec = this.scoreD(rec.x, d.shifts[0]), dSwap = this.scoreD(swap, d.shifts[1]);
    const lDis = add(scale(lsganLoss(dRec, 0), 0.5), scale(lsganLoss(dSwap, 0), 0.5));
    const rRec = this.scoreR(rec.x, d.shifts[2], r), rSwap = this.scoreR(swap, d.shifts[3], r);
    const lCla = this.#sumFactors((i) =>
      add(
        scale(nllLoss(r.part(rRec, i), b.y[i]), 0.5),
        scale(nllLoss(r.part(rSwap, i), ySwap[i]), 0.5),
      )
    );
    const lL = weightedKl(s.mu, s.sigma, this.kL);
    const muParts = this.splitCodes(s.mu), sigmaParts = this.splitCodes(s.sigma);
    const lLb = this.#sumFactors((i) => aggregateKl(muParts[i], sigmaParts[i], this.kPer[i]));
    let loss = add(
      add(scale(lRec, w.rec), scale(lDis, w.dis)),
      add(add(scale(lCla, w.cla2), scale(lL, w.l)), scale(lLb, w.lb)),
    );
    const terms: Record<string, Tensor> = {
      rec: lRec,
      g_dis: lDis,
      g_cla: lCla,
      kl_l: lL,
      kl_lb: lLb,
    };
    if (w.match > 0) {
      const dist = (img: Tensor) => {
        const m = this.enc.apply(img).mu;
        return scale(sum(square(div(sub(m, mu0), this.codeScale))), 0.5 / bsz);
      };
      const lMatch = add(dist(rec.x), dist(swap));
      loss = add(loss, scale(lMatch, w.match));
      terms.match = lMatch;
    }
    return { loss, terms, rec: rec.x, swap, ySwap, dRec, dSwap, rRec, rSwap };
  }

  /**
   * D's LSGAN loss from its scores of real, reconstructed and swapped images:
   * mean (D(x) − 1)² + ½ mean (D(x̄) + 1)² + ½ mean (D(x̄′) + 1)².
   */
  stage2DiscLoss(dReal: Tensor, dRec: Tensor, dSwap: Tensor): Tensor {
    return add(
      lsganLoss(dReal, 1),
      add(scale(lsganLoss(dRec, -1), 0.5), scale(lsganLoss(dSwap, -1), 0.5)),
    );
  }

  /**
   * Stage II's R from its logits of real, reconstructed and swapped images:
   * Σ_i NLL(R_i(x), y_i) + ½ NLU(R_i(x̄), y_i) + ½ NLU(R_i(x̄′), y′_i) over the m_i + 1 classes
   * (unweighted NLU, §8 D8).
   */
  stage2ClassifierLoss(
    rReal: Tensor,
    rRec: Tensor,
    rSwap: Tensor,
    y: Int32Array[],
    ySwap: Int32Array[],
  ): Tensor {
    const r = this.rcls2;
    return this.#sumFactors((i) => {
      const classes = this.cfg.factors[i].classes;
      return add(
        nllLoss(r.part(rReal, i), y[i], { classes }),
        add(
          scale(nluLoss(r.part(rRec, i), y[i], { classes }), 0.5),
          scale(nluLoss(r.part(rSwap, i), ySwap[i], { classes }), 0.5),
        ),
      );
    });
  }

  /** Decode codes with posterior means (no dropout): G_I (stage 1) or G_II (stage 2). */
  decode(z: Tensor, stage: 1 | 2): Tensor {
    const holes = Tensor.from(new Float32Array(z.size), z.shape);
    return (stage === 1 ? this.gen1 : this.gen2).apply(z, holes).x;
  }
}

/** Copies group `from`'s values into group `to` (same layout): G_II <- G_I, R(II) <- R(C). */
export function copyGroup(store: ParamStore, from: string, to: string): void {
  const a = store.group(from), b = store.group(to);
  const same = a.size === b.size && a.slots.length === b.slots.length &&
    a.slots.every((s, i) =>
      s.offset === b.slots[i].offset && s.shape.join(",") === b.slots[i].shape.join(",") &&
      s.name.slice(from.length) === b.slots[i].name.slice(to.length)
    );
  if (!same) throw new Error(`flowgpu: disunknown: groups ${from} and ${to} differ in layout`);
  copyBuffer(
    a.values.buffer,
    b.values.buffer,
    a.size * 4,
    a.values.offset * 4,
    b.values.offset * 4,
  );
}

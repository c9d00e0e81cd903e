// The MI flow (af-mi-flow.md §3; Chien & Huang, TNNLS 2022, §IV): a multi-scale Glow whose
// split-off latents z^r = {z_1..z_{L-1}} get a Gaussian prior computed from the condition c, the
// image with everything outside the fixed mouth box zeroed (c = M ⊙ x̃), while the top latent
// z^i = z_L gets N(0, I). Per image, in bits/dim (D = C·H·W):
//   L_d = [−ln N(z^i; 0, I) − ln p_φ(z^r | c) − log|det ∂z/∂x̃| + D ln 2^n] / (D ln 2)
//   L_r = −ln p_φ(z^r | c) / (D ln 2)
//   L_i = mean((f⁻¹(z^i, ẑ^r) − x)²),  ẑ^r_l = μ_l(c) + σ_l(c) ⊙ T ε_l,  ε ~ N(0, I)
//   L_MI = L_d + α L_r + L_i   (+ w_y L_y, the word classifier on z^r_1 sequences)
// L_i decodes through the tracked inverse (Glow.decode with { grad: true }), so its gradient
// reaches the flow both through the inverse and through z^i, and the prior through μ and σ.
// The prior network p_φ(z^r | c) (§3.2): c_0 = c, c_l = MaxPool2x2(ReLU(Conv3x3(c_{l−1}))) with
// as many channels as z_l, and (μ_l, ln σ_l) = halves of ZeroConv3x3(c_l), each shaped like z_l.
import { Conv2d, ZeroConv } from "../nn/layers.ts";
import { type Scope, uniform } from "../nn/store.ts";
import { add, mul, relu, scale, sub } from "../ops/elementwise.ts";
import { where } from "../ops/gather.ts";
import { gaussianLogProb } from "../ops/loss.ts";
import { mse } from "../ops/divergence.ts";
import { mean } from "../ops/reduce.ts";
import { reparameterize } from "../ops/random.ts";
import { evenOddChannels, reshape, splitChannels } from "../ops/shape.ts";
import { squeeze } from "../ops/squeeze.ts";
import { noGrad } from "../ops/tape.ts";
import { fmtShape, Tensor } from "../ops/tensor.ts";
import { Glow } from "./glow.ts";
import type { InverseOptions } from "./flow.ts";
import { WordRnn } from "./af.ts";

/** A box of pixel rows top..bottom and columns left..right, inclusive, 0-based. */
export interface ConditionBox {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

/** Shape, condition and loss weights of an `MiFlow`. */
export interface MiFlowConfig {
  /** Image channels (3 for SynthLips). */
  channels: number;
  /** Image height and width (divisible by 2^levels). */
  size: number;
  /** Levels L (>= 2): z^r = z_1..z_{L−1}, z^i = z_L; γ = dim(z^i)/D = 2^−(L−1). */
  levels: number;
  /** Flow steps per level (K). */
  depth: number;
  /** Hidden channels of the couplings. */
  hidden: number;
  /** Affine couplings (true, the paper's) or additive ones (the reference code's). */
  affine: boolean;
  /** LU-parameterised 1x1 convolutions. */
  lu: boolean;
  /** Bit depth n of the data: L_d adds n (the D ln 2^n term) to be bits/dim of the n-bit image. */
  nBits: number;
  /** The mouth box the condition keeps (the rest of c is 0). */
  box: ConditionBox;
  /** Weight α of L_r (0.1 [P]; 0 is the "w/o L_r" ablation). */
  alpha: number;
  /** Temperature T of the z^r draw in L_i (0.7 [C]). */
  temperature: number;
  /** Include L_d (false: the "w/o L_d" ablation, A19: the flow is trained by L_i + α L_r only). */
  ld: boolean;
  /** Include L_i (false: the "w/o L_i" ablation). */
  li: boolean;
  /** Words of the vocabulary for L_y (0: no word classifier). */
  words: number;
  /** Hidden units of the word RNN. */
  wordHidden: number;
  /** Weight of L_y in L_MI (1 [R]). */
  wordWeight: number;
}

/** The defaults: SynthLips 32x32 (mouth box rows 15–23, cols 10–20), L=4, K=4, F=64, 5 bits. */
export const defaultMiConfig: MiFlowConfig = {
  channels: 3,
  size: 32,
  levels: 4,
  depth: 4,
  hidden: 64,
  affine: true,
  lu: true,
  nBits: 5,
  box: { top: 15, bottom: 23, left: 10, right: 20 },
  alpha: 0.1,
  temperature: 0.7,
  ld: true,
  li: true,
  words: 0,
  wordHidden: 256,
  wordWeight: 1,
};

/** The terms of L_MI for a batch, each a [1] tensor. */
export interface MiLosses {
  /** What the optimizer minimises: L_d + α L_r + L_i (+ w_y L_y), less the switched-off terms. */
  total: Tensor;
  /** L_d, the conditional NLL in bits/dim of the n-bit image (always computed, for logging). */
  d: Tensor;
  /** L_r, −ln p_φ(z^r | c) in bits/dim. */
  r: Tensor;
  /** L_i, the mean squared error of f⁻¹(z^i, ẑ^r) against the clean image (when computed). */
  i?: Tensor;
  /** L_y, the word classifier's mean cross-entropy in nats (with `words`). */
  y?: Tensor;
  /** The word classifier's logits of each clip's last frame [B, words] (with `words`). */
  lastLogits?: Tensor;
  /** z^i of the batch, recorded (the hybrid's AF terms use it). */
  zi: Tensor;
  /** z^r of the batch, recorded. */
  zr: Tensor[];
}

/** Clip structure of a batch for L_y: B clips of T frames each, rows clip-major (b·T + t). */
export interface WordBatch {
  /** Frames per clip T. */
  frames: number;
  /** Word of each clip (B labels). */
  labels: ArrayLike<number>;
}

/** Inputs of `MiFlow.losses` besides the dequantised batch. */
export interface MiLossOptions {
  /** The clean (not dequantised) images L_i compares with (default: x̃ itself). */
  clean?: Tensor;
  /** Standard normals for ε, called once per level of z^r with the element count. */
  noise: (n: number) => Float32Array;
  /** The clip structure and words, for L_y (required when the model has a word classifier). */
  words?: WordBatch;
}

/**
 * 2x2 max-pooling at stride 2, [N, C, H, W] -> [N, C, H/2, W/2], composed of recorded ops: the
 * squeeze puts a window's four pixels in channels 4c..4c+3, two even/odd splits take them apart,
 * and max(a, b) = where(relu(a − b), a, b) three times: exact values, and the gradient goes to
 * the kept pixel (to b at a tie).
 */
export function maxPool2x2(x: Tensor): Tensor {
  if (x.shape.length !== 4 || x.shape[2] % 2 || x.shape[3] % 2 || x.shape[0] < 1) {
    throw new Error(
      `flowgpu: maxPool2x2: x ${fmtShape(x.shape)} is not [N, C, H, W] with even H and W`,
    );
  }
  const [even, odd] = evenOddChannels(squeeze(x));
  // squeeze: channel 4c + 2dy + dx; even = (dy, dx) ∈ {(0,0), (1,0)}, odd = {(0,1), (1,1)}.
  const [t00, t10] = evenOddChannels(even);
  const [t01, t11] = evenOddChannels(odd);
  // The mask (a > b) takes no gradient; the selection passes it to the side it kept.
  const max = (a: Tensor, b: Tensor) => where(noGrad(() => relu(sub(a, b))), a, b);
  return max(max(t00, t01), max(t10, t11));
}

/** p_φ(z^r | c): per level Conv3x3 → ReLU → MaxPool2x2, then a zero conv to (μ_l, ln σ_l). */
export class ConditionPrior {
  /** The 3x3 convolutions c_{l−1} → c_l (before ReLU and pooling). */
  readonly convs: Conv2d[] = [];
  /** Zero-initialised heads c_l → [μ_l, ln σ_l] (so the prior starts as N(0, I)). */
  readonly heads: ZeroConv[] = [];

  /**
   * A prior for latents shaped `zShapes` ([C_l, H_l, W_l], l = 1..L−1, each halving the previous
   * resolution, the first half the condition's) from a condition of `channels` channels.
   */
  constructor(s: Scope, readonly channels: number, readonly zShapes: number[][]) {
    let cin = channels;
    zShapes.forEach(([cz], l) => {
      const g = s.child(`level${l + 1}`);
      // PyTorch's default conv init (U(±1/√fan_in)), as the reference code leaves it.
      const bound = 1 / Math.sqrt(cin * 9);
      this.convs.push(new Conv2d(g.child("conv"), cin, cz, 3, { init: uniform(-bound, bound) }));
      this.heads.push(new ZeroConv(g.child("head"), cz, 2 * cz));
      cin = cz;
    });
  }

  /** (μ_l, ln σ_l) of every level, each shaped like z_l ([N, C_l, H_l, W_l]). */
  apply(c: Tensor): { mu: Tensor[]; logStd: Tensor[] } {
    const [ch, h, w] = [this.channels, 2 * this.zShapes[0][1], 2 * this.zShapes[0][2]];
    const s = c.shape;
    if (s.length !== 4 || s[1] !== ch || s[2] !== h || s[3] !== w) {
      throw new Error(
        `flowgpu: mi: condition ${fmtShape(s)} does not match the model's [N, ${ch}, ${h}, ${w}]`,
      );
    }
    const mu: Tensor[] = [], logStd: Tensor[] = [];
    let x = c;
    this.convs.forEach((conv, l) => {
      // relu(maxpool(·)) = maxpool(relu(·)): ReLU is monotone, and on a quarter of the elements.
      x = relu(maxPool2x2(conv.apply(x)));
      const cz = this.zShapes[l][0];
      const [m, ls] = splitChannels(this.heads[l].apply(x), [cz, cz]);
      mu.push(m);
      logStd.push(ls);
    });
    return { mu, logStd };
  }
}

function checkConfig(c: MiFlowConfig): void {
  const int = (what: string, v: number, lo: number) => {
    if (!(Number.isInteger(v) && v >= lo)) {
      throw new Error(`flowgpu: mi: ${what} must be an integer >= ${lo}, got ${v}`);
    }
  };
  int("levels", c.levels, 2);
  int("channels", c.channels, 1);
  int("size", c.size, 2);
  int("words", c.words, 0);
  if (c.size % 2 ** c.levels) {
    throw new Error(
      `flowgpu: mi: a ${c.size}x${c.size} image cannot be squeezed ${c.levels} times ` +
        `(the side must be divisible by 2^levels = ${2 ** c.levels})`,
    );
  }
  const b = c.box;
  const inside = [b.top, b.bottom, b.left, b.right].every((v) => Number.isInteger(v)) &&
    0 <= b.top && b.top <= b.bottom && b.bottom < c.size &&
    0 <= b.left && b.left <= b.right && b.right < c.size;
  if (!inside) {
    throw new Error(
      `flowgpu: mi: mouth box rows ${b.top}..${b.bottom}, cols ${b.left}..${b.right} is not a ` +
        `non-empty box inside the ${c.size}x${c.size} image`,
    );
  }
  for (const [what, v] of [["alpha", c.alpha], ["temperature", c.temperature]] as const) {
    if (!(Number.isFinite(v) && v >= 0)) {
      throw new Error(`flowgpu: mi: ${what} must be a finite number >= 0, got ${v}`);
    }
  }
  if (!c.ld && !c.li && !(c.alpha > 0) && !(c.words > 0 && c.wordWeight > 0)) {
    throw new Error("flowgpu: mi: every loss term is switched off (L_d, L_i, α L_r and L_y)");
  }
}

/** The MI flow: Glow with plain splits, the conditional prior on z^r, N(0, I) on z^i. */
export class MiFlow {
  /** The full configuration (defaults filled in). */
  readonly cfg: MiFlowConfig;
  /** The flow f_θ (plain splits: the split-off latents' prior is p_φ(z^r | c)). */
  readonly glow: Glow;
  /** p_φ(z^r | c). */
  readonly prior: ConditionPrior;
  /** The word classifier C_ψ on z^r_1 sequences, when `words` > 0. */
  readonly word?: WordRnn;
  /** The mouth-box mask M as [1, C, H, W] (a fixed tensor of the store: `prior.mask`). */
  readonly mask: Tensor;
  /** Elements per image D. */
  readonly dims: number;
  readonly #nBits: Tensor;

  /** `scope` should be the store's root: `flow`, `prior` (and `word`) become its groups. */
  constructor(scope: Scope, cfg: Partial<MiFlowConfig> = {}) {
    const c: MiFlowConfig = { ...defaultMiConfig, ...cfg };
    checkConfig(c);
    this.cfg = c;
    const { channels, size } = c;
    this.dims = channels * size * size;
    this.glow = new Glow({
      channels,
      height: size,
      width: size,
      levels: c.levels,
      depth: c.depth,
      hidden: c.hidden,
      affine: c.affine,
      lu: c.lu,
      nBits: c.nBits,
      splitPriors: false,
    }, scope.child("flow"));
    const zr = this.glow.latentShapes.slice(0, -1);
    const ps = scope.child("prior");
    this.prior = new ConditionPrior(ps, channels, zr);
    const plane = new Float32Array(size * size);
    for (let y = c.box.top; y <= c.box.bottom; y++) {
      plane.fill(1, y * size + c.box.left, y * size + c.box.right + 1);
    }
    const m = new Float32Array(this.dims);
    for (let k = 0; k < channels; k++) m.set(plane, k * size * size);
    this.mask = ps.fixed("mask", [1, channels, size, size], m);
    if (c.words > 0) {
      const [c1, h1, w1] = zr[0];
      this.word = new WordRnn(scope.child("word"), c1 * h1 * w1, c.wordHidden, c.words);
    }
    this.#nBits = Tensor.constant([c.nBits], [1], "n_bits");
  }

  #check(x: Tensor, what: string): void {
    const { channels, size } = this.cfg;
    const s = x.shape;
    if (s.length !== 4 || s[0] < 1 || s[1] !== channels || s[2] !== size || s[3] !== size) {
      throw new Error(
        `flowgpu: mi: ${what} ${fmtShape(s)} does not match the model's ` +
          `[N, ${channels}, ${size}, ${size}]`,
      );
    }
  }

  /** The condition c = M ⊙ x: the image inside the mouth box, zeros elsewhere. */
  condition(x: Tensor): Tensor {
    this.#check(x, "image");
    return mul(x, this.mask);
  }

  /** The flow and the prior: z^r, z^i, (μ, ln σ), L_d (bits/dim of the n-bit image) and L_r. */
  #likelihood(x: Tensor) {
    const { latents, logdet } = this.glow.flow(x);
    const zr = latents.slice(0, -1), zi = latents[latents.length - 1];
    const p = this.prior.apply(this.condition(x));
    let logpR = gaussianLogProb(zr[0], p.mu[0], p.logStd[0]);
    for (let l = 1; l < zr.length; l++) {
      logpR = add(logpR, gaussianLogProb(zr[l], p.mu[l], p.logStd[l]));
    }
    const perDim = -1 / (this.dims * Math.LN2);
    const r = scale(mean(logpR), perDim);
    const logp = add(add(gaussianLogProb(zi), logpR), logdet);
    const d = add(scale(mean(logp), perDim), this.#nBits);
    return { zr, zi, p, d, r };
  }

  /** L_d alone: the batch's mean conditional NLL −ln p(x̃ | c) in bits/dim of the n-bit image. */
  bitsPerDim(x: Tensor): Tensor {
    this.#check(x, "image");
    return this.#likelihood(x).d;
  }

  /**
   * Every term of L_MI for a batch of dequantised images x̃ (see the file comment): the flow,
   * the prior from c = M ⊙ x̃, the draw ẑ^r, the tracked decode, and L_y with `words`.
   */
  losses(x: Tensor, o: MiLossOptions): MiLosses {
    this.#check(x, "image");
    const c = this.cfg;
    if (o.clean) this.#check(o.clean, "clean image");
    if (o.clean && o.clean.shape[0] !== x.shape[0]) {
      throw new Error(
        `flowgpu: mi: clean images ${fmtShape(o.clean.shape)} and x̃ ${
          fmtShape(x.shape)
        } differ in N`,
      );
    }
    if (this.word && !o.words) {
      throw new Error("flowgpu: mi: a model with a word classifier needs the batch's clips");
    }
    const { zr, zi, p, d, r } = this.#likelihood(x);
    const parts: Tensor[] = [];
    if (c.ld) parts.push(d);
    if (c.alpha > 0) parts.push(scale(r, c.alpha));
    let i: Tensor | undefined;
    if (c.li) {
      const t = c.temperature;
      const draw = p.mu.map((mu, l) => {
        const eps = o.noise(mu.size);
        if (eps.length !== mu.size) {
          throw new Error(
            `flowgpu: mi: noise gave ${eps.length} values for z_${l + 1} ${fmtShape(mu.shape)}`,
          );
        }
        const e = Tensor.from(t === 1 ? eps : eps.map((v) => v * t), mu.shape);
        // z = μ + exp(2 ln σ / 2) (T ε): the op's log-variance is 2 ln σ.
        return reparameterize(mu, scale(p.logStd[l], 2), e);
      });
      const xHat = this.glow.decode([...draw, zi], { grad: true });
      i = mse(xHat, o.clean ?? x);
      parts.push(i);
    }
    let y: Tensor | undefined, lastLogits: Tensor | undefined;
    if (this.word && o.words) {
      const z1 = zr[0];
      const u = reshape(z1, [z1.shape[0], z1.size / z1.shape[0]]);
      const w = this.word.loss(u, o.words.frames, o.words.labels);
      y = w.loss;
      lastLogits = w.last;
      if (c.wordWeight > 0) parts.push(scale(y, c.wordWeight));
    }
    const total = parts.reduce((a, b) => add(a, b));
    return { total, d, r, i, y, lastLogits, zi, zr };
  }

  /** z^r (z_1..z_{L−1}) and z^i (z_L) of images x, without gradient. */
  encode(x: Tensor): { zr: Tensor[]; zi: Tensor } {
    this.#check(x, "image");
    const z = this.glow.encode(x);
    return { zr: z.slice(0, -1), zi: z[z.length - 1] };
  }

  /** x = f⁻¹(z^i, z^r); recorded on the tape only with `{ grad: true }`. */
  decode(zi: Tensor, zr: Tensor[], opts: InverseOptions = {}): Tensor {
    return this.glow.decode([...zr, zi], opts);
  }

  /**
   * z^r ~ p_φ(· | c) at temperature T (the paper's generation, G2; T = 0 gives the prior means),
   * without gradient.
   */
  samplePrior(c: Tensor, noise: (n: number) => Float32Array, t: number): Tensor[] {
    return noGrad(() => {
      const p = this.prior.apply(c);
      return p.mu.map((mu, l) => {
        const e = Tensor.from(noise(mu.size).map((v) => v * t), mu.shape);
        return reparameterize(mu, scale(p.logStd[l], 2), e);
      });
    });
  }

  /** Free what the model holds besides its store. */
  release(): void {
    this.#nBits.release();
  }
}

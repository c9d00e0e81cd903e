// FUNS, the Flow U-Net with Squeeze modules (Kondo et al.; glow-funs.md §2). A plain Glow f maps
// the target x to latents z(1..L); the condition c enters only through their prior: a U-Net-like
// encoder gives features u(l) at each level's resolution, and a squeeze module turns them into
//   μ(l) = 2 tanh(M ⊙ h_μ + b_μ),   log σ²(l) = b (exp(−(M ⊙ h_σ + b_σ)²) − 1),   M = ReLU(m)
// so that latent elements with M = 0 get a prior independent of c (z_iv) and the others one that
// depends on c (z_sp). A decoder reconstructs c from latents drawn from that prior. The loss:
//   L_flow + L_recons + α ‖M‖₁ + β Σ M · H[e(z|c)],
// per-sample sums in nats averaged over the batch (α·‖M‖₁ once per step).
import { BatchNorm, Conv2d } from "../nn/layers.ts";
import { constant, normal, type Scope, zeros } from "../nn/store.ts";
import {
  add,
  exp,
  leakyRelu,
  mul,
  neg,
  relu,
  scale,
  square,
  sub,
  tanh,
} from "../ops/elementwise.ts";
import { gaussianLogProb } from "../ops/loss.ts";
import { mean, sum } from "../ops/reduce.ts";
import { upsample2x } from "../ops/resample.ts";
import { concatChannels, splitChannels } from "../ops/shape.ts";
import { noGrad } from "../ops/tape.ts";
import { fmtShape, Tensor } from "../ops/tensor.ts";
import { Glow } from "./glow.ts";

/** log(2πe): the range of log σ² is (−b, 0], so each element's entropy lies in (0, b/2]. */
export const LOG_2PIE = Math.log(2 * Math.PI * Math.E);
const SLOPE = 0.2;

// Scalar operands made once and kept: a fresh Tensor.from would be an upload every step.
const scalars = new Map<number, Tensor>();
function scalar(v: number): Tensor {
  let t = scalars.get(v);
  if (!t || t.released) scalars.set(v, t = Tensor.constant([v], [1], `scalar ${v}`));
  return t;
}

/** Shapes and loss weights of a `Funs`. */
export interface FunsConfig {
  /** Target channels. */
  channels: number;
  /** Condition channels. */
  condChannels: number;
  /** Height and width of targets and conditions (divisible by 2^levels). */
  size: number;
  /** Flow levels (L); the encoder and decoder have 3 residual blocks per level. */
  levels: number;
  /** Flow steps per level (K). */
  depth: number;
  /** Hidden channels of the couplings. */
  hidden: number;
  /** Affine couplings (true) or additive ones (false). */
  affine?: boolean;
  /** Encoder/decoder channels at full resolution (doubled at every halving). */
  base: number;
  /** Bit depth of the targets. */
  nBits: number;
  /** Weight of ‖M‖₁ (paper: 0.01). */
  alpha: number;
  /** Weight of the mask-weighted prior entropy (paper: 0.1). */
  beta: number;
}

/** The terms of the FUNS objective, each a [1] tensor (nats per sample, batch-averaged). */
export interface FunsLosses {
  /** L_flow + L_recons + α‖M‖₁ + β·entropy. */
  total: Tensor;
  /** −log e(f(x) | c) − log|det J|. */
  flow: Tensor;
  /** ½‖c − ĉ(z̃)‖². */
  recons: Tensor;
  /** ‖M‖₁. */
  squeeze: Tensor;
  /** ½ Σ M (log σ² + log 2πe). */
  entropy: Tensor;
}

/** Pre-activation residual block: 2 x (BN, LeakyReLU, conv3x3) + skip; resamples by 2 if asked. */
export class ResBlock {
  /** Normalisation before the first convolution. */
  readonly bn1: BatchNorm;
  /** First conv3x3 (stride 2 when downsampling). */
  readonly conv1: Conv2d;
  /** Normalisation before the second convolution. */
  readonly bn2: BatchNorm;
  /** Second conv3x3. */
  readonly conv2: Conv2d;
  /** 1x1 projection of the skip path, when channels or resolution change. */
  readonly skip?: Conv2d;

  /** `resample`: halve the resolution (stride 2), double it (nearest ×2), or keep it. */
  constructor(s: Scope, cin: number, cout: number, readonly resample: "down" | "up" | "none") {
    this.bn1 = new BatchNorm(s.child("bn1"), cin);
    this.conv1 = new Conv2d(s.child("conv1"), cin, cout, 3, {
      stride: resample === "down" ? 2 : 1,
    });
    this.bn2 = new BatchNorm(s.child("bn2"), cout);
    this.conv2 = new Conv2d(s.child("conv2"), cout, cout, 3);
    if (cin !== cout || resample !== "none") {
      this.skip = new Conv2d(s.child("skip"), cin, cout, 1, {
        padding: 0,
        stride: resample === "down" ? 2 : 1,
      });
    }
  }

  /** conv2(lrelu(bn2(conv1(resample(lrelu(bn1(x))))))) + skip(resample(x)). */
  apply(x: Tensor): Tensor {
    let h = leakyRelu(this.bn1.apply(x), SLOPE);
    const xs = this.resample === "up" ? upsample2x(x) : x;
    if (this.resample === "up") h = upsample2x(h);
    h = this.conv2.apply(leakyRelu(this.bn2.apply(this.conv1.apply(h)), SLOPE));
    return add(h, this.skip ? this.skip.apply(xs) : xs);
  }

  /** BatchNorm mode: batch statistics (true) or the running ones (false). */
  set training(t: boolean) {
    this.bn1.training = t;
    this.bn2.training = t;
  }
}

/** The squeeze module F(l): condition features -> per-element (μ, log σ²) and the mask M. */
export class SqueezeModule {
  /** NN_sq: conv3x3 from the features to [h_μ, h_σ]. */
  readonly conv: Conv2d;
  /** The mask logits m ([1, C, H, W], N(0, 1) init): M = ReLU(m). */
  readonly m: Tensor;
  /** Per-element offset b_μ. */
  readonly bMu: Tensor;
  /** Per-element offset b_σ. */
  readonly bSigma: Tensor;

  /** A module for features of `cu` channels and latents of shape `zShape` ([C, H, W]). */
  constructor(s: Scope, cu: number, readonly zShape: number[]) {
    const [cz] = zShape;
    // Random (not zero) init, so h ≠ 0 and M gets a likelihood gradient from the start.
    this.conv = new Conv2d(s.child("conv"), cu, 2 * cz, 3, { init: normal(0.05) });
    this.m = s.param("mask_logit", [1, ...zShape], normal(1));
    this.bMu = s.param("b_mu", [1, ...zShape], zeros);
    // 0.1, not 0: f_σ'(0) = 0 would pin σ = 1 on the condition-invariant elements.
    this.bSigma = s.param("b_sigma", [1, ...zShape], constant(0.1));
  }

  /** M = ReLU(m) ([1, C, H, W]). */
  mask(): Tensor {
    return relu(this.m);
  }

  /** (μ, log σ²) for features u, each [N, C_z, H, W]. */
  prior(u: Tensor, M: Tensor = this.mask()): { mu: Tensor; logVar: Tensor } {
    const [hMu, hSigma] = splitChannels(this.conv.apply(u), [this.zShape[0], this.zShape[0]]);
    const mu = scale(tanh(add(mul(hMu, M), this.bMu)), 2);
    const q = add(mul(hSigma, M), this.bSigma);
    const logVar = scale(sub(exp(neg(square(q))), scalar(1)), LOG_2PIE);
    return { mu, logVar };
  }
}

/** The prior e(z | c) of every level, [N, C, H, W] each (masks [1, C, H, W]). */
export interface FunsPrior {
  /** Means μ(l)(c). */
  mu: Tensor[];
  /** Log-variances log σ²(l)(c). */
  logVar: Tensor[];
  /** M(l) = ReLU(m(l)). */
  masks: Tensor[];
}

/** The FUNS model: a plain Glow whose latents' prior comes from the condition (see above). */
export class Funs {
  /** The unconditional flow (no split priors). */
  readonly glow: Glow;
  /** The encoder's first convolution (condition channels to `base`). */
  readonly stem: Conv2d;
  /** The encoder: 3 residual blocks per level, the first halving the resolution. */
  readonly encoder: ResBlock[][] = [];
  /** One squeeze module per level. */
  readonly squeezes: SqueezeModule[] = [];
  /** The decoder's 1x1 convolution lifting the top latent. */
  readonly lift: Conv2d;
  /** The decoder: 3 residual blocks per level, the first doubling the resolution. */
  readonly decoder: ResBlock[][] = [];
  /** The decoder's last convolution (to condition channels, no activation). */
  readonly head: Conv2d;
  /** Elements per sample of the target (for bits/dim). */
  readonly dims: number;

  /** `scope` should be the store's root: the flow, encoder, prior and decoder are its groups. */
  constructor(scope: Scope, readonly cfg: FunsConfig) {
    const { channels, condChannels, size, levels, base } = cfg;
    this.dims = channels * size * size;
    this.glow = new Glow({
      channels,
      height: size,
      width: size,
      levels,
      depth: cfg.depth,
      hidden: cfg.hidden,
      affine: cfg.affine ?? true,
      nBits: cfg.nBits,
      splitPriors: false,
    }, scope.child("flow"));
    const enc = scope.child("encoder");
    this.stem = new Conv2d(enc.child("stem"), condChannels, base, 3);
    const width = (l: number) => base * 2 ** l;
    for (let l = 1; l <= levels; l++) {
      const g = enc.child(`level${l}`);
      this.encoder.push([
        new ResBlock(g.child("block0"), width(l - 1), width(l), "down"),
        new ResBlock(g.child("block1"), width(l), width(l), "none"),
        new ResBlock(g.child("block2"), width(l), width(l), "none"),
      ]);
      const zShape = this.glow.latentShapes[l - 1];
      this.squeezes.push(
        new SqueezeModule(scope.child("prior").child(`level${l}`), width(l), zShape),
      );
    }
    // Decoder: z(L) lifted to width(L), then per level up to the next resolution, with the
    // sampled latent of that level concatenated (the skip paths carry latents, not features).
    const dec = scope.child("decoder");
    const top = this.glow.latentShapes[levels - 1];
    this.lift = new Conv2d(dec.child("lift"), top[0], width(levels), 1, { padding: 0 });
    for (let l = levels; l >= 1; l--) {
      const g = dec.child(`level${l}`);
      const cin = width(l) + (l < levels ? this.glow.latentShapes[l - 1][0] : 0);
      this.decoder.push([
        new ResBlock(g.child("block0"), cin, width(l - 1), "up"),
        new ResBlock(g.child("block1"), width(l - 1), width(l - 1), "none"),
        new ResBlock(g.child("block2"), width(l - 1), width(l - 1), "none"),
      ]);
    }
    this.head = new Conv2d(dec.child("head"), base, condChannels, 3);
  }

  /** BatchNorm mode of the encoder and decoder: batch statistics (true) or running ones. */
  set training(t: boolean) {
    for (const b of [...this.encoder, ...this.decoder].flat()) b.training = t;
  }

  #check(t: Tensor, c: number, what: string): void {
    const { size } = this.cfg;
    const s = t.shape;
    if (s.length !== 4 || s[1] !== c || s[2] !== size || s[3] !== size) {
      throw new Error(`flowgpu: funs: ${what} ${fmtShape(s)} is not [N, ${c}, ${size}, ${size}]`);
    }
  }

  /** The prior e(z | c) of every level: μ, log σ², and the masks M. */
  prior(c: Tensor): FunsPrior {
    this.#check(c, this.cfg.condChannels, "condition");
    let u = this.stem.apply(c);
    const out: FunsPrior = { mu: [], logVar: [], masks: [] };
    this.encoder.forEach((blocks, l) => {
      for (const b of blocks) u = b.apply(u);
      const M = this.squeezes[l].mask();
      const { mu, logVar } = this.squeezes[l].prior(u, M);
      out.mu.push(mu);
      out.logVar.push(logVar);
      out.masks.push(M);
    });
    return out;
  }

  /** ĉ, the decoder's mean of d(c | z), from latents z(1..L). */
  decode(z: Tensor[]): Tensor {
    const L = this.cfg.levels;
    let h = this.lift.apply(z[L - 1]);
    this.decoder.forEach((blocks, i) => {
      const l = L - i; // this group brings level l's resolution up to level l-1's
      for (const b of blocks) h = b.apply(h);
      if (l - 2 >= 0) h = concatChannels([h, z[l - 2]]);
    });
    return this.head.apply(h);
  }

  /** z = μ + T exp(v/2) ε for every level, with ε from `noise` (standard normals). */
  draw(p: { mu: Tensor[]; logVar: Tensor[] }, noise: (n: number) => Float32Array, t = 1): Tensor[] {
    return p.mu.map((mu, l) => {
      const eps = Tensor.from(noise(mu.size), mu.shape);
      return add(mu, mul(exp(scale(p.logVar[l], 0.5)), t === 1 ? eps : scale(eps, t)));
    });
  }

  /**
   * Every term of the objective for a batch (x, c), each a [1] tensor: flow (nats per sample),
   * recons, squeeze (‖M‖₁), entropy, and the total.
   */
  losses(x: Tensor, c: Tensor, noise: (n: number) => Float32Array): FunsLosses {
    this.#check(x, this.cfg.channels, "target");
    const n = x.shape[0];
    const p = this.prior(c);
    const { latents, logdet } = this.glow.flow(x);
    let nll: Tensor | undefined;
    latents.forEach((z, l) => {
      const lp = gaussianLogProb(z, p.mu[l], scale(p.logVar[l], 0.5));
      nll = nll ? sub(nll, lp) : neg(lp);
    });
    const flow = mean(sub(nll!, logdet));
    const cHat = this.decode(this.draw(p, noise));
    const recons = scale(sum(square(sub(cHat, c))), 0.5 / n);
    const squeeze = p.masks.map((M) => sum(M)).reduce((a, b) => add(a, b));
    const b = scalar(LOG_2PIE);
    const entropy = p.masks
      .map((M, l) => sum(mul(add(p.logVar[l], b), M)))
      .reduce((a, t) => add(a, t));
    const entropyMean = scale(entropy, 0.5 / n);
    const total = add(
      add(flow, recons),
      add(scale(squeeze, this.cfg.alpha), scale(entropyMean, this.cfg.beta)),
    );
    return { total, flow, recons, squeeze, entropy: entropyMean };
  }

  /** Target samples for conditions c at temperature T (no gradient). */
  sample(c: Tensor, noise: (n: number) => Float32Array, t = 1): Tensor {
    return noGrad(() => this.glow.decode(this.draw(this.prior(c), noise, t)));
  }

  /** The condition-invariant prior N(f_μ(b_μ), exp f_σ(b_σ)) of every level ([1, C, H, W]). */
  invariantPrior(): { mu: Tensor[]; logVar: Tensor[] } {
    const one = scalar(1);
    return {
      mu: this.squeezes.map((s) => scale(tanh(s.bMu), 2)),
      logVar: this.squeezes.map((s) => scale(sub(exp(neg(square(s.bSigma))), one), LOG_2PIE)),
    };
  }

  /** z with the elements where `keep` is 0 taken from `other` (masks [1, C, H, W], 0/1). */
  #mix(z: Tensor[], other: Tensor[], keep: Tensor[]): Tensor[] {
    return z.map((zl, l) => add(mul(zl, keep[l]), mul(other[l], sub(scalar(1), keep[l]))));
  }

  /** The M > 0 indicator of every level as [1, C, H, W] tensors. */
  async #specific(): Promise<Tensor[]> {
    const masks = await this.conditionMask();
    return masks.map((m, l) => Tensor.from(m, this.squeezes[l].m.shape));
  }

  /**
   * Algorithm 1 of the paper, from given images x alone (no condition needed):
   * "sp" redraws the condition-specific latents from e(z | ĉ), ĉ the decoder's reading of x;
   * "iv" redraws the condition-invariant ones from their c-free prior. BatchNorm should be in
   * eval mode (`training = false`).
   */
  async resample(
    x: Tensor,
    mode: "sp" | "iv",
    noise: (n: number) => Float32Array,
    t = 1,
  ): Promise<Tensor> {
    const specific = await this.#specific();
    return noGrad(() => {
      const z = this.glow.encode(x);
      if (mode === "sp") {
        const fresh = this.draw(this.prior(this.decode(z)), noise, t);
        return this.glow.decode(this.#mix(fresh, z, specific));
      }
      const n = x.shape[0];
      const iv = this.invariantPrior();
      const fresh = iv.mu.map((mu, l) => {
        const eps = Tensor.from(noise(n * mu.size), [n, ...mu.shape.slice(1)]);
        return add(mul(scale(eps, t), exp(scale(iv.logVar[l], 0.5))), mu);
      });
      return this.glow.decode(this.#mix(z, fresh, specific));
    });
  }

  /** Style transfer: the condition-specific latents of x1 with the invariant ones of x2. */
  async swap(x1: Tensor, x2: Tensor): Promise<Tensor> {
    const specific = await this.#specific();
    return noGrad(() =>
      this.glow.decode(this.#mix(this.glow.encode(x1), this.glow.encode(x2), specific))
    );
  }

  /** Which latent elements depend on the condition (M > 0), per level, as 0/1 arrays. */
  async conditionMask(): Promise<Float32Array[]> {
    const ms = await Tensor.readAll(this.squeezes.map((s) => s.m));
    return ms.map((m) => m.map((v) => (v > 0 ? 1 : 0)));
  }
}

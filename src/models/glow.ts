// Multi-scale Glow (Kingma & Dhariwal 2018; glow-funs.md §1): L levels of
// squeeze -> K x (actnorm -> 1x1 conv -> coupling) -> split, with a learned prior at each split
// and a Gaussian prior at the top, optionally class-conditional as in the reference code: a
// per-channel embedding of the label gives the top prior's mean and log-std, and an optional
// classifier on the spatial mean of the top latent adds an auxiliary cross-entropy.
//   log p(x) = sum_l log p(z_l | .) + sum_layers logdet
import { Linear } from "../nn/layers.ts";
import { ParamStore, type Scope, zeros } from "../nn/store.ts";
import { add, exp, mul, scale } from "../ops/elementwise.ts";
import { crossEntropy, gaussianLogProb } from "../ops/loss.ts";
import { matmul } from "../ops/matmul.ts";
import { mean, sumPerSample } from "../ops/reduce.ts";
import { concatChannels, reshape, splitChannels } from "../ops/shape.ts";
import { squeeze, unsqueeze } from "../ops/squeeze.ts";
import { fill, noGrad } from "../ops/tape.ts";
import { fmtShape, Tensor } from "../ops/tensor.ts";
import { Rng } from "../util/rng.ts";
import { addLogdet, FlowStep, type InverseOptions, SplitPrior } from "./flow.ts";

/** Shape and options of a `Glow` (defaults in `defaultGlowConfig`). */
export interface GlowConfig {
  /** Image channels, height, width. */
  channels: number;
  /** Image height in pixels (divisible by 2^levels). */
  height: number;
  /** Image width in pixels (divisible by 2^levels). */
  width: number;
  /** Number of squeeze-steps-split levels (L). */
  levels: number;
  /** Steps per level (K). */
  depth: number;
  /** Hidden channels of the coupling networks. */
  hidden: number;
  /** Affine couplings (true) or additive ones (false). */
  affine: boolean;
  /** LU-parameterised 1x1 convolutions (true) or plain W with a GPU LU log-det (false). */
  lu: boolean;
  /** Bit depth n of the data (bits/dim adds n for x = (k + u) / 2^n - 1/2). */
  nBits: number;
  /** Number of classes for a class-conditional top prior (0: unconditional N(0, I)). */
  classes: number;
  /** Seed of the parameter store Glow makes when it is not given a scope. */
  seed: number;
  /**
   * Learned split priors p(z2 | z1) (true), or plain splits whose latents another model gives a
   * prior (false: FUNS, whose condition encoder supplies every level's prior).
   */
  splitPriors: boolean;
}

/** The defaults: 1x32x32 images, 3 levels of 8 steps, 128 hidden channels, affine, LU, 8 bits. */
export const defaultGlowConfig: GlowConfig = {
  channels: 1,
  height: 32,
  width: 32,
  levels: 3,
  depth: 8,
  hidden: 128,
  affine: true,
  lu: true,
  nBits: 8,
  classes: 0,
  seed: 1,
  splitPriors: true,
};

/** One level of a Glow, after its squeeze: K flow steps, then a split (except the last). */
export interface GlowLevel {
  /** The K flow steps. */
  steps: FlowStep[];
  /** Whether this level splits off a latent (every level but the last). */
  splits: boolean;
  /** The split's learned prior, when the Glow has split priors. */
  split?: SplitPrior;
}

/**
 * Multi-scale Glow: L levels of squeeze, K flow steps and a split with a learned prior, with a
 * Gaussian (optionally class-conditional) prior at the top. Computes log p(x) and samples.
 */
export class Glow {
  /** The full configuration (defaults filled in). */
  readonly cfg: GlowConfig;
  /** Where the parameters live (`flow.*` by default). */
  readonly scope: Scope;
  /** The levels, from the image's resolution down. */
  readonly levels: GlowLevel[] = [];
  /** Shapes (without N) of z_1 .. z_L. */
  readonly latentShapes: number[][] = [];
  /** Dimensions of an image (C * H * W), for bits/dim. */
  readonly dims: number;
  #embedding?: Tensor;
  #classifier?: Linear;

  /** Parameters go in `scope` (default: a new store seeded with cfg.seed, scope "flow"). */
  constructor(cfg: Partial<GlowConfig> = {}, scope?: Scope) {
    const c: GlowConfig = { ...defaultGlowConfig, ...cfg };
    this.cfg = c;
    this.scope = scope ?? new ParamStore(c.seed).scope("flow");
    this.dims = c.channels * c.height * c.width;
    let [ch, h, w] = [c.channels, c.height, c.width];
    for (let l = 0; l < c.levels; l++) {
      if (h % 2 || w % 2) {
        throw new Error(
          `flowgpu: glow: a ${c.channels}x${c.height}x${c.width} image cannot be squeezed ` +
            `${c.levels} times (level ${l + 1} gets ${h}x${w}); pad it or use fewer levels`,
        );
      }
      [ch, h, w] = [ch * 4, h / 2, w / 2];
      const ls = this.scope.child(`level${l}`);
      const steps = Array.from(
        { length: c.depth },
        (_, k) => new FlowStep(ls.child(`step${k}`), ch, c.hidden, c),
      );
      const last = l === c.levels - 1;
      const split = last || !c.splitPriors ? undefined : new SplitPrior(ls.child("split"), ch);
      this.levels.push({ steps, splits: !last, split });
      if (!last) {
        this.latentShapes.push([ch - ch / 2, h, w]);
        ch = ch / 2;
      }
    }
    this.latentShapes.push([ch, h, w]);
    if (c.classes > 0) {
      const top = this.scope.child("top");
      this.#embedding = top.param("class_embedding", [c.classes, 2 * ch], zeros);
      this.#classifier = new Linear(top.child("classifier"), ch, c.classes, { init: zeros });
    }
  }

  /** The parameter store of `scope`. */
  get store(): ParamStore {
    return this.scope.store;
  }

  /** True once every actnorm ran its data-dependent initialisation (or was loaded). */
  get initialized(): boolean {
    const prefix = this.scope.prefix + ".";
    return [...this.store.flags].every(([k, f]) => !k.startsWith(prefix) || f.value);
  }

  #checkInput(x: Tensor): void {
    const { channels, height, width } = this.cfg;
    const s = x.shape;
    if (s.length !== 4 || s[1] !== channels || s[2] !== height || s[3] !== width) {
      throw new Error(
        `flowgpu: glow: input ${
          fmtShape(s)
        } does not match the model's [N, ${channels}, ${height}, ${width}]`,
      );
    }
  }

  #onehot(n: number, labels?: ArrayLike<number>): Tensor {
    const k = this.cfg.classes;
    if (!labels || labels.length !== n) {
      throw new Error(
        `flowgpu: glow: a class-conditional model needs ${n} labels, got ${labels?.length ?? 0}`,
      );
    }
    const onehot = new Float32Array(n * k);
    for (let i = 0; i < n; i++) {
      const y = labels[i];
      if (!Number.isInteger(y) || y < 0 || y >= k) {
        throw new Error(`flowgpu: glow: label ${y} not in [0, ${k})`);
      }
      onehot[i * k + y] = 1;
    }
    return Tensor.from(onehot, [n, k]);
  }

  /**
   * Mean and log-std of the top prior ([N, C, H, W] each), or undefined for N(0, I): the label's
   * embedding row, 2C values, broadcast over the top level's H x W (mean first, then log-std).
   */
  #topPrior(n: number, labels?: ArrayLike<number>): [Tensor, Tensor] | undefined {
    if (!this.#embedding) return undefined;
    const [c, h, w] = this.latentShapes[this.latentShapes.length - 1];
    const e = reshape(matmul(this.#onehot(n, labels), this.#embedding), [n * 2 * c]);
    // Adding a [N*2C] per-channel vector to zeros [1, N*2C, H, W] broadcasts it over H x W.
    const zero = fill(Tensor.empty([1, n * 2 * c, h, w], "zeros"), 0);
    const prior = reshape(add(zero, e), [n, 2 * c, h, w]);
    return splitChannels(prior, [c, c]) as [Tensor, Tensor];
  }

  /** Class logits [N, K] of the auxiliary classifier on the spatial mean of the top latent. */
  classLogits(top: Tensor): Tensor {
    if (!this.#classifier) throw new Error("flowgpu: glow: classLogits needs a model with classes");
    const [n, c, h, w] = top.shape;
    const pooled = scale(sumPerSample(reshape(top, [n * c, h * w])), 1 / (h * w));
    return this.#classifier.apply(reshape(pooled, [n, c]));
  }

  /** The flow: latents z_1..z_L, the log-det, and the split priors' log-densities. */
  flow(x: Tensor): { latents: Tensor[]; logdet: Tensor; logpSplits: Tensor[] } {
    this.#checkInput(x);
    if (!this.initialized) this.initialize(x);
    return this.#flow(x);
  }

  #flow(x: Tensor) {
    const latents: Tensor[] = [], logpSplits: Tensor[] = [];
    let logdet: Tensor | undefined;
    let h = x;
    for (const level of this.levels) {
      h = squeeze(h);
      for (const step of level.steps) {
        const r = step.forward(h);
        h = r.y;
        logdet = addLogdet(logdet, r.logdet);
      }
      if (level.split) {
        const { z1, z2, logp } = level.split.forward(h);
        latents.push(z2);
        logpSplits.push(logp);
        h = z1;
      } else if (level.splits) {
        const half = h.shape[1] / 2;
        const [z1, z2] = splitChannels(h, [half, h.shape[1] - half]);
        latents.push(z2);
        h = z1;
      }
    }
    latents.push(h);
    return { latents, logdet: logdet!, logpSplits };
  }

  /** log p(x) per sample in nats ([N]), and the top latent. */
  logProbAndTop(x: Tensor, labels?: ArrayLike<number>): { logp: Tensor; top: Tensor } {
    const { latents, logdet, logpSplits } = this.flow(x);
    const top = latents[latents.length - 1];
    const prior = this.#topPrior(x.shape[0], labels);
    let logp = prior ? gaussianLogProb(top, prior[0], prior[1]) : gaussianLogProb(top);
    for (const l of logpSplits) logp = add(logp, l);
    return { logp: add(logp, logdet), top };
  }

  /** log p(x) per sample, in nats ([N]). */
  logProb(x: Tensor, labels?: ArrayLike<number>): Tensor {
    return this.logProbAndTop(x, labels).logp;
  }

  /** Mean bits/dim minus the constant n_bits: -mean(log p(x)) / (D ln 2). Add nBits to report. */
  bitsPerDim(logp: Tensor): Tensor {
    return scale(mean(logp), -1 / (this.dims * Math.LN2));
  }

  /** Mean cross-entropy of the auxiliary classifier, in bits. */
  classBits(top: Tensor, labels: ArrayLike<number>): Tensor {
    return scale(crossEntropy(this.classLogits(top), Array.from(labels)), 1 / Math.LN2);
  }

  /**
   * The training loss: bits/dim (less n_bits) plus `classWeight` times the classifier's bits
   * (the reference code's weight_y; only for a class-conditional model).
   */
  loss(x: Tensor, labels?: ArrayLike<number>, classWeight = 0): Tensor {
    const { logp, top } = this.logProbAndTop(x, labels);
    const bpd = this.bitsPerDim(logp);
    if (!(classWeight > 0 && this.#classifier && labels)) return bpd;
    return add(bpd, scale(this.classBits(top, labels), classWeight));
  }

  /**
   * Data-dependent actnorm initialisation from one batch: a forward pass while `initialized` is
   * unset makes each actnorm set itself from its actual input, in order. Never repeated (a
   * checkpoint carries the actnorms' flags).
   */
  initialize(x: Tensor): void {
    if (this.initialized) return;
    this.#checkInput(x);
    noGrad(() => this.#flow(x));
  }

  /** Latents z_1..z_L of x (no gradient). */
  encode(x: Tensor): Tensor[] {
    return noGrad(() => this.flow(x).latents);
  }

  /**
   * x from latents z_1..z_L (the exact inverse of encode). Records nothing, unless
   * `{ grad: true }`: then a loss on x backpropagates into the latents and every flow parameter
   * (the MI flow's L_i on x̂ = f⁻¹(z)).
   */
  decode(latents: Tensor[], opts: InverseOptions = {}): Tensor {
    this.#checkLatents(latents);
    if (opts.grad) return this.#down(latents[latents.length - 1], (l) => latents[l], opts);
    return noGrad(() => this.#down(latents[latents.length - 1], (l) => latents[l]));
  }

  #checkLatents(latents: Tensor[]): void {
    const n = latents[0]?.shape[0];
    const want = this.latentShapes.map((s) => [n, ...s]);
    const ok = latents.length === want.length &&
      latents.every((z, l) =>
        z.shape.length === want[l].length && z.shape.every((d, i) => d === want[l][i])
      );
    if (!ok) {
      throw new Error(
        `flowgpu: glow: decode needs ${want.length} latents shaped ${
          this.latentShapes.map((s) => `[N, ${s.join(", ")}]`).join(", ")
        } (one N), got ${latents.map((z) => fmtShape(z.shape)).join(", ") || "none"}`,
      );
    }
  }

  /**
   * n samples at temperature T (std scaled by T); labels pick the classes of a class-conditional
   * model. Noise comes from `rng`, so a seeded rng gives reproducible samples.
   */
  sample(n: number, temperature = 1, rng: Rng = new Rng(1), labels?: ArrayLike<number>): Tensor {
    if (!this.cfg.splitPriors) {
      throw new Error("flowgpu: glow: without split priors, sample by decode(latents)");
    }
    return noGrad(() => {
      const [c, h, w] = this.latentShapes[this.latentShapes.length - 1];
      const eps = Tensor.from(rng.normalArray(n * c * h * w, temperature), [n, c, h, w]);
      const prior = this.#topPrior(n, labels);
      const top = prior ? add(prior[0], mul(exp(prior[1]), eps)) : eps;
      return this.#down(top, (l, z1) => {
        const [mu, logStd] = this.levels[l].split!.prior(z1);
        const e = Tensor.from(rng.normalArray(mu.size, temperature), mu.shape);
        return add(mu, mul(exp(logStd), e));
      });
    });
  }

  /**
   * Run the levels top-down from the top latent; `z2(l, z1)` gives level l's split latent. The
   * steps' inverses are recorded with `{ grad: true }`.
   */
  #down(
    top: Tensor,
    z2: (level: number, z1: Tensor) => Tensor,
    opts: InverseOptions = {},
  ): Tensor {
    let h = top;
    for (let l = this.levels.length - 1; l >= 0; l--) {
      const level = this.levels[l];
      if (level.splits) h = concatChannels([h, z2(l, h)]);
      for (let k = level.steps.length - 1; k >= 0; k--) h = level.steps[k].inverse(h, opts).x;
      h = unsqueeze(h);
    }
    return h;
  }
}

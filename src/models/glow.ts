// Multi-scale Glow (Kingma & Dhariwal 2018; glow-funs.md §1): L levels of
// squeeze -> K x (actnorm -> 1x1 conv -> coupling) -> split, with a learned prior at each split
// and a Gaussian (optionally class-conditional) prior at the top.
//   log p(x) = sum_l log p(z_l | .) + sum_layers logdet
import { Rng } from "../data/rng.ts";
import { add, exp, mul, scale } from "../ops/elementwise.ts";
import { gaussianLogProb } from "../ops/loss.ts";
import { linear } from "../ops/matmul.ts";
import { mean } from "../ops/reduce.ts";
import { concatChannels, evenOddChannels, reshape } from "../ops/shape.ts";
import { squeeze, unsqueeze } from "../ops/squeeze.ts";
import { noGrad } from "../ops/tape.ts";
import { fmtShape, Tensor } from "../ops/tensor.ts";
import { addLogdet, FlowStep, SplitPrior } from "./flow.ts";
import { Params } from "./params.ts";

export interface GlowConfig {
  /** Image channels, height, width. */
  channels: number;
  height: number;
  width: number;
  levels: number;
  /** Steps per level (K). */
  depth: number;
  /** Hidden channels of the coupling networks. */
  hidden: number;
  affine: boolean;
  lu: boolean;
  /** Bit depth n of the data (bits/dim adds n for x = (k + u) / 2^n - 1/2). */
  nBits: number;
  /** Number of classes for a class-conditional top prior (0: unconditional N(0, I)). */
  classes: number;
  seed: number;
}

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
};

interface Level {
  steps: FlowStep[];
  split?: SplitPrior;
}

export class Glow {
  readonly cfg: GlowConfig;
  readonly params: Params;
  readonly levels: Level[] = [];
  /** Shapes (without N) of z_1 .. z_L. */
  readonly latentShapes: number[][] = [];
  readonly dims: number;
  #top?: { w: Tensor; b: Tensor };

  constructor(cfg: Partial<GlowConfig> = {}) {
    const c: GlowConfig = { ...defaultGlowConfig, ...cfg };
    this.cfg = c;
    this.params = new Params(new Rng(c.seed));
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
      const name = `level${l}`;
      const steps = Array.from(
        { length: c.depth },
        (_, k) => new FlowStep(this.params, `${name}.step${k}`, ch, c.hidden, c),
      );
      const last = l === c.levels - 1;
      const split = last ? undefined : new SplitPrior(this.params, `${name}.split`, ch);
      this.levels.push({ steps, split });
      if (!last) {
        this.latentShapes.push([ch - ch / 2, h, w]);
        ch = ch / 2;
      }
    }
    this.latentShapes.push([ch, h, w]);
    if (c.classes > 0) {
      const top = this.latentShapes[c.levels - 1];
      const d = 2 * top[0] * top[1] * top[2];
      this.#top = {
        w: this.params.zeros("top.class_weight", [d, c.classes]),
        b: this.params.zeros("top.class_bias", [d]),
      };
    }
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

  /** Mean and log-std of the top prior ([N, C, H, W] each), or undefined for N(0, I). */
  #topPrior(n: number, labels?: ArrayLike<number>): [Tensor, Tensor] | undefined {
    if (!this.#top) return undefined;
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
    const [c, h, w] = this.latentShapes[this.latentShapes.length - 1];
    const hTop = linear(Tensor.from(onehot, [n, k]), this.#top.w, this.#top.b);
    return evenOddChannels(reshape(hTop, [n, 2 * c, h, w]));
  }

  /** The flow: latents z_1..z_L, the log-det, and the split priors' log-densities. */
  flow(x: Tensor): { latents: Tensor[]; logdet: Tensor; logpSplits: Tensor[] } {
    this.#checkInput(x);
    if (!this.params.initialized) this.initialize(x);
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
      }
    }
    latents.push(h);
    return { latents, logdet: logdet!, logpSplits };
  }

  /** log p(x) per sample, in nats ([N]). */
  logProb(x: Tensor, labels?: ArrayLike<number>): Tensor {
    const { latents, logdet, logpSplits } = this.flow(x);
    const top = latents[latents.length - 1];
    const prior = this.#topPrior(x.shape[0], labels);
    let logp = prior ? gaussianLogProb(top, prior[0], prior[1]) : gaussianLogProb(top);
    for (const l of logpSplits) logp = add(logp, l);
    return add(logp, logdet);
  }

  /** Mean bits/dim minus the constant n_bits: -mean(log p(x)) / (D ln 2). Add nBits to report. */
  loss(x: Tensor, labels?: ArrayLike<number>): Tensor {
    return scale(mean(this.logProb(x, labels)), -1 / (this.dims * Math.LN2));
  }

  /**
   * Data-dependent actnorm initialisation from one batch: a forward pass while `initialized` is
   * false makes each actnorm set itself from its actual input, in order. Never repeated (a
   * checkpoint load marks the model initialised).
   */
  initialize(x: Tensor): void {
    if (this.params.initialized) return;
    this.#checkInput(x);
    noGrad(() => this.#flow(x));
    this.params.initialized = true;
  }

  /** Latents z_1..z_L of x (no gradient). */
  encode(x: Tensor): Tensor[] {
    return noGrad(() => this.flow(x).latents);
  }

  /** x from latents z_1..z_L (the exact inverse of encode). */
  decode(latents: Tensor[]): Tensor {
    return noGrad(() => this.#down(latents[latents.length - 1], (l) => latents[l]));
  }

  /**
   * n samples at temperature T (std scaled by T); labels pick the classes of a class-conditional
   * model. Noise comes from `rng`, so a seeded rng gives reproducible samples.
   */
  sample(n: number, temperature = 1, rng = new Rng(1), labels?: ArrayLike<number>): Tensor {
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

  /** Run the levels top-down from the top latent; `z2(l, z1)` gives level l's split latent. */
  #down(top: Tensor, z2: (level: number, z1: Tensor) => Tensor): Tensor {
    let h = top;
    for (let l = this.levels.length - 1; l >= 0; l--) {
      const level = this.levels[l];
      if (level.split) h = concatChannels([h, z2(l, h)]);
      for (let k = level.steps.length - 1; k >= 0; k--) h = level.steps[k].inverse(h).x;
      h = unsqueeze(h);
    }
    return h;
  }
}

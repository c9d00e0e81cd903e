// Adam with bias correction, decoupled weight decay (AdamW) and global gradient-norm clipping.
import { f32, upload } from "../gpu/encoder.ts";
import { kernel } from "../gpu/kernel.ts";
import { fill } from "./tape.ts";
import { Tensor } from "./tensor.ts";

const FILE = "adam.wgsl";
const SUMSQ = {
  1: kernel(FILE, "sumsq", {
    params: "@0 uniform ss",
    g: "@1 read ss_g",
    partials: "@2 read_write ss_part",
  }),
  4: kernel(FILE, "sumsq4", {
    params: "@0 uniform ss",
    g: "@1 read ss4_g",
    partials: "@2 read_write ss_part",
  }),
};
/** Lanes per chunk of the gradient-norm partial sums: the WGSL override G (its default). */
const LANES = 8;
const CLIP_FINISH = kernel(FILE, "clip_finish", {
  params: "@0 uniform fin",
  partials: "@1 read fin_part",
  hyper: "@2 read_write fin_hyper",
});
const ADAM = kernel(FILE, "adam", {
  params: "@0 uniform ap",
  hyper: "@1 read ad_hyper",
  g: "@2 read ad_g",
  p: "@3 read_write ad_p",
  m: "@4 read_write ad_m",
  v: "@5 read_write ad_v",
});

/** Hyperparameters of `Adam`; the defaults are PyTorch's. */
export interface AdamOptions {
  /** Learning rate (default 1e-3); `step(lr)` can override it per step. */
  lr?: number;
  /** Decay of the first-moment average (default 0.9). */
  beta1?: number;
  /** Decay of the second-moment average (default 0.999). */
  beta2?: number;
  /** Added to sqrt(v̂) in the denominator (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay (AdamW): p -= lr * wd * p. */
  weightDecay?: number;
  /** Clip the global gradient norm to this value (0 or undefined: no clipping). */
  clipNorm?: number;
  /**
   * Prefix of the moments' checkpoint names (default "adam": `adam.m.<param>`); two optimizers
   * of one group need distinct prefixes.
   */
  stateName?: string;
}

/** What Adam needs of a parameter group (src/nn/store.ts): flat values and gradients. */
export interface Group {
  /** Group name (names the moment tensors). */
  readonly name: string;
  /** Elements of the flat buffers, padding included. */
  readonly size: number;
  /** Flat parameter values, [size]; updated in place. */
  readonly values: Tensor;
  /** Flat gradients, [size]. */
  readonly grads: Tensor;
  /** The parameters viewing into `values`. */
  readonly params: Tensor[];
  /** Zero every gradient of the group. */
  zeroGrad(): void;
  /** Per-parameter views of a flat tensor of this layout, named `<prefix><param name>`. */
  views(flat: Tensor, prefix: string): Map<string, Tensor>;
}

/**
 * Adam over whole parameter groups: per step one gradient-norm dispatch per group, one to finish
 * the norm, one update per group and one gradient zeroing per group, whatever the number of
 * tensors. Moments live in flat buffers of the groups' layout. Within a group a parameter that
 * got no gradient this step sees a zero gradient (its moments decay), as in PyTorch's AdamW
 * with zeroed gradients; a group that should not move belongs to another optimizer.
 */
export class Adam {
  /** The parameter groups this optimizer updates. */
  readonly groups: Group[];
  /** First moments, one flat tensor per group in the group's layout. */
  readonly m: Tensor[];
  /** Second moments, one flat tensor per group in the group's layout. */
  readonly v: Tensor[];
  /** Learning rate used when `step()` is called without one. */
  lr: number;
  /** First-moment decay. */
  readonly beta1: number;
  /** Second-moment decay. */
  readonly beta2: number;
  /** Denominator epsilon. */
  readonly eps: number;
  /** Decoupled weight decay factor. */
  readonly weightDecay: number;
  /** Global gradient-norm clip (0: none). */
  clipNorm: number;
  /** Prefix of the moments' checkpoint names. */
  readonly stateName: string;
  /** Steps taken (the bias-correction t). */
  t = 0;
  /** [lr, 1-b1^t, 1-b2^t, clip, scale, norm, 0, 0]: see shaders/adam.wgsl. */
  readonly hyper: Tensor;
  #partials: Tensor;
  #slots: { offset: number; p: number }[];

  /** Zeroed moments for `groups` (at least one); nothing is read from the GPU. */
  constructor(groups: Group[], opts: AdamOptions = {}) {
    if (groups.length === 0) throw new Error("flowgpu: Adam needs at least one parameter group");
    this.groups = groups;
    this.lr = opts.lr ?? 1e-3;
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
    this.clipNorm = opts.clipNorm ?? 0;
    this.stateName = opts.stateName ?? "adam";
    this.m = groups.map((g) => fill(Tensor.persistent([g.size], `adam.m.${g.name}`), 0));
    this.v = groups.map((g) => fill(Tensor.persistent([g.size], `adam.v.${g.name}`), 0));
    this.hyper = fill(Tensor.persistent([8], "adam.hyper"), 0);
    let offset = 0;
    this.#slots = groups.map((g) => {
      // At least 64 elements per partial, at most 256 partials, in whole chunks of LANES.
      const p = Math.max(1, Math.min(256, Math.ceil(g.size / 64)));
      const slot = { offset, p: Math.ceil(p / LANES) * LANES };
      offset += slot.p;
      return slot;
    });
    this.#partials = fill(Tensor.persistent([Math.max(1, offset)], "adam.partials"), 0);
  }

  /** The trainable tensors this optimizer updates. */
  get params(): Tensor[] {
    return this.groups.flatMap((g) => g.params);
  }

  /**
   * Encode one update from the groups' current gradients, then zero them. Nothing is read back:
   * the norm and the clip scale stay on the GPU (`hyper`), and a non-finite norm skips the step.
   */
  step(lr = this.lr): void {
    this.t++;
    const h = new Float32Array([
      lr,
      1 - this.beta1 ** this.t,
      1 - this.beta2 ** this.t,
      this.clipNorm,
      1,
      0,
      0,
      0,
    ]);
    upload(this.hyper.buffer, h);
    this.groups.forEach((g, i) => {
      const { offset, p: parts } = this.#slots[i];
      const v = g.size % 4 === 0 ? 4 : 1;
      SUMSQ[v].run({ g: g.grads, partials: this.#partials }, {
        params: [g.size / v, parts, offset],
        threads: parts,
      });
    });
    CLIP_FINISH.run({ partials: this.#partials, hyper: this.hyper }, {
      params: [this.#partials.size],
      groups: [1],
    });
    this.groups.forEach((g, i) => {
      ADAM.run({ hyper: this.hyper, g: g.grads, p: g.values, m: this.m[i], v: this.v[i] }, {
        params: [g.size, f32(this.beta1), f32(this.beta2), f32(this.eps), f32(this.weightDecay)],
        threads: g.size,
      });
      g.zeroGrad();
    });
  }

  /** Moments by parameter name (`adam.m.<name>`, `adam.v.<name>`), for checkpoints. */
  state(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    const p = this.stateName;
    this.groups.forEach((g, i) => {
      for (const [k, t] of g.views(this.m[i], `${p}.m.`)) out.set(k, t);
      for (const [k, t] of g.views(this.v[i], `${p}.v.`)) out.set(k, t);
    });
    return out;
  }

  /** The global gradient norm of the last step (a readback: call only when logging). */
  async lastGradNorm(): Promise<{ norm: number; scale: number }> {
    const h = await this.hyper.read();
    return { norm: h[5], scale: h[4] };
  }

  /** Free the moments and the optimizer's scratch buffers. */
  release(): void {
    for (const t of [...this.m, ...this.v, this.hyper, this.#partials]) t.release();
  }
}

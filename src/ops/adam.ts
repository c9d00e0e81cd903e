// Adam with bias correction, decoupled weight decay (AdamW) and global gradient-norm clipping.
// One sumsq dispatch per parameter, one clip_finish, one adam dispatch per parameter: no readback.
import { dispatch, f32, upload } from "../gpu/encoder.ts";
import { fill } from "./tape.ts";
import { Tensor } from "./tensor.ts";

const FILE = "adam.wgsl";

export interface AdamOptions {
  lr?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay (AdamW): p -= lr * wd * p. */
  weightDecay?: number;
  /** Clip the global gradient norm to this value (0 or undefined: no clipping). */
  clipNorm?: number;
}

export class Adam {
  readonly params: Tensor[];
  readonly m: Tensor[];
  readonly v: Tensor[];
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  clipNorm: number;
  /** Steps taken (the bias-correction t). */
  t = 0;
  /** [lr, 1-b1^t, 1-b2^t, clip, scale, norm, 0, 0]: see shaders/adam.wgsl. */
  readonly hyper: Tensor;
  #partials: Tensor;
  #slots: { offset: number; p: number }[];

  constructor(params: Tensor[], opts: AdamOptions = {}) {
    this.params = params;
    this.lr = opts.lr ?? 1e-3;
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
    this.clipNorm = opts.clipNorm ?? 0;
    this.m = params.map((p) => fill(Tensor.persistent(p.shape, `${p.name}.m`), 0));
    this.v = params.map((p) => fill(Tensor.persistent(p.shape, `${p.name}.v`), 0));
    this.hyper = Tensor.persistent([8], "adam.hyper");
    let offset = 0;
    this.#slots = params.map((p) => {
      const slot = { offset, p: Math.max(1, Math.min(256, Math.ceil(p.size / 64))) };
      offset += slot.p;
      return slot;
    });
    this.#partials = fill(Tensor.persistent([Math.max(1, offset)], "adam.partials"), 0);
  }

  /**
   * Encode one update from the parameters' current gradients, then drop the gradients.
   * A parameter without a gradient contributes zero to the norm and is not updated.
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
    const count = this.#partials.size;
    // Parameters without a gradient this step keep a zero slot.
    fill(this.#partials, 0);
    this.params.forEach((p, i) => {
      const { offset, p: parts } = this.#slots[i];
      if (!p.grad) return;
      dispatch({
        file: FILE,
        entry: "sumsq",
        buffers: [p.grad, this.#partials],
        params: [p.size, parts, offset],
        threads: parts,
      });
    });
    dispatch({
      file: FILE,
      entry: "clip_finish",
      buffers: [this.#partials, this.hyper],
      params: [count],
      groups: [1],
    });
    this.params.forEach((p, i) => {
      if (!p.grad) return;
      dispatch({
        file: FILE,
        entry: "adam",
        buffers: [this.hyper, p.grad, p, this.m[i], this.v[i]],
        params: [p.size, f32(this.beta1), f32(this.beta2), f32(this.eps), f32(this.weightDecay)],
        threads: p.size,
      });
    });
    for (const p of this.params) p.zeroGrad();
  }

  /** The global gradient norm of the last step (a readback: call only when logging). */
  async lastGradNorm(): Promise<{ norm: number; scale: number }> {
    const h = await this.hyper.read();
    return { norm: h[5], scale: h[4] };
  }
}

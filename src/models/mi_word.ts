// The sequential word classifier C_ψ of the MI flow's optional L_y (af-mi-flow.md §2.1, paper
// form, A8): a vanilla tanh RNN over the frames of a clip, one logit vector per frame,
//   h_n = tanh(W_in u_n + b + W_hh h_{n-1}),  h_0 = 0,  o_n = W_out h_n + b_out,
//   L_y = (1/N) Σ_n CE(o_n, y)   (eq. 5 with the per-frame terms averaged),
// where u_n is the flattened level-1 part of z^r of frame n. The frames of B clips arrive
// time-major (row t·B + b), so each time step is one contiguous block of rows.
import { Linear } from "../nn/layers.ts";
import type { Scope } from "../nn/store.ts";
import { add, tanh } from "../ops/elementwise.ts";
import { crossEntropy } from "../ops/loss.ts";
import { linear } from "../ops/matmul.ts";
import { concatChannels, reshape, splitChannels } from "../ops/shape.ts";
import { fmtShape, type Tensor } from "../ops/tensor.ts";

/** Vanilla RNN word classifier over per-frame feature vectors (see the file comment). */
export class WordRnn {
  /** Input projection W_in, b ([hidden, input], [hidden]). */
  readonly inp: Linear;
  /** Recurrent weight W_hh ([hidden, hidden], no bias: b is in `inp`). */
  readonly hh: Linear;
  /** Output layer W_out, b_out ([classes, hidden], [classes]). */
  readonly out: Linear;

  /** Declares `inp`, `hh` and `out` in scope `s`. */
  constructor(s: Scope, readonly input: number, readonly hidden: number, readonly classes: number) {
    for (
      const [what, v, lo] of [["input", input, 1], ["hidden", hidden, 1], [
        "classes",
        classes,
        2,
      ]] as const
    ) {
      if (!(Number.isInteger(v) && v >= lo)) {
        throw new Error(`flowgpu: wordRnn: ${what} must be an integer >= ${lo}, got ${v}`);
      }
    }
    this.inp = new Linear(s.child("inp"), input, hidden);
    this.hh = new Linear(s.child("hh"), hidden, hidden, { bias: false });
    this.out = new Linear(s.child("out"), hidden, classes);
  }

  /**
   * Per-frame logits of B = `clips` clips: u [T·B, input] time-major -> [B·T, classes], clip-major
   * (row b·T + t), recorded on the tape.
   */
  logits(u: Tensor, clips: number): Tensor {
    const [rows, d] = u.shape;
    if (u.shape.length !== 2 || d !== this.input) {
      throw new Error(
        `flowgpu: wordRnn: features ${fmtShape(u.shape)} are not [T·B, ${this.input}]`,
      );
    }
    if (!(Number.isInteger(clips) && clips >= 1 && rows % clips === 0)) {
      throw new Error(
        `flowgpu: wordRnn: ${rows} frames do not split into ${clips} clips of equal length`,
      );
    }
    const t = rows / clips, b = clips, h = this.hidden;
    // All input projections in one matmul; the recurrence then only adds W_hh h_{n-1}.
    const a = this.inp.apply(u);
    const steps = t === 1 ? [a] : splitChannels(reshape(a, [1, t, b * h]), Array(t).fill(1));
    const hs: Tensor[] = [];
    let prev: Tensor | undefined;
    for (const s of steps) {
      const at = reshape(s, [b, h]);
      prev = tanh(prev ? add(at, linear(prev, this.hh.w)) : at);
      hs.push(prev);
    }
    // [B, T·H] with (b, t, h) order is [B·T, H] clip-major.
    const all = hs.length === 1 ? hs[0] : reshape(concatChannels(hs), [b * t, h]);
    return this.out.apply(all);
  }

  /** L_y: the mean cross-entropy (nats) of every frame's logits against its clip's word. */
  loss(u: Tensor, clips: number, labels: ArrayLike<number>): { loss: Tensor; logits: Tensor } {
    if (labels.length !== clips) {
      throw new Error(`flowgpu: wordRnn: ${labels.length} word labels for ${clips} clips`);
    }
    for (let i = 0; i < clips; i++) {
      const y = labels[i];
      if (!(Number.isInteger(y) && y >= 0 && y < this.classes)) {
        throw new Error(
          `flowgpu: wordRnn: word label ${y} (clip ${i}) is not in [0, ${this.classes})`,
        );
      }
    }
    const logits = this.logits(u, clips);
    const t = logits.shape[0] / clips;
    const rowLabels = Array.from({ length: clips * t }, (_, r) => labels[Math.floor(r / t)]);
    return { loss: crossEntropy(logits, rowLabels), logits };
  }
}

// The sequential word classifier C_ψ of the MI flow's optional L_y (af-mi-flow.md §2.1, paper
// form, A8): a vanilla tanh RNN over the frames of a clip, one logit vector per frame,
//   h_n = tanh(W_in u_n + b + W_hh h_{n-1}),  h_0 = 0,  o_n = W_out h_n + b_out,
//   L_y = (1/N) Σ_n CE(o_n, y)   (eq. 5 with the per-frame terms averaged),
// where u_n is the flattened level-1 part of z^r of frame n. The frames of B clips arrive
// clip-major (row b·T + t), as AfFlow's classifier takes them (src/models/af.ts has the same
// network for AF; one of the two can go once both are in).
import { Linear } from "../nn/layers.ts";
import type { Scope } from "../nn/store.ts";
import { add, tanh } from "../ops/elementwise.ts";
import { gatherBatch } from "../ops/gather.ts";
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

  /** Per-frame logits [B·T, classes] of u [B·T, input]: B clips of `frames` frames, clip-major. */
  logits(u: Tensor, frames: number): Tensor {
    const [rows, d] = u.shape;
    if (u.shape.length !== 2 || d !== this.input) {
      throw new Error(
        `flowgpu: wordRnn: features ${fmtShape(u.shape)} are not [B·T, ${this.input}]`,
      );
    }
    if (!(Number.isInteger(frames) && frames >= 1 && rows % frames === 0)) {
      throw new Error(
        `flowgpu: wordRnn: ${rows} frames are not whole clips of ${frames} frames`,
      );
    }
    const t = frames, b = rows / frames, h = this.hidden;
    // All input projections in one matmul; the recurrence then only adds W_hh h_{n-1}. Rows
    // (b, t) of [B, T, H] make frame t of every clip one channel of dim 1.
    const a = reshape(this.inp.apply(u), [b, t, h]);
    const steps = t === 1 ? [a] : splitChannels(a, Array(t).fill(1));
    const hs: Tensor[] = [];
    let prev: Tensor | undefined;
    for (const s of steps) {
      const at = reshape(s, [b, h]);
      prev = tanh(prev ? add(at, linear(prev, this.hh.w)) : at);
      hs.push(reshape(prev, [b, 1, h]));
    }
    const all = hs.length === 1 ? hs[0] : concatChannels(hs);
    return this.out.apply(reshape(all, [rows, h]));
  }

  /**
   * L_y, the mean cross-entropy (nats) of every frame's logits against its clip's word, and the
   * last frame's logits [B, classes] (accuracy is read from o_T). One label per clip.
   */
  loss(u: Tensor, frames: number, words: ArrayLike<number>): { loss: Tensor; last: Tensor } {
    const logits = this.logits(u, frames);
    const clips = logits.shape[0] / frames;
    if (words.length !== clips) {
      throw new Error(`flowgpu: wordRnn: ${words.length} word labels for ${clips} clips`);
    }
    const labels: number[] = [];
    for (let c = 0; c < clips; c++) {
      const y = words[c];
      if (!(Number.isInteger(y) && y >= 0 && y < this.classes)) {
        throw new Error(
          `flowgpu: wordRnn: word label ${y} (clip ${c}) is not in [0, ${this.classes})`,
        );
      }
      for (let k = 0; k < frames; k++) labels.push(y);
    }
    const lastRows = Array.from({ length: clips }, (_, c) => (c + 1) * frames - 1);
    return { loss: crossEntropy(logits, labels), last: gatherBatch(logits, lastRows) };
  }
}

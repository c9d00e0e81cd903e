// The AF-MI hybrid (af-mi-flow.md §4.1; the paper's §IV-E): a trained MI flow fine-tuned on
// clip batches with L = L_MI + β L_AF^H, where the AF losses act directly on the MI split (no
// encoder): z^i = the top latent, z^r = the split-offs. For B clips of T frames (rows clip-major)
// and ℓ = the per-level mean squared error (z^i is one level):
//   L_s^H = (1/T) Σ_n ℓ(z^i_n, z̄^i_S)                  every frame's z^i is its clip's centroid
//   L_p^H = mean_m ℓ(z^i_n, z^i_m),  n = (m + s) mod T  z^i is frame-invariant
//   L_t^H = (1/T) Σ_n ℓ(z^i(x_T,n), z̄^i_Q)             x_T,n = M_f ⊙ x_S,n + (1 − M_f) ⊙ x_Q,k
//   L_y   the word classifier on z^r_1 (the MI flow's own, so it must have one)
// L_t^H is §4.1's non-degenerate replacement of the literal substitution (which collapses because
// a bijective flow makes any latent encode-decode cycle the identity): the source's mouth box,
// feathered by a 2-px linear ramp, pasted into query frame k must encode to the query clip's
// identity part. Gradients reach θ through every z^i and through the centroids (no
// stop-gradient); φ (the prior) gets gradient from L_MI only.
import { add, mul, scale, sub } from "../ops/elementwise.ts";
import { mse } from "../ops/divergence.ts";
import { gatherBatch } from "../ops/gather.ts";
import { fmtShape, Tensor } from "../ops/tensor.ts";
import { clipMean } from "./af.ts";
import type { ConditionBox, MiFlow, MiLosses, MiLossOptions } from "./mi.ts";

/** Which AF terms enter L_AF^H. */
export interface HybridSwitches {
  /** L_s^H, the source structure on z^i. */
  source: boolean;
  /** L_t^H, the target structure of pasted-mouth frames. */
  target: boolean;
  /** L_p^H, the random-pair term on z^i. */
  pair: boolean;
  /** L_y, the word classifier (the MI flow must have one). */
  word: boolean;
}

/** One fine-tuning batch's clip structure and query clips (rows clip-major, b·T + t). */
export interface HybridBatch {
  /** Frames per clip T (>= 2). */
  frames: number;
  /** Pair offset s in 1..T−1: frame m pairs with n = (m + s) mod T (L_p^H). */
  shift: number;
  /** Query clips' dequantised frames [B·T, C, H, W], another identity per clip (L_t^H). */
  query?: Tensor;
  /** The query frame k (0..T−1) of each query clip (L_t^H). */
  queryFrames?: ArrayLike<number>;
}

/** L_MI's terms, the AF terms that were computed, L_AF^H and the total L_MI + β L_AF^H. */
export interface HybridLosses {
  total: Tensor;
  mi: MiLosses;
  af: Tensor;
  source?: Tensor;
  target?: Tensor;
  pair?: Tensor;
  word?: Tensor;
}

/**
 * The paste mask M_f ([C·S·S], every channel alike): 1 inside `box`, 1 − d/(ramp + 1) at
 * Chebyshev distance d = 1..ramp outside it, 0 beyond (ramp 2: 2/3, 1/3).
 */
export function featherMask(
  channels: number,
  size: number,
  box: ConditionBox,
  ramp = 2,
): Float32Array {
  const plane = new Float32Array(size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const dy = Math.max(box.top - y, 0, y - box.bottom);
      const dx = Math.max(box.left - x, 0, x - box.right);
      plane[y * size + x] = Math.max(0, 1 - Math.max(dx, dy) / (ramp + 1));
    }
  }
  const m = new Float32Array(channels * size * size);
  for (let c = 0; c < channels; c++) m.set(plane, c * size * size);
  return m;
}

/** An MI flow fine-tuned with L_MI + β L_AF^H (see the file comment). */
export class MiHybrid {
  /** M_f as [1, C, S, S]. */
  readonly pasteMask: Tensor;

  /** `beta` weighs L_AF^H; `which` picks its terms. */
  constructor(
    readonly mi: MiFlow,
    readonly beta: number,
    readonly which: HybridSwitches = { source: true, target: true, pair: true, word: true },
  ) {
    if (!(Number.isFinite(beta) && beta >= 0)) {
      throw new Error(`flowgpu: afmi: β must be a finite number >= 0, got ${beta}`);
    }
    if (which.word && !mi.word) {
      throw new Error("flowgpu: afmi: L_y needs an MI flow built with a word classifier");
    }
    if (!Object.values(which).some(Boolean)) {
      throw new Error("flowgpu: afmi: every AF term is switched off (L_s, L_t, L_p, L_y)");
    }
    const { channels, size, box } = mi.cfg;
    this.pasteMask = Tensor.constant(
      featherMask(channels, size, box),
      [1, channels, size, size],
      "paste mask",
    );
  }

  /**
   * x_T,n = M_f ⊙ x_S,n + (1 − M_f) ⊙ x_Q,k of its clip: the source's mouth pasted into the
   * query frame, for every source frame (recorded, though training data needs no gradient).
   */
  paste(source: Tensor, query: Tensor, ks: ArrayLike<number>, frames: number): Tensor {
    const rows = source.shape[0];
    if (
      query.shape.length !== source.shape.length ||
      query.shape.some((d, i) => d !== source.shape[i])
    ) {
      throw new Error(
        `flowgpu: afmi: query frames ${fmtShape(query.shape)} do not match the source's ${
          fmtShape(source.shape)
        }`,
      );
    }
    const clips = rows / frames;
    if (ks.length !== clips) {
      throw new Error(`flowgpu: afmi: ${ks.length} query frames for ${clips} clips`);
    }
    const pick = Array.from({ length: rows }, (_, r) => {
      const c = Math.floor(r / frames), k = ks[c];
      if (!(Number.isInteger(k) && k >= 0 && k < frames)) {
        throw new Error(`flowgpu: afmi: query frame ${k} (clip ${c}) is not in 0..${frames - 1}`);
      }
      return c * frames + k;
    });
    const qk = gatherBatch(query, pick);
    return add(qk, mul(sub(source, qk), this.pasteMask));
  }

  /** L_MI on the source frames x (`o` as for MiFlow.losses), the AF terms of `b`, and the total. */
  losses(x: Tensor, o: MiLossOptions, b: HybridBatch): HybridLosses {
    const T = b.frames, rows = x.shape[0];
    if (!(Number.isInteger(T) && T >= 2 && rows % T === 0)) {
      throw new Error(`flowgpu: afmi: ${rows} frames are not whole clips of ${T} >= 2 frames`);
    }
    const w = this.which;
    if (w.pair && !(Number.isInteger(b.shift) && b.shift >= 1 && b.shift < T)) {
      throw new Error(`flowgpu: afmi: L_p needs a pair shift s in 1..${T - 1}, got ${b.shift}`);
    }
    if (w.target && (!b.query || !b.queryFrames)) {
      throw new Error("flowgpu: afmi: L_t needs the query clips and their frames k");
    }
    if (o.words && o.words.frames !== T) {
      throw new Error(`flowgpu: afmi: words come in clips of ${o.words.frames}, not ${T} frames`);
    }
    const mi = this.mi.losses(x, o);
    const zi = mi.zi;
    const out: Partial<HybridLosses> = {};
    if (w.source) out.source = mse(zi, clipMean(zi, T));
    if (w.pair) {
      const partner = Array.from({ length: rows }, (_, r) => r - (r % T) + ((r % T) + b.shift) % T);
      out.pair = mse(gatherBatch(zi, partner), zi);
    }
    if (w.target) {
      const pasted = this.paste(x, b.query!, b.queryFrames!, T);
      const ziT = this.mi.glow.flow(pasted).latents.at(-1)!;
      const ziQ = this.mi.glow.flow(b.query!).latents.at(-1)!;
      out.target = mse(ziT, clipMean(ziQ, T));
    }
    if (w.word) {
      if (!mi.y) throw new Error("flowgpu: afmi: L_y needs the batch's words (o.words)");
      out.word = mi.y;
    }
    const terms = (["source", "target", "pair", "word"] as const).map((k) => out[k]).filter(
      (t): t is Tensor => t !== undefined,
    );
    const af = terms.reduce((a, t) => add(a, t));
    return { ...out, mi, af, total: add(mi.total, scale(af, this.beta)) };
  }

  /** Free the paste mask. */
  release(): void {
    this.pasteMask.release();
  }
}

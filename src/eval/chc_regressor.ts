// The CHC condition regressor of glow-funs.md §4.3 (Table 2's "Err"): predicts the condition
// c = u(0) from a target x, scored as the per-image Euclidean norm of ĉ − c on the [−1, 1]
// scale (A12), against the same error with shuffled ground truth.
//
// Why a closed-form least-squares map of three global statistics of x to a constant field, not
// the paper's ResNet: c = ū + A·η with i.i.d. per-pixel η, and by t = 10 the thermal noise has
// erased the pixel pattern of η (two runs from one IC correlate ≈ 0.05–0.2, §3.1), so
// E[c | x] ≈ E[ū | x]·1 + A·E[η | x] with the second term close to 0. The Cahn-Hilliard
// dynamics conserve mass, so ū is read off x's mean (up to the noise's drift and the clipping
// of the quantisation), and the phase fraction mean(sign x) and mean |x| correct the residual
// non-linearity of the quantised, coarsened field. Any regressor, however deep, then scores
// about √(P·A²/3) (P pixels) on real pairs: the spec's calibration, which this one reaches.
// Being a handful of numbers fitted in one pass, it needs no cache and no GPU.
import type { ChcSet } from "../data/chc.ts";
import { chcBatch, chcPairs } from "../data/chc.ts";
import { Rng } from "../util/rng.ts";

/** Names of the regressor's inputs, in order (the first is the intercept). */
export const CHC_FEATURES = ["1", "mean(x)", "mean(sign(x))", "mean(|x|)"] as const;
const F = CHC_FEATURES.length;

/** (c, x) images [n, 1, S, S] in [−1, 1], as `chcBatch` gives them. */
export interface ChcPairBatch {
  x: Float32Array;
  c: Float32Array;
  n: number;
}

function plane(len: number, n: number, what: string): number {
  const p = len / n;
  if (!Number.isInteger(p) || p < 1) {
    throw new Error(`flowgpu: chc regressor: ${len} values of ${what} are not ${n} images`);
  }
  return p;
}

/** The regressor's inputs of `n` images x: [n, F], rows of CHC_FEATURES. */
export function chcFeatures(x: ArrayLike<number>, n: number): Float64Array {
  const p = plane(x.length, n, "x");
  const out = new Float64Array(n * F);
  for (let i = 0; i < n; i++) {
    let s = 0, sg = 0, ab = 0;
    for (let j = i * p; j < (i + 1) * p; j++) {
      const v = x[j];
      s += v;
      sg += Math.sign(v);
      ab += Math.abs(v);
    }
    out.set([1, s / p, sg / p, ab / p], i * F);
  }
  return out;
}

/** Mean of each of `n` images: [n]. */
function imageMeans(c: ArrayLike<number>, n: number): Float64Array {
  const p = plane(c.length, n, "c");
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = i * p; j < (i + 1) * p; j++) s += c[j];
    out[i] = s / p;
  }
  return out;
}

/** Solves the symmetric system a w = b ([k·k], [k]) by Gaussian elimination with pivoting. */
function solve(a: Float64Array, b: Float64Array, k: number): Float64Array {
  const m = Float64Array.from(a), r = Float64Array.from(b);
  for (let col = 0; col < k; col++) {
    let piv = col;
    for (let i = col + 1; i < k; i++) {
      if (Math.abs(m[i * k + col]) > Math.abs(m[piv * k + col])) piv = i;
    }
    if (Math.abs(m[piv * k + col]) < 1e-300) {
      throw new Error("flowgpu: chc regressor: singular normal equations (too few pairs?)");
    }
    if (piv !== col) {
      for (let j = 0; j < k; j++) {
        [m[col * k + j], m[piv * k + j]] = [m[piv * k + j], m[col * k + j]];
      }
      [r[col], r[piv]] = [r[piv], r[col]];
    }
    for (let i = col + 1; i < k; i++) {
      const f = m[i * k + col] / m[col * k + col];
      for (let j = col; j < k; j++) m[i * k + j] -= f * m[col * k + j];
      r[i] -= f * r[col];
    }
  }
  const w = new Float64Array(k);
  for (let i = k - 1; i >= 0; i--) {
    let s = r[i];
    for (let j = i + 1; j < k; j++) s -= m[i * k + j] * w[j];
    w[i] = s / m[i * k + i];
  }
  return w;
}

/** x -> the constant field w · features(x): the regressor of this file's header. */
export class ChcRegressor {
  /** Weights of CHC_FEATURES, [F]. */
  readonly weights: Float64Array;

  /** A regressor with the given weights (from `fit`, or `toJSON` output). */
  constructor(weights: ArrayLike<number>) {
    if (weights.length !== F) {
      throw new Error(`flowgpu: chc regressor: ${weights.length} weights, needs ${F}`);
    }
    this.weights = Float64Array.from(weights);
  }

  /**
   * Least squares of each pair's mean of c on the features of x over every batch (the normal
   * equations accumulate, so the pairs need not fit in memory at once). Regressing the mean is
   * the L2 fit itself: for a constant prediction ĉ, ‖ĉ − c‖² = P(ĉ − mean c)² + P·var c, and
   * the second term does not depend on ĉ. A ridge of 1e-9·trace keeps it solvable when a
   * feature is constant.
   */
  static fit(batches: Iterable<ChcPairBatch>): ChcRegressor {
    const xtx = new Float64Array(F * F), xty = new Float64Array(F);
    let count = 0;
    for (const { x, c, n } of batches) {
      const feats = chcFeatures(x, n), y = imageMeans(c, n);
      for (let i = 0; i < n; i++) {
        for (let a = 0; a < F; a++) {
          const fa = feats[i * F + a];
          xty[a] += fa * y[i];
          for (let b = 0; b < F; b++) xtx[a * F + b] += fa * feats[i * F + b];
        }
      }
      count += n;
    }
    if (count < F) {
      throw new Error(`flowgpu: chc regressor: ${count} pairs cannot fit ${F} weights`);
    }
    let tr = 0;
    for (let a = 0; a < F; a++) tr += xtx[a * F + a];
    for (let a = 0; a < F; a++) xtx[a * F + a] += 1e-9 * tr;
    return new ChcRegressor(solve(xtx, xty, F));
  }

  /** The predicted ū of `n` images x: [n]. */
  predictMean(x: ArrayLike<number>, n: number): Float64Array {
    const feats = chcFeatures(x, n);
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let a = 0; a < F; a++) s += this.weights[a] * feats[i * F + a];
      // u(0) is a composition inside the spinodal; never predict outside the data's scale.
      out[i] = Math.max(-1, Math.min(1, s));
    }
    return out;
  }

  /** ĉ of `n` images x [n, 1, S, S]: each the constant field of its predicted ū. */
  predict(x: ArrayLike<number>, n: number): Float32Array {
    const p = plane(x.length, n, "x");
    const m = this.predictMean(x, n);
    const out = new Float32Array(n * p);
    for (let i = 0; i < n; i++) out.fill(m[i], i * p, (i + 1) * p);
    return out;
  }

  /** The weights by feature name. */
  toJSON(): Record<string, number> {
    return Object.fromEntries(CHC_FEATURES.map((f, i) => [f, this.weights[i]]));
  }

  /** A regressor from `toJSON` output. */
  static fromJSON(j: Record<string, number>): ChcRegressor {
    return new ChcRegressor(CHC_FEATURES.map((f) => {
      if (typeof j[f] !== "number") throw new Error(`flowgpu: chc regressor: no weight '${f}'`);
      return j[f];
    }));
  }
}

/** ‖ĉ_i − c_i‖₂ of each of `n` images (glow-funs.md A12): [n]. */
export function l2Errors(cHat: ArrayLike<number>, c: ArrayLike<number>, n: number): Float64Array {
  if (cHat.length !== c.length) {
    throw new Error(`flowgpu: l2Error: ĉ has ${cHat.length} values, c ${c.length}`);
  }
  const p = plane(c.length, n, "c");
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = i * p; j < (i + 1) * p; j++) s += (cHat[j] - c[j]) ** 2;
    out[i] = Math.sqrt(s);
  }
  return out;
}

/** The mean over `n` images of ‖ĉ − c‖₂ on the [−1, 1] scale: Table 2's "Err". */
export function l2Error(cHat: ArrayLike<number>, c: ArrayLike<number>, n: number): number {
  const e = l2Errors(cHat, c, n);
  return e.reduce((a, b) => a + b, 0) / n;
}

/** Pairs of a set in chunks of `chunk`, as floats (the targets dequantised with `seed`). */
export function* chcChunks(
  set: ChcSet,
  ics: readonly number[],
  opts: { chunk?: number; seed?: number } = {},
): Generator<ChcPairBatch & { ic: Uint32Array }> {
  const pairs = chcPairs(set, ics), chunk = opts.chunk ?? 256;
  const rng = new Rng(opts.seed ?? 1);
  for (let s = 0; s < pairs.length; s += chunk) {
    const b = chcBatch(set, pairs.subarray(s, s + chunk), rng);
    yield { x: b.x, c: b.c, ic: b.ic, n: b.ic.length };
  }
}

/** The regressor fitted on every pair of `ics` (default the set's training ICs). */
export function fitChcRegressor(
  set: ChcSet,
  ics: readonly number[] = set.split.train,
): ChcRegressor {
  return ChcRegressor.fit(chcChunks(set, ics));
}

/** Real-pair and shuffled-pair errors of a regressor on the pairs of some ICs. */
export interface ChcErrorReport {
  /** Mean ‖ĉ(x) − c‖ over the pairs (c the IC of x). */
  real: number;
  /** Mean ‖ĉ(x) − c'‖ with c' the condition of another IC, drawn per pair from `ics`. */
  shuffled: number;
  /** Mean ‖mean(c)·1 − c‖: what knowing ū exactly would score (the spec's √(P·A²/3)). */
  oracle: number;
  pairs: number;
}

/**
 * Scores `reg` on every pair of `ics` (at least two ICs, for the shuffle). Each x's shuffled
 * partner is another of `ics` drawn with a seeded RNG, as the paper's "shuffled ground truth".
 */
export function chcErrors(
  set: ChcSet,
  reg: ChcRegressor,
  ics: readonly number[],
  seed = 1,
): ChcErrorReport {
  if (ics.length < 2) throw new Error("flowgpu: chc errors: the shuffle needs at least two ICs");
  const p = set.size * set.size;
  const cond = (ic: number) => {
    const out = new Float32Array(p);
    for (let j = 0; j < p; j++) out[j] = (2 * set.conditions[ic * p + j] + 1) / 256 - 1;
    return out;
  };
  const conds = new Map(ics.map((ic) => [ic, cond(ic)]));
  const rng = new Rng(seed ^ 0x5f3759df);
  let real = 0, shuffled = 0, oracle = 0, count = 0;
  for (const b of chcChunks(set, ics, { seed })) {
    const cHat = reg.predict(b.x, b.n);
    real += l2Error(cHat, b.c, b.n) * b.n;
    const other = new Float32Array(b.c.length);
    for (let i = 0; i < b.n; i++) {
      const pos = ics.indexOf(b.ic[i]);
      const j = (pos + 1 + rng.int(ics.length - 1)) % ics.length;
      other.set(conds.get(ics[j])!, i * p);
    }
    shuffled += l2Error(cHat, other, b.n) * b.n;
    const means = imageMeans(b.c, b.n), flat = new Float32Array(b.c.length);
    for (let i = 0; i < b.n; i++) flat.fill(means[i], i * p, (i + 1) * p);
    oracle += l2Error(flat, b.c, b.n) * b.n;
    count += b.n;
  }
  return { real: real / count, shuffled: shuffled / count, oracle: oracle / count, pairs: count };
}

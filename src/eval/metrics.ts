// Sample-quality metrics of glow-funs.md §4.1 on features of in-project networks (§4.6): the
// Fréchet distance (an FID-proxy), an LPIPS-like diversity with the paper's pairing protocol
// (any pairs for LPIPS, same-condition pairs for c-LPIPS) and classification accuracy. Forward
// only, in float64 on the CPU: the matrices are at most a few hundred wide, and FID's matrix
// square root is notoriously sensitive to rounding in f32.
import { Rng } from "../util/rng.ts";

/** Mean [dim] and unbiased covariance [dim·dim] (n − 1, as numpy.cov and pytorch-fid) of rows. */
export function meanCov(
  feat: ArrayLike<number>,
  dim: number,
): { mean: Float64Array; cov: Float64Array; n: number } {
  const n = feat.length / dim;
  if (!Number.isInteger(n) || n < 2) {
    throw new Error(
      `flowgpu: meanCov: ${feat.length} values are not at least 2 rows of ${dim} features`,
    );
  }
  const mean = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let d = 0; d < dim; d++) mean[d] += feat[i * dim + d];
  for (let d = 0; d < dim; d++) mean[d] /= n;
  const cov = new Float64Array(dim * dim);
  const row = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let d = 0; d < dim; d++) row[d] = feat[i * dim + d] - mean[d];
    for (let a = 0; a < dim; a++) {
      const ra = row[a];
      if (ra === 0) continue;
      for (let b = a; b < dim; b++) cov[a * dim + b] += ra * row[b];
    }
  }
  for (let a = 0; a < dim; a++) {
    for (let b = a; b < dim; b++) {
      const v = cov[a * dim + b] / (n - 1);
      cov[a * dim + b] = v;
      cov[b * dim + a] = v;
    }
  }
  return { mean, cov, n };
}

/**
 * Eigen-decomposition of a symmetric matrix [n·n] by cyclic Jacobi rotations: `values` [n] and
 * `vectors` [n·n] with eigenvector k in column k. Jacobi rather than QR because it is simple,
 * unconditionally stable and accurate to working precision even for tiny eigenvalues, which a
 * rank-deficient covariance (fewer images than features) has many of.
 */
export function symmetricEigen(
  m: ArrayLike<number>,
  n: number,
  opts: { maxSweeps?: number } = {},
): { values: Float64Array; vectors: Float64Array } {
  if (m.length !== n * n) {
    throw new Error(`flowgpu: symmetricEigen: ${m.length} values for ${n}x${n}`);
  }
  const a = Float64Array.from(m);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  let scale = 0;
  for (let i = 0; i < n * n; i++) scale = Math.max(scale, Math.abs(a[i]));
  const maxSweeps = opts.maxSweeps ?? 100;
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q] ** 2;
    if (off <= (1e-30 * scale) ** 2 || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const app = a[p * n + p], aqq = a[q * n + q];
        // The rotation that zeroes a[p][q], in the numerically safe form (smaller angle).
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p], vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = a[i * n + i];
  return { values, vectors: v };
}

/** f(S) = V f(Λ) Vᵀ of a symmetric matrix S, with f applied to the eigenvalues. */
function matrixFunction(s: Float64Array, n: number, f: (x: number) => number): Float64Array {
  const { values, vectors: v } = symmetricEigen(s, n);
  const out = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const fk = f(values[k]);
    if (fk === 0) continue;
    for (let i = 0; i < n; i++) {
      const vik = v[i * n + k] * fk;
      if (vik === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += vik * v[j * n + k];
    }
  }
  return out;
}

function matmul(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k];
      if (aik === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += aik * b[k * n + j];
    }
  }
  return out;
}

/**
 * Tr((A B)^{1/2}) for symmetric positive semi-definite A and B. A B is not symmetric, but it is
 * similar to A^{1/2} B A^{1/2}, which is symmetric PSD: its eigenvalues are real and
 * non-negative, so the trace of the square root is the sum of their square roots with no complex
 * arithmetic (scipy's sqrtm route returns tiny imaginary parts that pytorch-fid has to drop).
 */
export function traceSqrtProduct(a: Float64Array, b: Float64Array, n: number): number {
  const ra = matrixFunction(a, n, (x) => Math.sqrt(Math.max(0, x)));
  const m = matmul(matmul(ra, b, n), ra, n);
  // Symmetrise away the rounding of the two products before the eigen-solve.
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const s = (m[i * n + j] + m[j * n + i]) / 2;
      m[i * n + j] = s;
      m[j * n + i] = s;
    }
  }
  const { values } = symmetricEigen(m, n);
  let tr = 0;
  for (const l of values) tr += Math.sqrt(Math.max(0, l));
  return tr;
}

/** ‖m_a − m_b‖² + Tr(C_a + C_b − 2 (C_a C_b)^{1/2}) of two Gaussians. */
export function frechetFromStats(
  a: { mean: Float64Array; cov: Float64Array },
  b: { mean: Float64Array; cov: Float64Array },
): number {
  const dim = a.mean.length;
  if (b.mean.length !== dim) {
    throw new Error(`flowgpu: frechet: ${dim} features against ${b.mean.length}`);
  }
  let d2 = 0, tr = 0;
  for (let i = 0; i < dim; i++) {
    d2 += (a.mean[i] - b.mean[i]) ** 2;
    tr += a.cov[i * dim + i] + b.cov[i * dim + i];
  }
  // Rounding can leave a small negative value for identical sets; a distance is never negative.
  return Math.max(0, d2 + tr - 2 * traceSqrtProduct(a.cov, b.cov, dim));
}

/**
 * The Fréchet distance between Gaussians fitted to two feature sets (rows of `dim` values): FID
 * when the features are Inception's, an FID-proxy on our networks' (glow-funs.md §4.6).
 */
export function frechetDistance(
  featA: ArrayLike<number>,
  featB: ArrayLike<number>,
  dim: number,
): number {
  return frechetFromStats(meanCov(featA, dim), meanCov(featB, dim));
}

/**
 * One layer of per-image features: `channels` x `positions` values per image, channel-major
 * (NCHW flattened: positions = H·W; a vector layer has positions = 1).
 */
export interface FeatureLayer {
  data: Float32Array | Float64Array;
  channels: number;
  positions?: number;
}

/** Options of `diversity`. */
export interface DiversityOptions {
  /** Random pairs drawn (default 2000, glow-funs.md A16). */
  pairs?: number;
  /** Seed of the pair draw (default 1), so every model is scored on the same protocol. */
  seed?: number;
  /**
   * A condition id per image: pairs are then drawn within a condition (c-LPIPS); without it,
   * any two distinct images (LPIPS).
   */
  conditions?: ArrayLike<number>;
}

function imageCount(layers: FeatureLayer[]): number {
  if (layers.length === 0) throw new Error("flowgpu: diversity: no feature layers");
  let n = -1;
  for (const l of layers) {
    const per = l.channels * (l.positions ?? 1);
    const k = l.data.length / per;
    if (!Number.isInteger(k) || (n >= 0 && k !== n)) {
      throw new Error(
        `flowgpu: diversity: a layer of ${l.data.length} values is not ${
          n >= 0 ? n : "whole"
        } images of ${l.channels}x${l.positions ?? 1}`,
      );
    }
    n = k;
  }
  return n;
}

/**
 * LPIPS-like distance of images i and j: per layer, features unit-normalised over channels at
 * each position, squared differences summed over channels with uniform weights, averaged over
 * positions; summed over layers (the LPIPS recipe with every learnt channel weight 1).
 */
export function lpipsProxy(layers: FeatureLayer[], i: number, j: number): number {
  let total = 0;
  for (const l of layers) {
    const c = l.channels, p = l.positions ?? 1, per = c * p;
    const a = i * per, b = j * per;
    let layer = 0;
    for (let s = 0; s < p; s++) {
      let na = 0, nb = 0, dot = 0;
      for (let k = 0; k < c; k++) {
        const x = l.data[a + k * p + s], y = l.data[b + k * p + s];
        na += x * x;
        nb += y * y;
        dot += x * y;
      }
      // LPIPS adds eps to the norm so an all-zero vector (a dead ReLU position) maps to 0.
      const ra = 1 / (Math.sqrt(na) + 1e-10), rb = 1 / (Math.sqrt(nb) + 1e-10);
      layer += na * ra * ra + nb * rb * rb - 2 * dot * ra * rb;
    }
    total += layer / p;
  }
  return total;
}

/**
 * Mean LPIPS-proxy over random pairs of distinct images (glow-funs.md §4.1, A16): any pairs, or
 * same-condition pairs (c-LPIPS) when `conditions` is given. Conditions with a single image
 * cannot form a pair and are skipped; a pair is drawn by picking an image uniformly, then a
 * partner with its condition, so each condition weighs by its image count (equal counts in the
 * paper's protocol make that E_c).
 */
export function diversity(
  layers: FeatureLayer | FeatureLayer[],
  opts: DiversityOptions = {},
): number {
  const ls = Array.isArray(layers) ? layers : [layers];
  const n = imageCount(ls);
  const rng = new Rng(opts.seed ?? 1);
  const pairs = opts.pairs ?? 2000;
  // Same-condition mode: every pairable image as (its condition's members, its place in them).
  let slots: { m: number[]; pos: number }[] | undefined;
  if (opts.conditions) {
    if (opts.conditions.length !== n) {
      throw new Error(`flowgpu: diversity: ${opts.conditions.length} conditions for ${n} images`);
    }
    const byId = new Map<number, number[]>();
    for (let i = 0; i < n; i++) {
      const id = opts.conditions[i];
      if (!byId.has(id)) byId.set(id, []);
      byId.get(id)!.push(i);
    }
    slots = [...byId.values()].filter((m) => m.length > 1).flatMap((m) =>
      m.map((_, pos) => ({ m, pos }))
    );
    if (slots.length === 0) {
      throw new Error("flowgpu: diversity: no condition has two images to pair");
    }
  } else if (n < 2) throw new Error("flowgpu: diversity: needs at least two images");
  let total = 0;
  for (let t = 0; t < pairs; t++) {
    let i: number, j: number;
    if (slots) {
      const { m, pos } = slots[rng.int(slots.length)];
      i = m[pos];
      j = m[(pos + 1 + rng.int(m.length - 1)) % m.length];
    } else {
      i = rng.int(n);
      j = (i + 1 + rng.int(n - 1)) % n;
    }
    total += lpipsProxy(ls, i, j);
  }
  return total / pairs;
}

/** Fraction of `predicted` equal to `labels`. */
export function accuracy(predicted: ArrayLike<number>, labels: ArrayLike<number>): number {
  if (predicted.length !== labels.length || labels.length === 0) {
    throw new Error(
      `flowgpu: accuracy: ${predicted.length} predictions for ${labels.length} labels`,
    );
  }
  let ok = 0;
  for (let i = 0; i < labels.length; i++) if (predicted[i] === labels[i]) ok++;
  return ok / labels.length;
}

/** Index of the largest of each row of `k` values: [n·k] -> [n]. */
export function argmaxRows(x: ArrayLike<number>, k: number): Uint8Array {
  const n = x.length / k;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (x[i * k + j] > x[i * k + best]) best = j;
    out[i] = best;
  }
  return out;
}

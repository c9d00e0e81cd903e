// CPU (f64) initialisation of the invertible 1x1 convolution: a random rotation, and its LU
// factorisation A = P L U with partial pivoting (scipy's convention), as in Glow's LU variant.
import type { Rng } from "../util/rng.ts";

/** A random c x c orthogonal matrix: the Q of a QR decomposition of a standard-normal matrix. */
export function randomRotation(c: number, rng: Rng): Float64Array {
  const a = Float64Array.from({ length: c * c }, () => rng.normal());
  // Modified Gram-Schmidt on the columns.
  const q = new Float64Array(c * c);
  for (let j = 0; j < c; j++) {
    const v = Array.from({ length: c }, (_, i) => a[i * c + j]);
    for (let k = 0; k < j; k++) {
      let dot = 0;
      for (let i = 0; i < c; i++) dot += q[i * c + k] * v[i];
      for (let i = 0; i < c; i++) v[i] -= dot * q[i * c + k];
    }
    const norm = Math.hypot(...v);
    for (let i = 0; i < c; i++) q[i * c + j] = v[i] / norm;
  }
  return q;
}

/** A = P L U: P a permutation matrix, L unit lower-triangular, U upper-triangular. */
export function luDecompose(
  a: Float64Array,
  c: number,
): { p: Float64Array; l: Float64Array; u: Float64Array } {
  const u = Float64Array.from(a);
  const l = new Float64Array(c * c);
  const perm = Array.from({ length: c }, (_, i) => i); // row i of U came from row perm[i] of A
  for (let k = 0; k < c; k++) {
    let piv = k;
    for (let i = k + 1; i < c; i++) if (Math.abs(u[i * c + k]) > Math.abs(u[piv * c + k])) piv = i;
    if (piv !== k) {
      for (let j = 0; j < c; j++) {
        [u[k * c + j], u[piv * c + j]] = [u[piv * c + j], u[k * c + j]];
        [l[k * c + j], l[piv * c + j]] = [l[piv * c + j], l[k * c + j]];
      }
      [perm[k], perm[piv]] = [perm[piv], perm[k]];
    }
    for (let i = k + 1; i < c; i++) {
      const f = u[i * c + k] / u[k * c + k];
      l[i * c + k] = f;
      for (let j = k; j < c; j++) u[i * c + j] -= f * u[k * c + j];
    }
  }
  for (let i = 0; i < c; i++) l[i * c + i] = 1;
  // PA' = LU with A' rows permuted: A = P L U where P[perm[i], i] = 1.
  const p = new Float64Array(c * c);
  for (let i = 0; i < c; i++) p[perm[i] * c + i] = 1;
  return { p, l, u };
}

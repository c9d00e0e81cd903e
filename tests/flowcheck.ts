// Checks for invertible layers: inverse(forward(x)) ≈ x, and the layer's log-det against
// log|det J| of a brute-force Jacobian (central differences of the GPU forward, all perturbed
// forwards in one submit, determinant by f64 LU on the CPU).
import { copyBuffer, readBuffer } from "../src/gpu/encoder.ts";
import { acquireBuffer, releaseBuffer } from "../src/gpu/pool.ts";
import { clearTape, noGrad } from "../src/ops/tape.ts";
import { type Shape, Tensor } from "../src/ops/tensor.ts";

/** log|det A| of a dense n x n matrix (row-major), by LU with partial pivoting in f64. */
export function logAbsDet(a: Float64Array, n: number): number {
  const m = Float64Array.from(a);
  let logdet = 0;
  for (let k = 0; k < n; k++) {
    let piv = k;
    for (let i = k + 1; i < n; i++) if (Math.abs(m[i * n + k]) > Math.abs(m[piv * n + k])) piv = i;
    if (m[piv * n + k] === 0) return -Infinity;
    if (piv !== k) {
      for (let j = 0; j < n; j++) [m[k * n + j], m[piv * n + j]] = [m[piv * n + j], m[k * n + j]];
    }
    const d = m[k * n + k];
    logdet += Math.log(Math.abs(d));
    for (let i = k + 1; i < n; i++) {
      const f = m[i * n + k] / d;
      for (let j = k; j < n; j++) m[i * n + j] -= f * m[k * n + j];
    }
  }
  return logdet;
}

/**
 * Per-sample log|det dy_n/dx_n| of `f` at x (shape [N, ...]), where f maps [N, D] -> [N, D]
 * element counts (any shapes). Central differences with step h, evaluated on the GPU.
 */
export async function bruteLogdet(
  f: (x: Tensor) => Tensor,
  data: Float32Array,
  shape: Shape,
  h = 1e-3,
): Promise<number[]> {
  const n = shape[0];
  const d = data.length / n;
  const x = Tensor.param(data, shape, "x");
  const out = acquireBuffer(data.length * 2 * d * 4);
  for (let j = 0; j < d; j++) {
    for (const [k, s] of [[0, 1], [1, -1]]) {
      const p = data.slice();
      for (let b = 0; b < n; b++) p[b * d + j] += s * h;
      x.write(p);
      noGrad(() => {
        const y = f(x);
        if (y.size !== data.length) throw new Error("bruteLogdet: f must preserve the size");
        copyBuffer(y.buffer, out, y.size * 4, 0, (2 * j + k) * y.size * 4);
      });
      clearTape();
    }
  }
  const ys = new Float32Array(await readBuffer(out, data.length * 2 * d * 4));
  releaseBuffer(out);
  x.release();
  const total = data.length;
  const result: number[] = [];
  for (let b = 0; b < n; b++) {
    const jac = new Float64Array(d * d); // jac[i * d + j] = dy_i / dx_j
    for (let j = 0; j < d; j++) {
      for (let i = 0; i < d; i++) {
        const yp = ys[(2 * j) * total + b * d + i];
        const ym = ys[(2 * j + 1) * total + b * d + i];
        jac[i * d + j] = (yp - ym) / (2 * h);
      }
    }
    result.push(logAbsDet(jac, d));
  }
  return result;
}

/** Max relative error |inverse(forward(x)) - x| / max|x|. */
export async function roundTripError(
  forward: (x: Tensor) => Tensor,
  inverse: (y: Tensor) => Tensor,
  data: Float32Array,
  shape: Shape,
): Promise<number> {
  const back = await noGrad(() => inverse(forward(Tensor.from(data, shape)))).read();
  clearTape();
  let err = 0, scale = 0;
  for (let i = 0; i < data.length; i++) {
    err = Math.max(err, Math.abs(back[i] - data[i]));
    scale = Math.max(scale, Math.abs(data[i]));
  }
  return err / scale;
}

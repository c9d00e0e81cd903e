// weightNorm and spectralNorm: forwards against f64 references (units along dim 0 and dim 1,
// scalar and vec4 row lengths, with and without gain), backwards against f64 adjoints and by
// gradcheck, the power iteration's state, and bad inputs. Sizes are not multiples of 4 except
// where a vec4 path is meant.
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randn, randu } from "./gradcheck.ts";
import { mul } from "../src/ops/elementwise.ts";
import { sum } from "../src/ops/reduce.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { type Shape, Tensor } from "../src/ops/tensor.ts";
import { spectralNorm, weightNorm } from "../src/ops/weight_norm.ts";

const size = (s: Shape) => s.reduce((a, b) => a * b, 1);

/** The [A, B, R] view: index of element (a, b, r), and the sizes. */
function view(shape: Shape, dim: 0 | 1) {
  const a = dim === 0 ? 1 : shape[0], b = shape[dim], r = size(shape) / (a * b);
  return { a, b, r, at: (ai: number, bi: number, ri: number) => (ai * b + bi) * r + ri };
}

/** Indices of row b's elements (the output unit's weights). */
function row(shape: Shape, dim: 0 | 1, bi: number): number[] {
  const { a, r, at } = view(shape, dim);
  const out: number[] = [];
  for (let ai = 0; ai < a; ai++) for (let ri = 0; ri < r; ri++) out.push(at(ai, bi, ri));
  return out;
}

/** f64 weight norm and its adjoints for an output gradient gd. */
function wnReference(
  w: ArrayLike<number>,
  shape: Shape,
  dim: 0 | 1,
  gain: ArrayLike<number> | undefined,
  gd: ArrayLike<number>,
  eps = 1e-8,
) {
  const { b } = view(shape, dim);
  const y = new Float64Array(w.length), dw = new Float64Array(w.length);
  const dg = new Float64Array(b);
  for (let bi = 0; bi < b; bi++) {
    const idx = row(shape, dim, bi);
    const n = Math.sqrt(idx.reduce((s, i) => s + w[i] * w[i], 0));
    const inv = 1 / Math.max(n, eps), g = gain ? gain[bi] : 1;
    const s = idx.reduce((acc, i) => acc + gd[i] * w[i] * inv, 0);
    dg[bi] = s;
    for (const i of idx) {
      y[i] = g * w[i] * inv;
      dw[i] = g * inv * (gd[i] - (n > eps ? w[i] * inv * s : 0));
    }
  }
  return { y, dw, dg };
}

interface WnCase {
  shape: Shape;
  dim: 0 | 1;
  gain: boolean;
}
const WN: WnCase[] = [
  { shape: [7, 5], dim: 0, gain: true }, // linear, rows of 5 (scalar kernels)
  { shape: [7, 5], dim: 0, gain: false },
  { shape: [6, 3, 4, 4], dim: 0, gain: true }, // conv2d, rows of 48 (vec4 kernels)
  { shape: [5, 3, 3, 3], dim: 0, gain: false }, // conv2d 3x3, rows of 27
  { shape: [3, 5, 4, 4], dim: 1, gain: true }, // convTranspose2d: unit = dim 1, R = 16
  { shape: [3, 5, 3, 3], dim: 1, gain: false }, // R = 9
  { shape: [3, 200], dim: 0, gain: true }, // long rows: several partial sums per row
  // Long dim-1 rows: partial sums whose chunks cross from one a to the next (scalar, vec4).
  { shape: [40, 3, 5, 5], dim: 1, gain: true },
  { shape: [30, 3, 2, 2], dim: 1, gain: false },
];
const wnName = (c: WnCase) => `[${c.shape}] dim ${c.dim}${c.gain ? " +gain" : ""}`;

for (const c of WN) {
  const { b } = view(c.shape, c.dim);
  const wd = randn(size(c.shape), 1), gaind = c.gain ? randu(b, 2, 0.5, 2) : undefined;
  const gd = randu(size(c.shape), 3);

  Deno.test(`weightNorm ${wnName(c)}: forward and backward match f64`, async () => {
    const ref = wnReference(wd, c.shape, c.dim, gaind, gd);
    const w = Tensor.from(wd, c.shape, { requiresGrad: true });
    const gain = gaind ? Tensor.from(gaind, [b], { requiresGrad: true }) : undefined;
    const y = weightNorm(w, { gain, dim: c.dim });
    const yd = await y.read();
    assertClose(yd, ref.y, { rtol: 1e-5, atol: 1e-6, label: "what" });
    backward(sum(mul(y, Tensor.from(gd, c.shape))), { keep: gain ? [w, gain] : [w] });
    assertClose(await w.grad!.read(), ref.dw, { rtol: 1e-4, atol: 1e-5, label: "dw" });
    if (gain) assertClose(await gain.grad!.read(), ref.dg, { rtol: 1e-4, atol: 1e-5, label: "dg" });
    // Without a gain every unit's weights have length 1.
    if (!gain) {
      for (let bi = 0; bi < b; bi++) {
        const n = Math.sqrt(row(c.shape, c.dim, bi).reduce((s, i) => s + yd[i] ** 2, 0));
        assert.ok(Math.abs(n - 1) < 1e-5, `row ${bi} has length ${n}`);
      }
    }
    clearTape();
  });

  Deno.test(`weightNorm ${wnName(c)}: gradcheck`, async () => {
    const inputs = [{ data: wd, shape: c.shape }];
    if (gaind) inputs.push({ data: gaind, shape: [b] });
    await gradcheck(
      (w, gain) => weightNorm(w, { gain, dim: c.dim }),
      inputs,
      { label: `weightNorm ${wnName(c)}`, maxElements: 40 },
    );
  });
}

Deno.test("weightNorm: a zero row is clamped at eps, not NaN", async () => {
  const wd = randn(15, 4);
  wd.fill(0, 5, 10); // unit 1 of [3, 5]
  const gd = randu(15, 5);
  const ref = wnReference(wd, [3, 5], 0, undefined, gd, 1e-3);
  const w = Tensor.from(wd, [3, 5], { requiresGrad: true });
  const y = weightNorm(w, { eps: 1e-3 });
  assertClose(await y.read(), ref.y, { rtol: 1e-5, atol: 1e-6 });
  backward(sum(mul(y, Tensor.from(gd, [3, 5]))), { keep: [w] });
  const dw = await w.grad!.read();
  // The zero row passes dwhat / eps straight through.
  assertClose(dw.subarray(5, 10), gd.subarray(5, 10).map((v) => v / 1e-3), { rtol: 1e-5 });
  assertClose(dw, ref.dw, { rtol: 1e-4, atol: 1e-5 });
  clearTape();
});

Deno.test("weightNorm: bad inputs throw naming the problem", () => {
  const w = Tensor.from(new Float32Array(12), [3, 4]);
  assert.throws(
    () => weightNorm(w, { gain: Tensor.from([1, 2, 3, 4], [4]) }),
    /^Error: flowgpu: weightNorm: gain \[4\] must be \[3\] for w \[3, 4\]/,
  );
  assert.throws(
    () => weightNorm(w, { dim: 1, gain: Tensor.from([1, 2, 3], [3]) }),
    /flowgpu: weightNorm: gain \[3\] must be \[4\] .*along dim 1/,
  );
  assert.throws(
    () => weightNorm(w, { dim: 2 as 1 }),
    /^Error: flowgpu: weightNorm: dim must be 0 or 1, got 2/,
  );
  assert.throws(
    () => weightNorm(Tensor.from([1, 2], [2]), { dim: 1 }),
    /flowgpu: weightNorm: w \[2\] has no output units along dim 1/,
  );
  clearTape();
});

// ---- spectral norm ----

/** The matrix M[b][j] (rows: units along dim) of w. */
function matrix(w: ArrayLike<number>, shape: Shape, dim: 0 | 1): number[][] {
  const { a, b, r, at } = view(shape, dim);
  return Array.from({ length: b }, (_, bi) => {
    const m: number[] = [];
    for (let ai = 0; ai < a; ai++) for (let ri = 0; ri < r; ri++) m.push(w[at(ai, bi, ri)]);
    return m;
  });
}

const norm = (v: number[]) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const unit = (v: number[]) => v.map((x) => x / Math.max(norm(v), 1e-12));
const mv = (m: number[][], v: number[]) => m.map((row) => row.reduce((s, x, j) => s + x * v[j], 0));
const mtv = (m: number[][], u: number[]) =>
  m[0].map((_, j) => m.reduce((s, row, bi) => s + row[j] * u[bi], 0));

/** One f64 power iteration from u: the new u, v and sigma. */
function powerStep(m: number[][], u: ArrayLike<number>) {
  const v = unit(mtv(m, Array.from(u)));
  const wv = mv(m, v);
  const un = unit(wv);
  return { u: un, v, sigma: un.reduce((s, x, i) => s + x * wv[i], 0) };
}

/** Elements of w in the matrix's column order, back to w's layout. */
function fromMatrix(m: number[][], shape: Shape, dim: 0 | 1): Float64Array {
  const { a, b, r, at } = view(shape, dim);
  const out = new Float64Array(size(shape));
  for (let bi = 0; bi < b; bi++) {
    for (let ai = 0; ai < a; ai++) {
      for (let ri = 0; ri < r; ri++) {
        out[at(ai, bi, ri)] = m[bi][ai * r + ri];
      }
    }
  }
  return out;
}

interface SnCase {
  shape: Shape;
  dim: 0 | 1;
}
const SN: SnCase[] = [
  { shape: [5, 7], dim: 0 }, // linear, 5 x 7
  { shape: [6, 3, 3, 3], dim: 0 }, // conv2d: 6 x 27
  { shape: [3, 5, 2, 2], dim: 1 }, // convTranspose2d: 5 x 12 (vec4 output path)
  { shape: [1, 9], dim: 0 }, // one row (a linear layer to one logit)
  { shape: [11, 1], dim: 0 }, // one column
  { shape: [5, 3, 2, 2], dim: 0 }, // 5 x 12: the vec4 kernels
  { shape: [7, 300], dim: 0 }, // long rows: several partial sums per row
  { shape: [30, 3, 3, 3], dim: 1 }, // chunks crossing from one a to the next
  { shape: [30, 3, 2, 2], dim: 1 },
];
const snName = (c: SnCase) => `[${c.shape}] dim ${c.dim}`;

for (const c of SN) {
  const { b } = view(c.shape, c.dim);
  const wd = randn(size(c.shape), 10);
  const u0 = randn(b, 11);
  const gd = randu(size(c.shape), 12);

  Deno.test(`spectralNorm ${snName(c)}: one iteration and its backward match f64`, async () => {
    const m = matrix(wd, c.shape, c.dim);
    const { u, v, sigma } = powerStep(m, u0);
    // dw = (dwhat - (sum dwhat w / sigma) u v^T) / sigma with u, v constant.
    const t = wd.reduce((s, x, i) => s + x * gd[i], 0);
    const uvT = fromMatrix(u.map((ub) => v.map((vj) => ub * vj)), c.shape, c.dim);
    const dwRef = Array.from(gd, (g, i) => (g - (t / sigma) * uvT[i]) / sigma);

    const state = Tensor.from(u0, [b]);
    const w = Tensor.from(wd, c.shape, { requiresGrad: true });
    const y = spectralNorm(w, state, { dim: c.dim });
    assertClose(await y.read(), Array.from(wd, (x) => x / sigma), {
      rtol: 1e-5,
      atol: 1e-6,
      label: "what",
    });
    assertClose(await state.read(), u, { rtol: 1e-5, atol: 1e-6, label: "u written back" });
    backward(sum(mul(y, Tensor.from(gd, c.shape))), { keep: [w] });
    assertClose(await w.grad!.read(), dwRef, { rtol: 1e-4, atol: 1e-5, label: "dw" });
    clearTape();
  });
}

Deno.test("spectralNorm: update: false leaves u alone and gives the same output", async () => {
  const shape = [6, 3, 3, 3], wd = randn(162, 13), u0 = randn(6, 14);
  const w = Tensor.from(wd, shape);
  const state = Tensor.from(u0, [6]);
  const frozen = await spectralNorm(w, state, { update: false }).read();
  assertClose(await state.read(), u0, { rtol: 0, atol: 0, label: "u untouched" });
  const updated = await spectralNorm(w, state).read();
  assertClose(frozen, updated, { rtol: 0, atol: 0 });
  assert.notDeepEqual(await state.read(), u0);
  clearTape();
});

/** A matrix with singular values 6, 2, 1, ... (a clear gap): U diag(s) V^T from random vectors. */
function gapped(rows: number, cols: number, seed: number): { w: Float32Array; top: number } {
  const ortho = (n: number, k: number, s: number) => {
    const vs: number[][] = [];
    const g = randn(n * k, s);
    for (let i = 0; i < k; i++) {
      let v = Array.from(g.subarray(i * n, (i + 1) * n));
      for (const q of vs) {
        const d = q.reduce((acc, x, j) => acc + x * v[j], 0);
        v = v.map((x, j) => x - d * q[j]);
      }
      vs.push(unit(v));
    }
    return vs;
  };
  const k = Math.min(rows, cols), sv = Array.from({ length: k }, (_, i) => (i === 0 ? 6 : 2 / i));
  const us = ortho(rows, k, seed), vs = ortho(cols, k, seed + 1);
  const w = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      w[i * cols + j] = sv.reduce((acc, s, q) => acc + s * us[q][i] * vs[q][j], 0);
    }
  }
  return { w, top: 6 };
}

Deno.test("spectralNorm: repeated calls converge to the largest singular value", async () => {
  const { w: wd, top } = gapped(6, 10, 20);
  const w = Tensor.from(wd, [6, 10]);
  const state = Tensor.from(randn(6, 21), [6]);
  for (let i = 0; i < 30; i++) spectralNorm(w, state);
  const y = await spectralNorm(w, state).read();
  const sigma = wd[0] / y[0];
  assert.ok(Math.abs(sigma - top) < 1e-4 * top, `sigma ${sigma}, want ${top}`);
  clearTape();
});

// At a converged u the constant-(u, v) gradient is the true gradient of w / sigma(w) (sigma is
// stationary in v), so the finite differences check it; u stays fixed while they run.
const SN_GRAD = [[[6, 10], 0], [[2, 5, 3], 1], [[5, 3, 2, 2], 0]] as [Shape, 0 | 1][];
for (const [shape, dim] of SN_GRAD) {
  Deno.test(`spectralNorm [${shape}] dim ${dim}: gradcheck at a converged u`, async () => {
    const { b, r, a } = view(shape, dim);
    const g = gapped(b, a * r, 30);
    const wd = fromMatrix(matrix(g.w, [b, a * r], 0), shape, dim);
    // Persistent: gradcheck clears the tape between its forwards.
    const state = Tensor.constant(randn(b, 31), [b]);
    const w0 = Tensor.from(wd, shape);
    for (let i = 0; i < 40; i++) spectralNorm(w0, state, { dim });
    await state.read();
    await gradcheck(
      (w) => spectralNorm(w, state, { dim, update: false }),
      [{ data: wd, shape }],
      { label: `spectralNorm [${shape}] dim ${dim}` },
    );
    state.release();
  });
}

Deno.test("spectralNorm: bad inputs throw naming the problem", () => {
  const w = Tensor.from(new Float32Array(12), [3, 4]);
  assert.throws(
    () => spectralNorm(w, Tensor.from([1, 2, 3, 4], [4])),
    /^Error: flowgpu: spectralNorm: u \[4\] must be \[3\] for w \[3, 4\]/,
  );
  assert.throws(
    () => spectralNorm(w, Tensor.from([1, 2, 3], [3]), { dim: 1 }),
    /flowgpu: spectralNorm: u \[3\] must be \[4\] .*along dim 1/,
  );
  assert.throws(
    () => spectralNorm(w, Tensor.from([1, 2, 3], [3]), { dim: 3 as 0 }),
    /flowgpu: spectralNorm: dim must be 0 or 1, got 3/,
  );
  clearTape();
});

// Indexing: gatherBatch (permutation, roll, repeats, M != N), embedding, where (full and
// per-sample masks) and projectionTerm. Forwards against plain TypeScript, backwards by gradcheck
// (repeated indices included: the scatter-add must sum them), and the input errors. Row sizes 3,
// 18 and 5 run the scalar kernels, 4 and 12 the vec4 ones.
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randn } from "./gradcheck.ts";
import { embedding, gatherBatch, projectionTerm, where } from "../src/ops/gather.ts";
import { mul } from "../src/ops/elementwise.ts";
import { sum } from "../src/ops/reduce.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { numel, Tensor } from "../src/ops/tensor.ts";

/** Rows of x [n, inner] picked by index. */
function gatherRef(x: ArrayLike<number>, inner: number, index: number[]): number[] {
  return index.flatMap((r) => Array.from({ length: inner }, (_, j) => x[r * inner + j]));
}

const INDICES: [string, number[]][] = [
  ["identity", [0, 1, 2, 3, 4]],
  ["roll by 2", [2, 3, 4, 0, 1]],
  ["derangement", [1, 4, 0, 2, 3]],
  ["repeats, M = 7", [2, 0, 2, 2, 1, 0, 4]],
  ["one row twice", [3, 3]],
];

for (const shape of [[5, 3], [5, 2, 3, 3], [5, 4], [5, 3, 2, 2]]) {
  const s = `[${shape.join(", ")}]`;
  const size = numel(shape);
  const inner = size / shape[0];
  const x = randn(size, 1);

  Deno.test(`gatherBatch ${s}: permutation, roll, derangement, repeats match`, async () => {
    for (const [what, index] of INDICES) {
      const y = gatherBatch(Tensor.from(x, shape), index);
      assert.deepEqual(y.shape, [index.length, ...shape.slice(1)], what);
      // A copy: exact.
      assert.deepEqual(Array.from(await y.read()), gatherRef(x, inner, index), what);
    }
    clearTape();
  });

  Deno.test(`gatherBatch ${s}: gradcheck, repeated indices sum`, async () => {
    for (const [what, index] of INDICES.slice(1)) {
      await gradcheck((t) => gatherBatch(t, index), [{ data: x, shape }], {
        label: `gatherBatch ${what}`,
      });
    }
  });
}

Deno.test("gatherBatch: gradient is the scatter-add by index; unread rows get exactly 0", async () => {
  const shape = [4, 3];
  const x = Tensor.from(randn(12, 2), shape, { requiresGrad: true });
  const w = randn(15, 3);
  const index = [3, 0, 3, 3, 1];
  backward(sum(mul(gatherBatch(x, index), Tensor.from(w, [5, 3]))), { keep: [x] });
  const want = new Array(12).fill(0);
  index.forEach((r, m) => {
    for (let j = 0; j < 3; j++) want[r * 3 + j] += w[m * 3 + j];
  });
  const got = await x.grad!.read();
  assertClose(got, want, { rtol: 1e-6, atol: 0 });
  assert.deepEqual(Array.from(got.slice(6, 9)), [0, 0, 0], "row 2 is never read");
  x.release();
  clearTape();
});

Deno.test("embedding [7, 5]: rows by label match; gradcheck with repeated labels", async () => {
  const table = randn(35, 4);
  const labels = [6, 0, 3, 3, 6, 6, 1, 2];
  const y = embedding(Tensor.from(table, [7, 5]), Uint32Array.from(labels));
  assert.deepEqual(y.shape, [8, 5]);
  assert.deepEqual(Array.from(await y.read()), gatherRef(table, 5, labels));
  clearTape();
  await gradcheck((t) => embedding(t, labels), [{ data: table, shape: [7, 5] }], {
    label: "embedding",
  });
  // D = 8: the vec4 kernels.
  const t8 = randn(24, 5);
  await gradcheck((t) => embedding(t, [2, 2, 0]), [{ data: t8, shape: [3, 8] }], {
    label: "embedding D = 8",
  });
});

Deno.test("gatherBatch, embedding: bad indices and labels throw naming them", () => {
  const x = Tensor.from(new Float32Array(12), [4, 3]);
  assert.throws(() => embedding(x, [1, 4, 0]), {
    message: "flowgpu: embedding: label 4 (at index 1) is out of range for a table of V = 4 rows " +
      "[4, 3] (labels are integers in [0, 4))",
  });
  assert.throws(() => embedding(x, [-1]), {
    message: /^flowgpu: embedding: label -1 \(at index 0\)/,
  });
  assert.throws(() => embedding(x, [1.5]), { message: /^flowgpu: embedding: label 1.5 / });
  assert.throws(() => embedding(x, []), { message: "flowgpu: embedding: no labels" });
  const x3 = Tensor.from(new Float32Array(12), [2, 2, 3]);
  assert.throws(() => embedding(x3, [0]), {
    message: "flowgpu: embedding: the table must be [V, D] (non-empty), got [2, 2, 3]",
  });
  assert.throws(() => gatherBatch(x3, [0, 2]), {
    message: "flowgpu: gatherBatch: index 2 (at position 1) is not a row of x [2, 2, 3] " +
      "(an integer in [0, 2))",
  });
  assert.throws(() => gatherBatch(x3, []), { message: "flowgpu: gatherBatch: the index is empty" });
  clearTape();
});

/** mask ? a : b with the mask full or per sample (one value per `inner`). */
function whereRef(mask: number[], a: ArrayLike<number>, b: ArrayLike<number>, inner: number) {
  const full = mask.length === a.length;
  return Array.from(a, (v, i) => (mask[full ? i : Math.floor(i / inner)] !== 0 ? v : b[i]));
}

for (const shape of [[3, 5], [4, 3, 2, 3], [3, 2, 2, 3]]) {
  const s = `[${shape.join(", ")}]`;
  const size = numel(shape);
  const [n] = shape;
  const inner = size / n;
  const a = randn(size, 5), b = randn(size, 6);
  const full = Array.from({ length: size }, (_, i) => (i * 7) % 3 === 0 ? 1 : 0);
  const perSample = Array.from({ length: n }, (_, i) => i % 2);
  const masks: [string, number[], number[]][] = [
    ["full", full, shape],
    ["per sample [N]", perSample, [n]],
    ["per sample [N, 1, ...]", perSample, [n, ...shape.slice(1).map(() => 1)]],
  ];

  Deno.test(`where ${s}: full and per-sample masks match`, async () => {
    for (const [what, m, mshape] of masks) {
      const y = where(Tensor.from(m, mshape), Tensor.from(a, shape), Tensor.from(b, shape));
      assert.deepEqual(y.shape, shape);
      assert.deepEqual(Array.from(await y.read()), whereRef(m, a, b, inner), what);
    }
    clearTape();
  });

  Deno.test(`where ${s}: gradcheck a and b (pass-through on the kept side)`, async () => {
    for (const [what, m, mshape] of masks) {
      const mask = Tensor.constant(m, mshape);
      await gradcheck(
        (x, y) => where(mask, x, y),
        [{ data: a, shape }, { data: b, shape }],
        { label: `where ${what}` },
      );
      mask.release();
    }
  });
}

Deno.test("where: gradients are g on the kept side and exactly 0 on the other", async () => {
  const a = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3], { requiresGrad: true });
  const b = Tensor.from([7, 8, 9, 10, 11, 12], [2, 3], { requiresGrad: true });
  const g = [0.5, -1, 2, 3, -4, 0.25];
  backward(sum(mul(where(Tensor.from([0, 1], [2]), a, b), Tensor.from(g, [2, 3]))), {
    keep: [a, b],
  });
  assert.deepEqual(Array.from(await a.grad!.read()), [0, 0, 0, 3, -4, 0.25]);
  assert.deepEqual(Array.from(await b.grad!.read()), [0.5, -1, 2, 0, 0, 0]);
  a.release();
  b.release();
  clearTape();
});

Deno.test("where: mismatched shapes and masks throw naming them", () => {
  const a = Tensor.from(new Float32Array(12), [3, 4]);
  const b = Tensor.from(new Float32Array(12), [4, 3]);
  assert.throws(() => where(a, a, b), {
    message: "flowgpu: where: b [4, 3] does not match a [3, 4]",
  });
  assert.throws(() => where(Tensor.from([1, 0, 1, 0], [4]), a, a), {
    message: "flowgpu: where: mask [4] is neither a's shape [3, 4] nor one value per sample " +
      "([3] or [3, 1, ...])",
  });
  clearTape();
});

function projRef(table: ArrayLike<number>, labels: number[], h: ArrayLike<number>, d: number) {
  return labels.map((c, b) => {
    let acc = 0;
    for (let j = 0; j < d; j++) acc += table[c * d + j] * h[b * d + j];
    return acc;
  });
}

for (
  const [c, d, labels] of [[5, 7, [4, 0, 4, 2, 4, 1]], [3, 4, [2, 2, 2]], [10, 9, [9]]] as const
) {
  const b = labels.length;
  const table = randn(c * d, 7), h = randn(b * d, 8);
  const lab = [...labels];

  Deno.test(`projectionTerm C=${c} D=${d} B=${b}: matches f64; gradcheck table and h`, async () => {
    const y = projectionTerm(Tensor.from(table, [c, d]), lab, Tensor.from(h, [b, d]));
    assert.deepEqual(y.shape, [b, 1]);
    assertClose(await y.read(), projRef(table, lab, h, d), { rtol: 2e-6, atol: 1e-6 });
    clearTape();
    await gradcheck(
      (t, hh) => projectionTerm(t, lab, hh),
      [{ data: table, shape: [c, d] }, { data: h, shape: [b, d] }],
      { label: "projectionTerm" },
    );
    await gradcheck(
      (t, hh) => projectionTerm(t, lab, hh),
      [{ data: table, shape: [c, d], grad: false }, { data: h, shape: [b, d] }],
      { label: "projectionTerm, h only" },
    );
  });
}

Deno.test("projectionTerm: bad shapes and labels throw naming them", () => {
  const table = Tensor.from(new Float32Array(12), [3, 4]);
  const h = Tensor.from(new Float32Array(8), [2, 4]);
  assert.throws(() => projectionTerm(table, [0, 3], h), {
    message: "flowgpu: projectionTerm: label 3 (at index 1) is out of range for a table of C = 3 " +
      "rows [3, 4] (labels are integers in [0, 3))",
  });
  assert.throws(() => projectionTerm(table, [0], h), {
    message: "flowgpu: projectionTerm: 1 labels for h [2, 4] (need 2)",
  });
  assert.throws(() => projectionTerm(table, [0, 1], Tensor.from(new Float32Array(6), [2, 3])), {
    message: "flowgpu: projectionTerm: h [2, 3] needs the embedding size D = 4 of table [3, 4]",
  });
  assert.throws(() => projectionTerm(h, [0], Tensor.from(new Float32Array(4), [4])), {
    message: /^flowgpu: projectionTerm: needs table \[C, D\] and h \[B, D\]/,
  });
  clearTape();
});

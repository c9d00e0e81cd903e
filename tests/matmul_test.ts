import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randu } from "./gradcheck.ts";
import { linear, matmul, type MatmulKernel, setMatmulKernel } from "../src/ops/matmul.ts";
import { clearTape } from "../src/ops/tape.ts";
import { type Shape, Tensor } from "../src/ops/tensor.ts";

/** f64 reference of op(a)·op(b), with the same shape rules as matmul. */
function reference(
  a: Float32Array,
  as: Shape,
  b: Float32Array,
  bs: Shape,
  ta: boolean,
  tb: boolean,
): number[] {
  const [ar, ac] = as.slice(-2), [br, bc] = bs.slice(-2);
  const m = ta ? ac : ar, k = ta ? ar : ac, n = tb ? br : bc;
  const nb = Math.max(as.length === 3 ? as[0] : 1, bs.length === 3 ? bs[0] : 1);
  const sa = as.length === 3 ? m * k : 0, sb = bs.length === 3 ? k * n : 0;
  const out: number[] = [];
  for (let z = 0; z < nb; z++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let l = 0; l < k; l++) {
          const x = a[z * sa + (ta ? l * m + i : i * k + l)];
          const y = b[z * sb + (tb ? j * k + l : l * n + j)];
          s += x * y;
        }
        out.push(s);
      }
    }
  }
  return out;
}

/** Stored shapes for op(a) [M, K], op(b) [K, N], with optional batch on either side. */
function shapes(
  m: number,
  k: number,
  n: number,
  ta: boolean,
  tb: boolean,
  batchA: number,
  batchB: number,
): [number[], number[]] {
  const a = ta ? [k, m] : [m, k];
  const b = tb ? [n, k] : [k, n];
  return [batchA ? [batchA, ...a] : a, batchB ? [batchB, ...b] : b];
}

// [label, M, K, N, batch of a, batch of b]. Odd sizes exercise the scalar kernel and its edge
// guards; the multiple-of-4 ones reach the vec4 kernel, and the EDGES rows (M = -1) reach it
// with every dimension it allows to be odd.
const CASES: [string, number, number, number, number, number][] = [
  ["2-D 5x7x3", 5, 7, 3, 0, 0],
  ["batched 2x13x9x11", 13, 9, 11, 2, 2],
  ["shared b 3x6x5x7", 6, 5, 7, 3, 0],
  ["shared a 2x7x6x5", 7, 6, 5, 0, 2],
  ["vec4 2-D 8x12x16", 8, 12, 16, 0, 0],
  ["vec4 batched 2x8x8x12", 8, 8, 12, 2, 2],
  ["vec4 shared b 3x8x12x8", 8, 12, 8, 3, 0],
  ["vec4 edges (EDGES)", -1, 0, 0, 0, 0],
  ["vec4 edges batched (EDGES)", -1, 0, 0, 3, 3],
];
const COMBOS: [boolean, boolean][] = [[false, false], [true, false], [false, true], [true, true]];
const tag = (ta: boolean, tb: boolean) => `${ta ? "T" : "N"}${tb ? "T" : "N"}`;

// vec4 kernel with every dimension it allows to be odd, per transpose combination [M, K, N].
const EDGES: Record<string, [number, number, number]> = {
  NN: [7, 8, 12],
  TN: [8, 7, 12],
  NT: [7, 8, 5],
  TT: [8, 12, 5],
};

function inputs(m: number, k: number, n: number, ta: boolean, tb: boolean, ba: number, bb: number) {
  if (m < 0) [m, k, n] = EDGES[tag(ta, tb)];
  const [as, bs] = shapes(m, k, n, ta, tb, ba, bb);
  const na = as.reduce((x, y) => x * y, 1), nbv = bs.reduce((x, y) => x * y, 1);
  return { as, bs, a: randu(na, 3 + m), b: randu(nbv, 5 + n), m, n };
}

async function checkForward(kernel: MatmulKernel) {
  setMatmulKernel(kernel);
  try {
    for (const [label, m, k, n, ba, bb] of CASES) {
      for (const [ta, tb] of COMBOS) {
        const { as, bs, a, b, m: rows, n: cols } = inputs(m, k, n, ta, tb, ba, bb);
        const c = matmul(Tensor.from(a, as), Tensor.from(b, bs), { transA: ta, transB: tb });
        const want = reference(a, as, b, bs, ta, tb);
        const nbOut = Math.max(ba, bb);
        assert.deepEqual(c.shape, nbOut ? [nbOut, rows, cols] : [rows, cols]);
        assertClose(await c.read(), want, {
          rtol: 1e-5,
          atol: 1e-5,
          label: `${kernel} ${label} ${tag(ta, tb)}`,
        });
      }
    }
  } finally {
    setMatmulKernel("auto");
    clearTape();
  }
}

Deno.test("matmul: forward matches f64 reference (all transposes, batched, shared)", async () => {
  await checkForward("blocked");
});

Deno.test("matmul: packed-panel kernel matches f64 reference", async () => {
  await checkForward("packed");
});

Deno.test("matmul: workgroup-tiled kernel matches f64 reference", async () => {
  await checkForward("tiled");
});

Deno.test("matmul: larger than one workgroup tile (70x33x130, auto: packed panels)", async () => {
  for (const [m, k, n] of [[70, 33, 130], [68, 36, 132]]) {
    for (const [ta, tb] of COMBOS) {
      const { as, bs, a, b } = inputs(m, k, n, ta, tb, 0, 0);
      const c = matmul(Tensor.from(a, as), Tensor.from(b, bs), { transA: ta, transB: tb });
      assertClose(await c.read(), reference(a, as, b, bs, ta, tb), {
        rtol: 1e-5,
        atol: 1e-5,
        label: `${m}x${k}x${n} ${tag(ta, tb)}`,
      });
    }
  }
  clearTape();
});

// Gradchecks: odd shapes (scalar kernel) and multiple-of-4 shapes (vec4 kernel, whose backward
// passes run every transpose combination of it as well), and the same through packed panels.
const GRAD_CASES = CASES.filter(([label]) => label !== "vec4 edges batched (EDGES)");
for (const kernel of ["blocked", "packed"] as const) {
  for (const [ta, tb] of COMBOS) {
    Deno.test(`matmul ${tag(ta, tb)} ${kernel}: gradcheck a and b`, async () => {
      setMatmulKernel(kernel);
      try {
        for (const [label, m, k, n, ba, bb] of GRAD_CASES) {
          const { as, bs, a, b } = inputs(m, k, n, ta, tb, ba, bb);
          await gradcheck(
            (x, y) => matmul(x, y, { transA: ta, transB: tb }),
            [{ data: a, shape: as }, { data: b, shape: bs }],
            { label: `${kernel} ${label} ${tag(ta, tb)}`, maxElements: 24 },
          );
        }
      } finally {
        setMatmulKernel("auto");
      }
    });
  }
}

// Several panels each way (32 rows of op(A), 16 columns of op(B)) with ragged last panels, batched
// and shared operands: the shared operand's gradient sums the batch inside mm_panel (nsum).
const PANEL_CASES: [string, number, number, number, number, number][] = [
  ["batched 2x37x21x45", 37, 21, 45, 2, 2],
  ["shared b 3x70x9x19", 70, 9, 19, 3, 0],
  ["shared a 2x33x10x35", 33, 10, 35, 0, 2],
];
Deno.test("matmul packed: multi-panel batched and shared, forward and gradcheck", async () => {
  setMatmulKernel("packed");
  try {
    for (const [label, m, k, n, ba, bb] of PANEL_CASES) {
      for (const [ta, tb] of COMBOS) {
        const { as, bs, a, b } = inputs(m, k, n, ta, tb, ba, bb);
        const c = matmul(Tensor.from(a, as), Tensor.from(b, bs), { transA: ta, transB: tb });
        assertClose(await c.read(), reference(a, as, b, bs, ta, tb), {
          rtol: 1e-5,
          atol: 1e-5,
          label: `packed ${label} ${tag(ta, tb)}`,
        });
        clearTape();
        await gradcheck(
          (x, y) => matmul(x, y, { transA: ta, transB: tb }),
          [{ data: a, shape: as }, { data: b, shape: bs }],
          { label: `packed ${label} ${tag(ta, tb)}`, maxElements: 12 },
        );
      }
    }
  } finally {
    setMatmulKernel("auto");
  }
});

Deno.test("linear: forward matches f64 reference, gradcheck x, w, bias", async () => {
  const [n, inp, out] = [5, 7, 3];
  const x = randu(n * inp, 21), w = randu(out * inp, 22), bias = randu(out, 23);
  const y = linear(Tensor.from(x, [n, inp]), Tensor.from(w, [out, inp]), Tensor.from(bias, [out]));
  const want = reference(x, [n, inp], w, [out, inp], false, true).map((v, i) => v + bias[i % out]);
  assertClose(await y.read(), want, { rtol: 1e-5, atol: 1e-5, label: "linear" });
  const y2 = linear(Tensor.from(x, [n, inp]), Tensor.from(w, [out, inp]));
  assertClose(await y2.read(), reference(x, [n, inp], w, [out, inp], false, true), {
    rtol: 1e-5,
    atol: 1e-5,
    label: "linear without bias",
  });
  clearTape();
  await gradcheck(
    (xx, ww, bb) => linear(xx, ww, bb),
    [{ data: x, shape: [n, inp] }, { data: w, shape: [out, inp] }, { data: bias, shape: [out] }],
    { label: "linear" },
  );
});

Deno.test("matmul: mismatched shapes throw naming both shapes", () => {
  const a = Tensor.from(new Float32Array(6), [2, 3]);
  const b = Tensor.from(new Float32Array(8), [4, 2]);
  assert.throws(() => matmul(a, b), /matmul: a \[2, 3\] and b \[4, 2\]: inner dimensions 3 and 4/);
  assert.throws(() => matmul(a, b, { transA: true }), /a \[2, 3\] \(transA\) and b \[4, 2\]/);
  const a3 = Tensor.from(new Float32Array(12), [2, 2, 3]);
  const b3 = Tensor.from(new Float32Array(18), [3, 3, 2]);
  assert.throws(() => matmul(a3, b3), /a \[2, 2, 3\] and b \[3, 3, 2\]: batch sizes differ/);
  const v = Tensor.from(new Float32Array(3), [3]);
  assert.throws(() => matmul(v, b), /\[3\] and b \[4, 2\]: operands must be 2-D or 3-D/);
  assert.throws(
    () => linear(a, Tensor.from(new Float32Array(12), [4, 3]), Tensor.from([1, 2, 3], [3])),
    /linear: x \[2, 3\], w \[4, 3\], bias \[3\] do not fit/,
  );
  assert.throws(
    () => linear(a, Tensor.from(new Float32Array(8), [4, 2])),
    /linear: x \[2, 3\], w \[4, 2\] do not fit x \[N, In\], w \[Out, In\]/,
  );
  clearTape();
});

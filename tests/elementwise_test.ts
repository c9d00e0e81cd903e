import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randu } from "./gradcheck.ts";
import { binary, type BinaryOp, scale, unary, type UnaryOp } from "../src/ops/elementwise.ts";
import { clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";

// Odd sizes on purpose: not multiples of 4 (vec4 kernels) nor of the workgroup size.
const SHAPE = [2, 3, 5, 7];
const N = 2 * 3 * 5 * 7;

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const REF: Record<UnaryOp, [(x: number) => number, number, number]> = {
  // f, input lo, input hi (away from kinks and domain edges)
  neg: [(x) => -x, -2, 2],
  exp: [Math.exp, -2, 2],
  log: [Math.log, 0.5, 3],
  sigmoid: [sigmoid, -4, 4],
  softplus: [(x) => Math.log1p(Math.exp(x)), -4, 4],
  tanh: [Math.tanh, -2, 2],
  relu: [(x) => Math.max(x, 0), -2, 2],
  square: [(x) => x * x, -2, 2],
  sqrt: [Math.sqrt, 0.5, 3],
};

for (const op of Object.keys(REF) as UnaryOp[]) {
  const [ref, lo, hi] = REF[op];
  let data = randu(N, 11, lo, hi);
  // relu: keep every input at least 2h from the kink.
  if (op === "relu") data = data.map((x) => (Math.abs(x) < 0.05 ? x + 0.1 : x));
  Deno.test(`${op}: forward matches f64 reference`, async () => {
    const y = unary(op, Tensor.from(data, SHAPE));
    assertClose(await y.read(), Array.from(data, ref), { rtol: 2e-6, atol: 1e-6, label: op });
    clearTape();
  });
  Deno.test(`${op}: gradcheck`, async () => {
    await gradcheck((x) => unary(op, x), [{ data, shape: SHAPE }], { label: op });
  });
}

Deno.test("scale: forward and gradcheck", async () => {
  const data = randu(N, 4);
  const y = scale(Tensor.from(data, SHAPE), -2.5);
  assertClose(await y.read(), Array.from(data, (x) => -2.5 * x), { rtol: 1e-6 });
  clearTape();
  await gradcheck((x) => scale(x, -2.5), [{ data, shape: SHAPE }]);
});

const BIN: Record<BinaryOp, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
};

const bShapes: [string, number[], (i: number) => number][] = [
  ["same shape", SHAPE, (i) => i],
  ["scalar", [1], () => 0],
  ["per channel [C]", [3], (i) => Math.floor(i / 35) % 3],
  ["per channel [1,C,1,1]", [1, 3, 1, 1], (i) => Math.floor(i / 35) % 3],
];

// A second shape whose size and per-channel inner size are multiples of 4: the vec4 kernel.
const SHAPE4 = [2, 3, 2, 4];
const bShapes4: [string, number[], (i: number) => number][] = [
  ["same shape, vec4", SHAPE4, (i) => i],
  ["scalar, vec4", [1], () => 0],
  ["per channel, vec4", [3], (i) => Math.floor(i / 8) % 3],
];

for (const op of Object.keys(BIN) as BinaryOp[]) {
  for (const [what, bShape, idx] of bShapes4) {
    const a = randu(48, 30, -2, 2);
    const b = randu(bShape.reduce((x, y) => x * y, 1), 31, 0.5, 2);
    Deno.test(`${op} (${what}): forward matches f64 reference`, async () => {
      const y = binary(op, Tensor.from(a, SHAPE4), Tensor.from(b, bShape));
      assertClose(await y.read(), Array.from(a, (x, i) => BIN[op](x, b[idx(i)])), { rtol: 2e-6 });
      const z = binary(op, Tensor.from(b, bShape), Tensor.from(a, SHAPE4));
      const a2 = Array.from(a, (x, i) => BIN[op](b[idx(i)], x));
      assertClose(await z.read(), a2, { rtol: 2e-6, atol: 1e-5 });
      clearTape();
    });
  }
  for (const [what, bShape, idx] of bShapes) {
    const nb = bShape.reduce((a, b) => a * b, 1);
    const a = randu(N, 3, -2, 2);
    // Divisors kept away from zero.
    const b = randu(nb, 5, 0.5, 2).map((x, i) => (i % 2 ? -x : x));
    Deno.test(`${op} (${what}): forward matches f64 reference`, async () => {
      const y = binary(op, Tensor.from(a, SHAPE), Tensor.from(b, bShape));
      const want = Array.from(a, (x, i) => BIN[op](x, b[idx(i)]));
      assertClose(await y.read(), want, { rtol: 2e-6, atol: 1e-6 });
      // The broadcast operand may also come first.
      const z = binary(op, Tensor.from(b, bShape), Tensor.from(a, SHAPE));
      const want2 = Array.from(a, (x, i) => BIN[op](b[idx(i)], x));
      assertClose(await z.read(), want2, { rtol: 2e-6, atol: 1e-6 });
      clearTape();
    });
    Deno.test(`${op} (${what}): gradcheck, both operands`, async () => {
      await gradcheck((x, y) => binary(op, x, y), [{ data: a, shape: SHAPE }, {
        data: b,
        shape: bShape,
      }], { label: `${op} ${what}` });
      const a2 = a.map((x) => (Math.abs(x) < 0.3 ? x + 0.6 : x)); // a as divisor now
      await gradcheck((y, x) => binary(op, y, x), [{ data: b, shape: bShape }, {
        data: a2,
        shape: SHAPE,
      }], { label: `${op} ${what} (broadcast first)` });
    });
  }
}

Deno.test("binary: incompatible shapes name both shapes", () => {
  const a = Tensor.from(new Float32Array(6), [2, 3]);
  const b = Tensor.from(new Float32Array(4), [4]);
  assert.throws(() => binary("add", a, b), /\[2, 3\] and \[4\]/);
  clearTape();
});

Deno.test("a released tensor says so", () => {
  const a = Tensor.from([1, 2, 3], [3]);
  a.release();
  assert.throws(() => unary("exp", a), /was released/);
});

import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randu } from "./gradcheck.ts";
import {
  binary,
  type BinaryOp,
  leakyRelu,
  scale,
  unary,
  type UnaryOp,
} from "../src/ops/elementwise.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
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
  leakyRelu: [(x) => (x > 0 ? x : 0.1 * x), -2, 2],
};
// The ops' parameter (pf.a): leaky ReLU's slope, not its default, so that the uniform is read.
const PARAM: Partial<Record<UnaryOp, number>> = { leakyRelu: 0.1 };

for (const op of Object.keys(REF) as UnaryOp[]) {
  const [ref, lo, hi] = REF[op];
  let data = randu(N, 11, lo, hi);
  // relu: keep every input at least 2h from the kink.
  if (op === "relu" || op === "leakyRelu") {
    data = data.map((x) => (Math.abs(x) < 0.05 ? x + 0.1 : x));
  }
  Deno.test(`${op}: forward matches f64 reference`, async () => {
    const y = unary(op, Tensor.from(data, SHAPE), PARAM[op]);
    assertClose(await y.read(), Array.from(data, ref), { rtol: 2e-6, atol: 1e-6, label: op });
    clearTape();
  });
  Deno.test(`${op}: gradcheck`, async () => {
    await gradcheck((x) => unary(op, x, PARAM[op]), [{ data, shape: SHAPE }], { label: op });
  });
}

Deno.test("leakyRelu: default slope 0.2, another slope, and its gradient at 0", async () => {
  const data = [-3, -0.5, 0, 0.25, 2, -1, 7];
  const x = Tensor.from(data, [7], { requiresGrad: true });
  assertClose(await leakyRelu(x).read(), data.map((v) => (v > 0 ? v : 0.2 * v)), { rtol: 1e-7 });
  assertClose(await leakyRelu(x, 0.01).read(), data.map((v) => (v > 0 ? v : 0.01 * v)), {
    rtol: 1e-7,
  });
  clearTape();
  await gradcheck((x) => leakyRelu(x, 0.3), [{ data: randu(N, 12), shape: SHAPE }], {
    kinks: true,
  });
});

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
  ["per sample [1,C,H,W]", [1, 3, 5, 7], (i) => i % 105],
  ["per sample [C,H,W]", [3, 5, 7], (i) => i % 105],
];

// A second shape whose size and per-channel inner size are multiples of 4: the vec4 kernel.
const SHAPE4 = [2, 3, 2, 4];
const bShapes4: [string, number[], (i: number) => number][] = [
  ["same shape, vec4", SHAPE4, (i) => i],
  ["scalar, vec4", [1], () => 0],
  ["per channel, vec4", [3], (i) => Math.floor(i / 8) % 3],
  ["per sample [1,C,H,W], vec4", [1, 3, 2, 4], (i) => i % 24],
  ["per sample [C,H,W], vec4", [3, 2, 4], (i) => i % 24],
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

Deno.test("binary: per sample with n % 4 == 0 but a sample that is not (scalar kernel)", async () => {
  // [4, 3, 1, 3]: 36 elements, 9 per sample, so the vec4 kernel would straddle samples.
  const a = randu(36, 40, -2, 2);
  const b = randu(9, 41, 0.5, 2);
  for (const op of ["mul", "div"] as const) {
    const y = binary(op, Tensor.from(a, [4, 3, 1, 3]), Tensor.from(b, [1, 3, 1, 3]));
    assertClose(await y.read(), Array.from(a, (x, i) => BIN[op](x, b[i % 9])), { rtol: 2e-6 });
    clearTape();
    await gradcheck((x, y) => binary(op, x, y), [{ data: a, shape: [4, 3, 1, 3] }, {
      data: b,
      shape: [3, 1, 3],
    }], { label: `${op} per sample, scalar kernel` });
  }
});

Deno.test("binary: per-sample gradient sums over the batch", async () => {
  const a = Tensor.from(randu(2 * 3 * 5, 42), [2, 3, 5], { requiresGrad: true });
  const b = Tensor.param(randu(15, 43), [1, 3, 5], "b");
  const y = binary("add", a, b);
  backward(y);
  // d(sum y)/db = N = 2 for every element.
  assertClose(await b.grad!.read(), new Array(15).fill(2), { rtol: 0 });
  clearTape();
  b.release();
});

Deno.test("binary: incompatible shapes name both shapes and every mode", () => {
  const a = Tensor.from(new Float32Array(6), [2, 3]);
  const b = Tensor.from(new Float32Array(4), [4]);
  assert.throws(() => binary("add", a, b), /\[2, 3\] and \[4\].*one sample \[1, C, \.\.\.\]/);
  // A sample-sized operand of the wrong layout is refused too.
  const c = Tensor.from(new Float32Array(2 * 3 * 4 * 5), [2, 3, 4, 5]);
  const d = Tensor.from(new Float32Array(60), [3, 5, 4]);
  assert.throws(() => binary("mul", c, d), /\[2, 3, 4, 5\] and \[3, 5, 4\]/);
  clearTape();
});

Deno.test("a released tensor says so", () => {
  const a = Tensor.from([1, 2, 3], [3]);
  a.release();
  assert.throws(() => unary("exp", a), /was released/);
});

Deno.test("softplus keeps full relative accuracy far into the negative tail (no log(1 + e) rounding)", async () => {
  const data = [-30, -20, -17, -10, -1e-3, 0, 15, 40];
  const y = await unary("softplus", Tensor.from(data, [8])).read();
  const ref = data.map((x) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x))));
  for (let i = 0; i < data.length; i++) {
    // WGSL's exp is accurate to 3 + 2|x| ULP; log(1 + e) would have returned 0 below x ≈ −16.6.
    const tol = ((3 + 2 * Math.abs(data[i])) * 2 ** -23 + 2e-7) * Math.abs(ref[i]);
    assert.ok(
      Math.abs(y[i] - ref[i]) <= tol,
      `softplus(${data[i]}) = ${y[i]}, want ${ref[i]}`,
    );
  }
  clearTape();
});

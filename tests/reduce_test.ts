import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randn } from "./gradcheck.ts";
import {
  mean,
  meanBatch,
  meanPerChannel,
  sum,
  sumBatch,
  sumPerChannel,
  sumPerSample,
} from "../src/ops/reduce.ts";
import { clearTape } from "../src/ops/tape.ts";
import { type Shape, Tensor } from "../src/ops/tensor.ts";

/** f64 reference: x viewed as [a, b, c] summed over a and c, times scale. */
function ref(x: Float32Array, a: number, b: number, c: number, scale: number): number[] {
  const out = new Array(b).fill(0);
  for (let i = 0; i < a; i++) {
    for (let j = 0; j < b; j++) for (let k = 0; k < c; k++) out[j] += x[(i * b + j) * c + k];
  }
  return out.map((v) => v * scale);
}

type Red = [string, (x: Tensor) => Tensor, (s: number[]) => [number, number, number, number]];
const REDUCTIONS: Red[] = [
  ["sum", sum, (s) => [1, 1, s.reduce((a, b) => a * b), 1]],
  ["mean", mean, (s) => [1, 1, s.reduce((a, b) => a * b), 1 / s.reduce((a, b) => a * b)]],
  ["sumBatch", sumBatch, (s) => [s[0], s.slice(1).reduce((a, b) => a * b), 1, 1]],
  ["meanBatch", meanBatch, (s) => [s[0], s.slice(1).reduce((a, b) => a * b), 1, 1 / s[0]]],
  ["sumPerSample", sumPerSample, (s) => [1, s[0], s.slice(1).reduce((a, b) => a * b), 1]],
  ["sumPerChannel", sumPerChannel, (s) => [s[0], s[1], s[2] * s[3], 1]],
  ["meanPerChannel", meanPerChannel, (s) => [s[0], s[1], s[2] * s[3], 1 / (s[0] * s[2] * s[3])]],
];

// [3,5,3,7]: nothing a multiple of 4 (scalar loads); [2,3,4,6]: vec4 loads along c;
// [4,2,40,40]: large enough that each output has many partial sums; [64,4,1,2]: row sums with
// several partials each.
const SHAPES: Shape[] = [[3, 5, 3, 7], [2, 3, 4, 6], [4, 2, 40, 40], [64, 4, 1, 2]];

for (const [name, f, view] of REDUCTIONS) {
  for (const shape of SHAPES) {
    const n = shape.reduce((a, b) => a * b);
    const x = randn(n, n);
    Deno.test(`${name} ${JSON.stringify(shape)}: forward matches f64 reference`, async () => {
      const [a, b, c, scale] = view([...shape]);
      const y = await f(Tensor.from(x, shape)).read();
      assertClose(y, ref(x, a, b, c, scale), { rtol: 1e-5, atol: 1e-4 * Math.sqrt(a * c) * scale });
      clearTape();
    });
  }
  Deno.test(`${name}: gradcheck`, async () => {
    await gradcheck(f, [{ data: randn(90, 4), shape: [2, 3, 3, 5] }], { label: name });
    await gradcheck(f, [{ data: randn(48, 5), shape: [2, 3, 2, 4] }], { label: `${name} vec4` });
  });
}

Deno.test("sumPerChannel of a 2-D [N, C] tensor", async () => {
  const y = await sumPerChannel(Tensor.from([1, 2, 3, 4, 5, 6], [2, 3])).read();
  assert.deepEqual(Array.from(y), [5, 7, 9]);
  clearTape();
});

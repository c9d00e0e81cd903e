// avgPool2d (2x2, stride 2, zero padding counted): forward against an f64 reference, backward
// values, gradchecks and bad inputs, on odd and even sizes, padding 0 and 1, and the vec4 path
// (padding 0, W % 4 == 0) with an odd H.
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randu } from "./gradcheck.ts";
import { mul } from "../src/ops/elementwise.ts";
import { avgPool2d } from "../src/ops/pool.ts";
import { sum } from "../src/ops/reduce.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";

/** f64 reference: window sums over the zero-padded image / 4; the output shape. */
function reference(x: ArrayLike<number>, [n, c, h, w]: number[], pad: number) {
  const ho = Math.floor((h + 2 * pad - 2) / 2) + 1, wo = Math.floor((w + 2 * pad - 2) / 2) + 1;
  const y: number[] = [];
  for (let p = 0; p < n * c; p++) {
    for (let oy = 0; oy < ho; oy++) {
      for (let ox = 0; ox < wo; ox++) {
        let acc = 0;
        for (let dy = 0; dy < 2; dy++) {
          for (let dx = 0; dx < 2; dx++) {
            const iy = 2 * oy - pad + dy, ix = 2 * ox - pad + dx;
            if (iy >= 0 && iy < h && ix >= 0 && ix < w) acc += x[(p * h + iy) * w + ix];
          }
        }
        y.push(acc / 4);
      }
    }
  }
  return { y, shape: [n, c, ho, wo] };
}

// [shape, padding]: scalar kernels (odd sizes, padding 1 as DisUnknown's ResDown at e = 1:
// 14 -> 8), and the vec4 kernels (W = 8 and 4, odd H drops the last row).
const CASES: [number[], number][] = [
  [[2, 3, 7, 5], 0],
  [[2, 3, 7, 5], 1],
  [[1, 2, 14, 14], 1],
  [[2, 3, 6, 10], 0],
  [[2, 3, 6, 10], 1],
  [[3, 2, 5, 8], 0],
  [[1, 3, 6, 4], 0],
  [[1, 1, 2, 2], 0],
];

for (const [shape, pad] of CASES) {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = randu(n, 5 + n + pad);
  const label = `avgPool2d [${shape}] padding ${pad}`;

  Deno.test(`${label}: forward matches f64 reference`, async () => {
    const ref = reference(data, shape, pad);
    const y = avgPool2d(Tensor.from(data, shape), { padding: pad });
    assert.deepEqual(y.shape, ref.shape);
    assertClose(await y.read(), ref.y, { rtol: 1e-6, atol: 1e-7, label });
    clearTape();
  });

  Deno.test(`${label}: backward spreads g / 4 over each window`, async () => {
    const { shape: ys } = reference(data, shape, pad);
    const [, , ho, wo] = ys;
    const [, , h, w] = shape;
    const gd = randu(ys.reduce((a, b) => a * b, 1), 7);
    const want = Array.from({ length: n }, (_, i) => {
      const ix = i % w, iy = Math.floor(i / w) % h, p = Math.floor(i / (w * h));
      const oy = (iy + pad) >> 1, ox = (ix + pad) >> 1;
      return oy < ho && ox < wo ? gd[(p * ho + oy) * wo + ox] / 4 : 0;
    });
    const x = Tensor.from(data, shape, { requiresGrad: true });
    backward(sum(mul(avgPool2d(x, { padding: pad }), Tensor.from(gd, ys))), { keep: [x] });
    assertClose(await x.grad!.read(), want, { rtol: 0, atol: 0, label });
    clearTape();
  });

  Deno.test(`${label}: gradcheck`, async () => {
    await gradcheck((x) => avgPool2d(x, { padding: pad }), [{ data, shape }], { label });
  });
}

Deno.test("avgPool2d: padded zeros count in the divisor", async () => {
  // A 2x2 image of ones, padding 1: every output window holds one pixel, so each is 1/4.
  const y = avgPool2d(Tensor.from([1, 1, 1, 1], [1, 1, 2, 2]), { padding: 1 });
  assert.deepEqual(y.shape, [1, 1, 2, 2]);
  assertClose(await y.read(), [0.25, 0.25, 0.25, 0.25], { rtol: 0, atol: 0 });
  clearTape();
});

Deno.test("avgPool2d: bad inputs throw naming the problem", () => {
  const x = Tensor.from(new Float32Array(12), [1, 1, 3, 4]);
  assert.throws(
    () => avgPool2d(x, { padding: 2 }),
    /^Error: flowgpu: avgPool2d: padding must be 0 or 1 .*got 2/,
  );
  assert.throws(() => avgPool2d(x, { padding: -1 }), /flowgpu: avgPool2d: padding must be .*-1/);
  assert.throws(
    () => avgPool2d(Tensor.from([1, 2, 3], [1, 1, 1, 3])),
    /flowgpu: avgPool2d: x \[1, 1, 1, 3\] is smaller than the 2x2 window/,
  );
  assert.throws(
    () => avgPool2d(Tensor.from([1, 2, 3, 4], [2, 2])),
    /flowgpu: avgPool2d: x \[2, 2\] is not \[N, C, H, W\]/,
  );
  clearTape();
});

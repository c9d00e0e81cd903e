// upsample2x: forward against an f64 reference and gradchecks, on odd W (scalar kernels) and on
// even W that is not a multiple of 4 (the vec2/vec4 kernels).
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randu } from "./gradcheck.ts";
import { mul } from "../src/ops/elementwise.ts";
import { sum } from "../src/ops/reduce.ts";
import { upsample2x } from "../src/ops/resample.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";

function reference(x: ArrayLike<number>, [n, c, h, w]: number[]): number[] {
  const y: number[] = [];
  for (let p = 0; p < n * c; p++) {
    for (let oy = 0; oy < 2 * h; oy++) {
      for (let ox = 0; ox < 2 * w; ox++) y.push(x[(p * h + (oy >> 1)) * w + (ox >> 1)]);
    }
  }
  return y;
}

const SHAPES = [[2, 3, 5, 7], [2, 3, 3, 6], [1, 1, 1, 1]];

for (const shape of SHAPES) {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = randu(n, 3 + n);
  Deno.test(`upsample2x [${shape}]: forward matches reference`, async () => {
    const y = upsample2x(Tensor.from(data, shape));
    assert.deepEqual(y.shape, [shape[0], shape[1], 2 * shape[2], 2 * shape[3]]);
    // A copy: bit-exact.
    assertClose(await y.read(), reference(data, shape), { rtol: 0, atol: 0 });
    clearTape();
  });
  Deno.test(`upsample2x [${shape}]: gradcheck`, async () => {
    await gradcheck(upsample2x, [{ data, shape }], { label: `upsample2x [${shape}]` });
  });
}

Deno.test("upsample2x: backward sums each 2x2 block", async () => {
  const shape = [1, 2, 3, 2];
  const x = Tensor.from(new Float32Array(12), shape, { requiresGrad: true });
  const y = upsample2x(x);
  // Seed the output gradient with its index, through a weighted sum.
  const idx = Tensor.from(Array.from({ length: 48 }, (_, i) => i), y.shape);
  backward(sum(mul(y, idx)), { keep: [x] });
  const want = [];
  for (let p = 0; p < 2; p++) {
    for (let iy = 0; iy < 3; iy++) {
      for (let ix = 0; ix < 2; ix++) {
        const o = (p * 6 + 2 * iy) * 4 + 2 * ix;
        want.push(o + (o + 1) + (o + 4) + (o + 5));
      }
    }
  }
  assertClose(await x.grad!.read(), want, { rtol: 0, atol: 0 });
  clearTape();
});

Deno.test("upsample2x: refuses a tensor that is not [N, C, H, W]", () => {
  assert.throws(() => upsample2x(Tensor.from(new Float32Array(6), [2, 3])), /\[2, 3\] is not/);
  clearTape();
});

// upsample2x (with and without crop), tile2d, translate2d: forwards against f64 references,
// gradchecks, backward values and bad inputs; upsample2x on odd W (scalar kernels) and on even W
// that is not a multiple of 4 (the vec2/vec4 kernels).
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randu } from "./gradcheck.ts";
import { mul } from "../src/ops/elementwise.ts";
import { sum } from "../src/ops/reduce.ts";
import { tile2d, translate2d, upsample2x } from "../src/ops/resample.ts";
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
    await gradcheck((x) => upsample2x(x), [{ data, shape }], { label: `upsample2x [${shape}]` });
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

// ---- upsample2x with crop ----

function cropReference(x: ArrayLike<number>, [n, c, h, w]: number[], e: number): number[] {
  const y: number[] = [];
  for (let p = 0; p < n * c; p++) {
    for (let oy = 0; oy < 2 * h - 2 * e; oy++) {
      for (let ox = 0; ox < 2 * w - 2 * e; ox++) {
        y.push(x[(p * h + ((oy + e) >> 1)) * w + ((ox + e) >> 1)]);
      }
    }
  }
  return y;
}

// DisUnknown's ResUp shortcut at S = 28: 7 -> 14, cropped by 1 to 12.
// Odd and even crops, rows of 12, 8, 10 and 6 outputs.
const CROPS: [number[], number][] = [
  [[2, 3, 7, 7], 1],
  [[1, 2, 5, 6], 2],
  [[2, 1, 3, 5], 1],
  [[2, 2, 4, 6], 1],
  [[1, 2, 5, 4], 1],
];

for (const [shape, e] of CROPS) {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = randu(n, 40 + n);
  Deno.test(`upsample2x [${shape}] crop ${e}: forward matches reference`, async () => {
    const y = upsample2x(Tensor.from(data, shape), { crop: e });
    assert.deepEqual(y.shape, [shape[0], shape[1], 2 * shape[2] - 2 * e, 2 * shape[3] - 2 * e]);
    assertClose(await y.read(), cropReference(data, shape, e), { rtol: 0, atol: 0 });
    clearTape();
  });
  Deno.test(`upsample2x [${shape}] crop ${e}: gradcheck`, async () => {
    await gradcheck((x) => upsample2x(x, { crop: e }), [{ data, shape }], {
      label: `upsample2x crop [${shape}]`,
    });
  });
}

Deno.test("upsample2x crop: backward sums the surviving part of each 2x2 block", async () => {
  const shape = [1, 1, 3, 3], e = 1;
  const x = Tensor.from(new Float32Array(9), shape, { requiresGrad: true });
  const y = upsample2x(x, { crop: e }); // [1, 1, 4, 4]
  const idx = Tensor.from(Array.from({ length: 16 }, (_, i) => i + 1), y.shape);
  backward(sum(mul(y, idx)), { keep: [x] });
  // Output (oy, ox) holds weight 4 oy + ox + 1 and reads x[(oy + 1) >> 1][(ox + 1) >> 1].
  const want = new Array(9).fill(0);
  for (let oy = 0; oy < 4; oy++) {
    for (let ox = 0; ox < 4; ox++) want[((oy + 1) >> 1) * 3 + ((ox + 1) >> 1)] += 4 * oy + ox + 1;
  }
  assertClose(await x.grad!.read(), want, { rtol: 0, atol: 0 });
  // The corner pixel keeps one of its four outputs: weight 1.
  assert.equal(want[0], 1);
  clearTape();
});

Deno.test("upsample2x: a crop that leaves nothing or is not an integer throws", () => {
  const x = Tensor.from(new Float32Array(2 * 3 * 4), [1, 2, 3, 4]);
  assert.throws(
    () => upsample2x(x, { crop: 3 }),
    /^Error: flowgpu: upsample2x: crop must be an integer in \[0, 3\) for x \[1, 2, 3, 4\], got 3/,
  );
  assert.throws(() => upsample2x(x, { crop: 0.5 }), /flowgpu: upsample2x: crop must be .*got 0.5/);
  assert.throws(() => upsample2x(x, { crop: -1 }), /flowgpu: upsample2x: crop must be .*got -1/);
  clearTape();
});

// ---- tile2d ----

Deno.test("tile2d: [N, C] -> [N, C, H, W] copies, backward sums over H x W", async () => {
  const [n, c, h, w] = [3, 5, 2, 7];
  const vd = randu(n * c, 50);
  const want: number[] = [];
  for (let i = 0; i < n * c; i++) for (let k = 0; k < h * w; k++) want.push(vd[i]);
  const v = Tensor.from(vd, [n, c], { requiresGrad: true });
  const y = tile2d(v, h, w);
  assert.deepEqual(y.shape, [n, c, h, w]);
  assertClose(await y.read(), want, { rtol: 0, atol: 0 });
  const gd = randu(n * c * h * w, 51);
  backward(sum(mul(y, Tensor.from(gd, y.shape))), { keep: [v] });
  const dv = Array.from(
    { length: n * c },
    (_, i) => gd.subarray(i * h * w, (i + 1) * h * w).reduce((a, b) => a + b, 0),
  );
  assertClose(await v.grad!.read(), dv, { rtol: 1e-5, atol: 1e-6 });
  clearTape();
});

Deno.test("tile2d: gradcheck", async () => {
  await gradcheck((v) => tile2d(v, 3, 5), [{ data: randu(6, 52), shape: [2, 3] }], {
    label: "tile2d",
  });
});

Deno.test("tile2d: bad inputs throw naming the problem", () => {
  const v = Tensor.from(new Float32Array(6), [2, 3]);
  assert.throws(
    () => tile2d(Tensor.from(new Float32Array(6), [6]), 2, 2),
    /^Error: flowgpu: tile2d: v \[6\] is not \[N, C\]/,
  );
  assert.throws(() => tile2d(v, 0, 2), /flowgpu: tile2d: H and W must be integers >= 1, got 0 x 2/);
  assert.throws(() => tile2d(v, 2, 1.5), /flowgpu: tile2d: H and W .*got 2 x 1.5/);
  clearTape();
});

// ---- translate2d ----

function translateReference(x: ArrayLike<number>, [n, c, h, w]: number[], d: number[]): number[] {
  const y: number[] = [];
  for (let b = 0; b < n; b++) {
    for (let k = 0; k < c; k++) {
      for (let i = 0; i < h; i++) {
        for (let j = 0; j < w; j++) {
          const si = i - d[2 * b], sj = j - d[2 * b + 1];
          const inside = si >= 0 && si < h && sj >= 0 && sj < w;
          y.push(inside ? x[((b * c + k) * h + si) * w + sj] : 0);
        }
      }
    }
  }
  return y;
}

// Shifts in every direction, zero, and past the edge (an all-zero sample); W = 6 runs the scalar
// kernel, W = 8 the vec4 one.
const SHIFTS = [2, -1, 0, 0, -3, 4, 1, 1, 7, 0];

for (const shape of [[5, 2, 5, 6], [5, 2, 3, 8]]) {
  const n = shape.reduce((a, b) => a * b, 1), plane = n / 5;
  Deno.test(`translate2d [${shape}]: forward matches reference (numbers, tensor)`, async () => {
    const data = randu(n, 60);
    const want = translateReference(data, shape, SHIFTS);
    const y1 = translate2d(Tensor.from(data, shape), SHIFTS);
    assertClose(await y1.read(), want, { rtol: 0, atol: 0 });
    const y2 = translate2d(Tensor.from(data, shape), Tensor.from(SHIFTS, [5, 2]));
    assertClose(await y2.read(), want, { rtol: 0, atol: 0 });
    // The shifted-out sample is all zeros; the unshifted one is x itself.
    assert.ok(want.slice(4 * plane).every((v) => v === 0));
    assertClose(want.slice(plane, 2 * plane), data.subarray(plane, 2 * plane), {
      rtol: 0,
      atol: 0,
    });
    clearTape();
  });

  Deno.test(`translate2d [${shape}]: backward is the inverse shift`, async () => {
    const data = randu(n, 61), gd = randu(n, 62);
    const x = Tensor.from(data, shape, { requiresGrad: true });
    const y = translate2d(x, SHIFTS);
    backward(sum(mul(y, Tensor.from(gd, shape))), { keep: [x] });
    const inverse = translateReference(gd, shape, SHIFTS.map((d) => -d));
    assertClose(await x.grad!.read(), inverse, { rtol: 0, atol: 0 });
    clearTape();
  });
}

for (const shape of [[3, 2, 3, 5], [3, 1, 3, 4]]) {
  Deno.test(`translate2d [${shape}]: gradcheck`, async () => {
    await gradcheck((x) => translate2d(x, [1, -2, -1, 0, 0, 3]), [{
      data: randu(shape.reduce((a, b) => a * b, 1), 63),
      shape,
    }], { label: `translate2d [${shape}]` });
  });
}

Deno.test("translate2d: bad inputs throw naming the problem", () => {
  const x = Tensor.from(new Float32Array(2 * 3 * 4), [2, 1, 3, 4]);
  assert.throws(
    () => translate2d(x, [1, 2, 3]),
    /^Error: flowgpu: translate2d: 3 shifts for x \[2, 1, 3, 4\]; need 4/,
  );
  assert.throws(
    () => translate2d(x, [1, 2, 0.5, 0]),
    /flowgpu: translate2d: shift 2 is 0.5, not an integer/,
  );
  assert.throws(
    () => translate2d(x, Tensor.from([1, 2, 3, 4], [4])),
    /flowgpu: translate2d: shifts \[4\] must be \[2, 2\]/,
  );
  assert.throws(
    () => translate2d(Tensor.from([1, 2], [2]), [0, 0]),
    /flowgpu: translate2d: x \[2\] is not \[N, C, H, W\]/,
  );
  clearTape();
});

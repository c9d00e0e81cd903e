import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randu } from "./gradcheck.ts";
import {
  conv2d,
  conv2dBackwardData,
  conv2dBackwardWeight,
  type Conv2dOptions,
} from "../src/ops/conv.ts";
import { type Padding, paddingOf } from "../src/ops/conv_geometry.ts";
import { clearTape } from "../src/ops/tape.ts";
import { type Shape, Tensor } from "../src/ops/tensor.ts";

interface Case {
  x: Shape;
  w: Shape;
  stride?: 1 | 2;
  padding?: number | Padding;
  bias?: boolean;
}

/** Output size and the padding before each axis of a case (checks its own padding too). */
function sizes(c: Case) {
  const [, , h, wd] = c.x;
  const [, , kh, kw] = c.w;
  const s = c.stride ?? 1;
  const [pt, pb, pl, pr] = paddingOf(c.padding, kh, "test");
  return {
    s,
    pt,
    pl,
    ho: Math.floor((h + pt + pb - kh) / s) + 1,
    wo: Math.floor((wd + pl + pr - kw) / s) + 1,
  };
}

/**
 * f64 reference: y[n, o, i, j] = b[o] + sum x[n, c, i*s + ky - pt, j*s + kx - pl] w[o, c, ky, kx].
 */
function reference(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number> | undefined,
  c: Case,
): { y: Float64Array; shape: number[] } {
  const [n, ch, h, wd] = c.x;
  const [o, , kh, kw] = c.w;
  const { s, pt, pl, ho, wo } = sizes(c);
  const y = new Float64Array(n * o * ho * wo);
  for (let ni = 0; ni < n; ni++) {
    for (let oi = 0; oi < o; oi++) {
      for (let i = 0; i < ho; i++) {
        for (let j = 0; j < wo; j++) {
          let acc = b ? b[oi] : 0;
          for (let ci = 0; ci < ch; ci++) {
            for (let ky = 0; ky < kh; ky++) {
              const iy = i * s + ky - pt;
              if (iy < 0 || iy >= h) continue;
              for (let kx = 0; kx < kw; kx++) {
                const ix = j * s + kx - pl;
                if (ix < 0 || ix >= wd) continue;
                acc += x[((ni * ch + ci) * h + iy) * wd + ix] *
                  w[((oi * ch + ci) * kh + ky) * kw + kx];
              }
            }
          }
          y[((ni * o + oi) * ho + i) * wo + j] = acc;
        }
      }
    }
  }
  return { y, shape: [n, o, ho, wo] };
}

const size = (s: Shape) => s.reduce((a, b) => a * b, 1);
const opts = (c: Case, bias?: Tensor): Conv2dOptions => ({
  stride: c.stride,
  padding: c.padding,
  bias,
});
const name = (c: Case) =>
  `x [${c.x}] w [${c.w}] stride ${c.stride ?? 1} pad ${
    typeof c.padding === "object" ? `[${c.padding}]` : c.padding ?? "default"
  }${c.bias ? " +bias" : ""}`;

// Stride 2 with outputs wider than one column block: the generic forward kernel computes 8 output
// columns per invocation (reading from column 8*q*S), the generic weight gradient steps 4 columns
// (4*q*S), and the data gradient's phases run stride-1 kernels of 8 (2x2, 2x1 taps) or 16 (1x1
// taps) columns. Outputs 18-19 columns wide cross two or three blocks of each.
const WIDE_STRIDE2: Case[] = [
  { x: [2, 3, 5, 35], w: [5, 3, 3, 3], stride: 2, padding: 1, bias: true }, // y [2, 5, 3, 18]
  { x: [2, 3, 4, 35], w: [5, 3, 1, 1], stride: 2, padding: 0 }, // y [2, 5, 2, 18]
  // Odd sizes everywhere: y [1, 5, 4, 19] and [3, 7, 2, 18].
  { x: [1, 3, 7, 37], w: [5, 3, 3, 3], stride: 2, padding: 1 },
  { x: [3, 5, 3, 33], w: [7, 5, 1, 1], stride: 2, padding: 1, bias: true },
];

// Every square kernel 1..6 at stride 1 and 2, even ones included, with the paddings the VAE nets
// use (DisUnknown: 4x4 s2 p1|p2, 6x6 s2 p2|p3, 1x1; Zheng & Sun: 5x5 s2 p2), and asymmetric
// padding [top, bottom, left, right] (TensorFlow's "same" puts the extra row/column after).
const KERNELS: Case[] = [
  ...[1, 2, 3, 4, 5, 6].flatMap((k): Case[] => [
    { x: [2, 3, 7, 9], w: [5, 3, k, k], padding: Math.floor(k / 2), bias: k % 2 === 0 },
    { x: [2, 3, 9, 7], w: [5, 3, k, k], stride: 2, padding: Math.floor((k - 1) / 2) },
  ]),
  { x: [2, 3, 10, 14], w: [5, 3, 4, 4], stride: 2, padding: 1, bias: true }, // 10x14 -> 5x7
  { x: [2, 3, 14, 14], w: [6, 3, 4, 4], stride: 2, padding: 2 }, // ResDown e = 1: 14 -> 8
  { x: [1, 3, 14, 10], w: [6, 3, 6, 6], stride: 2, padding: 3, bias: true }, // 14 -> 8
  { x: [2, 3, 14, 11], w: [5, 3, 5, 5], stride: 2, padding: [1, 2, 1, 2] }, // TF same: 7 x 6
  { x: [2, 3, 7, 6], w: [5, 3, 3, 3], padding: [0, 2, 1, 0], bias: true },
  { x: [2, 3, 7, 6], w: [5, 3, 4, 4], padding: [1, 2, 2, 1] }, // "same" for an even kernel
  { x: [2, 3, 9, 7], w: [5, 3, 4, 4], stride: 2, padding: [2, 0, 0, 3], bias: true },
  { x: [1, 2, 5, 6], w: [3, 2, 1, 1], padding: [0, 1, 2, 0] }, // a 1x1 with a padded border
  { x: [1, 2, 5, 6], w: [3, 2, 6, 6], stride: 2, padding: [5, 0, 4, 5] }, // pad >= half the kernel
];

// Sizes not multiples of 4 (the kernels' vec4 columns and channel blocks).
const FORWARD: Case[] = [
  { x: [2, 3, 7, 6], w: [5, 3, 3, 3], bias: true },
  { x: [2, 3, 7, 6], w: [5, 3, 3, 3], stride: 2, padding: 1 },
  { x: [2, 3, 7, 6], w: [5, 3, 1, 1], bias: true },
  { x: [2, 3, 7, 6], w: [5, 3, 1, 1], stride: 2 },
  { x: [2, 3, 7, 6], w: [5, 3, 1, 1], padding: 2, bias: true },
  { x: [2, 3, 7, 6], w: [5, 3, 2, 2], padding: 0 },
  { x: [2, 3, 7, 6], w: [5, 3, 2, 2], padding: 1, stride: 2, bias: true },
  { x: [2, 3, 7, 6], w: [5, 3, 5, 3], padding: 2 },
  { x: [2, 3, 7, 6], w: [5, 3, 5, 3], padding: 0, stride: 2, bias: true },
  { x: [2, 3, 7, 6], w: [5, 3, 3, 3], padding: 2, stride: 2 },
  { x: [1, 2, 9, 11], w: [3, 2, 3, 3], padding: 0, bias: true },
  // 1x1 with H*W % 4 == 0: runs on x itself, no padded copy.
  { x: [3, 6, 4, 5], w: [9, 6, 1, 1], padding: 0, bias: true },
  // 1x1 whose rows and channels need no padded copies at all.
  { x: [2, 8, 4, 8], w: [16, 8, 1, 1], padding: 0 },
  // 1x1 with two channel blocks each way (blocks of 16).
  { x: [1, 20, 3, 5], w: [18, 20, 1, 1], bias: true },
  // Several channel blocks each way, and a wide kernel.
  { x: [2, 9, 5, 10], w: [11, 9, 3, 3], bias: true },
  { x: [2, 5, 6, 13], w: [11, 5, 3, 6], padding: 2 },
  // Thin paths (packed kernel in a uniform buffer, vec4 stores): rows of a multiple of 4 columns,
  // odd channels, rows and batch; forward and data gradient both take them.
  { x: [3, 5, 7, 8], w: [7, 5, 3, 3], bias: true },
  { x: [1, 3, 5, 4], w: [6, 3, 3, 3] },
  { x: [3, 7, 3, 4], w: [21, 7, 1, 1], padding: 0, bias: true },
  // A packed kernel too large for the uniform binding (64 x 9 x 32 floats) falls back.
  { x: [1, 64, 3, 4], w: [29, 64, 3, 3], bias: true },
  // 1x1 weight gradient: 3 x 3 blocks of 16 channels; small channel counts take the generic one.
  { x: [2, 33, 2, 2], w: [35, 33, 1, 1], padding: 0 },
  ...WIDE_STRIDE2,
  ...KERNELS,
];

for (const c of FORWARD) {
  Deno.test(`conv2d forward: ${name(c)}`, async () => {
    const xd = randu(size(c.x), 1), wd = randu(size(c.w), 2);
    const bd = c.bias ? randu(c.w[0], 3) : undefined;
    const b = bd ? Tensor.from(bd, [c.w[0]]) : undefined;
    const y = conv2d(Tensor.from(xd, c.x), Tensor.from(wd, c.w), opts(c, b));
    const ref = reference(xd, wd, bd, c);
    assert.deepEqual(y.shape, ref.shape);
    assertClose(await y.read(), ref.y, { rtol: 1e-5, atol: 1e-5, label: name(c) });
    clearTape();
  });
}

// The data and weight gradients against the f64 reference's own adjoints, on shapes where every
// phase and chunk path runs, including stride 2 with phases that only some taps reach.
Deno.test("conv2d backward kernels match f64 adjoints", async () => {
  for (const c of FORWARD) {
    const xd = randu(size(c.x), 4), wd = randu(size(c.w), 5);
    const { shape } = reference(xd, wd, undefined, c);
    const gd = randu(size(shape), 6);
    const [n, ch, h, wdt] = c.x;
    const [o, , kh, kw] = c.w;
    const { s, pt, pl } = sizes(c);
    const [, , ho, wo] = shape;
    const dx = new Float64Array(size(c.x)), dw = new Float64Array(size(c.w));
    for (let ni = 0; ni < n; ni++) {
      for (let oi = 0; oi < o; oi++) {
        for (let i = 0; i < ho; i++) {
          for (let j = 0; j < wo; j++) {
            const gv = gd[((ni * o + oi) * ho + i) * wo + j];
            for (let ci = 0; ci < ch; ci++) {
              for (let ky = 0; ky < kh; ky++) {
                const iy = i * s + ky - pt;
                if (iy < 0 || iy >= h) continue;
                for (let kx = 0; kx < kw; kx++) {
                  const ix = j * s + kx - pl;
                  if (ix < 0 || ix >= wdt) continue;
                  const xi = ((ni * ch + ci) * h + iy) * wdt + ix;
                  const wi = ((oi * ch + ci) * kh + ky) * kw + kx;
                  dx[xi] += gv * wd[wi];
                  dw[wi] += gv * xd[xi];
                }
              }
            }
          }
        }
      }
    }
    const g = Tensor.from(gd, shape);
    const o2 = opts(c);
    const gotDx = await conv2dBackwardData(g, Tensor.from(wd, c.w), c.x, o2).read();
    const gotDw = await conv2dBackwardWeight(g, Tensor.from(xd, c.x), c.w, o2).read();
    assertClose(gotDx, dx, { rtol: 1e-5, atol: 1e-5, label: `dx ${name(c)}` });
    assertClose(gotDw, dw, { rtol: 1e-4, atol: 1e-4, label: `dw ${name(c)}` });
    clearTape();
  }
});

const GRAD: Case[] = [
  { x: [2, 3, 7, 6], w: [5, 3, 3, 3], bias: true },
  { x: [2, 3, 7, 6], w: [5, 3, 3, 3], stride: 2, padding: 1, bias: true },
  { x: [2, 3, 5, 6], w: [5, 3, 1, 1], bias: true },
  { x: [2, 3, 7, 6], w: [5, 3, 2, 2], padding: 0, stride: 2 },
  { x: [1, 2, 7, 5], w: [3, 2, 5, 3], padding: 2 },
  // Thin forward and data-gradient paths (4-column rows), 1x1 and 3x3.
  { x: [2, 3, 5, 8], w: [5, 3, 3, 3], bias: true },
  { x: [3, 5, 3, 4], w: [6, 5, 1, 1], padding: 0 },
  ...WIDE_STRIDE2,
  // Even kernels and asymmetric padding.
  { x: [2, 3, 7, 9], w: [5, 3, 4, 4], stride: 2, padding: 1, bias: true },
  { x: [1, 2, 9, 7], w: [3, 2, 6, 6], stride: 2, padding: 2 },
  { x: [1, 2, 6, 5], w: [3, 2, 6, 6], padding: 3, bias: true },
  { x: [2, 3, 7, 6], w: [5, 3, 5, 5], stride: 2, padding: [1, 2, 1, 2], bias: true },
  { x: [2, 3, 7, 6], w: [5, 3, 4, 4], padding: [1, 2, 2, 1] },
  { x: [1, 2, 5, 6], w: [3, 2, 1, 1], padding: [0, 1, 2, 0], bias: true },
];

for (const c of GRAD) {
  Deno.test(`conv2d gradcheck: ${name(c)}`, async () => {
    const inputs = [
      { data: randu(size(c.x), 7), shape: c.x },
      { data: randu(size(c.w), 8), shape: c.w },
    ];
    if (c.bias) inputs.push({ data: randu(c.w[0], 9), shape: [c.w[0]] });
    await gradcheck(
      (x, w, b) => conv2d(x, w, opts(c, b)),
      inputs,
      { label: name(c), maxElements: 40 },
    );
  });
}

Deno.test("conv2d gradcheck: only w needs a gradient", async () => {
  const c: Case = { x: [2, 3, 5, 7], w: [5, 3, 3, 3] };
  await gradcheck((x, w) => conv2d(x, w), [
    { data: randu(size(c.x), 10), shape: c.x, grad: false },
    { data: randu(size(c.w), 11), shape: c.w },
  ], { maxElements: 30 });
});

Deno.test("conv2d: shape errors name the shapes", () => {
  const x = Tensor.from(new Float32Array(2 * 3 * 4 * 4), [2, 3, 4, 4]);
  const w = (s: Shape) => Tensor.from(new Float32Array(size(s)), s);
  assert.throws(
    () => conv2d(x, w([5, 4, 3, 3])),
    /conv2d: channel mismatch: x has 3 channels, w expects 4 \(x \[2, 3, 4, 4\], w \[5, 4, 3, 3\]\)/,
  );
  assert.throws(() => conv2d(Tensor.from([1, 2, 3], [3]), w([5, 3, 3, 3])), /x must be.*x \[3\]/);
  assert.throws(() => conv2d(x, w([5, 3, 3])), /w must be.*w \[5, 3, 3\]/);
  assert.throws(() => conv2d(x, w([5, 3, 7, 7]), { padding: 0 }), /does not fit x \[2, 3, 4, 4\]/);
  assert.throws(
    () => conv2d(x, w([5, 3, 3, 3]), { bias: Tensor.from([1, 2], [2]) }),
    /bias \[2\] must be \[5\]/,
  );
  assert.throws(() => conv2d(x, w([5, 3, 3, 3]), { stride: 3 as 1 }), /stride must be 1 or 2/);
  assert.throws(() => conv2d(x, w([5, 3, 3, 3]), { padding: -1 }), /padding must be/);
  assert.throws(
    () => conv2d(x, w([5, 3, 3, 3]), { padding: [1, 1, 1] as unknown as [1, 1, 1, 1] }),
    /^Error: flowgpu: conv2d: padding must be .*\[top, bottom, left, right\].*got \[1, 1, 1\]/,
  );
  assert.throws(
    () => conv2d(x, w([5, 3, 3, 3]), { padding: [1, 0.5, 1, 1] }),
    /padding must be .*got \[1, 0.5, 1, 1\]/,
  );
  // Padding after the image only: 4 + 0 + 0 - 5 < 0 rows, though 4 + 2 - 5 would fit.
  assert.throws(
    () => conv2d(x, w([5, 3, 5, 5]), { padding: [0, 0, 1, 1] }),
    /kernel 5x5 does not fit x \[2, 3, 4, 4\].*padding \[0, 0, 1, 1\]/,
  );
  assert.throws(
    () => conv2dBackwardData(Tensor.from([1], [1, 1, 1, 1]), w([5, 3, 3, 3]), [2, 3, 4, 4]),
    /gradient \[1, 1, 1, 1\] does not match the output \[2, 5, 4, 4\]/,
  );
  clearTape();
});

Deno.test("conv2d weight gradient: rows split under the per-invocation loop budget still sum to the whole batch", async () => {
  // 128 -> 64 channels gives 1024 lanes, so one invocation would walk all 700 x 4 = 2800 rows of
  // 3 passes; the budget (8192 passes) splits them in two parts. (Mesa's real limit, 65,535,
  // cannot be reached here: the padded input would pass lavapipe's 128 MiB binding limit first.)
  const [n, c, o, h] = [700, 128, 64, 4];
  const x = randu(n * c * h * h, 81, -1, 1), g = randu(n * o * h * h, 82, -1, 1);
  const w: Shape = [o, c, 3, 3];
  const dw = (lo: number, hi: number) =>
    conv2dBackwardWeight(
      Tensor.from(g.subarray(lo * o * h * h, hi * o * h * h), [hi - lo, o, h, h]),
      Tensor.from(x.subarray(lo * c * h * h, hi * c * h * h), [hi - lo, c, h, h]),
      w,
      { padding: 1 },
    ).read();
  const whole = await dw(0, n), a = await dw(0, n / 2), b = await dw(n / 2, n);
  let scale = 0;
  for (const v of whole) scale = Math.max(scale, Math.abs(v));
  assertClose(whole, Array.from(a, (v, i) => v + b[i]), {
    rtol: 1e-5,
    atol: 1e-5 * scale,
    label: "dw(batch) = dw(first half) + dw(second half)",
  });
  clearTape();
});

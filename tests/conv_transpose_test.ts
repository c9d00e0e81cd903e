// convTranspose2d: forward against an f64 scatter reference (PyTorch semantics), the backward
// passes against the reference's own adjoints, gradchecks, and bad inputs. Kernels 4/5/6 (the VAE
// decoders) and 1..3, stride 1 and 2, padding, output padding, bias; sizes not multiples of 4.
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randu } from "./gradcheck.ts";
import {
  convTranspose2d,
  type ConvTranspose2dOptions,
  convTranspose2dShape,
} from "../src/ops/conv_transpose.ts";
import type { Padding } from "../src/ops/conv_geometry.ts";
import { mul } from "../src/ops/elementwise.ts";
import { sum } from "../src/ops/reduce.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { type Shape, Tensor } from "../src/ops/tensor.ts";

interface Case {
  x: Shape;
  /** [Cin, Cout, KH, KW] */
  w: Shape;
  stride?: 1 | 2;
  padding?: number | Padding;
  outputPadding?: number;
  bias?: boolean;
}

const size = (s: Shape) => s.reduce((a, b) => a * b, 1);
const name = (c: Case) =>
  `x [${c.x}] w [${c.w}] s${c.stride ?? 1} p${
    typeof c.padding === "object" ? `[${c.padding}]` : c.padding ?? 0
  } op${c.outputPadding ?? 0}${c.bias ? " +bias" : ""}`;
const opts = (c: Case, bias?: Tensor): ConvTranspose2dOptions => ({
  stride: c.stride,
  padding: c.padding,
  outputPadding: c.outputPadding,
  bias,
});

/** The taps of a case: calls f(xi, wi, yi) for every x element, weight and output it reaches. */
function taps(c: Case, f: (xi: number, wi: number, yi: number) => void): Shape {
  const [n, ci, h, wd] = c.x;
  const [, co, kh, kw] = c.w;
  const s = c.stride ?? 1;
  const p = c.padding ?? 0;
  const [pt, pb, pl, pr] = typeof p === "number" ? [p, p, p, p] : p;
  const op = c.outputPadding ?? 0;
  const ho = (h - 1) * s - pt - pb + kh + op;
  const wo = (wd - 1) * s - pl - pr + kw + op;
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < ci; i++) {
      for (let iy = 0; iy < h; iy++) {
        for (let ix = 0; ix < wd; ix++) {
          const xi = ((b * ci + i) * h + iy) * wd + ix;
          for (let o = 0; o < co; o++) {
            for (let ky = 0; ky < kh; ky++) {
              const y = iy * s - pt + ky;
              if (y < 0 || y >= ho) continue;
              for (let kx = 0; kx < kw; kx++) {
                const x = ix * s - pl + kx;
                if (x < 0 || x >= wo) continue;
                f(xi, ((i * co + o) * kh + ky) * kw + kx, ((b * co + o) * ho + y) * wo + x);
              }
            }
          }
        }
      }
    }
  }
  return [n, co, ho, wo];
}

/** f64 reference: every input pixel scatters x * w into its output footprint, plus the bias. */
function reference(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number> | undefined,
  c: Case,
): { y: Float64Array; shape: Shape } {
  const shape = taps(c, () => {});
  const [, co, ho, wo] = shape;
  const y = new Float64Array(size(shape));
  if (b) { for (let i = 0; i < y.length; i++) y[i] = b[Math.floor(i / (ho * wo)) % co]; }
  taps(c, (xi, wi, yi) => y[yi] += x[xi] * w[wi]);
  return { y, shape };
}

const FORWARD: Case[] = [
  // DisUnknown's ResUp (4x4 s2 p1: 4 -> 8, p2 with e = 1: 7 -> 12) and output layer (6x6 s2 p2).
  { x: [2, 3, 5, 7], w: [3, 5, 4, 4], stride: 2, padding: 1, bias: true },
  { x: [2, 3, 7, 7], w: [3, 5, 4, 4], stride: 2, padding: 2 },
  { x: [2, 3, 5, 6], w: [3, 2, 6, 6], stride: 2, padding: 2, bias: true },
  { x: [1, 3, 7, 5], w: [3, 2, 6, 6], stride: 2, padding: 3 },
  // Zheng & Sun's decoder: 5x5 s2 "valid" (2 -> 7), "same" (p2 op1: 7 -> 14), s1 "same".
  { x: [2, 5, 2, 2], w: [5, 3, 5, 5], stride: 2, padding: 0, bias: true },
  { x: [2, 3, 7, 5], w: [3, 5, 5, 5], stride: 2, padding: 2, outputPadding: 1, bias: true },
  { x: [2, 3, 7, 6], w: [3, 5, 5, 5], stride: 1, padding: 2 },
  // Tang et al.'s generator: 4x4 s2 p1 (7 -> 14).
  { x: [3, 6, 7, 7], w: [6, 3, 4, 4], stride: 2, padding: 1, bias: true },
  // Every other kernel size, stride 1 and 2, output padding, no padding.
  { x: [2, 3, 5, 6], w: [3, 5, 1, 1], bias: true },
  { x: [2, 3, 5, 6], w: [3, 5, 1, 1], stride: 2, outputPadding: 1, bias: true }, // bias-only pixels
  { x: [2, 3, 5, 6], w: [3, 5, 2, 2], stride: 2 },
  { x: [2, 3, 5, 6], w: [3, 5, 3, 3], stride: 2, padding: 1, outputPadding: 1, bias: true },
  { x: [2, 3, 5, 6], w: [3, 5, 3, 3], padding: 1 },
  { x: [1, 2, 5, 6], w: [2, 3, 4, 4], stride: 1, padding: 1 },
  { x: [1, 2, 5, 6], w: [2, 3, 6, 6], stride: 1, padding: 0, bias: true },
  { x: [1, 2, 5, 6], w: [2, 3, 4, 6], stride: 2, padding: 1, outputPadding: 1 },
  // Asymmetric crops; a wide output (several column blocks of the kernels).
  { x: [2, 3, 5, 6], w: [3, 5, 5, 5], stride: 2, padding: [1, 2, 2, 1], bias: true },
  { x: [2, 3, 3, 19], w: [3, 5, 4, 4], stride: 2, padding: 1 },
  // Stride 1 through conv2d's thin kernels (rows of whole vec4s), which add the bias as they
  // store: 3x3 padding 1 on 8 columns, and a 1x1 on 4 x 5 pixels (one flattened row of 20).
  { x: [2, 3, 5, 8], w: [3, 5, 3, 3], padding: 1, bias: true },
  { x: [2, 3, 4, 5], w: [3, 6, 1, 1], bias: true },
  // Many channels: several channel blocks each way.
  { x: [2, 9, 3, 5], w: [9, 11, 4, 4], stride: 2, padding: 1, bias: true },
];

for (const c of FORWARD) {
  Deno.test(`convTranspose2d forward: ${name(c)}`, async () => {
    const xd = randu(size(c.x), 1), wd = randu(size(c.w), 2);
    const bd = c.bias ? randu(c.w[1], 3) : undefined;
    const b = bd ? Tensor.from(bd, [c.w[1]]) : undefined;
    const y = convTranspose2d(Tensor.from(xd, c.x), Tensor.from(wd, c.w), opts(c, b));
    const ref = reference(xd, wd, bd, c);
    assert.deepEqual(y.shape, ref.shape);
    assertClose(await y.read(), ref.y, { rtol: 1e-5, atol: 1e-5, label: name(c) });
    clearTape();
  });
}

// dx, dw, db from backward against the reference's adjoints for a random output gradient.
Deno.test("convTranspose2d backward matches f64 adjoints", async () => {
  for (const c of FORWARD) {
    const xd = randu(size(c.x), 4), wd = randu(size(c.w), 5);
    const shape = taps(c, () => {});
    const gd = randu(size(shape), 6);
    const dx = new Float64Array(size(c.x)), dw = new Float64Array(size(c.w));
    taps(c, (xi, wi, yi) => {
      dx[xi] += gd[yi] * wd[wi];
      dw[wi] += gd[yi] * xd[xi];
    });
    const [, co, ho, wo] = shape;
    const db = new Float64Array(co);
    gd.forEach((v, i) => db[Math.floor(i / (ho * wo)) % co] += v);
    const x = Tensor.from(xd, c.x, { requiresGrad: true });
    const w = Tensor.from(wd, c.w, { requiresGrad: true });
    const b = Tensor.from(new Float32Array(co), [co], { requiresGrad: true });
    const y = convTranspose2d(x, w, opts(c, b));
    backward(sum(mul(y, Tensor.from(gd, shape))), { keep: [x, w, b] });
    const [gx, gw, gb] = await Tensor.readAll([x.grad!, w.grad!, b.grad!]);
    assertClose(gx, dx, { rtol: 1e-5, atol: 1e-5, label: `dx ${name(c)}` });
    assertClose(gw, dw, { rtol: 1e-4, atol: 1e-4, label: `dw ${name(c)}` });
    assertClose(gb, db, { rtol: 1e-5, atol: 1e-5, label: `db ${name(c)}` });
    clearTape();
  }
});

const GRAD: Case[] = [
  { x: [2, 3, 5, 7], w: [3, 5, 4, 4], stride: 2, padding: 1, bias: true },
  { x: [1, 3, 5, 6], w: [3, 2, 6, 6], stride: 2, padding: 2, bias: true },
  { x: [2, 3, 3, 3], w: [3, 2, 5, 5], stride: 2, padding: 2, outputPadding: 1, bias: true },
  { x: [2, 3, 5, 6], w: [3, 5, 5, 5], padding: 2 },
  { x: [2, 3, 5, 6], w: [3, 5, 1, 1], stride: 2, outputPadding: 1, bias: true },
  { x: [2, 3, 5, 6], w: [3, 2, 5, 5], stride: 2, padding: [1, 2, 2, 1] },
];

for (const c of GRAD) {
  Deno.test(`convTranspose2d gradcheck: ${name(c)}`, async () => {
    const inputs = [
      { data: randu(size(c.x), 7), shape: c.x },
      { data: randu(size(c.w), 8), shape: c.w },
    ];
    if (c.bias) inputs.push({ data: randu(c.w[1], 9), shape: [c.w[1]] });
    await gradcheck(
      (x, w, b) => convTranspose2d(x, w, opts(c, b)),
      inputs,
      { label: name(c), maxElements: 40 },
    );
  });
}

Deno.test("convTranspose2d: output sizes follow (in - 1) s - 2p + k + output_padding", () => {
  const s = (h: number, k: number, o: ConvTranspose2dOptions) =>
    convTranspose2dShape([1, 1, h, h], [1, 1, k, k], o)[2];
  assert.equal(s(4, 4, { stride: 2, padding: 1 }), 8);
  assert.equal(s(7, 4, { stride: 2, padding: 2 }), 12);
  assert.equal(s(14, 6, { stride: 2, padding: 2 }), 28);
  assert.equal(s(2, 5, { stride: 2 }), 7);
  assert.equal(s(7, 5, { stride: 2, padding: 2, outputPadding: 1 }), 14);
  assert.equal(s(14, 5, { padding: 2 }), 14);
});

Deno.test("convTranspose2d: bad inputs throw naming the problem", () => {
  const t = (s: Shape) => Tensor.from(new Float32Array(size(s)), s);
  const x = t([2, 3, 4, 4]);
  const bad = (f: () => unknown, re: RegExp) => assert.throws(f, re);
  bad(
    () => convTranspose2d(x, t([5, 2, 4, 4])),
    /^Error: flowgpu: convTranspose2d: channel mismatch: x has 3 channels, .* expects 5/,
  );
  bad(() => convTranspose2d(t([3, 4, 4]), t([3, 2, 4, 4])), /flowgpu: convTranspose2d: x must/);
  bad(() => convTranspose2d(x, t([3, 2, 4])), /flowgpu: convTranspose2d: w must/);
  bad(
    () => convTranspose2d(x, t([3, 2, 4, 4]), { stride: 3 as 2 }),
    /flowgpu: convTranspose2d: stride must be 1 or 2, got 3/,
  );
  bad(
    () => convTranspose2d(x, t([3, 2, 4, 4]), { padding: -1 }),
    /flowgpu: convTranspose2d: padding must be .*got -1/,
  );
  bad(
    () => convTranspose2d(x, t([3, 2, 4, 4]), { stride: 2, outputPadding: 2 }),
    /flowgpu: convTranspose2d: outputPadding must be .*\[0, 2\), got 2/,
  );
  bad(
    () => convTranspose2d(x, t([3, 2, 4, 4]), { outputPadding: 1 }),
    /outputPadding must be .*\[0, 1\), got 1/,
  );
  bad(
    () => convTranspose2d(t([1, 3, 1, 1]), t([3, 2, 2, 2]), { padding: 1 }),
    /flowgpu: convTranspose2d: padding 1 leaves no output .* \(0 x 0\)/,
  );
  bad(
    () => convTranspose2d(x, t([3, 2, 4, 4]), { bias: t([3]) }),
    /flowgpu: convTranspose2d: bias \[3\] must be \[2\]/,
  );
  clearTape();
});

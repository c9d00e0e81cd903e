// Shape and channel-movement ops: reshape (a view), and slice / split / even-odd / concat along
// dim 1. Every movement is one strided "channel copy" kernel, and every backward is the
// transposed movement, so the gradient of a split is a concat and the gradient of a concat is
// a split. Concat binds one input per dispatch, so any number of inputs works.
import { kernel } from "../gpu/kernel.ts";
import { accumulate, fill, record } from "./tape.ts";
import { fmtShape, numel, type Shape, Tensor } from "./tensor.ts";

const FILE = "shape.wgsl";
const COPY = kernel(FILE, "copy", {
  params: "@0 uniform p",
  src: "@1 read c1_src",
  dst: "@2 read_write c1_dst",
});
const COPY4 = kernel(FILE, "copy4", {
  params: "@0 uniform p",
  src: "@1 read c4_src",
  dst: "@2 read_write c4_dst",
});

/** A view of x under another shape (one dimension may be -1); shares x's buffer. */
export function reshape(x: Tensor, shape: number[]): Tensor {
  const target = resolveShape(x.shape, shape);
  const y = Tensor.view(x, target, "reshape");
  return record(y, [x], (g) => accumulate(x, Tensor.view(g, x.shape, "reshape'")));
}

function resolveShape(from: Shape, to: number[]): number[] {
  const fail = (why: string) =>
    new Error(`flowgpu: reshape: cannot reshape ${fmtShape(from)} to ${fmtShape(to)} (${why})`);
  const free = to.filter((d) => d === -1).length;
  if (free > 1) throw fail("-1 may appear once");
  if (to.some((d) => d !== -1 && !(Number.isInteger(d) && d >= 0))) {
    throw fail("dimensions must be integers >= 0, or -1");
  }
  const n = numel(from);
  const known = to.reduce((a, d) => (d === -1 ? a : a * d), 1);
  if (free === 0) {
    if (known !== n) throw fail(`${n} elements vs ${known}`);
    return [...to];
  }
  if (known === 0 || n % known !== 0) throw fail(`${n} elements do not divide by ${known}`);
  return to.map((d) => (d === -1 ? n / known : d));
}

/** Channels start, start + stride, ... (count of them) of a [N, C, ...] tensor. */
interface Channels {
  start: number;
  stride: number;
  count: number;
}

/** Size of one channel of one sample: the product of dims 2, 3, ... */
function innerSize(shape: Shape): number {
  return numel(shape.slice(2));
}

function needChannels(op: string, x: Tensor): void {
  if (x.shape.length < 2) {
    throw new Error(`flowgpu: ${op}: needs a tensor [N, C, ...], got ${fmtShape(x.shape)}`);
  }
}

/**
 * Copy `count` channels: src channel `s.start + k * s.stride` to dst channel
 * `d.start + k * d.stride`, for every sample. src and dst agree outside dim 1.
 */
function copyChannels(src: Tensor, s: Channels, dst: Tensor, d: Omit<Channels, "count">): void {
  const n = src.shape[0];
  const inner = innerSize(src.shape);
  let c = s.count;
  let run = inner;
  let sStride = s.stride * inner, dStride = d.stride * inner;
  // A contiguous channel range is one run per sample: longer runs, and vec4 more often.
  if (s.stride === 1 && d.stride === 1) {
    run = c * inner;
    c = 1;
  }
  // Unused strides and rows are zeroed so they do not rule out the vec4 kernel.
  if (c === 1) sStride = dStride = 0;
  const words = [
    run,
    n > 1 ? src.shape[1] * inner : 0,
    s.start * inner,
    sStride,
    n > 1 ? dst.shape[1] * inner : 0,
    d.start * inner,
    dStride,
  ];
  const total = n * c * run;
  if (total === 0) return;
  const v = words.every((w) => w % 4 === 0) ? 4 : 1;
  (v === 4 ? COPY4 : COPY).run({ src, dst }, {
    params: [total / v, c, ...words.map((w) => w / v)],
    threads: total / v,
  });
}

/**
 * Pick channel groups of x as separate tensors. The parts' backward is shared: the first of
 * them the tape reaches (the last recorded) takes every part's finished gradient and writes
 * them into one dx, zero-filled only where a part received none; the others then have no
 * gradient left and are skipped.
 */
function partition(x: Tensor, parts: Channels[], name: string): Tensor[] {
  const [n, , ...rest] = x.shape;
  const outs = parts.map((p) => Tensor.empty([n, p.count, ...rest], name));
  parts.forEach((p, i) => copyChannels(x, p, outs[i], { start: 0, stride: 1 }));
  const backward = (g: Tensor, self: number) => {
    const grads = outs.map((o, i) => {
      if (i === self) return g;
      const gi = o.grad;
      o.grad = undefined;
      return gi;
    });
    const dx = Tensor.empty(x.shape, `${name}'`);
    const covered = parts.reduce((a, p, i) => a + (grads[i] ? p.count : 0), 0);
    if (covered < x.shape[1]) fill(dx, 0);
    grads.forEach((gi, i) => {
      if (gi) copyChannels(gi, { start: 0, stride: 1, count: parts[i].count }, dx, parts[i]);
    });
    accumulate(x, dx);
  };
  return outs.map((o, i) => record(o, [x], (g) => backward(g, i)));
}

/** x[:, start:end] as a new tensor. */
export function sliceChannels(x: Tensor, start: number, end: number): Tensor {
  needChannels("sliceChannels", x);
  const c = x.shape[1];
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || start > end || end > c) {
    throw new Error(
      `flowgpu: sliceChannels: [${start}, ${end}) is not a channel range of ${fmtShape(x.shape)}`,
    );
  }
  return partition(x, [{ start, stride: 1, count: end - start }], "sliceChannels")[0];
}

/** Consecutive channel groups of the given sizes (they must add up to C). */
export function splitChannels(x: Tensor, sizes: number[]): Tensor[] {
  needChannels("splitChannels", x);
  const total = sizes.reduce((a, b) => a + b, 0);
  if (sizes.some((s) => !Number.isInteger(s) || s < 0) || total !== x.shape[1]) {
    throw new Error(
      `flowgpu: splitChannels: sizes ${fmtShape(sizes)} do not split the ${x.shape[1]} ` +
        `channels of ${fmtShape(x.shape)}`,
    );
  }
  let start = 0;
  const parts = sizes.map((count) => {
    const p = { start, stride: 1, count };
    start += count;
    return p;
  });
  return partition(x, parts, "splitChannels");
}

/** [x[:, 0::2], x[:, 1::2]]: the interleaved (shift, scale) or (mean, log-std) halves in Glow. */
export function evenOddChannels(x: Tensor): [Tensor, Tensor] {
  needChannels("evenOddChannels", x);
  const c = x.shape[1];
  if (c % 2 !== 0) {
    throw new Error(
      `flowgpu: evenOddChannels: needs an even channel count, got ${fmtShape(x.shape)}`,
    );
  }
  const half = c / 2;
  const [even, odd] = partition(x, [
    { start: 0, stride: 2, count: half },
    { start: 1, stride: 2, count: half },
  ], "evenOddChannels");
  return [even, odd];
}

/** Concatenate along dim 1; the other dims must match. */
export function concatChannels(xs: Tensor[]): Tensor {
  if (xs.length === 0) throw new Error("flowgpu: concatChannels: no inputs");
  for (const x of xs) needChannels("concatChannels", x);
  const [n, , ...rest] = xs[0].shape;
  for (const x of xs) {
    const [m, , ...r] = x.shape;
    if (m !== n || r.length !== rest.length || r.some((d, i) => d !== rest[i])) {
      throw new Error(
        `flowgpu: concatChannels: shapes ${fmtShape(xs[0].shape)} and ${fmtShape(x.shape)} ` +
          "differ outside dim 1",
      );
    }
  }
  const c = xs.reduce((a, x) => a + x.shape[1], 0);
  const out = Tensor.empty([n, c, ...rest], "concatChannels");
  const starts: number[] = [];
  let start = 0;
  for (const x of xs) {
    starts.push(start);
    copyChannels(x, { start: 0, stride: 1, count: x.shape[1] }, out, { start, stride: 1 });
    start += x.shape[1];
  }
  return record(out, xs, (g) => {
    xs.forEach((x, i) => {
      if (!x.requiresGrad) return;
      const dx = Tensor.empty(x.shape, "concatChannels'");
      copyChannels(g, { start: starts[i], stride: 1, count: x.shape[1] }, dx, {
        start: 0,
        stride: 1,
      });
      accumulate(x, dx);
    });
  });
}

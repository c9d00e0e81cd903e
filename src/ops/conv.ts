// 2-D convolution (NCHW, cross-correlation, zero padding, stride 1 or 2) and its gradients.
// Kernels: shaders/conv.wgsl. Every pass is a register-blocked, barrier-free kernel reading
// zero-padded copies of its inputs:
//   forward  y  = corr(pad(x), pack(w)) + b
//   data     dx = for each phase (r_y, r_x) of dx modulo the stride: corr(pad(g), flipped
//                 sub-kernel of the taps that reach that phase), written with stride S
//   weight   dw = sum over chunks of output rows (split-K) of wgrad, added by reduceABC
//   bias     db = reduceABC(g) per channel
// 3x3 and 1x1 kernels at stride 1 (the hot shapes of Glow) have unrolled kernels; every other
// size and stride runs a generic one. A 1x1 stride-1 unpadded convolution is a batched matmul:
// each image is flattened to one row of H*W pixels, which needs no padded copy when the row
// length suits the kernel. Thin convolutions (Glow's coupling networks: packed kernel <= 64 KiB,
// rows of a multiple of 4 columns) run the `_u` variants: the packed kernel goes through one
// dedicated STORAGE|UNIFORM buffer read as a uniform (cheaper loads on lavapipe), outputs are
// stored as vec4s. The weight gradient's split-K aims at WGRAD_TARGET invocations, tuned for a
// 2-core CPU driver (more parts only add stores and reduction work there).
import { device } from "../gpu/device.ts";
import { dispatch } from "../gpu/encoder.ts";
import { reduceABC } from "./reduce.ts";
import { accumulate, fill, record } from "./tape.ts";
import { fmtShape, type Shape, Tensor } from "./tensor.ts";

const FILE = "conv.wgsl";
const MAX_GROUPS = 65535;
const WG = 64;
/** Aim for this many invocations in the weight gradient before splitting its sum (split-K). */
const WGRAD_TARGET = 1024;

export interface Conv2dOptions {
  bias?: Tensor;
  stride?: 1 | 2;
  /** Zero padding on every side; default floor((KH - 1) / 2), "same" for odd kernels. */
  padding?: number;
}

/** Sizes of one convolution. h, w, ho, wo are per-image rows/columns as the kernels see them. */
export interface ConvGeometry {
  n: number;
  c: number;
  h: number;
  w: number;
  o: number;
  kh: number;
  kw: number;
  s: number;
  p: number;
  ho: number;
  wo: number;
  /** Output shape [N, O, Ho, Wo] (before any flattening). */
  outShape: Shape;
}

/** Check shapes and options; throws `flowgpu: conv2d: ...` naming the shapes. */
export function convGeometry(xShape: Shape, wShape: Shape, opts: Conv2dOptions = {}): ConvGeometry {
  const shapes = `x ${fmtShape(xShape)}, w ${fmtShape(wShape)}`;
  if (xShape.length !== 4) {
    throw new Error(`flowgpu: conv2d: x must be [N, C, H, W], got ${shapes}`);
  }
  if (wShape.length !== 4) {
    throw new Error(`flowgpu: conv2d: w must be [O, C, KH, KW], got ${shapes}`);
  }
  const [n, c, h, w] = xShape;
  const [o, cw, kh, kw] = wShape;
  if (cw !== c) {
    throw new Error(
      `flowgpu: conv2d: channel mismatch: x has ${c} channels, w expects ${cw} (${shapes})`,
    );
  }
  if (o < 1 || kh < 1 || kw < 1 || c < 1 || n < 1) {
    throw new Error(`flowgpu: conv2d: empty dimension in ${shapes}`);
  }
  const s = opts.stride ?? 1;
  if (s !== 1 && s !== 2) throw new Error(`flowgpu: conv2d: stride must be 1 or 2, got ${s}`);
  const p = opts.padding ?? Math.floor((kh - 1) / 2);
  if (!Number.isInteger(p) || p < 0) {
    throw new Error(`flowgpu: conv2d: padding must be an integer >= 0, got ${p}`);
  }
  const ho = Math.floor((h + 2 * p - kh) / s) + 1;
  const wo = Math.floor((w + 2 * p - kw) / s) + 1;
  if (ho < 1 || wo < 1) {
    throw new Error(
      `flowgpu: conv2d: kernel ${kh}x${kw} does not fit ${shapes} with padding ${p}, stride ${s}`,
    );
  }
  const b = opts.bias;
  if (b && (b.shape.length !== 1 || b.shape[0] !== o)) {
    throw new Error(`flowgpu: conv2d: bias ${fmtShape(b.shape)} must be [${o}] for ${shapes}`);
  }
  const outShape = [n, o, ho, wo];
  if (kh === 1 && kw === 1 && s === 1 && p === 0) {
    return { n, c, h: 1, w: h * w, o, kh, kw, s, p, ho: 1, wo: ho * wo, outShape };
  }
  return { n, c, h, w, o, kh, kw, s, p, ho, wo, outShape };
}

const roundUp = (v: number, m: number) => Math.ceil(v / m) * m;
/** Two's complement, for signed uniform words (the shader bitcasts them back). */
const i32 = (v: number) => v >>> 0;

/**
 * src [n, cs, h, w] as a zero-padded [n, cd, hs, ws] with src's (0, 0) at (oy, ox) (negative
 * offsets crop). Returns src itself when that would be an exact copy.
 */
function padded(
  src: Tensor,
  n: number,
  cs: number,
  cd: number,
  h: number,
  w: number,
  hs: number,
  ws: number,
  oy: number,
  ox: number,
): Tensor {
  if (cs === cd && h === hs && w === ws && oy === 0 && ox === 0) return src;
  const out = Tensor.empty([n, cd, hs, ws], "conv2d pad");
  const total4 = (n * cd * hs * ws) / 4;
  dispatch({
    file: FILE,
    entry: "pad",
    buffers: [src, out],
    params: [total4, cs, cd, h, w, hs, ws, i32(oy), i32(ox)],
    threads: total4,
  });
  return out;
}

function releaseTemp(t: Tensor, orig: Tensor): void {
  if (t !== orig) t.release();
}

/**
 * w [O, C, KH, KW] packed as [I, khp, kwp, jp]: entry (i, u, v, j) = w[o, c, ay + sy*u,
 * ax + sx*v] with (o, c) = (j, i), or (i, j) if `trans`; zero for j >= J.
 */
function pack(
  w: Tensor,
  g: ConvGeometry,
  trans: boolean,
  khp: number,
  kwp: number,
  jp: number,
  ay: number,
  sy: number,
  ax: number,
  sx: number,
  thin: boolean,
): GPUBuffer | Tensor {
  const size = (trans ? g.o : g.c) * khp * kwp * jp;
  const out = thin ? uniformKernel() : Tensor.empty([size], "conv2d pack");
  const params = [size, jp, trans ? g.c : g.o, khp, kwp, g.c, g.kh, g.kw, trans ? 1 : 0];
  dispatch({
    file: FILE,
    entry: "pack",
    buffers: [w, out instanceof Tensor ? out : out],
    params: [...params, i32(ay), i32(sy), i32(ax), i32(sx)],
    threads: size,
  });
  return out;
}

/** Floats of a packed kernel that a uniform binding holds (the kernels declare 4096 vec4s). */
const UNIFORM_FLOATS = 16384;
let kernelBuffer: GPUBuffer | undefined;

/**
 * The one buffer that thin packed kernels go through: each pack writes it and the next dispatch
 * reads it as a uniform (the encoder keeps them in order), so no copy and no pool buffer.
 */
function uniformKernel(): GPUBuffer {
  kernelBuffer ??= device().createBuffer({
    size: UNIFORM_FLOATS * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM,
    label: "conv2d uniform kernel",
  });
  return kernelBuffer;
}

/**
 * Whether a stride-1 correlation runs its thin variant: the kernel is 3x3 or 1x1, the packed
 * kernel fits the uniform binding, and output rows are whole vec4s.
 */
function thinOk(plan: ConvPlan, ci: number, taps: number, jp: number, wo: number): boolean {
  if (plan.entry === "conv" || wo % 4 !== 0) return false;
  return ci * taps * jp <= UNIFORM_FLOATS &&
    device().limits.maxUniformBufferBindingSize >= UNIFORM_FLOATS * 4;
}

/** How one correlation runs: its kernel, the padded source it reads, its invocations. */
interface ConvPlan {
  entry: "conv3x3" | "conv1x1" | "conv";
  /** Output channels per invocation (the packed kernel's channels round up to it). */
  block: number;
  /** Rows and columns of the padded source. */
  hs: number;
  ws: number;
  /** Column blocks per output row, and invocations per channel block. */
  wq: number;
  lanes: number;
}

/**
 * The plan for a stride-s kh x kw correlation of n images into ho x wo outputs. The source covers
 * every value an invocation reads, including the rows and columns past the output edge that its
 * block computes and drops (zeros in the padded copy).
 */
function convPlan(n: number, ho: number, wo: number, kh: number, kw: number, s: number): ConvPlan {
  if (kh === 3 && kw === 3 && s === 1) {
    // 2 rows x 8 columns per invocation, reading 4 rows x 12 columns.
    const hq = Math.ceil(ho / 2), wq = Math.ceil(wo / 8);
    return { entry: "conv3x3", block: 4, hs: 2 * hq + 2, ws: 8 * wq + 4, wq, lanes: n * hq * wq };
  }
  if (kh === 1 && kw === 1 && s === 1) {
    // 16 channels x 16 columns per invocation.
    const wq = Math.ceil(wo / 16);
    return { entry: "conv1x1", block: 16, hs: ho, ws: 16 * wq, wq, lanes: n * ho * wq };
  }
  // 8 columns per invocation, each chunk of tw taps reading 7s + tw values from its first tap.
  const wq = Math.ceil(wo / 8), tw = Math.min(kw, 4), chunks = Math.ceil(kw / tw);
  const ws = roundUp(8 * (wq - 1) * s + tw * (chunks - 1) + 7 * s + tw, 4);
  return { entry: "conv", block: 4, hs: (ho - 1) * s + kh, ws, wq, lanes: n * ho * wq };
}

interface ConvCall {
  plan: ConvPlan;
  /** Padded source [n, ci, plan.hs, plan.ws] and packed kernel [ci, kh, kw, jp]. */
  src: Tensor;
  ci: number;
  kp: GPUBuffer | Tensor;
  kh: number;
  kw: number;
  s: number;
  /** Output channels J and their packed count jp. */
  co: number;
  jp: number;
  bias?: Tensor;
  out: Tensor;
  n: number;
  ho: number;
  wo: number;
  /** Store: rows/columns of out per image, stride and offset of this call's outputs in it. */
  hot: number;
  wot: number;
  so: number;
  oy: number;
  ox: number;
}

function runConv(a: ConvCall): void {
  const { plan } = a;
  const groups = Math.ceil(plan.lanes / WG);
  const gz = Math.ceil(groups / MAX_GROUPS);
  const gy = Math.ceil(groups / gz);
  const thin = !(a.kp instanceof Tensor);
  const kbuf = a.kp;
  dispatch({
    file: FILE,
    entry: thin ? `${plan.entry}_u` : plan.entry,
    constants: plan.entry === "conv" ? { KH: a.kh, KW: a.kw, S: a.s } : undefined,
    buffers: [a.src, kbuf, a.bias ?? a.src, a.out],
    params: [
      a.ci,
      plan.hs,
      plan.ws / 4,
      a.jp / 4,
      a.ho,
      a.wo,
      plan.wq,
      plan.lanes,
      a.co,
      a.hot,
      a.wot,
      a.so,
      a.oy,
      a.ox,
      a.bias ? 1 : 0,
    ],
    groups: [a.jp / plan.block, gy, gz],
  });
}

/** The forward pass alone (nothing recorded): y = conv2d(x, w) + bias. */
export function conv2dForward(x: Tensor, w: Tensor, opts: Conv2dOptions = {}): Tensor {
  const g = convGeometry(x.shape, w.shape, opts);
  const out = Tensor.empty(g.outShape, "conv2d");
  const plan = convPlan(g.n, g.ho, g.wo, g.kh, g.kw, g.s);
  const src = padded(x, g.n, g.c, g.c, g.h, g.w, plan.hs, plan.ws, g.p, g.p);
  const jp = roundUp(g.o, plan.block);
  const thin = thinOk(plan, g.c, g.kh * g.kw, jp, g.wo);
  const kp = pack(w, g, false, g.kh, g.kw, jp, 0, 1, 0, 1, thin);
  runConv({
    plan,
    src,
    ci: g.c,
    kp,
    kh: g.kh,
    kw: g.kw,
    s: g.s,
    co: g.o,
    jp,
    bias: opts.bias,
    out,
    n: g.n,
    ho: g.ho,
    wo: g.wo,
    hot: g.ho,
    wot: g.wo,
    so: 1,
    oy: 0,
    ox: 0,
  });
  releaseTemp(src, x);
  if (kp instanceof Tensor) kp.release();
  return out;
}

/** One axis of the data gradient's phase r: taps k0, k0 + S, ... reach dx[a*S + r]. */
function phase(r: number, p: number, k: number, s: number, size: number) {
  const k0 = (r + p) % s;
  const taps = k0 < k ? Math.ceil((k - k0) / s) : 0;
  const d = (r + p - k0) / s; // dx[a*S + r] reads g[a + d - m] through tap k0 + S*m
  const count = Math.ceil((size - r) / s); // dx rows/columns in this phase
  return { k0, taps, offset: taps - 1 - d, count };
}

/**
 * dx [N, C, H, W]: the gradient of conv2d(x, w) with respect to x, given the output gradient
 * g [N, O, Ho, Wo]. A gather: each dx value sums the outputs and taps that read it.
 */
export function conv2dBackwardData(
  g: Tensor,
  w: Tensor,
  xShape: Shape,
  opts: Conv2dOptions = {},
): Tensor {
  const geo = convGeometry(xShape, w.shape, opts);
  checkGrad(g, geo, xShape, w.shape);
  const dx = Tensor.empty(xShape, "conv2d dx");
  const { s, p } = geo;
  const phases: [ReturnType<typeof phase>, ReturnType<typeof phase>, number, number][] = [];
  let complete = true;
  for (let ry = 0; ry < s; ry++) {
    for (let rx = 0; rx < s; rx++) {
      const py = phase(ry, p, geo.kh, s, geo.h);
      const px = phase(rx, p, geo.kw, s, geo.w);
      if (py.count <= 0 || px.count <= 0) continue;
      if (py.taps === 0 || px.taps === 0) complete = false;
      else phases.push([py, px, ry, rx]);
    }
  }
  // Phases no tap reaches (a 1x1 kernel at stride 2) get no gradient.
  if (!complete) fill(dx, 0);
  for (const [py, px, ry, rx] of phases) {
    const plan = convPlan(geo.n, py.count, px.count, py.taps, px.taps, 1);
    const src = padded(
      g,
      geo.n,
      geo.o,
      geo.o,
      geo.ho,
      geo.wo,
      plan.hs,
      plan.ws,
      py.offset,
      px.offset,
    );
    const jp = roundUp(geo.c, plan.block);
    // Flipped and transposed: entry (o, u, v, c) = w[o, c, k0 + S*(taps-1-u), ...].
    const ay = py.k0 + s * (py.taps - 1);
    const ax = px.k0 + s * (px.taps - 1);
    const thin = s === 1 && thinOk(plan, geo.o, py.taps * px.taps, jp, px.count);
    const kp = pack(w, geo, true, py.taps, px.taps, jp, ay, -s, ax, -s, thin);
    runConv({
      plan,
      src,
      ci: geo.o,
      kp,
      kh: py.taps,
      kw: px.taps,
      s: 1,
      co: geo.c,
      jp,
      out: dx,
      n: geo.n,
      ho: py.count,
      wo: px.count,
      hot: geo.h,
      wot: geo.w,
      so: s,
      oy: ry,
      ox: rx,
    });
    releaseTemp(src, g);
    if (kp instanceof Tensor) kp.release();
  }
  return dx;
}

/** How the weight gradient runs: its kernel, the padded copies of x and g it reads, its groups. */
interface WgradPlan {
  entry: "wgrad3x3" | "wgrad1x1" | "wgrad";
  /** x padded to [n, cs, hs, ws]; g padded to [n, gp, ho, gw]. */
  cs: number;
  hs: number;
  ws: number;
  gp: number;
  gw: number;
  /** Column steps per output row; invocations; workgroups along x and z (y: the chunks). */
  wq: number;
  lanes: number;
  groups: [number, number];
}

function wgradPlan(geo: ConvGeometry): WgradPlan {
  const { c, o, ho, wo, kh, kw, s } = geo;
  const gp = roundUp(o, 8);
  const flat = (lanes: number): [number, number] => [Math.ceil(lanes / WG), 1];
  if (kh === 3 && kw === 3 && s === 1) {
    // Steps of 8 columns, reading 3 rows x 12 columns of x.
    const wq = Math.ceil(wo / 8), lanes = c * gp / 8;
    const ws = 8 * wq + 4;
    return {
      entry: "wgrad3x3",
      cs: c,
      hs: ho + 2,
      ws,
      gp,
      gw: 8 * wq,
      wq,
      lanes,
      groups: flat(lanes),
    };
  }
  if (kh === 1 && kw === 1 && s === 1 && c >= 16 && o >= 16) {
    // Steps of 4 columns over blocks of 16 x 16 channels (x and g padded to multiples of 16),
    // 8 x 8 blocks per workgroup.
    const wq = Math.ceil(wo / 4), cs = roundUp(c, 16), gp16 = roundUp(o, 16);
    const lanes = (cs / 16) * (gp16 / 16);
    return {
      entry: "wgrad1x1",
      cs,
      hs: ho,
      ws: 4 * wq,
      gp: gp16,
      gw: 4 * wq,
      wq,
      lanes,
      groups: flat(lanes),
    };
  }
  // Steps of 4 columns, each chunk of tw taps reading 3s + tw values from its first tap.
  const wq = Math.ceil(wo / 4), tw = Math.min(kw, 4), chunks = Math.ceil(kw / tw);
  const ws = roundUp(4 * (wq - 1) * s + tw * (chunks - 1) + 3 * s + tw, 4);
  const lanes = (gp / 8) * c * kh * chunks;
  const hs = (ho - 1) * s + kh;
  return { entry: "wgrad", cs: c, hs, ws, gp, gw: 4 * wq, wq, lanes, groups: flat(lanes) };
}

/**
 * dw [O, C, KH, KW]: the gradient of conv2d(x, w) with respect to w, given the output gradient
 * g [N, O, Ho, Wo]. Each weight sums over N*Ho*Wo; that sum is split over chunks of output rows
 * so that small weight tensors still spread over many invocations, then the chunks are added.
 */
export function conv2dBackwardWeight(
  g: Tensor,
  x: Tensor,
  wShape: Shape,
  opts: Conv2dOptions = {},
): Tensor {
  const geo = convGeometry(x.shape, wShape, opts);
  checkGrad(g, geo, x.shape, wShape);
  const plan = wgradPlan(geo);
  const src = padded(x, geo.n, geo.c, plan.cs, geo.h, geo.w, plan.hs, plan.ws, geo.p, geo.p);
  const gsrc = padded(g, geo.n, geo.o, plan.gp, geo.ho, geo.wo, geo.ho, plan.gw, 0, 0);
  const [gx, gz] = plan.groups;
  if (gx > MAX_GROUPS || gz > MAX_GROUPS) {
    throw new Error(`flowgpu: conv2d: weight gradient of ${fmtShape(wShape)} is too large`);
  }
  const rows = geo.n * geo.ho;
  const want = Math.ceil(WGRAD_TARGET / plan.lanes);
  const rpc = Math.ceil(rows / Math.max(1, Math.min(rows, want, MAX_GROUPS)));
  const parts = Math.ceil(rows / rpc);
  const part = Tensor.empty(parts === 1 ? wShape : [parts, ...wShape], "conv2d dw");
  const params = [geo.c, plan.cs, plan.hs, plan.ws / 4, plan.gp, geo.ho, plan.gw / 4, plan.wq];
  dispatch({
    file: FILE,
    entry: plan.entry,
    constants: plan.entry === "wgrad" ? { KH: geo.kh, KW: geo.kw, S: geo.s } : undefined,
    buffers: [src, gsrc, part],
    params: [...params, rows, rpc, plan.lanes, geo.o],
    groups: [gx, parts, gz],
  });
  releaseTemp(src, x);
  releaseTemp(gsrc, g);
  if (parts === 1) return part;
  const dw = reduceABC(part, parts, part.size / parts, 1, 1, wShape, "conv2d dw");
  part.release();
  return dw;
}

/** db [O]: the per-channel sum of g [N, O, Ho, Wo]. */
export function conv2dBackwardBias(g: Tensor): Tensor {
  const [n, o, ho, wo] = g.shape;
  return reduceABC(g, n, o, ho * wo, 1, [o], "conv2d db");
}

function checkGrad(g: Tensor, geo: ConvGeometry, xShape: Shape, wShape: Shape): void {
  const want = geo.outShape;
  if (g.shape.length !== 4 || g.shape.some((d, i) => d !== want[i])) {
    throw new Error(
      `flowgpu: conv2d: gradient ${fmtShape(g.shape)} does not match the output ${
        fmtShape(want)
      } of x ${fmtShape(xShape)}, w ${fmtShape(wShape)}`,
    );
  }
}

/**
 * y = conv2d(x, w) + bias, x [N, C, H, W], w [O, C, KH, KW], bias [O]; zero padding `padding`
 * (default floor((KH - 1) / 2)) on every side; y [N, O, Ho, Wo], Ho = floor((H + 2p - KH) / S) + 1.
 * Only the gradients of inputs that require one are computed.
 */
export function conv2d(x: Tensor, w: Tensor, opts: Conv2dOptions = {}): Tensor {
  const out = conv2dForward(x, w, opts);
  const bias = opts.bias;
  return record(out, bias ? [x, w, bias] : [x, w], (g) => {
    if (x.requiresGrad) accumulate(x, conv2dBackwardData(g, w, x.shape, opts));
    if (w.requiresGrad) accumulate(w, conv2dBackwardWeight(g, x, w.shape, opts));
    if (bias?.requiresGrad) accumulate(bias, conv2dBackwardBias(g));
  });
}

// The forward correlation that the forward pass and the data gradient share: its plan (which
// kernel, how much padding, how many invocations) and its dispatch, and conv2dForward.
import { device } from "../gpu/device.ts";
import { kernel, type Slot } from "../gpu/kernel.ts";
import {
  type Conv2dOptions,
  convGeometry,
  FILE,
  MAX_GROUPS,
  roundUp,
  WG,
} from "./conv_geometry.ts";
import { pack, padded, releaseTemp, UNIFORM_FLOATS } from "./conv_pack.ts";
import { Tensor } from "./tensor.ts";

// The packed kernel is a storage buffer, or (the `_u` variants) a uniform, and the outputs go
// through cv_out or, as vec4s, cu_out; the generic kernel reads its source as scalars.
const CONV_SLOTS = {
  params: "@0 uniform cv",
  src: "@1 read cv_src",
  k: "@2 read cv_k",
  bias: "@3 read cv_bias",
  out: "@4 read_write cv_out",
} as const satisfies Record<string, Slot>;
const THIN_SLOTS = { ...CONV_SLOTS, k: "@2 uniform cu_k", out: "@4 read_write cu_out" } as const;
const CONV = {
  conv3x3: kernel(FILE, "conv3x3", CONV_SLOTS),
  conv1x1: kernel(FILE, "conv1x1", CONV_SLOTS),
  conv: kernel(FILE, "conv", { ...CONV_SLOTS, src: "@1 read cg_src" }),
};
const CONV_THIN = {
  conv3x3: kernel(FILE, "conv3x3_u", THIN_SLOTS),
  conv1x1: kernel(FILE, "conv1x1_u", THIN_SLOTS),
};

/**
 * Whether a stride-1 correlation runs its thin variant: the kernel is 3x3 or 1x1, the packed
 * kernel fits the uniform binding, and output rows are whole vec4s.
 */
export function thinOk(plan: ConvPlan, ci: number, taps: number, jp: number, wo: number): boolean {
  if (plan.entry === "conv" || wo % 4 !== 0) return false;
  return ci * taps * jp <= UNIFORM_FLOATS &&
    device().limits.maxUniformBufferBindingSize >= UNIFORM_FLOATS * 4;
}

/** How one correlation runs: its kernel, the padded source it reads, its invocations. */
export interface ConvPlan {
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
export function convPlan(
  n: number,
  ho: number,
  wo: number,
  kh: number,
  kw: number,
  s: number,
): ConvPlan {
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

export function runConv(a: ConvCall): void {
  const { plan } = a;
  const groups = Math.ceil(plan.lanes / WG);
  const gz = Math.ceil(groups / MAX_GROUPS);
  const gy = Math.ceil(groups / gz);
  // Without a bias the kernel still binds one (cv.bias = 0 skips its loads).
  const bindings = { src: a.src, k: a.kp, bias: a.bias ?? a.src, out: a.out };
  const thin = !(a.kp instanceof Tensor) && plan.entry !== "conv";
  (thin ? CONV_THIN[plan.entry as "conv3x3" | "conv1x1"] : CONV[plan.entry]).run(bindings, {
    constants: plan.entry === "conv" ? { KH: a.kh, KW: a.kw, S: a.s } : undefined,
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
  const src = padded(x, g.n, g.c, g.c, g.h, g.w, plan.hs, plan.ws, g.pt, g.pl);
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

// The weight and bias gradients of conv2d. The weight gradient sums g * x over chunks of output
// rows (split-K) and adds the chunks with reduceABC; the split aims at WGRAD_TARGET invocations,
// tuned for a 2-core CPU driver (more parts only add stores and reduction work there).
import { kernel, type Slot } from "../gpu/kernel.ts";
import {
  checkGrad,
  type Conv2dOptions,
  type ConvGeometry,
  convGeometry,
  FILE,
  MAX_GROUPS,
  roundUp,
  WG,
} from "./conv_geometry.ts";
import { padded, releaseTemp } from "./conv_pack.ts";
import { reduceABC } from "./reduce.ts";
import { fmtShape, type Shape, Tensor } from "./tensor.ts";

/** Aim for this many invocations in the weight gradient before splitting its sum (split-K). */
const WGRAD_TARGET = 1024;

const WGRAD_SLOTS = {
  params: "@0 uniform wg",
  x: "@1 read wg_src",
  g: "@2 read wg_g",
  part: "@3 read_write wg_part",
} as const satisfies Record<string, Slot>;
const WGRAD = {
  wgrad3x3: kernel(FILE, "wgrad3x3", WGRAD_SLOTS),
  wgrad1x1: kernel(FILE, "wgrad1x1", WGRAD_SLOTS),
  wgrad: kernel(FILE, "wgrad", { ...WGRAD_SLOTS, x: "@1 read wgs_src" }),
};

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
  const src = padded(x, geo.n, geo.c, plan.cs, geo.h, geo.w, plan.hs, plan.ws, geo.pt, geo.pl);
  const gsrc = padded(g, geo.n, geo.o, plan.gp, geo.ho, geo.wo, geo.ho, plan.gw, 0, 0);
  const [gx, gz] = plan.groups;
  if (gx > MAX_GROUPS || gz > MAX_GROUPS) {
    throw new Error(`flowgpu: conv2d: weight gradient of ${fmtShape(wShape)} is too large`);
  }
  const rows = geo.n * geo.ho;
  const want = Math.ceil(WGRAD_TARGET / plan.lanes);
  // Mesa's LLVM backend stops one invocation's loops after 65,535 passes (measured, see
  // linalg.ts): an invocation walks rpc rows of wq + 2 loop passes each, so rpc is capped to
  // stay 8x under that whatever the batch.
  const capRows = Math.max(1, Math.floor(8192 / (plan.wq + 2)));
  const rpc = Math.min(
    capRows,
    Math.ceil(rows / Math.max(1, Math.min(rows, want, MAX_GROUPS))),
  );
  const parts = Math.ceil(rows / rpc);
  const part = Tensor.empty(parts === 1 ? wShape : [parts, ...wShape], "conv2d dw");
  const params = [geo.c, plan.cs, plan.hs, plan.ws / 4, plan.gp, geo.ho, plan.gw / 4, plan.wq];
  WGRAD[plan.entry].run({ x: src, g: gsrc, part }, {
    constants: plan.entry === "wgrad" ? { KH: geo.kh, KW: geo.kw, S: geo.s } : undefined,
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

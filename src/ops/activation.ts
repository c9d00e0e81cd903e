// Activations beyond elementwise.ts: erf, abs, clamp, pow with a constant exponent, PReLU with a
// learnable slope per channel, and the self-normalising WN-PReLU of DisUnknown (spec
// vae-disentangle.md 1.3), whose mean and standard deviation under a N(0, 1) input are
// differentiable functions of the slope a and the pre-bias beta (through the normal cdf, so erf).
import { f32 } from "../gpu/encoder.ts";
import { kernel } from "../gpu/kernel.ts";
import { reduceABC } from "./reduce.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, Tensor } from "./tensor.ts";

const FILE = "activation.wgsl";
const ACT = kernel(FILE, "act", {
  params: "@0 uniform pa",
  x: "@1 read act_x",
  y: "@2 read_write act_y",
});
const ACT_BWD = kernel(FILE, "act_bwd", {
  params: "@0 uniform pa",
  x: "@1 read actb_x",
  g: "@2 read actb_g",
  dx: "@3 read_write actb_dx",
});
const PRELU = kernel(FILE, "prelu", {
  params: "@0 uniform pr",
  x: "@1 read pr_x",
  a: "@2 read pr_a",
  y: "@3 read_write pr_y",
});
const PRELU_BWD = kernel(FILE, "prelu_bwd", {
  params: "@0 uniform pr",
  x: "@1 read pr_x",
  a: "@2 read pr_a",
  g: "@3 read prb_g",
  dx: "@4 read_write prb_dx",
  xg: "@5 read_write prb_xg",
});
const WN = "@0 uniform wn";
const WN_TABLE = kernel(FILE, "wn_table", {
  params: WN,
  a: "@1 read ws_a",
  beta: "@2 read ws_b",
  table: "@3 read_write ws_table",
});
const WN_MOMENTS = kernel(FILE, "wn_moments", {
  params: WN,
  a: "@1 read ws_a",
  beta: "@2 read ws_b",
  table: "@3 read_write ws_table",
  mean: "@4 read_write ws_m",
  std: "@5 read_write ws_sd",
});
const WN_MOMENTS_BWD = kernel(FILE, "wn_moments_bwd", {
  params: WN,
  table: "@1 read wm_table",
  g: "@2 read wm_g",
  da: "@3 read_write wm_da",
  dbeta: "@4 read_write wm_db",
});
const WN_PRELU = kernel(FILE, "wn_prelu", {
  params: WN,
  x: "@1 read wa_x",
  table: "@2 read wa_table",
  y: "@3 read_write wa_y",
});
const WN_PRELU_PARTIAL = kernel(FILE, "wn_prelu_partial", {
  params: WN,
  x: "@1 read wp_x",
  g: "@2 read wp_g",
  table: "@3 read wp_table",
  part: "@4 read_write wp_part",
  dx: "@5 read_write wp_dx",
});
const WN_PRELU_FINISH = kernel(FILE, "wn_prelu_finish", {
  params: WN,
  part: "@1 read wf_part",
  table: "@2 read wf_table",
  da: "@3 read_write wf_da",
  dbeta: "@4 read_write wf_db",
});

const OPS = { erf: 0, abs: 1, clamp: 2, pow: 3 } as const;

function act(op: keyof typeof OPS, x: Tensor, p0 = 0, p1 = 0, kind = 0): Tensor {
  const y = Tensor.empty(x.shape, op);
  const OP = OPS[op];
  const params = [x.size, f32(p0), f32(p1), kind];
  const threads = Math.ceil(x.size / 4);
  ACT.run({ x, y }, { constants: { OP }, params, threads });
  return record(y, [x], (g) => {
    const dx = Tensor.empty(x.shape, `${op}'`);
    ACT_BWD.run({ x, g, dx }, { constants: { OP }, params, threads });
    accumulate(x, dx);
  });
}

/**
 * The error function, elementwise; within 1.3e-7 of erf everywhere (f32 fits made for this
 * library, see shaders/activation.wgsl). The gradient is 2/sqrt(pi) exp(-x^2).
 */
export const erf = (x: Tensor): Tensor => act("erf", x);

/** Elementwise |x|; the gradient is sign(x) (0 at 0). */
export const abs = (x: Tensor): Tensor => act("abs", x);

/**
 * Elementwise min(max(x, lo), hi). The gradient is 1 on [lo, hi] (ends included) and 0 outside.
 */
export function clamp(x: Tensor, lo: number, hi: number): Tensor {
  if (!(lo <= hi)) throw new Error(`flowgpu: clamp: lo ${lo} is not <= hi ${hi}`);
  return act("clamp", x, Math.max(lo, -3.4e38), Math.min(hi, 3.4e38));
}

/**
 * Elementwise x^p for a constant exponent p. An integer p takes any x (x^3 is odd, x^2 even);
 * another p needs x >= 0 (negative x gives NaN, as Math.pow). 0^0 is 1, 0^p is 0 for p > 0 and
 * Infinity for p < 0. The gradient is p x^(p-1).
 */
export function pow(x: Tensor, p: number): Tensor {
  if (!Number.isFinite(p)) throw new Error(`flowgpu: pow: exponent ${p} is not finite`);
  const kind = !Number.isInteger(p) ? 0 : p % 2 === 0 ? 1 : 2;
  return act("pow", x, p, 0, kind);
}

/** The channel dim of x [N, C, ...] and the elements per (sample, channel). */
function channels(op: string, x: Tensor): [number, number] {
  if (x.shape.length < 2) {
    throw new Error(`flowgpu: ${op}: x ${fmtShape(x.shape)} is not [N, C] or [N, C, H, W]`);
  }
  const [n, c] = x.shape;
  return [c, n * c === 0 ? 0 : x.size / (n * c)];
}

/**
 * PReLU (He et al. 2015): x for x > 0, a_c x otherwise, per channel c of x [N, C] or
 * [N, C, H, W]; `a` is [C] (one slope per channel) or [1] (shared). The gradient at 0 is the
 * slope; da_c is the sum of x g over the channel's x < 0.
 */
export function prelu(x: Tensor, a: Tensor): Tensor {
  const [c, inner] = channels("prelu", x);
  if (a.shape.length !== 1 || (a.size !== c && a.size !== 1)) {
    throw new Error(
      `flowgpu: prelu: x ${fmtShape(x.shape)} needs slopes a of shape [${c}] or [1], got ${
        fmtShape(a.shape)
      }`,
    );
  }
  const y = Tensor.empty(x.shape, "prelu");
  const params = [x.size, c, inner, a.size];
  const threads = Math.ceil(x.size / 4);
  PRELU.run({ x, a, y }, { params, threads });
  return record(y, [x, a], (g) => {
    const dx = Tensor.empty(x.shape, "prelu'");
    const xg = Tensor.empty(x.shape, "prelu' x g");
    PRELU_BWD.run({ x, a, g, dx, xg }, { params, threads });
    if (x.requiresGrad) accumulate(x, dx);
    else dx.release();
    if (a.requiresGrad) {
      const n = x.shape[0];
      const da = a.size === 1
        ? reduceABC(xg, 1, 1, x.size, 1, a.shape, "prelu' a")
        : reduceABC(xg, n, c, inner, 1, a.shape, "prelu' a");
      accumulate(a, da);
    }
    xg.release();
  });
}

function wnCheck(op: string, c: number, a: Tensor, beta: Tensor): void {
  const ok = (t: Tensor) => t.shape.length === 1 && t.shape[0] === c;
  if (!ok(a) || !ok(beta)) {
    throw new Error(
      `flowgpu: ${op}: needs a and beta of shape [${c}], got ${fmtShape(a.shape)} and ${
        fmtShape(beta.shape)
      }`,
    );
  }
}

/** Mean and standard deviation of prelu(u + beta; a) for u ~ N(0, 1), per channel. */
export interface WnPreluMoments {
  /** m(a, beta) = beta + (a - 1) (beta Phi(-beta) - phi(beta)), [C]. */
  mean: Tensor;
  /** sd(a, beta) = sqrt(E2 - m^2), E2 = 1 + beta^2 + (a^2 - 1) ((1 + beta^2) Phi(-beta) - beta phi(beta)), [C]. */
  std: Tensor;
}

/**
 * The WN-PReLU constants of spec 1.3 as differentiable functions of the slopes a [C] and the
 * pre-biases beta [C]: the mean and standard deviation of prelu(u + beta; a) under u ~ N(0, 1)
 * (phi, Phi: the standard normal pdf and cdf). Gradients flow into a and beta from either.
 */
export function wnPreluMoments(a: Tensor, beta: Tensor): WnPreluMoments {
  const c = a.shape[0] ?? 0;
  wnCheck("wnPreluMoments", c, a, beta);
  const params = [c, c, 1, 1];
  const table = Tensor.empty([8 * c], "wnPrelu table");
  const mean = Tensor.empty([c], "wnPrelu mean");
  const std = Tensor.empty([c], "wnPrelu std");
  WN_MOMENTS.run({ a, beta, table, mean, std }, { params, threads: c });
  const back = (OP: number) => (g: Tensor) => {
    const da = Tensor.empty([c], "wnPrelu' a");
    const dbeta = Tensor.empty([c], "wnPrelu' beta");
    WN_MOMENTS_BWD.run({ table, g, da, dbeta }, { constants: { OP }, params, threads: c });
    if (a.requiresGrad) accumulate(a, da);
    else da.release();
    if (beta.requiresGrad) accumulate(beta, dbeta);
    else dbeta.release();
  };
  return { mean: record(mean, [a, beta], back(0)), std: record(std, [a, beta], back(1)) };
}

/** Per-channel partial sums: enough threads to fill a GPU, at least 16 elements each. */
function partials(n: number, c: number, s: number): number {
  return Math.max(1, Math.min(256, Math.ceil(4096 / c), Math.ceil((n * s) / 16)));
}

/**
 * WN-PReLU (DisUnknown, spec 1.3): y = (prelu(x + beta; a) - m(a, beta)) / sd(a, beta) per
 * channel of x [N, C] or [N, C, H, W], with a, beta [C] and m, sd from `wnPreluMoments`, so a
 * unit-normal input stays zero-mean, unit-variance. Fused: two dispatches forward, two backward
 * (gradients into x, a and beta, through m and sd too).
 */
export function wnPrelu(x: Tensor, a: Tensor, beta: Tensor): Tensor {
  const [c, s] = channels("wnPrelu", x);
  wnCheck("wnPrelu", c, a, beta);
  const n = x.shape[0];
  const p = partials(n, c, s);
  const params = [x.size, c, s, p];
  const table = Tensor.empty([8 * c], "wnPrelu table");
  WN_TABLE.run({ a, beta, table }, { params, threads: c });
  const y = Tensor.empty(x.shape, "wnPrelu");
  WN_PRELU.run({ x, table, y }, { params, threads: Math.ceil(x.size / 4) });
  return record(y, [x, a, beta], (g) => {
    const part = Tensor.empty([4 * c * p], "wnPrelu partials");
    const dx = Tensor.empty(x.shape, "wnPrelu'");
    WN_PRELU_PARTIAL.run({ x, g, table, part, dx }, { params, threads: c * p });
    if (x.requiresGrad) accumulate(x, dx);
    else dx.release();
    if (a.requiresGrad || beta.requiresGrad) {
      const da = Tensor.empty([c], "wnPrelu' a");
      const dbeta = Tensor.empty([c], "wnPrelu' beta");
      WN_PRELU_FINISH.run({ part, table, da, dbeta }, { params, threads: c });
      if (a.requiresGrad) accumulate(a, da);
      else da.release();
      if (beta.requiresGrad) accumulate(beta, dbeta);
      else dbeta.release();
    }
    part.release();
  });
}

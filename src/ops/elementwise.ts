// Elementwise ops. Binary ops broadcast a scalar ([1]), per-channel ([C], or [1, C, 1, ...]) or
// per-sample ([1, C, H, W] or [C, H, W]: one value per element of a sample, shared over the batch)
// operand over a full tensor [N, C, ...]; the broadcast operand's gradient is reduced back.
import { f32 } from "../gpu/encoder.ts";
import { kernel } from "../gpu/kernel.ts";
import { reduceABC } from "./reduce.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, type Shape, Tensor } from "./tensor.ts";

const FILE = "elementwise.wgsl";
const UNARY_FWD = kernel(FILE, "unary", {
  params: "@0 uniform pf",
  x: "@1 read un_x",
  y: "@2 read_write un_y",
});
const UNARY_BWD = kernel(FILE, "unary_bwd", {
  params: "@0 uniform pf",
  x: "@1 read ub_x",
  y: "@2 read ub_y",
  g: "@3 read ub_g",
  dx: "@4 read_write ub_dx",
});
const SCALE = kernel(FILE, "scale", {
  params: "@0 uniform pf",
  x: "@1 read un_x",
  y: "@2 read_write un_y",
});
const BINARY_FWD = kernel(FILE, "binary", {
  params: "@0 uniform pb",
  a: "@1 read bin_a",
  b: "@2 read bin_b",
  out: "@3 read_write bin_out",
});
const BINARY4 = kernel(FILE, "binary4", {
  params: "@0 uniform pb",
  a: "@1 read bin4_a",
  b: "@2 read bin4_b",
  out: "@3 read_write bin4_out",
});
// d(out)/da needs only b; d(out)/db needs both.
const BINARY_DA = kernel(FILE, "binary_da", {
  params: "@0 uniform pb",
  b: "@2 read bin_b",
  g: "@3 read bg_g",
  out: "@4 read_write bg_out",
});
const BINARY_DB = kernel(FILE, "binary_db", {
  params: "@0 uniform pb",
  a: "@1 read bin_a",
  b: "@2 read bin_b",
  g: "@3 read bg_g",
  out: "@4 read_write bg_out",
});

const UNARY = {
  neg: 0,
  exp: 1,
  log: 2,
  sigmoid: 3,
  softplus: 4,
  tanh: 5,
  relu: 6,
  square: 7,
  sqrt: 8,
  leakyRelu: 9,
} as const;
export type UnaryOp = keyof typeof UNARY;

/** y = f(x) elementwise; `a` is the op's parameter (leakyRelu's slope), in the uniform. */
export function unary(op: UnaryOp, x: Tensor, a = 0): Tensor {
  const y = Tensor.empty(x.shape, op);
  const OP = UNARY[op];
  const params = [x.size, f32(a)];
  const threads = Math.ceil(x.size / 4);
  UNARY_FWD.run({ x, y }, { constants: { OP }, params, threads });
  return record(y, [x], (g) => {
    const dx = Tensor.empty(x.shape, `${op}'`);
    UNARY_BWD.run({ x, y, g, dx }, { constants: { OP }, params, threads });
    accumulate(x, dx);
  });
}

/** Elementwise -x. */
export const neg = (x: Tensor): Tensor => unary("neg", x);
/** Elementwise e^x. */
export const exp = (x: Tensor): Tensor => unary("exp", x);
/** Elementwise natural log (x > 0; the gradient is 1/x). */
export const log = (x: Tensor): Tensor => unary("log", x);
/** Elementwise 1 / (1 + e^-x). */
export const sigmoid = (x: Tensor): Tensor => unary("sigmoid", x);
/** Elementwise log(1 + e^x), computed without overflow for large x. */
export const softplus = (x: Tensor): Tensor => unary("softplus", x);
/** Elementwise hyperbolic tangent. */
export const tanh = (x: Tensor): Tensor => unary("tanh", x);
/** Elementwise max(x, 0); the gradient at 0 is 0. */
export const relu = (x: Tensor): Tensor => unary("relu", x);
/** Elementwise x for x > 0, slope * x otherwise (default slope 0.2); the gradient at 0 is slope. */
export const leakyRelu = (x: Tensor, slope = 0.2): Tensor => unary("leakyRelu", x, slope);
/** Elementwise x². */
export const square = (x: Tensor): Tensor => unary("square", x);
/** Elementwise √x (x >= 0; the gradient is 1 / (2√x)). */
export const sqrt = (x: Tensor): Tensor => unary("sqrt", x);

/** y = c * x for a constant c. */
export function scale(x: Tensor, c: number): Tensor {
  const y = Tensor.empty(x.shape, "scale");
  SCALE.run({ x, y }, { params: [x.size, f32(c)], threads: Math.ceil(x.size / 4) });
  return record(y, [x], (g) => accumulate(x, scale(g, c)));
}

const BINARY = { add: 0, sub: 1, mul: 2, div: 3 } as const;
export type BinaryOp = keyof typeof BINARY;

/**
 * How an operand of `small` shape broadcasts over `full`: 0 same, 1 scalar, 2 per channel, 3 per
 * sample (the full shape without its batch dim, shared by every sample).
 */
function mode(small: Shape, full: Shape, op: string, a: Shape, b: Shape): 0 | 1 | 2 | 3 {
  const n = small.reduce((a, b) => a * b, 1);
  const same = small.length === full.length && small.every((d, i) => d === full[i]);
  if (same) return 0;
  if (n === 1) return 1;
  const c = full[1];
  const perChannel = full.length >= 2 && n === c &&
    (small.length === 1 || (small[1] === c && small.every((d, i) => i === 1 || d === 1)));
  if (perChannel) return 2;
  const rest = full.slice(1);
  const sameAs = (s: Shape) => s.length === rest.length && s.every((d, i) => d === rest[i]);
  const perSample = full.length >= 2 &&
    (sameAs(small) || (small[0] === 1 && sameAs(small.slice(1))));
  if (perSample) return 3;
  throw new Error(
    `flowgpu: ${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} do not broadcast ` +
      "(same shape, a scalar, one value per channel of dim 1, or one sample [1, C, ...] or " +
      "[C, ...] shared over the batch)",
  );
}

export function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const full = a.size >= b.size ? a.shape : b.shape;
  const ma = mode(a.shape, full, op, a.shape, b.shape);
  const mb = mode(b.shape, full, op, a.shape, b.shape);
  const n = full.reduce((x, y) => x * y, 1);
  const c = full.length >= 2 ? full[1] : 1;
  const inner = full.length >= 2 ? n / (full[0] * c) : 1;
  const sample = n / full[0];
  const out = Tensor.empty(full, op);
  const OP = BINARY[op];
  const params = [n, ma, mb, c, inner, sample];
  // vec4 when all four lanes of every vec4 share one broadcast value (per channel) or read one
  // aligned vec4 of the operand (per sample).
  const fits = (m: number) => (m !== 2 || inner % 4 === 0) && (m !== 3 || sample % 4 === 0);
  const vec4 = n % 4 === 0 && fits(ma) && fits(mb);
  (vec4 ? BINARY4 : BINARY_FWD).run({ a, b, out }, {
    constants: { OP },
    params,
    threads: vec4 ? n / 4 : n,
  });
  return record(out, [a, b], (g) => {
    const grad = (da: boolean, t: Tensor, m: number) => {
      if (!t.requiresGrad) return;
      let d = g;
      if (!(op === "add" || (op === "sub" && da))) {
        d = Tensor.empty(full, `${op}'`);
        const launch = { constants: { OP }, params, threads: n };
        if (da) BINARY_DA.run({ b, g, out: d }, launch);
        else BINARY_DB.run({ a, b, g, out: d }, launch);
      }
      if (m === 1) d = reduceABC(d, 1, 1, n, 1, t.shape, "sum");
      if (m === 2) d = reduceABC(d, full[0], c, inner, 1, t.shape, "sumPerChannel");
      if (m === 3) d = reduceABC(d, full[0], sample, 1, 1, t.shape, "sumBatch");
      accumulate(t, d);
    };
    grad(true, a, ma);
    grad(false, b, mb);
  });
}

/**
 * a + b; either operand may be broadcast: a scalar, one value per channel of dim 1, or one sample
 * ([1, C, H, W] or [C, H, W]) shared over the batch.
 */
export const add = (a: Tensor, b: Tensor): Tensor => binary("add", a, b);
/** a - b, broadcasting as `add`. */
export const sub = (a: Tensor, b: Tensor): Tensor => binary("sub", a, b);
/** a * b elementwise, broadcasting as `add`. */
export const mul = (a: Tensor, b: Tensor): Tensor => binary("mul", a, b);
/** a / b elementwise, broadcasting as `add`. */
export const div = (a: Tensor, b: Tensor): Tensor => binary("div", a, b);

// Elementwise ops. Binary ops broadcast a scalar ([1]) or per-channel ([C], or [1, C, 1, ...])
// operand over a full tensor [N, C, ...]; the broadcast operand's gradient is reduced back.
import { dispatch, f32 } from "../gpu/encoder.ts";
import { reduceABC } from "./reduce.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, type Shape, Tensor } from "./tensor.ts";

const FILE = "elementwise.wgsl";

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
} as const;
export type UnaryOp = keyof typeof UNARY;

export function unary(op: UnaryOp, x: Tensor): Tensor {
  const y = Tensor.empty(x.shape, op);
  const OP = UNARY[op];
  const params = [x.size, 0];
  const threads = Math.ceil(x.size / 4);
  dispatch({
    file: FILE,
    entry: "unary",
    constants: { OP },
    buffers: [x, y],
    params,
    threads,
  });
  return record(y, [x], (g) => {
    const dx = Tensor.empty(x.shape, `${op}'`);
    dispatch({
      file: FILE,
      entry: "unary_bwd",
      constants: { OP },
      buffers: [x, y, g, dx],
      params,
      threads,
    });
    accumulate(x, dx);
  });
}

export const neg = (x: Tensor) => unary("neg", x);
export const exp = (x: Tensor) => unary("exp", x);
export const log = (x: Tensor) => unary("log", x);
export const sigmoid = (x: Tensor) => unary("sigmoid", x);
export const softplus = (x: Tensor) => unary("softplus", x);
export const tanh = (x: Tensor) => unary("tanh", x);
export const relu = (x: Tensor) => unary("relu", x);
export const square = (x: Tensor) => unary("square", x);
export const sqrt = (x: Tensor) => unary("sqrt", x);

/** y = c * x for a constant c. */
export function scale(x: Tensor, c: number): Tensor {
  const y = Tensor.empty(x.shape, "scale");
  dispatch({
    file: FILE,
    entry: "scale",
    buffers: [x, y],
    params: [x.size, f32(c)],
    threads: Math.ceil(x.size / 4),
  });
  return record(y, [x], (g) => accumulate(x, scale(g, c)));
}

const BINARY = { add: 0, sub: 1, mul: 2, div: 3 } as const;
export type BinaryOp = keyof typeof BINARY;

/** How an operand of `small` shape broadcasts over `full`: 0 same, 1 scalar, 2 per channel. */
function mode(small: Shape, full: Shape, op: string, a: Shape, b: Shape): 0 | 1 | 2 {
  const n = small.reduce((a, b) => a * b, 1);
  const same = small.length === full.length && small.every((d, i) => d === full[i]);
  if (same) return 0;
  if (n === 1) return 1;
  const c = full[1];
  const perChannel = full.length >= 2 && n === c &&
    (small.length === 1 || (small[1] === c && small.every((d, i) => i === 1 || d === 1)));
  if (perChannel) return 2;
  throw new Error(
    `flowgpu: ${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} do not broadcast ` +
      "(same shape, a scalar, or one value per channel of dim 1)",
  );
}

export function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const full = a.size >= b.size ? a.shape : b.shape;
  const ma = mode(a.shape, full, op, a.shape, b.shape);
  const mb = mode(b.shape, full, op, a.shape, b.shape);
  const n = full.reduce((x, y) => x * y, 1);
  const c = full.length >= 2 ? full[1] : 1;
  const inner = full.length >= 2 ? n / (full[0] * c) : 1;
  const out = Tensor.empty(full, op);
  const OP = BINARY[op];
  const params = [n, ma, mb, c, inner];
  const vec4 = n % 4 === 0 && (ma !== 2 || inner % 4 === 0) && (mb !== 2 || inner % 4 === 0);
  dispatch({
    file: FILE,
    entry: vec4 ? "binary4" : "binary",
    constants: { OP },
    buffers: [a, b, out],
    params,
    threads: vec4 ? n / 4 : n,
  });
  return record(out, [a, b], (g) => {
    const grad = (entry: "binary_da" | "binary_db", t: Tensor, m: number) => {
      if (!t.requiresGrad) return;
      let d = g;
      if (!(op === "add" || (op === "sub" && entry === "binary_da"))) {
        d = Tensor.empty(full, `${op}'`);
        dispatch({
          file: FILE,
          entry,
          constants: { OP },
          buffers: [entry === "binary_db" ? a : undefined, b, g, d],
          params,
          threads: n,
        });
      }
      if (m === 1) d = reduceABC(d, 1, 1, n, 1, t.shape, "sum");
      if (m === 2) d = reduceABC(d, full[0], c, inner, 1, t.shape, "sumPerChannel");
      accumulate(t, d);
    };
    grad("binary_da", a, ma);
    grad("binary_db", b, mb);
  });
}

export const add = (a: Tensor, b: Tensor) => binary("add", a, b);
export const sub = (a: Tensor, b: Tensor) => binary("sub", a, b);
export const mul = (a: Tensor, b: Tensor) => binary("mul", a, b);
export const div = (a: Tensor, b: Tensor) => binary("div", a, b);

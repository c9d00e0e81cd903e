// Reductions: sum/mean over everything, over the batch, per sample, per channel. All are one
// kernel pair over a [A, B, C] view reduced over A and C; the backward broadcasts back.
import { f32 } from "../gpu/encoder.ts";
import { kernel } from "../gpu/kernel.ts";
import { record } from "./tape.ts";
import { accumulate } from "./tape.ts";
import { fmtShape, type Shape, Tensor } from "./tensor.ts";

const FILE = "reduce.wgsl";
/** Lanes per chunk in stage 1 (the WGSL override G). */
const LANES = 8;
/** vec4 columns per thread of partial_rows4 (RW in the WGSL). */
const ROWS_COLS = 4;
const PARTIAL = kernel(FILE, "partial", {
  params: "@0 uniform r",
  x: "@1 read s1_x",
  part: "@2 read_write s1_part",
});
const PARTIAL4 = kernel(FILE, "partial4", {
  params: "@0 uniform r",
  x: "@1 read s4_x",
  part: "@2 read_write s1_part",
});
const PARTIAL_ROWS4 = kernel(FILE, "partial_rows4", {
  params: "@0 uniform r",
  x: "@1 read s4_x",
  part: "@2 read_write s1_part",
});
const FINISH = kernel(FILE, "finish", {
  params: "@0 uniform r",
  part: "@1 read s2_part",
  out: "@2 read_write s2_out",
});
const EXPAND = kernel(FILE, "expand", {
  params: "@0 uniform r",
  g: "@1 read ex_g",
  dx: "@2 read_write ex_dx",
});

/** Sum of x viewed as [a, b, c] over a and c, times `scale`, as a tensor of `outShape`. */
export function reduceABC(
  x: Tensor,
  a: number,
  b: number,
  c: number,
  scale: number,
  outShape: Shape,
  name = "reduce",
): Tensor {
  if (a * b * c !== x.size) {
    throw new Error(`flowgpu: ${name}: [${a}, ${b}, ${c}] does not cover ${fmtShape(x.shape)}`);
  }
  const out = Tensor.empty(outShape, name);
  // vec4 loads along c when it allows (lavapipe pays per load instruction, GPUs per transaction),
  // or along b for row sums (c == 1).
  const rows4 = c === 1 && b % 4 === 0;
  const v = c % 4 === 0 ? 4 : 1;
  const n = (a * c) / v;
  // Partials per output: enough threads to fill a GPU (~16384 on large inputs, 4096 for row
  // sums), at least 16 loads each, at most 1024. Row sums: a thread per 4 ROWS_COLS columns and
  // block of rows (see partial_rows4). Otherwise whole chunks of LANES threads (see reduce.wgsl);
  // a plane too small for LANES partials is one chunk of fewer lanes, i.e. the previous
  // interleaved layout: no idle threads, and the small sums behind the losses of small models
  // keep their exact rounding (a gradcheck of a tiny Glow sits at the loss's last bit).
  let p: number, lanes = LANES;
  if (rows4) p = Math.max(1, Math.min(1024, Math.ceil(65536 / b), Math.ceil(a / 16)));
  else {
    const want = Math.max(1, Math.min(1024, Math.ceil(16384 / b), Math.ceil(n / 16)));
    lanes = Math.min(LANES, want);
    p = Math.ceil(want / lanes) * lanes;
  }
  const part = Tensor.empty([b * p], "partials");
  if (rows4) {
    const cols = Math.ceil(b / 4 / (8 * ROWS_COLS)) * 8;
    PARTIAL_ROWS4.run({ x, part }, { params: [a, b / 4, cols, p, f32(scale)], threads: cols * p });
  } else {
    (v === 4 ? PARTIAL4 : PARTIAL).run({ x, part }, {
      params: [a, b, c / v, p, f32(scale)],
      threads: b * p,
      constants: { G: lanes },
    });
  }
  FINISH.run({ part, out }, { params: [a, b, c, p, f32(scale)], threads: b });
  part.release();
  return record(out, [x], (g) => accumulate(x, expand(g, a, b, c, scale, x.shape)));
}

/** dx[a, b, c] = scale * g[b], shaped `shape`. */
export function expand(g: Tensor, a: number, b: number, c: number, scale: number, shape: Shape) {
  const dx = Tensor.empty(shape, "expand");
  EXPAND.run({ g, dx }, { params: [a, b, c, 1, f32(scale)], threads: a * b * c });
  return record(dx, [g], (gg) => accumulate(g, reduceABC(gg, a, b, c, scale, g.shape)));
}

/** Sum of every element: any shape -> [1]. */
export function sum(x: Tensor): Tensor {
  return reduceABC(x, 1, 1, x.size, 1, [1], "sum");
}

/** Mean of every element: any shape -> [1]. */
export function mean(x: Tensor): Tensor {
  return reduceABC(x, 1, 1, x.size, 1 / x.size, [1], "mean");
}

/** Sum over dim 0: [N, ...rest] -> [...rest]. */
export function sumBatch(x: Tensor): Tensor {
  const n = x.shape[0];
  return reduceABC(x, n, x.size / n, 1, 1, x.shape.slice(1), "sumBatch");
}

/** Mean over dim 0: [N, ...rest] -> [...rest]. */
export function meanBatch(x: Tensor): Tensor {
  const n = x.shape[0];
  return reduceABC(x, n, x.size / n, 1, 1 / n, x.shape.slice(1), "meanBatch");
}

/** Sum over everything but dim 0: [N, ...] -> [N]. */
export function sumPerSample(x: Tensor): Tensor {
  const n = x.shape[0];
  return reduceABC(x, 1, n, x.size / n, 1, [n], "sumPerSample");
}

/** Sum over dims 0, 2, 3, ...: [N, C, ...] -> [C]. */
export function sumPerChannel(x: Tensor): Tensor {
  const [n, c] = x.shape;
  return reduceABC(x, n, c, x.size / (n * c), 1, [c], "sumPerChannel");
}

/** Mean over dims 0, 2, 3, ...: [N, C, ...] -> [C]. */
export function meanPerChannel(x: Tensor): Tensor {
  const [n, c] = x.shape;
  const inner = x.size / (n * c);
  return reduceABC(x, n, c, inner, 1 / (n * inner), [c], "meanPerChannel");
}

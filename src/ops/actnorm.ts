// ActNorm (Glow §3.1): a per-channel affine y = exp(a) x + b with log-scale a, data-dependent
// initialisation, and log-det S * sum(a) per sample (S = pixels per channel).
import { kernel } from "../gpu/kernel.ts";
import { scale } from "./elementwise.ts";
import { sum } from "./reduce.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, Tensor } from "./tensor.ts";

const FILE = "actnorm.wgsl";
const U = "@0 uniform an";
// Scalar and vec4 variants (the latter when each channel's plane is a multiple of 4).
const FORWARD = {
  1: kernel(FILE, "forward", {
    params: U,
    x: "@1 read f_x",
    a: "@2 read f_a",
    b: "@3 read f_b",
    y: "@4 read_write f_y",
  }),
  4: kernel(FILE, "forward4", {
    params: U,
    x: "@1 read v_x",
    a: "@2 read f_a",
    b: "@3 read f_b",
    y: "@4 read_write v_y",
  }),
};
const BACKWARD_X = {
  1: kernel(FILE, "backward_x", {
    params: U,
    g: "@1 read f_x",
    a: "@2 read f_a",
    dx: "@4 read_write f_y",
  }),
  4: kernel(FILE, "backward_x4", {
    params: U,
    g: "@1 read v_x",
    a: "@2 read f_a",
    dx: "@4 read_write v_y",
  }),
};
const PARTIAL_GRAD = {
  1: kernel(FILE, "partial_grad", {
    params: U,
    x: "@1 read p_x",
    g: "@2 read p_g",
    part: "@3 read_write p_part",
  }),
  4: kernel(FILE, "partial_grad4", {
    params: U,
    x: "@1 read v_x",
    g: "@2 read v_g",
    part: "@3 read_write p_part",
  }),
};
const FINISH_GRAD = kernel(FILE, "finish_grad", {
  params: U,
  part: "@1 read q_part",
  a: "@2 read q_a",
  da: "@3 read_write q_da",
  db: "@4 read_write q_db",
});
const INVERSE = kernel(FILE, "inverse", {
  params: U,
  y: "@1 read f_x",
  a: "@2 read f_a",
  b: "@3 read f_b",
  x: "@4 read_write f_y",
});
const PARTIAL_STATS = kernel(FILE, "partial_stats", {
  params: U,
  x: "@1 read p_x",
  part: "@3 read_write p_part",
});
const FINISH_INIT = kernel(FILE, "finish_init", {
  params: U,
  part: "@1 read q_part",
  a: "@2 read_write i_a",
  b: "@3 read_write i_b",
});

function dims(x: Tensor, a: Tensor, b: Tensor, op: string): [number, number, number] {
  const [n, c] = x.shape;
  if (x.shape.length < 2 || a.size !== c || b.size !== c) {
    throw new Error(
      `flowgpu: ${op}: x ${fmtShape(x.shape)} needs per-channel a and b of ${c} values, got ` +
        `${fmtShape(a.shape)} and ${fmtShape(b.shape)}`,
    );
  }
  return [n, c, x.size / (n * c)];
}

/** Lanes per chunk of the stage-1 partial sums: the WGSL override G (its default). */
const LANES = 8;

/** Partial sums per channel: at least 16 loads each, in whole chunks of LANES threads. */
function partials(n: number, c: number, s: number): number {
  const p = Math.max(1, Math.min(256, Math.ceil(4096 / c), Math.ceil((n * s) / 16)));
  return Math.ceil(p / LANES) * LANES;
}

/** y = exp(a_c) x + b_c. */
export function actnorm(x: Tensor, a: Tensor, b: Tensor): Tensor {
  const [n, c, s] = dims(x, a, b, "actnorm");
  const y = Tensor.empty(x.shape, "actnorm");
  // vec4 loads when each channel's plane is a multiple of 4 (S = H W; 1 on 2-D inputs).
  const v = s % 4 === 0 ? 4 : 1;
  const p = partials(n, c, s / v);
  const params = [n, c, s / v, p];
  const threads = x.size / v;
  FORWARD[v].run({ x, a, b, y }, { params, threads });
  return record(y, [x, a, b], (g) => {
    if (x.requiresGrad) {
      const dx = Tensor.empty(x.shape, "actnorm'");
      BACKWARD_X[v].run({ g, a, dx }, { params, threads });
      accumulate(x, dx);
    }
    if (a.requiresGrad || b.requiresGrad) {
      const part = Tensor.empty([c * p * 2], "actnorm.partials");
      PARTIAL_GRAD[v].run({ x, g, part }, { params, threads: c * p });
      const da = Tensor.empty(a.shape, "actnorm.da");
      const db = Tensor.empty(b.shape, "actnorm.db");
      FINISH_GRAD.run({ part, a, da, db }, { params, threads: c });
      part.release();
      accumulate(a, da);
      accumulate(b, db);
    }
  });
}

/** x = (y - b_c) exp(-a_c); used for sampling, so it records nothing. */
export function actnormInverse(y: Tensor, a: Tensor, b: Tensor): Tensor {
  const [n, c, s] = dims(y, a, b, "actnormInverse");
  const x = Tensor.empty(y.shape, "actnormInverse");
  INVERSE.run({ y, a, b, x }, { params: [n, c, s, 1], threads: y.size });
  return x;
}

/** Per-sample log-det of a flow actnorm on x's shape: S * sum(a), as a [1] tensor. */
export function actnormLogdet(x: Tensor, a: Tensor): Tensor {
  const [n, c] = x.shape;
  return scale(sum(a), x.size / (n * c));
}

/**
 * Data-dependent init: set a = -log(std_c + 1e-6) and b = -mean_c exp(a) from x's per-channel
 * statistics over (N, H, W), so that actnorm(x) has zero mean and unit variance per channel.
 * Writes the parameters in place on the GPU; no gradient flows through it.
 */
export function actnormInit(x: Tensor, a: Tensor, b: Tensor): void {
  const [n, c, s] = dims(x, a, b, "actnormInit");
  const p = partials(n, c, s);
  const params = [n, c, s, p];
  const part = Tensor.empty([c * p * 2], "actnorm.partials");
  PARTIAL_STATS.run({ x, part }, { params, threads: c * p });
  FINISH_INIT.run({ part, a, b }, { params, threads: c });
  part.release();
}

// Batch normalisation (Ioffe & Szegedy 2015) per channel over (N, H, W) of [N, C, H, W] inputs,
// or over N of [N, C]. Training mode normalises with the batch's statistics and decays the
// running statistics towards them in place on the GPU; eval mode uses the running statistics.
import { f32 } from "../gpu/encoder.ts";
import { kernel } from "../gpu/kernel.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, type Shape, Tensor } from "./tensor.ts";

const FILE = "norm.wgsl";
const U = "@0 uniform bn";
const STATS_PARTIAL = {
  1: kernel(FILE, "stats_partial", { params: U, x: "@1 read p_x", part: "@4 read_write p_part" }),
  4: kernel(FILE, "stats_partial4", {
    params: U,
    x: "@1 read p4_x",
    part: "@4 read_write p_part",
  }),
};
const GRAD_PARTIAL = {
  1: kernel(FILE, "grad_partial", {
    params: U,
    x: "@1 read p_x",
    g: "@2 read p_g",
    stats: "@3 read p_stats",
    part: "@4 read_write p_part",
  }),
  4: kernel(FILE, "grad_partial4", {
    params: U,
    x: "@1 read p4_x",
    g: "@2 read p4_g",
    stats: "@3 read p_stats",
    part: "@4 read_write p_part",
  }),
};
const FINISH_STATS = kernel(FILE, "finish_stats", {
  params: U,
  part: "@1 read q_part",
  x: "@2 read q_x",
  stats: "@3 read_write q_stats",
});
const FINISH_STATS_RUNNING = kernel(FILE, "finish_stats_running", {
  params: U,
  part: "@1 read q_part",
  x: "@2 read q_x",
  stats: "@3 read_write q_stats",
  runningMean: "@4 read_write q_rmean",
  runningVar: "@5 read_write q_rvar",
});
const EVAL_STATS = kernel(FILE, "eval_stats", {
  params: U,
  runningMean: "@1 read e_rmean",
  runningVar: "@2 read e_rvar",
  stats: "@3 read_write q_stats",
});
const FINISH_GRAD = kernel(FILE, "finish_grad", {
  params: U,
  part: "@1 read q_part",
  stats: "@3 read f_stats",
  dgamma: "@4 read_write f_dgamma",
  dbeta: "@5 read_write f_dbeta",
});
const NORMALIZE = {
  1: kernel(FILE, "normalize", {
    params: U,
    x: "@1 read n_x",
    stats: "@2 read n_stats",
    gamma: "@3 read n_gamma",
    beta: "@4 read n_beta",
    y: "@5 read_write n_y",
  }),
  4: kernel(FILE, "normalize4", {
    params: U,
    x: "@1 read n4_x",
    stats: "@2 read n_stats",
    gamma: "@3 read n_gamma",
    beta: "@4 read n_beta",
    y: "@5 read_write n4_y",
  }),
};
const BACKWARD_X = {
  1: kernel(FILE, "backward_x", {
    params: U,
    x: "@1 read b_x",
    g: "@2 read b_g",
    stats: "@3 read b_stats",
    gamma: "@4 read b_gamma",
    dgamma: "@5 read b_dgamma",
    dbeta: "@6 read b_dbeta",
    dx: "@7 read_write b_dx",
  }),
  4: kernel(FILE, "backward_x4", {
    params: U,
    x: "@1 read b4_x",
    g: "@2 read b4_g",
    stats: "@3 read b_stats",
    gamma: "@4 read b_gamma",
    dgamma: "@5 read b_dgamma",
    dbeta: "@6 read b_dbeta",
    dx: "@7 read_write b4_dx",
  }),
};

/** Options of `batchNorm`. */
export interface BatchNormOptions {
  /** Normalise with the batch's statistics and update the running ones (true), or use them. */
  training: boolean;
  /** Running mean, [C]; decayed towards the batch mean in training mode, used in eval mode. */
  runningMean?: Tensor;
  /** Running (unbiased) variance, [C]; as `runningMean`. */
  runningVar?: Tensor;
  /** Decay d of the running statistics: r = d r + (1 - d) batch (default 0.99). */
  momentum?: number;
  /** Added to the variance under the square root (default 1e-5). */
  eps?: number;
}

const isVector = (s: Shape, c: number) => s.length === 1 && s[0] === c;

function check(x: Tensor, gamma: Tensor, beta: Tensor, o: BatchNormOptions): number[] {
  const where = "flowgpu: batchNorm";
  if (x.shape.length < 2) {
    throw new Error(`${where}: x ${fmtShape(x.shape)} is not [N, C] or [N, C, H, W]`);
  }
  const [n, c] = x.shape;
  const s = x.size / (n * c);
  if (!isVector(gamma.shape, c) || !isVector(beta.shape, c)) {
    throw new Error(
      `${where}: x ${fmtShape(x.shape)} needs gamma and beta of shape [${c}], got ` +
        `${fmtShape(gamma.shape)} and ${fmtShape(beta.shape)}`,
    );
  }
  const { runningMean: rm, runningVar: rv } = o;
  if (!rm !== !rv) throw new Error(`${where}: give both runningMean and runningVar, or neither`);
  if (!o.training && !rm) {
    throw new Error(`${where}: eval mode (training: false) needs runningMean and runningVar`);
  }
  if (rm && rv && (!isVector(rm.shape, c) || !isVector(rv.shape, c))) {
    throw new Error(
      `${where}: x ${fmtShape(x.shape)} needs runningMean and runningVar of shape [${c}], got ` +
        `${fmtShape(rm.shape)} and ${fmtShape(rv.shape)}`,
    );
  }
  // A batch of one is refused even with spatial positions to average over: its statistics
  // would be one image's, so eval mode (running statistics) could not reproduce training's.
  if (o.training && n === 1) {
    throw new Error(
      `${where}: training mode needs a batch of at least 2 (x ${fmtShape(x.shape)}); ` +
        `use eval mode (training: false) for single images`,
    );
  }
  return [n, c, s];
}

/** Lanes per chunk of the stage-1 partial sums: the WGSL override G (its default). */
const LANES = 8;

/**
 * Partial sums per channel: enough threads to fill a GPU, at least 16 loads each, in whole
 * chunks of LANES threads (see norm.wgsl).
 */
function partials(n: number, c: number, s: number): number {
  const p = Math.max(1, Math.min(256, Math.ceil(4096 / c), Math.ceil((n * s) / 16)));
  return Math.ceil(p / LANES) * LANES;
}

/**
 * gamma_c (x - mean_c) / sqrt(var_c + eps) + beta_c per channel of x [N, C, ...]. Training mode
 * uses the batch's mean and biased variance over (N, H, W) and, when given the running buffers,
 * decays them in place: mean as r = d r + (1 - d) mean, variance likewise with the batch's
 * unbiased variance (as PyTorch). Eval mode uses the running statistics, and its backward is the
 * plain per-channel affine.
 */
export function batchNorm(x: Tensor, gamma: Tensor, beta: Tensor, o: BatchNormOptions): Tensor {
  const [n, c, s] = check(x, gamma, beta, o);
  const { training, runningMean, runningVar } = o;
  const v = s % 4 === 0 ? 4 : 1;
  const p = partials(n, c, s / v);
  const params = [n, c, s / v, p, s, f32(o.eps ?? 1e-5), f32(o.momentum ?? 0.99), training ? 1 : 0];
  const stats = Tensor.empty([2 * c], "batchNorm.stats");
  if (training) {
    const part = Tensor.empty([2 * c * p], "batchNorm.partials");
    STATS_PARTIAL[v].run({ x, part }, { params, threads: c * p });
    if (runningMean && runningVar) {
      FINISH_STATS_RUNNING.run({ part, x, stats, runningMean, runningVar }, {
        params,
        threads: c,
      });
    } else FINISH_STATS.run({ part, x, stats }, { params, threads: c });
    part.release();
  } else {EVAL_STATS.run({ runningMean: runningMean!, runningVar: runningVar!, stats }, {
      params,
      threads: c,
    });}
  const y = Tensor.empty(x.shape, "batchNorm");
  NORMALIZE[v].run({ x, stats, gamma, beta, y }, { params, threads: x.size / v });
  return record(y, [x, gamma, beta], (g) => {
    // Training-mode dx needs both parameter sums; eval-mode dx needs neither.
    const sums = gamma.requiresGrad || beta.requiresGrad || (training && x.requiresGrad);
    let dgamma: Tensor | undefined, dbeta: Tensor | undefined;
    if (sums) {
      const part = Tensor.empty([2 * c * p], "batchNorm.partials");
      GRAD_PARTIAL[v].run({ x, g, stats, part }, { params, threads: c * p });
      dgamma = Tensor.empty(gamma.shape, "batchNorm.dgamma");
      dbeta = Tensor.empty(beta.shape, "batchNorm.dbeta");
      FINISH_GRAD.run({ part, stats, dgamma, dbeta }, { params, threads: c });
      part.release();
    }
    if (x.requiresGrad) {
      const dx = Tensor.empty(x.shape, "batchNorm'");
      BACKWARD_X[v].run({
        x,
        g,
        stats,
        gamma,
        dgamma: dgamma ?? gamma,
        dbeta: dbeta ?? gamma,
        dx,
      }, { params, threads: x.size / v });
      accumulate(x, dx);
    }
    if (dgamma && dbeta) {
      accumulate(gamma, dgamma);
      accumulate(beta, dbeta);
    }
  });
}

// Weight reparameterisations applied to a parameter before the layer uses it: weight norm (each
// output unit's weights scaled to unit length, times an optional gain; DisUnknown's WN layers)
// and spectral norm (the weight divided by its largest singular value, estimated by one power
// iteration per call from a persistent vector; Zheng & Sun's discriminator). Kernels:
// shaders/weight_norm.wgsl. The output unit is dim 0 (linear [O, I], conv2d [O, C, K, K]) or
// dim 1 (convTranspose2d [Cin, Cout, K, K]); either way the weight is viewed as [A, B, R] with B
// units, and nothing is permuted.
import { f32 } from "../gpu/encoder.ts";
import { kernel } from "../gpu/kernel.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, Tensor } from "./tensor.ts";

const FILE = "weight_norm.wgsl";
const U = "@0 uniform wn";
const DOT = {
  1: kernel(FILE, "dot_partial", {
    params: U,
    x: "@1 read d_x",
    y: "@2 read d_y",
    part: "@3 read_write d_part",
  }),
  4: kernel(FILE, "dot_partial4", {
    params: U,
    x: "@1 read d4_x",
    y: "@2 read d4_y",
    part: "@3 read_write d_part",
  }),
};
const WN_STATS = kernel(FILE, "wn_stats", {
  params: U,
  part: "@1 read s_part",
  stats: "@2 read_write s_stats",
});
const WN_DGAIN = kernel(FILE, "wn_dgain", {
  params: U,
  part: "@1 read s_part",
  stats: "@2 read g_stats",
  ds: "@3 read_write g_ds",
});
const WN_APPLY = {
  1: kernel(FILE, "wn_apply", {
    params: U,
    w: "@1 read a_w",
    stats: "@2 read a_stats",
    gain: "@3 read a_gain",
    out: "@4 read_write a_out",
  }),
  4: kernel(FILE, "wn_apply4", {
    params: U,
    w: "@1 read a4_w",
    stats: "@2 read a_stats",
    gain: "@3 read a_gain",
    out: "@4 read_write a4_out",
  }),
};
const WN_BWD = {
  1: kernel(FILE, "wn_bwd", {
    params: U,
    w: "@1 read b_w",
    g: "@2 read b_g",
    stats: "@3 read b_stats",
    gain: "@4 read b_gain",
    ds: "@5 read b_ds",
    dw: "@6 read_write b_dw",
  }),
  4: kernel(FILE, "wn_bwd4", {
    params: U,
    w: "@1 read b4_w",
    g: "@2 read b4_g",
    stats: "@3 read b_stats",
    gain: "@4 read b_gain",
    ds: "@5 read b_ds",
    dw: "@6 read_write b4_dw",
  }),
};
const SN_WTU = {
  1: kernel(FILE, "sn_wtu", {
    params: U,
    w: "@1 read t_w",
    u: "@2 read t_u",
    vt: "@3 read_write t_vt",
  }),
  4: kernel(FILE, "sn_wtu4", {
    params: U,
    w: "@1 read t4_w",
    u: "@2 read t_u",
    vt: "@3 read_write t4_vt",
  }),
};
const SN_WV = {
  1: kernel(FILE, "sn_wv_partial", {
    params: U,
    w: "@1 read m_w",
    vt: "@2 read m_vt",
    part: "@3 read_write m_part",
  }),
  4: kernel(FILE, "sn_wv_partial4", {
    params: U,
    w: "@1 read m4_w",
    vt: "@2 read m4_vt",
    part: "@3 read_write m_part",
  }),
};
const SN_ROWS = kernel(FILE, "sn_rows", {
  params: U,
  part: "@1 read s_part",
  y: "@2 read_write s_stats",
});
const SN_SIGMA = kernel(FILE, "sn_sigma", {
  params: U,
  vt: "@1 read q_vt",
  y: "@2 read q_y",
  stats: "@3 read_write q_stats",
});
const SN_UPDATE = kernel(FILE, "sn_update", {
  params: U,
  vt: "@1 read k_vt",
  y: "@2 read k_y",
  stats: "@3 read k_stats",
  state: "@4 read_write k_state",
  u: "@5 read_write k_u",
  v: "@6 read_write k_v",
});
const SN_APPLY = {
  1: kernel(FILE, "sn_apply", {
    params: U,
    w: "@1 read a_w",
    stats: "@2 read a_stats",
    out: "@4 read_write a_out",
  }),
  4: kernel(FILE, "sn_apply4", {
    params: U,
    w: "@1 read a4_w",
    stats: "@2 read a_stats",
    out: "@4 read_write a4_out",
  }),
};
const SN_COEF = kernel(FILE, "sn_coef", {
  params: U,
  part: "@1 read s_part",
  stats: "@2 read g_stats",
  coef: "@3 read_write c_coef",
});
const SN_BWD = {
  1: kernel(FILE, "sn_bwd", {
    params: U,
    g: "@1 read e_g",
    u: "@2 read e_u",
    v: "@3 read e_v",
    coef: "@4 read e_coef",
    dw: "@5 read_write e_dw",
  }),
  4: kernel(FILE, "sn_bwd4", {
    params: U,
    g: "@1 read e4_g",
    u: "@2 read e_u",
    v: "@3 read e4_v",
    coef: "@4 read e_coef",
    dw: "@5 read_write e4_dw",
  }),
};

/** The [A, B, R] view of w with B units along `dim`; throws `flowgpu: <op>: ...`. */
function view(w: Tensor, dim: number | undefined, op: string): [number, number, number] {
  const d = dim ?? 0;
  if (d !== 0 && d !== 1) throw new Error(`flowgpu: ${op}: dim must be 0 or 1, got ${d}`);
  if (w.shape.length < d + 1 || w.size === 0) {
    throw new Error(
      `flowgpu: ${op}: w ${fmtShape(w.shape)} has no output units along dim ${d} ` +
        `(needs ${d + 1}+ dims, none empty)`,
    );
  }
  const a = d === 0 ? 1 : w.shape[0];
  const b = w.shape[d];
  return [a, b, w.size / (a * b)];
}

/** Partial sums per row: enough threads to fill a GPU, at least 16 loads each. */
function partials(rows: number, length: number): number {
  return Math.max(1, Math.min(1024, Math.ceil(16384 / rows), Math.ceil(length / 16)));
}

/** P partial sums of x * y per row of the [a, b, r] view (vec4 loads when r % 4 == 0). */
function rowDots(x: Tensor, y: Tensor, a: number, b: number, r: number, eps: number) {
  const v = r % 4 === 0 ? 4 : 1;
  const p = partials(b, (a * r) / v);
  const part = Tensor.empty([b * p], "rowDots");
  DOT[v].run({ x, y, part }, { params: [a, b, r / v, p, f32(eps), 0, 0], threads: b * p });
  return { part, p };
}

/** Options of `weightNorm`. */
export interface WeightNormOptions {
  /** Per-unit gain g, shape [B] (B = w.shape[dim]); without it every row has length 1. */
  gain?: Tensor;
  /** The output-unit dim: 0 (linear [O, I], conv2d [O, C, K, K]) or 1 (convTranspose2d). */
  dim?: 0 | 1;
  /** Norms below eps are clamped to it (default 1e-8). */
  eps?: number;
}

/**
 * Weight norm: what = g_b w_b / max(|w_b|, eps) for each output unit b along `dim`, the norm over
 * every other dim (for dim 1: over dims 0, 2, ...). Backward:
 * dw = (g / |w|) (dwhat - u sum_row(dwhat u)) with u = w / |w|, and dg = sum_row(dwhat u).
 */
export function weightNorm(w: Tensor, opts: WeightNormOptions = {}): Tensor {
  const [a, b, r] = view(w, opts.dim, "weightNorm");
  const gain = opts.gain;
  if (gain && (gain.shape.length !== 1 || gain.shape[0] !== b)) {
    throw new Error(
      `flowgpu: weightNorm: gain ${fmtShape(gain.shape)} must be [${b}] for w ${
        fmtShape(w.shape)
      } (one per unit along dim ${opts.dim ?? 0})`,
    );
  }
  const eps = opts.eps ?? 1e-8;
  const v = r % 4 === 0 ? 4 : 1;
  const { part, p } = rowDots(w, w, a, b, r, eps);
  const params = [a, b, r, p, f32(eps), gain ? 1 : 0, 0];
  const stats = Tensor.empty([2 * b], "weightNorm.stats");
  WN_STATS.run({ part, stats }, { params, threads: b });
  part.release();
  const out = Tensor.empty(w.shape, "weightNorm");
  const params4 = [a, b, r / v, p, f32(eps), gain ? 1 : 0, 0];
  WN_APPLY[v].run({ w, stats, gain: gain ?? stats, out }, { params: params4, threads: w.size / v });
  return record(out, gain ? [w, gain] : [w], (g) => {
    const { part, p } = rowDots(g, w, a, b, r, eps);
    const ds = Tensor.empty([b], "weightNorm.dgain");
    WN_DGAIN.run({ part, stats, ds }, { params: [a, b, r, p, f32(eps), 0, 0], threads: b });
    part.release();
    if (w.requiresGrad) {
      const dw = Tensor.empty(w.shape, "weightNorm'");
      WN_BWD[v].run({ w, g, stats, gain: gain ?? stats, ds, dw }, {
        params: params4,
        threads: w.size / v,
      });
      accumulate(w, dw);
    }
    if (gain?.requiresGrad) accumulate(gain, ds);
    else ds.release();
  });
}

/** Options of `spectralNorm`. */
export interface SpectralNormOptions {
  /** The output-unit dim (rows of the matrix): 0 (linear, conv2d) or 1 (convTranspose2d). */
  dim?: 0 | 1;
  /** Write the iterated u back into the state (default true; false for evaluation). */
  update?: boolean;
  /** Vector norms below eps are clamped to it (default 1e-12, as PyTorch). */
  eps?: number;
}

/**
 * Spectral norm: what = w / sigma, sigma the largest singular value of w as a matrix with one row
 * per output unit along `dim` (B rows) and every other dim flattened into columns, estimated by
 * one power iteration from `u` [B] (persistent state, not trained; the caller starts it random):
 * v = normalize(w^T u), u' = normalize(w v), sigma = u'^T w v. u' is written back into `u` unless
 * `update: false`, so repeated calls refine it, as PyTorch's spectral_norm does in training.
 * Backward treats u' and v as constants: dw = (dwhat - (sum dwhat w / sigma) u' v^T) / sigma.
 */
export function spectralNorm(w: Tensor, u: Tensor, opts: SpectralNormOptions = {}): Tensor {
  const [a, b, r] = view(w, opts.dim, "spectralNorm");
  if (u.shape.length !== 1 || u.shape[0] !== b) {
    throw new Error(
      `flowgpu: spectralNorm: u ${fmtShape(u.shape)} must be [${b}] for w ${
        fmtShape(w.shape)
      } (one per row along dim ${opts.dim ?? 0})`,
    );
  }
  const eps = opts.eps ?? 1e-12;
  const cols = a * r;
  // vec4s along r when R % 4 == 0 (4 columns per thread in vt = w^T u).
  const vr = r % 4 === 0 ? 4 : 1;
  const p = partials(b, cols / vr);
  const params = [a, b, r, p, f32(eps), 0, opts.update === false ? 0 : 1];
  const params4 = [a, b, r / vr, p, f32(eps), 0, 0];
  const vt = Tensor.empty([cols], "spectralNorm.vt");
  SN_WTU[vr].run({ w, u, vt }, { params: params4, threads: cols / vr });
  const part = Tensor.empty([b * p], "spectralNorm.partials");
  SN_WV[vr].run({ w, vt, part }, { params: params4, threads: b * p });
  const y = Tensor.empty([b], "spectralNorm.y");
  SN_ROWS.run({ part, y }, { params, threads: b });
  part.release();
  const stats = Tensor.empty([3], "spectralNorm.sigma");
  SN_SIGMA.run({ vt, y, stats }, { params, threads: 1 });
  // u' and v as used for this call, for the backward (u itself may change before it runs).
  const uk = Tensor.empty([b], "spectralNorm.u");
  const vk = Tensor.empty([cols], "spectralNorm.v");
  SN_UPDATE.run({ vt, y, stats, state: u, u: uk, v: vk }, {
    params,
    threads: Math.max(b, cols),
  });
  vt.release();
  y.release();
  const v4 = w.size % 4 === 0 ? 4 : 1;
  const out = Tensor.empty(w.shape, "spectralNorm");
  SN_APPLY[v4].run({ w, stats, out }, {
    params: [1, 1, w.size / v4, 1, f32(eps), 0, 0],
    threads: w.size / v4,
  });
  return record(out, [w], (g) => {
    const { part, p } = rowDots(g, w, 1, 1, w.size, eps);
    const coef = Tensor.empty([2], "spectralNorm.coef");
    SN_COEF.run({ part, stats, coef }, { params: [1, 1, w.size, p, f32(eps), 0, 0], threads: 1 });
    part.release();
    const dw = Tensor.empty(w.shape, "spectralNorm'");
    SN_BWD[vr].run({ g, u: uk, v: vk, coef, dw }, { params: params4, threads: w.size / vr });
    coef.release();
    accumulate(w, dw);
  });
}

// Divergences and reconstruction likelihoods of the VAE-family models (vae-disentangle.md §7
// rows 26-28, 30): squared error (MSE / SSE), the Gaussian NLL with a learned sigma per sample,
// KL against N(0, I) in both posterior parameterisations, KL between two diagonal Gaussians, and
// the Gaussian-mixture logits of Lr-LiVAE. Elementwise terms are one vec4 kernel, summed per
// sample by the shared reduction; each op records one backward closure.
import { f32 } from "../gpu/encoder.ts";
import { kernel } from "../gpu/kernel.ts";
import { reduceABC } from "./reduce.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, type Shape, Tensor } from "./tensor.ts";

const FILE = "divergence.wgsl";
const U = "@0 uniform pe";
const G = "@1 read eg";
const SQ_ERR = kernel(FILE, "sq_err", {
  params: U,
  a: "@1 read se_a",
  b: "@2 read se_b",
  out: "@3 read_write se_out",
});
const SQ_ERR_BWD = kernel(FILE, "sq_err_bwd", {
  params: U,
  g: G,
  a: "@2 read sb_a",
  b: "@3 read sb_b",
  out: "@4 read_write sb_out",
});
const NLL_SIGMA = kernel(FILE, "nll_sigma", {
  params: "@0 uniform pn",
  e: "@1 read nf_e",
  logSigma: "@2 read nf_ls",
  out: "@3 read_write nf_out",
});
const NLL_SIGMA_BWD = kernel(FILE, "nll_sigma_bwd", {
  params: "@0 uniform pn",
  g: G,
  e: "@2 read nb_e",
  logSigma: "@3 read nb_ls",
  dlogSigma: "@4 read_write nb_dls",
  coef: "@5 read_write nb_coef",
});
const KL_STD = kernel(FILE, "kl_std", {
  params: U,
  mu: "@1 read kf_mu",
  s: "@2 read kf_s",
  out: "@3 read_write kf_out",
});
const KL_STD_BWD = kernel(FILE, "kl_std_bwd", {
  params: U,
  g: G,
  mu: "@2 read kb_mu",
  s: "@3 read kb_s",
  dmu: "@4 read_write kb_dmu",
  ds: "@5 read_write kb_ds",
});
const KL_DIAG = kernel(FILE, "kl_diag", {
  params: U,
  mu1: "@1 read kq_mu1",
  logvar1: "@2 read kq_lv1",
  mu2: "@3 read kq_mu2",
  logvar2: "@4 read kq_lv2",
  out: "@5 read_write kq_out",
});
const KL_DIAG_DMU = kernel(FILE, "kl_diag_dmu", {
  params: U,
  g: G,
  mu1: "@2 read km_mu1",
  mu2: "@3 read km_mu2",
  logvar2: "@4 read km_lv2",
  dmu1: "@5 read_write km_dmu1",
  dmu2: "@6 read_write km_dmu2",
});
const KL_DIAG_DLV = kernel(FILE, "kl_diag_dlv", {
  params: U,
  g: G,
  mu1: "@2 read kv_mu1",
  logvar1: "@3 read kv_lv1",
  mu2: "@4 read kv_mu2",
  logvar2: "@5 read kv_lv2",
  dlogvar1: "@6 read_write kv_dlv1",
  dlogvar2: "@7 read_write kv_dlv2",
});
const GM_LOGITS = kernel(FILE, "gm_logits", {
  params: "@0 uniform pgm",
  z: "@1 read gf_z",
  mu: "@2 read gf_mu",
  logvar: "@3 read gf_v",
  out: "@4 read_write gf_out",
});
const GM_DZ = kernel(FILE, "gm_dz", {
  params: "@0 uniform pgm",
  g: G,
  z: "@2 read gz_z",
  mu: "@3 read gz_mu",
  logvar: "@4 read gz_v",
  dz: "@5 read_write gz_dz",
});
const GM_DPARAMS = kernel(FILE, "gm_dparams", {
  params: "@0 uniform pgm",
  g: G,
  z: "@2 read gp_z",
  mu: "@3 read gp_mu",
  logvar: "@4 read gp_v",
  dmu: "@5 read_write gp_dmu",
  dlogvar: "@6 read_write gp_dv",
});

const HALF_LOG_2PI = 0.5 * Math.log(2 * Math.PI);

/** How `squaredError` reduces: mean of every element (MSE), their sum (SSE), or sums per sample. */
export type ErrorReduction = "mean" | "sum" | "perSample";

/** Per-sample sums ([N]) or the elementwise terms themselves (same shape as the inputs). */
export type KlReduction = "perSample" | "none";

const same = (a: Shape, b: Shape) => a.length === b.length && a.every((d, i) => d === b[i]);

function sameShapes(op: string, ts: [string, Tensor][]): void {
  const [name0, t0] = ts[0];
  for (const [name, t] of ts.slice(1)) {
    if (!same(t.shape, t0.shape)) {
      throw new Error(
        `flowgpu: ${op}: ${name} ${fmtShape(t.shape)} does not match ${name0} ${
          fmtShape(t0.shape)
        }`,
      );
    }
  }
}

function batchOf(op: string, name: string, t: Tensor): number {
  if (t.shape.length < 1 || t.shape[0] === 0 || t.size === 0) {
    throw new Error(
      `flowgpu: ${op}: ${name} must be [N, ...] with N > 0, got ${fmtShape(t.shape)}`,
    );
  }
  return t.shape[0];
}

/** Hand `d` to `t` if it wants a gradient, else return the buffer to the pool. */
function give(t: Tensor, d: Tensor): void {
  if (t.requiresGrad) accumulate(t, d);
  else d.release();
}

/**
 * Elementwise params [n, d, samples, gfull, scale, sign]: n elements in `samples` groups of d;
 * the upstream gradient has one value per group (gfull 0) or per element (gfull 1).
 */
function elParams(n: number, samples: number, gfull: boolean, scale = 1, sign = 1) {
  return [n, n / samples, samples, gfull ? 1 : 0, f32(scale), f32(sign)];
}

/**
 * Squared error (a - b)^2 of two tensors of one shape, reduced: "mean" over every element (the
 * MSE, [1], the default), "sum" (the SSE, [1]) or "perSample" (the SSE of each sample, [N]).
 * Gradients reach both a and b (detach a target that should get none).
 */
export function squaredError(a: Tensor, b: Tensor, reduction: ErrorReduction = "mean"): Tensor {
  const op = "squaredError";
  sameShapes(op, [["a", a], ["b", b]]);
  const n = batchOf(op, "a", a);
  const size = a.size;
  const threads = Math.ceil(size / 4);
  const terms = Tensor.empty(a.shape, `${op} terms`);
  SQ_ERR.run({ a, b, out: terms }, { params: elParams(size, 1, false), threads });
  const per = reduction === "perSample";
  const scale = reduction === "mean" ? 1 / size : 1;
  const out = per
    ? reduceABC(terms, 1, n, size / n, 1, [n], op)
    : reduceABC(terms, 1, 1, size, scale, [1], op);
  terms.release();
  return record(out, [a, b], (g) => {
    for (const [t, sign] of [[a, 1], [b, -1]] as const) {
      if (!t.requiresGrad) continue;
      const d = Tensor.empty(a.shape, `${op}'`);
      SQ_ERR_BWD.run({ g, a, b, out: d }, {
        params: elParams(size, per ? n : 1, false, 2 * scale, sign),
        threads,
      });
      accumulate(t, d);
    }
  });
}

/** Mean squared error of a and b over every element: a [1] tensor. */
export const mse = (a: Tensor, b: Tensor): Tensor => squaredError(a, b, "mean");
/** Sum of squared errors of a and b over every element: a [1] tensor. */
export const sse = (a: Tensor, b: Tensor): Tensor => squaredError(a, b, "sum");

/** Options of `gaussianNll`. */
export interface GaussianNllOptions {
  /**
   * How a sample's squared error e is taken over its D elements. "mean" (default):
   * e = mean (x - xbar)^2 and the NLL is per element, e / (2 sigma^2) + log sigma
   * (DisUnknown's L_rec). "sum": e = sum (x - xbar)^2 and log sigma counts D times, the full
   * NLL of the sample under N(xbar, sigma^2 I): D times the "mean" value.
   */
  elements?: "mean" | "sum";
  /** Add the constant (1/2) log 2 pi per element counted (default true). */
  constant?: boolean;
}

/**
 * Gaussian negative log-likelihood of x under N(xbar, sigma_b^2 I) with one learned sigma per
 * sample, parameterised by logSigma ([N] or [N, 1]):
 * e_b / (2 sigma_b^2) + k log sigma_b (+ k/2 log 2 pi), with e_b and k as `opts.elements` says.
 * Returns [N]; gradients reach xbar, logSigma and x.
 */
export function gaussianNll(
  x: Tensor,
  xbar: Tensor,
  logSigma: Tensor,
  opts: GaussianNllOptions = {},
): Tensor {
  const op = "gaussianNll";
  sameShapes(op, [["x", x], ["xbar", xbar]]);
  const n = batchOf(op, "x", x);
  if (logSigma.size !== n || logSigma.shape[0] !== n) {
    throw new Error(
      `flowgpu: ${op}: logSigma ${fmtShape(logSigma.shape)} must hold one value per sample ` +
        `([${n}] or [${n}, 1]) of x ${fmtShape(x.shape)}`,
    );
  }
  const size = x.size;
  const d = size / n;
  const mean = (opts.elements ?? "mean") === "mean";
  const k = mean ? 1 : d;
  const pix = mean ? 1 / d : 1;
  const threads = Math.ceil(size / 4);
  const terms = Tensor.empty(x.shape, `${op} terms`);
  SQ_ERR.run({ a: xbar, b: x, out: terms }, { params: elParams(size, 1, false), threads });
  const e = reduceABC(terms, 1, n, d, pix, [n], `${op} error`);
  terms.release();
  const out = Tensor.empty([n], op);
  const params = [n, f32(k), f32((opts.constant ?? true) ? k * HALF_LOG_2PI : 0)];
  NLL_SIGMA.run({ e, logSigma, out }, { params, threads: n });
  return record(out, [x, xbar, logSigma], (g) => {
    const dlogSigma = Tensor.empty(logSigma.shape, `${op}' logSigma`);
    const coef = Tensor.empty([n], `${op}' coef`);
    NLL_SIGMA_BWD.run({ g, e, logSigma, dlogSigma, coef }, { params, threads: n });
    give(logSigma, dlogSigma);
    // d/dxbar of e exp(-2 ls) / 2 is pix exp(-2 ls) (xbar - x): sq_err_bwd with g = coef.
    for (const [t, sign] of [[xbar, 1], [x, -1]] as const) {
      if (!t.requiresGrad) continue;
      const dt = Tensor.empty(x.shape, `${op}'`);
      SQ_ERR_BWD.run({ g: coef, a: xbar, b: x, out: dt }, {
        params: elParams(size, n, false, pix, sign),
        threads,
      });
      accumulate(t, dt);
    }
    coef.release();
  });
}

function klOut(op: string, terms: Tensor, n: number, reduction: KlReduction): Tensor {
  if (reduction === "none") return terms;
  const out = reduceABC(terms, 1, n, terms.size / n, 1, [n], op);
  terms.release();
  return out;
}

function klStd(
  op: string,
  mu: Tensor,
  s: Tensor,
  sName: string,
  sigma: boolean,
  reduction: KlReduction,
): Tensor {
  sameShapes(op, [["mu", mu], [sName, s]]);
  const n = batchOf(op, "mu", mu);
  const size = mu.size;
  const threads = Math.ceil(size / 4);
  const constants = { SIGMA: sigma ? 1 : 0 };
  const terms = Tensor.empty(mu.shape, op);
  KL_STD.run({ mu, s, out: terms }, { constants, params: elParams(size, 1, false), threads });
  const out = klOut(op, terms, n, reduction);
  return record(out, [mu, s], (g) => {
    const dmu = Tensor.empty(mu.shape, `${op}' mu`);
    const ds = Tensor.empty(mu.shape, `${op}' ${sName}`);
    KL_STD_BWD.run({ g, mu, s, dmu, ds }, {
      constants,
      params: elParams(size, n, reduction === "none"),
      threads,
    });
    give(mu, dmu);
    give(s, ds);
  });
}

/**
 * KL(N(mu, e^logvar) || N(0, I)) of a diagonal Gaussian posterior in the (mu, logvar)
 * parameterisation: (mu^2 + e^logvar - 1 - logvar) / 2 per element, summed per sample ([N],
 * default) or left elementwise ("none", e.g. to weight dimensions before summing).
 */
export function klStdNormal(
  mu: Tensor,
  logvar: Tensor,
  reduction: KlReduction = "perSample",
): Tensor {
  return klStd("klStdNormal", mu, logvar, "logvar", false, reduction);
}

/**
 * KL(N(mu, sigma^2) || N(0, I)) in the (mu, sigma) parameterisation (sigma > 0, e.g. a softplus
 * head): (mu^2 + sigma^2 - 1) / 2 - log sigma per element, reduced as `klStdNormal`.
 */
export function klStdNormalSigma(
  mu: Tensor,
  sigma: Tensor,
  reduction: KlReduction = "perSample",
): Tensor {
  return klStd("klStdNormalSigma", mu, sigma, "sigma", true, reduction);
}

/**
 * KL(N(mu1, e^logvar1) || N(mu2, e^logvar2)) between two diagonal Gaussians of one shape:
 * (logvar2 - logvar1 + (e^logvar1 + (mu1 - mu2)^2) e^-logvar2 - 1) / 2 per element, reduced as
 * `klStdNormal`. Gradients reach all four inputs.
 */
export function klDiagGaussians(
  mu1: Tensor,
  logvar1: Tensor,
  mu2: Tensor,
  logvar2: Tensor,
  reduction: KlReduction = "perSample",
): Tensor {
  const op = "klDiagGaussians";
  sameShapes(op, [["mu1", mu1], ["logvar1", logvar1], ["mu2", mu2], ["logvar2", logvar2]]);
  const n = batchOf(op, "mu1", mu1);
  const size = mu1.size;
  const threads = Math.ceil(size / 4);
  const terms = Tensor.empty(mu1.shape, op);
  KL_DIAG.run({ mu1, logvar1, mu2, logvar2, out: terms }, {
    params: elParams(size, 1, false),
    threads,
  });
  const out = klOut(op, terms, n, reduction);
  return record(out, [mu1, logvar1, mu2, logvar2], (g) => {
    const params = elParams(size, n, reduction === "none");
    const grad = (what: string) => Tensor.empty(mu1.shape, `${op}' ${what}`);
    if (mu1.requiresGrad || mu2.requiresGrad) {
      const dmu1 = grad("mu1"), dmu2 = grad("mu2");
      KL_DIAG_DMU.run({ g, mu1, mu2, logvar2, dmu1, dmu2 }, { params, threads });
      give(mu1, dmu1);
      give(mu2, dmu2);
    }
    if (logvar1.requiresGrad || logvar2.requiresGrad) {
      const dlogvar1 = grad("logvar1"), dlogvar2 = grad("logvar2");
      KL_DIAG_DLV.run({ g, mu1, logvar1, mu2, logvar2, dlogvar1, dlogvar2 }, { params, threads });
      give(logvar1, dlogvar1);
      give(logvar2, dlogvar2);
    }
  });
}

/**
 * Gaussian-mixture logits of Lr-LiVAE's GM loss, for codes z [B, D] and class means mu [C, D]
 * and log-variances logvar [C, D]:
 * logits[b, c] = -1/2 sum_d ((z_bd - mu_cd)^2 e^-logvar_cd + logvar_cd), a [B, C] tensor.
 * Constant choice: that is log N(z_b; mu_c, diag e^logvar_c) + (D/2) log 2 pi, and the uniform
 * prior's log p(c) = -log C is left out too. Both are the same for every class, so softmax and
 * cross-entropy (L_cls) are unchanged, and the likelihood regulariser is exactly
 * L_lkd[b] = -logits[b, y_b]. Forward and backward are fused kernels (one thread per output,
 * looping over the reduced axis), so no [B, C, D] tensor is ever stored.
 */
export function gmLogits(z: Tensor, mu: Tensor, logvar: Tensor): Tensor {
  const op = "gmLogits";
  if (z.shape.length !== 2 || mu.shape.length !== 2 || z.size === 0 || mu.size === 0) {
    throw new Error(
      `flowgpu: ${op}: needs z [B, D] and mu [C, D] (non-empty), got z ${fmtShape(z.shape)} ` +
        `and mu ${fmtShape(mu.shape)}`,
    );
  }
  const [b, d] = z.shape;
  const c = mu.shape[0];
  if (mu.shape[1] !== d) {
    throw new Error(
      `flowgpu: ${op}: mu ${fmtShape(mu.shape)} needs the code size D = ${d} of z ` +
        `${fmtShape(z.shape)}`,
    );
  }
  sameShapes(op, [["mu", mu], ["logvar", logvar]]);
  const params = [b, c, d];
  const out = Tensor.empty([b, c], op);
  GM_LOGITS.run({ z, mu, logvar, out }, { params, threads: b * c });
  return record(out, [z, mu, logvar], (g) => {
    if (z.requiresGrad) {
      const dz = Tensor.empty(z.shape, `${op}' z`);
      GM_DZ.run({ g, z, mu, logvar, dz }, { params, threads: b * d });
      accumulate(z, dz);
    }
    if (mu.requiresGrad || logvar.requiresGrad) {
      const dmu = Tensor.empty(mu.shape, `${op}' mu`);
      const dlogvar = Tensor.empty(mu.shape, `${op}' logvar`);
      GM_DPARAMS.run({ g, z, mu, logvar, dmu, dlogvar }, { params, threads: c * d });
      give(mu, dmu);
      give(logvar, dlogvar);
    }
  });
}

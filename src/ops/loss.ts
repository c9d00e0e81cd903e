// Densities and losses: the Gaussian log-density of flow latents (a Glow prior), log-softmax,
// negative log-likelihood and cross-entropy for classifiers.
import { upload } from "../gpu/encoder.ts";
import { kernel } from "../gpu/kernel.ts";
import { reduceABC } from "./reduce.ts";
import { accumulate, fill, record } from "./tape.ts";
import { fmtShape, Tensor } from "./tensor.ts";

const FILE = "loss.wgsl";
const LOGP_STD = kernel(FILE, "logp_std", {
  params: "@0 uniform pg",
  z: "@1 read gs_z",
  terms: "@2 read_write gs_terms",
});
const LOGP_STD_BWD = kernel(FILE, "logp_std_bwd", {
  params: "@0 uniform pg",
  z: "@1 read bs_z",
  g: "@2 read bs_g",
  dz: "@3 read_write bs_dz",
});
const LOGP = kernel(FILE, "logp", {
  params: "@0 uniform pg",
  z: "@1 read gf_z",
  mean: "@2 read gf_mu",
  logStd: "@3 read gf_ls",
  terms: "@4 read_write gf_terms",
});
const LOGP_BWD = kernel(FILE, "logp_bwd", {
  params: "@0 uniform pg",
  z: "@1 read bf_z",
  mean: "@2 read bf_mu",
  logStd: "@3 read bf_ls",
  g: "@4 read bf_g",
  dz: "@5 read_write bf_dz",
  dmean: "@6 read_write bf_dmu",
  dlogStd: "@7 read_write bf_dls",
});
const LOG_SOFTMAX = kernel(FILE, "log_softmax", {
  params: "@0 uniform pr",
  x: "@1 read ls_x",
  y: "@2 read_write ls_y",
});
const LOG_SOFTMAX_BWD = kernel(FILE, "log_softmax_bwd", {
  params: "@0 uniform pr",
  y: "@1 read lsb_y",
  g: "@2 read lsb_g",
  dx: "@3 read_write lsb_dx",
});
const NLL_PICK = kernel(FILE, "nll_pick", {
  params: "@0 uniform pr",
  logp: "@1 read np_logp",
  labels: "@2 read np_labels",
  picked: "@3 read_write np_picked",
});
const NLL_BWD = kernel(FILE, "nll_bwd", {
  params: "@0 uniform pr",
  labels: "@1 read nb_labels",
  g: "@2 read nb_g",
  dlogp: "@3 read_write nb_dlogp",
});

function sameShape(a: Tensor, b: Tensor): boolean {
  return a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
}

/**
 * Per-sample log N(z; mean, exp(logStd)^2), summed over all but dim 0: [N, ...] -> [N]. Without
 * mean and logStd the density is the standard normal; given, they are full tensors of z's shape
 * (a missing one of the two counts as zeros).
 */
export function gaussianLogProb(z: Tensor, mean?: Tensor, logStd?: Tensor): Tensor {
  if (z.shape.length < 1 || z.shape[0] === 0) {
    throw new Error(
      `flowgpu: gaussianLogProb: needs z [N, ...] with N > 0, got ${fmtShape(z.shape)}`,
    );
  }
  for (const [what, t] of [["mean", mean], ["logStd", logStd]] as const) {
    if (t && !sameShape(t, z)) {
      throw new Error(
        `flowgpu: gaussianLogProb: ${what} ${fmtShape(t.shape)} does not match z ${
          fmtShape(z.shape)
        }`,
      );
    }
  }
  const n = z.shape[0];
  const d = z.size / n;
  const params = [z.size, d, n];
  const threads = Math.ceil(z.size / 4);
  const terms = Tensor.empty(z.shape, "gaussianLogProb terms");
  if (!mean && !logStd) {
    LOGP_STD.run({ z, terms }, { params, threads });
    const out = reduceABC(terms, 1, n, d, 1, [n], "gaussianLogProb");
    terms.release();
    return record(out, [z], (g) => {
      const dz = Tensor.empty(z.shape, "gaussianLogProb'");
      LOGP_STD_BWD.run({ z, g, dz }, { params, threads });
      accumulate(z, dz);
    });
  }
  const mu = mean ?? fill(Tensor.empty(z.shape, "zeros"), 0);
  const ls = logStd ?? fill(Tensor.empty(z.shape, "zeros"), 0);
  LOGP.run({ z, mean: mu, logStd: ls, terms }, { params, threads });
  const out = reduceABC(terms, 1, n, d, 1, [n], "gaussianLogProb");
  terms.release();
  return record(out, [z, ...(mean ? [mean] : []), ...(logStd ? [logStd] : [])], (g) => {
    // One pass writes all three gradients; the ones no input wants are simply released.
    const grads = ["z", "mean", "logStd"].map((w) =>
      Tensor.empty(z.shape, `gaussianLogProb' ${w}`)
    );
    const [dz, dmean, dlogStd] = grads;
    LOGP_BWD.run({ z, mean: mu, logStd: ls, g, dz, dmean, dlogStd }, { params, threads });
    [z, mean, logStd].forEach((t, i) => {
      if (t?.requiresGrad) accumulate(t, grads[i]);
      else grads[i].release();
    });
  });
}

function needRows(op: string, x: Tensor): [number, number] {
  if (x.shape.length !== 2) {
    throw new Error(`flowgpu: ${op}: needs a tensor [N, K], got ${fmtShape(x.shape)}`);
  }
  return [x.shape[0], x.shape[1]];
}

/** log softmax(x) over the last dim of x [N, K]. */
export function logSoftmax(x: Tensor): Tensor {
  const [rows, k] = needRows("logSoftmax", x);
  const y = Tensor.empty(x.shape, "logSoftmax");
  const params = [rows, k];
  LOG_SOFTMAX.run({ x, y }, { params, threads: rows });
  return record(y, [x], (g) => {
    const dx = Tensor.empty(x.shape, "logSoftmax'");
    LOG_SOFTMAX_BWD.run({ y, g, dx }, { params, threads: rows });
    accumulate(x, dx);
  });
}

/** Mean over the batch of -logp[n, labels[n]], for logp [N, K]: a [1] tensor. */
export function nll(logp: Tensor, labels: Uint32Array | number[]): Tensor {
  const [rows, k] = needRows("nll", logp);
  if (labels.length !== rows) {
    throw new Error(
      `flowgpu: nll: ${labels.length} labels for logp ${fmtShape(logp.shape)} (need ${rows})`,
    );
  }
  for (let i = 0; i < rows; i++) {
    const l = labels[i];
    if (!Number.isInteger(l) || l < 0 || l >= k) {
      throw new Error(
        `flowgpu: nll: label ${l} at index ${i} is not an integer class in [0, ${k}) ` +
          `for logp ${fmtShape(logp.shape)}`,
      );
    }
  }
  // A tape-owned tensor as raw u32 storage: it lives exactly as long as the backward needs it.
  const ids = Tensor.empty([rows], "labels");
  upload(ids.buffer, labels instanceof Uint32Array ? labels : Uint32Array.from(labels));
  const picked = Tensor.empty([rows], "nll picked");
  const params = [rows, k];
  NLL_PICK.run({ logp, labels: ids, picked }, { params, threads: rows });
  const out = reduceABC(picked, 1, 1, rows, -1 / rows, [1], "nll");
  picked.release();
  return record(out, [logp], (g) => {
    const dlogp = Tensor.empty(logp.shape, "nll'");
    NLL_BWD.run({ labels: ids, g, dlogp }, { params, threads: rows * k });
    accumulate(logp, dlogp);
  });
}

/** nll(logSoftmax(x), labels): the mean cross-entropy of logits x [N, K]. */
export function crossEntropy(x: Tensor, labels: Uint32Array | number[]): Tensor {
  return nll(logSoftmax(x), labels);
}

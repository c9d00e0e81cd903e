// Classification over the last axis of logits: logsumexp, softmax, NLL and the negative
// log-unlikelihood (NLU) of DisUnknown with labels, optional per-sample and per-class weights,
// on a softmax over all logits or only the real classes of an (m+1)-way classifier; and
// cross-entropy with a soft (or uniform) target. loss.ts keeps logSoftmax / nll / crossEntropy;
// the losses here are fused (one row kernel, the batch mean, one gradient kernel) and never
// form log(1 - p) by subtraction.
import { kernel } from "../gpu/kernel.ts";
import { f32 } from "../gpu/encoder.ts";
import { reduceABC } from "./reduce.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, type Shape, Tensor } from "./tensor.ts";

const FILE = "classify.wgsl";
const U = "@0 uniform cl";
const LSE = kernel(FILE, "lse", {
  params: U,
  x: "@1 read r_x",
  out: "@2 read_write r_out",
  aux: "@3 read_write r_aux",
});
const SOFTMAX = kernel(FILE, "softmax", {
  params: U,
  x: "@1 read r_x",
  out: "@2 read_write r_out",
});
const LSE_BWD = kernel(FILE, "lse_bwd", {
  params: U,
  x: "@1 read lb_x",
  aux: "@2 read lb_aux",
  g: "@3 read lb_g",
  dx: "@4 read_write lb_dx",
});
const SOFTMAX_BWD = kernel(FILE, "softmax_bwd", {
  params: U,
  y: "@1 read sb_y",
  g: "@2 read sb_g",
  dx: "@3 read_write sb_dx",
});
const LABEL_LOSS = kernel(FILE, "label_loss", {
  params: U,
  x: "@1 read ll_x",
  labels: "@2 read ll_labels",
  sampleWeights: "@3 read ll_sw",
  classWeights: "@4 read ll_cw",
  loss: "@5 read_write ll_loss",
  stats: "@6 read_write ll_stats",
});
const LABEL_LOSS_BWD = kernel(FILE, "label_loss_bwd", {
  params: U,
  x: "@1 read lg_x",
  labels: "@2 read lg_labels",
  stats: "@3 read lg_stats",
  g: "@4 read lg_g",
  dx: "@5 read_write lg_dx",
});
const SOFT_CE = kernel(FILE, "soft_ce", {
  params: U,
  x: "@1 read sc_x",
  target: "@2 read sc_t",
  sampleWeights: "@3 read sc_sw",
  loss: "@4 read_write sc_loss",
  stats: "@5 read_write sc_stats",
});
const SOFT_CE_BWD = kernel(FILE, "soft_ce_bwd", {
  params: U,
  x: "@1 read sg_x",
  target: "@2 read sg_t",
  stats: "@3 read sg_stats",
  g: "@4 read sg_g",
  dx: "@5 read_write sg_dx",
  dtarget: "@6 read_write sg_dt",
});

/** Class labels: an array of integers (checked here), or a tensor of class indices as f32. */
export type Labels = ArrayLike<number> | Tensor;

/** Uniform words: rows, k, real classes, softmax span, weight flags, 1 / rows. */
function clParams(
  rows: number,
  k: number,
  real = k,
  span = k,
  flags = 0,
): (number | { f: number })[] {
  return [rows, k, real, span, flags, f32(1 / rows)];
}

/** Rows and row length of x viewed as [rows, K] over its last axis. */
function lastAxis(op: string, x: Tensor): [number, number] {
  const k = x.shape[x.shape.length - 1];
  if (x.shape.length < 1 || !(k > 0) || x.size === 0) {
    throw new Error(`flowgpu: ${op}: needs a non-empty tensor [..., K], got ${fmtShape(x.shape)}`);
  }
  return [x.size / k, k];
}

/** log sum_j exp(x_j) over the last axis, computed from the row max: [..., K] -> [...] ([1] for [K]). */
export function logsumexp(x: Tensor): Tensor {
  const [rows, k] = lastAxis("logsumexp", x);
  const shape: Shape = x.shape.length > 1 ? x.shape.slice(0, -1) : [1];
  const out = Tensor.empty(shape, "logsumexp");
  // Each row's max and log-sum, for the backward's exp((x - max) - logsum).
  const aux = Tensor.empty([2 * rows], "logsumexp rows");
  const params = clParams(rows, k);
  LSE.run({ x, out, aux }, { params, threads: rows });
  return record(out, [x], (g) => {
    const dx = Tensor.empty(x.shape, "logsumexp'");
    LSE_BWD.run({ x, aux, g, dx }, { params, threads: x.size });
    accumulate(x, dx);
  });
}

/** softmax over the last axis, [..., K] -> [..., K]. */
export function softmax(x: Tensor): Tensor {
  const [rows, k] = lastAxis("softmax", x);
  const y = Tensor.empty(x.shape, "softmax");
  const params = clParams(rows, k);
  SOFTMAX.run({ x, out: y }, { params, threads: rows });
  return record(y, [x], (g) => {
    const dx = Tensor.empty(x.shape, "softmax'");
    SOFTMAX_BWD.run({ y, g, dx }, { params, threads: rows });
    accumulate(x, dx);
  });
}

/** Options of `nllLoss` and `nluLoss`. */
export interface LabelLossOptions {
  /** Per-sample weights [N] (no gradient); the loss is mean_b w_b loss_b. Default 1. */
  weights?: Tensor | ArrayLike<number>;
  /**
   * Per-class weights [classes] (no gradient): sample b weighs classWeights[label_b], e.g.
   * `nluClassWeights(q)` for DisUnknown's NLU_q. Multiplies `weights`.
   */
  classWeights?: Tensor | ArrayLike<number>;
  /**
   * The real classes m <= K: labels must be < m. The logits past them (the "fake" logit of an
   * (m+1)-way classifier) still take part in the softmax unless `ignoreExtra`. Default K.
   */
  classes?: number;
  /**
   * Leave the logits past `classes` out of the softmax (they get zero gradient): an m-way
   * softmax over the real logits only (DisUnknown's Stage C ignores the fake logit).
   */
  ignoreExtra?: boolean;
}

/** A tape-owned tensor of CPU values (released when the tape is cleared). */
function upload(data: ArrayLike<number>, name: string): Tensor {
  const t = Tensor.from(data instanceof Float32Array ? data : Float32Array.from(data), [
    data.length,
  ]);
  t.name = name;
  return t;
}

function weightTensor(
  op: string,
  what: string,
  w: Tensor | ArrayLike<number>,
  n: number,
  per: string,
): Tensor {
  const size = w instanceof Tensor ? w.size : w.length;
  if (size !== n) {
    const shape = w instanceof Tensor ? fmtShape(w.shape) : `${w.length} values`;
    throw new Error(`flowgpu: ${op}: ${what} ${shape} do not give one weight per ${per} (${n})`);
  }
  if (w instanceof Tensor) return w;
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(w[i])) {
      throw new Error(`flowgpu: ${op}: ${what}[${i}] = ${w[i]} is not a finite number`);
    }
  }
  return upload(w, what);
}

function labelTensor(op: string, labels: Labels, x: Tensor, rows: number, real: number): Tensor {
  const where = `for logits ${fmtShape(x.shape)}`;
  if (labels instanceof Tensor) {
    if (labels.size !== rows) {
      throw new Error(
        `flowgpu: ${op}: labels ${fmtShape(labels.shape)} ${where} (need ${rows} labels)`,
      );
    }
    return labels;
  }
  if (labels.length !== rows) {
    throw new Error(`flowgpu: ${op}: ${labels.length} labels ${where} (need ${rows})`);
  }
  for (let i = 0; i < rows; i++) {
    const l = labels[i];
    if (!Number.isInteger(l) || l < 0 || l >= real) {
      throw new Error(
        `flowgpu: ${op}: label ${l} at index ${i} is not an integer class in [0, ${real}) ${where}`,
      );
    }
  }
  return upload(labels, "labels");
}

function labelLoss(
  op: "nllLoss" | "nluLoss",
  x: Tensor,
  labels: Labels,
  o: LabelLossOptions,
): Tensor {
  if (x.shape.length !== 2 || x.size === 0) {
    throw new Error(`flowgpu: ${op}: needs logits [N, K], got ${fmtShape(x.shape)}`);
  }
  const [rows, k] = x.shape;
  const real = o.classes ?? k;
  if (!Number.isInteger(real) || real < 1 || real > k) {
    throw new Error(
      `flowgpu: ${op}: classes ${real} is not an integer in [1, ${k}] for logits ${
        fmtShape(x.shape)
      }`,
    );
  }
  const span = o.ignoreExtra ? real : k;
  if (op === "nluLoss" && span < 2) {
    throw new Error(
      `flowgpu: nluLoss: the softmax has ${span} class (logits ${
        fmtShape(x.shape)
      }); log(1 - p) needs at least 2`,
    );
  }
  const ids = labelTensor(op, labels, x, rows, real);
  const sw = o.weights !== undefined
    ? weightTensor(op, "weights", o.weights, rows, "sample")
    : undefined;
  const cw = o.classWeights !== undefined
    ? weightTensor(op, "classWeights", o.classWeights, real, "class")
    : undefined;
  const flags = (sw ? 1 : 0) | (cw ? 2 : 0);
  const params = clParams(rows, k, real, span, flags);
  const OP = op === "nllLoss" ? 0 : 1;
  const loss = Tensor.empty([rows], `${op} rows`);
  const stats = Tensor.empty([5 * rows], `${op} stats`);
  LABEL_LOSS.run(
    { x, labels: ids, sampleWeights: sw ?? x, classWeights: cw ?? x, loss, stats },
    { constants: { OP }, params, threads: rows },
  );
  const out = reduceABC(loss, 1, 1, rows, 1 / rows, [1], op);
  loss.release();
  return record(out, [x], (g) => {
    const dx = Tensor.empty(x.shape, `${op}'`);
    LABEL_LOSS_BWD.run({ x, labels: ids, stats, g, dx }, {
      constants: { OP },
      params,
      threads: x.size,
    });
    accumulate(x, dx);
  });
}

/**
 * Negative log-likelihood of the labels under softmax(x), for logits x [N, K]:
 * mean_b w_b (-log p_b[label_b]), a [1] tensor. Labels out of range throw (arrays) or give NaN
 * (tensors, which are not read back). The gradient is w (p - onehot) / N.
 */
export function nllLoss(x: Tensor, labels: Labels, opts: LabelLossOptions = {}): Tensor {
  return labelLoss("nllLoss", x, labels, opts);
}

/**
 * Negative log-unlikelihood (DisUnknown, spec 1.5): mean_b w_b (-log(1 - p_b[label_b])) for
 * logits x [N, K], a [1] tensor, in the stable form log(1 - p_k) = LSE_{j != k}(x) - LSE(x), so
 * it stays finite and exact as p_k -> 1. The gradient is w p_k / N at the label and
 * -w p_k q_i / N elsewhere, q the softmax over the other classes. With `classWeights:
 * nluClassWeights(q)` it is the weighted NLU_q of Stage I.
 */
export function nluLoss(x: Tensor, labels: Labels, opts: LabelLossOptions = {}): Tensor {
  return labelLoss("nluLoss", x, labels, opts);
}

/**
 * DisUnknown's NLU_q class weights (1 - q_k) / q_k for class frequencies q (each in (0, 1]):
 * they make sum_k q_k grad NLU_q(q, k) vanish at p = q.
 */
export function nluClassWeights(q: ArrayLike<number>): Float32Array {
  return Float32Array.from({ length: q.length }, (_, k) => {
    if (!(q[k] > 0 && q[k] <= 1)) {
      throw new Error(`flowgpu: nluClassWeights: frequency q[${k}] = ${q[k]} is not in (0, 1]`);
    }
    return (1 - q[k]) / q[k];
  });
}

/**
 * Cross-entropy of logits x [N, K] against a soft target, mean_b w_b sum_j t_bj (-log p_bj), a
 * [1] tensor. `target` is a tensor [N, K] (rows need not sum to 1; it gets a gradient,
 * -w log p / N, when it requires one) or "uniform" (t = 1/K: the gradient is (p - 1/K) / N).
 */
export function softCrossEntropy(
  x: Tensor,
  target: Tensor | "uniform",
  opts: { weights?: Tensor | ArrayLike<number> } = {},
): Tensor {
  const op = "softCrossEntropy";
  if (x.shape.length !== 2 || x.size === 0) {
    throw new Error(`flowgpu: ${op}: needs logits [N, K], got ${fmtShape(x.shape)}`);
  }
  const [rows, k] = x.shape;
  const uniform = target === "uniform";
  if (!uniform && (target.shape.length !== 2 || target.size !== x.size || target.shape[1] !== k)) {
    throw new Error(
      `flowgpu: ${op}: target ${fmtShape(target.shape)} does not match logits ${fmtShape(x.shape)}`,
    );
  }
  const sw = opts.weights !== undefined
    ? weightTensor(op, "weights", opts.weights, rows, "sample")
    : undefined;
  const params = clParams(rows, k, k, k, sw ? 1 : 0);
  const OP = uniform ? 1 : 0;
  const t = uniform ? x : target;
  const loss = Tensor.empty([rows], `${op} rows`);
  const stats = Tensor.empty([4 * rows], `${op} stats`);
  SOFT_CE.run({ x, target: t, sampleWeights: sw ?? x, loss, stats }, {
    constants: { OP },
    params,
    threads: rows,
  });
  const out = reduceABC(loss, 1, 1, rows, 1 / rows, [1], op);
  loss.release();
  return record(out, uniform ? [x] : [x, target], (g) => {
    const dx = Tensor.empty(x.shape, `${op}'`);
    // The uniform target has no gradient; a one-element stand-in takes the unused binding.
    const dtarget = Tensor.empty(uniform ? [1] : x.shape, `${op}' target`);
    SOFT_CE_BWD.run({ x, target: t, stats, g, dx, dtarget }, {
      constants: { OP },
      params,
      threads: x.size,
    });
    accumulate(x, dx);
    if (!uniform && target.requiresGrad) accumulate(target, dtarget);
    else dtarget.release();
  });
}

// Classification: logsumexp and softmax over the last axis, NLL and NLU with labels (weights,
// class weights, the real classes of an (m+1)-way softmax, with or without the extra logit),
// soft and uniform cross-entropy. Forwards against f64 references, gradchecks, NLU as p_k -> 1,
// the NLU_q stationarity at p = q, label tensors, and bad inputs. Shapes avoid multiples of 4.
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randn, randu } from "./gradcheck.ts";
import {
  logsumexp,
  nllLoss,
  nluClassWeights,
  nluLoss,
  softCrossEntropy,
  softmax,
} from "../src/ops/classify.ts";
import { crossEntropy } from "../src/ops/loss.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";

/** log sum exp of row[0, span) in f64. */
function lse64(row: ArrayLike<number>, span = row.length, skip = -1): number {
  let m = -Infinity;
  for (let j = 0; j < span; j++) if (j !== skip) m = Math.max(m, row[j]);
  let s = 0;
  for (let j = 0; j < span; j++) if (j !== skip) s += Math.exp(row[j] - m);
  return m + Math.log(s);
}

const rowsOf = (x: ArrayLike<number>, k: number) =>
  Array.from({ length: x.length / k }, (_, r) => Array.from(x).slice(r * k, (r + 1) * k));

interface RefOpts {
  weights?: number[];
  classWeights?: number[];
  classes?: number;
  ignoreExtra?: boolean;
}

/** mean_b w_b loss_b of NLL (-log p_k) or NLU (-log(1 - p_k), as LSE - LSE_{!=k}) in f64. */
function labelLossRef(
  kind: "nll" | "nlu",
  x: ArrayLike<number>,
  k: number,
  labels: number[],
  o: RefOpts = {},
): number {
  const span = o.ignoreExtra ? o.classes ?? k : k;
  const rows = rowsOf(x, k);
  let total = 0;
  rows.forEach((row, b) => {
    const y = labels[b];
    const w = (o.weights?.[b] ?? 1) * (o.classWeights?.[y] ?? 1);
    const l = lse64(row, span);
    total += w * (kind === "nll" ? l - row[y] : l - lse64(row, span, y));
  });
  return total / rows.length;
}

for (const shape of [[3, 7], [2, 3, 5], [5]]) {
  const size = shape.reduce((a, b) => a * b, 1);
  const k = shape[shape.length - 1];
  // Rows offset by up to +-60: a naive exp would overflow f32 at 89.
  const x = randn(size, 1, 2).map((v, i) => v + 60 * Math.sin(Math.floor(i / k)));
  Deno.test(`logsumexp [${shape}]: forward matches f64 (large offsets), and gradcheck`, async () => {
    const y = logsumexp(Tensor.from(x, shape));
    assert.deepEqual(y.shape, shape.length > 1 ? shape.slice(0, -1) : [1]);
    assertClose(await y.read(), rowsOf(x, k).map((r) => lse64(r)), { rtol: 1e-6, atol: 1e-6 });
    clearTape();
    await gradcheck(logsumexp, [{ data: x, shape }], { label: `logsumexp [${shape}]` });
  });
  Deno.test(`softmax [${shape}]: forward matches f64 (rows sum to 1), and gradcheck`, async () => {
    const y = await softmax(Tensor.from(x, shape)).read();
    const want = rowsOf(x, k).flatMap((r) => {
      const l = lse64(r);
      return r.map((v) => Math.exp(v - l));
    });
    assertClose(y, want, { rtol: 2e-6, atol: 1e-7 });
    clearTape();
    await gradcheck(softmax, [{ data: x, shape }], { label: `softmax [${shape}]` });
  });
}

const N = 5, K = 7;
const X = randn(N * K, 2, 1.5);
const LABELS = [3, 0, 6, 2, 5];
const W = [0.5, 1, 2, 0.25, 1.5];
const CW = [1, 2, 0.5, 3, 1, 0.2, 0.7];
// An (m+1)-way classifier: 6 real classes and a last "fake" logit.
const REAL = 6;
const REAL_LABELS = [3, 0, 5, 2, 1];

const VARIANTS: [string, number[], RefOpts][] = [
  ["plain", LABELS, {}],
  ["sample weights", LABELS, { weights: W }],
  ["class weights", LABELS, { classWeights: CW }],
  ["both weights", LABELS, { weights: W, classWeights: CW }],
  ["(m+1)-way, labels < m", REAL_LABELS, { classes: REAL }],
  ["m-way softmax, extra logit ignored", REAL_LABELS, { classes: REAL, ignoreExtra: true }],
  ["m-way, class weights", REAL_LABELS, {
    classes: REAL,
    ignoreExtra: true,
    classWeights: CW.slice(0, REAL),
  }],
];

for (const [kind, op] of [["nll", nllLoss], ["nlu", nluLoss]] as const) {
  for (const [what, labels, o] of VARIANTS) {
    Deno.test(`${kind}Loss, ${what}: forward matches f64 and gradcheck`, async () => {
      const y = op(Tensor.from(X, [N, K]), labels, o);
      assert.deepEqual(y.shape, [1]);
      const want = labelLossRef(kind, X, K, labels, o);
      assertClose([await y.item()], [want], { rtol: 2e-6, atol: 1e-6 });
      clearTape();
      await gradcheck((x) => op(x, labels, o), [{ data: X, shape: [N, K] }], {
        label: `${kind}Loss ${what}`,
      });
    });
  }
}

Deno.test("nllLoss equals loss.ts crossEntropy; the extra logit gets zero gradient when ignored", async () => {
  const a = await nllLoss(Tensor.from(X, [N, K]), LABELS).item();
  const b = await crossEntropy(Tensor.from(X, [N, K]), LABELS).item();
  assertClose([a], [b], { rtol: 1e-6 });
  clearTape();
  const x = Tensor.from(X, [N, K], { requiresGrad: true });
  backward(nllLoss(x, REAL_LABELS, { classes: REAL, ignoreExtra: true }), { keep: [x] });
  const g = await x.grad!.read();
  for (let r = 0; r < N; r++) assert.equal(g[r * K + K - 1], 0);
  // Inside the real span: (p - onehot) / N over the m-way softmax.
  const row = Array.from(X.subarray(0, K));
  const l = lse64(row, REAL);
  const want = row.slice(0, REAL).map((v, j) => (Math.exp(v - l) - (j === 3 ? 1 : 0)) / N);
  assertClose(g.subarray(0, REAL), want, { rtol: 1e-5, atol: 1e-7 });
  clearTape();
});

Deno.test("nluLoss: the label's logit 30 or 100 above the rest stays finite and exact", async () => {
  for (const lead of [30, 100]) {
    const k = 5;
    const row = [0.3, -0.2, 0.1, 0, -0.4];
    const label = 2;
    const x = row.map((v, j) => (j === label ? v + lead : v));
    // 1 - p_k is e^-30 ~ 1e-13 here (0 in f32 at lead 100): the naive form gives Infinity.
    const want = lse64(x) - lse64(x, k, label);
    const t = Tensor.from(x, [1, k], { requiresGrad: true });
    const y = nluLoss(t, [label]);
    backward(y, { keep: [t] });
    const [loss, g] = await Tensor.readAll([y, t.grad!]);
    assert.ok(Number.isFinite(loss[0]) && want > lead - 2, `loss ${loss[0]}`);
    assertClose(loss, [want], { rtol: 1e-6 });
    // d/dt_k = p_k ~ 1, d/dt_i = -p_k q_i with q the softmax of the others.
    const rest = lse64(x, k, label);
    const pk = Math.exp(x[label] - lse64(x));
    const gw = x.map((v, j) => (j === label ? pk : -pk * Math.exp(v - rest)));
    assertClose(g, gw, { rtol: 1e-5, atol: 1e-7 });
    clearTape();
  }
});

Deno.test("nluClassWeights: (1 - q) / q, and NLU_q's gradient vanishes at p = q", async () => {
  const q = [0.1, 0.25, 0.05, 0.4, 0.2];
  const cw = nluClassWeights(q);
  assertClose(cw, q.map((v) => (1 - v) / v), { rtol: 1e-6 });
  // One row per class k, logits log q (so p = q); the q_k-weighted sum of the rows' gradients,
  // sum_k q_k grad NLU_q(q, k), is zero. Sample weights q_k * N undo the batch mean.
  const k = q.length;
  const x = Tensor.from(Array.from({ length: k }, () => q.map(Math.log)).flat(), [k, k], {
    requiresGrad: true,
  });
  const labels = q.map((_, i) => i);
  backward(nluLoss(x, labels, { classWeights: cw, weights: q.map((v) => v * k) }), {
    keep: [x],
  });
  const g = await x.grad!.read();
  const total = q.map((_, j) => labels.reduce((s, r) => s + g[r * k + j], 0));
  assertClose(total, q.map(() => 0), { rtol: 0, atol: 1e-6 });
  // Without the weights it does not vanish (the test can fail).
  clearTape();
  const x2 = Tensor.from(Array.from({ length: k }, () => q.map(Math.log)).flat(), [k, k], {
    requiresGrad: true,
  });
  backward(nluLoss(x2, labels, { weights: q.map((v) => v * k) }), { keep: [x2] });
  const g2 = await x2.grad!.read();
  const total2 = q.map((_, j) => labels.reduce((s, r) => s + g2[r * k + j], 0));
  assert.ok(Math.max(...total2.map(Math.abs)) > 0.05, `unweighted ${total2}`);
  clearTape();
});

Deno.test("labels as a tensor of f32 class indices; out of range gives NaN, not a throw", async () => {
  const a = await nluLoss(Tensor.from(X, [N, K]), LABELS, { weights: W }).item();
  const b = await nluLoss(Tensor.from(X, [N, K]), Tensor.from(LABELS, [N]), { weights: W })
    .item();
  assertClose([b], [a], { rtol: 0, atol: 0 });
  const bad = await nllLoss(Tensor.from(X, [N, K]), Tensor.from([3, 0, 7, 2, 5], [N])).item();
  assert.ok(Number.isNaN(bad), `label 7 of 7 classes gives ${bad}`);
  const half = await nllLoss(Tensor.from(X, [N, K]), Tensor.from([3, 0, 1.5, 2, 5], [N])).item();
  assert.ok(Number.isNaN(half), `label 1.5 gives ${half}`);
  clearTape();
});

/** mean_b w_b sum_j t_bj (LSE_b - x_bj) in f64. */
function softRef(x: ArrayLike<number>, t: ArrayLike<number> | "uniform", k: number, w?: number[]) {
  const rows = rowsOf(x, k);
  let total = 0;
  rows.forEach((row, b) => {
    const l = lse64(row);
    let s = 0;
    row.forEach((v, j) => (s += (t === "uniform" ? 1 / k : t[b * k + j]) * (l - v)));
    total += (w?.[b] ?? 1) * s;
  });
  return total / rows.length;
}

Deno.test("softCrossEntropy: soft target forward, weights, gradcheck in logits and target", async () => {
  const t = randu(N * K, 3, 0, 1);
  // Rows normalised except the last (the loss takes any non-negative target).
  for (let r = 0; r < N - 1; r++) {
    let s = 0;
    for (let j = 0; j < K; j++) s += t[r * K + j];
    for (let j = 0; j < K; j++) t[r * K + j] /= s;
  }
  for (const w of [undefined, W]) {
    const y = softCrossEntropy(Tensor.from(X, [N, K]), Tensor.from(t, [N, K]), { weights: w });
    assertClose([await y.item()], [softRef(X, t, K, w)], { rtol: 2e-6, atol: 1e-6 });
    clearTape();
    await gradcheck(
      (x, tt) => softCrossEntropy(x, tt, { weights: w }),
      [{ data: X, shape: [N, K] }, { data: t, shape: [N, K] }],
      { label: `softCrossEntropy ${w ? "weighted" : ""}` },
    );
  }
});

Deno.test("softCrossEntropy 'uniform': forward, gradient (p - 1/K) / N, gradcheck", async () => {
  const y = softCrossEntropy(Tensor.from(X, [N, K]), "uniform");
  assertClose([await y.item()], [softRef(X, "uniform", K)], { rtol: 2e-6, atol: 1e-6 });
  clearTape();
  const x = Tensor.from(X, [N, K], { requiresGrad: true });
  backward(softCrossEntropy(x, "uniform"), { keep: [x] });
  const want = rowsOf(X, K).flatMap((r) => {
    const l = lse64(r);
    return r.map((v) => (Math.exp(v - l) - 1 / K) / N);
  });
  assertClose(await x.grad!.read(), want, { rtol: 1e-5, atol: 1e-7 });
  clearTape();
  await gradcheck((x) => softCrossEntropy(x, "uniform", { weights: W }), [{
    data: X,
    shape: [N, K],
  }], { label: "softCrossEntropy uniform" });
});

Deno.test("classify: bad inputs throw flowgpu errors naming the problem", () => {
  const x = Tensor.from(X, [N, K]);
  assert.throws(() => nllLoss(x, [3, 0, 7, 2, 5]), {
    message: "flowgpu: nllLoss: label 7 at index 2 is not an integer class in [0, 7) for " +
      "logits [5, 7]",
  });
  assert.throws(() => nluLoss(x, [3, 0, -1, 2, 5]), {
    message: "flowgpu: nluLoss: label -1 at index 2 is not an integer class in [0, 7) for " +
      "logits [5, 7]",
  });
  assert.throws(() => nllLoss(x, [3, 0, 1.5, 2, 5]), /label 1.5 at index 2 is not an integer/);
  // Label 6 is the fake class of a 6 + 1-way classifier: not a valid target.
  assert.throws(() => nluLoss(x, [3, 0, 6, 2, 5], { classes: 6 }), {
    message: "flowgpu: nluLoss: label 6 at index 2 is not an integer class in [0, 6) for " +
      "logits [5, 7]",
  });
  assert.throws(() => nllLoss(x, [1, 2, 3]), {
    message: "flowgpu: nllLoss: 3 labels for logits [5, 7] (need 5)",
  });
  assert.throws(() => nllLoss(x, Tensor.from([1, 2], [2])), {
    message: "flowgpu: nllLoss: labels [2] for logits [5, 7] (need 5 labels)",
  });
  assert.throws(() => nllLoss(x, LABELS, { classes: 8 }), {
    message: "flowgpu: nllLoss: classes 8 is not an integer in [1, 7] for logits [5, 7]",
  });
  assert.throws(() => nluLoss(x, [0, 0, 0, 0, 0], { classes: 1, ignoreExtra: true }), {
    message: "flowgpu: nluLoss: the softmax has 1 class (logits [5, 7]); log(1 - p) needs at " +
      "least 2",
  });
  assert.throws(() => nllLoss(x, LABELS, { weights: [1, 2] }), {
    message: "flowgpu: nllLoss: weights 2 values do not give one weight per sample (5)",
  });
  assert.throws(() => nluLoss(x, LABELS, { classWeights: Tensor.from([1, 2, 3], [3]) }), {
    message: "flowgpu: nluLoss: classWeights [3] do not give one weight per class (7)",
  });
  assert.throws(() => nllLoss(x, LABELS, { weights: [1, 2, NaN, 1, 1] }), {
    message: "flowgpu: nllLoss: weights[2] = NaN is not a finite number",
  });
  assert.throws(() => nllLoss(Tensor.from(X, [N, K, 1]), LABELS), {
    message: "flowgpu: nllLoss: needs logits [N, K], got [5, 7, 1]",
  });
  assert.throws(() => softCrossEntropy(x, Tensor.from(X, [K, N])), {
    message: "flowgpu: softCrossEntropy: target [7, 5] does not match logits [5, 7]",
  });
  assert.throws(() => softmax(Tensor.from([], [0])), {
    message: "flowgpu: softmax: needs a non-empty tensor [..., K], got [0]",
  });
  assert.throws(() => nluClassWeights([0.5, 0]), {
    message: "flowgpu: nluClassWeights: frequency q[1] = 0 is not in (0, 1]",
  });
  clearTape();
});

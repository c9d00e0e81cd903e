import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randn, randu } from "./gradcheck.ts";
import { crossEntropy, gaussianLogProb, logSoftmax, nll } from "../src/ops/loss.ts";
import { clearTape } from "../src/ops/tape.ts";
import { numel, Tensor } from "../src/ops/tensor.ts";

const LOG_2PI = Math.log(2 * Math.PI);

// f64 reference: per-sample sum of log N(z; mu, exp(ls)^2).
function gaussRef(z: ArrayLike<number>, n: number, mu?: ArrayLike<number>, ls?: ArrayLike<number>) {
  const d = z.length / n;
  const out = new Array(n).fill(0);
  for (let i = 0; i < z.length; i++) {
    const m = mu?.[i] ?? 0, l = ls?.[i] ?? 0;
    const u = (z[i] - m) * Math.exp(-l);
    out[Math.floor(i / d)] += -0.5 * LOG_2PI - l - 0.5 * u * u;
  }
  return out;
}

function logSoftmaxRef(x: ArrayLike<number>, rows: number, k: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    const row = Array.from({ length: k }, (_, j) => x[r * k + j]);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
    out.push(...row.map((v) => v - lse));
  }
  return out;
}

// d = 45 per sample (vec4s straddle samples), d = 7, and d = 12 (a multiple of 4).
const GAUSS_SHAPES = [[2, 5, 3, 3], [3, 7], [3, 3, 2, 2]];

for (const shape of GAUSS_SHAPES) {
  const s = `[${shape.join(", ")}]`;
  const size = numel(shape);
  const z = randn(size, 1, 1.5);
  const mu = randu(size, 2, -1, 1);
  const ls = randu(size, 3, -0.7, 0.7);

  Deno.test(
    `gaussianLogProb ${s}: forward matches f64 reference (std, full, mean or logStd only)`,
    async () => {
      const t = (d: Float32Array) => Tensor.from(d, shape);
      const cases: [string, Tensor, number[]][] = [
        ["std", gaussianLogProb(t(z)), gaussRef(z, shape[0])],
        ["full", gaussianLogProb(t(z), t(mu), t(ls)), gaussRef(z, shape[0], mu, ls)],
        ["mean only", gaussianLogProb(t(z), t(mu)), gaussRef(z, shape[0], mu)],
        [
          "logStd only",
          gaussianLogProb(t(z), undefined, t(ls)),
          gaussRef(z, shape[0], undefined, ls),
        ],
      ];
      for (const [what, y, want] of cases) {
        assert.deepEqual(y.shape, [shape[0]]);
        assertClose(await y.read(), want, { rtol: 2e-6, atol: 1e-5, label: what });
      }
      clearTape();
    },
  );

  Deno.test(`gaussianLogProb ${s}: gradcheck z, mean, logStd`, async () => {
    const m = Math.min(size, 24);
    const opts = { maxElements: m };
    await gradcheck((a) => gaussianLogProb(a), [{ data: z, shape }], { ...opts, label: "std" });
    await gradcheck(
      (a, b, c) => gaussianLogProb(a, b, c),
      [{ data: z, shape }, { data: mu, shape }, { data: ls, shape }],
      { ...opts, label: "full" },
    );
    // Only some inputs want a gradient (the others' gradients are computed and dropped).
    await gradcheck(
      (a, b, c) => gaussianLogProb(a, b, c),
      [{ data: z, shape, grad: false }, { data: mu, shape, grad: false }, { data: ls, shape }],
      { ...opts, label: "logStd only wants grad" },
    );
    await gradcheck(
      (a, b) => gaussianLogProb(a, b),
      [{ data: z, shape }, { data: mu, shape }],
      { ...opts, label: "mean, no logStd" },
    );
    await gradcheck(
      (a, c) => gaussianLogProb(a, undefined, c),
      [{ data: z, shape }, { data: ls, shape }],
      { ...opts, label: "logStd, no mean" },
    );
  });
}

Deno.test("gaussianLogProb: shape mismatch names both shapes", () => {
  const z = Tensor.from(new Float32Array(12), [2, 6]);
  const m = Tensor.from(new Float32Array(12), [2, 3, 2]);
  const l = Tensor.from(new Float32Array(6), [6]);
  assert.throws(() => gaussianLogProb(z, m), /gaussianLogProb: mean \[2, 3, 2\] .* z \[2, 6\]/);
  assert.throws(
    () => gaussianLogProb(z, undefined, l),
    /gaussianLogProb: logStd \[6\] .* z \[2, 6\]/,
  );
  clearTape();
});

const ROWS = 3, K = 7;
const logits = randu(ROWS * K, 5, -3, 3);
const labels = [6, 0, 3];

Deno.test("logSoftmax [3, 7]: forward matches f64; stable for large logits", async () => {
  const y = logSoftmax(Tensor.from(logits, [ROWS, K]));
  assertClose(await y.read(), logSoftmaxRef(logits, ROWS, K), { rtol: 1e-5, atol: 2e-6 });
  // Shifting a row by 1000 leaves log-softmax unchanged (exp(1000) would overflow unshifted).
  const big = logits.map((v, i) => v + (i < K ? 1000 : i < 2 * K ? -1000 : 80));
  const yb = await logSoftmax(Tensor.from(big, [ROWS, K])).read();
  assert.ok(yb.every(Number.isFinite), "finite");
  assertClose(yb, logSoftmaxRef(logits, ROWS, K), { rtol: 1e-4, atol: 1e-4 });
  clearTape();
});

Deno.test("logSoftmax [3, 7]: gradcheck", async () => {
  await gradcheck((x) => logSoftmax(x), [{ data: logits, shape: [ROWS, K] }]);
  const one = randu(5, 6, -3, 3);
  await gradcheck((x) => logSoftmax(x), [{ data: one, shape: [1, 5] }], { label: "one row" });
});

Deno.test("nll [3, 7]: forward matches f64 (number[] and Uint32Array labels); gradcheck", async () => {
  const logp = randu(ROWS * K, 7, -4, 0);
  const want = -labels.reduce((a, y, r) => a + logp[r * K + y], 0) / ROWS;
  for (const l of [labels, Uint32Array.from(labels)]) {
    const y = nll(Tensor.from(logp, [ROWS, K]), l);
    assert.deepEqual(y.shape, [1]);
    assertClose(await y.read(), [want], { rtol: 1e-6, atol: 1e-6 });
  }
  clearTape();
  await gradcheck((x) => nll(x, labels), [{ data: logp, shape: [ROWS, K] }], { label: "nll" });
});

Deno.test("crossEntropy [3, 7]: forward matches f64; gradcheck", async () => {
  const lp = logSoftmaxRef(logits, ROWS, K);
  const want = -labels.reduce((a, y, r) => a + lp[r * K + y], 0) / ROWS;
  const y = crossEntropy(Tensor.from(logits, [ROWS, K]), labels);
  assertClose(await y.read(), [want], { rtol: 1e-5, atol: 1e-6 });
  clearTape();
  await gradcheck((x) => crossEntropy(x, labels), [{ data: logits, shape: [ROWS, K] }], {
    label: "crossEntropy",
  });
  // Larger batch, odd size: 13 rows of 10 classes.
  const x13 = randu(130, 8, -3, 3);
  const l13 = Array.from({ length: 13 }, (_, i) => (i * 7) % 10);
  await gradcheck((x) => crossEntropy(x, l13), [{ data: x13, shape: [13, 10] }], {
    label: "crossEntropy 13x10",
    maxElements: 40,
  });
});

Deno.test("nll: labels out of range, non-integer or miscounted; non-2-D input", () => {
  const x = Tensor.from(new Float32Array(ROWS * K), [ROWS, K]);
  assert.throws(() => nll(x, [0, 7, 1]), /nll: label 7 at index 1 .*\[0, 7\) .*\[3, 7\]/);
  assert.throws(() => nll(x, [0, -1, 1]), /nll: label -1 at index 1/);
  assert.throws(() => nll(x, [0, 1.5, 1]), /nll: label 1.5 at index 1/);
  assert.throws(() => nll(x, [0, 1]), /nll: 2 labels for logp \[3, 7\] \(need 3\)/);
  assert.throws(() => crossEntropy(x, [9, 0, 0]), /label 9 at index 0/);
  const x3 = Tensor.from(new Float32Array(12), [2, 3, 2]);
  assert.throws(() => logSoftmax(x3), /logSoftmax: needs a tensor \[N, K\], got \[2, 3, 2\]/);
  clearTape();
});

// batchNorm: forward in both modes against an f64 reference, gradchecks in both modes, the
// running statistics after two training calls, shape errors, and the BatchNorm layer. Shapes
// are not multiples of 4 (S = 15 runs the scalar kernels, S = 12 the vec4 ones; [N, C] too).
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randn, randu } from "./gradcheck.ts";
import { BatchNorm } from "../src/nn/layers.ts";
import { ParamStore } from "../src/nn/store.ts";
import { batchNorm } from "../src/ops/norm.ts";
import { clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";

/** Per-channel mean and biased variance over (N, S), in f64. */
function moments(x: ArrayLike<number>, [n, c, ...rest]: number[]) {
  const s = rest.reduce((a, b) => a * b, 1);
  const mean = new Array(c).fill(0), variance = new Array(c).fill(0);
  const at = (i: number, k: number, j: number) => x[(i * c + k) * s + j];
  for (let k = 0; k < c; k++) {
    for (let i = 0; i < n; i++) for (let j = 0; j < s; j++) mean[k] += at(i, k, j) / (n * s);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < s; j++) variance[k] += (at(i, k, j) - mean[k]) ** 2 / (n * s);
    }
  }
  return { mean, variance, m: n * s, s };
}

function reference(
  x: ArrayLike<number>,
  shape: number[],
  gamma: ArrayLike<number>,
  beta: ArrayLike<number>,
  mean: number[],
  variance: number[],
  eps = 1e-5,
): number[] {
  const c = shape[1], s = shape.slice(2).reduce((a, b) => a * b, 1);
  return Array.from(x, (v, i) => {
    const k = Math.floor(i / s) % c;
    return gamma[k] * (v - mean[k]) / Math.sqrt(variance[k] + eps) + beta[k];
  });
}

const SHAPES = [[3, 2, 3, 5], [2, 3, 2, 6], [5, 3]];
const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

for (const shape of SHAPES) {
  const c = shape[1];
  const x = randn(size(shape), 1, 1.5).map((v, i) => v + (i % 3) - 1);
  const gamma = randu(c, 2, 0.5, 1.5), beta = randu(c, 3);
  const rmean = randu(c, 4), rvar = randu(c, 5, 0.5, 2);

  Deno.test(`batchNorm [${shape}]: training forward matches f64 reference`, async () => {
    const { mean, variance } = moments(x, shape);
    const y = batchNorm(Tensor.from(x, shape), Tensor.from(gamma, [c]), Tensor.from(beta, [c]), {
      training: true,
    });
    assertClose(await y.read(), reference(x, shape, gamma, beta, mean, variance), {
      rtol: 1e-5,
      atol: 2e-6,
    });
    clearTape();
  });

  Deno.test(`batchNorm [${shape}]: eval forward uses the running statistics`, async () => {
    const runningMean = Tensor.from(rmean, [c]), runningVar = Tensor.from(rvar, [c]);
    const y = batchNorm(Tensor.from(x, shape), Tensor.from(gamma, [c]), Tensor.from(beta, [c]), {
      training: false,
      runningMean,
      runningVar,
      eps: 1e-3,
    });
    const want = reference(x, shape, gamma, beta, Array.from(rmean), Array.from(rvar), 1e-3);
    assertClose(await y.read(), want, { rtol: 1e-5, atol: 2e-6 });
    // Eval mode leaves the running statistics alone.
    assertClose(await runningMean.read(), rmean, { rtol: 0, atol: 0 });
    clearTape();
  });

  Deno.test(`batchNorm [${shape}]: gradcheck, training mode (x, gamma, beta)`, async () => {
    await gradcheck(
      (x, g, b) => batchNorm(x, g, b, { training: true }),
      [{ data: x, shape }, { data: gamma, shape: [c] }, { data: beta, shape: [c] }],
      { label: `batchNorm train [${shape}]` },
    );
  });

  Deno.test(`batchNorm [${shape}]: gradcheck, eval mode (x, gamma, beta)`, async () => {
    const runningMean = Tensor.constant(rmean, [c]), runningVar = Tensor.constant(rvar, [c]);
    await gradcheck(
      (x, g, b) => batchNorm(x, g, b, { training: false, runningMean, runningVar }),
      [{ data: x, shape }, { data: gamma, shape: [c] }, { data: beta, shape: [c] }],
      { label: `batchNorm eval [${shape}]` },
    );
    runningMean.release();
    runningVar.release();
  });

  Deno.test(`batchNorm [${shape}]: running statistics after two training calls`, async () => {
    const runningMean = Tensor.from(rmean, [c]), runningVar = Tensor.from(rvar, [c]);
    const x2 = randn(size(shape), 9, 0.7).map((v) => v + 2);
    const d = 0.9;
    const rm = Array.from(rmean), rv = Array.from(rvar);
    for (const data of [x, x2]) {
      batchNorm(Tensor.from(data, shape), Tensor.from(gamma, [c]), Tensor.from(beta, [c]), {
        training: true,
        runningMean,
        runningVar,
        momentum: d,
      });
      const { mean, variance, m } = moments(data, shape);
      for (let k = 0; k < c; k++) {
        rm[k] = d * rm[k] + (1 - d) * mean[k];
        rv[k] = d * rv[k] + (1 - d) * variance[k] * m / (m - 1); // unbiased, as PyTorch
      }
    }
    assertClose(await runningMean.read(), rm, { rtol: 1e-5, atol: 1e-6, label: "mean" });
    assertClose(await runningVar.read(), rv, { rtol: 1e-5, atol: 1e-6, label: "var" });
    clearTape();
  });
}

Deno.test("batchNorm: a channel mean far from zero keeps its variance (shifted sums)", async () => {
  const shape = [4, 2, 5, 5];
  const x = randn(size(shape), 11, 0.01).map((v) => v + 300);
  const { mean, variance } = moments(x, shape);
  const y = batchNorm(Tensor.from(x, shape), Tensor.from([1, 1], [2]), Tensor.from([0, 0], [2]), {
    training: true,
    eps: 0,
  });
  // Sums of x^2 would lose the variance entirely in f32 here (300^2 vs 1e-4).
  assertClose(await y.read(), reference(x, shape, [1, 1], [0, 0], mean, variance, 0), {
    rtol: 0,
    atol: 5e-3,
  });
  clearTape();
});

Deno.test("batchNorm: refuses a batch of 1 in training (with or without H x W) and wrong shapes", () => {
  const g = Tensor.from(new Float32Array(8).fill(1), [8]);
  const b = Tensor.from(new Float32Array(8), [8]);
  const x = Tensor.from(new Float32Array(8), [1, 8, 1, 1]);
  assert.throws(
    () => batchNorm(x, g, b, { training: true }),
    /training mode needs a batch of at least 2 \(x \[1, 8, 1, 1\]\)/,
  );
  const xs = Tensor.from(new Float32Array(8 * 9), [1, 8, 3, 3]);
  assert.throws(
    () => batchNorm(xs, g, b, { training: true }),
    /training mode needs a batch of at least 2 \(x \[1, 8, 3, 3\]\)/,
  );
  const x2 = Tensor.from(new Float32Array(16), [2, 8]);
  const g3 = Tensor.from(new Float32Array(3), [3]);
  assert.throws(
    () => batchNorm(x2, g3, b, { training: true }),
    /x \[2, 8\] needs gamma and beta of shape \[8\], got \[3\] and \[8\]/,
  );
  const r = Tensor.from(new Float32Array(8), [1, 8]);
  assert.throws(
    () => batchNorm(x2, g, b, { training: true, runningMean: r, runningVar: g }),
    /runningMean and runningVar of shape \[8\], got \[1, 8\] and \[8\]/,
  );
  assert.throws(() => batchNorm(x2, g, b, { training: false }), /eval mode .* needs runningMean/);
  assert.throws(() => batchNorm(g, g, b, { training: true }), /x \[8\] is not \[N, C\]/);
  clearTape();
});

Deno.test("BatchNorm layer: gamma 1, beta 0, fixed running buffers, training flag", async () => {
  const store = new ParamStore(3);
  const bn = new BatchNorm(store.scope("enc").child("bn"), 3, { momentum: 0.5 });
  assert.deepEqual(store.params().map((p) => p.name), ["enc.bn.gamma", "enc.bn.beta"]);
  assert.ok(store.tensors.has("enc.bn.running_mean") && store.tensors.has("enc.bn.running_var"));
  assert.equal(bn.training, true);
  const shape = [2, 3, 3, 5];
  const x = randn(size(shape), 21).map((v) => 2 * v + 1);
  const { mean, variance, m } = moments(x, shape);
  const y = bn.apply(Tensor.from(x, shape));
  assertClose(await y.read(), reference(x, shape, [1, 1, 1], [0, 0, 0], mean, variance), {
    rtol: 1e-5,
    atol: 2e-6,
  });
  assertClose(await bn.runningMean.read(), mean.map((v) => 0.5 * v), { rtol: 1e-5, atol: 1e-6 });
  const rv = variance.map((v) => 0.5 + 0.5 * v * m / (m - 1));
  assertClose(await bn.runningVar.read(), rv, { rtol: 1e-5 });
  await gradcheck((x) => bn.apply(x), [{ data: x, shape }], {
    params: store.params(),
    label: "BatchNorm layer, training",
    maxElements: 16,
  });
  bn.training = false;
  const before = await bn.runningMean.read();
  const z = bn.apply(Tensor.from(x, shape));
  const rmNow = Array.from(before), rvNow = Array.from(await bn.runningVar.read());
  assertClose(await z.read(), reference(x, shape, [1, 1, 1], [0, 0, 0], rmNow, rvNow), {
    rtol: 1e-5,
    atol: 2e-6,
  });
  assertClose(await bn.runningMean.read(), before, { rtol: 0, atol: 0 });
  await gradcheck((x) => bn.apply(x), [{ data: x, shape }], {
    params: store.params(),
    label: "BatchNorm layer, eval",
    maxElements: 16,
  });
  clearTape();
  store.release();
});

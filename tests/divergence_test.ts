// Divergences: squared error (three reductions), the Gaussian NLL with a learned sigma per
// sample, KL against N(0, I) in both parameterisations, KL between two diagonal Gaussians, and
// the GM logits. Each forward against an f64 reference, each backward by gradcheck, and the shape
// errors. Sample sizes are not multiples of 4 (vec4s straddle samples) except where noted.
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randn, randu } from "./gradcheck.ts";
import {
  gaussianNll,
  gmLogits,
  klDiagGaussians,
  klStdNormal,
  klStdNormalSigma,
  mse,
  squaredError,
  sse,
} from "../src/ops/divergence.ts";
import { gaussianLogProb } from "../src/ops/loss.ts";
import { clearTape } from "../src/ops/tape.ts";
import { numel, Tensor } from "../src/ops/tensor.ts";

const HALF_LOG_2PI = 0.5 * Math.log(2 * Math.PI);

/** Per-sample sums of f(i) over [n, d]. */
function perSample(n: number, d: number, f: (i: number) => number): number[] {
  const out = new Array(n).fill(0);
  for (let i = 0; i < n * d; i++) out[Math.floor(i / d)] += f(i);
  return out;
}

const t = (data: ArrayLike<number>, shape: number[]) => Tensor.from(data, shape);

// d = 5, 21 and 12 (the last a multiple of 4: whole vec4s per sample).
const SHAPES = [[3, 5], [2, 3, 7], [3, 3, 2, 2]];

for (const shape of SHAPES) {
  const s = `[${shape.join(", ")}]`;
  const size = numel(shape);
  const [n] = shape;
  const d = size / n;
  const a = randn(size, 1), b = randn(size, 2);

  Deno.test(`squaredError ${s}: mean, sum, perSample, mse, sse match f64`, async () => {
    const sq = (i: number) => (a[i] - b[i]) ** 2;
    const total = perSample(1, size, sq)[0];
    const cases: [string, Tensor, number[]][] = [
      ["mean", squaredError(t(a, shape), t(b, shape)), [total / size]],
      ["sum", squaredError(t(a, shape), t(b, shape), "sum"), [total]],
      ["perSample", squaredError(t(a, shape), t(b, shape), "perSample"), perSample(n, d, sq)],
      ["mse", mse(t(a, shape), t(b, shape)), [total / size]],
      ["sse", sse(t(a, shape), t(b, shape)), [total]],
    ];
    for (const [what, y, want] of cases) {
      assert.deepEqual(y.shape, [want.length], what);
      assertClose(await y.read(), want, { rtol: 2e-6, atol: 1e-6, label: what });
    }
    clearTape();
  });

  Deno.test(`squaredError ${s}: gradcheck a and b, every reduction`, async () => {
    for (const r of ["mean", "sum", "perSample"] as const) {
      await gradcheck(
        (x, y) => squaredError(x, y, r),
        [{ data: a, shape }, { data: b, shape }],
        { label: `squaredError ${r}` },
      );
    }
    // A target without gradient (its backward dispatch is skipped).
    await gradcheck(
      (x, y) => squaredError(x, y, "perSample"),
      [{ data: a, shape }, { data: b, shape, grad: false }],
      { label: "squaredError, constant target" },
    );
  });

  const ls = randu(n, 3, -0.8, 0.6);
  Deno.test(`gaussianNll ${s}: mean / sum over elements, with and without constant`, async () => {
    const sq = perSample(n, d, (i) => (a[i] - b[i]) ** 2);
    for (const elements of ["mean", "sum"] as const) {
      for (const constant of [true, false]) {
        const k = elements === "mean" ? 1 : d;
        const want = sq.map((e, j) =>
          (elements === "mean" ? e / d : e) / (2 * Math.exp(2 * ls[j])) + k * ls[j] +
          (constant ? k * HALF_LOG_2PI : 0)
        );
        const y = gaussianNll(t(a, shape), t(b, shape), t(ls, [n]), { elements, constant });
        assert.deepEqual(y.shape, [n]);
        assertClose(await y.read(), want, { rtol: 2e-6, atol: 2e-6, label: `${elements}` });
      }
    }
    // The default is DisUnknown's per-element form with the constant.
    const y = gaussianNll(t(a, shape), t(b, shape), t(ls, [n, 1]));
    const want = sq.map((e, j) => e / d / (2 * Math.exp(2 * ls[j])) + ls[j] + HALF_LOG_2PI);
    assertClose(await y.read(), want, { rtol: 2e-6, atol: 2e-6, label: "default" });
    clearTape();
  });

  Deno.test(`gaussianNll ${s}: "sum" is -gaussianLogProb with log sigma per element`, async () => {
    const full = Array.from({ length: size }, (_, i) => ls[Math.floor(i / d)]);
    const nll = gaussianNll(t(a, shape), t(b, shape), t(ls, [n]), { elements: "sum" });
    const logp = gaussianLogProb(t(a, shape), t(b, shape), t(full, shape));
    assertClose(await nll.read(), Array.from(await logp.read(), (v) => -v), {
      rtol: 2e-6,
      atol: 4e-6,
    });
    clearTape();
  });

  Deno.test(`gaussianNll ${s}: gradcheck x, xbar, logSigma`, async () => {
    for (const elements of ["mean", "sum"] as const) {
      await gradcheck(
        (x, xb, l) => gaussianNll(x, xb, l, { elements }),
        [{ data: b, shape }, { data: a, shape }, { data: ls, shape: [n, 1] }],
        { label: `gaussianNll ${elements}` },
      );
    }
    await gradcheck(
      (x, xb, l) => gaussianNll(x, xb, l),
      [{ data: b, shape, grad: false }, { data: a, shape, grad: false }, {
        data: ls,
        shape: [n],
      }],
      { label: "gaussianNll, logSigma only" },
    );
  });

  const mu = randn(size, 4), lv = randu(size, 5, -1.5, 1);
  const klTerm = (i: number) => 0.5 * (mu[i] ** 2 + Math.exp(lv[i]) - 1 - lv[i]);

  Deno.test(`klStdNormal ${s}: perSample and none match f64; sigma form agrees`, async () => {
    const y = klStdNormal(t(mu, shape), t(lv, shape));
    assert.deepEqual(y.shape, [n]);
    assertClose(await y.read(), perSample(n, d, klTerm), { rtol: 2e-6, atol: 2e-6 });
    const none = klStdNormal(t(mu, shape), t(lv, shape), "none");
    assert.deepEqual(none.shape, shape);
    assertClose(await none.read(), Array.from({ length: size }, (_, i) => klTerm(i)), {
      rtol: 2e-6,
      atol: 1e-6,
      label: "none",
    });
    const sigma = lv.map((v) => Math.exp(v / 2));
    const ys = klStdNormalSigma(t(mu, shape), t(sigma, shape));
    const sigRef = perSample(
      n,
      d,
      (i) => 0.5 * (mu[i] ** 2 + sigma[i] ** 2 - 1) - Math.log(sigma[i]),
    );
    assertClose(await ys.read(), sigRef, { rtol: 2e-6, atol: 2e-6, label: "sigma" });
    // Same distribution, same KL, whichever head parameterises it.
    assertClose(sigRef, perSample(n, d, klTerm), { rtol: 1e-5, atol: 1e-6, label: "forms" });
    clearTape();
  });

  Deno.test(`klStdNormal, klStdNormalSigma ${s}: gradcheck, perSample and none`, async () => {
    const sigma = randu(size, 6, 0.4, 1.6);
    for (const r of ["perSample", "none"] as const) {
      await gradcheck(
        (m, v) => klStdNormal(m, v, r),
        [{ data: mu, shape }, { data: lv, shape }],
        { label: `klStdNormal ${r}` },
      );
      await gradcheck(
        (m, v) => klStdNormalSigma(m, v, r),
        [{ data: mu, shape }, { data: sigma, shape }],
        { label: `klStdNormalSigma ${r}` },
      );
    }
  });

  const mu2 = randn(size, 7), lv2 = randu(size, 8, -1, 1.2);
  const klq = (i: number) =>
    0.5 * (lv2[i] - lv[i] + (Math.exp(lv[i]) + (mu[i] - mu2[i]) ** 2) / Math.exp(lv2[i]) - 1);

  Deno.test(`klDiagGaussians ${s}: matches f64; N(0, I) target and equal Gaussians`, async () => {
    const y = klDiagGaussians(t(mu, shape), t(lv, shape), t(mu2, shape), t(lv2, shape));
    assert.deepEqual(y.shape, [n]);
    assertClose(await y.read(), perSample(n, d, klq), { rtol: 2e-6, atol: 2e-6 });
    const none = klDiagGaussians(t(mu, shape), t(lv, shape), t(mu2, shape), t(lv2, shape), "none");
    assertClose(await none.read(), Array.from({ length: size }, (_, i) => klq(i)), {
      rtol: 2e-6,
      atol: 1e-6,
      label: "none",
    });
    const zeros = new Float32Array(size);
    const vsStd = klDiagGaussians(t(mu, shape), t(lv, shape), t(zeros, shape), t(zeros, shape));
    assertClose(await vsStd.read(), perSample(n, d, klTerm), { rtol: 2e-6, atol: 2e-6 });
    // KL(q || q) is exactly zero: e^(lv - lv) - 1 - 0 = 0 with no rounding.
    const self = klDiagGaussians(t(mu, shape), t(lv, shape), t(mu, shape), t(lv, shape));
    assert.deepEqual(Array.from(await self.read()), new Array(n).fill(0));
    clearTape();
  });

  Deno.test(`klDiagGaussians ${s}: gradcheck all four, perSample and none`, async () => {
    for (const r of ["perSample", "none"] as const) {
      await gradcheck(
        (m1, v1, m2, v2) => klDiagGaussians(m1, v1, m2, v2, r),
        [{ data: mu, shape }, { data: lv, shape }, { data: mu2, shape }, { data: lv2, shape }],
        { label: `klDiagGaussians ${r}` },
      );
    }
    // Only the posterior learns (a fixed prior), and only the prior learns.
    await gradcheck(
      (m1, v1, m2, v2) => klDiagGaussians(m1, v1, m2, v2),
      [{ data: mu, shape }, { data: lv, shape }, { data: mu2, shape, grad: false }, {
        data: lv2,
        shape,
        grad: false,
      }],
      { label: "klDiagGaussians, posterior only" },
    );
    await gradcheck(
      (m1, v1, m2, v2) => klDiagGaussians(m1, v1, m2, v2),
      [{ data: mu, shape, grad: false }, { data: lv, shape, grad: false }, {
        data: mu2,
        shape,
      }, { data: lv2, shape }],
      { label: "klDiagGaussians, prior only" },
    );
  });
}

/** f64 GM logits: -1/2 sum_d ((z - mu)^2 e^-v + v). */
function gmRef(
  z: ArrayLike<number>,
  mu: ArrayLike<number>,
  v: ArrayLike<number>,
  b: number,
  c: number,
  d: number,
) {
  const out: number[] = [];
  for (let i = 0; i < b; i++) {
    for (let k = 0; k < c; k++) {
      let acc = 0;
      for (let j = 0; j < d; j++) {
        const u = z[i * d + j] - mu[k * d + j];
        acc += u * u * Math.exp(-v[k * d + j]) + v[k * d + j];
      }
      out.push(-0.5 * acc);
    }
  }
  return out;
}

const softmaxRows = (x: number[], c: number) =>
  x.map((_, i) => {
    const r = Math.floor(i / c);
    const row = x.slice(r * c, r * c + c);
    const m = Math.max(...row);
    return Math.exp(x[i] - m) / row.reduce((s, v) => s + Math.exp(v - m), 0);
  });

for (const [b, c, d] of [[5, 3, 7], [6, 10, 2], [3, 5, 9]]) {
  const z = randn(b * d, 11), mu = randn(c * d, 12, 0.8), v = randu(c * d, 13, -1, 1);

  Deno.test(`gmLogits B=${b} C=${c} D=${d}: matches f64; softmax is the class posterior`, async () => {
    const y = gmLogits(t(z, [b, d]), t(mu, [c, d]), t(v, [c, d]));
    assert.deepEqual(y.shape, [b, c]);
    const got = await y.read();
    const want = gmRef(z, mu, v, b, c, d);
    assertClose(got, want, { rtol: 2e-6, atol: 2e-6 });
    // p(c | z) from the full densities: log(1/C) + log N(z; mu_c, e^v_c), constants included.
    const full = want.map((l) => Math.log(1 / c) + l - d * HALF_LOG_2PI);
    assertClose(softmaxRows(Array.from(got), c), softmaxRows(full, c), {
      rtol: 1e-5,
      atol: 1e-7,
      label: "posterior",
    });
    clearTape();
  });

  Deno.test(`gmLogits B=${b} C=${c} D=${d}: gradcheck z, mu, logvar`, async () => {
    await gradcheck(
      (zz, m, vv) => gmLogits(zz, m, vv),
      [{ data: z, shape: [b, d] }, { data: mu, shape: [c, d] }, { data: v, shape: [c, d] }],
      { label: "gmLogits" },
    );
    await gradcheck(
      (zz, m, vv) => gmLogits(zz, m, vv),
      [{ data: z, shape: [b, d] }, { data: mu, shape: [c, d], grad: false }, {
        data: v,
        shape: [c, d],
        grad: false,
      }],
      { label: "gmLogits, z only" },
    );
  });
}

Deno.test("divergences: bad shapes throw naming the op and the shapes", () => {
  const x = t(new Float32Array(12), [2, 6]);
  const y = t(new Float32Array(12), [3, 4]);
  const s2 = t(new Float32Array(2), [2]);
  const s3 = t(new Float32Array(3), [3]);
  const empty = t(new Float32Array(0), [0, 3]);
  assert.throws(() => mse(x, y), {
    message: "flowgpu: squaredError: b [3, 4] does not match a [2, 6]",
  });
  assert.throws(() => squaredError(empty, empty, "perSample"), {
    message: "flowgpu: squaredError: a must be [N, ...] with N > 0, got [0, 3]",
  });
  assert.throws(() => gaussianNll(x, y, s2), {
    message: /^flowgpu: gaussianNll: xbar \[3, 4\] does not/,
  });
  assert.throws(() => gaussianNll(x, x, s3), {
    message:
      "flowgpu: gaussianNll: logSigma [3] must hold one value per sample ([2] or [2, 1]) of x [2, 6]",
  });
  assert.throws(() => klStdNormal(x, y), {
    message: /^flowgpu: klStdNormal: logvar \[3, 4\] does not match/,
  });
  assert.throws(
    () => klStdNormalSigma(x, s2),
    { message: /^flowgpu: klStdNormalSigma: sigma \[2\] does not match mu \[2, 6\]/ },
  );
  assert.throws(
    () => klDiagGaussians(x, x, x, y),
    { message: /^flowgpu: klDiagGaussians: logvar2 \[3, 4\] does not match mu1 \[2, 6\]/ },
  );
  const z = t(new Float32Array(10), [2, 5]);
  assert.throws(() => gmLogits(z, x, x), {
    message: "flowgpu: gmLogits: mu [2, 6] needs the code size D = 5 of z [2, 5]",
  });
  assert.throws(() => gmLogits(z, z, x), {
    message: /^flowgpu: gmLogits: logvar \[2, 6\] does not match mu/,
  });
  assert.throws(() => gmLogits(s2, z, z), {
    message: /^flowgpu: gmLogits: needs z \[B, D\] and mu \[C, D\]/,
  });
  clearTape();
});

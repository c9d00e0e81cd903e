// Activations: erf (against an f64 erf written here, itself checked against tabulated values),
// abs, clamp, pow, PReLU, the WN-PReLU moments (against numerical integration of the definition,
// not the closed form) and the fused WN-PReLU; gradchecks away from kinks, and bad inputs.
// Sizes are not multiples of 4 (vec4 kernels straddle channels and the end), but for one shape
// per channel op whose plane is (the one-channel-per-vec4 path).
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randn, randu } from "./gradcheck.ts";
import { abs, clamp, erf, pow, prelu, wnPrelu, wnPreluMoments } from "../src/ops/activation.ts";
import { sum } from "../src/ops/reduce.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { numel, Tensor } from "../src/ops/tensor.ts";

/** erfc in f64: Lentz-free continued fraction (evaluated bottom-up) from 3 on, 1 - erf below. */
function erfc64(x: number): number {
  if (x < 3) return 1 - erf64(x);
  let f = x;
  for (let n = 60; n >= 1; n--) f = x + n / 2 / f;
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}

/** erf in f64: below 3 the series 2/sqrt(pi) e^{-x^2} sum 2^n x^{2n+1} / (2n+1)!! (all terms positive). */
function erf64(x: number): number {
  const ax = Math.abs(x);
  if (ax >= 3) return Math.sign(x) * (1 - erfc64(ax));
  let term = ax, s = ax;
  for (let n = 1; term > 1e-17 * s; n++) {
    term *= (2 * ax * ax) / (2 * n + 1);
    s += term;
  }
  return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * s;
}

const SHAPE = [3, 5, 7];
const N = numel(SHAPE);
const grad = async (f: (x: Tensor) => Tensor, data: ArrayLike<number>) => {
  const x = Tensor.from(data, [data.length], { requiresGrad: true });
  backward(sum(f(x)), { keep: [x] });
  const g = await x.grad!.read();
  clearTape();
  return g;
};

Deno.test("erf64 reference matches tabulated erf / erfc (mpmath, 17 digits)", () => {
  const table: [number, number, number][] = [
    [0.3, 0.32862675945912739, 0.67137324054087255],
    [1, 0.84270079294971489, 0.15729920705028513],
    [2.5, 0.99959304798255499, 0.00040695201744495892],
    [3.5, 0.99999925690162761, 7.4309837234141278e-7],
    [5, 0.99999999999846256, 1.5374597944280349e-12],
  ];
  for (const [x, e, c] of table) {
    assert.ok(Math.abs(erf64(x) - e) < 1e-15, `erf(${x})`);
    assert.ok(Math.abs(erf64(-x) + e) < 1e-15, `erf(-${x})`);
    assert.ok(Math.abs(erfc64(x) - c) < 1e-11 * c, `erfc(${x})`);
  }
});

Deno.test("erf: forward within 2e-7 of f64 erf on [-7, 7], relative 3e-7 below |x| = 1", async () => {
  const n = 14001; // step 1e-3, odd count
  const xs = Float32Array.from({ length: n }, (_, i) => -7 + (14 * i) / (n - 1));
  const y = await erf(Tensor.from(xs, [n])).read();
  let worst = 0, worstRel = 0;
  for (let i = 0; i < n; i++) {
    const ref = erf64(xs[i]);
    worst = Math.max(worst, Math.abs(y[i] - ref));
    if (Math.abs(xs[i]) < 1 && xs[i] !== 0) {
      worstRel = Math.max(worstRel, Math.abs(y[i] - ref) / Math.abs(ref));
    }
  }
  assert.ok(worst <= 2e-7, `max |erf - erf64| = ${worst}`);
  assert.ok(worstRel <= 3e-7, `max relative error below 1: ${worstRel}`);
  // Odd, and exact at 0 and in the tails.
  const z = await erf(Tensor.from([0, 12, -12, 1e-30], [4])).read();
  assert.deepEqual(Array.from(z.subarray(0, 3)), [0, 1, -1]);
  assert.ok(Math.abs(z[3] - 1.1283791670955126e-30) < 1e-36);
  clearTape();
});

Deno.test("erf: gradcheck and the gradient 2/sqrt(pi) exp(-x^2)", async () => {
  const data = randu(N, 3, -2.5, 2.5);
  await gradcheck(erf, [{ data, shape: SHAPE }], { label: "erf" });
  const g = await grad(erf, data);
  assertClose(g, Array.from(data, (x) => (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x)), {
    rtol: 1e-5,
    atol: 1e-7,
  });
});

// Inputs at least 0.05 from a kink, so that x +- h (h = 1e-2) stays on one side.
const awayFrom = (data: Float32Array, ...kinks: number[]) =>
  data.map((x) => {
    for (const k of kinks) if (Math.abs(x - k) < 0.05) return x + (x >= k ? 0.1 : -0.1);
    return x;
  });

Deno.test("abs: forward, gradcheck, and gradient sign(x) with 0 at 0", async () => {
  const data = awayFrom(randu(N, 4, -2, 2), 0);
  const y = await abs(Tensor.from(data, SHAPE)).read();
  assertClose(y, Array.from(data, Math.abs), { rtol: 0, atol: 0 });
  clearTape();
  await gradcheck(abs, [{ data, shape: SHAPE }], { label: "abs" });
  assert.deepEqual(Array.from(await grad(abs, [-2, 0, 3])), [-1, 0, 1]);
});

Deno.test("clamp: forward, gradcheck, and zero gradient outside [lo, hi]", async () => {
  const data = awayFrom(randu(N, 5, -2, 2), -0.7, 1.2);
  const y = await clamp(Tensor.from(data, SHAPE), -0.7, 1.2).read();
  assertClose(y, Array.from(data, (x) => Math.min(Math.max(x, -0.7), 1.2)), { rtol: 1e-7 });
  clearTape();
  await gradcheck((x) => clamp(x, -0.7, 1.2), [{ data, shape: SHAPE }], { label: "clamp" });
  const g = await grad((x) => clamp(x, -1, 1), [-3, -1, -0.5, 0, 0.99, 1, 1.01, 7]);
  assert.deepEqual(Array.from(g), [0, 1, 1, 1, 1, 1, 0, 0]);
  // One-sided: an infinite bound clamps nothing on its side.
  const h = await clamp(Tensor.from([-1e30, 5, 1e30], [3]), -Infinity, 2).read();
  assert.deepEqual(Array.from(h), [-1e30 * 1, 2, 2].map(Math.fround));
  clearTape();
});

for (const p of [2, 3, -1, 0.5, 1.5, -2.5]) {
  Deno.test(`pow x^${p}: forward matches f64 and gradcheck`, async () => {
    // Integer exponents take negative x; the others need x > 0. Away from 0, where negative
    // exponents curve too fast for a central difference of step 1e-2.
    const data = Number.isInteger(p)
      ? awayFrom(randu(N, 6, -2, 2), 0).map((x) => (Math.abs(x) < 0.3 ? x * 3 : x))
      : randu(N, 6, 0.6, 2.5);
    const y = await pow(Tensor.from(data, SHAPE), p).read();
    assertClose(y, Array.from(data, (x) => x ** p), { rtol: 2e-6, atol: 1e-7, label: `x^${p}` });
    clearTape();
    await gradcheck((x) => pow(x, p), [{ data, shape: SHAPE }], { label: `pow ${p}` });
  });
}

Deno.test("pow: zero and special exponents (0^0 = 1, 0^p, x^0, x^1, odd powers of negatives)", async () => {
  const xs = [0, -2, 3, 0.5];
  const at = async (p: number) => Array.from(await pow(Tensor.from(xs, [4]), p).read());
  assert.deepEqual(await at(0), [1, 1, 1, 1]);
  assert.deepEqual(await at(1), [0, -2, 3, 0.5]);
  assert.deepEqual(await at(3), [0, -8, 27, 0.125]);
  assert.deepEqual(await at(2), [0, 4, 9, 0.25]);
  const inv = await at(-1);
  assert.equal(inv[0], Infinity);
  assertClose(inv.slice(1), [-0.5, 1 / 3, 2], { rtol: 1e-6 });
  const half = await at(0.5);
  assert.equal(half[0], 0);
  assert.ok(Number.isNaN(half[1]), `(-2)^0.5 is NaN, got ${half[1]}`);
  clearTape();
  // d/dx x^2 at 0 is 0 and x^1 has slope 1 everywhere, x^3 has 3 x^2.
  assert.deepEqual(Array.from(await grad((x) => pow(x, 2), xs)), [0, -4, 6, 1]);
  assert.deepEqual(Array.from(await grad((x) => pow(x, 1), xs)), [1, 1, 1, 1]);
  assertClose(await grad((x) => pow(x, 3), xs), [0, 12, 27, 0.75], { rtol: 1e-6 });
});

/** PReLU in f64: per channel of [N, C, ...]; one slope shared when a has one value. */
function preluRef(x: ArrayLike<number>, shape: number[], a: ArrayLike<number>): number[] {
  const [, c] = shape;
  const inner = numel(shape.slice(2));
  return Array.from(
    x,
    (v, i) => (v > 0 ? v : a[a.length === 1 ? 0 : Math.floor(i / inner) % c] * v),
  );
}

for (const shape of [[2, 3, 5, 7], [5, 7], [3, 2, 3, 3], [3, 3, 2, 6]]) {
  const c = shape[1];
  const x = awayFrom(randn(numel(shape), 7), 0);
  const a = randu(c, 8, 0.05, 0.6);
  Deno.test(`prelu [${shape}]: forward matches f64 reference, per-channel and shared slope`, async () => {
    const y = prelu(Tensor.from(x, shape), Tensor.from(a, [c]));
    assertClose(await y.read(), preluRef(x, shape, a), { rtol: 1e-6, atol: 1e-7 });
    const y1 = prelu(Tensor.from(x, shape), Tensor.from([0.3], [1]));
    assertClose(await y1.read(), preluRef(x, shape, [0.3]), { rtol: 1e-6, atol: 1e-7 });
    clearTape();
  });
  Deno.test(`prelu [${shape}]: gradcheck (x, a) per channel and shared`, async () => {
    await gradcheck(prelu, [{ data: x, shape }, { data: a, shape: [c] }], {
      label: `prelu [${shape}]`,
    });
    await gradcheck(prelu, [{ data: x, shape }, { data: [0.25], shape: [1] }], {
      label: `prelu shared [${shape}]`,
    });
  });
}

Deno.test("prelu: da is the sum of x g over x < 0 per channel", async () => {
  const shape = [2, 3, 5];
  const x = randn(30, 9);
  const a = Tensor.from([0.1, 0.2, 0.3], [3], { requiresGrad: true });
  backward(sum(prelu(Tensor.from(x, shape), a)), { keep: [a] });
  const want = [0, 0, 0];
  x.forEach((v, i) => {
    if (v < 0) want[Math.floor(i / 5) % 3] += v;
  });
  assertClose(await a.grad!.read(), want, { rtol: 1e-5, atol: 1e-6 });
  clearTape();
});

/** Standard normal pdf and cdf in f64. */
const phi = (u: number) => Math.exp(-u * u / 2) / Math.sqrt(2 * Math.PI);

/**
 * E[prelu(u + b; a)] and its standard deviation for u ~ N(0, 1), by Simpson's rule over
 * [-14, 14] split at the kink u = -b: the definition itself, independent of the closed form.
 */
function momentsByQuadrature(a: number, b: number): [number, number] {
  const f = (u: number, k: number) => {
    const v = u + b;
    return (v > 0 ? v : a * v) ** k * phi(u);
  };
  const simpson = (lo: number, hi: number, k: number) => {
    const m = 4000, h = (hi - lo) / m;
    let s = f(lo, k) + f(hi, k);
    for (let i = 1; i < m; i++) s += (i % 2 ? 4 : 2) * f(lo + i * h, k);
    return (s * h) / 3;
  };
  const mom = (k: number) => simpson(-14, -b, k) + simpson(-b, 14, k);
  const m = mom(1);
  return [m, Math.sqrt(mom(2) - m * m)];
}

/** The closed form of spec 1.3, in f64 (Phi from erf64). */
function momentsClosed(a: number, b: number): [number, number] {
  const cdf = 0.5 * erfc64(b / Math.SQRT2);
  const A = b * cdf - phi(b), B = (1 + b * b) * cdf - b * phi(b);
  const m = b + (a - 1) * A;
  return [m, Math.sqrt(1 + b * b + (a * a - 1) * B - m * m)];
}

Deno.test("wnPreluMoments: matches the definition by quadrature (and the closed form)", async () => {
  const as = [0.25, 0.25, 0, 1, 0.6, 0.1, -0.3, 2, 0.25];
  const bs = [0, 1.3, 0, 0.7, -2, 4, -0.5, 0.2, -6];
  const c = as.length;
  const { mean, std } = wnPreluMoments(Tensor.from(as, [c]), Tensor.from(bs, [c]));
  const [m, s] = await Tensor.readAll([mean, std]);
  const quad = as.map((a, i) => momentsByQuadrature(a, bs[i]));
  const closed = as.map((a, i) => momentsClosed(a, bs[i]));
  for (let i = 0; i < c; i++) {
    assert.ok(Math.abs(quad[i][0] - closed[i][0]) < 1e-9, `closed-form m ${i}`);
    assert.ok(Math.abs(quad[i][1] - closed[i][1]) < 1e-9, `closed-form sd ${i}`);
  }
  assertClose(m, quad.map((q) => q[0]), { rtol: 2e-6, atol: 5e-7, label: "mean" });
  assertClose(s, quad.map((q) => q[1]), { rtol: 2e-6, atol: 5e-7, label: "std" });
  // a = 1 is the identity: N(b, 1).
  assertClose([m[3], s[3]], [0.7, 1], { rtol: 1e-6 });
  clearTape();
});

Deno.test("wnPreluMoments: gradcheck of mean and std in a and beta", async () => {
  const c = 7;
  const a = randu(c, 10, -0.2, 1.5), b = randu(c, 11, -2.5, 2.5);
  const inputs = [{ data: a, shape: [c] }, { data: b, shape: [c] }];
  await gradcheck((a, b) => wnPreluMoments(a, b).mean, inputs, { label: "wnPrelu mean" });
  await gradcheck((a, b) => wnPreluMoments(a, b).std, inputs, { label: "wnPrelu std" });
});

function wnPreluRef(x: ArrayLike<number>, shape: number[], a: number[], b: number[]): number[] {
  const c = shape[1], inner = numel(shape.slice(2));
  return Array.from(x, (v, i) => {
    const k = Math.floor(i / inner) % c;
    const [m, s] = momentsClosed(a[k], b[k]);
    const u = v + b[k];
    return ((u > 0 ? u : a[k] * u) - m) / s;
  });
}

for (const shape of [[3, 5, 3, 3], [7, 6], [2, 3, 2, 2]]) {
  const c = shape[1];
  const a = Array.from(randu(c, 12, 0.05, 0.6)), b = Array.from(randu(c, 13, -0.8, 0.8));
  // x + b away from the kink.
  const x = randn(numel(shape), 14).map((v, i) => {
    const k = Math.floor(i / numel(shape.slice(2))) % c;
    const u = v + b[k];
    return Math.abs(u) < 0.05 ? v + (u >= 0 ? 0.1 : -0.1) : v;
  });
  Deno.test(`wnPrelu [${shape}]: forward matches f64 reference`, async () => {
    const y = wnPrelu(Tensor.from(x, shape), Tensor.from(a, [c]), Tensor.from(b, [c]));
    assertClose(await y.read(), wnPreluRef(x, shape, a, b), { rtol: 2e-6, atol: 1e-6 });
    clearTape();
  });
  Deno.test(`wnPrelu [${shape}]: gradcheck (x, a, beta)`, async () => {
    await gradcheck(
      wnPrelu,
      [{ data: x, shape }, { data: a, shape: [c] }, { data: b, shape: [c] }],
      { label: `wnPrelu [${shape}]` },
    );
  });
}

Deno.test("wnPrelu: a unit-normal input leaves with mean ~0 and std ~1 per channel", async () => {
  const shape = [64, 3, 31, 31];
  const x = randn(numel(shape), 15);
  const a = [0.25, 0.05, 0.8], b = [0, 0.6, -1.1];
  const y = await wnPrelu(Tensor.from(x, shape), Tensor.from(a, [3]), Tensor.from(b, [3])).read();
  const inner = 31 * 31;
  for (let k = 0; k < 3; k++) {
    let s = 0, s2 = 0, cnt = 0;
    for (let n = 0; n < 64; n++) {
      for (let j = 0; j < inner; j++) {
        const v = y[(n * 3 + k) * inner + j];
        s += v;
        s2 += v * v;
        cnt++;
      }
    }
    const m = s / cnt, sd = Math.sqrt(s2 / cnt - m * m);
    // 61,504 samples: the standard error of the mean is ~0.004.
    assert.ok(Math.abs(m) < 0.02, `channel ${k} mean ${m}`);
    assert.ok(Math.abs(sd - 1) < 0.02, `channel ${k} std ${sd}`);
  }
  clearTape();
});

Deno.test("activations: bad inputs throw flowgpu errors naming the problem", () => {
  const x4 = Tensor.from(new Float32Array(24), [2, 3, 2, 2]);
  const a3 = Tensor.from([0.1, 0.2, 0.3], [3]);
  const a2 = Tensor.from([0.1, 0.2], [2]);
  assert.throws(
    () => prelu(x4, a2),
    { message: "flowgpu: prelu: x [2, 3, 2, 2] needs slopes a of shape [3] or [1], got [2]" },
  );
  assert.throws(
    () => prelu(Tensor.from([1, 2, 3], [3]), a3),
    { message: "flowgpu: prelu: x [3] is not [N, C] or [N, C, H, W]" },
  );
  assert.throws(
    () => wnPrelu(x4, a3, a2),
    { message: "flowgpu: wnPrelu: needs a and beta of shape [3], got [3] and [2]" },
  );
  assert.throws(
    () => wnPreluMoments(a3, Tensor.from(new Float32Array(3), [1, 3])),
    { message: "flowgpu: wnPreluMoments: needs a and beta of shape [3], got [3] and [1, 3]" },
  );
  assert.throws(() => clamp(x4, 1, -1), { message: "flowgpu: clamp: lo 1 is not <= hi -1" });
  assert.throws(() => pow(x4, NaN), { message: "flowgpu: pow: exponent NaN is not finite" });
  clearTape();
});

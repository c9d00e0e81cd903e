// GPU random numbers: the Philox reference against Random123's known answers, the GPU's bits
// against the reference, determinism per (seed, counter) and the GPU-side counter, the moments
// and distribution of 131,075 normals and uniforms (tolerances from the sample size), independence
// of consecutive counters and of seeds, and reparameterize (forward, gradcheck with a fixed seed,
// errors). Sizes are not multiples of 4.
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randn, randu } from "./gradcheck.ts";
import { GpuRng, reparameterize } from "../src/ops/random.ts";
import { clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";

// ---- f64 / BigInt reference of Philox-4x32-10 and of the kernels' maps to (0, 1) and N(0, 1) ----
const M0 = 0xd2511f53n, M1 = 0xcd9e8d57n, W0 = 0x9e3779b9n, W1 = 0xbb67ae85n;
const MASK = 0xffffffffn;

function philoxRef(ctr: number[], key: number[]): number[] {
  let [c0, c1, c2, c3] = ctr.map(BigInt);
  let [k0, k1] = key.map(BigInt);
  for (let r = 0; r < 10; r++) {
    const p0 = M0 * c0, p1 = M1 * c2;
    [c0, c1, c2, c3] = [(p1 >> 32n) ^ c1 ^ k0, p1 & MASK, (p0 >> 32n) ^ c3 ^ k1, p0 & MASK];
    k0 = (k0 + W0) & MASK;
    k1 = (k1 + W1) & MASK;
  }
  return [c0, c1, c2, c3].map(Number);
}

/** The 32-bit words of a draw of n elements at (seed, counter). */
function bitsRef(seed: number, counter: number, n: number): number[] {
  const key = [seed % 2 ** 32, Math.floor(seed / 2 ** 32)];
  const out: number[] = [];
  for (let b = 0; out.length < n; b++) {
    out.push(...philoxRef([b, 0, counter % 2 ** 32, Math.floor(counter / 2 ** 32)], key));
  }
  return out.slice(0, n);
}

const unitRef = (w: number) => ((w >>> 9) + 0.5) / 2 ** 23;

function normalRef(seed: number, counter: number, n: number): number[] {
  const u = bitsRef(seed, counter, n + 3).map(unitRef);
  const out: number[] = [];
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u[i])), t = 2 * Math.PI * (u[i + 1] - 0.5);
    out.push(r * Math.cos(t), r * Math.sin(t));
  }
  return out.slice(0, n);
}

/** Standard normal CDF via erfc (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7). */
function phi(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  const t = 1 / (1 + 0.5 * z);
  const erfc = t * Math.exp(
    -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
                  t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
                                  t * (-0.82215223 + t * 0.17087277)))))))),
  );
  return x >= 0 ? 1 - erfc / 2 : erfc / 2;
}

/** Kolmogorov-Smirnov distance of a sample from a CDF. */
function ks(xs: ArrayLike<number>, cdf: (x: number) => number): number {
  const s = Float64Array.from(xs).sort();
  let d = 0;
  for (let i = 0; i < s.length; i++) {
    const f = cdf(s[i]);
    d = Math.max(d, f - i / s.length, (i + 1) / s.length - f);
  }
  return d;
}

function moments(xs: ArrayLike<number>) {
  const n = xs.length;
  let m = 0;
  for (let i = 0; i < n; i++) m += xs[i] / n;
  let m2 = 0, m3 = 0, m4 = 0;
  for (let i = 0; i < n; i++) {
    const d = xs[i] - m;
    m2 += d * d / n;
    m3 += d ** 3 / n;
    m4 += d ** 4 / n;
  }
  return { mean: m, variance: m2, skew: m3 / m2 ** 1.5, kurtosis: m4 / (m2 * m2) - 3 };
}

function corr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const ma = moments(a).mean, mb = moments(b).mean;
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += (a[i] - ma) * (b[i] - mb);
    aa += (a[i] - ma) ** 2;
    bb += (b[i] - mb) ** 2;
  }
  return ab / Math.sqrt(aa * bb);
}

async function draw(seed: number, counter: number, kind: "uniform" | "normal", shape: number[]) {
  const rng = new GpuRng(seed, counter);
  const v = await rng[kind](shape).read();
  rng.release();
  clearTape();
  return v;
}

const N = 131075; // 2^17 + 3
const Z = 5; // tolerances are 5 standard errors (a false alarm has probability ~6e-7)

Deno.test("Philox reference: Random123's three philox4x32-10 known answers", () => {
  assert.deepEqual(philoxRef([0, 0, 0, 0], [0, 0]), [
    0x6627e8d5,
    0xe169c58d,
    0xbc57ac4c,
    0x9b00dbd8,
  ]);
  const f = 0xffffffff;
  assert.deepEqual(philoxRef([f, f, f, f], [f, f]), [
    0x408f276d,
    0x41c83b0e,
    0xa20bc7c6,
    0x6d5451fd,
  ]);
  assert.deepEqual(
    philoxRef([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
    [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
  );
});

Deno.test("uniform: the GPU's bits equal the reference's (seed and counter past 2^32 too)", async () => {
  // Seed 0, counter 0, block 0 is the first known answer: its top 23 bits, exactly.
  const first = await draw(0, 0, "uniform", [4]);
  assert.deepEqual(
    Array.from(first),
    [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8].map(unitRef),
  );
  for (const [seed, counter] of [[12345, 7], [2 ** 40 + 5, 2 ** 33 + 3], [1, 2 ** 32 - 1]]) {
    const got = await draw(seed, counter, "uniform", [17, 59]);
    assert.deepEqual(Array.from(got), bitsRef(seed, counter, 17 * 59).map(unitRef), `${seed}`);
  }
});

Deno.test("normal: Box-Muller of the same bits, against f64", async () => {
  for (const [seed, counter] of [[3, 0], [987654321, 41]]) {
    const got = await draw(seed, counter, "normal", [1003]);
    // f32 log, sqrt, sin and cos of a radius up to 5.77: a few ulps of 5.77.
    assertClose(got, normalRef(seed, counter, 1003), { rtol: 2e-6, atol: 2e-6 });
  }
});

Deno.test("GpuRng: deterministic per (seed, counter); the GPU-side counter advances per draw", async () => {
  const a = await draw(42, 5, "normal", [3, 7]);
  const b = await draw(42, 5, "normal", [3, 7]);
  assert.deepEqual(a, b);
  // Draw k of one stream (mixed kinds and sizes, one encoder, no readback in between) equals the
  // first draw of a stream started at counter 5 + k, across the 2^32 carry as well.
  for (const start of [5, 2 ** 32 - 2]) {
    const rng = new GpuRng(42, start);
    const ts = [rng.normal([3, 7]), rng.uniform([5]), rng.normal([2, 3, 3]), rng.uniform([9])];
    assert.equal(rng.counter, start + 4);
    const got = await Tensor.readAll(ts);
    const kinds = ["normal", "uniform", "normal", "uniform"] as const;
    for (let k = 0; k < 4; k++) {
      assert.deepEqual(got[k], await draw(42, start + k, kinds[k], [...ts[k].shape]), `draw ${k}`);
    }
    // seek() goes back.
    rng.seek(start + 2);
    assert.deepEqual(await rng.normal([2, 3, 3]).read(), got[2]);
    assert.equal(rng.counter, start + 3);
    rng.release();
    clearTape();
  }
});

Deno.test(`normal: mean, variance, skewness, kurtosis and KS of ${N} values`, async () => {
  const x = await draw(2024, 0, "normal", [N]);
  assert.ok(x.every((v) => Number.isFinite(v) && Math.abs(v) <= 5.77), "finite and bounded");
  const m = moments(x);
  assert.ok(Math.abs(m.mean) < Z / Math.sqrt(N), `mean ${m.mean}`);
  assert.ok(Math.abs(m.variance - 1) < Z * Math.sqrt(2 / N), `variance ${m.variance}`);
  assert.ok(Math.abs(m.skew) < Z * Math.sqrt(6 / N), `skewness ${m.skew}`);
  assert.ok(Math.abs(m.kurtosis) < Z * Math.sqrt(24 / N), `excess kurtosis ${m.kurtosis}`);
  // KS: P(sqrt(N) D > 1.95) = 0.001.
  const d = ks(x, phi);
  assert.ok(d < 1.95 / Math.sqrt(N), `KS distance ${d}`);
  // Both Box-Muller lanes are standard normal on their own (cos lanes, sin lanes).
  for (const lane of [0, 1]) {
    const sub = x.filter((_, i) => i % 2 === lane);
    const dl = ks(sub, phi);
    assert.ok(dl < 1.95 / Math.sqrt(sub.length), `lane ${lane}: KS ${dl}`);
  }
});

Deno.test(`uniform: in (0, 1), mean, variance and KS of ${N} values`, async () => {
  const u = await draw(7, 3, "uniform", [N]);
  assert.ok(u.every((v) => v > 0 && v < 1), "open interval");
  const m = moments(u);
  assert.ok(Math.abs(m.mean - 0.5) < Z * Math.sqrt(1 / 12 / N), `mean ${m.mean}`);
  // Var of (U - 1/2)^2 for U uniform is 1/180.
  assert.ok(Math.abs(m.variance - 1 / 12) < Z * Math.sqrt(1 / 180 / N), `variance ${m.variance}`);
  const d = ks(u, (v) => v);
  assert.ok(d < 1.95 / Math.sqrt(N), `KS distance ${d}`);
});

Deno.test("independence: consecutive counters, neighbouring seeds, adjacent elements", async () => {
  const tol = Z / Math.sqrt(N);
  const a = await draw(11, 100, "normal", [N]);
  const b = await draw(11, 101, "normal", [N]);
  const c = await draw(12, 100, "normal", [N]);
  const pairs: [string, ArrayLike<number>, ArrayLike<number>][] = [
    ["counter c vs c + 1", a, b],
    ["seed 11 vs 12", a, c],
    ["squares, counter c vs c + 1", a.map((v) => v * v), b.map((v) => v * v)],
    ["element i vs i + 1", a.subarray(0, N - 1), a.subarray(1)],
    ["element i vs i + 4 (next block)", a.subarray(0, N - 4), a.subarray(4)],
    // The two lanes of a Box-Muller pair share a radius; they are still independent.
    [
      "squares of a pair's lanes",
      a.filter((_, i) => i % 2 === 0 && i + 1 < N).map((v) => v * v),
      a.filter((_, i) => i % 2 === 1).map((v) => v * v),
    ],
  ];
  for (const [what, x, y] of pairs) {
    const r = corr(x, y);
    assert.ok(Math.abs(r) < tol, `${what}: correlation ${r}`);
  }
  // Different seeds differ: at 23 bits a coincidence has probability 2^-23 per element.
  const same = a.filter((v, i) => v === c[i]).length;
  assert.ok(same <= 3, `${same} equal values for different seeds`);
});

const SHAPE = [3, 7];
const mu = randn(21, 1), lv = randu(21, 2, -1.5, 1);

Deno.test("reparameterize: z = mu + exp(logvar / 2) eps, eps from the stream or given", async () => {
  const rng = new GpuRng(99, 4);
  const z = reparameterize(Tensor.from(mu, SHAPE), Tensor.from(lv, SHAPE), rng);
  assert.equal(rng.counter, 5, "one draw");
  const eps = normalRef(99, 4, 21);
  const want = eps.map((e, i) => mu[i] + Math.exp(lv[i] / 2) * e);
  assertClose(await z.read(), want, { rtol: 4e-6, atol: 4e-6 });
  // The same numbers as rng.normal at that counter: given as a tensor, the same z.
  rng.seek(4);
  const e = rng.normal(SHAPE);
  const z2 = reparameterize(Tensor.from(mu, SHAPE), Tensor.from(lv, SHAPE), e);
  assert.deepEqual(await z2.read(), await z.read());
  rng.release();
  clearTape();
});

Deno.test("reparameterize: gradcheck mu and logvar with a fixed seed (eps constant)", async () => {
  const rng = new GpuRng(5);
  // Every forward of the check replays counter 3, so eps is the same constant each time.
  await gradcheck(
    (m, v) => {
      rng.seek(3);
      return reparameterize(m, v, rng);
    },
    [{ data: mu, shape: SHAPE }, { data: lv, shape: SHAPE }],
    { label: "reparameterize, drawn eps" },
  );
  rng.seek(3);
  const eps = Tensor.constant(await rng.normal(SHAPE).read(), SHAPE);
  await gradcheck(
    (m, v) => reparameterize(m, v, eps),
    [{ data: mu, shape: SHAPE }, { data: lv, shape: SHAPE }],
    { label: "reparameterize, given eps" },
  );
  await gradcheck(
    (m, v) => reparameterize(m, v, eps),
    [{ data: mu, shape: SHAPE, grad: false }, { data: lv, shape: SHAPE }],
    { label: "reparameterize, logvar only" },
  );
  eps.release();
  rng.release();
});

Deno.test("GpuRng, reparameterize: bad seeds, counters and shapes throw naming them", () => {
  assert.throws(() => new GpuRng(-1), {
    message: "flowgpu: GpuRng: seed -1 is not an integer in [0, 2^53)",
  });
  assert.throws(() => new GpuRng(1.5), { message: /^flowgpu: GpuRng: seed 1.5 is not/ });
  assert.throws(() => new GpuRng(2 ** 53), { message: /^flowgpu: GpuRng: seed 9007199254740992/ });
  const rng = new GpuRng(1);
  assert.throws(() => rng.seek(-3), {
    message: "flowgpu: GpuRng: counter -3 is not an integer in [0, 2^53)",
  });
  const m = Tensor.from(new Float32Array(6), [2, 3]);
  const v = Tensor.from(new Float32Array(6), [3, 2]);
  assert.throws(() => reparameterize(m, v, rng), {
    message: "flowgpu: reparameterize: logvar [3, 2] does not match mu [2, 3]",
  });
  assert.throws(() => reparameterize(m, m, v), {
    message: "flowgpu: reparameterize: eps [3, 2] does not match mu [2, 3]",
  });
  rng.release();
  clearTape();
});

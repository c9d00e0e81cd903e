// Squeeze, actnorm and affine coupling: forward vs f64 reference, gradchecks, inverse and log-det.
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randn, randu } from "./gradcheck.ts";
import { bruteLogdet, roundTripError } from "./flowcheck.ts";
import { squeeze, unsqueeze } from "../src/ops/squeeze.ts";
import { actnorm, actnormInit, actnormInverse, actnormLogdet } from "../src/ops/actnorm.ts";
import { affineCoupling, affineCouplingInverse } from "../src/ops/coupling.ts";
import { clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { sumPerSample } from "../src/ops/reduce.ts";

Deno.test("squeeze: matches the spec's index map, unsqueeze inverts it", async () => {
  const shape = [2, 3, 6, 4];
  const x = randn(2 * 3 * 6 * 4, 1);
  const y = await squeeze(Tensor.from(x, shape)).read();
  const want = new Float32Array(x.length);
  for (let n = 0; n < 2; n++) {
    for (let c = 0; c < 3; c++) {
      for (let h = 0; h < 3; h++) {
        for (let w = 0; w < 2; w++) {
          for (let i = 0; i < 2; i++) {
            for (let j = 0; j < 2; j++) {
              want[((n * 12 + 4 * c + 2 * i + j) * 3 + h) * 2 + w] =
                x[((n * 3 + c) * 6 + 2 * h + i) * 4 + 2 * w + j];
            }
          }
        }
      }
    }
  }
  assert.deepEqual(y, want);
  assert.equal(await roundTripError(squeeze, unsqueeze, x, shape), 0);
  clearTape();
});

Deno.test("squeeze/unsqueeze: gradcheck", async () => {
  await gradcheck(squeeze, [{ data: randn(60, 2), shape: [1, 3, 2, 10] }]);
  await gradcheck(unsqueeze, [{ data: randn(40, 3), shape: [1, 8, 1, 5] }]);
});

Deno.test("squeeze: odd sizes give a clear error", () => {
  assert.throws(() => squeeze(Tensor.from(new Float32Array(49), [1, 1, 7, 7])), /cannot be halved/);
  clearTape();
});

const AN = [3, 5, 3, 7]; // N, C, H, W: nothing a multiple of 4
const anSize = 3 * 5 * 3 * 7;

Deno.test("actnorm: forward vs reference, inverse, log-det vs brute force", async () => {
  const x = randn(anSize, 4);
  const a = randu(5, 5, -1, 1), b = randu(5, 6, -1, 1);
  const y = await actnorm(Tensor.from(x, AN), Tensor.from(a, [5]), Tensor.from(b, [5])).read();
  assertClose(
    y,
    Array.from(x, (v, i) => Math.exp(a[Math.floor(i / 21) % 5]) * v + b[Math.floor(i / 21) % 5]),
    { rtol: 1e-5, atol: 1e-6 },
  );
  const A = Tensor.constant(a, [5]), B = Tensor.constant(b, [5]);
  const err = await roundTripError((t) => actnorm(t, A, B), (t) => actnormInverse(t, A, B), x, AN);
  assert.ok(err < 1e-5, `round trip ${err}`);
  const ld = await actnormLogdet(Tensor.from(x, AN), A).item();
  const small = [2, 3, 2, 2];
  const xs = randn(24, 7);
  const A3 = Tensor.constant(a.slice(0, 3), [3]), B3 = Tensor.constant(b.slice(0, 3), [3]);
  const brute = await bruteLogdet((t) => actnorm(t, A3, B3), xs, small);
  const ld3 = await actnormLogdet(Tensor.from(xs, small), A3).item();
  for (const v of brute) assert.ok(Math.abs(v - ld3) < 1e-2, `brute ${v} vs ${ld3}`);
  assert.ok(Math.abs(ld - 21 * a.reduce((s, v) => s + v, 0)) < 1e-4);
  clearTape();
});

// [3, 5, 2, 6]: each channel's plane (12) is a multiple of 4, so the vec4 kernels run.
for (const shape of [AN, [3, 5, 2, 6]]) {
  const n = shape.reduce((p, q) => p * q), plane = shape[2] * shape[3];
  Deno.test(`actnorm ${JSON.stringify(shape)}: forward vs reference`, async () => {
    const x = randn(n, 40), a = randu(5, 41, -1, 1), b = randu(5, 42, -1, 1);
    const y = await actnorm(Tensor.from(x, shape), Tensor.from(a, [5]), Tensor.from(b, [5])).read();
    const c = (i: number) => Math.floor(i / plane) % 5;
    assertClose(y, Array.from(x, (v, i) => Math.exp(a[c(i)]) * v + b[c(i)]), {
      rtol: 1e-5,
      atol: 1e-6,
    });
    clearTape();
  });
  Deno.test(`actnorm ${JSON.stringify(shape)}: gradcheck x, a, b and the log-det`, async () => {
    const inputs = [
      { data: randn(n, 8), shape },
      { data: randu(5, 9, -0.5, 0.5), shape: [5] },
      { data: randu(5, 10), shape: [5] },
    ];
    await gradcheck((x, a, b) => actnorm(x, a, b), inputs, { label: "actnorm" });
    // The log-det does not depend on x (zero gradient, none recorded): only a is checked.
    await gradcheck((x, a) => actnormLogdet(x, a), [{ ...inputs[0], grad: false }, inputs[1]], {
      label: "actnorm logdet",
    });
  });
}

Deno.test("actnorm: data-dependent init gives zero mean, unit variance per channel", async () => {
  const x = randn(anSize, 11).map((v, i) => 3 * v + (Math.floor(i / 21) % 5) - 2);
  const a = Tensor.param(new Float32Array(5), [5], "a");
  const b = Tensor.param(new Float32Array(5), [5], "b");
  const xt = Tensor.from(x, AN);
  actnormInit(xt, a, b);
  const y = await actnorm(xt, a, b).read();
  for (let c = 0; c < 5; c++) {
    const v: number[] = [];
    for (let i = 0; i < anSize; i++) if (Math.floor(i / 21) % 5 === c) v.push(y[i]);
    const m = v.reduce((s, q) => s + q, 0) / v.length;
    const sd = Math.sqrt(v.reduce((s, q) => s + (q - m) ** 2, 0) / v.length);
    assert.ok(Math.abs(m) < 1e-4 && Math.abs(sd - 1) < 1e-3, `channel ${c}: mean ${m}, std ${sd}`);
  }
  clearTape();
  a.release();
  b.release();
});

const CB = [2, 3, 5, 3]; // x_b; h has 6 channels
const cbSize = 2 * 3 * 5 * 3;
const sig = (v: number) => 1 / (1 + Math.exp(-v));

Deno.test("affine coupling: forward vs reference, inverse", async () => {
  const xb = randn(cbSize, 12), h = randn(2 * cbSize, 13);
  const { yb, logs } = affineCoupling(Tensor.from(xb, CB), Tensor.from(h, [2, 6, 5, 3]));
  const y = await yb.read(), ls = await logs.read();
  const wantY: number[] = [], wantL: number[] = [];
  for (let i = 0; i < cbSize; i++) {
    const s = i % 15, nc = Math.floor(i / 15), n = Math.floor(nc / 3), c = nc % 3;
    const t = h[(n * 6 + 2 * c) * 15 + s], r = h[(n * 6 + 2 * c + 1) * 15 + s];
    wantY.push((xb[i] + t) * sig(r + 2));
    wantL.push(Math.log(sig(r + 2)));
  }
  assertClose(y, wantY, { rtol: 1e-5, atol: 1e-6 });
  assertClose(ls, wantL, { rtol: 1e-5, atol: 1e-6 });
  const H = Tensor.constant(h, [2, 6, 5, 3]);
  const err = await roundTripError(
    (t) => affineCoupling(t, H).yb,
    (t) => affineCouplingInverse(t, H).xb,
    xb,
    CB,
  );
  assert.ok(err < 1e-5, `round trip ${err}`);
  clearTape();
});

Deno.test("affine coupling: gradcheck y_b and log s w.r.t. x_b and h", async () => {
  const inputs = [{ data: randn(cbSize, 14), shape: CB }, {
    data: randn(2 * cbSize, 15),
    shape: [2, 6, 5, 3],
  }];
  await gradcheck((x, h) => affineCoupling(x, h).yb, inputs, { label: "coupling y" });
  // log s depends on h alone (x_b gets no gradient from it).
  await gradcheck((x, h) => affineCoupling(x, h).logs, [{ ...inputs[0], grad: false }, inputs[1]], {
    label: "coupling log s",
  });
});

Deno.test("affine coupling: log-det equals brute-force log|det J| with fixed h", async () => {
  const small = [2, 2, 2, 2];
  const xb = randn(16, 16);
  const H = Tensor.constant(randn(32, 17), [2, 4, 2, 2]);
  const brute = await bruteLogdet((t) => affineCoupling(t, H).yb, xb, small);
  const ld = await sumPerSample(affineCoupling(Tensor.from(xb, small), H).logs).read();
  brute.forEach((v, n) => assert.ok(Math.abs(v - ld[n]) < 1e-2, `sample ${n}: ${v} vs ${ld[n]}`));
  clearTape();
});

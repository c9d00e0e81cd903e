import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randn } from "./gradcheck.ts";
import { logAbsDet } from "./flowcheck.ts";
import { encoderStats } from "../src/gpu/encoder.ts";
import { randomRotation } from "../src/models/lu.ts";
import { eliminationPlan, inverseLogdet } from "../src/ops/linalg.ts";
import { add, mul } from "../src/ops/elementwise.ts";
import { sum } from "../src/ops/reduce.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";

Deno.test("inverseLogdet: W W^-1 = I and log|det| vs f64 LU, batched, odd size", async () => {
  const b = 3, c = 7;
  const w = randn(b * c * c, 21);
  const { inv, logabsdet } = inverseLogdet(Tensor.from(w, [b, c, c]));
  const wi = await inv.read(), ld = await logabsdet.read();
  for (let m = 0; m < b; m++) {
    const prod: number[] = [], eye: number[] = [];
    for (let i = 0; i < c; i++) {
      for (let j = 0; j < c; j++) {
        let s = 0;
        for (let k = 0; k < c; k++) s += w[m * c * c + i * c + k] * wi[m * c * c + k * c + j];
        prod.push(s);
        eye.push(i === j ? 1 : 0);
      }
    }
    assertClose(prod, eye, { atol: 1e-4, rtol: 0, label: `W W^-1 (matrix ${m})` });
    const ref = logAbsDet(Float64Array.from(w.subarray(m * c * c, (m + 1) * c * c)), c);
    assert.ok(Math.abs(ld[m] - ref) < 1e-4, `log|det| ${ld[m]} vs ${ref}`);
  }
  clearTape();
});

Deno.test("inverseLogdet: gradcheck of log|det W| (= W^-T)", async () => {
  const c = 5;
  const w = randn(c * c, 22).map((v, i) => v + (i % (c + 1) === 0 ? 3 : 0)); // well conditioned
  await gradcheck((x) => inverseLogdet(x).logabsdet, [{ data: w, shape: [c, c] }]);
});

Deno.test("inverseLogdet: non-square input is refused", () => {
  assert.throws(() => inverseLogdet(Tensor.from(new Float32Array(6), [2, 3])), /square/);
  clearTape();
});

/** W^-1 and log|det W| by Gauss-Jordan elimination with partial pivoting, in f64. */
function inverse64(w: ArrayLike<number>, c: number): { inv: Float64Array; logabsdet: number } {
  const a = Float64Array.from(w);
  const inv = new Float64Array(c * c);
  for (let i = 0; i < c; i++) inv[i * c + i] = 1;
  let logabsdet = 0;
  for (let k = 0; k < c; k++) {
    let p = k;
    for (let i = k + 1; i < c; i++) if (Math.abs(a[i * c + k]) > Math.abs(a[p * c + k])) p = i;
    for (let j = 0; j < c; j++) {
      [a[k * c + j], a[p * c + j]] = [a[p * c + j], a[k * c + j]];
      [inv[k * c + j], inv[p * c + j]] = [inv[p * c + j], inv[k * c + j]];
    }
    const d = a[k * c + k];
    logabsdet += Math.log(Math.abs(d));
    for (let j = 0; j < c; j++) {
      a[k * c + j] /= d;
      inv[k * c + j] /= d;
    }
    for (let i = 0; i < c; i++) {
      const f = a[i * c + k];
      if (i === k || f === 0) continue;
      for (let j = 0; j < c; j++) {
        a[i * c + j] -= f * a[k * c + j];
        inv[i * c + j] -= f * inv[k * c + j];
      }
    }
  }
  return { inv, logabsdet };
}

function matmul64(a: ArrayLike<number>, b: ArrayLike<number>, c: number): Float64Array {
  const out = new Float64Array(c * c);
  for (let i = 0; i < c; i++) {
    for (let k = 0; k < c; k++) {
      const aik = a[i * c + k];
      for (let j = 0; j < c; j++) out[i * c + j] += aik * b[k * c + j];
    }
  }
  return out;
}

/**
 * A batch of [C, C] matrices: random rotations (|det| = 1, W^-1 = W^T), then Q1 diag(s) Q2 with
 * s in [0.5, 2] (condition number <= 4, non-orthogonal, log|det| = sum log s), as f32.
 */
function testBatch(c: number, rotations: number, others: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array((rotations + others) * c * c);
  for (let m = 0; m < rotations; m++) out.set(randomRotation(c, rng), m * c * c);
  for (let m = rotations; m < rotations + others; m++) {
    const q1 = randomRotation(c, rng), q2 = randomRotation(c, rng);
    for (let i = 0; i < c; i++) {
      const s = 0.5 * 4 ** rng.next();
      for (let j = 0; j < c; j++) q1[j * c + i] *= s; // scales column i of Q1
    }
    out.set(matmul64(q1, q2, c), m * c * c);
  }
  return out;
}

// Sizes past C = 38, where one invocation running the whole elimination hit Mesa's loop limiter
// and returned a wrong W^-1; 200 puts two columns on each thread and spreads over many dispatches.
for (const c of [1, 5, 12, 39, 48, 64, 96, 200]) {
  Deno.test(`inverseLogdet: W^-1, log|det W| vs f64 at C = ${c}, rotations + non-orthogonal, B = 4`, async () => {
    const b = 4;
    const w = testBatch(c, 2, 2, 40 + c);
    const before = encoderStats();
    const { inv, logabsdet } = inverseLogdet(Tensor.from(w, [b, c, c]));
    const after = encoderStats();
    // Every pivot step is encoded into the open encoder: no submit, the planned dispatches only.
    assert.equal(after.submits, before.submits, "inverseLogdet submitted work");
    const plan = eliminationPlan(c);
    assert.equal(after.dispatches - before.dispatches, plan.dispatches);
    const got = await inv.read(), ld = await logabsdet.read();
    for (let m = 0; m < b; m++) {
      const o = m * c * c;
      const ref = inverse64(w.subarray(o, o + c * c), c);
      // f32 elimination error grows ~ C eps cond(W) (cond <= 4); a wrong step is O(1).
      assertClose(got.subarray(o, o + c * c), ref.inv, {
        atol: 2e-7 * c,
        rtol: 0,
        label: `W^-1 [${m}] at C = ${c}`,
      });
      assert.ok(
        Math.abs(ld[m] - ref.logabsdet) < 2e-7 * c,
        `log|det W| [${m}] at C = ${c}: ${ld[m]} vs ${ref.logabsdet}`,
      );
    }
    clearTape();
  });
}

Deno.test("inverseLogdet: elimination plan keeps each invocation under 4096 loop iterations", () => {
  for (let c = 1; c <= 512; c++) {
    const { wg, steps, dispatches } = eliminationPlan(c);
    const cols = Math.ceil(Math.ceil(c / 4) / wg);
    assert.ok(wg <= 256 && wg % 32 === 0, `C = ${c}: workgroup ${wg}`);
    assert.ok(steps * dispatches >= c && steps * (dispatches - 1) < c, `C = ${c}: split`);
    // Loop passes (a loop costs its trips plus one), as the shader's loops are nested.
    const perThread = 1 + cols * (c + 2) + 1 + cols * (2 * c + 4) + 1 +
      steps * (2 + cols * (c + 2));
    assert.ok(steps === 1 || perThread <= 4096, `C = ${c}: ${perThread} iterations`);
  }
  assert.deepEqual(eliminationPlan(96), { wg: 32, steps: 37, dispatches: 3 });
});

// The backward kernels do not depend on how the forward is split, but they read its W^-1: at
// C = 96 (three dispatches) the gradient of sum(G * W^-1) + sum(log|det W|) is checked against
// f64, -W^-T G W^-T + W^-T (a finite-difference gradcheck here would drown in the log-det's
// rounding, ~10 ulps of a sum of 96 logs).
Deno.test("inverseLogdet: backward of W^-1 and log|det W| vs f64 at C = 96, B = 2", async () => {
  const b = 2, c = 96;
  const w = testBatch(c, 1, 1, 25);
  const g = randn(b * c * c, 26);
  const W = Tensor.param(w, [b, c, c], "w");
  const { inv, logabsdet } = inverseLogdet(W);
  backward(add(sum(mul(inv, Tensor.constant(g, [b, c, c], "g"))), sum(logabsdet)), { keep: [W] });
  const dw = await W.grad!.read();
  for (let m = 0; m < b; m++) {
    const o = m * c * c;
    const a = inverse64(w.subarray(o, o + c * c), c).inv;
    const at = new Float64Array(c * c);
    for (let i = 0; i < c; i++) for (let j = 0; j < c; j++) at[i * c + j] = a[j * c + i];
    const want = matmul64(matmul64(at, g.subarray(o, o + c * c), c), at, c);
    for (let i = 0; i < c * c; i++) want[i] = at[i] - want[i];
    // Each term sums C products of O(1) values.
    assertClose(dw.subarray(o, o + c * c), want, { atol: 2e-5, rtol: 1e-4, label: `dW [${m}]` });
  }
  clearTape();
  W.release();
});

Deno.test("inverseLogdet: a singular matrix gives log|det| = -inf", async () => {
  const c = 5;
  const w = randn(c * c, 24);
  for (let j = 0; j < c; j++) w[3 * c + j] = 0;
  const { logabsdet } = inverseLogdet(Tensor.from(w, [c, c]));
  assert.equal((await logabsdet.read())[0], -Infinity);
  clearTape();
});

// The gradient checker itself: it must catch gradients that are slightly wrong on part of a large
// output, never accumulated, wrong only in the last element, or wrong away from a kink, and pass
// the same ops with their backward right. The faulty ops run real forward kernels and record a
// deliberately wrong backward through the tape.
import assert from "node:assert/strict";
import "./setup.ts";
import { gradcheck, randu, sampleIndices } from "./gradcheck.ts";
import { binary, unary } from "../src/ops/elementwise.ts";
import { accumulate, noGrad, record } from "../src/ops/tape.ts";
import { type Shape, Tensor } from "../src/ops/tensor.ts";

const numel = (s: Shape) => s.reduce((a, b) => a * b, 1);

/**
 * y = exp(x) by the real kernel, recorded with the backward dx = g * y * s, s a per-channel [C]
 * or full-shape factor: all ones is the right gradient, anything else a wrong one.
 */
function expWith(s: ArrayLike<number>, sShape: Shape) {
  return (x: Tensor) => {
    const y = noGrad(() => unary("exp", x));
    return record(y, [x], (g) => {
      accumulate(x, binary("mul", binary("mul", g, y), Tensor.from(s, sShape)));
    });
  };
}

/** y = relu(x) by the real kernel, backward dx = g * [x > 0] * s_c per channel. */
function reluWith(s: ArrayLike<number>) {
  return (x: Tensor) => {
    const y = noGrad(() => unary("relu", x));
    return record(y, [x], (g) => {
      const step = binary("div", y, x); // 1 where x > 0, 0 where x < 0 (no x is exactly 0)
      accumulate(x, binary("mul", binary("mul", g, step), Tensor.from(s, [s.length])));
    });
  };
}

/** y = a + b by the real kernel, whose backward forgets b. */
function addForgettingB(a: Tensor, b: Tensor): Tensor {
  const y = noGrad(() => binary("add", a, b));
  return record(y, [a, b], (g) => accumulate(a, g));
}

const channelOf = (i: number, shape: Shape) => Math.floor(i / (shape[2] * shape[3])) % shape[1];

Deno.test("sampleIndices: first and last always, the rest spread evenly", () => {
  assert.deepEqual(sampleIndices(10, 4), [0, 3, 6, 9]);
  assert.deepEqual(sampleIndices(315, 2), [0, 314]);
  assert.deepEqual(sampleIndices(315, 1), [0, 314]);
  assert.deepEqual(sampleIndices(5), [0, 1, 2, 3, 4]);
  assert.deepEqual(sampleIndices(5, 9), [0, 1, 2, 3, 4]);
  assert.deepEqual(sampleIndices(1, 3), [0]);
  const s = sampleIndices(4096, 64);
  assert.equal(s.length, 64);
  assert.equal(s[0], 0);
  assert.equal(s[63], 4095);
  for (let i = 1; i < s.length; i++) assert.ok(s[i] - s[i - 1] === 65 || s[i] - s[i - 1] === 64);
});

// (a) 4096 outputs; channel 2 of 8 gets a gradient 1% too large.
const A: Shape = [2, 8, 16, 16];
const aData = randu(numel(A), 21);

Deno.test("gradcheck catches a gradient 1% off on one channel of [2, 8, 16, 16]", async () => {
  const s = Array.from({ length: 8 }, (_, c) => (c === 2 ? 1.01 : 1));
  const r = await gradcheck(expWith(s, [8]), [{ data: aData, shape: A }], {
    maxElements: 64,
    noThrow: true,
  });
  assert.match(r.failure ?? "", /elements mismatch/);
  assert.equal(r.checked, 64);
  // Exactly the sampled elements of channel 2 fail, each by about 1% of its gradient.
  const bad = r.elements.filter((e) => e.verdict === "mismatch");
  const inC2 = r.elements.filter((e) => channelOf(e.index, A) === 2);
  assert.ok(inC2.length >= 7, `${inC2.length} sampled in channel 2`);
  assert.deepEqual(bad.map((e) => e.index), inC2.map((e) => e.index));
  for (const e of bad) {
    assert.equal(e.changed, 1);
    const rel = (e.analytic - e.numeric) / e.numeric;
    assert.ok(Math.abs(rel - 0.01) < 1e-3, `[${e.index}] relative error ${rel}`);
    assert.ok(e.tol < 0.005 * Math.abs(e.numeric), `[${e.index}] tol ${e.tol}`);
  }
  await assert.rejects(
    gradcheck(expWith(s, [8]), [{ data: aData, shape: A }], { maxElements: 64, label: "exp" }),
    /gradcheck exp: \d+ of 64 elements mismatch\n {2}input0 \[\d+\]: analytic/,
  );
});

Deno.test("gradcheck passes the same op with its backward right", async () => {
  const r = await gradcheck(expWith(new Array(8).fill(1), [8]), [{ data: aData, shape: A }], {
    maxElements: 64,
  });
  assert.equal(r.checked, 64);
  assert.ok(r.elements.every((e) => e.verdict === "ok" && e.changed === 1));
  assert.ok(r.maxErr < 0.5, `maxErr ${r.maxErr}`);
});

// (b) 65 536 outputs: each element of b moves one output by w_i, under the old atol.
const B: Shape = [4, 16, 32, 32];

Deno.test("gradcheck fails an input whose gradient is never accumulated", async () => {
  const inputs = [{ data: randu(numel(B), 22), shape: B }, {
    data: randu(numel(B), 23),
    shape: B,
  }];
  await assert.rejects(
    gradcheck(addForgettingB, inputs, { maxElements: 8, label: "add" }),
    /gradcheck add: 'input1' requires a gradient but got none from backward/,
  );
  // The same op with b not asking for a gradient passes (a's is right).
  const r = await gradcheck(addForgettingB, [inputs[0], { ...inputs[1], grad: false }], {
    maxElements: 8,
  });
  assert.equal(r.checked, 8);
});

Deno.test("gradcheck fails a params tensor that gets no gradient, naming it", async () => {
  const gain = Tensor.param(randu(3, 24), [3], "gain");
  const bias = Tensor.param(randu(3, 25), [3], "bias");
  try {
    // bias is added by the real op, but the recorded backward only reaches x and gain.
    const f = (x: Tensor) => {
      const y = binary("mul", x, gain);
      const z = noGrad(() => binary("add", y, bias));
      return record(z, [y, bias], (g) => accumulate(y, g));
    };
    await assert.rejects(
      gradcheck(f, [{ data: randu(2 * 3 * 4, 26), shape: [2, 3, 4] }], {
        params: [gain, bias],
        label: "affine",
      }),
      /gradcheck affine: 'bias' requires a gradient but got none/,
    );
  } finally {
    gain.release();
    bias.release();
  }
});

// (c) A tail bug: the last element (315 = 4 * 78 + 3, past the last whole vec4) gets no gradient.
Deno.test("gradcheck catches a wrong gradient in the last element only", async () => {
  const shape = [3, 5, 7, 3];
  const n = numel(shape);
  const s = new Float32Array(n).fill(1);
  s[n - 1] = 0;
  const r = await gradcheck(expWith(s, shape), [{ data: randu(n, 27), shape }], {
    maxElements: 12,
    noThrow: true,
  });
  const bad = r.elements.filter((e) => e.verdict === "mismatch");
  assert.deepEqual(bad.map((e) => e.index), [n - 1]);
  assert.equal(Math.abs(bad[0].analytic), 0);
  assert.ok(Math.abs(bad[0].numeric) > 0.01, `numeric ${bad[0].numeric}`);
  assert.match(r.failure ?? "", /1 of 12 elements mismatch\n {2}input0 \[314\]: analytic -?0,/);
});

// (d) ReLU in kink mode: some inputs within h of the kink, the rest far from it.
const D: Shape = [2, 3, 4, 5];
const dData = randu(numel(D), 28).map((v, i) =>
  i % 7 === 3 ? (i % 2 ? 3e-4 : -4e-4) : (Math.abs(v) < 0.05 ? v + 0.1 : v)
);

Deno.test("gradcheck kinks: a right ReLU passes, its kinks accepted only as kinks", async () => {
  const r = await gradcheck(reluWith([1, 1, 1]), [{ data: dData, shape: D }], { kinks: true });
  assert.equal(r.checked, numel(D));
  // The inputs 3e-4 / 4e-4 from the kink fail the central difference and are accepted as kinks.
  const near = r.elements.filter((e) => Math.abs(dData[e.index]) < 1e-3);
  assert.ok(near.length >= 15, `${near.length} near the kink`);
  assert.ok(near.every((e) => e.verdict === "kink"), JSON.stringify(near.map((e) => e.verdict)));
  assert.equal(r.kinks, near.length);
  assert.equal(r.skipped, 0);
  // Without kink mode those same elements fail.
  const plain = await gradcheck(reluWith([1, 1, 1]), [{ data: dData, shape: D }], {
    noThrow: true,
  });
  const bad = plain.elements.filter((e) => e.verdict === "mismatch").map((e) => e.index);
  assert.deepEqual(bad, near.map((e) => e.index));
});

Deno.test("gradcheck kinks: a gradient 1% off away from kinks fails", async () => {
  const r = await gradcheck(reluWith([1, 1.01, 1]), [{ data: dData, shape: D }], {
    kinks: true,
    noThrow: true,
  });
  // Every element of channel 1 on the positive side, away from the kink, fails; nothing else.
  const want = r.elements.filter((e) => channelOf(e.index, D) === 1 && dData[e.index] > 1e-3);
  assert.ok(want.length >= 5);
  const bad = r.elements.filter((e) => e.verdict === "mismatch");
  assert.deepEqual(bad.map((e) => e.index), want.map((e) => e.index));
  assert.match(r.failure ?? "", /agree: no kink/);
});

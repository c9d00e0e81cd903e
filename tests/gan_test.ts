// GAN losses: BCE with logits (constant, per-sample tensor and array targets; exact for large
// |s|), LSGAN square loss, hinge loss; forwards against f64 references, gradchecks (hinge away
// from its kink at t s = 1), and bad inputs. Score counts are not multiples of 4.
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randn, randu } from "./gradcheck.ts";
import { bceWithLogits, hingeLoss, lsganLoss } from "../src/ops/gan.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { numel, Tensor } from "../src/ops/tensor.ts";

/** log(1 + e^x) in f64 without overflow. */
const softplus64 = (x: number) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const tAt = (t: number | ArrayLike<number>, i: number) => (typeof t === "number" ? t : t[i]);

const bceRef = (s: ArrayLike<number>, t: number | ArrayLike<number>) =>
  mean(Array.from(s, (v, i) => tAt(t, i) * softplus64(-v) + (1 - tAt(t, i)) * softplus64(v)));
const lsRef = (s: ArrayLike<number>, t: number | ArrayLike<number>) =>
  mean(Array.from(s, (v, i) => (v - tAt(t, i)) ** 2));
const hingeRef = (s: ArrayLike<number>, y: number) =>
  mean(Array.from(s, (v) => Math.max(1 - y * v, 0)));

for (const shape of [[7], [5, 1], [3, 5]]) {
  const n = numel(shape);
  const s = randn(n, 1, 2.5);
  const soft = randu(n, 2, 0, 1);
  Deno.test(`bceWithLogits [${shape}]: real, fake, smoothed and per-sample targets`, async () => {
    const cases: [string, number | Float32Array | Tensor, number | Float32Array][] = [
      ["real", 1, 1],
      ["fake", 0, 0],
      ["smoothed 0.9", 0.9, 0.9],
      ["per-sample array", soft, soft],
      // Persistent: the gradcheck clears the tape between its forwards.
      ["per-sample tensor", Tensor.constant(soft, shape), soft],
    ];
    for (const [what, t, ref] of cases) {
      const y = bceWithLogits(Tensor.from(s, shape), t);
      assert.deepEqual(y.shape, [1]);
      assertClose([await y.item()], [bceRef(s, ref)], { rtol: 2e-6, atol: 1e-7, label: what });
      clearTape();
      await gradcheck((x) => bceWithLogits(x, t), [{ data: s, shape }], {
        label: `bce ${what} [${shape}]`,
      });
      if (t instanceof Tensor) t.release();
    }
  });
  Deno.test(`lsganLoss [${shape}]: targets +1, -1, 0 and per sample; gradcheck`, async () => {
    const per = randn(n, 3);
    for (const [t, ref] of [[1, 1], [-1, -1], [0, 0], [per, per]] as const) {
      const y = lsganLoss(Tensor.from(s, shape), t);
      assertClose([await y.item()], [lsRef(s, ref)], { rtol: 2e-6, atol: 1e-7 });
      clearTape();
      await gradcheck((x) => lsganLoss(x, t), [{ data: s, shape }], { label: `lsgan [${shape}]` });
    }
  });
  Deno.test(`hingeLoss [${shape}]: real and fake, gradcheck away from the margin`, async () => {
    // Scores at least 0.05 from +-1 (the kinks of relu(1 -+ s)).
    const x = s.map((v) => {
      for (const k of [1, -1]) if (Math.abs(v - k) < 0.05) return v + (v >= k ? 0.1 : -0.1);
      return v;
    });
    for (const [side, y] of [["real", 1], ["fake", -1]] as const) {
      const l = hingeLoss(Tensor.from(x, shape), side);
      assertClose([await l.item()], [hingeRef(x, y)], { rtol: 2e-6, atol: 1e-7 });
      clearTape();
      await gradcheck((t) => hingeLoss(t, side), [{ data: x, shape }], {
        label: `hinge ${side} [${shape}]`,
      });
    }
  });
}

Deno.test("bceWithLogits: large |s| exact (softplus with log1p), gradient sigmoid(s) - t", async () => {
  // softplus(-30) = 9.4e-14: log(1 + e^-30) in f32 would be 0.
  const s = [30, -30, 20, -20, 80, 0.5, -3];
  for (const t of [1, 0]) {
    for (let i = 0; i < s.length; i++) {
      const y = await bceWithLogits(Tensor.from([s[i]], [1]), t).item();
      const want = bceRef([s[i]], t);
      assertClose([y], [want], { rtol: 1e-5, atol: 0, label: `s ${s[i]}, t ${t}` });
    }
    clearTape();
  }
  const x = Tensor.from(s, [s.length], { requiresGrad: true });
  backward(bceWithLogits(x, 0.25), { keep: [x] });
  const want = s.map((v) => (1 / (1 + Math.exp(-v)) - 0.25) / s.length);
  assertClose(await x.grad!.read(), want, { rtol: 1e-6, atol: 1e-9 });
  clearTape();
});

Deno.test("hingeLoss: gradient -1/n or 1/n inside the margin, 0 outside", async () => {
  const s = [-2, -0.5, 0.5, 2, 3];
  for (const [side, y] of [["real", 1], ["fake", -1]] as const) {
    const x = Tensor.from(s, [5], { requiresGrad: true });
    backward(hingeLoss(x, side), { keep: [x] });
    const want = s.map((v) => (1 - y * v > 0 ? -y / 5 : 0));
    assertClose(await x.grad!.read(), want, { rtol: 1e-7, atol: 0 });
    clearTape();
  }
});

Deno.test("gan losses: bad inputs throw flowgpu errors naming the problem", () => {
  const s = Tensor.from(randn(6, 4), [3, 2]);
  assert.throws(() => bceWithLogits(s, 1.5), {
    message: "flowgpu: bceWithLogits: target 1.5 is not in [0, 1]",
  });
  assert.throws(() => bceWithLogits(s, [1, 0, 1, 2, 0, 1]), {
    message: "flowgpu: bceWithLogits: target[3] = 2 is not in [0, 1]",
  });
  assert.throws(() => bceWithLogits(s, [1, 0]), {
    message: "flowgpu: bceWithLogits: 2 targets for scores [3, 2] (need 6)",
  });
  assert.throws(() => lsganLoss(s, Tensor.from([1, 2, 3], [3])), {
    message: "flowgpu: lsganLoss: target [3] does not match scores [3, 2]",
  });
  assert.throws(() => lsganLoss(s, NaN), {
    message: "flowgpu: lsganLoss: target NaN is not finite",
  });
  assert.throws(() => hingeLoss(s, "true" as "real"), {
    message: "flowgpu: hingeLoss: side 'true' is not 'real' or 'fake'",
  });
  assert.throws(() => hingeLoss(Tensor.from([], [0, 1]), "real"), {
    message: "flowgpu: hingeLoss: scores [0, 1] are empty",
  });
  clearTape();
});

// Adam over flat parameter groups against an f64 AdamW reference, the NaN/Inf guard, a gradient
// norm over more than 64 partial sums, and one dispatch per group whatever the tensor count.
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, randn } from "./gradcheck.ts";
import { encoderStats } from "../src/gpu/encoder.ts";
import { ParamStore } from "../src/nn/store.ts";
import { Adam } from "../src/ops/adam.ts";
import { accumulate } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";

/** Plain f64 AdamW with global-norm clipping, the reference for the kernel. */
function adamRef(
  p: number[][],
  grads: number[][][],
  o: { lr: number; b1: number; b2: number; eps: number; wd: number; clip: number },
) {
  const m = p.map((x) => x.map(() => 0));
  const v = p.map((x) => x.map(() => 0));
  const norms: number[] = [];
  grads.forEach((gs, step) => {
    const t = step + 1;
    const norm = Math.sqrt(gs.flat().reduce((a, g) => a + g * g, 0));
    norms.push(norm);
    const scale = o.clip > 0 && norm > o.clip ? o.clip / norm : 1;
    p.forEach((x, k) =>
      x.forEach((_, i) => {
        const g = gs[k][i] * scale;
        m[k][i] = o.b1 * m[k][i] + (1 - o.b1) * g;
        v[k][i] = o.b2 * v[k][i] + (1 - o.b2) * g * g;
        const mh = m[k][i] / (1 - o.b1 ** t), vh = v[k][i] / (1 - o.b2 ** t);
        x[i] -= o.lr * (mh / (Math.sqrt(vh) + o.eps) + o.wd * x[i]);
      })
    );
  });
  return norms;
}

/** Hand each parameter a gradient the way backward does (into its group's flat slot). */
function setGrads(params: Tensor[], gs: Float32Array[]) {
  params.forEach((p, k) => accumulate(p, Tensor.from(gs[k], p.shape)));
}

// Two groups (one optimizer spans both), shapes that are not multiples of 4 or 64, and one
// tensor of 70 * 64 elements so that the norm has more than 64 partial sums.
const shapes: Record<string, number[]> = {
  "a.w": [3, 5],
  "a.b": [7],
  "b.conv": [2, 3, 3, 3],
  "b.big": [70, 64],
};

for (const clip of [0, 3]) {
  Deno.test(`adam: 5 steps over two groups match the f64 reference (clip ${clip || "off"}, weight decay)`, async () => {
    const store = new ParamStore(1);
    const names = Object.keys(shapes);
    const init = names.map((n, k) => randn(shapes[n].reduce((a, b) => a * b), 10 + k));
    const params = names.map((n, k) => store.scope().param(n, shapes[n], init[k]));
    const o = { lr: 0.01, b1: 0.9, b2: 0.99, eps: 1e-8, wd: 0.1, clip };
    const opt = new Adam(store.groups(), {
      lr: o.lr,
      beta1: o.b1,
      beta2: o.b2,
      eps: o.eps,
      weightDecay: o.wd,
      clipNorm: clip,
    });
    assert.equal(store.groups().length, 2);
    const grads: number[][][] = [];
    let lastNorm = 0;
    for (let step = 0; step < 5; step++) {
      const gs = params.map((p, k) => randn(p.size, 100 * step + k, 2));
      grads.push(gs.map((g) => Array.from(g)));
      setGrads(params, gs);
      opt.step();
      lastNorm = (await opt.lastGradNorm()).norm;
      assert.equal(params[0].grad, undefined, "step drops the gradients");
    }
    const ref = init.map((x) => Array.from(x));
    const norms = adamRef(ref, grads, o);
    for (let k = 0; k < params.length; k++) {
      assertClose(await params[k].read(), ref[k], { rtol: 1e-5, atol: 1e-6, label: names[k] });
    }
    assert.ok(Math.abs(lastNorm - norms[4]) < 1e-4 * norms[4], `norm ${lastNorm} vs ${norms[4]}`);
    // The gradient buffers were zeroed by the step, padding included.
    for (const g of store.groups()) {
      assert.ok((await g.grads.read()).every((v) => v === 0), `${g.name} gradients zeroed`);
    }
    opt.release();
    store.release();
  });
}

Deno.test("adam: a non-finite gradient skips the step and reports the norm", async () => {
  const store = new ParamStore(1);
  const p = store.scope("g").param("p", [3], [1, 2, 3]);
  const opt = new Adam(store.groups(), { lr: 0.1 });
  setGrads([p], [new Float32Array([1, NaN, 1])]);
  opt.step();
  const { norm, scale } = await opt.lastGradNorm();
  assert.ok(Number.isNaN(norm), "norm is NaN");
  assert.equal(scale, 0);
  assert.deepEqual(Array.from(await p.read()), [1, 2, 3]);
  opt.release();
  store.release();
});

Deno.test("adam: dispatches per step do not grow with the number of tensors", () => {
  const store = new ParamStore(1);
  for (let i = 0; i < 50; i++) store.scope("g").param(`p${i}`, [5], new Float32Array(5));
  const opt = new Adam(store.groups());
  const before = encoderStats().dispatches;
  opt.step();
  // sumsq, clip_finish, adam, zero the gradients: four for one group of 50 tensors.
  assert.equal(encoderStats().dispatches - before, 4);
  opt.release();
  store.release();
});

import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, randn } from "./gradcheck.ts";
import { Adam } from "../src/ops/adam.ts";
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

for (const clip of [0, 3]) {
  Deno.test(`adam: 5 steps match the f64 reference (clip ${clip || "off"}, weight decay)`, async () => {
    const shapes = [[3, 5], [7], [2, 3, 3, 3]];
    const init = shapes.map((s, k) => randn(s.reduce((a, b) => a * b), 10 + k));
    const params = shapes.map((s, k) => Tensor.param(init[k], s, `p${k}`));
    const o = { lr: 0.01, b1: 0.9, b2: 0.99, eps: 1e-8, wd: 0.1, clip };
    const opt = new Adam(params, {
      lr: o.lr,
      beta1: o.b1,
      beta2: o.b2,
      eps: o.eps,
      weightDecay: o.wd,
      clipNorm: clip,
    });
    const grads: number[][][] = [];
    let lastNorm = 0;
    for (let step = 0; step < 5; step++) {
      const gs = params.map((p, k) => randn(p.size, 100 * step + k, 2));
      grads.push(gs.map((g) => Array.from(g)));
      params.forEach((p, k) => (p.grad = Tensor.param(gs[k], p.shape, "g")));
      opt.step();
      lastNorm = (await opt.lastGradNorm()).norm;
      assert.equal(params[0].grad, undefined, "step drops the gradients");
    }
    const ref = init.map((x) => Array.from(x));
    const norms = adamRef(ref, grads, o);
    for (let k = 0; k < params.length; k++) {
      assertClose(await params[k].read(), ref[k], { rtol: 1e-5, atol: 1e-6, label: `p${k}` });
    }
    assert.ok(Math.abs(lastNorm - norms[4]) < 1e-4 * norms[4], `norm ${lastNorm} vs ${norms[4]}`);
    params.forEach((p) => p.release());
  });
}

Deno.test("adam: a non-finite gradient skips the step and reports the norm", async () => {
  const p = Tensor.param([1, 2, 3], [3], "p");
  const opt = new Adam([p], { lr: 0.1 });
  p.grad = Tensor.param([1, NaN, 1], [3], "g");
  opt.step();
  const { norm, scale } = await opt.lastGradNorm();
  assert.ok(Number.isNaN(norm), "norm is NaN");
  assert.equal(scale, 0);
  assert.deepEqual(Array.from(await p.read()), [1, 2, 3]);
  p.release();
});

// The store's layers and the autoencoder: gradchecks of output w.r.t. input and every parameter,
// actnorm's data-dependent init (zero mean, unit variance per channel, once), and shape errors.
import assert from "node:assert/strict";
import "./setup.ts";
import { gradcheck, randn } from "./gradcheck.ts";
import { Autoencoder } from "../src/models/ae.ts";
import { ActNorm, Conv2d, Linear, ZeroConv } from "../src/nn/layers.ts";
import { ParamStore } from "../src/nn/store.ts";
import { clearTape, noGrad } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";

/** Move parameters off zero inits so that every path carries a gradient. */
async function perturb(store: ParamStore, seed: number) {
  const rng = new Rng(seed);
  for (const t of store.params()) t.write((await t.read()).map((v) => v + 0.3 * rng.normal()));
}

Deno.test("layers: Linear, Conv2d (stride 1 and 2), ZeroConv gradchecks with their parameters", async () => {
  const cases: [string, (s: ParamStore) => { apply(x: Tensor): Tensor }, number[]][] = [
    ["linear", (s) => new Linear(s.scope("l"), 5, 3), [4, 5]],
    ["conv 3x3", (s) => new Conv2d(s.scope("c"), 3, 4, 3), [2, 3, 5, 6]],
    ["conv 3x3 stride 2", (s) => new Conv2d(s.scope("c"), 3, 4, 3, { stride: 2 }), [2, 3, 7, 9]],
    ["conv 1x1 no bias", (s) => new Conv2d(s.scope("c"), 3, 2, 1, { bias: false }), [2, 3, 3, 5]],
    ["zero conv", (s) => new ZeroConv(s.scope("z"), 3, 2), [2, 3, 4, 5]],
  ];
  for (const [label, make, shape] of cases) {
    const store = new ParamStore(4);
    const layer = make(store);
    await perturb(store, 5);
    const n = shape.reduce((a, b) => a * b, 1);
    await gradcheck((x) => layer.apply(x), [{ data: randn(n, 6), shape }], {
      params: store.params(),
      label,
      maxElements: 16,
    });
    store.release();
  }
});

Deno.test("layers: actnorm initialises from its first batch only, then is a plain affine", async () => {
  const store = new ParamStore(1);
  const an = new ActNorm(store.scope("an"), 3);
  const x = randn(2 * 3 * 4 * 5, 2, 3).map((v, i) => v + (Math.floor(i / 20) % 3) * 5);
  const y = await noGrad(() => an.apply(Tensor.from(x, [2, 3, 4, 5]))).read();
  assert.equal(an.initialized.value, true);
  for (let c = 0; c < 3; c++) {
    const vals: number[] = [];
    for (let b = 0; b < 2; b++) for (let i = 0; i < 20; i++) vals.push(y[(b * 3 + c) * 20 + i]);
    const mean = vals.reduce((a, v) => a + v, 0) / vals.length;
    const sd = Math.sqrt(vals.reduce((a, v) => a + (v - mean) ** 2, 0) / vals.length);
    assert.ok(Math.abs(mean) < 1e-5 && Math.abs(sd - 1) < 1e-4, `channel ${c}: ${mean}, ${sd}`);
  }
  const a = await an.a.read();
  noGrad(() => an.apply(Tensor.from(x.map((v) => 2 * v), [2, 3, 4, 5])));
  assert.deepEqual(await an.a.read(), a, "a second batch does not re-initialise");
  clearTape();
  await gradcheck((t) => an.apply(t), [{ data: x, shape: [2, 3, 4, 5] }], {
    params: store.params(),
    label: "actnorm layer",
    maxElements: 16,
  });
  store.release();
});

Deno.test("autoencoder: gradcheck of the loss w.r.t. input and every parameter; shapes checked", async () => {
  const store = new ParamStore(2);
  const ae = new Autoencoder(store.scope("ae"), { channels: 1, size: 8, hidden: 2, latent: 3 });
  await perturb(store, 3);
  const x = randn(2 * 64, 4).map((v) => 0.5 + 0.2 * v);
  await gradcheck((t) => ae.loss(t).loss, [{ data: x, shape: [2, 1, 8, 8] }], {
    params: store.params(),
    label: "ae loss",
    maxElements: 8,
    kinks: true,
  });
  assert.throws(
    () => ae.encode(Tensor.from(new Float32Array(2 * 36), [2, 1, 6, 6])),
    /not \[N, 1, 8, 8\]/,
  );
  assert.throws(
    () => new Autoencoder(store.scope("b"), { channels: 1, size: 6, hidden: 2, latent: 3 }),
    /size 6 is not a multiple of 4/,
  );
  clearTape();
  store.release();
});

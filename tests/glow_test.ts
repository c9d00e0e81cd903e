// Glow's flow layers and the whole model: gradchecks (inputs and parameters), inverse round
// trips, log-det against a brute-force Jacobian, forward + inverse log-det = 0.
import assert from "node:assert/strict";
import "./setup.ts";
import { gradcheck, randn } from "./gradcheck.ts";
import { bruteLogdet } from "./flowcheck.ts";
import { Rng } from "../src/data/rng.ts";
import { ActNorm, Coupling, type FlowLayer, FlowStep, InvConv1x1 } from "../src/models/flow.ts";
import { Glow } from "../src/models/glow.ts";
import { Params } from "../src/models/params.ts";
import { sumPerSample } from "../src/ops/reduce.ts";
import { concatChannels, reshape } from "../src/ops/shape.ts";
import { clearTape, noGrad } from "../src/ops/tape.ts";
import { type Shape, Tensor } from "../src/ops/tensor.ts";

/** Move every trainable parameter off its (often zero) initialisation. */
async function perturb(p: Params, seed: number, std = 0.2) {
  const rng = new Rng(seed);
  for (const t of p.list()) {
    const v = await t.read();
    t.write(v.map((x) => x + std * rng.normal()));
  }
  p.initialized = true;
}

const logdetOf = (r: { logdet?: Tensor }, n: number) =>
  r.logdet
    ? r.logdet.read().then((v) => (v.length === 1 ? Array(n).fill(v[0]) : Array.from(v)))
    : Promise.resolve(Array(n).fill(0));

async function checkLayer(
  name: string,
  make: (p: Params) => FlowLayer,
  shape: Shape,
  seed: number,
) {
  const p = new Params(new Rng(seed));
  const layer = make(p);
  await perturb(p, seed + 1);
  const n = shape[0];
  const size = shape.reduce((a, b) => a * b, 1);
  const x = randn(size, seed + 2);

  // inverse(forward(x)) ≈ x, and forward + inverse log-dets cancel.
  const fwd = noGrad(() => layer.forward(Tensor.from(x, shape)));
  const inv = layer.inverse(fwd.y);
  const back = await inv.x.read();
  const err = back.reduce((m, v, i) => Math.max(m, Math.abs(v - x[i])), 0) /
    x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  assert.ok(err < 1e-5, `${name}: inverse(forward(x)) relative error ${err}`);
  const ldF = await logdetOf(fwd, n), ldI = await logdetOf(inv, n);
  ldF.forEach((v, i) =>
    assert.ok(
      Math.abs(v + ldI[i]) < 1e-4 * Math.max(1, Math.abs(v)),
      `${name}: logdet ${v} + inverse ${ldI[i]} != 0`,
    )
  );

  // log-det vs brute force
  const brute = await bruteLogdet((t) => layer.forward(t).y, x, shape);
  brute.forEach((b, i) =>
    assert.ok(
      Math.abs(b - ldF[i]) < 2e-2,
      `${name}: brute log|det J| ${b} vs ${ldF[i]} (sample ${i})`,
    )
  );
  clearTape();

  // gradients of y and of the log-det w.r.t. the input and every parameter
  await gradcheck((t) => layer.forward(t).y, [{ data: x, shape }], {
    params: p.list(),
    label: `${name} y`,
    maxElements: 12,
    kinks: true,
  });
  await gradcheck(
    (t) => {
      const r = layer.forward(t);
      return r.logdet ?? sumPerSample(t);
    },
    [{ data: x, shape }],
    { params: p.list(), label: `${name} logdet`, maxElements: 12, kinks: true },
  );
  p.release();
}

const S = [2, 4, 3, 3];
Deno.test("flow layer: actnorm", () =>
  checkLayer("actnorm", (p) => new ActNorm(p, "an", 4), S, 10));
Deno.test("flow layer: invertible 1x1 conv, LU", () =>
  checkLayer("invconv LU", (p) => new InvConv1x1(p, "w", 4, true), S, 20));
Deno.test("flow layer: invertible 1x1 conv, plain", () =>
  checkLayer("invconv plain", (p) => new InvConv1x1(p, "w", 4, false), S, 30));
Deno.test("flow layer: affine coupling", () =>
  checkLayer("affine coupling", (p) => new Coupling(p, "c", 4, 5, true), S, 40));
Deno.test("flow layer: additive coupling", () =>
  checkLayer("additive coupling", (p) => new Coupling(p, "c", 4, 5, false), S, 50));
Deno.test("flow layer: flow step", () =>
  checkLayer("flow step", (p) => new FlowStep(p, "s", 4, 3, { lu: true, affine: true }), S, 60));

const tiny = { channels: 1, height: 4, width: 4, levels: 2, depth: 1, hidden: 4, seed: 3 };

Deno.test("glow: encode/decode round trip and log-det vs brute force on a tiny model", async () => {
  const glow = new Glow(tiny);
  await perturb(glow.params, 5);
  const shape = [2, 1, 4, 4];
  const x = randn(32, 6, 0.5);
  const flat = (t: Tensor) => {
    const { latents } = glow.flow(t);
    return concatChannels(latents.map((z) => reshape(z, [z.shape[0], z.size / z.shape[0]])));
  };
  const brute = await bruteLogdet(flat, x, shape);
  const ld = await noGrad(() => glow.flow(Tensor.from(x, shape)).logdet).read();
  brute.forEach((b, i) =>
    assert.ok(Math.abs(b - ld[ld.length === 1 ? 0 : i]) < 2e-2, `brute ${b} vs ${ld[i]}`)
  );
  const latents = glow.encode(Tensor.from(x, shape));
  const back = await glow.decode(latents).read();
  const err = back.reduce((m, v, i) => Math.max(m, Math.abs(v - x[i])), 0);
  assert.ok(err < 1e-5, `decode(encode(x)) error ${err}`);
  clearTape();
  glow.params.release();
});

Deno.test("glow: gradcheck of the loss w.r.t. input and parameters (tiny, class-conditional)", async () => {
  const glow = new Glow({ ...tiny, classes: 3 });
  await perturb(glow.params, 7, 0.1);
  await gradcheck((t) => glow.loss(t, [0, 2]), [{ data: randn(32, 8, 0.5), shape: [2, 1, 4, 4] }], {
    params: glow.params.list(),
    maxElements: 4,
    label: "glow loss",
    kinks: true,
  });
  glow.params.release();
});

Deno.test("glow: a shape the squeeze cannot halve is refused", () => {
  assert.throws(() => new Glow({ ...tiny, height: 6, width: 6, levels: 2 }), /cannot be squeezed/);
});

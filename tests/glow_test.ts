// Glow's flow layers and the whole model: gradchecks (inputs and parameters), inverse round
// trips, log-det against a brute-force Jacobian, forward + inverse log-det = 0; the LU layer's
// initial W; log p(x) rebuilt independently from the latents; sample() against the inverse.
import assert from "node:assert/strict";
import "./setup.ts";
import { gradcheck, randn } from "./gradcheck.ts";
import { bruteLogdet } from "./flowcheck.ts";
import { Rng } from "../src/util/rng.ts";
import { ActNorm, Coupling, type FlowLayer, FlowStep, InvConv1x1 } from "../src/models/flow.ts";
import { Glow } from "../src/models/glow.ts";
import { randomRotation } from "../src/models/lu.ts";
import { ParamStore } from "../src/nn/store.ts";
import { concatChannels, reshape } from "../src/ops/shape.ts";
import { unsqueeze } from "../src/ops/squeeze.ts";
import { clearTape, noGrad } from "../src/ops/tape.ts";
import { type Shape, Tensor } from "../src/ops/tensor.ts";

/** Move every trainable parameter off its (often zero) initialisation; mark actnorms set. */
async function perturb(store: ParamStore, seed: number, std = 0.2) {
  const rng = new Rng(seed);
  for (const t of store.params()) {
    const v = await t.read();
    t.write(v.map((x) => x + std * rng.normal()));
  }
  for (const f of store.flags.values()) f.value = true;
}

const logdetOf = (r: { logdet?: Tensor }, n: number) =>
  r.logdet
    ? r.logdet.read().then((v) => (v.length === 1 ? Array(n).fill(v[0]) : Array.from(v)))
    : Promise.resolve(Array(n).fill(0));

/**
 * What a layer's log-det depends on: the input or not, and which parameters (none: the layer has
 * no log-det, as additive coupling).
 */
interface LogdetDeps {
  x: boolean;
  params?: RegExp;
}

async function checkLayer(
  name: string,
  make: (s: ParamStore) => FlowLayer,
  shape: Shape,
  seed: number,
  ld: LogdetDeps,
) {
  const store = new ParamStore(seed);
  const layer = make(store);
  await perturb(store, seed + 1);
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
  const params = store.params();
  await gradcheck((t) => layer.forward(t).y, [{ data: x, shape }], {
    params,
    label: `${name} y`,
    maxElements: 12,
    kinks: true,
  });
  if (ld.params) {
    await gradcheck((t) => layer.forward(t).logdet!, [{ data: x, shape, grad: ld.x }], {
      params: params.filter((p) => ld.params!.test(p.name)),
      label: `${name} logdet`,
      maxElements: 12,
      kinks: true,
    });
  } else {
    assert.equal(noGrad(() => layer.forward(Tensor.from(x, shape))).logdet, undefined);
    clearTape();
  }
  store.release();
}

const S = [2, 4, 3, 3];
// Actnorm's and the 1x1 conv's log-dets depend on their scales alone; a coupling's on x too.
Deno.test("flow layer: actnorm", () =>
  checkLayer("actnorm", (s) => new ActNorm(s.scope("an"), 4), S, 10, {
    x: false,
    params: /logscale$/,
  }));
Deno.test("flow layer: invertible 1x1 conv, LU", () =>
  checkLayer("invconv LU", (s) => new InvConv1x1(s.scope("w"), 4, true), S, 20, {
    x: false,
    params: /log_s$/,
  }));
Deno.test("flow layer: invertible 1x1 conv, plain", () =>
  checkLayer("invconv plain", (s) => new InvConv1x1(s.scope("w"), 4, false), S, 30, {
    x: false,
    params: /weight$/,
  }));
Deno.test("flow layer: affine coupling", () =>
  checkLayer("affine coupling", (s) => new Coupling(s.scope("c"), 4, 5, true), S, 40, {
    x: true,
    params: /./,
  }));
Deno.test("flow layer: additive coupling", () =>
  checkLayer("additive coupling", (s) => new Coupling(s.scope("c"), 4, 5, false), S, 50, {
    x: true,
  }));
Deno.test("flow layer: flow step", () =>
  checkLayer(
    "flow step",
    (s) => new FlowStep(s.scope("s"), 4, 3, { lu: true, affine: true }),
    S,
    60,
    { x: true, params: /./ },
  ));

Deno.test("invconv: the initial W (LU and plain) is the random rotation drawn from the seed", async () => {
  for (const lu of [true, false]) {
    const c = 6;
    const store = new ParamStore(99);
    const layer = new InvConv1x1(store.scope("w"), c, lu);
    const w = await noGrad(() => layer.weight()).read();
    clearTape();
    const q = randomRotation(c, new Rng(99));
    let err = 0;
    q.forEach((v, i) => (err = Math.max(err, Math.abs(v - w[i]))));
    assert.ok(err < 1e-5, `${lu ? "LU" : "plain"}: W differs from the rotation by ${err}`);
    // and it is a rotation: W Wᵀ = I
    for (let i = 0; i < c; i++) {
      for (let j = 0; j < c; j++) {
        let dot = 0;
        for (let k = 0; k < c; k++) dot += w[i * c + k] * w[j * c + k];
        assert.ok(Math.abs(dot - (i === j ? 1 : 0)) < 1e-5, `W Wᵀ[${i},${j}] = ${dot}`);
      }
    }
    store.release();
  }
});

const tiny = { channels: 1, height: 4, width: 4, levels: 2, depth: 1, hidden: 4, seed: 3 };

Deno.test("glow: encode/decode round trip and log-det vs brute force on a tiny model", async () => {
  const glow = new Glow(tiny);
  await perturb(glow.store, 5);
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
  glow.store.release();
});

/** The split prior's (mean, log-std) at level 0: from z1, the top latent run back through level 1. */
function splitPrior(glow: Glow, top: Tensor): Tensor[] {
  return noGrad(() => {
    let h = top;
    const steps = glow.levels[1].steps;
    for (let k = steps.length - 1; k >= 0; k--) h = steps[k].inverse(h).x;
    return glow.levels[0].split!.prior(unsqueeze(h));
  });
}

/** log N(z; mu, exp(ls)^2) summed per sample, in f64. */
function gaussLogp(z: Float32Array, n: number, mu?: Float32Array, ls?: Float32Array): number[] {
  const d = z.length / n;
  return Array.from({ length: n }, (_, b) => {
    let s = 0;
    for (let i = b * d; i < (b + 1) * d; i++) {
      const m = mu ? mu[i] : 0, l = ls ? ls[i] : 0;
      const u = (z[i] - m) / Math.exp(l);
      s += -0.5 * u * u - l - 0.5 * Math.log(2 * Math.PI);
    }
    return s;
  });
}

Deno.test("glow: log p(x) equals the priors' densities of the latents plus the brute-force log|det J|", async () => {
  for (const classes of [0, 3]) {
    const glow = new Glow({ ...tiny, classes });
    await perturb(glow.store, 11, 0.3);
    const shape = [2, 1, 4, 4];
    const x = randn(32, 12, 0.5);
    const labels = classes ? [2, 0] : undefined;
    // The model's own sum, and its parts read back: latents and the split priors' parameters.
    const logp = await noGrad(() => glow.logProb(Tensor.from(x, shape), labels)).read();
    const latents = glow.encode(Tensor.from(x, shape));
    const [z1, z2] = await Tensor.readAll(latents);
    const [mu, ls] = await Tensor.readAll(splitPrior(glow, latents[1]));
    clearTape();
    // The top prior: N(0, I), or the class embedding's (mean, log-std) broadcast over H x W.
    let topMu: Float32Array | undefined, topLs: Float32Array | undefined;
    if (classes) {
      const emb = await glow.store.tensors.get("flow.top.class_embedding")!.read();
      const [c, h, w] = glow.latentShapes[1];
      topMu = new Float32Array(2 * c * h * w);
      topLs = new Float32Array(2 * c * h * w);
      labels!.forEach((y, b) => {
        for (let ch = 0; ch < c; ch++) {
          for (let p = 0; p < h * w; p++) {
            topMu![(b * c + ch) * h * w + p] = emb[y * 2 * c + ch];
            topLs![(b * c + ch) * h * w + p] = emb[y * 2 * c + c + ch];
          }
        }
      });
    }
    const flat = (t: Tensor) => {
      const { latents } = glow.flow(t);
      return concatChannels(latents.map((z) => reshape(z, [z.shape[0], z.size / z.shape[0]])));
    };
    const brute = await bruteLogdet(flat, x, shape);
    const p1 = gaussLogp(z1, 2, mu, ls), p2 = gaussLogp(z2, 2, topMu, topLs);
    for (let b = 0; b < 2; b++) {
      const want = p1[b] + p2[b] + brute[b];
      assert.ok(
        Math.abs(logp[b] - want) < 3e-2,
        `classes ${classes}, sample ${b}: log p(x) ${logp[b]} vs parts ${want}`,
      );
    }
    glow.store.release();
  }
});

Deno.test("glow: sample() draws the prior's latents and decodes them exactly", async () => {
  for (const classes of [0, 3]) {
    const glow = new Glow({ ...tiny, classes });
    await perturb(glow.store, 21, 0.1);
    const labels = classes ? [1, 2, 0] : undefined;
    const t = 0.8;
    const x = glow.sample(3, t, new Rng(5), labels);
    // Re-encode: the top latent must be mu + exp(ls) * T * eps with eps the RNG's first draws,
    // and the split latent mu1 + exp(ls1) * T * eps1 with the next draws.
    const latents = glow.encode(x);
    const [zTop, z1] = await Tensor.readAll([latents[1], latents[0]]);
    const [mu, ls] = await Tensor.readAll(splitPrior(glow, latents[1]));
    clearTape();
    const rng = new Rng(5);
    const epsTop = rng.normalArray(zTop.length, t);
    const eps1 = rng.normalArray(z1.length, t);
    if (classes) {
      const emb = await glow.store.tensors.get("flow.top.class_embedding")!.read();
      const [c, h, w] = glow.latentShapes[1];
      for (let i = 0; i < zTop.length; i++) {
        const b = Math.floor(i / (c * h * w)), ch = Math.floor(i / (h * w)) % c;
        const m = emb[labels![b] * 2 * c + ch], l = emb[labels![b] * 2 * c + c + ch];
        epsTop[i] = m + Math.exp(l) * epsTop[i];
      }
    }
    let err = 0;
    zTop.forEach((v, i) => (err = Math.max(err, Math.abs(v - epsTop[i]))));
    z1.forEach((v, i) => (err = Math.max(err, Math.abs(v - (mu[i] + Math.exp(ls[i]) * eps1[i])))));
    assert.ok(err < 1e-4, `classes ${classes}: encode(sample()) off the drawn latents by ${err}`);
    glow.store.release();
  }
});

Deno.test("glow: gradcheck of the loss w.r.t. input and every parameter (tiny, class-conditional, classifier loss)", async () => {
  const glow = new Glow({ ...tiny, classes: 3 });
  await perturb(glow.store, 7, 0.1);
  await gradcheck(
    (t) => glow.loss(t, [0, 2], 0.5),
    [{ data: randn(32, 8, 0.5), shape: [2, 1, 4, 4] }],
    { params: glow.store.params(), maxElements: 10, label: "glow loss", kinks: true },
  );
  glow.store.release();
});

Deno.test("glow: a shape the squeeze cannot halve is refused", () => {
  assert.throws(() => new Glow({ ...tiny, height: 6, width: 6, levels: 2 }), /cannot be squeezed/);
});

// The VAE baseline: the ConvTranspose2d layer and the model's objective pass gradcheck with every
// parameter; the §1.3 size rule gives the spec's tables; the objective is recon/(2σ²) + β KL of
// what the model returns; reparameterised draws have the posterior's mean and variance; the task
// trains through the generic trainer, and evaluate writes every metric into eval.json; bad data
// set, factor and size names are refused.
import assert from "node:assert/strict";
import "./setup.ts";
import { join } from "node:path";
import { assertClose, gradcheck, randn } from "./gradcheck.ts";
import { duNetSizes, Vae } from "../src/models/vae.ts";
import { ConvTranspose2d } from "../src/nn/layers.ts";
import { ParamStore } from "../src/nn/store.ts";
import { GpuRng, reparameterize } from "../src/ops/random.ts";
import { clearTape, noGrad } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { evaluate, parseTrain } from "../src/train/cli.ts";
import { GpuMetrics } from "../src/train/metrics.ts";
import { Session, train } from "../src/train/trainer.ts";
import { activeDims, dimsByKl, klPerDim, type VaeModel } from "../src/train/vae_task.ts";

/** Move parameters off zero inits so that every path carries a gradient. */
async function perturb(store: ParamStore, seed: number, amount = 0.3) {
  const rng = new Rng(seed);
  for (const t of store.params()) t.write((await t.read()).map((v) => v + amount * rng.normal()));
}

Deno.test("vae: ConvTranspose2d layer gradcheck with its parameters; PyTorch output sizes", async () => {
  const cases: [string, number[], number[], () => ConvTranspose2d][] = [];
  const store = new ParamStore(3);
  const s = store.scope("ct");
  cases.push([
    "4x4 s2 p1",
    [2, 3, 3, 5],
    [2, 2, 6, 10],
    () => new ConvTranspose2d(s.child("a"), 3, 2, 4, { stride: 2, padding: 1 }),
  ]);
  cases.push([
    "6x6 s2 p3 op1",
    [2, 2, 3, 3],
    [2, 3, 5, 5],
    () => new ConvTranspose2d(s.child("b"), 2, 3, 6, { stride: 2, padding: 3, outputPadding: 1 }),
  ]);
  cases.push([
    "3x3 s1 no bias",
    [1, 3, 3, 2],
    [1, 2, 5, 4],
    () => new ConvTranspose2d(s.child("c"), 3, 2, 3, { bias: false }),
  ]);
  const layers = cases.map((c) => c[3]());
  await perturb(store, 4);
  for (let i = 0; i < cases.length; i++) {
    const [label, inShape, outShape] = cases[i];
    const layer = layers[i];
    const n = inShape.reduce((a, b) => a * b, 1);
    const y = noGrad(() => layer.apply(Tensor.from(randn(n, 5), inShape)));
    assert.deepEqual(y.shape, outShape, label);
    clearTape();
    const params = [layer.w, ...(layer.b ? [layer.b] : [])];
    assert.equal(layer.w.shape[0], inShape[1], "weight is [Cin, Cout, K, K]");
    await gradcheck((x) => layer.apply(x), [{ data: randn(n, 6), shape: inShape }], {
      params,
      label,
      maxElements: 12,
    });
  }
  store.release();
});

Deno.test("vae: §1.3 size rule: levels, channels, extra padding, top side, FC width", () => {
  assert.deepEqual(duNetSizes(8), { levels: 1, channels: [16], extra: [0], top: 4, fc: 128 });
  assert.deepEqual(duNetSizes(16), {
    levels: 2,
    channels: [16, 32],
    extra: [0, 0],
    top: 4,
    fc: 256,
  });
  assert.deepEqual(duNetSizes(28), {
    levels: 3,
    channels: [32, 64, 128],
    extra: [0, 1, 0],
    top: 4,
    fc: 512,
  });
  assert.deepEqual(duNetSizes(32).extra, [0, 0, 0]);
  assert.deepEqual(duNetSizes(64), {
    levels: 4,
    channels: [32, 64, 128, 256],
    extra: [0, 0, 0, 0],
    top: 4,
    fc: 512,
  });
  assert.deepEqual(duNetSizes(128).channels, [32, 64, 128, 256, 512]);
  assert.deepEqual(duNetSizes(64, 8).channels, [8, 16, 32, 64]);
  assert.equal(duNetSizes(64, 8).fc, 128);
  assert.throws(() => duNetSizes(4), /flowgpu: vae: image size 4/);
  // Every side round-trips through the decoder (28 needs e1 = 1, 29 an output padding).
  for (const size of [14, 28, 29, 32, 64]) {
    const store = new ParamStore(1);
    const vae = new Vae(store.scope(), { channels: 3, size, latents: 3, width: 1 });
    const x = Tensor.from(new Float32Array(2 * 3 * size * size), [2, 3, size, size]);
    const { mu, logvar } = noGrad(() => vae.encode(x));
    assert.deepEqual([mu.shape, logvar.shape], [[2, 3], [2, 3]]);
    assert.deepEqual(noGrad(() => vae.decode(mu)).shape, [2, 3, size, size], `side ${size}`);
    assert.throws(
      () => vae.encode(Tensor.from(new Float32Array(3 * 64), [1, 3, 8, 8])),
      /is not \[N, 3/,
    );
    clearTape();
    store.release();
  }
});

Deno.test("vae: loss = ||x - x̂||²/(2σ²) + β KL per sample, batch mean; gradcheck w.r.t. every parameter", async () => {
  const store = new ParamStore(2);
  // Side 14: two levels with an extra padding of 1 at the 6x6 convolution; channels [2, 4].
  const cfg = { channels: 3, size: 14, latents: 3, width: 4, beta: 2.5, sigma: 0.7 };
  const vae = new Vae(store.scope(), cfg);
  assert.deepEqual(vae.sizes.channels, [2, 4]);
  await perturb(store, 3, 0.2);
  const n = 2, d = 3 * 14 * 14;
  const x = randn(n * d, 4).map((v) => Math.tanh(v));
  const eps = randn(n * 3, 5);
  const l = noGrad(() => vae.loss(Tensor.from(x, [n, 3, 14, 14]), Tensor.from(eps, [n, 3])));
  const [loss, recon, kl, mu, lv, z, xhat] = await Tensor.readAll([
    l.loss,
    l.recon,
    l.kl,
    l.mu,
    l.logvar,
    l.z,
    l.xhat,
  ]);
  clearTape();
  let sse = 0, klRef = 0;
  for (let i = 0; i < n * d; i++) sse += (x[i] - xhat[i]) ** 2;
  for (let i = 0; i < n * 3; i++) {
    klRef += 0.5 * (mu[i] ** 2 + Math.exp(lv[i]) - 1 - lv[i]);
    assert.ok(Math.abs(z[i] - (mu[i] + Math.exp(0.5 * lv[i]) * eps[i])) < 1e-5, "z = mu + σ eps");
  }
  assert.ok(xhat.every((v) => Math.abs(v) <= 1), "tanh output");
  assertClose([recon[0], kl[0]], [sse / n / (2 * 0.49), klRef / n], { rtol: 1e-5, label: "terms" });
  assertClose(loss, [recon[0] + 2.5 * kl[0]], { rtol: 1e-6, label: "loss" });
  await gradcheck(
    (t, e) => vae.loss(t, e).loss,
    [{ data: x, shape: [n, 3, 14, 14] }, { data: eps, shape: [n, 3], grad: false }],
    { params: store.params(), label: "vae loss", maxElements: 6, kinks: true },
  );
  store.release();
});

Deno.test("vae: reparameterised draws from a GpuRng have the posterior's mean and variance", async () => {
  const n = 20000, dims = 3;
  const m = [1, -2, 0.5], lv = [0, Math.log(4), Math.log(0.25)];
  const mu = Tensor.from(Float32Array.from({ length: n * dims }, (_, i) => m[i % dims]), [n, dims]);
  const logvar = Tensor.from(Float32Array.from({ length: n * dims }, (_, i) => lv[i % dims]), [
    n,
    dims,
  ]);
  const rng = new GpuRng(11);
  const z1 = await noGrad(() => reparameterize(mu, logvar, rng)).read();
  const z2 = await noGrad(() => reparameterize(mu, logvar, rng)).read();
  assert.equal(rng.counter, 2, "one counter per draw");
  for (let k = 0; k < dims; k++) {
    let s = 0, s2 = 0;
    for (let i = 0; i < n; i++) s += z1[i * dims + k];
    const mean = s / n;
    for (let i = 0; i < n; i++) s2 += (z1[i * dims + k] - mean) ** 2;
    const v = s2 / (n - 1), want = Math.exp(lv[k]);
    // 5 standard errors: of the mean sqrt(v/n), of the variance v sqrt(2/(n-1)).
    assert.ok(Math.abs(mean - m[k]) < 5 * Math.sqrt(want / n), `dim ${k}: mean ${mean}`);
    assert.ok(Math.abs(v - want) < 5 * want * Math.sqrt(2 / (n - 1)), `dim ${k}: var ${v}`);
  }
  assert.ok(z1.some((v, i) => v !== z2[i]), "the next draw differs");
  clearTape();
  rng.release();
});

Deno.test("vae: KL per dim, active dims and the KL order of the traversal rows", () => {
  const mu = [0, 1, 0, -1, 0, 1, 0, -1], lv = [0, 0, Math.log(0.5), 0, 0, 0, Math.log(0.5), 0];
  const kl = klPerDim(mu, lv, 2);
  assertClose(kl, [0.5 * (0.5 - 1 - Math.log(0.5)) / 2, 0.5], { rtol: 1e-12, label: "kl" });
  assert.equal(activeDims(mu, 2), 1);
  assert.deepEqual(dimsByKl([0.1, 3, 0.1, 2]), [1, 3, 0, 2]);
});

const TINY = [
  ...["--model", "vae", "--size", "16", "--width", "4", "--latents", "4", "--batch", "16"],
  ...["--train-limit", "512", "--warmup", "5", "--sample-every", "0", "--eval-every", "0"],
  ...["--eval-limit", "48", "--mig-samples", "400", "--lr", "2e-3"],
];

Deno.test("vae task: trains through the generic trainer on shapes2.5d with a finite, falling loss", async () => {
  const { task, cfg } = parseTrain(TINY);
  const s = new Session(task, cfg, await task.build(cfg, "train"));
  // σ = 1 at Shapes2.5D's own side 64; at 16 each pixel stands for 16 and σ is 16/64.
  assert.equal((s.model as VaeModel).vae.sigma, 0.25);
  const m = new GpuMetrics();
  const loss: number[] = [];
  for (let i = 0; i < 30; i++) {
    s.trainStep(m);
    if (i % 10 === 9) {
      const r = await m.read();
      loss.push(r.get("loss")!.mean);
      for (const k of ["recon", "kl", "kl_d0", "kl_d3"]) {
        assert.ok(Number.isFinite(r.get(k)!.mean), `${k} finite`);
      }
    }
  }
  assert.ok(loss.every(Number.isFinite), `finite: ${loss}`);
  assert.ok(loss[2] < 0.8 * loss[0], `loss fell: ${loss}`);
  m.release();
  s.release();
});

Deno.test("vae task: a tiny run writes eval.json with every metric; evaluate rewrites it (shapes2.5d, mnist)", async () => {
  for (const data of ["shapes2.5d", "mnist"]) {
    const dir = Deno.makeTempDirSync();
    const extra = data === "mnist" ? ["--size", "28", "--width", "2"] : [];
    const { task, cfg } = parseTrain([
      ...TINY,
      ...["--data", data, "--steps", "4", "--out", dir],
      ...extra,
    ]);
    await train(task, cfg);
    Deno.removeSync(join(dir, "eval.json"));
    await evaluate(["--out", dir, "--eval-limit", "40"]);
    const ev = JSON.parse(Deno.readTextFileSync(join(dir, "eval.json")));
    const factors = data === "mnist"
      ? ["digit"]
      : ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"];
    const keys = [
      ...["mig_all", "mig_lab", "dci_d", "dci_c", "dci_i", "sap", "mse_01", "mse_pm1"],
      ...["test_kl", "test_recon", "active_dims", "kl_d0", "kl_d3"],
      ...factors.map((f) => `mig_${f}`),
    ];
    for (const k of keys) {
      assert.equal(typeof ev.metrics[k], "number", `${data}: ${k} = ${ev.metrics[k]}`);
      assert.ok(Number.isFinite(ev.metrics[k]), `${data}: ${k} = ${ev.metrics[k]}`);
    }
    const mt = ev.metrics;
    assert.equal(mt.eval_images, 40);
    assertClose([mt.mse_pm1], [4 * mt.mse_01], { rtol: 1e-12, label: "MSE scales" });
    assert.ok(mt.mig_all >= -1 && mt.mig_all <= 1 && mt.mig_lab === mt.mig_all);
    for (const f of factors) {
      assert.ok(mt[`mig_${f}_info`] >= mt[`mig_${f}`], `${f}: the gap is below the best Î`);
      assert.ok(Number.isInteger(mt[`mig_${f}_dim`]) && mt[`mig_${f}_dim`] < 4);
    }
    assert.ok(mt.dci_d >= 0 && mt.dci_d <= 1 && mt.sap >= 0 && mt.sap <= 1);
    assert.equal(mt.traversal_dims.split(",").length, 4);
    assert.deepEqual(ev.images.sort(), [
      "eval/reconstructions.png",
      "eval/traversal_0.png",
      "eval/traversal_1.png",
      "eval/traversal_2.png",
    ]);
    const png = Deno.readFileSync(join(dir, "eval/traversal_0.png"));
    assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("vae task: MIG, DCI and SAP of a code that copies two factors find them; --unknown leaves one out of MIG_lab", async () => {
  const { task, cfg } = parseTrain([...TINY, "--unknown", "wall_hue", "--mig-samples", "2000"]);
  const m = await task.build(cfg, "evaluate") as VaeModel;
  const n = 1000, L = 4, rng = new Rng(9);
  const labels = new Int32Array(n * 6), mu = new Float32Array(n * L);
  for (let i = 0; i < n; i++) {
    for (let f = 0; f < 6; f++) labels[i * 6 + f] = rng.int(m.data.factors[f].size);
    mu[i * L] = labels[i * 6] + 0.01 * rng.normal(); // floor hue
    mu[i * L + 2] = labels[i * 6 + 1] + 0.01 * rng.normal(); // wall hue
    mu[i * L + 1] = rng.normal();
    mu[i * L + 3] = rng.normal();
  }
  // Sharp posteriors on the copies; the noise dims are uninformative, σ = 1 as a VAE's are (a
  // near-delta posterior on a random code would name its sample, and the estimator finds
  // information in that).
  const logvar = Float32Array.from({ length: n * L }, (_, i) => i % 2 ? 0 : 2 * Math.log(0.01));
  const r = await m.disentanglement({ mu, logvar, labels, n, mse: { mse01: 0, mseSigned: 0 } });
  const num = (k: string) => r[k] as number;
  assert.ok(num("mig_floor_hue") > 0.95 && num("mig_wall_hue") > 0.95, JSON.stringify(r));
  assert.deepEqual([r.mig_floor_hue_dim, r.mig_wall_hue_dim], [0, 2]);
  for (const f of ["object_hue", "scale", "shape", "orientation"]) {
    assert.ok(Math.abs(num(`mig_${f}`)) < 0.05, `${f}: ${r[`mig_${f}`]}`);
  }
  const gaps = m.data.factors.map((f) => num(`mig_${f.name}`));
  assertClose([num("mig_all")], [gaps.reduce((a, v) => a + v, 0) / 6], { rtol: 1e-12 });
  assertClose([num("mig_lab")], [(gaps.reduce((a, v) => a + v, 0) - gaps[1]) / 5], {
    rtol: 1e-12,
    label: "MIG_lab without wall_hue",
  });
  assert.equal(r.mig_unknown, "wall_hue");
  assert.ok(num("sap") > 0.3 && num("dci_d") > 0.5, `sap ${r.sap}, dci_d ${r.dci_d}`);
  m.release();
  m.store.release();
});

Deno.test("vae task: unknown data set, factor name and sizes are refused by name", async () => {
  const build = async (args: string[]) => {
    const { task, cfg } = parseTrain([...TINY, ...args]);
    const m = await task.build(cfg, "evaluate") as VaeModel;
    const sigma = m.vae.sigma;
    m.release();
    m.store.release();
    return sigma;
  };
  assert.equal(await build(["--data", "mnist", "--size", "28"]), 1, "MNIST at its own side");
  assert.equal(await build(["--sigma", "0.7"]), 0.7, "a given σ is kept");
  await assert.rejects(
    build(["--data", "cifar10"]),
    /flowgpu: vae: unknown data set 'cifar10' \(known: mnist, cmnist28/,
  );
  await assert.rejects(
    build(["--unknown", "colour"]),
    /flowgpu: vae: --unknown colour: shapes2.5d has no such factor \(factors: floor_hue/,
  );
  await assert.rejects(
    build(["--data", "mnist", "--size", "30"]),
    /flowgpu: vae: mnist comes at size 28 \(cropped\) or 32/,
  );
  await assert.rejects(
    build(["--data", "glyph10", "--size", "16"]),
    /flowgpu: vae: glyph10 comes at size 28 only, not 16/,
  );
  assert.throws(() => parseTrain([...TINY, "--beta", "x"]), /flowgpu: --beta x: expected a number/);
  const store = new ParamStore(1);
  assert.throws(
    () => new Vae(store.scope(), { channels: 1, size: 8, latents: 2, sigma: 0 }),
    /flowgpu: vae: need beta >= 0 and sigma > 0/,
  );
  assert.throws(
    () => new Vae(store.scope(), { channels: 1, size: 8, latents: 0 }),
    /flowgpu: vae: latents 0/,
  );
});

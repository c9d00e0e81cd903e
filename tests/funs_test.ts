// FUNS: gradchecks of its new pieces (residual blocks down/up, the squeeze module, the whole
// objective w.r.t. the target, the condition and every parameter), the prior's independence of c
// where M = 0, the conditional log-density against brute force, and T = 0 sampling.
import assert from "node:assert/strict";
import "./setup.ts";
import { gradcheck, randn } from "./gradcheck.ts";
import { bruteLogdet } from "./flowcheck.ts";
import { Funs, type FunsConfig, LOG_2PIE, ResBlock, SqueezeModule } from "../src/models/funs.ts";
import { ParamStore } from "../src/nn/store.ts";
import { concatChannels, reshape } from "../src/ops/shape.ts";
import { clearTape, noGrad } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";

const tiny: FunsConfig = {
  channels: 1,
  condChannels: 1,
  size: 4,
  levels: 2,
  depth: 1,
  hidden: 4,
  base: 2,
  nBits: 8,
  alpha: 0.01,
  beta: 0.1,
};

async function perturb(store: ParamStore, seed: number, std = 0.1) {
  const rng = new Rng(seed);
  for (const t of store.params()) t.write((await t.read()).map((v) => v + std * rng.normal()));
  for (const f of store.flags.values()) f.value = true;
}

/** The same standard normals on every call: gradchecks need a fixed ε. */
const fixedNoise = (seed: number) => (n: number) => new Rng(seed).normalArray(n);

Deno.test("funs: residual blocks (down, up, plain) pass gradcheck with their parameters", async () => {
  for (
    const [mode, cin, cout, shape] of [
      ["down", 3, 4, [2, 3, 6, 6]],
      ["up", 3, 2, [2, 3, 3, 3]],
      ["none", 3, 3, [3, 3, 3, 4]],
    ] as const
  ) {
    const store = new ParamStore(3);
    const block = new ResBlock(store.scope("b"), cin, cout, mode);
    await perturb(store, 4, 0.2);
    const n = shape.reduce((a, b) => a * b, 1);
    await gradcheck((x) => block.apply(x), [{ data: randn(n, 5), shape: [...shape] }], {
      params: store.params(),
      label: `resblock ${mode}`,
      maxElements: 12,
      kinks: true,
    });
    store.release();
  }
});

Deno.test("funs: squeeze module gradcheck; where M = 0 the prior ignores the condition", async () => {
  const store = new ParamStore(6);
  const sq = new SqueezeModule(store.scope("sq"), 3, [2, 3, 3]);
  await perturb(store, 7, 0.2);
  const u = randn(2 * 3 * 9, 8);
  for (const which of ["mu", "logVar"] as const) {
    const unused = which === "mu" ? "b_sigma" : "b_mu";
    await gradcheck((t) => sq.prior(t)[which], [{ data: u, shape: [2, 3, 3, 3] }], {
      params: store.params().filter((p) => !p.name.endsWith(unused)),
      label: `squeeze ${which}`,
      maxElements: 12,
      kinks: true,
    });
  }
  // Half the mask off: those elements' (μ, log σ²) must not depend on u.
  const m = await sq.m.read();
  sq.m.write(m.map((v, i) => (i % 2 ? -Math.abs(v) - 0.1 : Math.abs(v) + 0.1)));
  const a = noGrad(() => sq.prior(Tensor.from(u, [2, 3, 3, 3])));
  const b = noGrad(() => sq.prior(Tensor.from(randn(u.length, 9), [2, 3, 3, 3])));
  const [muA, vA, muB, vB] = await Tensor.readAll([a.mu, a.logVar, b.mu, b.logVar]);
  let same = 0, differ = 0;
  for (let i = 0; i < muA.length; i++) {
    const off = (i % 18) % 2 === 1;
    if (off) {
      assert.equal(muA[i], muB[i], `μ[${i}] depends on c where M = 0`);
      assert.equal(vA[i], vB[i], `log σ²[${i}] depends on c where M = 0`);
      same++;
    } else if (muA[i] !== muB[i]) differ++;
    assert.ok(vA[i] <= 0 && vA[i] > -LOG_2PIE, `log σ² in (−log 2πe, 0]: ${vA[i]}`);
    assert.ok(Math.abs(muA[i]) < 2, `|μ| < 2: ${muA[i]}`);
  }
  assert.ok(same === 18 && differ > 12, `${same} fixed, ${differ} moved`);
  clearTape();
  store.release();
});

Deno.test("funs: the objective passes gradcheck w.r.t. target, condition and every parameter", async () => {
  const store = new ParamStore(10);
  const funs = new Funs(store.scope(), tiny);
  await perturb(store, 11);
  const x = randn(2 * 16, 12, 0.4), c = randn(2 * 16, 13, 0.5);
  await gradcheck(
    (xt, ct) => funs.losses(xt, ct, fixedNoise(14)).total,
    [{ data: x, shape: [2, 1, 4, 4] }, { data: c, shape: [2, 1, 4, 4] }],
    { params: store.params(), label: "funs loss", maxElements: 3, kinks: true },
  );
  store.release();
});

Deno.test("funs: log p(x | c) from its parts matches the priors plus the brute-force log|det J|; T = 0 samples are f⁻¹(μ(c))", async () => {
  const store = new ParamStore(20);
  const funs = new Funs(store.scope(), tiny);
  await perturb(store, 21, 0.2);
  funs.training = false; // running statistics: the prior is a function of c alone
  const shape = [2, 1, 4, 4];
  const x = randn(32, 22, 0.4), c = Tensor.constant(randn(32, 23, 0.5), shape, "c");
  const l = noGrad(() => funs.losses(Tensor.from(x, shape), c, fixedNoise(1)));
  const flowNats = (await l.flow.read())[0];
  const p = noGrad(() => funs.prior(c));
  const mus = await Tensor.readAll(p.mu), vs = await Tensor.readAll(p.logVar);
  const zs = await Tensor.readAll(funs.glow.encode(Tensor.from(x, shape)));
  // T = 0: the sample is the inverse flow of the prior means.
  const s0 = await funs.sample(c, fixedNoise(5), 0).read();
  const direct = await noGrad(() => funs.glow.decode(p.mu)).read();
  assert.deepEqual(s0, direct);
  const flat = (t: Tensor) => {
    const { latents } = funs.glow.flow(t);
    return concatChannels(latents.map((z) => reshape(z, [z.shape[0], z.size / z.shape[0]])));
  };
  const brute = await bruteLogdet(flat, x, shape);
  let want = 0;
  for (let b = 0; b < 2; b++) {
    let nll = 0;
    zs.forEach((z, lvl) => {
      const d = z.length / 2;
      for (let i = b * d; i < (b + 1) * d; i++) {
        nll += 0.5 *
          (Math.log(2 * Math.PI) + vs[lvl][i] + (z[i] - mus[lvl][i]) ** 2 * Math.exp(-vs[lvl][i]));
      }
    });
    want += (nll - brute[b]) / 2;
  }
  assert.ok(Math.abs(flowNats - want) < 3e-2, `L_flow ${flowNats} vs parts ${want}`);
  const back = await noGrad(() => funs.glow.decode(funs.glow.encode(Tensor.from(x, shape)))).read();
  const err = back.reduce((m, v, i) => Math.max(m, Math.abs(v - x[i])), 0);
  assert.ok(err < 1e-4, `f⁻¹(f(x)) error ${err}`);
  clearTape();
  c.release();
  store.release();
});

Deno.test("funs: Algorithm 1 — x_sp redraws only M > 0 latents, x_iv only M = 0 ones, swap(x, x) = x", async () => {
  const store = new ParamStore(30);
  const funs = new Funs(store.scope(), tiny);
  await perturb(store, 31, 0.1);
  funs.training = false;
  const shape = [2, 1, 4, 4];
  const x = Tensor.constant(randn(32, 32, 0.4), shape, "x");
  const masks = await funs.conditionMask();
  const z = await Tensor.readAll(funs.glow.encode(x));
  for (const mode of ["sp", "iv"] as const) {
    const xr = await funs.resample(x, mode, (n) => new Rng(33).normalArray(n));
    const zr = await Tensor.readAll(funs.glow.encode(xr));
    let kept = 0, moved = 0;
    zr.forEach((zl, l) => {
      const per = masks[l].length;
      zl.forEach((v, i) => {
        const specific = masks[l][i % per] === 1;
        const redrawn = mode === "sp" ? specific : !specific;
        if (!redrawn) {
          assert.ok(Math.abs(v - z[l][i]) < 1e-4, `${mode}: kept latent ${l}[${i}] moved`);
          kept++;
        } else if (Math.abs(v - z[l][i]) > 1e-3) moved++;
      });
    });
    assert.ok(kept > 4 && moved > 4, `${mode}: ${kept} kept, ${moved} redrawn`);
    clearTape();
  }
  const same = await (await funs.swap(x, x)).read();
  const xs = await x.read();
  assert.ok(same.every((v, i) => Math.abs(v - xs[i]) < 1e-4), "swap(x, x) = x");
  clearTape();
  x.release();
  store.release();
});

Deno.test("funs: the task trains on MNIST-exemplar pairs through the generic trainer", async () => {
  const { parseTrain } = await import("../src/train/cli.ts");
  const { Session } = await import("../src/train/trainer.ts");
  const { GpuMetrics } = await import("../src/train/metrics.ts");
  const { task, cfg } = parseTrain([
    ...["--model", "funs", "--train-limit", "256", "--levels", "2", "--depth", "1"],
    ...["--width", "8", "--base", "4", "--batch", "8", "--init-batch", "16", "--warmup", "2"],
  ]);
  const s = new Session(task, cfg, await task.build(cfg, "train"));
  s.model.init?.();
  const m = new GpuMetrics();
  const first: number[] = [], last: number[] = [];
  for (let i = 0; i < 16; i++) {
    s.trainStep(m);
    if (i === 1 || i === 15) {
      const r = await m.read();
      (i === 1 ? first : last).push(r.get("flow")!.mean, r.get("recons")!.mean);
    }
  }
  assert.ok(first.concat(last).every(Number.isFinite), `finite: ${first} ${last}`);
  assert.ok(last[0] < first[0], `L_flow fell: ${first[0]} -> ${last[0]}`);
  m.release();
  s.release();
});

Deno.test("funs eval: images with a non-finite value are found (and only those)", async () => {
  const { finiteImages } = await import("../src/train/funs_eval.ts");
  const x = new Float32Array(4 * 3).fill(0.5);
  x[4] = NaN;
  x[11] = Infinity;
  assert.deepEqual(finiteImages(x, 4), [0, 2]);
});

Deno.test("funs eval: patch features put each 2x2 and 4x4 block in one vector; temperatures name their rows", async () => {
  const { patchLayers, tempKey } = await import("../src/train/funs_eval.ts");
  const size = 8, n = 2;
  const x = Float32Array.from({ length: n * size * size }, (_, i) => i);
  const [l2, l4] = patchLayers(x, n, size);
  assert.equal(l2.channels, 4);
  assert.equal(l2.positions, 16);
  assert.equal(l4.channels, 16);
  assert.equal(l4.positions, 4);
  // Image 1, 2x2 block at row 1, column 2 (pixels (2..3, 4..5)): channel k = dy·2 + dx.
  const at = (l: typeof l2, img: number, k: number, p: number) =>
    l.data[(img * l.channels + k) * l.positions! + p];
  const px = (img: number, y: number, x0: number) => img * 64 + y * 8 + x0;
  assert.equal(at(l2, 1, 0, 1 * 4 + 2), px(1, 2, 4));
  assert.equal(at(l2, 1, 3, 1 * 4 + 2), px(1, 3, 5));
  assert.equal(at(l4, 0, 4 * 3 + 1, 2 + 1), px(0, 4 + 3, 4 + 1));
  assert.equal(tempKey(1), "_t1");
  assert.equal(tempKey(0.8), "_t0.8");
});

// The conditional-MI VAE (vae-disentangle.md §2): every network piece and loss passes gradcheck;
// each loss term equals its definition; the stop-gradients of L_f1's target and of D's code input
// hold; the derangement has no fixed point; the D update leaves every other group (and the
// frozen f_φ, and the batch-norm statistics) bit-identical, the main update leaves D and f_φ
// alone; a tiny run lowers its losses and writes eval.json with the swap/leakage/MIG keys.
import assert from "node:assert/strict";
import "./setup.ts";
import { join } from "node:path";
import { assertClose, gradcheck, randn } from "./gradcheck.ts";
import { hsv } from "../src/data/labelled.ts";
import { hueBin } from "../src/data/cmnist.ts";
import { flush } from "../src/gpu/encoder.ts";
import {
  CmiVae,
  type CmiVaeConfig,
  CodePredictor,
  ConvTrunk,
  derangement,
  Discriminator,
  FeatureEncoder,
  FeatureNet,
  Generator,
  halves,
  stackRows,
} from "../src/models/cmivae.ts";
import { ParamStore } from "../src/nn/store.ts";
import { bceWithLogits } from "../src/ops/gan.ts";
import { gatherBatch } from "../src/ops/gather.ts";
import { reparameterize } from "../src/ops/random.ts";
import { add, scale } from "../src/ops/elementwise.ts";
import { squaredError } from "../src/ops/divergence.ts";
import { concatChannels } from "../src/ops/shape.ts";
import { backward, clearTape, detach, noGrad } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { parseTrain } from "../src/train/cli.ts";
import { type CmiVaeModel, rgbHue } from "../src/train/cmivae_task.ts";
import { GpuMetrics } from "../src/train/metrics.ts";
import type { Update } from "../src/train/task.ts";
import { Session, train } from "../src/train/trainer.ts";

/** Move parameters off their inits (zero biases, unit gains) so that every path matters. */
async function perturb(store: ParamStore, seed: number, amount = 0.3) {
  const rng = new Rng(seed);
  for (const t of store.params()) t.write((await t.read()).map((v) => v + amount * rng.normal()));
}

const S = 8, N = 3;
const img = (seed: number) => randn(N * 3 * S * S, seed).map((v) => Math.tanh(v));

Deno.test("cmivae: derangements have no fixed point, are permutations, and reach every derangement", () => {
  const rng = new Rng(5);
  for (let n = 2; n <= 40; n++) {
    for (let t = 0; t < 20; t++) {
      const p = derangement(n, rng);
      assert.equal(p.length, n);
      assert.deepEqual([...p].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i));
      assert.ok(p.every((v, i) => v !== i), `n ${n}: fixed point in ${p}`);
    }
  }
  // n = 4 has 9 derangements; 600 uniform draws see each about 67 times.
  const seen = new Map<string, number>();
  for (let t = 0; t < 600; t++) {
    const k = derangement(4, rng).join();
    seen.set(k, (seen.get(k) ?? 0) + 1);
  }
  assert.equal(seen.size, 9);
  for (const [k, c] of seen) assert.ok(c > 30 && c < 110, `${k}: ${c} of 600`);
  assert.throws(() => derangement(1, rng), /flowgpu: cmivae: a derangement needs n >= 2/);
});

Deno.test("cmivae: halves and stackRows move rows (values and gradcheck)", async () => {
  const a = randn(2 * 5, 1), b = randn(3 * 5, 2);
  const [st, h0, h1] = await noGrad(() => {
    const s = stackRows([Tensor.from(a, [2, 5]), Tensor.from(b, [3, 5])]);
    const [p, q] = halves(Tensor.from(randn(4 * 5, 3), [4, 5]));
    return Tensor.readAll([s, p, q]);
  });
  clearTape();
  assert.deepEqual([...st], [...a, ...b]);
  assert.deepEqual([...h0, ...h1], [...randn(20, 3)]);
  await gradcheck((x, y) => stackRows([x, y]), [{ data: a, shape: [2, 5] }, {
    data: b,
    shape: [3, 5],
  }]);
  await gradcheck((x) => {
    const [p, q] = halves(x);
    return add(scale(p, 2), q);
  }, [{ data: randn(6 * 2, 4), shape: [6, 2] }]);
  assert.throws(
    () => halves(Tensor.from(new Float32Array(3), [3, 1])),
    /flowgpu: cmivae: halves of an odd batch/,
  );
  clearTape();
});

Deno.test("cmivae: gradcheck of every network piece w.r.t. its inputs and parameters", async () => {
  const store = new ParamStore(3);
  const s = store.scope("net");
  const trunkBn = new ConvTrunk(s.child("tb"), 3, S, 2, 6, true);
  const trunk = new ConvTrunk(s.child("t"), 3, S, 2, 6, false);
  const e2 = new FeatureEncoder(s.child("e2"), 3, 2, 2);
  const gen = new Generator(s.child("g"), 3, S, 2, 5);
  const disc = new Discriminator(s.child("d"), 3, S, 2, 2);
  const q = new CodePredictor(s.child("q"), 3, S, 2, 3, 2);
  const fphi = new FeatureNet(s.child("f"), 3, S, 2, 4);
  await perturb(store, 4, 0.2);
  const params = (prefix: string) => store.params().filter((p) => p.name.startsWith(prefix));
  const x = { data: img(5), shape: [N, 3, S, S] };
  const opts = { kinks: true, maxElements: 8 };
  await gradcheck((t) => trunkBn.apply(t), [x], {
    ...opts,
    params: params("net.tb."),
    label: "trunk+BN",
  });
  assert.equal(trunkBn.norms.length, 2);
  await gradcheck((t) => trunk.apply(t), [x], {
    ...opts,
    params: params("net.t."),
    label: "trunk",
  });
  await gradcheck(
    (f) => {
      const p = e2.apply(f);
      return concatChannels([p.mu, p.logvar]);
    },
    [{ data: randn(N * 3, 6), shape: [N, 3] }],
    { ...opts, params: params("net.e2."), label: "E2" },
  );
  const y = await noGrad(() => gen.apply(Tensor.from(randn(N * 5, 7), [N, 5]))).read();
  clearTape();
  assert.ok(y.every((v) => Math.abs(v) < 1) && y.length === N * 3 * S * S, "G: tanh images");
  await gradcheck((z) => gen.apply(z), [{ data: randn(N * 5, 7), shape: [N, 5] }], {
    ...opts,
    params: params("net.g."),
    label: "G",
  });
  await gradcheck((z, t) => disc.apply(z, t), [{ data: randn(N * 2, 8), shape: [N, 2] }, x], {
    ...opts,
    params: params("net.d."),
    label: "D (projection)",
  });
  await gradcheck((z, t) => q.apply(z, t), [{ data: randn(N * 3, 9), shape: [N, 3] }, x], {
    ...opts,
    params: params("net.q."),
    label: "Q",
  });
  await gradcheck((t) => fphi.apply(t), [{ ...x, data: img(6) }], {
    ...opts,
    params: params("net.f."),
    label: "f_φ",
  });
  // The projection term is the row-wise <P z, h(x)>: D(z) − D(0) is linear in z.
  const z = randn(N * 2, 10);
  const [d1, d2, d0] = await noGrad(() => {
    const xt = Tensor.from(x.data, x.shape);
    return Tensor.readAll([
      disc.apply(Tensor.from(z, [N, 2]), xt),
      disc.apply(Tensor.from(z.map((v) => 2 * v), [N, 2]), xt),
      disc.apply(Tensor.from(new Float32Array(N * 2), [N, 2]), xt),
    ]);
  });
  clearTape();
  assertClose(Array.from(d2, (v, i) => v - d0[i]), Array.from(d1, (v, i) => 2 * (v - d0[i])), {
    rtol: 1e-4,
    atol: 1e-5,
    label: "projection linear in z",
  });
  store.release();
});

const CFG: CmiVaeConfig = {
  channels: 3,
  size: S,
  feature: 3,
  categorical: false,
  z1: 3,
  z2: 2,
  width: 2,
  lambda1: 0.7,
  lambda2: 1.3,
  lambda3: 2,
  lambda4: 0.5,
  terms: "both",
};
const PERM = [2, 0, 1];

function batch(cfg: CmiVaeConfig) {
  const classes = [1, 3, 0];
  const f = cfg.categorical
    ? Float32Array.from(
      { length: N * cfg.feature },
      (_, i) => classes[Math.floor(i / cfg.feature)] === i % cfg.feature ? 1 : 0,
    )
    : randn(N * cfg.feature, 11).map((v) => Math.tanh(v));
  return { x: img(12), f, classes, eps1: randn(N * cfg.z1, 13), eps2: randn(N * cfg.z2, 14) };
}

function make(cfg: CmiVaeConfig, seed = 2) {
  const store = new ParamStore(seed);
  const m = new CmiVae(store.scope(), cfg);
  return { store, m };
}

Deno.test("cmivae: each term of the objective equals its definition; L_D and f_φ's loss too", async () => {
  for (const categorical of [false, true]) {
    // A pixel weight (a set below its own side) scales L_rec's pixel sum.
    const pw = categorical ? 1 : 2.5;
    const cfg = { ...CFG, categorical, feature: categorical ? 4 : 3, pixelWeight: pw };
    const { store, m } = make(cfg);
    await perturb(store, 3, 0.2);
    const b = batch(cfg);
    const xt = () => Tensor.from(b.x, [N, 3, S, S]);
    const ft = () => Tensor.from(b.f, [N, cfg.feature]);
    const r = await noGrad(() => {
      const l = m.loss({ x: xt(), f: ft(), classes: b.classes, perm: PERM }, [
        Tensor.from(b.eps1, [N, cfg.z1]),
        Tensor.from(b.eps2, [N, cfg.z2]),
      ]);
      const qout = m.q!.apply(l.z1, l.fusions);
      const fp = m.fphi!.apply(l.fusions);
      const dFake = m.disc!.apply(l.z2t, l.fusions);
      const dReal = m.disc!.apply(l.z2, l.recons);
      const ld = m.discLoss(stackRows([l.z2, l.z2t]), stackRows([l.recons, l.fusions]));
      const lfphi = m.featureLoss(xt(), ft(), b.classes);
      const fReal = m.fphi!.apply(xt());
      return Tensor.readAll([
        ...[l.loss, l.recon, l.kl1, l.kl2, l.lf1!, l.lf2!, l.gan!, l.recons, l.fusions],
        ...[l.z1, l.z2, l.z2t, l.q1.mu, l.q1.logvar, l.q2.mu, l.q2.logvar, qout, fp],
        ...[dFake, dReal, ld, lfphi, fReal],
      ]);
    });
    clearTape();
    const [loss, recon, kl1, kl2, lf1, lf2, gan, rec, fus, z1, z2, z2t, mu1, lv1, mu2, lv2] = r;
    const [qout, fp, dFake, dReal, ld, lfphi, fReal] = r.slice(16);
    const d = 3 * S * S;
    let sse = 0;
    for (let i = 0; i < N * d; i++) sse += (b.x[i] - rec[i]) ** 2;
    const kl = (mu: Float32Array, lv: Float32Array) =>
      mu.reduce((a, v, i) => a + 0.5 * (v * v + Math.exp(lv[i]) - 1 - lv[i]), 0) / N;
    for (let i = 0; i < N * cfg.z1; i++) {
      assert.ok(Math.abs(z1[i] - (mu1[i] + Math.exp(lv1[i] / 2) * b.eps1[i])) < 1e-5, "z1");
    }
    for (let i = 0; i < N; i++) {
      for (let k = 0; k < cfg.z2; k++) {
        assert.equal(z2t[i * cfg.z2 + k], z2[PERM[i] * cfg.z2 + k], "z̃2 = z2[perm]");
        const want = mu2[i * cfg.z2 + k] +
          Math.exp(lv2[i * cfg.z2 + k] / 2) * b.eps2[i * cfg.z2 + k];
        assert.ok(Math.abs(z2[i * cfg.z2 + k] - want) < 1e-5, "z2");
      }
    }
    let q2 = 0;
    for (let i = 0; i < N * cfg.z2; i++) q2 += (qout[i] - z2t[i]) ** 2;
    let f2 = 0;
    if (categorical) {
      for (let i = 0; i < N; i++) {
        const row = Array.from(fp.subarray(i * 4, i * 4 + 4));
        const mx = Math.max(...row),
          lse = mx + Math.log(row.reduce((a, v) => a + Math.exp(v - mx), 0));
        f2 += (lse - row[b.classes[PERM[i]]]) / N;
      }
    } else {
      for (let i = 0; i < N; i++) {
        for (let c = 0; c < 3; c++) f2 += (fp[i * 3 + c] - b.f[PERM[i] * 3 + c]) ** 2 / N;
      }
    }
    const softplus = (v: number) => Math.max(v, 0) + Math.log1p(Math.exp(-Math.abs(v)));
    const ganRef = Array.from(dFake).reduce((a, v) => a + softplus(-v), 0) / N;
    const ldRef = Array.from(dReal).reduce((a, v) => a + softplus(-v), 0) / N +
      Array.from(dFake).reduce((a, v) => a + softplus(v), 0) / N;
    let fphiRef = 0;
    for (let i = 0; i < N; i++) {
      if (categorical) {
        const row = Array.from(fReal.subarray(i * 4, i * 4 + 4));
        const mx = Math.max(...row),
          lse = mx + Math.log(row.reduce((a, v) => a + Math.exp(v - mx), 0));
        fphiRef += (lse - row[b.classes[i]]) / N;
      } else {
        for (let c = 0; c < 3; c++) fphiRef += (fReal[i * 3 + c] - b.f[i * 3 + c]) ** 2 / N;
      }
    }
    const label = categorical ? "categorical" : "continuous";
    assertClose(
      [recon[0], kl1[0], kl2[0], lf1[0], lf2[0], gan[0], ld[0], lfphi[0]],
      [pw * sse / N, kl(mu1, lv1), kl(mu2, lv2), q2 / (2 * N), f2, ganRef, ldRef, fphiRef],
      { rtol: 2e-5, atol: 1e-6, label: `${label}: terms` },
    );
    const [l1, l2, l3, l4] = m.lambda;
    assertClose(
      loss,
      [recon[0] + l1 * kl1[0] + l2 * kl2[0] + l3 * (lf1[0] + lf2[0]) + l4 * gan[0]],
      {
        rtol: 1e-6,
        label: `${label}: loss`,
      },
    );
    // The generator's halves: x' = G(z1, z2), x̂ = G(z1, z̃2) (one BN batch of both).
    const both = await noGrad(() =>
      m.gen.apply(
        Tensor.from(
          Float32Array.from({ length: 2 * N * (cfg.z1 + cfg.z2) }, (_, i) => {
            const row = Math.floor(i / (cfg.z1 + cfg.z2)), k = i % (cfg.z1 + cfg.z2);
            const r0 = row % N;
            return k < cfg.z1
              ? z1[r0 * cfg.z1 + k]
              : (row < N ? z2 : z2t)[r0 * cfg.z2 + k - cfg.z1];
          }),
          [2 * N, cfg.z1 + cfg.z2],
        ),
      )
    ).read();
    clearTape();
    assertClose(both, [...rec, ...fus], { rtol: 1e-4, atol: 1e-5, label: `${label}: G halves` });
    store.release();
  }
});

Deno.test("cmivae: gradcheck of the objective w.r.t. x and every parameter off the stop-gradient paths", async () => {
  for (const categorical of [false, true]) {
    const cfg = { ...CFG, categorical, feature: categorical ? 4 : 3 };
    const { store, m } = make(cfg, 5);
    await perturb(store, 6, 0.2);
    // f_φ is frozen during the main stage: it passes gradients, takes none.
    store.group("fphi").frozen = true;
    const b = batch(cfg);
    // z̃2's detached uses (L_f1's target, D's code) depend on enc2 and f only: every other
    // parameter and x see the plain gradient of the function.
    await gradcheck(
      (x, f, e1, e2) => m.loss({ x, f, classes: b.classes, perm: PERM }, [e1, e2]).loss,
      [
        { data: b.x, shape: [N, 3, S, S] },
        { data: b.f, shape: [N, cfg.feature], grad: false },
        { data: b.eps1, shape: [N, cfg.z1], grad: false },
        { data: b.eps2, shape: [N, cfg.z2], grad: false },
      ],
      {
        params: store.params(["enc1", "gen", "q", "disc"]),
        kinks: true,
        maxElements: 5,
        label: `objective (${categorical ? "class" : "colour"})`,
      },
    );
    store.release();
  }
  // Without L_f1 and D nothing is detached: enc2's gradient is checked whole (L_f2 on).
  const cfg = { ...CFG, terms: "f2" as const, lambda4: 0 };
  const { store, m } = make(cfg, 7);
  assert.equal(m.q, undefined);
  assert.equal(m.disc, undefined);
  assert.deepEqual(m.mainGroups, ["enc1", "enc2", "gen"]);
  await perturb(store, 8, 0.2);
  store.group("fphi").frozen = true;
  const b = batch(cfg);
  await gradcheck(
    (x, e1, e2) => m.loss({ x, f: Tensor.from(b.f, [N, 3]), perm: PERM }, [e1, e2]).loss,
    [
      { data: b.x, shape: [N, 3, S, S], grad: false },
      { data: b.eps1, shape: [N, cfg.z1], grad: false },
      { data: b.eps2, shape: [N, cfg.z2], grad: false },
    ],
    { params: store.params(["enc2"]), kinks: true, maxElements: 6, label: "objective wrt E2" },
  );
  assert.ok(store.group("fphi").params.every((p) => !p.grad), "frozen f_φ got no gradient");
  store.release();
});

Deno.test("cmivae: L_f1's target and D's code are stop-gradients: E2's gradient is that of a constant target", async () => {
  const cfg = { ...CFG, lambda3: 1, lambda4: 1, terms: "f1" as const };
  const { store, m } = make(cfg, 9);
  await perturb(store, 10, 0.2);
  const b = batch(cfg);
  const enc2 = store.params(["enc2"]);
  const eps = () =>
    [Tensor.from(b.eps1, [N, cfg.z1]), Tensor.from(b.eps2, [N, cfg.z2])] as [Tensor, Tensor];
  const inputs = () => ({ x: Tensor.from(b.x, [N, 3, S, S]), f: Tensor.from(b.f, [N, 3]) });
  // The model's L_f1 + L_GAN, backpropagated into E2 only.
  const grads = async (term: () => Tensor) => {
    for (const p of enc2) p.zeroGrad();
    backward(term(), { params: enc2 });
    const g = await Promise.all(enc2.map((p) => p.grad!.read()));
    for (const p of enc2) p.zeroGrad();
    clearTape();
    return g;
  };
  const model = await grads(() => {
    const l = m.loss({ ...inputs(), perm: PERM }, eps());
    return add(l.lf1!, l.gan!);
  });
  const target = await noGrad(() => m.loss({ ...inputs(), perm: PERM }, eps()).z2t).read();
  clearTape();
  // The same terms written out, with z̃2's two other uses a constant (fixed) or live.
  const written = (fixed: boolean) => () => {
    const { x, f } = inputs(), [e1, e2] = eps();
    const q1 = m.enc1.apply(x), q2 = m.enc2.apply(f);
    const z1 = reparameterize(q1.mu, q1.logvar, e1);
    const z2 = reparameterize(q2.mu, q2.logvar, e2);
    const z2t = gatherBatch(z2, PERM);
    const [, xhat] = halves(
      m.gen.apply(concatChannels([stackRows([z1, z1]), stackRows([z2, z2t])])),
    );
    const t = fixed ? Tensor.from(target, [N, cfg.z2]) : z2t;
    const lf1 = scale(squaredError(m.q!.apply(z1, xhat), t, "sum"), 0.5 / N);
    return add(lf1, bceWithLogits(m.disc!.apply(fixed ? t : z2t, xhat), 1));
  };
  const constant = await grads(written(true));
  const live = await grads(written(false));
  enc2.forEach((p, i) => {
    assertClose(model[i], constant[i], { rtol: 1e-4, atol: 1e-6, label: p.name });
  });
  const gap = live.reduce(
    (a, g, i) => a + g.reduce((s, v, j) => s + Math.abs(v - constant[i][j]), 0),
    0,
  );
  assert.ok(gap > 1e-3, `the detached paths carry gradient when live (gap ${gap})`);
  // detach itself: no gradient through it.
  const t = Tensor.param(randn(4, 1), [4]);
  const y = add(detach(t), t);
  backward(y);
  assertClose(await t.grad!.read(), [1, 1, 1, 1], { label: "detach" });
  clearTape();
  t.release();
  store.release();
});

Deno.test("cmivae: gradcheck of L_D w.r.t. D and of f_φ's loss w.r.t. f_φ; L_D passes no gradient to its inputs", async () => {
  for (const categorical of [false, true]) {
    const cfg = { ...CFG, categorical, feature: categorical ? 4 : 3 };
    const { store, m } = make(cfg, 11);
    await perturb(store, 12, 0.2);
    const b = batch(cfg);
    await gradcheck(
      (z, x) => m.discLoss(z, x),
      [{ data: randn(2 * N * 2, 13), shape: [2 * N, 2], grad: false }, {
        data: randn(2 * N * 3 * S * S, 14).map(Math.tanh),
        shape: [2 * N, 3, S, S],
        grad: false,
      }],
      { params: store.params(["disc"]), kinks: true, maxElements: 6, label: "L_D" },
    );
    await gradcheck(
      (x, f) => m.featureLoss(x, f, b.classes),
      [{ data: b.x, shape: [N, 3, S, S] }, { data: b.f, shape: [N, cfg.feature], grad: false }],
      { params: store.params(["fphi"]), kinks: true, maxElements: 6, label: "f_φ loss" },
    );
    const z = Tensor.param(randn(2 * N * 2, 15), [2 * N, 2]);
    const x = Tensor.param(randn(2 * N * 3 * S * S, 16).map(Math.tanh), [2 * N, 3, S, S]);
    backward(m.discLoss(z, x));
    assert.ok(!z.grad && !x.grad, "L_D detaches its pairs");
    clearTape();
    z.release();
    x.release();
    assert.throws(
      () =>
        m.discLoss(
          Tensor.from(new Float32Array(6), [3, 2]),
          Tensor.from(new Float32Array(3 * 3 * S * S), [3, 3, S, S]),
        ),
      /flowgpu: cmivae: discLoss needs matching even batches/,
    );
    clearTape();
    store.release();
  }
});

const TINY = [
  ...["--model", "cmivae", "--width", "2", "--batch", "8", "--train-limit", "256"],
  ...["--fphi-steps", "3", "--steps", "40", "--warmup", "2", "--lr", "2e-3"],
  ...["--sample-every", "0", "--eval-every", "0", "--eval-limit", "40", "--probe-train", "40"],
  ...["--swap-pairs", "40", "--judge-steps", "30", "--mig-samples", "300"],
];

/** Every trainable tensor and fixed tensor (BN statistics) of a store, by name. */
async function snapshot(store: ParamStore): Promise<Map<string, Float32Array>> {
  const names = [...store.tensors.keys()];
  const data = await Tensor.readAll(names.map((k) => store.tensors.get(k)!));
  return new Map(names.map((k, i) => [k, data[i]]));
}

/** Names whose values differ between two snapshots. */
function changed(a: Map<string, Float32Array>, b: Map<string, Float32Array>): string[] {
  return [...a.keys()].filter((k) => a.get(k)!.some((v, i) => !Object.is(v, b.get(k)![i])));
}

/** One update as the trainer runs it. */
function run(s: Session, u: Update): void {
  const opt = s.optimizers.get(u.optimizer)!;
  const { loss } = u.run();
  backward(loss, { params: opt.params });
  opt.step(1e-2);
  clearTape();
  flush();
}

Deno.test("cmivae task: f_φ trains alone first; the D update leaves every other group, f_φ and the BN statistics bit-identical; the main update leaves D and f_φ", async () => {
  for (const feature of ["colour", "digit"]) {
    const { task, cfg } = parseTrain([...TINY, "--feature", feature]);
    const s = new Session(task, cfg, await task.build(cfg, "train"));
    const model = s.model as CmiVaeModel;
    const groups = s.model.store.groups().map((g) => g.name).sort();
    assert.deepEqual(
      groups,
      feature === "colour"
        ? ["disc", "enc1", "enc2", "fphi", "gen"]
        : ["disc", "enc1", "enc2", "fphi", "gen", "q"],
    );
    const inGroup = (names: string[], g: string) => names.filter((k) => k.startsWith(`${g}.`));
    // f_φ's stage: one update, f_φ only.
    let before = await snapshot(s.model.store);
    const first = s.model.updates(0);
    assert.deepEqual(first.map((u) => u.optimizer), ["fphi"]);
    run(s, first[0]);
    let diff = changed(before, await snapshot(s.model.store));
    assert.ok(diff.length > 0 && diff.every((k) => k.startsWith("fphi.")), `fphi stage: ${diff}`);
    // The main stage: f_φ frozen, the main update, then D's.
    const ups = s.model.updates(3);
    assert.deepEqual(ups.map((u) => u.optimizer), ["main", "disc"]);
    assert.ok(s.model.store.group("fphi").frozen);
    before = await snapshot(s.model.store);
    run(s, ups[0]);
    const mid = await snapshot(s.model.store);
    diff = changed(before, mid);
    assert.deepEqual(inGroup(diff, "disc"), [], "main update: D unchanged");
    assert.deepEqual(inGroup(diff, "fphi"), [], "main update: f_φ unchanged");
    for (const g of model.cmi.mainGroups) assert.ok(inGroup(diff, g).length > 0, `${g} trained`);
    assert.ok(diff.some((k) => k.includes("running_mean")), "BN statistics move in the main pass");
    run(s, ups[1]);
    diff = changed(mid, await snapshot(s.model.store));
    assert.ok(diff.length > 0, "D trained");
    assert.ok(diff.every((k) => k.startsWith("disc.")), `D update changed ${diff}`);
    // Full steps keep f_φ frozen.
    const fphi = [...mid].filter(([k]) => k.startsWith("fphi."));
    s.step = 3;
    const m = new GpuMetrics();
    for (let i = 0; i < 3; i++) s.trainStep(m);
    const after = await snapshot(s.model.store);
    for (const [k, v] of fphi) assert.deepEqual(after.get(k), v, `${k} frozen`);
    const r = await m.read();
    for (
      const k of [
        "loss",
        "recon",
        "kl1",
        "kl2",
        "gan",
        "d_loss",
        feature === "colour" ? "lf2" : "lf1",
      ]
    ) {
      assert.ok(Number.isFinite(r.get(k)?.mean), `${feature}: ${k} logged`);
    }
    m.release();
    s.release();
  }
});

Deno.test("cmivae task: a tiny run lowers f_φ's and the main losses, writes eval.json with MIG, swap and leakage keys", async () => {
  const { task, cfg } = parseTrain([...TINY, "--fphi-steps", "45", "--steps", "105"]);
  const s = new Session(task, cfg, await task.build(cfg, "train"));
  s.model.init!();
  const m = new GpuMetrics();
  const fphi: number[] = [], recon: number[] = [];
  for (let i = 0; i < 105; i++) {
    s.trainStep(m);
    if (i % 15 === 14) {
      const r = await m.read();
      if (i < 45) fphi.push(r.get("fphi_loss")!.mean);
      else recon.push(r.get("recon")!.mean);
    }
  }
  assert.ok(fphi[2] < 0.85 * fphi[0], `f_φ loss fell: ${fphi}`);
  assert.ok(recon.every(Number.isFinite) && recon[3] < 0.9 * recon[0], `recon fell: ${recon}`);
  m.release();
  s.release();

  const dir = Deno.makeTempDirSync();
  const run = parseTrain([...TINY, "--steps", "6", "--out", dir]);
  await train(run.task, run.cfg);
  const ev = JSON.parse(Deno.readTextFileSync(join(dir, "eval.json")));
  const mt = ev.metrics;
  const keys = [
    ...["mse_01", "mse_pm1", "test_kl1", "test_kl2", "mig_lab", "mig_all", "mig_spec"],
    ...["mig_hue", "mig_digit", "swap_acc", "swap_acc_hue", "swap_ignored_hue", "swap_kept_hue"],
    ...["swap_chance", "leak_acc", "leak_chance", "leak_norm", "probe_z1_digit_acc"],
    ...["fphi_swap_err", "fphi_real_err", "colour_swap_err", "colour_swap_hue_acc"],
    ...["judge_real_acc_hue", "judge_real_acc_digit"],
  ];
  for (const k of keys) {
    assert.equal(typeof mt[k], "number", `${k} = ${mt[k]}`);
    assert.ok(Number.isFinite(mt[k]), `${k} = ${mt[k]}`);
  }
  assert.equal(mt.specified, "hue");
  assert.equal(mt.mig_spec, mt.mig_hue);
  assert.equal(mt.mig_lab, mt.mig_hue, "MIG_lab is the specified factor's gap");
  assertClose([mt.mig_all], [(mt.mig_hue + mt.mig_digit) / 2], { rtol: 1e-12 });
  assert.equal(mt.mig_hue_rival_enc, "unknown");
  assertClose([mt.mse_pm1], [4 * mt.mse_01], { rtol: 1e-12 });
  assert.ok(mt.swap_acc >= 0 && mt.swap_acc <= 1 && mt.leak_chance > 0 && mt.leak_chance < 1);
  assert.deepEqual(ev.images.sort(), ["eval/reconstructions.png", "eval/swap_colour.png"]);
  const png = Deno.readFileSync(join(dir, "eval/swap_colour.png"));
  assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
  Deno.removeSync(dir, { recursive: true });
});

const SHAPES = [
  ...["--model", "cmivae", "--data", "shapes2.5d", "--size", "16", "--width", "2"],
  ...["--batch", "8", "--train-limit", "256", "--steps", "6", "--warmup", "2", "--lr", "2e-3"],
  ...["--sample-every", "0", "--eval-every", "0", "--eval-limit", "60", "--probe-train", "60"],
  ...["--swap-pairs", "40", "--judge-steps", "30", "--mig-samples", "300"],
];

Deno.test("cmivae task: on shapes2.5d the one-hot feature is the label column; no f_φ; z2 4 + z1 6 at width 8; the main loss falls on a fixed batch", async () => {
  // Defaults: the plain VAE's 10 code dims and width, and the pixel weight of a 16 px image.
  const d = parseTrain(["--model", "cmivae", "--data", "shapes2.5d", "--size", "16"]);
  const dm = await d.task.build(d.cfg, "train") as CmiVaeModel;
  assert.deepEqual([dm.cmi.cfg.z2, dm.cmi.cfg.z1, dm.cmi.cfg.width], [4, 6, 8]);
  assert.equal(dm.cmi.pixelWeight, 16);
  dm.release();
  dm.store.release();

  const { task, cfg } = parseTrain(SHAPES);
  const s = new Session(task, cfg, await task.build(cfg, "train"));
  const model = s.model as CmiVaeModel;
  assert.equal(model.data.name, "shapes2.5d");
  assert.equal(model.data.size, 16);
  assert.equal(model.data.train.count, 256);
  assert.equal(model.data.factors[model.spec].name, "object_hue");
  assert.equal(model.data.factors[model.kept].name, "shape");
  assert.deepEqual(s.model.store.groups().map((g) => g.name).sort(), [
    "disc",
    "enc1",
    "enc2",
    "gen",
    "q",
  ]);
  assert.equal(model.cmi.fphi, undefined);
  assert.equal(model.cmi.terms, "f1");
  assert.equal(model.fphiSteps, 0);
  assert.deepEqual([...s.optimizers.keys()].sort(), ["disc", "main"]);
  assert.deepEqual(s.model.updates(0).map((u) => u.optimizer), ["main", "disc"]);

  // f(x): one 1 per row, at the image's object hue (factor column 2).
  const nf = model.data.factors.length, n = 8, k = 10;
  const pos = Uint32Array.from({ length: n }, (_, i) => 31 * i);
  const b = model.data.train.batch(pos);
  const f = model.features(b.labels, b.rgb, n);
  assert.equal(f.length, n * k);
  const hues = Array.from({ length: n }, (_, i) => b.labels[i * nf + 2]);
  assert.ok(new Set(hues).size > 1, `several hues: ${hues}`);
  for (let i = 0; i < n; i++) {
    const row = Array.from(f.subarray(i * k, (i + 1) * k));
    assert.deepEqual(row, Array.from({ length: k }, (_, j) => (j === hues[i] ? 1 : 0)));
  }

  // Main updates on one fixed batch and fixed noise: the objective falls.
  s.model.init!();
  const x = () => Tensor.from(b.x, [n, 3, 16, 16]);
  const ft = () => Tensor.from(f, [n, k]);
  const perm = derangement(n, new Rng(4));
  const eps = () =>
    [Tensor.from(randn(n * 6, 21), [n, 6]), Tensor.from(randn(n * 4, 22), [n, 4])] as [
      Tensor,
      Tensor,
    ];
  const losses: number[] = [];
  const opt = s.optimizers.get("main")!;
  for (let i = 0; i < 12; i++) {
    const l = model.cmi.loss({ x: x(), f: ft(), perm }, eps());
    losses.push(await l.loss.item());
    backward(l.loss, { params: opt.params });
    opt.step(5e-3);
    clearTape();
    flush();
  }
  assert.ok(losses.every(Number.isFinite), `finite: ${losses}`);
  assert.ok(losses[11] < 0.8 * losses[0], `the loss fell: ${losses.map((v) => v.toFixed(1))}`);
  s.release();
});

Deno.test("cmivae task: a tiny shapes2.5d run writes eval.json with MIG_lab, leakage, swap and MSE keys, no f_φ readings", async () => {
  const dir = Deno.makeTempDirSync();
  const run = parseTrain([...SHAPES, "--out", dir]);
  await train(run.task, run.cfg);
  const ev = JSON.parse(Deno.readTextFileSync(join(dir, "eval.json")));
  const mt = ev.metrics;
  const factors = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"];
  const keys = [
    ...["mse_01", "mse_pm1", "test_kl1", "test_kl2", "mig_lab", "mig_all", "mig_spec"],
    ...["swap_acc", "swap_acc_object_hue", "swap_ignored_object_hue", "swap_kept_object_hue"],
    ...["swap_chance", "leak_acc", "leak_chance", "leak_norm"],
    ...factors.map((f) => `mig_${f}`),
    ...factors.map((f) => `judge_real_acc_${f}`),
    ...factors.filter((f) => f !== "object_hue").map((f) => `probe_z1_${f}_acc`),
  ];
  for (const k of keys) {
    assert.equal(typeof mt[k], "number", `${k} = ${mt[k]}`);
    assert.ok(Number.isFinite(mt[k]), `${k} = ${mt[k]}`);
  }
  assert.equal(mt.specified, "object_hue");
  assert.equal(mt.mig_lab, mt.mig_object_hue, "MIG_lab is the label's gap");
  assert.equal(mt.mig_spec, mt.mig_object_hue);
  assertClose([mt.mig_all], [factors.reduce((a, f) => a + mt[`mig_${f}`], 0) / 6], {
    rtol: 1e-12,
  });
  assert.equal(mt.mig_object_hue_rival_enc, "unknown");
  assert.equal(mt.mig_shape_rival_enc, "z2", "an unlabelled factor's rival is z2");
  assert.equal(mt.leak_norm, (mt.leak_acc - mt.leak_chance) / (1 - mt.leak_chance));
  assert.ok(mt.leak_chance > 0.05 && mt.leak_chance < 0.5, `chance ${mt.leak_chance}`);
  assert.ok(mt.swap_acc >= 0 && mt.swap_acc <= 1);
  assertClose([mt.mse_pm1], [4 * mt.mse_01], { rtol: 1e-12 });
  assert.equal(mt.eval_images, 60);
  const fphiKeys = Object.keys(mt).filter((k) => k.startsWith("fphi") || k.startsWith("colour"));
  assert.deepEqual(fphiKeys, []);
  assert.deepEqual(ev.images.sort(), ["eval/reconstructions.png", "eval/swap_object_hue.png"]);
  const png = Deno.readFileSync(join(dir, "eval/swap_object_hue.png"));
  assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("cmivae task: hue of RGB inverts hsv(); bad configs are refused by name", async () => {
  const rng = new Rng(3);
  for (let i = 0; i < 200; i++) {
    const h = rng.next(), sat = 0.6 + 0.4 * rng.next(), v = 0.6 + 0.4 * rng.next();
    const got = rgbHue(hsv(h, sat, v));
    assert.ok(Math.abs(got - h) < 1e-9 || Math.abs(Math.abs(got - h) - 1) < 1e-9, `${h} vs ${got}`);
    assert.equal(hueBin(got), hueBin(h));
  }
  assert.equal(rgbHue([0.5, 0.5, 0.5]), 0);
  const { task, cfg } = parseTrain([...TINY, "--fphi-steps", "40"]);
  await assert.rejects(
    Promise.resolve().then(() => task.build(cfg, "train")),
    /flowgpu: cmivae: --fphi-steps 40 leaves no step of --steps 40/,
  );
  assert.throws(() => parseTrain([...TINY, "--feature", "shape"]), /expected one of colour, digit/);
  assert.throws(
    () => parseTrain([...TINY, "--data", "mnist"]),
    /expected one of cmnist28, shapes2.5d/,
  );
  const bad = parseTrain([...SHAPES, "--label", "colour"]);
  await assert.rejects(
    Promise.resolve().then(() => bad.task.build(bad.cfg, "train")),
    /flowgpu: cmivae: no factor 'colour' \(factors: floor_hue, wall_hue, object_hue/,
  );
  const big = parseTrain([...TINY, "--size", "32"]);
  await assert.rejects(
    Promise.resolve().then(() => big.task.build(big.cfg, "train")),
    /flowgpu: cmivae: cmnist28 is 28 px, not 32/,
  );
  // Without f_φ on shapes2.5d, --fphi-steps does not count against --steps.
  const nf = parseTrain([...SHAPES, "--fphi-steps", "40"]);
  const m = await nf.task.build(nf.cfg, "train") as CmiVaeModel;
  assert.equal(m.fphiSteps, 0);
  m.release();
  m.store.release();
  const store = new ParamStore(1);
  assert.throws(
    () => new CmiVae(store.scope(), { ...CFG, size: 10 }),
    /size 10 must be a multiple of 4/,
  );
  assert.throws(
    () => new CmiVae(store.scope("b"), { ...CFG, z2: 0 }),
    /z2 0 must be an integer >= 1/,
  );
  assert.throws(
    () => new CmiVae(store.scope("c"), { ...CFG, lambda4: -1 }),
    /weights λ1..λ4 must be >= 0/,
  );
  assert.throws(
    () => new CmiVae(store.scope("d"), { ...CFG, terms: "both", fphi: false }),
    /L_f2 \(terms both\) needs f_φ/,
  );
  assert.throws(
    () => new CmiVae(store.scope("e"), { ...CFG, pixelWeight: 0 }),
    /pixel weight 0 must be > 0/,
  );
});

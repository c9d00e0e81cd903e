// Zheng & Sun's label relevant/irrelevant VAE and its cVAE-GAN baseline: every network piece and
// every group's loss pass gradcheck; the GM terms and the step's terms equal their definitions;
// Algorithm 1's chain of updates on one forward gives each group exactly the gradient of its own
// loss at the step's starting parameters, and each update (the adversaries' included) leaves
// every other group bit-identical; the task trains through the generic trainer with falling
// losses and evaluates into every eval.json key; bad labels, sizes and variants are refused.
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, type Checked, gradcheck, randn } from "./gradcheck.ts";
import type { FactorClassifier } from "../src/eval/swap.ts";
import { inpaintMasks, type LrLiVaeModel } from "../src/train/lrlivae_task.ts";
import {
  levelChannels,
  levelsOf,
  LrLiVae,
  type LrLiVaeConfig,
  type StepNoise,
} from "../src/models/lrlivae.ts";
import { ParamStore } from "../src/nn/store.ts";
import { Adam } from "../src/ops/adam.ts";
import { concatChannels } from "../src/ops/shape.ts";
import { backward, clearTape, noGrad, tapeLength } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { parseTrain } from "../src/train/cli.ts";
import { GpuMetrics } from "../src/train/metrics.ts";
import { Session } from "../src/train/trainer.ts";

/** Move parameters off their inits (zero biases, unit BN scales) so every path carries a gradient. */
async function perturb(store: ParamStore, seed: number, amount = 0.3) {
  const rng = new Rng(seed);
  for (const t of store.params()) t.write((await t.read()).map((v) => v + amount * rng.normal()));
}

/** A tiny model: 8 x 8 RGB, one level of 2 channels, FC 4, 3 classes. */
function tiny(variant: "lrlivae" | "cvaegan", seed = 1, extra: Partial<LrLiVaeConfig> = {}) {
  const store = new ParamStore(seed);
  const cfg: LrLiVaeConfig = {
    variant,
    channels: 3,
    size: 8,
    classes: 3,
    zs: 2,
    zu: 2,
    base: 2,
    fc: 4,
    advHidden: 4,
    ...extra,
  };
  const model = new LrLiVae(store.scope(), cfg);
  model.disc.snUpdate = false;
  return { store, model };
}

/**
 * Run D's power iterations to convergence, then freeze them: spectral norm's backward treats u
 * and v as constants, which is the exact gradient of σ only at the power iteration's fixed point.
 */
function convergeSn(model: LrLiVae): void {
  model.disc.snUpdate = true;
  noGrad(() => {
    for (let i = 0; i < 200; i++) model.disc.weights();
  });
  clearTape();
  model.disc.snUpdate = false;
}

/**
 * gradcheck at two steps, 1e-3 and 1e-4: an element passes when either judges it right. A whole
 * model's loss has many ReLU kinks (common within 1e-3 of some pre-activation) and small gradient
 * elements (lost in f32 below 1e-4 steps); a wrong gradient fails at both steps.
 */
async function gradcheckTwoSteps(
  f: (...xs: Tensor[]) => Tensor,
  inputs: Parameters<typeof gradcheck>[1],
  opts: Parameters<typeof gradcheck>[2] & { label: string },
): Promise<void> {
  const runs = [];
  for (const h of [1e-3, 1e-4]) {
    runs.push(await gradcheck(f, inputs, { ...opts, h, noThrow: true }));
  }
  const [a, b] = runs;
  assert.equal(a.elements.length, b.elements.length);
  const good = (v: string) => v === "ok" || v === "kink";
  const bad: Checked[] = [];
  let wrong = 0;
  a.elements.forEach((e, i) => {
    const o = b.elements[i];
    assert.ok(o.name === e.name && o.index === e.index, "the same elements at both steps");
    if (good(e.verdict) || good(o.verdict)) return;
    bad.push(e);
    if (e.verdict === "mismatch" || o.verdict === "mismatch") wrong++;
  });
  assert.ok(
    wrong === 0 && bad.length * 10 <= a.elements.length,
    `gradcheck ${opts.label}: of ${a.elements.length} elements ${bad.length} pass at neither ` +
      `step: ${bad.slice(0, 6).map((e) => `${e.name} [${e.index}] ${e.analytic} vs ${e.numeric}`)}`,
  );
}

const N = 3, S = 8, D = 3 * S * S;
const Y = [0, 2, 1];
const images = (seed: number) => randn(N * D, seed).map((v) => Math.tanh(v));

/** Fixed noise of a step as persistent tensors (they outlive clearTape). */
function stepNoise(model: LrLiVae, seed: number): StepNoise & { release(): void } {
  const dz = model.codeDims, ds = model.cfg.zs;
  const eps = Tensor.constant(randn(N * dz, seed), [N, dz]);
  const zu = Tensor.constant(randn(N * dz, seed + 1), [N, dz]);
  const zs = Tensor.constant(randn(N * ds, seed + 2), [N, ds]);
  return {
    eps,
    zu,
    zs: model.variant === "lrlivae" ? zs : undefined,
    release() {
      for (const t of [eps, zu, zs]) t.release();
    },
  };
}

Deno.test("lrlivae: level rule and networks' shapes; encoders, decoder, D and q_ω pass gradcheck", async () => {
  assert.equal(levelsOf(64), 4);
  assert.equal(levelsOf(8), 1);
  assert.deepEqual(levelChannels(4, 64), [64, 128, 256, 512]);
  assert.deepEqual(levelChannels(5, 8), [8, 16, 32, 64, 64]);
  assert.throws(() => levelsOf(28), /flowgpu: lrlivae: image size 28 is not 4·2\^L/);
  const { store, model } = tiny("lrlivae", 2);
  await perturb(store, 3);
  convergeSn(model);
  const x = images(4);
  const shape = [N, 3, S, S];
  const p = (g: string) => store.params([g]);
  const codes = noGrad(() => model.encode(Tensor.from(x, shape)));
  assert.deepEqual([codes.zs!.shape, codes.mu.shape, codes.logvar.shape], [[N, 2], [N, 2], [
    N,
    2,
  ]]);
  clearTape();
  const opts = { kinks: true, maxElements: 6 };
  await gradcheck((t) => model.encodeS(t), [{ data: x, shape }], {
    ...opts,
    params: p("encs"),
    label: "Enc_s",
  });
  await gradcheck(
    (t) => {
      const q = model.encodeU(t);
      return concatChannels([q.mu, q.logvar]);
    },
    [{ data: x, shape }],
    { ...opts, params: p("encu"), label: "Enc_u (mu, logvar)" },
  );
  await gradcheck(
    (zs, zu) => model.decode(zs, zu),
    [{ data: randn(N * 2, 5), shape: [N, 2] }, { data: randn(N * 2, 6), shape: [N, 2] }],
    { ...opts, params: p("dec"), label: "Dec" },
  );
  await gradcheck((t) => model.disc.score(t, Y, model.disc.weights()), [{ data: x, shape }], {
    ...opts,
    params: p("disc"),
    label: "D(x, y) with spectral norm and projection",
  });
  await gradcheck((z) => model.adv!.apply(z), [{ data: randn(N * 2, 7), shape: [N, 2] }], {
    ...opts,
    params: p("advcls"),
    label: "q_ω",
  });
  store.release();
});

Deno.test("lrlivae: GM terms equal their definitions; the variance floor; L_GM passes gradcheck", async () => {
  const { store, model } = tiny("lrlivae", 5, { zs: 3 });
  await perturb(store, 6, 0.5);
  const zsData = randn(N * 3, 8);
  const t = noGrad(() => model.gmTerms(Tensor.from(zsData, [N, 3]), Y));
  const [cls, lkd] = await Tensor.readAll([t.cls, t.lkd]);
  const [mu, lv] = await Tensor.readAll([model.gmMu!, model.gmLogvar!]);
  clearTape();
  let refCls = 0, refLkd = 0;
  for (let b = 0; b < N; b++) {
    const logit = [0, 1, 2].map((c) => {
      let s = 0;
      for (let d = 0; d < 3; d++) {
        const v = Math.max(lv[c * 3 + d], Math.log(1e-3));
        s -= 0.5 * ((zsData[b * 3 + d] - mu[c * 3 + d]) ** 2 / Math.exp(v) + v);
      }
      return s;
    });
    const mx = Math.max(...logit);
    const lse = mx + Math.log(logit.reduce((a, v) => a + Math.exp(v - mx), 0));
    refCls += (lse - logit[Y[b]]) / N;
    refLkd += -logit[Y[b]] / N;
  }
  assertClose([cls[0], lkd[0]], [refCls, refLkd], { rtol: 1e-5, label: "L_cls, L_lkd" });
  // σ² is floored at 1e-3 (§8 Z4): a collapsed log-variance reads as log 1e-3.
  model.gmLogvar!.write(new Float32Array(9).fill(-20));
  const floored = await noGrad(() => model.gmLogvarFloored()).read();
  clearTape();
  assertClose(floored, new Array(9).fill(Math.log(1e-3)), { rtol: 1e-6, label: "floor" });
  await perturb(store, 9, 0.5);
  const x = images(10);
  await gradcheck((t) => model.gmLoss(t, Y).loss, [{ data: x, shape: [N, 3, S, S] }], {
    kinks: true,
    maxElements: 6,
    params: store.params(["encs", "gm"]),
    label: "L_GM = L_cls + λ_lkd L_lkd",
  });
  store.release();
});

for (const variant of ["lrlivae", "cvaegan"] as const) {
  Deno.test(`lrlivae (${variant}): step terms equal their definitions; every group's loss passes gradcheck`, async () => {
    // A pixel weight of 0.01 brings L_rec near the other terms' size, so f32 differences of
    // every loss resolve its small gradients too.
    const { store, model } = tiny(variant, 11, { pixelWeight: 0.01 });
    await perturb(store, 12);
    convergeSn(model);
    const x = images(13);
    const noise = stepNoise(model, 14);
    const l = noGrad(() => model.stepLosses(Tensor.from(x, [N, 3, S, S]), Y, noise));
    const names = Object.keys(l.terms);
    const vals = await Tensor.readAll([...names.map((k) => l.terms[k]), l.xf]);
    const term = (k: string) => vals[names.indexOf(k)][0];
    const xf = vals[vals.length - 1];
    clearTape();
    let sse = 0;
    for (let i = 0; i < N * D; i++) sse += (x[i] - xf[i]) ** 2;
    assertClose([term("rec")], [(0.01 * sse) / N / 2], {
      rtol: 1e-5,
      label: "L_rec = (w/2) Σ_pix, batch mean",
    });
    assert.ok(term("kl") > 0 && term("d_loss") > 0 && term("g_loss") > 0);
    if (variant === "lrlivae") {
      // The uniform-target CE is at least log C, with equality only at the uniform posterior.
      assert.ok(term("e_adv") >= Math.log(3) - 1e-6, `L_E^adv ${term("e_adv")}`);
    }
    const groups = variant === "lrlivae"
      ? ["encs", "encu", "advcls", "dec", "disc"]
      : ["enc", "dec", "disc"];
    assert.deepEqual(l.updates.map((u) => u.group), groups, "Algorithm 1's order");
    for (const [j, g] of groups.entries()) {
      await gradcheckTwoSteps(
        (t) => model.stepLosses(t, Y, noise).updates[j].loss,
        [{ data: x, shape: [N, 3, S, S] }],
        { kinks: true, maxElements: 4, params: store.params([g]), label: `${variant} ${g} loss` },
      );
    }
    noise.release();
    store.release();
  });

  Deno.test(`lrlivae (${variant}): Algorithm 1's chain on one forward: each group gets its own loss's gradient at the step's start, and each update leaves the other groups bit-identical`, async () => {
    const { store, model } = tiny(variant, 21);
    await perturb(store, 22);
    const x = Tensor.constant(images(23), [N, 3, S, S]);
    const noise = stepNoise(model, 24);
    const groups = store.groups();
    const snapshot = () => Promise.all(groups.map((g) => g.values.read()));
    /** Steps `opt` and checks that exactly the groups `moved` changed. */
    const stepOnly = async (opt: Adam, moved: string[]) => {
      const before = await snapshot();
      opt.step(1e-2);
      const after = await snapshot();
      groups.forEach((o, i) => {
        const same = before[i].every((v, k) => Object.is(v, after[i][k]));
        if (moved.includes(o.name)) assert.ok(!same, `the step moved ${o.name}`);
        else assert.ok(same, `the ${moved} step left ${o.name} bit-identical`);
      });
    };
    const opts = new Map(groups.map((g) => [g.name, new Adam([g], { beta1: 0.5 })]));
    if (variant === "lrlivae") {
      // The GM stage: Enc_s and the mixture on L_GM, one Adam; nothing else moves.
      const both = new Adam([store.group("encs"), store.group("gm")], { stateName: "adam.gm" });
      backward(model.gmLoss(x, Y).loss, { params: both.params });
      await stepOnly(both, ["encs", "gm"]);
      both.release();
    }
    // Reference: every group's gradient of its own loss on one forward, nothing moved; then the
    // chain on another forward from the same parameters, each group stepped right after its own
    // backward (as the trainer does with Update.retain).
    const grads = async (step: boolean) => {
      const out = new Map<string, Float32Array>();
      for (const u of model.stepLosses(x, Y, noise).updates) {
        const g = store.group(u.group);
        backward(u.loss, { params: g.params, retain: true });
        out.set(u.group, await g.grads.read());
        if (step) await stepOnly(opts.get(u.group)!, [u.group]);
        else g.zeroGrad();
      }
      clearTape();
      return out;
    };
    const ref = await grads(false), got = await grads(true);
    assert.deepEqual([...got.keys()], [...ref.keys()]);
    for (const [k, v] of ref) {
      const w = got.get(k)!;
      assert.ok(v.some((a) => a !== 0), `${k}: a non-zero gradient`);
      assert.ok(v.every((a, i) => Object.is(a, w[i])), `${k}: chain gradient = reference, bitwise`);
    }
    for (const o of opts.values()) o.release();
    noise.release();
    x.release();
    store.release();
  });
}

const TINY = [
  ...["--model", "lrlivae", "--size", "16", "--base", "4", "--fc", "32", "--zs", "2", "--zu", "3"],
  ...["--adv-hidden", "16", "--batch", "16", "--train-limit", "512", "--warmup", "5"],
  ...["--sample-every", "0", "--eval-every", "0", "--eval-limit", "60", "--probe-limit", "60"],
  ...["--mig-samples", "500", "--swap-pairs", "40", "--gen-per-class", "4", "--div-per-class", "3"],
  ...["--lr", "2e-3", "--n-gm", "1"],
];

Deno.test("lrlivae task: trains through the generic trainer (one Adam per group) with falling losses; the graph is gone after each step", async () => {
  for (const variant of ["lrlivae", "cvaegan"]) {
    const { task, cfg } = parseTrain([...TINY, "--variant", variant]);
    const s = new Session(task, cfg, await task.build(cfg, "train"));
    const groups = variant === "lrlivae"
      ? ["encs", "encu", "advcls", "dec", "disc", "gm_stage"]
      : ["enc", "dec", "disc"];
    assert.deepEqual([...s.optimizers.keys()], groups);
    if (variant === "lrlivae") {
      // Enc_s has two Adams (GM stage, end to end), saved under distinct names.
      const names = [...s.optimizers.get("gm_stage")!.state().keys()];
      assert.ok(
        names.includes("adam.gm_stage.m.encs.zs.weight") && names.includes("adam.gm_stage.v.gm.mu"),
      );
      assert.ok([...s.optimizers.get("encs")!.state().keys()].includes("adam.m.encs.zs.weight"));
    }
    const m = new GpuMetrics();
    const rec: number[] = [], cls: number[] = [];
    for (let i = 0; i < 40; i++) {
      s.trainStep(m);
      assert.equal(tapeLength(), 0, "no graph outlives a step");
      if (i % 10 === 9) {
        const r = await m.read();
        rec.push(r.get("rec")!.mean);
        if (variant === "lrlivae") cls.push(r.get("gm_cls")!.mean);
        for (const k of ["kl", "d_loss", "g_loss", "loss.dec", "loss.disc"]) {
          assert.ok(Number.isFinite(r.get(k)?.mean), `${variant}: ${k} = ${r.get(k)?.mean}`);
        }
      }
    }
    assert.ok(rec[3] < 0.8 * rec[0], `${variant}: L_rec fell: ${rec}`);
    // z_u's ε and the prior sample's noise: 3 draws a step (cVAE-GAN 2), never a re-seek.
    const lm = s.model as LrLiVaeModel;
    assert.equal(lm.noise.counter, 40 * (variant === "lrlivae" ? 3 : 2));
    if (variant === "lrlivae") assert.ok(cls[3] < cls[0], `L_cls fell: ${cls}`);
    m.release();
    s.release();
  }
});

/** Reads object hue off the object's centre pixel (Shapes2.5D); other factors 0. */
function hueReader(size: number): FactorClassifier {
  const factors = [
    ...["floor_hue", "wall_hue", "object_hue"].map((name) => ({ name, size: 10 })),
    { name: "scale", size: 8 },
    { name: "shape", size: 4 },
    { name: "orientation", size: 15 },
  ];
  const hue = (x: Float32Array, b: number) => {
    const p = Math.floor(0.68 * size) * size + size / 2, d = 3 * size * size;
    const [r, g, bl] = [0, 1, 2].map((c) => (x[b * d + c * size * size + p] + 1) / 2);
    const mx = Math.max(r, g, bl), mn = Math.min(r, g, bl), c = mx - mn || 1e-6;
    const h = mx === r ? ((g - bl) / c + 6) % 6 : mx === g ? (bl - r) / c + 2 : (r - g) / c + 4;
    return h / 6;
  };
  return {
    factors,
    testAccuracy: factors.map(() => NaN),
    description: "hue reader",
    predict(x, n) {
      const out = new Int32Array(n * 6);
      for (let b = 0; b < n; b++) out[b * 6 + 2] = Math.round(hue(x, b) * 10) % 10;
      return Promise.resolve(out);
    },
    probabilities(x, n) {
      const out = new Float32Array(n * 10);
      for (let b = 0; b < n; b++) {
        const h = hue(x, b) * 10;
        let z = 0;
        for (let c = 0; c < 10; c++) {
          const dd = Math.min(Math.abs(h - c), 10 - Math.abs(h - c));
          z += out[b * 10 + c] = Math.exp(-dd * dd);
        }
        for (let c = 0; c < 10; c++) out[b * 10 + c] /= z;
      }
      return Promise.resolve(out);
    },
    release() {},
  };
}

Deno.test("lrlivae task: the final evaluation writes every metric and image; swaps take z_s from A and z_u from B", async () => {
  for (const variant of ["lrlivae", "cvaegan"]) {
    const { task, cfg } = parseTrain([...TINY, "--variant", variant]);
    const s = new Session(task, cfg, await task.build(cfg, "train"));
    for (let i = 0; i < 3; i++) s.trainStep();
    const m = s.model as LrLiVaeModel;
    m.useClassifier(hueReader(16));
    const e = await m.evaluate({ final: true });
    const keys = [
      ...["mse_01", "mse_pm1", "test_rec", "test_kl", "mig_all", "mig_concat_all"],
      ...["mig_object_hue", "mig_concat_object_hue", "leak_acc", "leak_norm", "leak_chance"],
      ...["swap_acc", "swap_acc_object_hue", "swap_ignored_object_hue", "inception_score"],
      ...["sample_acc", "div_all_pairs", "div_distinct_pairs", "inpaint_mse_right"],
      ...["inpaint_mse_bottom", "inpaint_mse_centre"],
      ...(variant === "lrlivae" ? ["mig_lab", "gm_acc", "leak_zs_acc"] : []),
    ];
    for (const k of keys) {
      assert.ok(Number.isFinite(e.metrics[k]), `${variant}: ${k} = ${e.metrics[k]}`);
    }
    const v = (k: string) => e.metrics[k] as number;
    assert.ok(v("inception_score") >= 1 && v("inception_score") <= 10);
    assert.ok(v("div_all_pairs") < v("div_distinct_pairs") && v("div_all_pairs") >= 0);
    assertClose([v("mse_pm1")], [4 * v("mse_01")], { rtol: 1e-12 });
    assert.equal(e.metrics.variant, variant);
    assert.deepEqual(Object.keys(e.images!).sort(), [
      "inpainting",
      "reconstructions",
      "samples",
      "swap",
      "traversal_dims_0",
      "traversal_dims_1",
      "traversal_zs",
      "traversal_zu",
    ]);
    for (const png of Object.values(e.images!)) {
      assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
    }
    // The renderer: image k decodes (label code of a[k], the rest of b[k]).
    const enc = await m.encodeSet(m.data.test, m.evalPositions.subarray(0, 6), false);
    const a = Uint32Array.of(0, 1, 2), b = Uint32Array.of(3, 4, 5);
    const got = await m.renderer(enc)(a, b);
    const dz = m.model.codeDims, ds = cfg.zs as number, nf = m.data.factors.length;
    const zu = Float32Array.from(
      { length: 3 * dz },
      (_, i) => enc.mu[(3 + Math.floor(i / dz)) * dz + (i % dz)],
    );
    const y = [0, 1, 2].map((i) => enc.labels[i * nf + m.labelCol]);
    const zs = enc.zs ? enc.zs.slice(0, 3 * ds) : undefined;
    assert.deepEqual(got, await m.decodeCodes(zs, zu, y));
    m.release();
    s.release();
  }
});

Deno.test("lrlivae task: inpainting masks; bad label, size and variant are refused by name", async () => {
  const masks = inpaintMasks(16);
  const count = (m: Uint8Array) => m.reduce((a, v) => a + v, 0);
  assert.equal(count(masks.right), 128);
  assert.equal(count(masks.bottom), 128);
  assert.equal(masks.right[15] + masks.right[0], 1, "right half: last column in, first out");
  assert.ok(count(masks.centre) > 0 && masks.centre[Math.floor(0.68 * 16) * 16 + 8] === 1);
  const build = async (args: string[]) => {
    const { task, cfg } = parseTrain([...TINY, ...args]);
    const m = await task.build(cfg, "evaluate") as LrLiVaeModel;
    m.release();
    m.store.release();
  };
  await assert.rejects(
    build(["--label", "colour"]),
    /flowgpu: lrlivae: --label colour: shapes2.5d has no such factor \(factors: floor_hue/,
  );
  await assert.rejects(
    build(["--size", "24"]),
    /flowgpu: vae: shapes2.5d comes at size|not 4·2\^L/,
  );
  assert.throws(
    () => parseTrain([...TINY, "--variant", "cvae"]),
    /flowgpu: --variant cvae: expected one of lrlivae, cvaegan/,
  );
  const store = new ParamStore(1);
  assert.throws(
    () => new LrLiVae(store.scope(), { channels: 3, size: 8, classes: 1, zs: 2, zu: 2 }),
    /flowgpu: lrlivae: classes 1 must be an integer >= 2/,
  );
  const c = tiny("cvaegan");
  assert.throws(() => c.model.logits(Tensor.from(new Float32Array(4), [2, 2])), /no mixture prior/);
  assert.throws(
    () => c.model.decode(undefined, Tensor.from(new Float32Array(8), [2, 4])),
    /the cVAE-GAN decoder needs 2 labels/,
  );
  clearTape();
  c.store.release();
  store.release();
});

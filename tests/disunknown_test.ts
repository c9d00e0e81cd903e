// DisUnknown (vae-disentangle.md §1): the DU-net pieces against float64 references and gradcheck
// (weight-normalised linear / conv / transposed conv, WNAdd, FCRes, ResDown and ResUp with their
// extra padding, label embedders, nested dropout and the code KLs), every stage's loss gradchecked
// w.r.t. its parameter groups, the adversarial gradient kept out of G_I's convolutions, each
// update leaving every other group bit-identical, the switch to Stage II (copies and the code
// scale), and the task: a tiny run writes eval.json and swap grids; Stage II from a Stage-I run.
import assert from "node:assert/strict";
import "./setup.ts";
import { join } from "node:path";
import { assertClose, gradcheck, randn } from "./gradcheck.ts";
import {
  aggregateKl,
  DisUnknown,
  type DuDraws,
  FcRes,
  keepProbs,
  LabelEmbedder,
  prefixMasks,
  ResDown,
  ResUp,
  sampleCode,
  weightedKl,
  WnAdd,
  WnConv,
  WnConvT,
  WnLinear,
} from "../src/models/disunknown.ts";
import { ParamStore } from "../src/nn/store.ts";
import { backward, clearTape, noGrad } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { concatChannels } from "../src/ops/shape.ts";
import { Rng } from "../src/util/rng.ts";
import { evaluate, parseTrain } from "../src/train/cli.ts";
import { Session, train } from "../src/train/trainer.ts";
import type { DisUnknownModel } from "../src/train/disunknown_task.ts";

/** Move parameters off their inits so that every path carries a gradient. */
async function perturb(store: ParamStore, seed: number, amount = 0.3) {
  const rng = new Rng(seed);
  for (const t of store.params()) t.write((await t.read()).map((v) => v + amount * rng.normal()));
}

const read = async (t: Tensor) => Float64Array.from(await t.read());

Deno.test("disunknown: keep-probabilities of §1.4 and prefix masks", () => {
  const k = keepProbs(10, [0.95, 0.2]);
  const a = (0.2 / 0.95) ** (1 / 8);
  assertClose(k, [1, 0.95, ...Array.from({ length: 8 }, (_, i) => 0.95 * a ** (i + 1))], {
    rtol: 1e-12,
    label: "size 10",
  });
  assertClose(keepProbs(64, [0.2]), Array.from({ length: 64 }, (_, d) => 0.2 ** (d / 63)), {
    rtol: 1e-12,
    label: "size 64",
  });
  assert.deepEqual(Array.from(keepProbs(2, [])), [1, 1]);
  const rng = new Rng(3);
  const m = prefixMasks(k, 2000, () => rng.next());
  const kept = new Float64Array(10);
  for (let b = 0; b < 2000; b++) {
    for (let d = 0; d < 10; d++) {
      kept[d] += m[b * 10 + d] / 2000;
      if (d > 0) assert.ok(m[b * 10 + d] <= m[b * 10 + d - 1], "a prefix");
    }
  }
  assert.ok(Math.abs(kept[0] - 1) < 1e-9, "the first dim is always kept");
  for (let d = 1; d < 10; d++) assert.ok(Math.abs(kept[d] - k[d]) < 0.035, `dim ${d}: ${kept[d]}`);
});

Deno.test("disunknown: weight-normalised layers match float64 and pass gradcheck", async () => {
  const store = new ParamStore(2);
  const s = store.scope("t");
  const lin = new WnLinear(s.child("lin"), 5, 3, { affine: true });
  const conv = new WnConv(s.child("conv"), 2, 3, 4, 2, 2, { affine: true });
  const convt = new WnConvT(s.child("convt"), 3, 2, 4, 2, 1);
  const mix = new WnAdd(s.child("mix"), 3, 0.6, 0.8);
  await perturb(store, 3);
  // WNLinear: g ⊙ (W / |W|_row) x + b.
  const x = randn(2 * 5, 4);
  const [w, g, b] = await Promise.all([read(lin.w), read(lin.g!), read(lin.b!)]);
  const ref: number[] = [];
  for (let n = 0; n < 2; n++) {
    for (let o = 0; o < 3; o++) {
      let norm = 0, dot = 0;
      for (let i = 0; i < 5; i++) {
        norm += w[o * 5 + i] ** 2;
        dot += w[o * 5 + i] * x[n * 5 + i];
      }
      ref.push((g[o] * dot) / Math.sqrt(norm) + b[o]);
    }
  }
  const got = await noGrad(() => lin.apply(Tensor.from(x, [2, 5]))).read();
  assertClose(got, ref, { rtol: 1e-5, atol: 1e-6, label: "WNLinear" });
  // WNAdd: (α x1 + β x2) / √(α² + β²) per channel.
  const x1 = randn(2 * 3, 5), x2 = randn(2 * 3, 6);
  const [al, be] = await Promise.all([read(mix.alpha), read(mix.beta)]);
  const mref = Array.from(x1, (v, i) => {
    const c = i % 3;
    return (al[c] * v + be[c] * x2[i]) / Math.hypot(al[c], be[c]);
  });
  const mgot = await noGrad(() => mix.apply(Tensor.from(x1, [2, 3]), Tensor.from(x2, [2, 3])))
    .read();
  assertClose(mgot, mref, { rtol: 1e-5, atol: 1e-6, label: "WNAdd" });
  // WNConvT: scaled by the stride: doubling the raw weight changes nothing, the output is
  // 2 x a convT with the row-normalised weight.
  const xt = randn(1 * 3 * 3 * 3, 7);
  const y1 = await noGrad(() => convt.apply(Tensor.from(xt, [1, 3, 3, 3]))).read();
  convt.w.write((await convt.w.read()).map((v) => 2 * v));
  const y2 = await noGrad(() => convt.apply(Tensor.from(xt, [1, 3, 3, 3]))).read();
  assertClose(y2, y1, { rtol: 1e-5, atol: 1e-6, label: "WNConvT is scale-free in W" });
  assert.equal(y1.length, 2 * 6 * 6);
  clearTape();
  const of = (pre: string) => store.params().filter((p) => p.name.startsWith(pre));
  await gradcheck((v) => lin.apply(v), [{ data: x, shape: [2, 5] }], {
    params: of("t.lin."),
    label: "WNLinear",
  });
  await gradcheck((v) => conv.apply(v), [{ data: randn(2 * 2 * 6 * 6, 8), shape: [2, 2, 6, 6] }], {
    params: of("t.conv."),
    label: "WNConv2d 4x4 s2 p2",
  });
  await gradcheck((v) => convt.apply(v), [{ data: xt, shape: [1, 3, 3, 3] }], {
    params: of("t.convt."),
    label: "WNConvT2d 4x4 s2 p1",
  });
  await gradcheck((p, q) => mix.apply(p, q), [{ data: x1, shape: [2, 3] }, {
    data: x2,
    shape: [2, 3],
  }], { params: of("t.mix."), label: "WNAdd" });
  store.release();
});

Deno.test("disunknown: FCRes, ResDown and ResUp (extra padding 0 and 1) pass gradcheck", async () => {
  const store = new ParamStore(4);
  const s = store.scope("blocks");
  const fc = new FcRes(s.child("fc"), 4);
  const down0 = new ResDown(s.child("d0"), 2, 3, 0, 0.5);
  const down1 = new ResDown(s.child("d1"), 2, 2, 1, 1 / 3);
  const up0 = new ResUp(s.child("u0"), 3, 2, 0, 0.5);
  const up1 = new ResUp(s.child("u1"), 2, 2, 1, 1 / 3);
  await perturb(store, 5, 0.2);
  // Sizes of the §1.3 table: 8 -> 4 (e = 0), 14 -> 8 and 6 -> 4 (e = 1); 4 -> 8, 4 -> 6 (e = 1).
  const shape = (f: () => Tensor) => noGrad(f).shape;
  assert.deepEqual(shape(() => down0.apply(Tensor.from(randn(2 * 64, 1), [1, 2, 8, 8]))), [
    1,
    3,
    4,
    4,
  ]);
  assert.deepEqual(shape(() => down1.apply(Tensor.from(randn(2 * 196, 1), [1, 2, 14, 14]))), [
    1,
    2,
    8,
    8,
  ]);
  assert.deepEqual(shape(() => up1.apply(Tensor.from(randn(2 * 16, 1), [1, 2, 4, 4]))), [
    1,
    2,
    6,
    6,
  ]);
  clearTape();
  const of = (pre: string) => store.params().filter((p) => p.name.startsWith(pre));
  const opts = (label: string, pre: string) => ({
    params: of(pre),
    kinks: true,
    maxElements: 12,
    label,
  });
  await gradcheck(
    (x) => fc.apply(x),
    [{ data: randn(12, 2), shape: [3, 4] }],
    opts("FCRes", "blocks.fc."),
  );
  await gradcheck(
    (x) => down0.apply(x),
    [{ data: randn(2 * 2 * 16, 3), shape: [2, 2, 4, 4] }],
    opts("ResDown e=0", "blocks.d0."),
  );
  await gradcheck(
    (x) => down1.apply(x),
    [{ data: randn(2 * 36, 4), shape: [1, 2, 6, 6] }],
    opts("ResDown e=1", "blocks.d1."),
  );
  await gradcheck(
    (x) => up0.apply(x),
    [{ data: randn(3 * 9, 5), shape: [1, 3, 3, 3] }],
    opts("ResUp e=0", "blocks.u0."),
  );
  await gradcheck(
    (x) => up1.apply(x),
    [{ data: randn(2 * 16, 6), shape: [1, 2, 4, 4] }],
    opts("ResUp e=1", "blocks.u1."),
  );
  store.release();
});

Deno.test("disunknown: label embedders give a zero-mean unit-variance mixture; code KLs and nested-dropout samples", async () => {
  const store = new ParamStore(6);
  const q = [0.5, 0.3, 0.2];
  const e = new LabelEmbedder(store.scope("emb").child("f0"), 3, 2, q);
  await perturb(store, 7, 0.1);
  const [mu, sigma] = await noGrad(() => {
    const t = e.tables();
    return Tensor.readAll([t.mu, t.sigma]);
  });
  clearTape();
  for (let d = 0; d < 2; d++) {
    let m = 0, v = 0;
    for (let c = 0; c < 3; c++) {
      m += q[c] * mu[c * 2 + d];
      v += q[c] * (mu[c * 2 + d] ** 2 + sigma[c * 2 + d] ** 2);
    }
    assert.ok(
      Math.abs(m) < 1e-5 && Math.abs(v - 1) < 1e-5,
      `dim ${d}: mean ${m}, second moment ${v}`,
    );
  }
  await gradcheck(
    () => {
      const t = e.tables();
      return concatChannels([t.mu, t.sigma]);
    },
    [],
    { params: store.params(), h: 1e-3, label: "embedder tables" },
  );
  // KLs: Σ_d k_d mean_b KL and the batch-aggregate one, against float64.
  const B = 4, n = 3;
  const m0 = randn(B * n, 8), s0 = Array.from(randn(B * n, 9), (v) => 0.5 + 0.2 * Math.abs(v));
  const k = [1, 0.6, 0.3];
  let kl = 0;
  for (let i = 0; i < B * n; i++) {
    kl += (k[i % n] * (0.5 * (m0[i] ** 2 + s0[i] ** 2 - 1) - Math.log(s0[i]))) / B;
  }
  let agg = 0;
  for (let d = 0; d < n; d++) {
    let mm = 0, ss = 0, vv = 0;
    for (let b = 0; b < B; b++) [mm, ss] = [mm + m0[b * n + d] / B, ss + s0[b * n + d] ** 2 / B];
    for (let b = 0; b < B; b++) vv += (m0[b * n + d] - mm) ** 2 / (B - 1);
    const v = vv + ss;
    agg += k[d] * 0.5 * (mm * mm + v - Math.log(v) - 1);
  }
  const kt = () => Tensor.from(k, [n]);
  const got = await noGrad(() =>
    Tensor.readAll([
      weightedKl(Tensor.from(m0, [B, n]), Tensor.from(s0, [B, n]), kt()),
      aggregateKl(Tensor.from(m0, [B, n]), Tensor.from(s0, [B, n]), kt()),
    ])
  );
  clearTape();
  assertClose(got[0], [kl], { rtol: 1e-5, label: "weighted KL" });
  assertClose(got[1], [agg], { rtol: 1e-5, label: "aggregate KL" });
  const inputs = [{ data: m0, shape: [B, n] }, { data: s0, shape: [B, n] }];
  await gradcheck((a, b) => weightedKl(a, b, kt()), inputs, { label: "weighted KL" });
  await gradcheck((a, b) => aggregateKl(a, b, kt()), inputs, { label: "aggregate KL" });
  // Nested dropout: kept dims are μ + σ ε, dropped ones ε (no gradient to μ, σ there).
  const eps = randn(B * n, 10), mask = [1, 1, 0, 1, 0, 0, 1, 1, 1, 1, 0, 0];
  const z = await noGrad(() =>
    sampleCode(
      Tensor.from(m0, [B, n]),
      Tensor.from(s0, [B, n]),
      Tensor.from(mask, [B, n]),
      () => Tensor.from(eps, [B, n]),
    )
  ).read();
  clearTape();
  assertClose(z, Array.from(eps, (v, i) => (mask[i] ? m0[i] + s0[i] * v : v)), {
    rtol: 1e-6,
    atol: 1e-7,
    label: "nested-dropout sample",
  });
  await gradcheck(
    (a, b) => sampleCode(a, b, Tensor.from(mask, [B, n]), () => Tensor.from(eps, [B, n])),
    inputs,
    { label: "nested-dropout sample" },
  );
  store.release();
});

// ---------------------------------------------------------------------------------------------
// The model's losses

/** A small DisUnknown (side `size`, two labelled factors) with perturbed parameters. */
async function tiny(size: number, weights = {}, adversary: "nlu" | "nll" = "nlu") {
  const store = new ParamStore(11);
  const du = new DisUnknown(store, {
    channels: 1,
    size,
    width: 4,
    unknownSize: 3,
    factors: [
      { name: "a", classes: 3, codeSize: 3, freq: [0.5, 0.25, 0.25] },
      { name: "b", classes: 2, codeSize: 2, freq: [0.4, 0.6] },
    ],
    weights,
    adversary,
  });
  await perturb(store, 12, 0.2);
  return { store, du };
}

/** Fixed draws for B samples: masks, rolls, offsets, and noise that repeats on every forward. */
function fixedDraws(du: DisUnknown, B: number, seed: number): () => DuDraws {
  const rng = new Rng(seed);
  const n0 = du.unknownSize, nl = du.labelledDim;
  const m = (n: number) =>
    Float32Array.from({ length: B * n }, (_, i) => (i % n < 1 || rng.next() < 0.7 ? 1 : 0));
  const m0 = m(n0), mL = m(nl), mL2 = m(nl);
  const shifts = Array.from(
    { length: 10 },
    () => Int32Array.from({ length: 2 * B }, () => rng.int(3) - 1),
  );
  const roll = du.codeSizes.map((_, i) =>
    Uint32Array.from({ length: B }, (_, b) => (b + 1 + i) % B)
  );
  return () => {
    let c = 0;
    const t = (a: Float32Array, n: number) => Tensor.from(a, [B, n]);
    return {
      mask0: t(m0, n0),
      holes0: t(m0.map((v) => 1 - v), n0),
      maskL: t(mL, nl),
      holesL: t(mL.map((v) => 1 - v), nl),
      maskL2: t(mL2, nl),
      holesL2: t(mL2.map((v) => 1 - v), nl),
      roll,
      shifts,
      noise: (shape: number[]) =>
        Tensor.from(randn(shape.reduce((a, b) => a * b, 1), 500 + c++), shape),
    };
  };
}

Deno.test("disunknown: every stage's loss passes gradcheck w.r.t. its parameter groups", async () => {
  for (const size of [8, 16]) {
    const { store, du } = await tiny(size, { match: 0.1 });
    // Slopes 1 make every WN-PReLU smooth (the identity plus its pre-bias terms), so hundreds of
    // units cannot put a kink within h of the point; the blocks' test checks the kinked case.
    for (const p of store.params()) {
      if (p.name.endsWith(".slope")) p.write(new Float32Array(p.size).fill(1));
      // Every `weight` is weight-normalised and WNAdd's (α, β) too: scaling them changes no
      // output, and shrinks the curvature (h / |row|)² that short rows (a 1x1 shortcut of 2
      // channels, a 2-vector (α, β)) show at the larger step below.
      if (/\.(weight|alpha|beta)$/.test(p.name)) {
        p.write((await p.read()).map((v) => 8 * v));
      }
    }
    const B = 3;
    const x = {
      data: Array.from(randn(B * size * size, 20), (v) => Math.tanh(v)),
      shape: [B, 1, size, size],
    };
    const y = [Int32Array.of(0, 2, 1), Int32Array.of(1, 0, 1)];
    const draws = fixedDraws(du, B, 30);
    const opts = (groups: string[], label: string) => ({
      params: store.params(groups),
      maxElements: size === 8 ? 6 : 2,
      // Some gradients are tiny next to the loss: a larger step resolves them in f32.
      h: 2e-2,
      label: `${label} (S = ${size})`,
    });
    // G_I's convolutions take L_rec only (the adversarial branch runs them with detached
    // parameters): the objective is checked for E, B and G_I's fully connected part, L_rec for
    // the convolutions.
    const conv = (p: Tensor) => /^gen1\.(up|out)/.test(p.name);
    await gradcheck((xt) => du.stage1({ x: xt, y }, draws()).loss, [{ ...x, grad: false }], {
      ...opts([], "Stage I objective"),
      params: store.params(["enc", "gen1"]).filter((p) => !conv(p)),
    });
    // The embedders' stored tables move 10x (their learning rate): a 10x smaller step.
    await gradcheck((xt) => du.stage1({ x: xt, y }, draws()).loss, [{ ...x, grad: false }], {
      ...opts(["emb"], "Stage I objective, embedders"),
      h: 1e-3,
    });
    await gradcheck((xt) => du.stage1({ x: xt, y }, draws()).terms.rec, [{ ...x, grad: false }], {
      ...opts([], "Stage I L_rec"),
      params: store.params(["gen1"]).filter(conv),
    });
    const fake = Tensor.constant(Array.from(randn(x.data.length, 21), Math.tanh), x.shape);
    await gradcheck(
      () => du.stage1ClassifierLoss(du.cls1.apply(fake), y),
      [],
      opts(["cls1"], "Stage I classifier"),
    );
    await gradcheck(
      (xt) => du.stageC({ x: xt, y }, draws().shifts[0]),
      [x],
      opts(["rcls"], "Stage C"),
    );
    store.group("enc").frozen = true;
    await gradcheck((xt) => du.stage2({ x: xt, y }, draws(), du.rcls2).loss, [{
      ...x,
      grad: false,
    }], opts(["lenc", "gen2"], "Stage II objective"));
    store.group("enc").frozen = false;
    const rec = Tensor.constant(Array.from(randn(x.data.length, 22), Math.tanh), x.shape);
    const sh = draws().shifts;
    await gradcheck(
      (xt) =>
        du.stage2DiscLoss(du.scoreD(xt, sh[4]), du.scoreD(rec, sh[5]), du.scoreD(fake, sh[6])),
      [{ ...x, grad: false }],
      opts(["disc"], "Stage II D"),
    );
    const ySwap = [y[0].slice().reverse(), y[1]];
    await gradcheck(
      (xt) =>
        du.stage2ClassifierLoss(
          du.scoreR(xt, sh[7]),
          du.scoreR(rec, sh[8]),
          du.scoreR(fake, sh[9]),
          y,
          ySwap,
        ),
      [{ ...x, grad: false }],
      opts(["rcls2"], "Stage II R"),
    );
    fake.release();
    rec.release();
    store.release();
  }
});

Deno.test("disunknown: the adversarial gradient reaches E, B and G_I's fully connected layers, not its convolutions", async () => {
  const { store, du } = await tiny(16);
  const B = 4;
  const x = Tensor.constant(Array.from(randn(B * 256, 40), Math.tanh), [B, 1, 16, 16]);
  const y = [Int32Array.of(0, 1, 2, 0), Int32Array.of(1, 0, 1, 0)];
  const r = du.stage1({ x, y }, fixedDraws(du, B, 41)());
  const params = store.params(["enc", "emb", "gen1"]);
  for (const g of store.groups()) g.zeroGrad();
  backward(r.terms.adv, { params });
  const norms = new Map<string, number>();
  for (const p of params) {
    norms.set(p.name, p.grad ? (await p.grad.read()).reduce((a, v) => a + v * v, 0) : 0);
  }
  clearTape();
  const conv = [...norms].filter(([n]) => /^gen1\.(up|out)/.test(n));
  const fc = [...norms].filter(([n]) => /^gen1\.(in|res|top)/.test(n));
  assert.ok(conv.length > 0 && fc.length > 0);
  for (const [n, v] of conv) assert.equal(v, 0, `${n} gets no adversarial gradient`);
  assert.ok(fc.some(([, v]) => v > 0), "G_I's fully connected layers do");
  assert.ok([...norms].some(([n, v]) => n.startsWith("enc.") && v > 0), "E does");
  assert.ok([...norms].some(([n, v]) => n.startsWith("emb.") && v > 0), "B does");
  // The adversarial term is Σ_i NLU_q over C's logits of the mismatched images, with weights
  // (1 − q_k)/q_k; the NLL-maximisation variant is minus C's own loss on the same logits.
  const d = fixedDraws(du, B, 41);
  const [adv, logits] = await noGrad(() => {
    const r2 = du.stage1({ x, y }, d());
    return Tensor.readAll([r2.terms.adv, r2.logits]);
  });
  clearTape();
  let ref = 0;
  const q = [[0.5, 0.25, 0.25], [0.4, 0.6]], off = [0, 3];
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < 2; i++) {
      const row = Array.from(logits.subarray(b * 5 + off[i], b * 5 + off[i] + q[i].length));
      const m = Math.max(...row), z = row.reduce((a, v) => a + Math.exp(v - m), 0);
      const p = Math.exp(row[y[i][b]] - m) / z, qk = q[i][y[i][b]];
      ref += (-((1 - qk) / qk) * Math.log(1 - p)) / B;
    }
  }
  assertClose(adv, [ref], { rtol: 1e-5, label: "L_adv = Σ_i mean_b NLU_q" });
  store.release();
  const nll = await tiny(16, {}, "nll");
  const [a2, c2] = await noGrad(() => {
    const r2 = nll.du.stage1({ x, y }, fixedDraws(nll.du, B, 41)());
    return Tensor.readAll([r2.terms.adv, nll.du.stage1ClassifierLoss(r2.logits, y)]);
  });
  clearTape();
  assertClose(a2, [-c2[0]], { rtol: 1e-6, label: "NLL-maximisation adversary" });
  nll.store.release();
  x.release();
});

// ---------------------------------------------------------------------------------------------
// The task

const TINY = [
  ...["--model", "disunknown", "--data", "shapes2.5d", "--size", "16", "--width", "4"],
  ...["--labelled", "floor_hue,shape", "--batch", "8", "--train-limit", "300", "--warmup", "2"],
  ...["--sample-every", "0", "--eval-limit", "60", "--mig-samples", "300", "--swap-pairs", "40"],
  ...["--classifier-steps", "30", "--lr", "1e-3"],
];

/** Every group's values, bit for bit. */
async function snapshot(store: ParamStore): Promise<Map<string, Uint32Array>> {
  const out = new Map<string, Uint32Array>();
  for (const g of store.groups()) out.set(g.name, new Uint32Array((await g.values.read()).buffer));
  return out;
}

Deno.test("disunknown task: each update changes its own groups and leaves every other one bit-identical", async () => {
  const { task, cfg } = parseTrain([
    ...TINY,
    "--stage1-steps",
    "1",
    "--stage-c-steps",
    "1",
    "--steps",
    "3",
  ]);
  const s = new Session(task, cfg, await task.build(cfg, "train"));
  const model = s.model as DisUnknownModel;
  const expected: Record<string, string[][]> = {
    I: [["enc", "emb", "gen1"], ["cls1"]],
    C: [["rcls"]],
    II: [["lenc", "gen2"], ["disc"], ["rcls2"]],
  };
  for (let step = 0; step < 3; step++) {
    const stage = model.stageOf(step);
    const updates = s.model.updates(step);
    if (step === 2) {
      // The switch to Stage II copied G_I and R(C) (and set the frozen E's code scale).
      const v = await snapshot(s.model.store);
      assert.deepEqual(v.get("gen2"), v.get("gen1"));
      assert.deepEqual(v.get("rcls2"), v.get("rcls"));
    }
    assert.equal(updates.length, expected[stage].length, `stage ${stage}`);
    for (const [j, u] of updates.entries()) {
      const before = await snapshot(s.model.store);
      const opt = s.optimizers.get(u.optimizer)!;
      const { loss } = u.run();
      backward(loss, { params: opt.params, retain: u.retain });
      opt.step(1e-3);
      if (!u.retain) clearTape();
      const after = await snapshot(s.model.store);
      for (const [g, v] of before) {
        const same = v.every((w, i) => w === after.get(g)![i]);
        if (expected[stage][j].includes(g)) {
          assert.ok(!same, `stage ${stage}, ${u.optimizer}: ${g} changed`);
        } else assert.ok(same, `stage ${stage}, ${u.optimizer}: ${g} bit-identical`);
      }
    }
  }
  // s_d = √(Var μ + mean σ²) of E over the training images (all 300 here).
  const data = model.data, n0 = model.du.unknownSize;
  const mus: number[][] = [], sig: number[][] = [];
  for (let a = 0; a < 300; a += 100) {
    const pos = Array.from({ length: 100 }, (_, i) => a + i);
    const xt = Tensor.from(data.train.batch(pos).x, [100, 3, 16, 16]);
    const [m, sd] = await noGrad(() => {
      const q = model.du.enc.apply(xt);
      return Tensor.readAll([q.mu, q.sigma]);
    });
    clearTape();
    mus.push(Array.from(m));
    sig.push(Array.from(sd));
  }
  const mu = mus.flat(), sg = sig.flat();
  const ref = Array.from({ length: n0 }, (_, d) => {
    let m = 0, m2 = 0, s2 = 0;
    for (let i = 0; i < 300; i++) {
      m += mu[i * n0 + d] / 300;
      m2 += mu[i * n0 + d] ** 2 / 300;
      s2 += sg[i * n0 + d] ** 2 / 300;
    }
    return Math.sqrt(m2 - m * m + s2);
  });
  assertClose(await model.du.codeScale.read(), ref, { rtol: 1e-4, label: "code scale" });
  s.release();
});

Deno.test("disunknown task: a tiny run logs code drift and writes eval.json and swap grids; Stage II from a Stage-I run", async () => {
  const nets = Deno.makeTempDirSync();
  const dir = Deno.makeTempDirSync(), one = Deno.makeTempDirSync(), two = Deno.makeTempDirSync();
  try {
    const { task, cfg } = parseTrain([
      ...TINY,
      ...["--steps", "9", "--stage1-steps", "4", "--stage-c-steps", "2", "--eval-every", "2"],
      ...["--out", dir, "--eval-nets", nets],
    ]);
    await train(task, cfg);
    const log = Deno.readTextFileSync(join(dir, "metrics.jsonl"));
    assert.ok(/code_drift/.test(log), "Stage I evaluations log the code drift");
    Deno.removeSync(join(dir, "eval.json"));
    await evaluate(["--out", dir, "--eval-limit", "40"]);
    const ev = JSON.parse(Deno.readTextFileSync(join(dir, "eval.json")));
    const mt = ev.metrics;
    const keys = [
      ...[
        "mig_lab",
        "mig_all",
        "mse_01",
        "mse_pm1",
        "swap_acc",
        "swap_acc_floor_hue",
        "swap_acc_shape",
      ],
      ...["leak_floor_hue", "leak_shape", "leak_shape_chance", "mig_floor_hue", "mig_orientation"],
      ...["swap_ignored_shape", "swap_kept_shape", "classifier_acc_floor_hue"],
    ];
    for (const k of keys) assert.ok(Number.isFinite(mt[k]), `${k} = ${mt[k]}`);
    assert.equal(mt.eval_images, 40);
    // The final leakage probe is fitted on every (--train-limit 300) training image's code.
    assert.equal(mt.leak_probe_n, 300);
    assert.equal(mt.eval_stage, 2);
    assert.ok(Math.abs(mt.mse_pm1 - 4 * mt.mse_01) < 1e-12);
    // MIG_lab averages the labelled factors' gaps; MIG_all every factor's.
    assert.ok(Math.abs(mt.mig_lab - (mt.mig_floor_hue + mt.mig_shape) / 2) < 1e-12);
    assert.deepEqual(ev.images.sort(), [
      "eval/reconstructions.png",
      "eval/swap_floor_hue.png",
      "eval/swap_shape.png",
    ]);
    const png = Deno.readFileSync(join(dir, "eval/swap_shape.png"));
    assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
    // --stage one, then --stage two from it; a finished Stage II cannot be a starting point.
    const a = parseTrain([
      ...TINY,
      "--stage",
      "one",
      "--steps",
      "5",
      "--stage1-steps",
      "3",
      "--out",
      one,
      "--eval-nets",
      nets,
    ]);
    await train(a.task, a.cfg);
    const b = parseTrain([
      ...TINY,
      "--stage",
      "two",
      "--steps",
      "2",
      "--init-from",
      one,
      "--no-adv-r",
      "--no-match",
      "--out",
      two,
      "--eval-nets",
      nets,
    ]);
    const s = new Session(b.task, b.cfg, await b.task.build(b.cfg, "train"));
    s.model.init!();
    const ck = await snapshot(s.model.store);
    assert.equal(s.model.updates(0).length, 2, "--no-adv-r: no R update in Stage II");
    s.release();
    await train(b.task, b.cfg);
    const ev2 = JSON.parse(Deno.readTextFileSync(join(two, "eval.json")));
    assert.equal(ev2.metrics.eval_stage, 2);
    assert.ok(
      !/match2/.test(Deno.readTextFileSync(join(two, "metrics.jsonl"))),
      "--no-match: no L_match",
    );
    assert.ok(ck.get("enc")!.some((v) => v !== 0));
    const c = parseTrain([
      ...TINY,
      "--stage",
      "two",
      "--steps",
      "2",
      "--init-from",
      dir,
      "--out",
      one,
      "--overwrite",
    ]);
    const s2 = new Session(c.task, c.cfg, await c.task.build(c.cfg, "train"));
    assert.throws(() => s2.model.init!(), /already trained Stage II/);
    s2.release();
  } finally {
    for (const d of [nets, dir, one, two]) Deno.removeSync(d, { recursive: true });
  }
});

Deno.test("disunknown task: bad factor names and a Stage II without a starting run are refused", async () => {
  const bad = parseTrain([...TINY, "--labelled", "colour"]);
  await assert.rejects(
    async () => await bad.task.build(bad.cfg, "train"),
    /--labelled colour: shapes2.5d has no such factor/,
  );
  const two = parseTrain([...TINY, "--stage", "two"]);
  await assert.rejects(
    async () => await two.task.build(two.cfg, "train"),
    /--stage two needs --init-from/,
  );
  const none = parseTrain([
    ...TINY,
    "--labelled",
    "",
    "--unknown",
    "floor_hue,wall_hue,object_hue,scale,shape,orientation",
  ]);
  await assert.rejects(
    async () => await none.task.build(none.cfg, "train"),
    /no labelled factor is left/,
  );
});

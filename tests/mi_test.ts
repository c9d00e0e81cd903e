// MI flow: the composed 2x2 max-pool against f64 and by gradcheck; the condition c = M ⊙ x; the
// conditional prior network against an f64 reference, starting at N(0, I), and by gradcheck;
// L_d, L_r and L_i against references from their parts (brute-force log-det, a CPU draw of ẑ^r
// decoded by the untracked inverse) and each by gradcheck w.r.t. the image and every parameter
// it depends on (L_i through the inverse flow); the word RNN against f64 and by gradcheck; the
// ablation switches; bad inputs; and a few steps of the task through the generic trainer.
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randn } from "./gradcheck.ts";
import { bruteLogdet } from "./flowcheck.ts";
import { ConditionPrior, maxPool2x2, MiFlow, type MiFlowConfig } from "../src/models/mi.ts";
import { WordRnn } from "../src/models/af.ts";
import { featherMask, MiHybrid } from "../src/models/mi_hybrid.ts";
import { clipMean } from "../src/models/af.ts";
import { ParamStore } from "../src/nn/store.ts";
import { concatChannels, reshape } from "../src/ops/shape.ts";
import { clearTape, noGrad } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";

/** Move every trainable parameter off its (often zero) initialisation; mark actnorms set. */
async function perturb(store: ParamStore, seed: number, std = 0.2) {
  const rng = new Rng(seed);
  for (const t of store.params()) t.write((await t.read()).map((v) => v + std * rng.normal()));
  for (const f of store.flags.values()) f.value = true;
}

/** The same standard normals on every call: gradchecks need a fixed ε. */
const fixedNoise = (seed: number) => (n: number) => new Rng(seed).normalArray(n);

// 3x8x8 images, L = 2: z^r = z_1 [6, 4, 4], z^i = z_2 [24, 2, 2].
const tiny: Partial<MiFlowConfig> = {
  channels: 3,
  size: 8,
  levels: 2,
  depth: 1,
  hidden: 4,
  nBits: 5,
  box: { top: 3, bottom: 6, left: 1, right: 5 },
  alpha: 0.1,
  temperature: 0.7,
};
const SHAPE = [2, 3, 8, 8];
const D = 3 * 8 * 8;

/** A model on its own store, parameters perturbed. */
async function tinyModel(seed: number, cfg: Partial<MiFlowConfig> = {}) {
  const store = new ParamStore(seed);
  const mi = new MiFlow(store.scope(), { ...tiny, ...cfg });
  await perturb(store, seed + 1);
  return { store, mi };
}

// ---- f64 references ------------------------------------------------------------------------

/** conv3x3, zero padding 1, bias: x [ci, h, w] -> [co, h, w]. */
function conv3(
  x: Float64Array,
  ci: number,
  h: number,
  w: number,
  wt: Float32Array,
  b: Float32Array,
) {
  const co = b.length, y = new Float64Array(co * h * w);
  for (let o = 0; o < co; o++) {
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        let s = b[o];
        for (let c = 0; c < ci; c++) {
          for (let di = 0; di < 3; di++) {
            for (let dj = 0; dj < 3; dj++) {
              const ii = i + di - 1, jj = j + dj - 1;
              if (ii < 0 || jj < 0 || ii >= h || jj >= w) continue;
              s += wt[((o * ci + c) * 3 + di) * 3 + dj] * x[(c * h + ii) * w + jj];
            }
          }
        }
        y[(o * h + i) * w + j] = s;
      }
    }
  }
  return y;
}

/** 2x2 max-pool of [c, h, w]. */
function pool64(x: ArrayLike<number>, c: number, h: number, w: number): Float64Array {
  const y = new Float64Array(c * (h / 2) * (w / 2));
  for (let k = 0; k < c; k++) {
    for (let i = 0; i < h / 2; i++) {
      for (let j = 0; j < w / 2; j++) {
        const at = (di: number, dj: number) => x[(k * h + 2 * i + di) * w + 2 * j + dj];
        y[(k * (h / 2) + i) * (w / 2) + j] = Math.max(at(0, 0), at(0, 1), at(1, 0), at(1, 1));
      }
    }
  }
  return y;
}

// ---- max-pool and condition ----------------------------------------------------------------

Deno.test("maxPool2x2: forward vs f64 and gradcheck on [2, 3, 6, 10]", async () => {
  const shape = [2, 3, 6, 10], n = 360;
  const x = randn(n, 1);
  const y = await noGrad(() => maxPool2x2(Tensor.from(x, shape))).read();
  const want = new Float64Array(n / 4);
  for (let b = 0; b < 2; b++) want.set(pool64(x.subarray(b * 180), 3, 6, 10), b * 45);
  assertClose(y, want, { rtol: 0, atol: 0, label: "maxPool2x2" });
  clearTape();
  // Kinks where two pixels of a window are within the step of each other.
  await gradcheck((t) => maxPool2x2(t), [{ data: x, shape }], { label: "maxPool2x2", kinks: true });
});

Deno.test("maxPool2x2: odd sides and non-images are refused", () => {
  assert.throws(
    () => maxPool2x2(Tensor.from(new Float32Array(30), [1, 1, 5, 6])),
    /^Error: flowgpu: maxPool2x2: x \[1, 1, 5, 6\] is not \[N, C, H, W\] with even H and W/,
  );
  assert.throws(() => maxPool2x2(Tensor.from(new Float32Array(16), [4, 4])), /flowgpu: maxPool2x2/);
  clearTape();
});

Deno.test("mi: the condition keeps the mouth box of every channel and zeroes the rest", async () => {
  const { store, mi } = await tinyModel(1);
  const x = randn(2 * D, 2);
  const c = await mi.condition(Tensor.from(x, SHAPE)).read();
  for (let i = 0; i < x.length; i++) {
    const p = i % 64, r = Math.floor(p / 8), q = p % 8;
    const inside = r >= 3 && r <= 6 && q >= 1 && q <= 5;
    assert.ok(c[i] === (inside ? x[i] : 0), `element ${i} (row ${r}, col ${q}): ${c[i]}`);
  }
  clearTape();
  store.release();
});

// ---- conditional prior ---------------------------------------------------------------------

Deno.test("mi prior: starts as N(0, I); matches an f64 conv/relu/pool/zero-conv reference; gradcheck", async () => {
  const store = new ParamStore(3);
  const net = new ConditionPrior(store.scope("prior"), 1, [[2, 3, 5]]);
  const c = randn(2 * 60, 4);
  const fresh = noGrad(() => net.apply(Tensor.from(c, [2, 1, 6, 10])));
  for (const t of [...fresh.mu, ...fresh.logStd]) {
    assert.ok((await t.read()).every((v) => v === 0), "zero heads give μ = 0, ln σ = 0");
  }
  clearTape();
  await perturb(store, 5);
  const got = noGrad(() => net.apply(Tensor.from(c, [2, 1, 6, 10])));
  const [mu, ls] = await Tensor.readAll([got.mu[0], got.logStd[0]]);
  const [w1, b1, w2, b2, g2] = await Tensor.readAll([
    net.convs[0].w,
    net.convs[0].b!,
    net.heads[0].w,
    net.heads[0].b,
    net.heads[0].logscale,
  ]);
  for (let b = 0; b < 2; b++) {
    const h1 = conv3(Float64Array.from(c.subarray(b * 60, (b + 1) * 60)), 1, 6, 10, w1, b1);
    const p = pool64(h1.map((v) => Math.max(v, 0)), 2, 6, 10);
    const out = conv3(p, 2, 3, 5, w2, b2).map((v, i) => v * Math.exp(3 * g2[Math.floor(i / 15)]));
    assertClose(mu.subarray(b * 30, (b + 1) * 30), out.subarray(0, 30), {
      rtol: 1e-5,
      atol: 1e-6,
      label: "μ",
    });
    assertClose(ls.subarray(b * 30, (b + 1) * 30), out.subarray(30, 60), {
      rtol: 1e-5,
      atol: 1e-6,
      label: "ln σ",
    });
  }
  clearTape();
  await gradcheck(
    (t) => {
      const p = net.apply(t);
      return concatChannels([p.mu[0], p.logStd[0]]);
    },
    [{ data: c, shape: [2, 1, 6, 10] }],
    { params: store.params(), label: "condition prior", maxElements: 6, kinks: true },
  );
  store.release();
  // Two levels chain (as a 1-channel Glow on 8x12 has them): each halves the resolution.
  const s2 = new ParamStore(6);
  const two = new ConditionPrior(s2.scope("prior"), 1, [[2, 4, 6], [4, 2, 3]]);
  const p2 = noGrad(() => two.apply(Tensor.from(randn(2 * 96, 7), [2, 1, 8, 12])));
  assert.deepEqual(p2.mu.map((t) => t.shape), [[2, 2, 4, 6], [2, 4, 2, 3]]);
  assert.deepEqual(p2.logStd.map((t) => t.shape), [[2, 2, 4, 6], [2, 4, 2, 3]]);
  clearTape();
  s2.release();
});

// ---- the losses ----------------------------------------------------------------------------

Deno.test("mi: L_d and L_r equal their parts (brute-force log|det|); L_i equals a CPU draw decoded", async () => {
  const { store, mi } = await tinyModel(10);
  const x = randn(2 * D, 11, 0.3), clean = x.map((v) => v - 0.01);
  const xt = Tensor.constant(x, SHAPE, "x"), ct = Tensor.constant(clean, SHAPE, "clean");
  const l = noGrad(() => mi.losses(xt, { clean: ct, noise: fixedNoise(12) }));
  const [d, r, li, total] = await Tensor.readAll([l.d, l.r, l.i!, l.total]);
  const { zr, zi } = mi.encode(xt);
  const p = noGrad(() => mi.prior.apply(mi.condition(xt)));
  const [z1, z2, mu, ls] = await Tensor.readAll([zr[0], zi, p.mu[0], p.logStd[0]]);
  clearTape();
  const flat = (t: Tensor) => {
    const { latents } = mi.glow.flow(t);
    return concatChannels(latents.map((z) => reshape(z, [z.shape[0], z.size / z.shape[0]])));
  };
  const logdet = await bruteLogdet(flat, x, SHAPE);
  const half = Math.log(2 * Math.PI) / 2;
  let nllR = 0, nllI = 0;
  for (let i = 0; i < z1.length; i++) {
    nllR += half + ls[i] + (z1[i] - mu[i]) ** 2 / (2 * Math.exp(2 * ls[i]));
  }
  for (const v of z2) nllI += half + v * v / 2;
  const bits = D * Math.LN2;
  const wantR = nllR / 2 / bits;
  const wantD = (nllR + nllI - logdet[0] - logdet[1]) / 2 / bits + 5;
  assert.ok(Math.abs(r[0] - wantR) < 1e-5 * Math.max(1, wantR), `L_r ${r[0]} vs ${wantR}`);
  assert.ok(Math.abs(d[0] - wantD) < 2e-4, `L_d ${d[0]} vs ${wantD}`);
  // ẑ^r = μ + σ T ε with the same ε, decoded by the untracked inverse.
  const eps = fixedNoise(12)(mu.length);
  const zhat = mu.map((m, i) => m + Math.exp(ls[i]) * 0.7 * eps[i]);
  const xHat = await mi.decode(Tensor.from(z2, zi.shape as number[]), [
    Tensor.from(zhat, zr[0].shape as number[]),
  ]).read();
  let se = 0;
  for (let i = 0; i < xHat.length; i++) se += (xHat[i] - clean[i]) ** 2;
  const wantI = se / xHat.length;
  assert.ok(Math.abs(li[0] - wantI) < 1e-4 * wantI + 1e-7, `L_i ${li[0]} vs ${wantI}`);
  assert.ok(wantI > 1e-3, "the draw moves x̂ away from x (L_i is not trivially 0)");
  assert.ok(Math.abs(total[0] - (d[0] + 0.1 * r[0] + li[0])) < 1e-5 * total[0], "total");
  // T = 0 decodes the prior means; with z^r itself it would round-trip exactly.
  clearTape();
  xt.release();
  ct.release();
  mi.release();
  store.release();
});

for (const term of ["d", "r", "i"] as const) {
  Deno.test(`mi: gradcheck of L_${term} w.r.t. the image and every parameter it depends on`, async () => {
    const { store, mi } = await tinyModel(20);
    const clean = Tensor.constant(randn(2 * D, 21, 0.3), SHAPE, "clean");
    // L_r sees only z_1 and the prior: the top level's parameters do not reach it.
    const params = store.params().filter((t) => term !== "r" || !t.name.startsWith("flow.level1"));
    await gradcheck(
      (x) => mi.losses(x, { clean, noise: fixedNoise(22) })[term]!,
      [{ data: randn(2 * D, 23, 0.3), shape: SHAPE }],
      { params, label: `L_${term}`, maxElements: 3, kinks: true },
    );
    clean.release();
    mi.release();
    store.release();
  });
}

Deno.test("mi: L_i reaches every flow parameter and the prior; L_r reaches no top-level one", async () => {
  const { store, mi } = await tinyModel(30);
  const x = Tensor.constant(randn(2 * D, 31, 0.3), SHAPE, "x");
  const { backward } = await import("../src/ops/tape.ts");
  for (const [term, all] of [["i", true], ["r", false]] as const) {
    for (const p of store.params()) p.zeroGrad();
    backward(mi.losses(x, { noise: fixedNoise(32) })[term]!, { params: store.params() });
    for (const p of store.params()) {
      const g = p.grad ? await p.grad.read() : new Float32Array(1);
      const moved = g.some((v) => v !== 0);
      const expect = all || !p.name.startsWith("flow.level1");
      assert.equal(moved, expect, `L_${term}: ${p.name} gradient ${moved ? "non-zero" : "zero"}`);
    }
    clearTape();
  }
  x.release();
  mi.release();
  store.release();
});

Deno.test("mi: ablation switches pick the terms of the total; T = 0 draws the prior means", async () => {
  const x = randn(2 * D, 41, 0.3);
  const run = async (cfg: Partial<MiFlowConfig>) => {
    const { store, mi } = await tinyModel(40, cfg);
    const l = noGrad(() => mi.losses(Tensor.from(x, SHAPE), { noise: fixedNoise(42) }));
    const v = await Tensor.readAll([l.total, l.d, l.r, ...(l.i ? [l.i] : [])]);
    clearTape();
    mi.release();
    store.release();
    return v.map((a) => a[0]);
  };
  const [full, d, r, i] = await run({});
  const [noD] = await run({ ld: false });
  const [noI, , , missing] = await run({ li: false });
  const [noR] = await run({ alpha: 0 });
  const close = (a: number, b: number, what: string) =>
    assert.ok(Math.abs(a - b) <= 1e-5 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
  close(full, d + 0.1 * r + i, "L_d + α L_r + L_i");
  close(noD, 0.1 * r + i, "w/o L_d");
  close(noI, d + 0.1 * r, "w/o L_i");
  assert.equal(missing, undefined, "w/o L_i computes no L_i");
  close(noR, d + i, "w/o L_r");
  // T = 0: L_i is the error of decoding the prior means.
  const { store, mi } = await tinyModel(40, { temperature: 0 });
  const xt = Tensor.from(x, SHAPE);
  const li = await noGrad(() => mi.losses(xt, { noise: fixedNoise(1) }).i!).read();
  const means = mi.samplePrior(mi.condition(xt), fixedNoise(99), 0);
  const xHat = await mi.decode(mi.encode(xt).zi, means).read();
  const want = xHat.reduce((a, v, k) => a + (v - x[k]) ** 2, 0) / xHat.length;
  close(li[0], want, "T = 0 L_i");
  clearTape();
  mi.release();
  store.release();
});

// ---- word classifier -----------------------------------------------------------------------

Deno.test("wordRnn: logits and L_y vs an f64 RNN; gradcheck w.r.t. features and parameters", async () => {
  const store = new ParamStore(50);
  const [din, H, K, T, B] = [5, 3, 4, 3, 2];
  const rnn = new WordRnn(store.scope("word"), din, H, K);
  await perturb(store, 51, 0.3);
  const u = randn(T * B * din, 52);
  const labels = [3, 1];
  const ut = Tensor.from(u, [T * B, din]);
  const { loss, last } = noGrad(() => rnn.loss(ut, T, labels));
  const [ly, lg, ll] = await Tensor.readAll([loss, noGrad(() => rnn.logits(ut, T)), last]);
  const [wi, bi, wh, wo, bo] = await Tensor.readAll([
    rnn.input.w,
    rnn.input.b!,
    rnn.recurrent,
    rnn.output.w,
    rnn.output.b!,
  ]);
  let ce = 0;
  for (let b = 0; b < B; b++) {
    let h = new Float64Array(H);
    for (let t = 0; t < T; t++) {
      const row = b * T + t, next = new Float64Array(H);
      for (let j = 0; j < H; j++) {
        let s = bi[j];
        for (let k = 0; k < din; k++) s += wi[j * din + k] * u[row * din + k];
        for (let k = 0; k < H; k++) s += wh[j * H + k] * h[k];
        next[j] = Math.tanh(s);
      }
      h = next;
      const o = Array.from({ length: K }, (_, c) => {
        let s = bo[c];
        for (let k = 0; k < H; k++) s += wo[c * H + k] * h[k];
        return s;
      });
      assertClose(lg.subarray((b * T + t) * K, (b * T + t + 1) * K), o, {
        rtol: 1e-5,
        atol: 1e-6,
        label: `logits clip ${b} frame ${t}`,
      });
      if (t === T - 1) {
        assertClose(ll.subarray(b * K, (b + 1) * K), o, { rtol: 1e-5, atol: 1e-6, label: "last" });
      }
      const m = Math.max(...o);
      ce += m + Math.log(o.reduce((a, v) => a + Math.exp(v - m), 0)) - o[labels[b]];
    }
  }
  assert.ok(Math.abs(ly[0] - ce / (B * T)) < 1e-5, `L_y ${ly[0]} vs ${ce / (B * T)}`);
  clearTape();
  await gradcheck((x) => rnn.loss(x, T, labels).loss, [{ data: u, shape: [T * B, din] }], {
    params: store.params(),
    label: "L_y",
  });
  await gradcheck((x) => rnn.logits(x, T), [{ data: u, shape: [T * B, din] }], {
    params: store.params(),
    label: "word logits",
    maxElements: 8,
  });
  store.release();
});

Deno.test("mi: with words, L_y on z^r_1 joins the total and its gradient reaches the flow", async () => {
  const { store, mi } = await tinyModel(60, { words: 4, wordHidden: 5, wordWeight: 0.5 });
  // 2 clips x 2 frames, clip-major.
  const x = Tensor.constant(randn(4 * D, 61, 0.3), [4, 3, 8, 8], "x");
  const words = { frames: 2, labels: [1, 3] };
  const l = noGrad(() => mi.losses(x, { noise: fixedNoise(62), words }));
  const [t, d, r, i, y] = await Tensor.readAll([l.total, l.d, l.r, l.i!, l.y!]);
  assert.ok(Math.abs(t[0] - (d[0] + 0.1 * r[0] + i[0] + 0.5 * y[0])) < 1e-5 * t[0], "total");
  assert.deepEqual(l.lastLogits!.shape, [2, 4]);
  clearTape();
  const params = store.params().filter((p) => !p.name.startsWith("flow.level1"));
  await gradcheck(
    (xt) => mi.losses(xt, { noise: fixedNoise(62), words }).y!,
    [{ data: randn(4 * D, 63, 0.3), shape: [4, 3, 8, 8] }],
    {
      params: params.filter((p) => !p.name.startsWith("prior")),
      label: "L_y through f",
      maxElements: 2,
      kinks: true,
    },
  );
  x.release();
  mi.release();
  store.release();
});

// ---- bad input -----------------------------------------------------------------------------

Deno.test("mi: bad configurations and inputs are refused with clear errors", async () => {
  const store = new ParamStore(70);
  const s = store.scope();
  assert.throws(() => new MiFlow(s, { ...tiny, levels: 1 }), /^Error: flowgpu: mi: levels must/);
  assert.throws(
    () => new MiFlow(s, { ...tiny, size: 12, levels: 3 }),
    /^Error: flowgpu: mi: a 12x12 image cannot be squeezed 3 times/,
  );
  assert.throws(
    () => new MiFlow(s, { ...tiny, box: { top: 5, bottom: 9, left: 0, right: 3 } }),
    /^Error: flowgpu: mi: mouth box rows 5\.\.9, cols 0\.\.3 is not a non-empty box inside/,
  );
  assert.throws(
    () => new MiFlow(s, { ...tiny, ld: false, li: false, alpha: 0 }),
    /^Error: flowgpu: mi: every loss term is switched off/,
  );
  assert.throws(() => new MiFlow(s, { ...tiny, temperature: -1 }), /temperature must be/);
  const { store: st, mi } = await tinyModel(71);
  const bad = Tensor.from(new Float32Array(2 * 64), [2, 1, 8, 8]);
  assert.throws(
    () => mi.losses(bad, { noise: fixedNoise(1) }),
    /^Error: flowgpu: mi: image \[2, 1, 8, 8\] does not match the model's \[N, 3, 8, 8\]/,
  );
  const x = Tensor.from(new Float32Array(2 * D), SHAPE);
  assert.throws(
    () =>
      mi.losses(x, { clean: Tensor.from(new Float32Array(D), [1, 3, 8, 8]), noise: fixedNoise(1) }),
    /^Error: flowgpu: mi: clean images \[1, 3, 8, 8\] and x̃ \[2, 3, 8, 8\] differ in N/,
  );
  assert.throws(
    () => mi.losses(x, { noise: () => new Float32Array(3) }),
    /^Error: flowgpu: mi: noise gave 3 values for z_1 \[2, 6, 4, 4\]/,
  );
  assert.throws(
    () => mi.prior.apply(Tensor.from(new Float32Array(2 * 3 * 16), [2, 3, 4, 4])),
    /^Error: flowgpu: mi: condition \[2, 3, 4, 4\] does not match the model's \[N, 3, 8, 8\]/,
  );
  clearTape();
  mi.release();
  st.release();
  const { store: sw, mi: mw } = await tinyModel(72, { words: 3 });
  const x4 = Tensor.from(new Float32Array(4 * D), [4, 3, 8, 8]);
  assert.throws(
    () => mw.losses(x4, { noise: fixedNoise(1) }),
    /^Error: flowgpu: mi: a model with a word classifier needs the batch's clips/,
  );
  assert.throws(
    () => mw.losses(x4, { noise: fixedNoise(1), words: { frames: 3, labels: [0] } }),
    /^Error: flowgpu: af: word classifier input \[4, 96\] is not \[clips x 3 frames, 96\]/,
  );
  assert.throws(
    () => mw.losses(x4, { noise: fixedNoise(1), words: { frames: 2, labels: [0, 3] } }),
    /^Error: flowgpu: af: word label 3 \(clip 1\) is not an integer in \[0, 3\)/,
  );
  assert.throws(
    () => mw.losses(x4, { noise: fixedNoise(1), words: { frames: 2, labels: [0] } }),
    /^Error: flowgpu: af: 1 word labels for 2 clips/,
  );
  assert.throws(
    () => mw.word!.logits(Tensor.from(new Float32Array(8), [2, 4]), 1),
    /^Error: flowgpu: af: word classifier input \[2, 4\] is not \[clips x 1 frames, 96\]/,
  );
  clearTape();
  mw.release();
  sw.release();
  store.release();
});

// ---- AF-MI hybrid --------------------------------------------------------------------------

Deno.test("afmi: the feathered paste mask and the pasted frames vs references", async () => {
  const m = featherMask(2, 8, { top: 3, bottom: 4, left: 2, right: 5 });
  const at = (y: number, x: number) => m[y * 8 + x];
  const f = Math.fround;
  assert.equal(at(3, 2), 1);
  assert.equal(at(4, 5), 1);
  assert.equal(at(2, 3), f(1 - 1 / 3)); // one row above
  assert.equal(at(1, 1), f(1 - 2 / 3)); // two rows up, one column left: Chebyshev distance 2
  assert.equal(at(0, 3), 0);
  assert.equal(at(4, 7), f(1 - 2 / 3));
  assert.deepEqual(m.subarray(64), m.subarray(0, 64), "every channel alike");
  const { store, mi } = await tinyModel(80);
  const h = new MiHybrid(mi, 0.5, { source: true, target: true, pair: true, word: false });
  // 2 clips of 3 frames; query frames k = 2 and 0.
  const xs = randn(6 * D, 81), xq = randn(6 * D, 82);
  const got = await h.paste(Tensor.from(xs, [6, 3, 8, 8]), Tensor.from(xq, [6, 3, 8, 8]), [2, 0], 3)
    .read();
  const mf = featherMask(3, 8, tiny.box!);
  for (let r = 0; r < 6; r++) {
    const q = (r < 3 ? 2 : 3) * D;
    for (let e = 0; e < D; e++) {
      const want = mf[e] * xs[r * D + e] + (1 - mf[e]) * xq[q + e];
      assert.ok(Math.abs(got[r * D + e] - want) < 1e-6, `row ${r} element ${e}`);
    }
  }
  clearTape();
  h.release();
  mi.release();
  store.release();
});

Deno.test("afmi: L_s, L_p, L_t on the MI split equal their definitions; total = L_MI + β L_AF", async () => {
  const { store, mi } = await tinyModel(90);
  const h = new MiHybrid(mi, 0.5, { source: true, target: true, pair: true, word: false });
  const T = 3, rows = 6, shape = [rows, 3, 8, 8];
  const xs = Tensor.constant(randn(rows * D, 91, 0.3), shape, "xs");
  const xq = Tensor.constant(randn(rows * D, 92, 0.3), shape, "xq");
  const l = noGrad(() =>
    h.losses(xs, { noise: fixedNoise(93) }, { frames: T, shift: 2, query: xq, queryFrames: [1, 2] })
  );
  const [src, tgt, pair, af, total, miTotal] = await Tensor.readAll([
    l.source!,
    l.target!,
    l.pair!,
    l.af,
    l.total,
    l.mi.total,
  ]);
  const zi = await mi.encode(xs).zi.read();
  const ziQ = await mi.encode(xq).zi.read();
  const ziT = await mi.encode(h.paste(xs, xq, [1, 2], T)).zi.read();
  clearTape();
  const d = zi.length / rows;
  const centroid = (z: Float32Array, r: number, e: number) => {
    const c = Math.floor(r / T);
    let sum = 0;
    for (let t = 0; t < T; t++) sum += z[(c * T + t) * d + e];
    return sum / T;
  };
  let ws = 0, wp = 0, wt = 0;
  for (let r = 0; r < rows; r++) {
    const n = r - (r % T) + ((r % T) + 2) % T;
    for (let e = 0; e < d; e++) {
      ws += (zi[r * d + e] - centroid(zi, r, e)) ** 2;
      wp += (zi[n * d + e] - zi[r * d + e]) ** 2;
      wt += (ziT[r * d + e] - centroid(ziQ, r, e)) ** 2;
    }
  }
  const close = (a: number, b: number, what: string) =>
    assert.ok(Math.abs(a - b) <= 2e-5 * Math.abs(b) + 1e-7, `${what}: ${a} vs ${b}`);
  close(src[0], ws / zi.length, "L_s^H");
  close(pair[0], wp / zi.length, "L_p^H");
  close(tgt[0], wt / zi.length, "L_t^H");
  close(af[0], src[0] + tgt[0] + pair[0], "L_AF^H");
  close(total[0], miTotal[0] + 0.5 * af[0], "L_MI + β L_AF^H");
  // The centroid op: every row of a clip holds the clip's mean.
  const zc = await clipMean(Tensor.from(zi, [rows, d]), T).read();
  for (let r = 0; r < rows; r++) close(zc[r * d + 5], centroid(zi, r, 5), `centroid row ${r}`);
  clearTape();
  xs.release();
  xq.release();
  h.release();
  mi.release();
  store.release();
});

for (const term of ["source", "pair", "target"] as const) {
  Deno.test(`afmi: gradcheck of L_${term[0]}^H w.r.t. source, query and the flow's parameters`, async () => {
    const { store, mi } = await tinyModel(100);
    const which = { source: false, target: false, pair: false, word: false, [term]: true };
    const h = new MiHybrid(mi, 1, which);
    const flow = store.params().filter((p) => p.name.startsWith("flow."));
    const T = 2, shape = [4, 3, 8, 8];
    await gradcheck(
      (xs, xq) =>
        h.losses(xs, { noise: fixedNoise(101) }, {
          frames: T,
          shift: 1,
          query: xq,
          queryFrames: [1, 0],
        })[term]!,
      [{ data: randn(4 * D, 102, 0.3), shape }, {
        data: randn(4 * D, 103, 0.3),
        shape,
        grad: term === "target",
      }],
      { params: flow, label: `L_${term}^H`, maxElements: 2, kinks: true },
    );
    h.release();
    mi.release();
    store.release();
  });
}

Deno.test("afmi: bad settings and batches are refused", async () => {
  const { store, mi } = await tinyModel(110);
  const all = { source: true, target: true, pair: true, word: false };
  assert.throws(() => new MiHybrid(mi, -1, all), /^Error: flowgpu: afmi: β must be a finite/);
  assert.throws(
    () => new MiHybrid(mi, 0.5, { ...all, word: true }),
    /^Error: flowgpu: afmi: L_y needs an MI flow built with a word classifier/,
  );
  assert.throws(
    () => new MiHybrid(mi, 0.5, { source: false, target: false, pair: false, word: false }),
    /^Error: flowgpu: afmi: every AF term is switched off/,
  );
  const h = new MiHybrid(mi, 0.5, all);
  const x = Tensor.from(new Float32Array(4 * D), [4, 3, 8, 8]);
  const o = { noise: fixedNoise(1) };
  assert.throws(
    () => h.losses(x, o, { frames: 3, shift: 1 }),
    /^Error: flowgpu: afmi: 4 frames are not whole clips of 3 >= 2 frames/,
  );
  assert.throws(
    () => h.losses(x, o, { frames: 2, shift: 2 }),
    /^Error: flowgpu: afmi: L_p needs a pair shift s in 1\.\.1, got 2/,
  );
  assert.throws(
    () => h.losses(x, o, { frames: 2, shift: 1 }),
    /^Error: flowgpu: afmi: L_t needs the query clips and their frames k/,
  );
  assert.throws(
    () => h.paste(x, x, [0], 2),
    /^Error: flowgpu: afmi: 1 query frames for 2 clips/,
  );
  assert.throws(
    () => h.paste(x, x, [0, 2], 2),
    /^Error: flowgpu: afmi: query frame 2 \(clip 1\) is not in 0\.\.1/,
  );
  clearTape();
  h.release();
  mi.release();
  store.release();
});

// ---- the task ------------------------------------------------------------------------------

async function taskSession(extra: string[]) {
  const { parseFlags } = await import("../src/train/flags.ts");
  const { trainerTable } = await import("../src/train/trainer_flags.ts");
  const { miTask } = await import("../src/train/mi_task.ts");
  const { Session } = await import("../src/train/trainer.ts");
  const args = [
    ...["--levels", "2", "--depth", "1", "--width", "8", "--batch", "8", "--init-batch", "16"],
    ...["--warmup", "2", "--lr", "2e-3", "--no-logos", "--vocab", "10", "--train-ids", "20"],
    ...["--eval-clips", "1", ...extra],
  ];
  const { values } = parseFlags(args, [trainerTable(miTask.trainer), miTask.flags], "cpu");
  // deno-lint-ignore no-explicit-any
  const cfg = values as any;
  const model = await miTask.build(cfg, "train");
  return { s: new Session(miTask, cfg, model), model };
}

Deno.test("mi task: trainer steps on SynthLips 32x32 give finite, falling loss; evaluation runs", async () => {
  const { GpuMetrics } = await import("../src/train/metrics.ts");
  const { s, model } = await taskSession([]);
  model.init?.();
  const m = new GpuMetrics();
  const seen: Record<string, number>[] = [];
  for (let i = 0; i < 16; i++) {
    s.trainStep(m);
    if (i === 3 || i === 15) {
      const r = await m.read();
      seen.push(Object.fromEntries([...r].map(([k, v]) => [k, v.mean])));
    }
  }
  const [first, last] = seen;
  for (const k of ["bpd", "l_r", "l_i"]) {
    assert.ok(
      Number.isFinite(first[k]) && Number.isFinite(last[k]),
      `${k}: ${first[k]} ${last[k]}`,
    );
  }
  assert.ok(last.bpd < first.bpd, `bpd fell: ${first.bpd} -> ${last.bpd}`);
  assert.ok(first.bpd < 5.5 && first.bpd > 1, `bits/dim of 5-bit images: ${first.bpd}`);
  const e = await model.evaluate({ final: true });
  for (const k of ["test_bpd", "self_psnr", "cross_unseen_psnr", "self_ssim", "cross_ood_ssim"]) {
    assert.ok(Number.isFinite(e.metrics[k] as number), `${k} = ${e.metrics[k]}`);
  }
  assert.ok(
    (e.metrics.inverse_rel_error as number) < 1e-4,
    `round trip ${e.metrics.inverse_rel_error}`,
  );
  const png = e.images!.reenact_unseen;
  assert.deepEqual([...png.subarray(1, 4)], [80, 78, 71], "a PNG strip");
  m.release();
  s.release();
});

Deno.test("mi task: --word-loss steps take clip-major clips and log a finite L_y near ln(words)", async () => {
  const { GpuMetrics } = await import("../src/train/metrics.ts");
  const { s, model } = await taskSession([
    "--word-loss",
    "--clip-frames",
    "4",
    "--clip-stride",
    "5",
  ]);
  // deno-lint-ignore no-explicit-any
  const mm = model as any;
  assert.equal(mm.clips, 2);
  const { refs, words } = mm.stepRefs(7);
  assert.equal(refs.length, 8);
  for (let b = 0; b < 2; b++) {
    const f = [0, 1, 2, 3].map((t) => refs[b * 4 + t]);
    const clip = Math.floor(f[0] / 29);
    assert.ok(f.every((r: number, t: number) => r === f[0] + 5 * t), `clip ${b}: stride 5 ${f}`);
    assert.ok(Math.floor(f[3] / 29) === clip, "the frames stay in one clip");
    assert.equal(words[b], mm.set.clipAt("train", clip).word);
  }
  assert.deepEqual(mm.stepRefs(7).refs, refs, "a step's frames are a function of the step");
  model.init?.();
  const m = new GpuMetrics();
  for (let i = 0; i < 3; i++) s.trainStep(m);
  const ly = (await m.read()).get("l_y")!.mean;
  assert.ok(Math.abs(ly - Math.log(10)) < 1, `L_y ${ly} vs ln 10`);
  m.release();
  s.release();
});

Deno.test("afmi task: starts from an MI run's checkpoint, draws other-identity query clips, trains", async () => {
  const { parseFlags } = await import("../src/train/flags.ts");
  const { trainerTable } = await import("../src/train/trainer_flags.ts");
  const { afmiTask } = await import("../src/train/mi_task.ts");
  const { Session } = await import("../src/train/trainer.ts");
  const { GpuMetrics } = await import("../src/train/metrics.ts");
  const dir = await Deno.makeTempDir();
  try {
    const { s: mi, model: miModel } = await taskSession(["--steps", "2"]);
    miModel.init?.();
    mi.trainStep();
    await mi.save(`${dir}/checkpoint.safetensors`);
    const saved = await Tensor.readAll(miModel.store.params(["flow", "prior"]));
    mi.release();
    const args = [
      ...["--levels", "2", "--depth", "1", "--width", "8", "--init-batch", "16", "--no-logos"],
      ...["--vocab", "10", "--train-ids", "20", "--eval-clips", "1", "--init-from", dir],
      ...["--clip-frames", "4", "--clip-stride", "5", "--batch", "8"],
    ];
    const parse = (extra: string[]) =>
      parseFlags([...args, ...extra], [trainerTable(afmiTask.trainer), afmiTask.flags], "cpu")
        // deno-lint-ignore no-explicit-any
        .values as any;
    const cfg = parse([]);
    const model = await afmiTask.build(cfg, "train");
    // deno-lint-ignore no-explicit-any
    const mm = model as any;
    model.init!();
    const loaded = await Tensor.readAll(model.store.params(["flow", "prior"]));
    loaded.forEach((v, i) => assert.deepEqual(v, saved[i], `parameter ${i} loaded`));
    const { refs, rng } = mm.stepRefs(3);
    const q = mm.queryRefs(refs, rng);
    const perId = 10 * 2 * 29;
    for (let b = 0; b < 2; b++) {
      assert.notEqual(
        Math.floor(q.refs[b * 4] / perId),
        Math.floor(refs[b * 4] / perId),
        "identity",
      );
      assert.ok(q.ks[b] >= 0 && q.ks[b] < 4);
    }
    assert.ok(q.shift >= 1 && q.shift <= 3, `shift ${q.shift}`);
    const s = new Session(afmiTask, cfg, model);
    const m = new GpuMetrics();
    for (let i = 0; i < 2; i++) s.trainStep(m);
    const r = await m.read();
    for (const k of ["bpd", "l_i", "l_y", "l_s", "l_t", "l_p", "l_af"]) {
      assert.ok(Number.isFinite(r.get(k)?.mean), `${k} = ${r.get(k)?.mean}`);
    }
    m.release();
    s.release();
    // A run of other shapes is refused.
    const other = await afmiTask.build(parse(["--width", "4"]), "train");
    assert.throws(
      () => other.init!(),
      /checkpoint was trained with width=8 but the model has width=4/,
    );
    other.store.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mi task: bad flags are refused", async () => {
  await assert.rejects(
    () => taskSession(["--size", "48"]),
    /^Error: flowgpu: mi: --size must be 32 or 64, got 48/,
  );
  await assert.rejects(
    () => taskSession(["--word-loss", "--clip-frames", "8", "--clip-stride", "5"]),
    /^Error: flowgpu: mi: --clip-frames 8 at --clip-stride 5 span more than the 29 frames/,
  );
});

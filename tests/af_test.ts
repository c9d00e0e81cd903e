// AF flow: the encoder E and the word RNN against float64 references and by gradcheck (with every
// parameter); each AF loss (one and two encoders) against a float64 reference and by gradcheck
// w.r.t. the source and query latents and every encoder/classifier parameter; L_AF through a tiny
// Glow into θ (AF-1); reenactment with the source's own frame as the query gives its latents
// back; the task: Glow stage, then a stage-2 step that leaves the frozen Glow bit-identical, a
// falling L_AF, AF-1, --glow-from, the quick evaluation; bad inputs are refused by name.
import assert from "node:assert/strict";
import "./setup.ts";
import { join } from "node:path";
import { assertClose, gradcheck, randn } from "./gradcheck.ts";
import {
  AfFlow,
  type AfLossSwitches,
  centroidSwap,
  clipMean,
  LatentEncoder,
  WordRnn,
} from "../src/models/af.ts";
import type { GlowConfig } from "../src/models/glow.ts";
import type { Linear } from "../src/nn/layers.ts";
import { ParamStore } from "../src/nn/store.ts";
import { add } from "../src/ops/elementwise.ts";
import { concatChannels, reshape } from "../src/ops/shape.ts";
import { clearTape, noGrad } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { type AfModel, afTask } from "../src/train/af_task.ts";
import { afOracle } from "../src/eval/af_oracle.ts";
import { parseFlags } from "../src/train/flags.ts";
import { GpuMetrics } from "../src/train/metrics.ts";
import { type AnyConfig, Session } from "../src/train/trainer.ts";
import { trainerTable } from "../src/train/trainer_flags.ts";

async function perturb(store: ParamStore, seed: number, std = 0.2) {
  const rng = new Rng(seed);
  for (const t of store.params()) t.write((await t.read()).map((v) => v + std * rng.normal()));
  for (const f of store.flags.values()) f.value = true;
}

const sizeOf = (s: number[]) => s.reduce((a, b) => a * b, 1);

/**
 * Hidden biases of E well above 0: a scalar loss sums many rows, so with random biases some ReLU
 * input sits within the finite-difference step of its kink, where f32 cannot tell the one-sided
 * differences apart (the active path is what carries a gradient).
 */
function lift(enc: LatentEncoder | undefined, seed: number) {
  const rng = new Rng(seed);
  for (const { fc1 } of enc?.layers ?? []) {
    fc1.b!.write(Float32Array.from({ length: fc1.b!.size }, () => 1.5 + 0.2 * rng.normal()));
  }
}

// ---- float64 references ----

type Mat = { w: Float64Array; b?: Float64Array; out: number; inp: number };

async function mat(l: Linear): Promise<Mat> {
  const [out, inp] = l.w.shape;
  return {
    w: Float64Array.from(await l.w.read()),
    b: l.b ? Float64Array.from(await l.b.read()) : undefined,
    out,
    inp,
  };
}

/** W v + b for v of length In. */
function apply(m: Mat, v: ArrayLike<number>): Float64Array {
  const y = new Float64Array(m.out);
  for (let o = 0; o < m.out; o++) {
    let s = m.b ? m.b[o] : 0;
    for (let i = 0; i < m.inp; i++) s += m.w[o * m.inp + i] * v[i];
    y[o] = s;
  }
  return y;
}

/** A float64 E: per level, per sample and channel, fc2(relu(fc1(v))) (+ v when residual). */
async function refEncoder(e: LatentEncoder) {
  const layers = await Promise.all(
    e.layers.map(async (l) => ({ fc1: await mat(l.fc1), fc2: await mat(l.fc2) })),
  );
  return (z: Float64Array[]): Float64Array[] =>
    z.map((zl, l) => {
      const [, h, w] = e.shapes[l], d = h * w, out = new Float64Array(zl.length);
      for (let r = 0; r < zl.length / d; r++) {
        const hid = apply(layers[l].fc1, zl.subarray(r * d, (r + 1) * d)).map((v) =>
          Math.max(0, v)
        );
        const m = apply(layers[l].fc2, hid);
        if (e.form === "residual") m.forEach((x, i) => (m[i] = x + zl[r * d + i]));
        out.set(m, r * d);
      }
      return out;
    });
}

/** A float64 RNN: logits [B·N, K] of u [B·N, D]. */
async function refRnn(c: WordRnn) {
  const inp = await mat(c.input), out = await mat(c.output);
  const rec: Mat = { w: Float64Array.from(await c.recurrent.read()), out: c.hidden, inp: c.hidden };
  return (u: Float64Array, frames: number): Float64Array => {
    const rows = u.length / c.inputs, logits = new Float64Array(rows * c.classes);
    for (let b = 0; b < rows / frames; b++) {
      let h = new Float64Array(c.hidden);
      for (let n = 0; n < frames; n++) {
        const r = b * frames + n;
        const a = apply(inp, u.subarray(r * c.inputs, (r + 1) * c.inputs));
        const rh = apply(rec, h);
        h = a.map((v, i) => Math.tanh(v + rh[i]));
        logits.set(apply(out, h), r * c.classes);
      }
    }
    return logits;
  };
}

function crossEntropy(logits: Float64Array, k: number, labels: number[]): number {
  let s = 0;
  labels.forEach((y, r) => {
    const row = logits.subarray(r * k, (r + 1) * k);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
    s += lse - row[y];
  });
  return s / labels.length;
}

const mse = (a: Float64Array, b: Float64Array) =>
  a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0) / a.length;
const ell = (a: Float64Array[], b: Float64Array[]) => a.reduce((s, al, l) => s + mse(al, b[l]), 0);
const addL = (a: Float64Array[], b: Float64Array[]) =>
  a.map((al, l) => al.map((v, i) => v + b[l][i]));
const subL = (a: Float64Array[], b: Float64Array[]) =>
  a.map((al, l) => al.map((v, i) => v - b[l][i]));

/** Rows `idx` of a level tensor with `d` values per row. */
function rows(x: Float64Array, d: number, idx: number[]): Float64Array {
  const out = new Float64Array(idx.length * d);
  idx.forEach((r, i) => out.set(x.subarray(r * d, (r + 1) * d), i * d));
  return out;
}

function centroid(x: Float64Array, d: number, frames: number): Float64Array {
  const out = new Float64Array(x.length), clips = x.length / d / frames;
  for (let b = 0; b < clips; b++) {
    const m = new Float64Array(d);
    for (let n = 0; n < frames; n++) {
      for (let i = 0; i < d; i++) m[i] += x[(b * frames + n) * d + i] / frames;
    }
    for (let n = 0; n < frames; n++) out.set(m, (b * frames + n) * d);
  }
  return out;
}

// ---- the networks ----

for (const form of ["residual", "mlp"] as const) {
  Deno.test(`af: ${form} encoder E vs float64 reference; gradcheck w.r.t. latents and its parameters`, async () => {
    const shapes = [[2, 3, 3], [5, 1, 3]];
    const store = new ParamStore(3);
    const enc = new LatentEncoder(store.scope("encoder"), shapes, form);
    await perturb(store, 4, 0.1);
    const n = 3;
    const zs = shapes.map((s, l) => ({ data: randn(n * sizeOf(s), 10 + l), shape: [n, ...s] }));
    const ref = (await refEncoder(enc))(zs.map((z) => Float64Array.from(z.data)));
    const got = await noGrad(() =>
      Tensor.readAll(enc.apply(zs.map((z) => Tensor.from(z.data, z.shape))))
    );
    clearTape();
    got.forEach((g, l) =>
      assertClose(g, ref[l], { rtol: 1e-5, atol: 1e-6, label: `E level ${l}` })
    );
    lift(enc, 8);
    const flat = (t: Tensor) => reshape(t, [n, t.size / n]);
    await gradcheck((a, b) => concatChannels(enc.apply([a, b]).map(flat)), zs, {
      params: store.params(),
      kinks: true,
      label: `${form} encoder`,
    });
    store.release();
  });
}

Deno.test("af: the residual encoder starts as E = I (z^r = 0); the plain MLP does not", async () => {
  const shapes = [[2, 3, 3], [5, 1, 3]];
  const data = shapes.map((s, l) => randn(2 * sizeOf(s), 20 + l));
  for (const form of ["residual", "mlp"] as const) {
    const store = new ParamStore(3);
    const enc = new LatentEncoder(store.scope("encoder"), shapes, form);
    const got = await noGrad(() =>
      Tensor.readAll(enc.apply(data.map((d, l) => Tensor.from(d, [2, ...shapes[l]]))))
    );
    clearTape();
    const err = Math.max(...got.flatMap((g, l) => [...g].map((v, i) => Math.abs(v - data[l][i]))));
    if (form === "residual") assert.equal(err, 0, "residual E at init is the identity");
    else assert.ok(err > 0.1, `the plain MLP at init is not the identity (max diff ${err})`);
    store.release();
  }
  assert.throws(
    () => new LatentEncoder(new ParamStore(1).scope("e"), shapes, "conv" as "mlp"),
    /encoder form must be residual or mlp, got conv/,
  );
});

Deno.test("af: word RNN logits and L_y vs float64 BPTT reference; gradcheck w.r.t. inputs and parameters", async () => {
  const store = new ParamStore(5);
  const rnn = new WordRnn(store.scope("classifier"), 5, 3, 3);
  await perturb(store, 6, 0.3);
  const frames = 3, clips = 2, shape = [clips * frames, 5];
  const u = randn(sizeOf(shape), 7);
  const ref = (await refRnn(rnn))(Float64Array.from(u), frames);
  const words = [2, 0];
  const [logits, loss, last] = await noGrad(() => {
    const ut = Tensor.from(u, shape);
    const l = rnn.loss(ut, frames, words);
    return Tensor.readAll([rnn.logits(ut, frames), l.loss, l.last]);
  });
  clearTape();
  assertClose(logits, ref, { rtol: 1e-5, atol: 1e-6, label: "RNN logits" });
  const labels = [2, 2, 2, 0, 0, 0];
  assertClose(loss, [crossEntropy(ref, 3, labels)], { rtol: 1e-5, label: "L_y" });
  assertClose(last, [...ref.subarray(6, 9), ...ref.subarray(15, 18)], { rtol: 1e-5, label: "o_N" });
  // h_n depends on u_1..u_n only: o_1 of clip 0 ignores u_2, u_3 (checked by the reference too).
  await gradcheck((x) => rnn.logits(x, frames), [{ data: u, shape }], {
    params: store.params(),
    label: "RNN logits",
  });
  await gradcheck((x) => rnn.loss(x, frames, words).loss, [{ data: u, shape }], {
    params: store.params(),
    label: "L_y",
  });
  store.release();
});

// ---- the losses ----

const tinyGlow: Partial<GlowConfig> = {
  channels: 1,
  height: 4,
  width: 12,
  levels: 2,
  depth: 1,
  hidden: 3,
  seed: 2,
};
const FRAMES = 3, CLIPS = 2, ROWS = FRAMES * CLIPS;
const ONLY = (k: keyof AfLossSwitches): AfLossSwitches => ({
  source: k === "source",
  target: k === "target",
  pair: k === "pair",
  word: k === "word",
});

for (const encoders of [1, 2] as const) {
  Deno.test(`af: L_s, L_t, L_p, L_y (${encoders} encoder${encoders > 1 ? "s" : ""}) vs float64 references; gradcheck w.r.t. source, query and every AF parameter`, async () => {
    const store = new ParamStore(11);
    const af = new AfFlow(store, tinyGlow, { encoders, words: 3, rnnHidden: 3 });
    await perturb(store, 12, 0.2);
    lift(af.encoder, 17);
    lift(af.encoderR, 18);
    const shapes = af.latentShapes, dims = shapes.map(sizeOf);
    const src = shapes.map((s, l) => ({
      data: randn(ROWS * sizeOf(s), 20 + l),
      shape: [ROWS, ...s],
    }));
    const qry = shapes.map((s, l) => ({
      data: randn(ROWS * sizeOf(s), 30 + l),
      shape: [ROWS, ...s],
    }));
    const ks = [2, 0], words = [1, 2], shift = 2;
    const batch = (t: Tensor[]) => ({
      source: t.slice(0, 2),
      query: t.slice(2, 4),
      frames: FRAMES,
      queryFrames: ks,
      words,
      shift,
    });
    // float64 reference
    const Ei = await refEncoder(af.encoder);
    const Er = af.encoderR ? await refEncoder(af.encoderR) : undefined;
    const z = src.map((x) => Float64Array.from(x.data)),
      q = qry.map((x) => Float64Array.from(x.data));
    const zi = Ei(z), zr = Er ? Er(z) : subL(z, zi);
    const want: Record<string, number> = {};
    want.source = ell(zi, z.map((zl, l) => centroid(zl, dims[l], FRAMES)));
    const partner = Array.from(
      { length: ROWS },
      (_, r) => r - (r % FRAMES) + ((r % FRAMES) + shift) % FRAMES,
    );
    want.pair = ell(addL(zi.map((t, l) => rows(t, dims[l], partner)), zr), z);
    const spread = Array.from(
      { length: ROWS },
      (_, r) => Math.floor(r / FRAMES) * FRAMES + ks[Math.floor(r / FRAMES)],
    );
    const ziq = Ei(q.map((t, l) => rows(t, dims[l], spread)));
    want.target = ell(Ei(addL(zr, ziq)), q.map((t, l) => centroid(t, dims[l], FRAMES)));
    const logits = (await refRnn(af.classifier!))(zr[0], FRAMES);
    want.word = crossEntropy(logits, 3, [1, 1, 1, 2, 2, 2]);
    if (encoders === 1) {
      // With one encoder, E_i(z_n) + z_m − E_i(z_m) vs z_m is ℓ(z^i_n, z^i_m) (§2.2).
      assertClose([want.pair], [ell(zi.map((t, l) => rows(t, dims[l], partner)), zi)], {
        rtol: 1e-9,
        label: "L_p identity",
      });
    }
    const inputs = [...src, ...qry];
    const made = inputs.map((x) => Tensor.from(x.data, x.shape));
    const l = noGrad(() => af.losses(batch(made)));
    const got = await Tensor.readAll([l.source!, l.target!, l.pair!, l.word!, l.total]);
    clearTape();
    const names = ["source", "target", "pair", "word"];
    names.forEach((k, i) => assertClose([got[i][0]], [want[k]], { rtol: 2e-5, label: `L_${k}` }));
    assertClose([got[4][0]], [names.reduce((s, k) => s + want[k], 0)], {
      rtol: 2e-5,
      label: "L_AF",
    });
    for (const k of names as (keyof AfLossSwitches)[]) {
      // What each loss trains: L_s only E_i; L_y only C and the level-1 part of E_r (z^r_1);
      // one encoder is both E_i and E_r.
      const ei = af.encoder.layers.flatMap((l) => [l.fc1.w, l.fc1.b!, l.fc2.w, l.fc2.b!]);
      const er = af.encoderR?.layers.flatMap((l) => [l.fc1.w, l.fc1.b!, l.fc2.w, l.fc2.b!]) ?? ei;
      const params = k === "source"
        ? ei
        : k === "word"
        ? [...er.slice(0, 4), ...store.params(["classifier"])]
        : [...new Set([...ei, ...er])];
      await gradcheck(
        (...t) => af.losses(batch(t), ONLY(k)).total,
        inputs.map((x, i) => ({
          ...x,
          // The query enters only L_t, and L_y sees only level 1.
          grad: k === "word" ? i === 0 : i < 2 || k === "target",
        })),
        { params, kinks: true, maxElements: 6, label: `L_${k}, ${encoders} encoder(s)` },
      );
    }
    store.release();
  });
}

Deno.test("af: AF-1's L_f + L_AF reaches every Glow parameter through z and the centroids (gradcheck)", async () => {
  const store = new ParamStore(13);
  // The plain MLP encoder: the residual one's gradients w.r.t. z are checked by the loss tests, and
  // with it one actnorm scale here moves the loss by less than f32 resolves at the FD step.
  const af = new AfFlow(store, { ...tinyGlow, affine: false }, {
    words: 3,
    rnnHidden: 2,
    encoder: "mlp",
  });
  await perturb(store, 14, 0.15);
  lift(af.encoder, 19);
  const shape = [ROWS, 1, 4, 12];
  const xs = { data: randn(ROWS * 48, 40, 0.5), shape },
    xq = { data: randn(ROWS * 48, 41, 0.5), shape };
  await gradcheck(
    (s, q) => {
      const f = af.flowWithBits(s);
      const l = af.losses({
        source: f.latents,
        query: af.glow.flow(q).latents,
        frames: FRAMES,
        queryFrames: [1, 2],
        words: [0, 2],
        shift: 1,
      });
      return add(f.bits, l.total);
    },
    [xs, xq],
    {
      params: store.params(["flow"]),
      kinks: true,
      maxElements: 2,
      label: "L_AF w.r.t. θ",
    },
  );
  store.release();
});

Deno.test("af: reenacting a clip with its own frame k as the query gives back frame k's latents; clipMean is each clip's mean", async () => {
  for (const encoders of [1, 2] as const) {
    const store = new ParamStore(15);
    const af = new AfFlow(store, tinyGlow, { encoders, words: 3, rnnHidden: 2 });
    await perturb(store, 16, 0.2);
    const z = af.latentShapes.map((s, l) =>
      Tensor.from(randn(ROWS * sizeOf(s), 50 + l), [ROWS, ...s])
    );
    const k = 4;
    const [zt, zr] = await noGrad(async () => {
      const query = await Promise.all(z.map(async (t) => {
        const d = t.size / ROWS;
        return Tensor.from((await t.read()).subarray(k * d, (k + 1) * d), [1, ...t.shape.slice(1)]);
      }));
      const zt = af.reenact(z, query);
      return [await Tensor.readAll(zt), await Tensor.readAll(af.relevant(z))];
    });
    const zd = await Tensor.readAll(z);
    const zi = await noGrad(() => Tensor.readAll(af.irrelevant(z)));
    zd.forEach((orig, l) => {
      const d = orig.length / ROWS;
      if (encoders === 1) {
        assertClose(zt[l].subarray(k * d, (k + 1) * d), orig.subarray(k * d, (k + 1) * d), {
          atol: 1e-6,
          label: `z_T at frame k, level ${l}`,
        });
      }
      // Every frame: z_T = E_i(z_k) + z^r_n.
      for (let r = 0; r < ROWS; r++) {
        const want = Array.from({ length: d }, (_, i) => zi[l][k * d + i] + zr[l][r * d + i]);
        assertClose(zt[l].subarray(r * d, (r + 1) * d), want, {
          atol: 1e-6,
          label: `z_T row ${r}`,
        });
      }
    });
    const mean = await noGrad(() => clipMean(z[0], FRAMES).read());
    const d0 = zd[0].length / ROWS;
    assertClose(mean, centroid(Float64Array.from(zd[0]), d0, FRAMES), { rtol: 1e-5, atol: 1e-6 });
    clearTape();
    store.release();
  }
});

Deno.test("af: centroidSwap moves each source clip onto the query clip's centroid, frame offsets kept", async () => {
  const frames = 4, clips = 2, shape = [clips * frames, 2, 2, 2], d = 8;
  const zs = randn(clips * frames * d, 60), zq = randn(clips * frames * d, 61);
  const got = await noGrad(() =>
    Tensor.readAll([
      ...centroidSwap([Tensor.from(zs, shape)], [Tensor.from(zq, shape)], frames),
      ...centroidSwap([Tensor.from(zs, shape)], [Tensor.from(zs, shape)], frames),
    ])
  );
  clearTape();
  const want = new Float64Array(zs.length);
  for (let b = 0; b < clips; b++) {
    for (let i = 0; i < d; i++) {
      let ms = 0, mq = 0;
      for (let n = 0; n < frames; n++) {
        ms += zs[(b * frames + n) * d + i] / frames;
        mq += zq[(b * frames + n) * d + i] / frames;
      }
      for (let n = 0; n < frames; n++) {
        const r = (b * frames + n) * d + i;
        want[r] = zs[r] - ms + mq;
      }
    }
  }
  assertClose(got[0], want, { rtol: 1e-5, atol: 1e-6, label: "z̄_Q + z_S − z̄_S" });
  assertClose(got[1], zs, { rtol: 1e-5, atol: 1e-6, label: "a clip onto itself" });
  assert.throws(() => centroidSwap([], [Tensor.from(zq, shape)], frames), /0 source levels, 1/);
});

Deno.test("af: bad configurations and inputs are refused by name", () => {
  const store = new ParamStore(1);
  assert.throws(
    () =>
      new AfFlow(store, tinyGlow, {
        losses: { source: false, target: false, pair: false, word: false },
      }),
    /^Error: flowgpu: af: every AF loss is switched off/,
  );
  assert.throws(
    () => new AfFlow(new ParamStore(1), tinyGlow, { encoders: 3 as 1 }),
    /^Error: flowgpu: af: encoders must be 1 or 2, got 3/,
  );
  const af = new AfFlow(new ParamStore(2), tinyGlow, { words: 3, rnnHidden: 2 });
  const z = (n: number) =>
    af.latentShapes.map((s) => Tensor.from(new Float32Array(n * sizeOf(s)), [n, ...s]));
  const ok = { source: z(6), query: z(6), frames: 3, queryFrames: [0, 1], words: [0, 1], shift: 1 };
  noGrad(() => {
    assert.throws(
      () => af.losses({ ...ok, frames: 4 }),
      /flowgpu: af: 6 source frames are not whole clips of 4 frames/,
    );
    assert.throws(
      () => af.losses({ ...ok, frames: 1 }),
      /flowgpu: af: a clip needs at least 2 frames, got 1/,
    );
    assert.throws(
      () => af.losses({ ...ok, shift: 3 }),
      /flowgpu: af: L_p needs a pair shift s in 1\.\.2, got 3/,
    );
    assert.throws(
      () => af.losses({ ...ok, queryFrames: [0, 3] }),
      /flowgpu: af: query frame 3 \(clip 1\) is not in 0\.\.2/,
    );
    assert.throws(
      () => af.losses({ ...ok, words: [0, 3] }),
      /flowgpu: af: word label 3 \(clip 1\) is not an integer in \[0, 3\)/,
    );
    assert.throws(
      () => af.losses({ ...ok, query: undefined }),
      /flowgpu: af: L_t needs query latents and query frames/,
    );
    assert.throws(
      () => af.losses({ ...ok, query: z(3) }),
      /flowgpu: af: query latents must be 2 latents shaped \[6, 2, 2, 6\], \[6, 8, 1, 3\], got \[3, 2, 2, 6\]/,
    );
    assert.throws(
      () => af.losses({ ...ok, source: z(6).slice(0, 1) }),
      /flowgpu: af: source latents must be 2 latents/,
    );
    assert.throws(
      () => af.classifier!.logits(Tensor.from(new Float32Array(10), [2, 5]), 2),
      /flowgpu: af: word classifier input \[2, 5\] is not \[clips x 2 frames, 24\]/,
    );
  });
  const noWord = new AfFlow(new ParamStore(3), tinyGlow, {
    losses: { word: false } as AfLossSwitches,
  });
  assert.equal(noWord.classifier, undefined);
  noGrad(() => {
    assert.throws(
      () => noWord.losses(ok, { source: true, target: true, pair: true, word: true }),
      /flowgpu: af: L_y asked of a model built without the word loss/,
    );
  });
  clearTape();
});

// ---- the task ----

const TINY = [
  ...["--levels", "2", "--depth", "1", "--width", "8", "--rnn-hidden", "8", "--identities", "4"],
  ...["--vocab", "10", "--no-logos", "--batch", "4", "--init-batch", "8", "--warmup", "0"],
  ...["--eval-clips", "1", "--eval-frames", "8"],
];

function config(args: string[]): AnyConfig {
  const { values } = parseFlags(args, [trainerTable(afTask.trainer), afTask.flags], "cpu");
  return { ...values, model: "af" } as AnyConfig;
}

async function session(args: string[]): Promise<Session> {
  const cfg = config([...TINY, ...args]);
  const s = new Session(afTask, cfg, await afTask.build(cfg as never, "train"));
  s.model.init?.();
  clearTape();
  return s;
}

Deno.test("af task: Glow stage then AF stage; an AF step leaves the frozen Glow bit-identical and trains E and C; L_AF falls", async () => {
  const s = await session(["--glow-steps", "3", "--lr", "1e-3", "--af-lr-scale", "3"]);
  const m = new GpuMetrics();
  for (let i = 0; i < 3; i++) s.trainStep(m);
  const g = await m.read();
  assert.ok(
    Number.isFinite(g.get("bpd")!.mean) && g.get("bpd")!.mean > 0,
    `bpd ${g.get("bpd")?.mean}`,
  );
  assert.equal(g.get("l_af"), undefined, "no AF loss in the Glow stage");
  const groups = ["flow", "encoder", "classifier"].map((n) => s.model.store.group(n).values);
  const before = await Tensor.readAll(groups);
  s.trainStep(m);
  const after = await Tensor.readAll(groups);
  assert.deepEqual(
    new Uint32Array(after[0].buffer),
    new Uint32Array(before[0].buffer),
    "the frozen Glow changed in stage 2",
  );
  assert.ok(s.model.store.group("flow").frozen);
  for (const i of [1, 2]) {
    assert.ok(after[i].some((v, j) => v !== before[i][j]), `group ${i} did not train`);
  }
  // L_AF on one fixed clip (step 999's draw), before and after 12 steps.
  const fixed = async () => {
    const v = await noGrad(() => s.model.updates(999)[0].run().loss.item());
    clearTape();
    return v;
  };
  const l0 = await fixed();
  await m.read();
  for (let i = 0; i < 12; i++) s.trainStep(m);
  const r = await m.read();
  for (const k of ["l_s", "l_t", "l_p", "l_y", "l_af"]) {
    assert.ok(Number.isFinite(r.get(k)!.mean), `${k} ${r.get(k)?.mean}`);
  }
  const l1 = await fixed();
  assert.ok(Number.isFinite(l0) && l1 < 0.8 * l0, `L_AF on a fixed clip fell: ${l0} -> ${l1}`);
  // The quick evaluation: finite PSNRs of both factorisations, every AF loss, word accuracy.
  const e = await s.model.evaluate({ final: false });
  for (
    const k of ["test_bpd", "test_glow_self_psnr", "test_glow_cross_psnr", "test_af_self_psnr"]
  ) {
    assert.ok(Number.isFinite(e.metrics[k] as number), `${k} = ${e.metrics[k]}`);
  }
  for (const k of ["test_af_cross_psnr", "test_l_s", "test_l_t", "test_l_p", "test_l_y"]) {
    assert.ok(Number.isFinite(e.metrics[k] as number), `${k} = ${e.metrics[k]}`);
  }
  assert.ok([0, 1].includes(e.metrics.test_word_acc as number));
  assert.ok(
    (e.metrics.test_glow_self_psnr as number) > 10,
    `Glow self PSNR ${e.metrics.test_glow_self_psnr}`,
  );
  // The final one: the Table I protocol (tests/reenact_test.ts) on the AF factorisation.
  const fin = await s.model.evaluate({ final: true });
  assert.equal(fin.metrics.reenact_method, "af");
  for (const k of ["self_psnr", "cross_unseen_psnr", "test_l_p", "test_bpd"]) {
    assert.ok(Number.isFinite(fin.metrics[k] as number), `${k} = ${fin.metrics[k]}`);
  }
  assert.deepEqual([...fin.images!.reenact_unseen.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
  // --stage af takes this Glow (same shape) and refuses another shape or an unfinished Glow.
  const dir = Deno.makeTempDirSync();
  await s.save(join(dir, "checkpoint.safetensors"));
  const glow = await s.model.store.group("flow").values.read();
  const t = await session(["--stage", "af", "--glow-from", dir, "--no-loss-y"]);
  assert.deepEqual(
    await t.model.store.group("flow").values.read(),
    glow,
    "--glow-from copied the Glow",
  );
  assert.equal(t.optimizers.size, 1);
  assert.ok(t.model.store.group("flow").frozen);
  t.release();
  await assert.rejects(
    () => session(["--stage", "af", "--glow-from", dir, "--depth", "2"]),
    /flowgpu: checkpoint was trained with depth=1 but the model has depth=2/,
  );
  await assert.rejects(
    () => session(["--stage", "af"]),
    /flowgpu: af: --stage af needs --glow-from RUN/,
  );
  Deno.removeSync(dir, { recursive: true });
  const early = Deno.makeTempDirSync();
  const u = await session(["--glow-steps", "50"]);
  await u.save(join(early, "checkpoint.safetensors"));
  u.release();
  await assert.rejects(
    () => session(["--stage", "af", "--glow-from", early]),
    /its Glow stage stopped at step 0 of 50/,
  );
  Deno.removeSync(early, { recursive: true });
  m.release();
  s.release();
});

Deno.test("af task: AF-1 (--stage joint) trains the Glow, E and C together on L_f + L_AF", async () => {
  const s = await session(["--stage", "joint", "--no-loss-t", "--encoders", "2"]);
  assert.deepEqual([...s.optimizers.keys()], ["main"]);
  const groups = ["flow", "encoder", "classifier"].map((n) => s.model.store.group(n).values);
  const before = await Tensor.readAll(groups);
  const m = new GpuMetrics();
  s.trainStep(m);
  const r = await m.read();
  for (const k of ["bpd", "l_s", "l_p", "l_y", "l_af"]) {
    assert.ok(Number.isFinite(r.get(k)!.mean), k);
  }
  assert.equal(r.get("l_t"), undefined, "--no-loss-t");
  const after = await Tensor.readAll(groups);
  after.forEach((a, i) =>
    assert.ok(a.some((v, j) => v !== before[i][j]), `group ${i} did not train`)
  );
  assert.match((s.model as AfModel).describe(), /2 residual encoder\(s\), without L_t/);
  m.release();
  s.release();
});

Deno.test("af task: bad flags are refused by name", async () => {
  await assert.rejects(
    () => session(["--size", "48"]),
    /flowgpu: af: --size must be 32 or 64, got 48/,
  );
  await assert.rejects(
    () => session(["--encoders", "3"]),
    /flowgpu: af: --encoders must be 1 or 2, got 3/,
  );
  await assert.rejects(
    () => session(["--no-loss-s", "--no-loss-t", "--no-loss-p", "--no-loss-y"]),
    /flowgpu: af: every AF loss is switched off/,
  );
  assert.throws(
    () => config(["--stage", "three"]),
    /flowgpu: --stage three: expected one of two, glow, af, joint/,
  );
});

Deno.test("af oracle: an untrained residual E (= I) reenacts by copying the query frame, and its L_s is that of E = I", async () => {
  const s = await session([]);
  const r = await afOracle(s.model as AfModel, 1);
  assert.deepEqual(Object.keys(r).sort(), [
    "l_s_identity",
    "l_s_learned",
    "l_s_zero",
    "psnr_copy_query",
    "psnr_glow_split",
    "psnr_learned",
    "psnr_oracle_centroid",
    "psnr_oracle_query_frame",
  ]);
  for (const [k, v] of Object.entries(r)) assert.ok(Number.isFinite(v), `${k} = ${v}`);
  assert.equal(r.psnr_learned, r.psnr_copy_query);
  assert.equal(r.l_s_learned, r.l_s_identity);
  assert.ok(r.l_s_zero > 0 && r.l_s_identity > 0);
  const glowOnly = await afOracle(s.model as AfModel, 1, false);
  assert.equal(glowOnly.psnr_learned, undefined);
  assert.equal(glowOnly.psnr_oracle_centroid, r.psnr_oracle_centroid);
  s.release();
});

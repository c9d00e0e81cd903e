// The plain VAE's leakage (vae_task.ts): the classic MIG's pick per factor on a hand-made
// information matrix (ties to the lower dim, a one-dim code's gap is its information); a code
// without one dim; the probe from the code without the picked dim on codes whose answer is known
// (a factor held by one dim leaks nothing once it is dropped, one held by two dims still leaks);
// and the task's probe codes from a tiny untrained VAE on Shapes2.5D under the keys eval.json has.
import assert from "node:assert/strict";
import "./setup.ts";
import { parseTrain } from "../src/train/cli.ts";
import { migPicks, vaeLeakage, type VaeModel, withoutDim } from "../src/train/vae_task.ts";
import { Rng } from "../src/util/rng.ts";

Deno.test("vae leakage: migPicks takes each factor's most informative dim and the gap to the next", () => {
  const info = [
    ...[0.1, 0.8, 0.3], // factor 0: dim 1, gap 0.8 − 0.3
    ...[0.5, 0.2, 0.5], // factor 1: a tie goes to the lower dim, gap 0
    ...[0.0, 0.1, 0.7], // factor 2: dim 2, gap 0.7 − 0.1
  ];
  const p = migPicks(info, 3, 3);
  assert.deepEqual(p.map((x) => x.dim), [1, 0, 2]);
  assert.deepEqual(p.map((x) => x.info), [0.8, 0.5, 0.7]);
  const gaps = p.map((x) => x.gap);
  [0.5, 0, 0.6].forEach((g, k) => assert.ok(Math.abs(gaps[k] - g) < 1e-12, `gap ${k}: ${gaps}`));
  // One code dim: nothing to compete with, the gap is the information itself.
  assert.deepEqual(migPicks([0.4, 0.9], 2, 1), [
    { dim: 0, info: 0.4, gap: 0.4 },
    { dim: 0, info: 0.9, gap: 0.9 },
  ]);
  assert.throws(() => migPicks([1, 2, 3], 2, 2), /flowgpu: migPicks: 3 values are not 2 x 2/);
});

Deno.test("vae leakage: withoutDim drops one column of every row", () => {
  const codes = [1, 2, 3, 4, 5, 6];
  assert.deepEqual([...withoutDim(codes, 3, 1)], [1, 3, 4, 6]);
  assert.deepEqual([...withoutDim(codes, 3, 0)], [2, 3, 5, 6]);
  assert.deepEqual([...withoutDim(codes, 3, 2)], [1, 2, 4, 5]);
  assert.deepEqual([...withoutDim(codes, 2, 1)], [1, 3, 5]);
  assert.throws(() => withoutDim(codes, 3, 3), /flowgpu: withoutDim: dim 3 of 6 values/);
  assert.throws(() => withoutDim(codes, 4, 0), /flowgpu: withoutDim/);
});

/** Codes [n, 3] of two independent factors: a (4 classes) in dim 0 only, b (3) in dims 1 and 2. */
function codesOf(n: number, seed: number) {
  const rng = new Rng(seed);
  const codes = new Float32Array(n * 3), labels = new Int32Array(n * 2);
  for (let i = 0; i < n; i++) {
    const a = rng.int(4), b = rng.int(3);
    labels.set([a, b], i * 2);
    codes.set([a + 0.05 * rng.normal(), b + 0.05 * rng.normal(), -b + 0.05 * rng.normal()], i * 3);
  }
  return { codes, labels };
}

Deno.test("vae leakage: a factor held by its one dim leaks nothing once that dim is dropped; one held by two still leaks", () => {
  const train = codesOf(400, 1), test = codesOf(300, 2);
  const factors = [{ name: "a", size: 4 }, { name: "b", size: 3 }];
  // The dims the MIG would pick: a's dim 0, b's dim 1 (dim 2 holds b too).
  const r = vaeLeakage(train, test, 3, factors, [0, 1]);
  const majority = (k: number) => {
    const count = new Map<number, number>();
    for (let i = 0; i < 300; i++) {
      const y = test.labels[i * 2 + k];
      count.set(y, (count.get(y) ?? 0) + 1);
    }
    return Math.max(...count.values()) / 300;
  };
  assert.equal(r.leak_a_chance, majority(0));
  assert.equal(r.leak_b_chance, majority(1));
  // a: the whole code reads it, the rest (b's two dims) does not.
  assert.ok(r.probe_all_a > 0.95, `probe_all_a ${r.probe_all_a}`);
  assert.ok(
    Math.abs(r.leak_a - r.leak_a_chance) < 0.08,
    `leak_a ${r.leak_a} vs ${r.leak_a_chance}`,
  );
  assert.ok(Math.abs(r.leak_a_norm) < 0.1, `leak_a_norm ${r.leak_a_norm}`);
  // b: dropping dim 1 leaves its copy in dim 2.
  assert.ok(r.leak_b > 0.95 && r.probe_all_b > 0.95, `leak_b ${r.leak_b}, all ${r.probe_all_b}`);
  assert.ok(r.leak_b_norm > 0.9, `leak_b_norm ${r.leak_b_norm}`);
  const norm = (r.leak_b - r.leak_b_chance) / (1 - r.leak_b_chance);
  assert.ok(Math.abs(r.leak_b_norm - norm) < 1e-12);
  assert.equal(r.leak_probe_n, 400);
  // Dropping the wrong dim for a (dim 1) leaves a in dim 0: the probe reads it.
  assert.ok(vaeLeakage(train, test, 3, factors, [1, 1]).leak_a > 0.95);
  // A one-dim code has no rest: only the ceiling.
  const one = (s: { codes: Float32Array; labels: Int32Array }) => ({
    codes: s.codes.filter((_, i) => i % 3 === 0),
    labels: s.labels,
  });
  const r1 = vaeLeakage(one(train), one(test), 1, factors, [0, 0]);
  assert.deepEqual(Object.keys(r1).sort(), [
    "leak_probe_n",
    "probe_all_a",
    "probe_all_a_norm",
    "probe_all_b",
    "probe_all_b_norm",
  ]);
  assert.ok(r1.probe_all_a > 0.95 && r1.probe_all_b < 0.5);
  assert.throws(() => vaeLeakage(train, test, 3, factors, [0]), /flowgpu: vaeLeakage: 1 dims/);
});

Deno.test("vae leakage: the task fits its probes on training codes and writes leak_/probe_all_ keys per factor", async () => {
  const { task, cfg } = parseTrain([
    ...["--model", "vae", "--size", "16", "--width", "4", "--latents", "4"],
    ...["--train-limit", "300", "--eval-limit", "60", "--probe-limit", "200"],
  ]);
  const m = await task.build(cfg, "evaluate") as VaeModel;
  try {
    const e = await m.encodeEval();
    const t = await m.encodeSplit(m.data.train, Uint32Array.of(0, 1), false);
    assert.equal(t.mu.length, 8);
    assert.ok(Number.isNaN(t.mse.mse01), "no MSE asked for");
    const r = await m.leakage(e, [0, 1, 2, 3, 0, 1]);
    assert.equal(r.leak_probe_n, 200);
    assert.equal(r.leak_probe_split, "train");
    for (const f of m.data.factors.map((x) => x.name)) {
      for (const k of [`leak_${f}`, `leak_${f}_chance`, `probe_all_${f}`]) {
        const v = r[k] as number;
        assert.ok(typeof v === "number" && v >= 0 && v <= 1, `${k} = ${v}`);
      }
      // Both probes score the same test labels: one chance level.
      const [all, chance] = [r[`probe_all_${f}`] as number, r[`leak_${f}_chance`] as number];
      const norm = r[`probe_all_${f}_norm`] as number;
      assert.ok(Math.abs(norm - (all - chance) / (1 - chance)) < 1e-12, `${f}: ${norm}`);
    }
  } finally {
    m.release();
    m.store.release();
  }
});

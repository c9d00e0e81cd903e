import assert from "node:assert/strict";
import "./setup.ts";
import {
  chcBatch,
  chcPairs,
  type ChcParams,
  chcParams,
  chcSplit,
  generateChc,
  loadChc,
} from "../src/data/chc.ts";
import {
  characteristicLength,
  ChcBatch,
  type ChcPhysics,
  freeEnergy,
  initialCondition,
  noiseAt,
  referenceSteps,
  trajectorySeed,
} from "../src/data/chc_sim.ts";
import { Rng } from "../src/util/rng.ts";

const PHYS: ChcPhysics = { size: 64, gamma: 1.5, sigma: 2, dt: 0.01 };
const PLANE = 64 * 64;

/** A batch of trajectories from ICs with the given means (A = 0.25), seeds (ic, run 0). */
function batchOf(means: number[], phys = PHYS): { sim: ChcBatch; u0: Float32Array } {
  const u0 = new Float32Array(means.length * PLANE);
  const seeds = new Uint32Array(2 * means.length);
  means.forEach((m, i) => {
    const ic = initialCondition(5, i, phys.size, 0.25, 0).u.map((v) => v + m);
    u0.set(ic, i * PLANE);
    seeds.set(trajectorySeed(5, i, 0), 2 * i);
  });
  return { sim: new ChcBatch(phys, u0, seeds), u0 };
}

const mean = (a: ArrayLike<number>, from = 0, n = a.length) => {
  let s = 0;
  for (let i = from; i < from + n; i++) s += a[i];
  return s / n;
};

Deno.test("chc: GPU steps match the float64 reference with the same noise", async () => {
  for (const sigma of [0, 2]) {
    const phys = { ...PHYS, sigma };
    const { sim, u0 } = batchOf([0, 0.3], phys);
    sim.advance(25);
    const got = await sim.read();
    sim.release();
    for (let t = 0; t < 2; t++) {
      const ref = Float64Array.from(u0.subarray(t * PLANE, (t + 1) * PLANE));
      referenceSteps(ref, phys, trajectorySeed(5, t, 0), 25);
      let err = 0, moved = 0;
      for (let i = 0; i < PLANE; i++) {
        err = Math.max(err, Math.abs(got[t * PLANE + i] - ref[i]));
        moved = Math.max(moved, Math.abs(ref[i] - u0[t * PLANE + i]));
      }
      assert.ok(err < 2e-6, `sigma ${sigma} trajectory ${t}: max |gpu - f64| = ${err}`);
      assert.ok(moved > 0.05, `the fields moved (${moved})`);
    }
  }
});

Deno.test("chc: noise has mean 0, variance 1/3, and differs between sites and steps", () => {
  const seed = trajectorySeed(1, 0, 0);
  const n = 64 * 64, steps = 8;
  const z = new Float64Array(n * steps);
  for (let s = 0; s < steps; s++) {
    for (let i = 0; i < n; i++) z[s * n + i] = noiseAt(seed, s + 1, i);
  }
  const m = mean(z);
  const v = mean(z.map((x) => (x - m) ** 2));
  assert.ok(Math.abs(m) < 0.01, `mean ${m}`);
  assert.ok(Math.abs(v - 1 / 3) < 0.006, `variance ${v}`);
  assert.ok(z.every((x) => x > -1 && x < 1));
  // Correlation of neighbouring sites (in and across vec4 lanes), consecutive steps, other seeds.
  const corr = (f: (s: number, i: number) => number) => {
    let c = 0;
    for (let s = 0; s < steps - 1; s++) for (let i = 0; i < n - 4; i++) c += z[s * n + i] * f(s, i);
    return (c / ((steps - 1) * (n - 4))) / (1 / 3);
  };
  const other = trajectorySeed(1, 0, 1);
  for (
    const [name, f] of [
      ["site+1", (s: number, i: number) => z[s * n + i + 1]],
      ["site+4", (s: number, i: number) => z[s * n + i + 4]],
      ["step+1", (s: number, i: number) => z[(s + 1) * n + i]],
      ["run+1", (s: number, i: number) => noiseAt(other, s + 1, i)],
    ] as const
  ) {
    const c = corr(f);
    assert.ok(Math.abs(c) < 0.02, `correlation with ${name}: ${c}`);
  }
});

Deno.test("chc: without noise mass is conserved and the free energy decreases", async () => {
  const phys = { ...PHYS, sigma: 0 };
  const means = [0, 0.3, -0.2];
  const { sim, u0 } = batchOf(means, phys);
  const energies: number[][] = means.map((_, t) => [
    freeEnergy(u0.subarray(t * PLANE, (t + 1) * PLANE), 64, phys.gamma),
  ]);
  for (let k = 0; k < 20; k++) {
    sim.advance(200);
    const u = await sim.read();
    means.forEach((_, t) => {
      const drift = Math.abs(mean(u, t * PLANE, PLANE) - mean(u0, t * PLANE, PLANE));
      assert.ok(drift < 1e-4, `trajectory ${t}, step ${sim.step}: mean drifted ${drift}`);
      const f = freeEnergy(u.subarray(t * PLANE, (t + 1) * PLANE), 64, phys.gamma);
      const prev = energies[t].at(-1)!;
      assert.ok(f < prev, `trajectory ${t}, step ${sim.step}: F rose ${prev} -> ${f}`);
      energies[t].push(f);
    });
  }
  sim.release();
  for (const e of energies) {
    // Phase separation: from a near-uniform mixture (F ≈ ¼ per site) to domains.
    // Past the first smoothing (F drops ~20% in 200 steps), spinodal decomposition and
    // coarsening lower it by another ~20% over 4000 steps.
    assert.ok(e.at(-1)! < 0.9 * e[1], `F ${e.map((x) => x.toFixed(1)).join(" ")}`);
  }
});

Deno.test("chc: with noise at ū = 0 the characteristic length grows with k", async () => {
  const T = 4;
  const { sim, u0 } = batchOf(new Array(T).fill(0));
  const lengths: number[] = [];
  let lo = Infinity, hi = -Infinity;
  const drift = new Array(T).fill(0);
  for (let k = 1; k <= 9; k++) {
    sim.advance(1000);
    const u = await sim.read();
    let sum = 0;
    for (let t = 0; t < T; t++) {
      const field = u.subarray(t * PLANE, (t + 1) * PLANE);
      sum += characteristicLength(field, 64);
      drift[t] = mean(field) - mean(u0, t * PLANE, PLANE);
    }
    for (const v of u) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
    lengths.push(sum / T);
  }
  sim.release();
  const shown = lengths.map((l) => l.toFixed(2)).join(" ");
  for (let k = 1; k < 9; k++) assert.ok(lengths[k] > lengths[k - 1], `lengths ${shown}`);
  // glow-funs.md §3.1: ≈ 10.8 px at k = 1, ≈ 15.6 at k = 9 (its own simulation, other seeds).
  assert.ok(Math.abs(lengths[0] - 10.8) < 1.0, `k=1: ${shown}`);
  assert.ok(Math.abs(lengths[8] - 15.6) < 1.5, `k=9: ${shown}`);
  assert.ok(lo > -1.2 && hi < 1.2, `u in [${lo}, ${hi}]`);
  // The noise's sum over the grid is a random walk: after n steps the mean has drifted by
  // Δt·σ·√(n/(3·4096)), 0.017 at n = 9000 (the spec's "≤ 0.02" is about one standard deviation).
  const rms = Math.sqrt(mean(drift.map((d) => d * d)));
  assert.ok(rms < 0.04 && drift.every((d) => Math.abs(d) < 0.07), `mean drift ${drift}`);
});

const TINY: ChcParams = {
  size: 16,
  gamma: 1.5,
  sigma: 2,
  dt: 0.01,
  steps: 200,
  snapshotEvery: 100,
  amplitude: 0.25,
  meanMax: 0.4,
  ics: 3,
  runs: 3,
  seed: 9,
};

Deno.test("chc: same seed, same bytes, whatever the batch; other runs and seeds differ", async () => {
  const a = await generateChc(TINY, { batch: 9 });
  const b = await generateChc(TINY, { batch: 2 });
  const c = await generateChc(TINY, { batch: 1 });
  assert.deepEqual(b.targets, a.targets);
  assert.deepEqual(c.targets, a.targets);
  assert.deepEqual(b.conditions, a.conditions);
  const K = 2, plane = 16 * 16;
  const traj = (t: number) => a.targets.subarray(t * K * plane, (t + 1) * K * plane);
  let same = 0;
  for (let i = 0; i < K * plane; i++) same += traj(0)[i] === traj(1)[i] ? 1 : 0;
  assert.ok(same < 0.2 * K * plane, `runs 0 and 1 of IC 0 share ${same} pixels`);
  const d = await generateChc({ ...TINY, seed: 10 });
  assert.notDeepEqual(d.conditions, a.conditions);
  assert.notDeepEqual(d.targets, a.targets);
});

Deno.test("chc: cache reloads, regenerates on a new parameter, refuses damage", async () => {
  const dir = await Deno.makeTempDir({ prefix: "chc_cache_" });
  const logs: string[] = [];
  const opts = { ...TINY, dir, log: (l: string) => logs.push(l) };
  try {
    const first = await loadChc(opts);
    assert.equal(first.generated, true);
    const again = await loadChc(opts);
    assert.equal(again.generated, false);
    assert.deepEqual(again.targets, first.targets);
    assert.deepEqual(again.means, first.means);

    const more = await loadChc({ ...opts, runs: 4 });
    assert.equal(more.generated, true);
    assert.match(logs.at(-1)!, /runs: cached 3, requested 4/);
    assert.equal(more.targets.length, 3 * 4 * 2 * 256);
    assert.equal((await loadChc({ ...opts, runs: 4 })).generated, false);

    const targets = `${dir}/targets.u8`;
    const bytes = Deno.readFileSync(targets);
    bytes[1234] ^= 1;
    Deno.writeFileSync(targets, bytes);
    await assert.rejects(
      loadChc({ ...opts, runs: 4 }),
      /chc cache .*targets\.u8: checksum mismatch \(corrupt\?\); delete the folder to regenerate/,
    );
    Deno.writeFileSync(`${dir}/conditions.u8`, Deno.readFileSync(`${dir}/conditions.u8`).slice(1));
    await assert.rejects(
      loadChc({ ...opts, runs: 4 }),
      /conditions\.u8: 767 bytes, the manifest says 768 \(truncated\?\)/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("chc: split by IC and (c, x) batches", () => {
  const full = chcSplit(999);
  assert.deepEqual([full.train.length, full.val.length, full.test.length], [800, 100, 99]);
  assert.deepEqual(full.val[0], 800);
  const small = chcSplit(40);
  assert.deepEqual([small.train.length, small.val.length, small.test.length], [32, 4, 4]);
  assert.equal(chcParams({ preset: "full" }).ics, 999);

  const plane = 16 * 16, K = 2;
  const conditions = Uint8Array.from({ length: 3 * plane }, (_, i) => i % 256);
  const targets = Uint8Array.from({ length: 3 * 2 * K * plane }, (_, i) => (i * 7) % 256);
  const set = {
    params: TINY,
    dir: "",
    ics: 3,
    runs: 2,
    snapshots: K,
    size: 16,
    conditions,
    targets,
    means: [0, 0, 0],
    split: chcSplit(3),
    generated: false,
    speed: { siteUpdatesPerSec: 0, seconds: 0 },
  };
  const pairs = chcPairs(set, [2]);
  assert.deepEqual(Array.from(pairs), [8, 9, 10, 11]);
  const { c, x, k, ic } = chcBatch(set, [pairs[3]], new Rng(3));
  assert.deepEqual([k[0], ic[0]], [2, 2]);
  for (let i = 0; i < plane; i++) {
    assert.equal(c[i], (2 * conditions[2 * plane + i] + 1) / 256 - 1);
    const pix = targets[11 * plane + i];
    assert.ok(x[i] >= (2 * pix) / 256 - 1 && x[i] < (2 * (pix + 1)) / 256 - 1);
  }
});

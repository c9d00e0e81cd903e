// The shared disentangler evaluation (src/eval/swap.ts) on synthetic codes and images whose
// answers are known: a code holding the label leaks it (probe accuracy ~1), noise does not
// (~chance); a perfect swap scores 1, a generator that ignores the swapped code scores 0 and
// keeps the other factors; the multi-encoder MIG is ~1 for the right encoder and ~-1 for the
// wrong one; the grid has the promised layout; a FactorNet learns a synthetic labelled set and
// is read back from its cache unchanged.
import assert from "node:assert/strict";
import "./setup.ts";
import { decode, Image } from "imagescript";
import {
  disentanglerMig,
  type FactorClassifier,
  factorClassifier,
  factorNetCachePath,
  gridSources,
  leakageProbe,
  leakageSplit,
  realAccuracy,
  swapAccuracy,
  type SwapData,
  swapGrid,
  swapMetrics,
  swapPairs,
} from "../src/eval/swap.ts";
import type { Factor } from "../src/data/labelled.ts";
import { Rng } from "../src/util/rng.ts";

/** n labels of `m` classes and codes [n, dim]: the label's one-hot (times `signal`) plus noise. */
function codes(n: number, m: number, dim: number, signal: number, seed: number) {
  const rng = new Rng(seed);
  const labels = Int32Array.from({ length: n }, () => rng.int(m));
  const c = new Float64Array(n * dim);
  for (let i = 0; i < n; i++) {
    for (let d = 0; d < dim; d++) c[i * dim + d] = 0.05 * rng.normal();
    if (signal) c[i * dim + labels[i]] += signal;
  }
  return { labels, codes: c };
}

Deno.test("swap: leakage probe ~1 when the code holds the label, ~chance on noise", () => {
  const full = codes(600, 5, 8, 1, 1);
  const leak = leakageSplit(full.codes, full.labels, 8);
  assert.ok(leak.accuracy > 0.98, `label in the code: accuracy ${leak.accuracy}`);
  assert.ok(leak.normalized > 0.97, `normalized ${leak.normalized}`);
  assert.equal(leak.trainCount + leak.testCount, 600);
  const noise = codes(600, 5, 8, 0, 2);
  const none = leakageSplit(noise.codes, noise.labels, 8);
  assert.ok(Math.abs(none.accuracy - 0.2) < 0.08, `noise: accuracy ${none.accuracy}, chance 0.2`);
  assert.ok(Math.abs(none.normalized) < 0.1, `noise: normalized ${none.normalized}`);
  // Explicit held-out sets: the same probe, and a label that is only in the train codes fails.
  const test = codes(300, 5, 8, 1, 3);
  const r = leakageProbe(full, test, 8);
  assert.ok(r.accuracy > 0.98 && r.testCount === 300, `held out: ${r.accuracy}`);
  assert.throws(() => leakageSplit(full.codes, full.labels, 7), /code values for 600 labels/);
});

/** A classifier of images whose pixel k holds factor k's value (two factors of 4 values). */
const FACTORS: Factor[] = [{ name: "f0", size: 4 }, { name: "f1", size: 4 }];
const D = 4; // 1 x 2 x 2 images
const reader: FactorClassifier = {
  factors: FACTORS,
  testAccuracy: [1, 1],
  description: "pixel reader",
  predict(x, n) {
    return Promise.resolve(Int32Array.from({ length: 2 * n }, (_, i) => {
      const b = Math.floor(i / 2), k = i % 2;
      return Math.max(0, Math.min(3, Math.round(x[b * D + k])));
    }));
  },
  release() {},
};

Deno.test("swap: accuracy 1 for a perfect swap, 0 (ignored 1) when the code is ignored", async () => {
  const rng = new Rng(5);
  const n = 50;
  const labels = Int32Array.from({ length: 2 * n }, () => rng.int(4));
  // Perfect: factor 0 from a, factor 1 from b.
  const perfect = (a: Uint32Array, b: Uint32Array) =>
    Promise.resolve(Float32Array.from({ length: a.length * D }, (_, i) => {
      const k = Math.floor(i / D), p = i % D;
      return p === 0 ? labels[a[k] * 2] : p === 1 ? labels[b[k] * 2 + 1] : 0;
    }));
  const r = await swapAccuracy({
    classifier: reader,
    factor: 0,
    labels,
    render: perfect,
    pairs: 300,
  });
  assert.equal(r.accuracy, 1);
  assert.equal(r.ignored, 0, "pairs differ on the swapped factor, so B's label is never read");
  assert.equal(r.kept, 1);
  assert.ok(Number.isNaN(r.keptPerFactor[0]) && r.keptPerFactor[1] === 1);
  // Ignores the swap: renders B as it is.
  const ignore = (_a: Uint32Array, b: Uint32Array) =>
    Promise.resolve(Float32Array.from({ length: b.length * D }, (_, i) => {
      const k = Math.floor(i / D), p = i % D;
      return p < 2 ? labels[b[k] * 2 + p] : 0;
    }));
  const r0 = await swapAccuracy({
    classifier: reader,
    factor: 0,
    labels,
    render: ignore,
    pairs: 300,
    chunk: 64,
  });
  assert.equal(r0.accuracy, 0);
  assert.equal(r0.ignored, 1);
  assert.equal(r0.kept, 1);
  // A constant class: scores its share among A's labels, which is what `chance` reports at most.
  const constant = (a: Uint32Array) => Promise.resolve(new Float32Array(a.length * D));
  const rc = await swapAccuracy({
    classifier: reader,
    factor: 1,
    labels,
    render: constant,
    pairs: 400,
  });
  assert.ok(
    rc.accuracy <= rc.chance + 1e-12 && rc.accuracy > 0.1,
    `${rc.accuracy} vs ${rc.chance}`,
  );
  const m = swapMetrics({ f0: r, f1: rc });
  assert.equal(m.swap_acc, (r.accuracy + rc.accuracy) / 2);
  assert.equal(m.swap_acc_f0, 1);
  assert.equal(m.swap_ignored_f0, 0);
  assert.equal(m.swap_pairs, 300);
  // Pairs always differ on the factor; one label for all is refused.
  const p = swapPairs([0, 1, 1, 2], 50, 3);
  for (let k = 0; k < 50; k++) assert.notEqual([0, 1, 1, 2][p.a[k]], [0, 1, 1, 2][p.b[k]]);
  assert.throws(() => swapPairs([3, 3, 3], 5), /no pair with different values/);
});

Deno.test("swap: multi-encoder MIG ~1 with the label in its own code, ~-1 in the unknown one", async () => {
  const n = 1000, rng = new Rng(9);
  const labels = Int32Array.from({ length: n }, () => rng.int(10));
  const exact = Float32Array.from(labels);
  const noise = Float32Array.from({ length: n * 2 }, () => rng.normal());
  const factors = [{ name: "digit", size: 10 }];
  const good = await disentanglerMig({
    unknown: { mu: noise, dim: 2, noise: 0.05 },
    labelled: [{ factor: "digit", code: { mu: exact, dim: 1, noise: 0.02 } }],
    factors,
    labels,
    samples: 2000,
  });
  assert.ok((good.mig_lab as number) > 0.9, `good: ${good.mig_lab}`);
  assert.equal(good.mig_lab, good.mig_all);
  assert.equal(good.mig_digit_rival_enc, "unknown");
  const bad = await disentanglerMig({
    unknown: { mu: exact, dim: 1, noise: 0.05 },
    labelled: [{ factor: "digit", code: { mu: noise, dim: 2, noise: 0.02 } }],
    factors,
    labels,
    samples: 2000,
  });
  assert.ok((bad.mig_lab as number) < -0.85, `bad: ${bad.mig_lab}`);
  // A factor without a labelled code counts in mig_all only, its own encoder the unknown code.
  const two = Int32Array.from(
    { length: 2 * n },
    (_, i) => (i % 2 ? labels[i >> 1] % 2 : labels[i >> 1]),
  );
  const parity = Float32Array.from({ length: n }, (_, i) => labels[i] % 2);
  const r = await disentanglerMig({
    unknown: { mu: parity, dim: 1, noise: 0.05 },
    labelled: [{ factor: "digit", code: { mu: exact, dim: 1, noise: 0.02 } }],
    factors: [...factors, { name: "parity", size: 2 }],
    labels: two,
    samples: 2000,
  });
  assert.equal(r.mig_lab, r.mig_digit);
  assert.ok(
    Math.abs((r.mig_all as number) - ((r.mig_digit as number) + (r.mig_parity as number)) / 2) <
      1e-12,
  );
  assert.ok((r.mig_parity_own as number) > 0.9, `parity in the unknown code: ${r.mig_parity_own}`);
  await assert.rejects(
    () =>
      disentanglerMig({
        unknown: { mu: noise, dim: 2, noise: 1 },
        labelled: [{ factor: "x", code: { mu: exact, dim: 1, noise: 1 } }],
        factors,
        labels,
      }),
    /labelled factor x is not one of digit/,
  );
});

Deno.test("swap: grid layout (corner blank, first row/column the sources, cells render(col, row))", async () => {
  const S = 4, d = S * S;
  // Image of position p: every pixel (p - 5) / 10. A cell: left half = column source, right half = row source.
  const img = (p: number) => (p - 5) / 10;
  const images = (pos: Uint32Array) =>
    Float32Array.from({ length: pos.length * d }, (_, i) => img(pos[Math.floor(i / d)]));
  const render = (a: Uint32Array, b: Uint32Array) =>
    Promise.resolve(Float32Array.from({ length: a.length * d }, (_, i) => {
      const k = Math.floor(i / d), x = i % S;
      return x < S / 2 ? img(a[k]) : img(b[k]);
    }));
  const rows = Uint32Array.of(1, 2), cols = Uint32Array.of(7, 8, 9);
  const png = await swapGrid({ render, images, rows, cols, channels: 1, size: S });
  const im = await decode(png);
  assert.ok(im instanceof Image);
  const pad = 2;
  assert.equal(im.width, 4 * S + 5 * pad);
  assert.equal(im.height, 3 * S + 4 * pad);
  const at = (r: number, c: number, x: number) =>
    im.bitmap[4 * ((pad + r * (S + pad)) * im.width + pad + c * (S + pad) + x)];
  const grey = (v: number) => Math.round(((v + 1) / 2) * 255);
  assert.equal(at(0, 0, 0), grey(0), "blank corner is mid-grey");
  assert.equal(at(0, 2, 0), grey(img(8)), "first row: column sources");
  assert.equal(at(2, 0, 0), grey(img(2)), "first column: row sources");
  assert.equal(at(2, 3, 0), grey(img(9)), "cell (row 2, col 9): swapped code from the column");
  assert.equal(at(2, 3, S - 1), grey(img(2)), "... and the kept code from the row");
  const src = gridSources([0, 0, 1, 1, 2, 2, 3], 3);
  assert.equal(new Set(Array.from(src, (i) => [0, 0, 1, 1, 2, 2, 3][i])).size, 3);
});

Deno.test("swap: FactorNet learns a synthetic labelled set and its cache gives the same predictions", async () => {
  // 8 x 8 images: factor "quad" = the bright quadrant (4 values), factor "level" = its brightness (3).
  const factors: Factor[] = [{ name: "quad", size: 4 }, { name: "level", size: 3 }];
  const make = (count: number, seed: number) => ({
    count,
    batch(pos: ArrayLike<number>) {
      const n = pos.length, x = new Float32Array(n * 64).fill(-1), labels = new Int32Array(n * 2);
      for (let b = 0; b < n; b++) {
        const rng = new Rng(seed * 100003 + pos[b]);
        const q = rng.int(4), l = rng.int(3);
        labels.set([q, l], b * 2);
        for (let y = 0; y < 4; y++) {
          for (let c = 0; c < 4; c++) {
            x[b * 64 + (y + 4 * (q >> 1)) * 8 + c + 4 * (q & 1)] = -0.5 + 0.7 * l +
              0.1 * rng.normal();
          }
        }
      }
      return { x, labels };
    },
  });
  const data: SwapData = {
    name: "synthetic",
    channels: 1,
    size: 8,
    factors,
    train: make(2000, 1),
    test: make(300, 2),
  };
  const dir = await Deno.makeTempDir();
  try {
    const lines: string[] = [];
    const opts = { dir, steps: 300, batch: 32, testLimit: 300, log: (l: string) => lines.push(l) };
    const c = await factorClassifier(data, opts);
    assert.ok(c.testAccuracy.every((a) => a > 0.95), `accuracy ${c.testAccuracy}`);
    assert.ok(lines.some((l) => /training the synthetic evaluation classifier/.test(l)));
    const { x } = data.test.batch([0, 1, 2, 3, 4, 5, 6, 7]);
    const p1 = await c.predict(x, 8);
    c.release();
    const path = factorNetCachePath(data, opts);
    assert.ok(Deno.statSync(path).isFile);
    const lines2: string[] = [];
    const c2 = await factorClassifier(data, { ...opts, log: (l: string) => lines2.push(l) });
    assert.equal(lines2.length, 0, "read from the cache, not retrained");
    assert.deepEqual(await c2.predict(x, 8), p1);
    assert.deepEqual(c2.testAccuracy, c.testAccuracy);
    const acc = await realAccuracy(c2, data, 300);
    assert.deepEqual(acc, c.testAccuracy);
    await assert.rejects(() => c2.predict(x, 7), /are not 7 images 1x8x8/);
    c2.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

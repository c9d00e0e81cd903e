import assert from "node:assert/strict";
import "./setup.ts";
import { loadChc } from "../src/data/chc.ts";
import { loadMnist } from "../src/data/mnist.ts";
import {
  chcErrors,
  chcFeatures,
  ChcRegressor,
  fitChcRegressor,
  l2Error,
} from "../src/eval/chc_regressor.ts";
import { digitCachePath, digitClassifier, digitInputs } from "../src/eval/digits.ts";
import {
  accuracy,
  diversity,
  frechetDistance,
  frechetFromStats,
  meanCov,
  symmetricEigen,
} from "../src/eval/metrics.ts";
import { encodeSafetensors } from "../src/train/safetensors.ts";
import { Rng } from "../src/util/rng.ts";

const close = (a: number, b: number, tol: number, what = "") =>
  assert.ok(Math.abs(a - b) <= tol, `${what} ${a} vs ${b} (tol ${tol})`);

/** A random orthogonal n x n matrix (Gram-Schmidt of a Gaussian matrix). */
function orthogonal(n: number, rng: Rng): Float64Array {
  const q = Float64Array.from(rng.normalArray(n * n));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) {
      let d = 0;
      for (let k = 0; k < n; k++) d += q[i * n + k] * q[j * n + k];
      for (let k = 0; k < n; k++) q[i * n + k] -= d * q[j * n + k];
    }
    let s = 0;
    for (let k = 0; k < n; k++) s += q[i * n + k] ** 2;
    for (let k = 0; k < n; k++) q[i * n + k] /= Math.sqrt(s);
  }
  return q;
}

/** Q diag(d) Qᵀ. */
function rotated(q: Float64Array, d: number[]): Float64Array {
  const n = d.length, out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += q[i * n + k] * d[k] * q[j * n + k];
      out[i * n + j] = s;
    }
  }
  return out;
}

Deno.test("symmetricEigen: V diag(λ) Vᵀ rebuilds a 64x64 symmetric matrix, V orthonormal", () => {
  const rng = new Rng(3), n = 64;
  const a = Float64Array.from(rng.normalArray(n * n));
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) a[i * n + j] = a[j * n + i];
  const { values, vectors: v } = symmetricEigen(a, n);
  let err = 0, orth = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0, o = 0;
      for (let k = 0; k < n; k++) {
        s += v[i * n + k] * values[k] * v[j * n + k];
        o += v[k * n + i] * v[k * n + j];
      }
      err = Math.max(err, Math.abs(s - a[i * n + j]));
      orth = Math.max(orth, Math.abs(o - (i === j ? 1 : 0)));
    }
  }
  assert.ok(err < 1e-10, `reconstruction error ${err}`);
  assert.ok(orth < 1e-12, `orthogonality error ${orth}`);
});

Deno.test("frechet: diagonal Gaussians match Σ(√a − √b)² + ‖Δm‖², also rotated in 64-d", () => {
  const rng = new Rng(5), n = 64;
  const da = Array.from({ length: n }, () => 0.1 + 2 * rng.next());
  const db = Array.from({ length: n }, () => 0.1 + 2 * rng.next());
  const ma = Float64Array.from(rng.normalArray(n)), mb = Float64Array.from(rng.normalArray(n));
  let want = 0;
  for (let i = 0; i < n; i++) {
    want += (ma[i] - mb[i]) ** 2 + (Math.sqrt(da[i]) - Math.sqrt(db[i])) ** 2;
  }
  const diag = (d: number[]) => {
    const c = new Float64Array(n * n);
    d.forEach((v, i) => (c[i * n + i] = v));
    return c;
  };
  const got = frechetFromStats({ mean: ma, cov: diag(da) }, { mean: mb, cov: diag(db) });
  close(got, want, 1e-9 * want, "diagonal");
  // A common rotation of both covariances leaves the distance unchanged, but the matrices are now
  // full: this exercises the matrix square root, not just the diagonal.
  const q = orthogonal(n, rng);
  const rot = frechetFromStats({ mean: ma, cov: rotated(q, da) }, {
    mean: mb,
    cov: rotated(q, db),
  });
  close(rot, want, 1e-8 * want, "rotated");
});

Deno.test("frechet: non-commuting 2x2 covariances against Tr√M = √(tr M + 2√det M)", () => {
  const rng = new Rng(8);
  for (let t = 0; t < 20; t++) {
    const spd = () => {
      const [a, b, c] = [rng.normal(), rng.normal(), rng.normal()];
      // L Lᵀ + 0.1 I with L lower-triangular [[a, 0], [b, c]].
      return Float64Array.from([a * a + 0.1, a * b, a * b, b * b + c * c + 0.1]);
    };
    const ca = spd(), cb = spd();
    const ab = [
      ca[0] * cb[0] + ca[1] * cb[2],
      ca[0] * cb[1] + ca[1] * cb[3],
      ca[2] * cb[0] + ca[3] * cb[2],
      ca[2] * cb[1] + ca[3] * cb[3],
    ];
    // The eigenvalues of AB are those of the SPD A^{1/2} B A^{1/2}, so the 2x2 identity holds.
    const trSqrt = Math.sqrt(ab[0] + ab[3] + 2 * Math.sqrt(ab[0] * ab[3] - ab[1] * ab[2]));
    const want = ca[0] + ca[3] + cb[0] + cb[3] - 2 * trSqrt;
    const z = new Float64Array(2);
    close(frechetFromStats({ mean: z, cov: ca }, { mean: z, cov: cb }), want, 1e-10, `trial ${t}`);
  }
});

Deno.test("frechetDistance: 0 on itself, symmetric, exact on a factorial design", () => {
  const rng = new Rng(11), dim = 4;
  // The 16 corners of [−1, 1]⁴ have mean 0 and sample covariance exactly (16/15)·I (n − 1), so
  // b = shift + sd·corner has a Fréchet distance to them known in closed form.
  const sd = [1, 0.5, 2, 1], shift = [0.5, 0, 0, -0.3];
  const a = new Float64Array(16 * dim), b = new Float64Array(16 * dim);
  for (let i = 0; i < 16; i++) {
    for (let d = 0; d < dim; d++) {
      const v = (i >> d) & 1 ? 1 : -1;
      a[i * dim + d] = v;
      b[i * dim + d] = shift[d] + sd[d] * v;
    }
  }
  const want = 0.25 + 0.09 + (16 / 15) * ((1 - 0.5) ** 2 + (1 - 2) ** 2);
  close(frechetDistance(a, b, dim), want, 1e-12, "factorial");
  close(frechetDistance(b, a, dim), want, 1e-12, "factorial, swapped");
  const r = rng.normalArray(500 * 64),
    q = rng.normalArray(500 * 64).map((v, i) => v * (1 + (i % 3)));
  assert.ok(frechetDistance(r, r, 64) < 1e-9, `self ${frechetDistance(r, r, 64)}`);
  close(frechetDistance(r, q, 64), frechetDistance(q, r, 64), 1e-9, "symmetry");
  // Unbiased covariance (n − 1), as numpy.cov.
  const { cov } = meanCov([1, 2, 3, 5], 1);
  close(cov[0], 2.9166666666666665, 1e-12, "variance");
});

Deno.test("diversity: 0 for identical images, 2 for orthogonal features; c-LPIPS within conditions", () => {
  const dim = 8, n = 40;
  const same = new Float32Array(n * dim).map((_, i) => 1 + (i % dim));
  close(diversity({ data: same, channels: dim }), 0, 1e-12, "identical");
  // Images alternate between e0 (scaled by image) and e1: unit-normalising removes the scale, a
  // cross pair is at squared distance 2, a same pair at 0.
  const alt = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) alt[i * dim + (i % 2)] = 1 + i;
  const kind = Array.from({ length: n }, (_, i) => i % 2);
  const pairs = 4000;
  const any = diversity({ data: alt, channels: dim }, { pairs, seed: 2 });
  // A partner of another kind is drawn with probability 20/39.
  close(any, (2 * 20) / 39, 0.06, "LPIPS");
  close(diversity({ data: alt, channels: dim }, { conditions: kind, pairs }), 0, 1e-12, "c-LPIPS");
  const crossed = Array.from({ length: n }, (_, i) => Math.floor(i / 2));
  close(
    diversity({ data: alt, channels: dim }, { conditions: crossed, pairs: 100 }),
    2,
    1e-9,
    "cross",
  );
  // Positions average, layers add: two identical 3-position layers of the crossed pairs give 4.
  const sp = new Float32Array(n * 2 * 3);
  for (let i = 0; i < n; i++) for (let s = 0; s < 3; s++) sp[i * 6 + (i % 2) * 3 + s] = 1;
  const layer = { data: sp, channels: 2, positions: 3 };
  close(diversity([layer, layer], { conditions: crossed, pairs: 50 }), 4, 1e-9, "layers");
  // Seeded: the same protocol gives the same number.
  assert.equal(diversity({ data: alt, channels: dim }, { seed: 2, pairs }), any);
});

Deno.test("accuracy: fraction right", () => {
  assert.equal(accuracy([1, 2, 3, 4], [1, 2, 0, 4]), 0.75);
  assert.throws(() => accuracy([1], [1, 2]), /1 predictions for 2 labels/);
});

Deno.test("digit classifier: trains above chance, caches, reloads identically, names a bad cache", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flowgpu-eval-" });
  try {
    const lines: string[] = [];
    const opts = { steps: 60, seed: 4, dir, testLimit: 0, log: (l: string) => lines.push(l) };
    const c = await digitClassifier(opts);
    const test = await loadMnist("test", { limit: 500 });
    const x = digitInputs(test.images);
    const pred = await c.predict(x, test.count);
    const acc = accuracy(pred, test.labels);
    assert.ok(acc > 0.6, `held-out accuracy ${acc} after 60 steps (chance 0.1)`);
    const x20 = x.subarray(0, 20 * 1024);
    const feats = await c.features(x20, 20);
    assert.equal(feats.length, 20 * 64);
    assert.ok(feats.every((v) => v >= 0 && Number.isFinite(v)), "ReLU features");
    assert.ok(lines.some((l) => l.includes("training")), lines.join("\n"));
    assert.equal(c.path, digitCachePath(opts));
    c.release();

    lines.length = 0;
    const d = await digitClassifier(opts);
    assert.deepEqual(lines, [], "the second call reads the cache");
    assert.deepEqual(await d.predict(x, test.count), pred);
    assert.deepEqual(await d.features(x20, 20), feats);
    d.release();

    // Readable but of another shape: retrained, saying why.
    const path = digitCachePath(opts);
    Deno.writeFileSync(
      path,
      encodeSafetensors(
        { "digits.fc2.bias": { shape: [7], data: new Float32Array(7) } },
        { format: "flowgpu-eval-digits-1" },
      ),
    );
    const small = { ...opts, steps: 60 };
    const e = await digitClassifier(small);
    assert.ok(lines.some((l) => /does not fit the network/.test(l)), lines.join("\n"));
    assert.deepEqual(await e.predict(x, test.count), pred, "deterministic retraining");
    e.release();

    Deno.writeFileSync(path, new TextEncoder().encode("not a safetensors file"));
    await assert.rejects(digitClassifier(opts), (err: Error) => {
      assert.ok(err.message.includes(path), err.message);
      assert.match(err.message, /unreadable/);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("chc regressor: real-pair error near √(P·A²/3), far below shuffled", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flowgpu-eval-chc-" });
  try {
    const set = await loadChc({
      dir,
      ics: 8,
      runs: 2,
      steps: 400,
      snapshotEvery: 200,
      log: () => {},
    });
    const reg = fitChcRegressor(set, set.split.train);
    // Mass conservation: the fitted map is close to "ū = mean(x)".
    close(reg.weights[1], 1, 0.1, "weight of mean(x)");
    const all = Array.from({ length: set.ics }, (_, i) => i);
    const r = chcErrors(set, reg, all);
    assert.equal(r.pairs, 8 * 2 * 2);
    // Knowing ū exactly leaves the IC's own fluctuation: √(4096·0.25²/3) = 9.24.
    close(r.oracle, 9.24, 0.2, "oracle");
    assert.ok(r.real < r.oracle * 1.03, `real ${r.real} vs oracle ${r.oracle}`);
    assert.ok(r.shuffled > r.real * 1.5, `shuffled ${r.shuffled} vs real ${r.real}`);
    // The weights survive JSON, and l2Error is the mean per-image Euclidean norm.
    const again = ChcRegressor.fromJSON(JSON.parse(JSON.stringify(reg.toJSON())));
    assert.deepEqual(again.weights, reg.weights);
    const c = new Float32Array(2 * 4).fill(0), cHat = Float32Array.from([1, 1, 1, 1, 0, 0, 0, 3]);
    close(l2Error(cHat, c, 2), (2 + 3) / 2, 1e-12, "l2Error");
    assert.deepEqual([...chcFeatures([0.5, -0.5, 0.25, -1], 1)], [1, -0.1875, 0, 0.5625]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

import assert from "node:assert/strict";
import { intraClassDiversity, msSsim, ssim, ssimVariant } from "../src/eval/ssim.ts";
import { Rng } from "../src/util/rng.ts";

const close = (a: number, b: number, tol: number, what = "") =>
  assert.ok(Math.abs(a - b) <= tol, `${what} ${a} vs ${b} (tol ${tol})`);

/** Smooth random images on [0, 1]: a few random sinusoids per channel, so SSIM has structure. */
function images(rng: Rng, n: number, c: number, h: number, w: number): Float64Array {
  const out = new Float64Array(n * c * h * w);
  for (let p = 0; p < n * c; p++) {
    const waves = Array.from(
      { length: 4 },
      () => [rng.next() * 0.6, rng.next() * 0.6, rng.next() * 6],
    );
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let v = 0.5;
        for (const [a, b, ph] of waves) v += 0.1 * Math.sin(a * x + b * y + ph);
        out[p * h * w + y * w + x] = v;
      }
    }
  }
  return out;
}

/**
 * MS-SSIM written out separately: a 2-D Gaussian window built directly (not separable), direct
 * windowed sums at every valid position computing μ, σ², σ_xy from their definitions (weighted
 * mean, weighted variance about it), 2×2 pooling, and the product formula per channel.
 */
function referenceMsSsim(
  x: Float64Array,
  y: Float64Array,
  c: number,
  h: number,
  w: number,
  win: number,
  sigma: number,
  weights: number[],
): number {
  const half = (win - 1) / 2;
  const kern: number[][] = [];
  let ks = 0;
  for (let i = 0; i < win; i++) {
    kern.push([]);
    for (let j = 0; j < win; j++) {
      const v = Math.exp(-((i - half) ** 2 + (j - half) ** 2) / (2 * sigma * sigma));
      kern[i].push(v);
      ks += v;
    }
  }
  let total = 0;
  for (let ch = 0; ch < c; ch++) {
    let a = Array.from(
      { length: h },
      (_, r) => Array.from({ length: w }, (_, q) => x[(ch * h + r) * w + q]),
    );
    let b = Array.from(
      { length: h },
      (_, r) => Array.from({ length: w }, (_, q) => y[(ch * h + r) * w + q]),
    );
    let prod = 1;
    for (let s = 0; s < weights.length; s++) {
      if (s > 0) {
        const down = (m: number[][]) =>
          Array.from({ length: Math.floor(m.length / 2) }, (_, r) =>
            Array.from(
              { length: Math.floor(m[0].length / 2) },
              (_, q) =>
                (m[2 * r][2 * q] + m[2 * r][2 * q + 1] + m[2 * r + 1][2 * q] +
                  m[2 * r + 1][2 * q + 1]) / 4,
            ));
        a = down(a);
        b = down(b);
      }
      const hh = a.length, ww = a[0].length;
      let lcs = 0, cs = 0, count = 0;
      for (let r = 0; r + win <= hh; r++) {
        for (let q = 0; q + win <= ww; q++) {
          let ma = 0, mb = 0;
          for (let i = 0; i < win; i++) {
            for (let j = 0; j < win; j++) {
              ma += (kern[i][j] / ks) * a[r + i][q + j];
              mb += (kern[i][j] / ks) * b[r + i][q + j];
            }
          }
          let va = 0, vb = 0, cov = 0;
          for (let i = 0; i < win; i++) {
            for (let j = 0; j < win; j++) {
              const k = kern[i][j] / ks, da = a[r + i][q + j] - ma, db = b[r + i][q + j] - mb;
              va += k * da * da;
              vb += k * db * db;
              cov += k * da * db;
            }
          }
          const C1 = 1e-4, C2 = 9e-4;
          const csv = (2 * cov + C2) / (va + vb + C2);
          cs += csv;
          lcs += ((2 * ma * mb + C1) / (ma * ma + mb * mb + C1)) * csv;
          count++;
        }
      }
      const term = s === weights.length - 1 ? lcs / count : cs / count;
      prod *= Math.max(0, term) ** weights[s];
    }
    total += prod;
  }
  return total / c;
}

Deno.test("ssimVariant: §5.3 windows, scales and renormalised weights", () => {
  const v28 = ssimVariant(28, 28), v32 = ssimVariant(32, 32), v64 = ssimVariant(64, 64);
  assert.deepEqual([v28.window, v28.sigma, v28.scales], [7, 1, 1]);
  assert.deepEqual([v32.window, v32.sigma, v32.scales], [11, 1.5, 2]);
  assert.deepEqual([v64.window, v64.scales], [11, 3]);
  assert.equal(ssimVariant(176, 176).scales, 5);
  assert.equal(ssimVariant(128, 128).scales, 4);
  close(v64.weights[0], 0.0448 / (0.0448 + 0.2856 + 0.3001), 1e-15);
  close(v32.weights[1], 0.2856 / (0.0448 + 0.2856), 1e-15);
  assert.deepEqual(v28.weights, [1]);
  assert.match(
    v64.label,
    /MS-SSIM, 3 scales \(Gaussian 11x11, σ 1.5; weights 0.0711, 0.4530, 0.4760\)/,
  );
  assert.throws(
    () => ssimVariant(64, 64, 4),
    /flowgpu: ssim: 4 scales shrink 64x64 to 8 px, below the 11x11 window/,
  );
  assert.throws(
    () => ssimVariant(5, 5),
    /flowgpu: ssim: 5x5 images are smaller than the 7x7 window/,
  );
});

Deno.test("ssim: SSIM(x, x) = 1; constant images give the luminance formula exactly", () => {
  const rng = new Rng(1);
  const x = images(rng, 3, 3, 29, 31);
  const s = ssim(x, x, [3, 3, 29, 31]);
  for (const v of s) close(v, 1, 1e-14, "SSIM(x,x)");
  const m = msSsim(x, x, [3, 3, 29, 31]);
  for (const v of m) close(v, 1, 1e-14, "MS-SSIM(x,x)");
  // Constant a against constant b: σ = 0, so cs = 1 and SSIM = (2ab + C1)/(a² + b² + C1).
  const a = new Float64Array(30 * 30).fill(0.3), b = new Float64Array(30 * 30).fill(0.7);
  close(ssim(a, b, [1, 1, 30, 30])[0], (2 * 0.21 + 1e-4) / (0.09 + 0.49 + 1e-4), 1e-12);
  // signed: [−1, 1] images are mapped to [0, 1] first.
  const sa = a.map((v) => 2 * v - 1), sb = b.map((v) => 2 * v - 1);
  close(ssim(sa, sb, [1, 1, 30, 30], { signed: true })[0], ssim(a, b, [1, 1, 30, 30])[0], 1e-14);
  // A negated structure correlates negatively: plain SSIM goes below 0 (not clamped).
  const inv = x.map((v) => 1 - v);
  assert.ok(ssim(x, inv, [3, 3, 29, 31])[0] < -0.5);
});

Deno.test("ssim: decreases monotonically with the noise level", () => {
  const rng = new Rng(2), shape = [1, 3, 32, 32] as const;
  const x = images(rng, 1, 3, 32, 32);
  const e = Float64Array.from(rng.normalArray(x.length));
  let prevS = 1, prevM = 1;
  for (const t of [0.01, 0.02, 0.05, 0.1, 0.2, 0.4]) {
    const y = x.map((v, i) => v + t * e[i]);
    const s = ssim(x, y, shape)[0], m = msSsim(x, y, shape)[0];
    assert.ok(s < prevS, `SSIM at noise ${t}: ${s} !< ${prevS}`);
    assert.ok(m < prevM, `MS-SSIM at noise ${t}: ${m} !< ${prevM}`);
    [prevS, prevM] = [s, m];
  }
  assert.ok(prevS < 0.2, `SSIM at noise 0.4: ${prevS}`);
});

Deno.test("msSsim: agrees with a direct float64 reference at 28, 32, 64 px and odd sizes", () => {
  const rng = new Rng(3);
  for (const [c, h, w] of [[1, 28, 28], [3, 32, 32], [3, 64, 64], [2, 45, 37]]) {
    const x = images(rng, 2, c, h, w);
    const y = x.map((v) => Math.min(1, Math.max(0, v + 0.08 * rng.normal())));
    const got = msSsim(x, y, [2, c, h, w]);
    const v = ssimVariant(h, w);
    const per = c * h * w;
    for (let i = 0; i < 2; i++) {
      const ref = referenceMsSsim(
        x.subarray(i * per, (i + 1) * per),
        y.subarray(i * per, (i + 1) * per),
        c,
        h,
        w,
        v.window,
        v.sigma,
        v.weights,
      );
      close(got[i], ref, 1e-12, `${c}x${h}x${w} image ${i}`);
      assert.ok(ref > 0.2 && ref < 0.99, `reference ${ref} in a range that tests something`);
    }
  }
});

Deno.test("intraClassDiversity: both forms from the pairwise MS-SSIM; identical images score 0", () => {
  const rng = new Rng(4), shape = [5, 1, 32, 32] as const, per = 32 * 32;
  const x = images(rng, 5, 1, 32, 32);
  const labels = [7, 3, 7, 7, 3];
  const r = intraClassDiversity(x, shape, labels);
  const pair = (i: number, j: number) =>
    msSsim(x.subarray(i * per, (i + 1) * per), x.subarray(j * per, (j + 1) * per), [
      1,
      1,
      32,
      32,
    ])[0];
  const c7 = [pair(0, 2), pair(0, 3), pair(2, 3)], c3 = pair(1, 4);
  const sum7 = c7.reduce((a, b) => a + b, 0);
  assert.deepEqual(r.perClass.map((p) => [p.label, p.count]), [[3, 2], [7, 3]]);
  close(r.perClass[1].allPairs, 1 - (3 + 2 * sum7) / 9, 1e-14, "class 7 all pairs");
  close(r.perClass[1].distinctPairs, 1 - sum7 / 3, 1e-14, "class 7 distinct");
  close(r.perClass[0].distinctPairs, 1 - c3, 1e-14, "class 3 distinct");
  close(r.distinctPairs, (2 - sum7 / 3 - c3) / 2, 1e-14, "mean over classes");
  assert.ok(r.distinctPairs > 0.05);
  const same = new Float64Array(3 * per);
  for (let i = 0; i < 3; i++) same.set(x.subarray(0, per), i * per);
  const z = intraClassDiversity(same, [3, 1, 32, 32], [0, 0, 0]);
  close(z.allPairs, 0, 1e-14);
  close(z.distinctPairs, 0, 1e-14);
});

Deno.test("ssim: wrong shapes and mismatched counts throw flowgpu errors", () => {
  const x = new Float64Array(2 * 28 * 28);
  assert.throws(
    () => ssim(x, x, [1, 1, 28, 28]),
    /flowgpu: ssim: 1568 values for shape \[1,1,28,28\]/,
  );
  assert.throws(
    () => msSsim(x, x.subarray(1), [2, 1, 28, 28]),
    /flowgpu: msSsim: 1568 values against 1567/,
  );
  assert.throws(
    () => msSsim(x, x, [2, 28, 28] as unknown as [number, number, number, number]),
    /flowgpu: msSsim: shape \[2,28,28\] is not \[n, c, h, w\]/,
  );
  assert.throws(
    () => intraClassDiversity(x, [2, 1, 28, 28], [1]),
    /flowgpu: intraClassDiversity: 1 labels for 2 images/,
  );
  assert.throws(
    () => msSsim(x, x, [2, 1, 28, 28], { scales: 6 }),
    /flowgpu: ssim: scales must be 1..5, got 6/,
  );
});

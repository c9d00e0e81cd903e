import assert from "node:assert/strict";
import "./setup.ts";
import {
  dci,
  dciFromImportance,
  equalMassBuckets,
  indexFactor,
  logisticProbe,
  mig,
  MIG_NOISE,
  migGap,
  mutualInformation,
  posteriorEntropies,
  ridgeProbe,
  sap,
} from "../src/eval/disentangle.ts";
import { migGpu, posteriorEntropiesGpu } from "../src/eval/disentangle_gpu.ts";
import { codeDrift, inceptionScore, MseMeter, reconMse, retargetError } from "../src/eval/recon.ts";
import { Rng } from "../src/util/rng.ts";

const close = (a: number, b: number, tol: number, what = "") =>
  assert.ok(Math.abs(a - b) <= tol, `${what} ${a} vs ${b} (tol ${tol})`);

const labelsOf = (rng: Rng, n: number, m: number) =>
  Int32Array.from({ length: n }, () => rng.int(m));

/** Codes [n·dim] whose dim d is factor perm[d]'s label plus N(0, noise²). */
function copyCode(factors: ArrayLike<number>[], perm: number[], noise: number, rng: Rng) {
  const n = factors[0].length, dim = perm.length;
  const out = new Float64Array(n * dim);
  for (let i = 0; i < n; i++) {
    for (let d = 0; d < dim; d++) out[i * dim + d] = factors[perm[d]][i] + noise * rng.normal();
  }
  return out;
}

// ---- MIG (§5.1) ----

/**
 * The §5.1 estimator written out literally for a check: densities summed directly (no
 * logsumexp; σ ≥ 0.3 keeps them in range), conditional entropies value by value over the samples
 * drawn from that value's codes, weighted by N_v / N.
 */
function bruteEntropies(
  mu: Float64Array,
  sd: Float64Array,
  dim: number,
  labels: Int32Array[],
  source: Uint32Array,
  eps: Float64Array,
) {
  const n = mu.length / dim, m = source.length;
  const pdf = (z: number, i: number, k: number) => {
    const s = sd[i * dim + k];
    return Math.exp(-0.5 * ((z - mu[i * dim + k]) / s) ** 2) / (s * Math.sqrt(2 * Math.PI));
  };
  const hx: number[] = [], mi: number[][] = labels.map(() => []);
  for (let k = 0; k < dim; k++) {
    const z = Array.from(source, (i, s) => mu[i * dim + k] + sd[i * dim + k] * eps[s * dim + k]);
    let h = 0;
    for (let s = 0; s < m; s++) {
      let q = 0;
      for (let i = 0; i < n; i++) q += pdf(z[s], i, k);
      h -= Math.log(q / n);
    }
    hx.push(h / m);
    labels.forEach((lab, f) => {
      const values = [...new Set(lab)];
      let cond = 0;
      for (const v of values) {
        const members = [...lab.keys()].filter((i) => lab[i] === v);
        let hv = 0, cnt = 0;
        for (let s = 0; s < m; s++) {
          if (lab[source[s]] !== v) continue;
          let q = 0;
          for (const i of members) q += pdf(z[s], i, k);
          hv -= Math.log(q / members.length);
          cnt++;
        }
        cond += (members.length / n) * (hv / cnt);
      }
      mi[f].push(hx[k] - cond);
    });
  }
  return { hx, mi };
}

Deno.test("posteriorEntropies: agrees with a brute-force float64 estimator on 37 codes x 3 dims", () => {
  const rng = new Rng(11), n = 37, dim = 3, m = 53;
  const mu = Float64Array.from(rng.normalArray(n * dim, 2));
  const sd = Float64Array.from(rng.uniformArray(n * dim, 0.3, 1.5));
  const labels = [labelsOf(rng, n, 3), labelsOf(rng, n, 5)];
  const source = Uint32Array.from({ length: m }, (_, s) => (s * 7) % n);
  const eps = Float64Array.from(rng.normalArray(m * dim));
  const got = posteriorEntropies(
    { mu, sigma: sd, dim },
    labels.map((l) => indexFactor(l)),
    source,
    eps,
  );
  const ref = bruteEntropies(mu, sd, dim, labels, source, eps);
  for (let k = 0; k < dim; k++) {
    close(got.hx[k], ref.hx[k], 1e-12, `H(X_${k})`);
    for (let f = 0; f < 2; f++) {
      close(got.mi[f * dim + k], ref.mi[f][k], 1e-12, `I(L_${f}; X_${k})`);
    }
  }
  // Some information is there to be found (the check is not of zeros).
  assert.ok(Math.max(...got.mi) > 0.05, `max I ${Math.max(...got.mi)}`);
  // logvar heads give the same numbers as σ heads.
  const logvar = sd.map((s) => 2 * Math.log(s));
  const viaLogvar = posteriorEntropies(
    { mu, logvar, dim },
    labels.map((l) => indexFactor(l)),
    source,
    eps,
  );
  for (let j = 0; j < got.mi.length; j++) close(viaLogvar.mi[j], got.mi[j], 1e-12, "logvar");
});

Deno.test("mutualInformation: matches I(L; X) integrated numerically for a 6-code mixture", () => {
  // Six codes, two label values: X | L=v is a mixture of three Gaussians. The exact I is
  // H(X) − Σ p(v) H(X|L=v) with each entropy integrated on a fine grid; the estimator with
  // M = 120k samples must land within its Monte-Carlo error.
  const mu = [-1.5, -0.2, 0.9, 0.4, 1.8, 3.0], sd = [0.5, 0.8, 0.4, 0.6, 0.7, 0.5];
  const lab = [0, 0, 0, 1, 1, 1];
  const mixH = (idx: number[]) => {
    let h = 0;
    const dz = 1e-3;
    for (let z = -8; z <= 10; z += dz) {
      let q = 0;
      for (const i of idx) {
        q += Math.exp(-0.5 * ((z - mu[i]) / sd[i]) ** 2) / (sd[i] * Math.sqrt(2 * Math.PI));
      }
      q /= idx.length;
      if (q > 0) h -= q * Math.log(q) * dz;
    }
    return h;
  };
  const exact = mixH([0, 1, 2, 3, 4, 5]) - 0.5 * mixH([0, 1, 2]) - 0.5 * mixH([3, 4, 5]);
  const r = mutualInformation({ mu, sigma: sd, dim: 1 }, [lab], { samples: 120_000 });
  assert.equal(r.n, 6);
  assert.equal(r.m, 120_000);
  close(r.hl[0], Math.log(2), 1e-12, "H(L)");
  close(r.mi[0], exact, 0.01, "I(L; X)");
  close(r.info[0], exact / Math.log(2), 0.015, "Î");
  assert.ok(exact > 0.2, `exact I ${exact}`);
});

Deno.test("MIG sanity (§5.1 i, ii): label + tiny noise gives Î ≈ 1, an independent code |Î| < 0.02", () => {
  const rng = new Rng(2), n = 10_000;
  const lab = labelsOf(rng, n, 10);
  const copy = mutualInformation(
    { mu: Float64Array.from(lab, (l) => l + 0.01 * rng.normal()), dim: 1, noise: 0.02 },
    [lab],
  );
  close(copy.info[0], 1, 0.005, "copy Î");
  const indep = mutualInformation({ mu: rng.normalArray(n), dim: 1, noise: 0.05 }, [lab]);
  assert.equal(indep.n, 10_000);
  assert.equal(indep.m, 10_000);
  assert.ok(Math.abs(indep.info[0]) < 0.02, `independent Î ${indep.info[0]}`);
});

Deno.test("MIG sanity (§5.1 iii): ideal encoders on correlated shapes reach the 0.8257 ceiling", () => {
  // Six factors with Shapes2.5D's cardinalities, wall = floor + {0, ±1} mod 10 (the correlated
  // subset); each encoder is its factor's label index + N(0, 0.02²), object hue unknown.
  const rng = new Rng(5), n = 4000, card = [10, 10, 10, 8, 4, 15];
  const names = ["floor", "wall", "object", "scale", "shape", "orientation"];
  const f: Int32Array[] = card.map(() => new Int32Array(n));
  for (let i = 0; i < n; i++) {
    f[0][i] = rng.int(10);
    f[1][i] = (f[0][i] + [0, 1, 9][rng.int(3)]) % 10;
    for (let j = 2; j < 6; j++) f[j][i] = rng.int(card[j]);
  }
  const r = mig(
    names.map((name, j) => ({
      name,
      dim: 1,
      noise: 0.02,
      mu: Float64Array.from(f[j], (v) => v + 0.02 * rng.normal()),
    })),
    names.map((name, j) => ({ name, labels: f[j], encoder: name, labeled: j !== 2 })),
  );
  const ceiling = (2 * (1 - (Math.log(10) - Math.log(3)) / Math.log(10)) + 4) / 6;
  close(r.migAll, ceiling, 0.012, "MIG_all");
  for (const row of r.factors) close(row.own, 1, 0.003, `${row.name} own`);
  // Floor's rival is the wall encoder, carrying (ln 10 − ln 3)/ln 10 of its information.
  assert.equal(r.factors[0].rivalEncoder, "wall");
  close(r.factors[0].rival, 1 - Math.log(3) / Math.log(10), 0.015, "floor's rival");
  close(r.migLab, (r.migAll * 6 - r.factors[2].gap) / 5, 1e-12, "MIG_lab over labelled");
  assert.equal(r.n, n);
});

Deno.test("mig: a copy encoder per factor scores ≈ 1, random encoders ≈ 0; maxCodes caps N", () => {
  const rng = new Rng(9), n = 3000;
  const a = labelsOf(rng, n, 4), b = labelsOf(rng, n, 6);
  const good = mig(
    [
      { name: "S", dim: 2, mu: copyCode([a, b], [0, 0], 0.01, rng), noise: 0.02 },
      { name: "E", dim: 3, mu: copyCode([a, b], [1, 1, 1], 0.01, rng), noise: 0.05 },
    ],
    [
      { name: "a", labels: a, encoder: "S" },
      { name: "b", labels: b, encoder: "E", labeled: false },
    ],
  );
  close(good.migLab, 1, 0.01, "MIG_lab copy");
  close(good.migAll, 1, 0.01, "MIG_all copy");
  const bad = mig(
    [
      { name: "S", dim: 2, mu: rng.normalArray(n * 2), noise: 0.02 },
      { name: "E", dim: 3, mu: rng.normalArray(n * 3), noise: 0.05 },
    ],
    [
      { name: "a", labels: a, encoder: "S" },
      { name: "b", labels: b, encoder: "E", labeled: false },
    ],
    { maxCodes: 2000, samples: 2000 },
  );
  assert.equal(bad.n, 2000);
  assert.ok(
    Math.abs(bad.migLab) < 0.03 && Math.abs(bad.migAll) < 0.03,
    JSON.stringify(bad.factors),
  );
  // A code that holds the wrong factor: a's own encoder copies b, E copies a -> MIG ≈ −1 for a.
  const swapped = mig(
    [
      { name: "S", dim: 1, mu: copyCode([a, b], [1], 0.01, rng), noise: 0.02 },
      { name: "E", dim: 1, mu: copyCode([a, b], [0], 0.01, rng), noise: 0.02 },
    ],
    [{ name: "a", labels: a, encoder: "S" }],
  );
  close(swapped.migLab, -1, 0.02, "swapped");
  assert.ok(Number.isNaN(swapped.migLab) === false);
});

Deno.test("migGap: classic top-two gap of one code; one copied dim per factor ≈ 1", () => {
  const rng = new Rng(4), n = 3000;
  const a = labelsOf(rng, n, 5), b = labelsOf(rng, n, 3);
  const mu = new Float64Array(n * 3);
  for (let i = 0; i < n; i++) {
    mu[i * 3] = b[i] + 0.01 * rng.normal();
    mu[i * 3 + 1] = rng.normal();
    mu[i * 3 + 2] = a[i] + 0.01 * rng.normal();
  }
  // σ = 0.05 as §1.9 gives continuous codes: smaller noise on a continuous N(0, 1) dim makes the
  // estimator see each code as its own cluster, and Î of pure noise creep up (0.036 at 0.02).
  const r = migGap({ mu, dim: 3, noise: 0.05 }, [a, b]);
  close(r.gaps[0], 1, 0.02, "gap a");
  close(r.gaps[1], 1, 0.02, "gap b");
  // Two dims both holding a: the gap collapses to ≈ 0.
  const twice = new Float64Array(n * 2);
  for (let i = 0; i < n; i++) {
    twice[i * 2] = a[i] + 0.01 * rng.normal();
    twice[i * 2 + 1] = a[i] + 0.01 * rng.normal();
  }
  assert.ok(Math.abs(migGap({ mu: twice, dim: 2, noise: 0.02 }, [a]).mig) < 0.01);
});

Deno.test("mig: wrong shapes, mismatched counts and single-valued factors throw flowgpu errors", () => {
  const lab = [0, 1, 0, 1];
  const mu = [0, 1, 0, 1];
  const enc = (o: object) => [{ name: "E", dim: 1, mu, noise: 0.1, ...o }];
  const fac = (o: object = {}) => [{ name: "f", labels: lab, encoder: "E", ...o }];
  assert.throws(
    () => mig(enc({ dim: 3 }), fac()),
    /^Error: flowgpu: mig: 4 means are not whole rows of 3 dims/,
  );
  assert.throws(
    () => mig(enc({}), fac({ labels: [0, 1, 0] })),
    /^Error: flowgpu: mig: 3 labels for 4 codes/,
  );
  assert.throws(
    () => mig(enc({}), fac({ labels: [2, 2, 2, 2] })),
    /flowgpu: mig: factor 0: has a single value \(2\)/,
  );
  assert.throws(
    () => mig(enc({ sigma: [1, 1, 1, 1] }), fac()),
    /flowgpu: mig: give exactly one of sigma, logvar or noise \(got 2\)/,
  );
  assert.throws(
    () => mig(enc({ noise: undefined, sigma: [1, 1] }), fac()),
    /flowgpu: mig: 2 sigma values for 4 means/,
  );
  assert.throws(
    () => mig(enc({}), fac({ encoder: "S" })),
    /flowgpu: mig: factor f's encoder S is not given/,
  );
  assert.throws(
    () => mig([...enc({}), { name: "S", dim: 1, mu: [0, 1, 2], noise: 0.1 }], fac()),
    /flowgpu: mig: 3 means are not whole rows|flowgpu: mig: codes of 3 and 4 samples/,
  );
  assert.throws(() => mig(enc({ noise: 0 }), fac()), /flowgpu: mig: noise σ must be > 0/);
  assert.throws(() => mig(enc({}), fac(), { samples: 0 }), /flowgpu: mig: samples 0/);
  assert.throws(
    () =>
      posteriorEntropies(
        { mu, dim: 1, sigma: [1, 0, 1, 1] },
        [indexFactor(lab)],
        new Uint32Array([0, 1]),
        [0, 0],
      ),
    /flowgpu: posteriorEntropies: code 1 dim 0 has μ 1, σ 0/,
  );
  assert.throws(() => indexFactor([1, NaN]), /flowgpu: factor: label NaN is not finite/);
});

// ---- DCI ----

/** The orthonormal 4x4 Hadamard matrix: every entry ±1/2, so a code mixed by it spreads each
 * factor evenly over all dims. */
const H4 = [1, 1, 1, 1, 1, -1, 1, -1, 1, 1, -1, -1, 1, -1, -1, 1].map((v) => v / 2);

function mixed(factors: ArrayLike<number>[], q: number[], noise: number, rng: Rng) {
  const n = factors[0].length, k = factors.length;
  const out = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let d = 0; d < k; d++) {
      let s = 0;
      for (let f = 0; f < k; f++) s += q[d * k + f] * factors[f][i];
      out[i * k + d] = s + noise * rng.normal();
    }
  }
  return out;
}

/** Standardised least squares by Gauss-Jordan elimination on the normal equations. */
function lstsqStandardised(
  x: Float64Array,
  dim: number,
  y: ArrayLike<number>,
  idx: ArrayLike<number>,
) {
  const m = idx.length;
  const mean = (get: (i: number) => number) => {
    let s = 0;
    for (let j = 0; j < m; j++) s += get(idx[j]);
    return s / m;
  };
  const mx = Array.from({ length: dim }, (_, d) => mean((i) => x[i * dim + d]));
  const sx = Array.from(
    { length: dim },
    (_, d) => Math.sqrt(mean((i) => (x[i * dim + d] - mx[d]) ** 2)),
  );
  const my = mean((i) => y[i]), sy = Math.sqrt(mean((i) => (y[i] - my) ** 2));
  const a = Array.from({ length: dim }, () => new Array(dim + 1).fill(0));
  for (let j = 0; j < m; j++) {
    const i = idx[j];
    const r = Array.from({ length: dim }, (_, d) => (x[i * dim + d] - mx[d]) / sx[d]);
    const t = (y[i] - my) / sy;
    for (let p = 0; p < dim; p++) {
      for (let q = 0; q < dim; q++) a[p][q] += (r[p] * r[q]) / m;
      a[p][dim] += (r[p] * t) / m;
    }
  }
  for (let p = 0; p < dim; p++) a[p][p] += 1e-3;
  for (let c = 0; c < dim; c++) {
    for (let r = 0; r < dim; r++) {
      if (r === c) continue;
      const f = a[r][c] / a[c][c];
      for (let k = c; k <= dim; k++) a[r][k] -= f * a[c][k];
    }
  }
  return a.map((row, p) => row[dim] / a[p][p]);
}

Deno.test("dci: importances equal an independent least-squares fit; D, C ≈ 1 for a permuted copy", () => {
  const rng = new Rng(21), n = 2000;
  const f = [labelsOf(rng, n, 10), labelsOf(rng, n, 8), labelsOf(rng, n, 6), labelsOf(rng, n, 4)];
  const perm = [2, 0, 3, 1];
  const code = copyCode(f, perm, 0.05, rng);
  const r = dci(code, 4, f, { seed: 3 });
  const train = new Rng(3).permutation(n).subarray(0, Math.ceil(0.8 * n));
  for (let k = 0; k < 4; k++) {
    const w = lstsqStandardised(code, 4, f[k], train);
    for (let d = 0; d < 4; d++) {
      close(r.importance[d * 4 + k], Math.abs(w[d]), 1e-9, `R[${d},${k}]`);
    }
  }
  assert.ok(r.disentanglement > 0.97, `D ${r.disentanglement}`);
  assert.ok(r.completeness > 0.97, `C ${r.completeness}`);
  assert.ok(r.informativeness > 0.99, `I ${r.informativeness}`);
  for (let d = 0; d < 4; d++) assert.ok(r.importance[d * 4 + perm[d]] > 0.99);
});

Deno.test("dci: a rotated mixing scores low D and C (≈ 0 for Hadamard) but full informativeness", () => {
  const rng = new Rng(22), n = 2000;
  const f = [0, 1, 2, 3].map(() => Float64Array.from({ length: n }, () => rng.normal()));
  const h = dci(mixed(f, H4, 0.01, rng), 4, f);
  assert.ok(h.disentanglement < 0.02, `D ${h.disentanglement}`);
  assert.ok(h.completeness < 0.02, `C ${h.completeness}`);
  assert.ok(h.informativeness > 0.99, `I ${h.informativeness}`);
  // A 45° rotation of two factor pairs: each factor on two dims equally -> D = C = 1 − log_4 2.
  const c = Math.SQRT1_2;
  const r45 = [c, c, 0, 0, -c, c, 0, 0, 0, 0, c, c, 0, 0, -c, c];
  const g = dci(mixed(f, r45, 0.01, rng), 4, f);
  close(g.disentanglement, 0.5, 0.02, "D 45°");
  close(g.completeness, 0.5, 0.02, "C 45°");
});

Deno.test("dciFromImportance: known answers", () => {
  const eye = dciFromImportance([1, 0, 0, 0, 1, 0, 0, 0, 1], 3, 3);
  close(eye.disentanglement, 1, 1e-15);
  close(eye.completeness, 1, 1e-15);
  const flat = dciFromImportance([1, 1, 1, 1, 1, 1], 3, 2);
  close(flat.disentanglement, 0, 1e-15);
  close(flat.completeness, 0, 1e-15);
  // dim 0 holds factor 0 only (D_0 = 1); dim 1 splits 1:1 (D_1 = 0), weights 1/3 and 2/3.
  const m = dciFromImportance([1, 0, 1, 1], 2, 2);
  close(m.disentanglement, 1 / 3, 1e-15, "D");
  // factor 0 over dims 1:1 (C = 0), factor 1 on dim 1 only (C = 1).
  close(m.completeness, 0.5, 1e-15, "C");
  // One dim of zeros: D_d = 0 with weight 0.
  const z = dciFromImportance([2, 0, 0, 0], 2, 2);
  close(z.disentanglement, 1, 1e-15);
  close(z.perFactor[1], 0, 1e-15);
  assert.throws(
    () => dciFromImportance([1, 2, 3], 3, 1),
    /flowgpu: dciFromImportance: 3 importances are not 3 dims x 1 factors/,
  );
  assert.throws(
    () => dciFromImportance([1, -1, 1, 1], 2, 2),
    /flowgpu: dciFromImportance: importance -1 < 0/,
  );
});

Deno.test("dci: bad inputs throw flowgpu errors", () => {
  const f = [[0, 1, 0, 1, 0, 1, 0, 1, 0, 1], [1, 2, 3, 1, 2, 3, 1, 2, 3, 1]];
  const code = new Float64Array(20).map((_, i) => i);
  assert.throws(() => dci(code, 3, f), /flowgpu: dci: 20 values are not 2\+ rows of 3 dims/);
  assert.throws(
    () => dci(code, 2, [f[0].slice(1), f[1]]),
    /flowgpu: dci: factor 0 has 9 labels for 10 codes/,
  );
  assert.throws(
    () => dci(code, 2, [f[0], new Array(10).fill(4)]),
    /flowgpu: dci: factor 1 has a single value \(4\)/,
  );
  assert.throws(
    () => dci(code, 2, [f[0]]),
    /flowgpu: dci: needs at least 2 code dims and 2 factors/,
  );
  assert.throws(
    () => dci(code, 2, f, { trainFraction: 1 }),
    /flowgpu: dci: trainFraction must be in \(0, 1\)/,
  );
});

// ---- SAP ----

Deno.test("sap: matrix is the squared correlation; high for a copy, ≈ 0 for a random code", () => {
  const rng = new Rng(31), n = 3000;
  const f = [labelsOf(rng, n, 10), labelsOf(rng, n, 5), labelsOf(rng, n, 7)];
  const code = copyCode(f, [1, 2, 0], 0.05, rng);
  const r = sap(code, 3, f);
  for (let d = 0; d < 3; d++) {
    for (let k = 0; k < 3; k++) {
      let sx = 0, sy = 0;
      for (let i = 0; i < n; i++) [sx, sy] = [sx + code[i * 3 + d], sy + f[k][i]];
      const mx = sx / n, my = sy / n;
      let cxy = 0, cxx = 0, cyy = 0;
      for (let i = 0; i < n; i++) {
        const a = code[i * 3 + d] - mx, b = f[k][i] - my;
        [cxy, cxx, cyy] = [cxy + a * b, cxx + a * a, cyy + b * b];
      }
      close(r.matrix[d * 3 + k], (cxy * cxy) / (cxx * cyy), 1e-12, `S[${d},${k}]`);
    }
  }
  assert.ok(r.score > 0.95, `SAP copy ${r.score}`);
  const rand = sap(rng.normalArray(n * 3), 3, f);
  assert.ok(rand.score < 0.01, `SAP random ${rand.score}`);
  // Rotated (Hadamard) mixing of four factors: every dim explains 1/4 of each -> SAP ≈ 0.
  const g = [0, 1, 2, 3].map(() => Float64Array.from({ length: n }, () => rng.normal()));
  assert.ok(sap(mixed(g, H4, 0.01, rng), 4, g).score < 0.05);
  assert.throws(() => sap(code, 1, f), /flowgpu: sap: factor 0 has 3000 labels for 9000 codes/);
  assert.throws(
    () => sap(rng.normalArray(n), 1, [f[0]]),
    /flowgpu: sap: needs at least 2 code dims/,
  );
});

// ---- leakage probes (§5.4) ----

Deno.test("logisticProbe: finds a linearly coded class, stays at chance on an independent code", () => {
  const rng = new Rng(41), n = 1500, dim = 5;
  const make = (m: number) => {
    const labels = labelsOf(rng, m, 3);
    const codes = new Float64Array(m * dim);
    for (let i = 0; i < m; i++) {
      for (let d = 0; d < dim; d++) codes[i * dim + d] = rng.normal();
      codes[i * dim + 2] += 4 * labels[i];
    }
    return { labels, codes };
  };
  const tr = make(n), te = make(500);
  const r = logisticProbe(tr, te, dim);
  assert.ok(r.accuracy > 0.95, `leaky accuracy ${r.accuracy}`);
  // The optimiser reached the penalised optimum: its gradient vanishes.
  assert.ok(r.gradMax < 1e-3, `gradient ${r.gradMax}`);
  const indepTest = { labels: labelsOf(rng, 500, 3), codes: te.codes };
  const indepTrain = { labels: labelsOf(rng, n, 3), codes: tr.codes };
  const z = logisticProbe(indepTrain, indepTest, dim);
  assert.ok(Math.abs(z.accuracy - 1 / 3) < 0.07, `independent accuracy ${z.accuracy}`);
  assert.ok(z.chance > 0.3 && z.chance < 0.4, `chance ${z.chance}`);
  assert.throws(
    () => logisticProbe({ labels: [1, 1, 1], codes: [0, 1, 2] }, te, 1),
    /flowgpu: logisticProbe: factor 0 has a single value \(1\)/,
  );
});

Deno.test("ridgeProbe: R² ≈ 1 for a linear target, ≈ 0 for an independent one", () => {
  const rng = new Rng(42), dim = 4;
  const codes = (m: number) => Float64Array.from(rng.normalArray(m * dim));
  const a = codes(1000), b = codes(400);
  const lin = (c: Float64Array) =>
    Float64Array.from(
      { length: c.length / dim },
      (_, i) => 2 * c[i * dim] - c[i * dim + 3] + 0.01 * rng.normal(),
    );
  const r = ridgeProbe({ codes: a, targets: lin(a) }, { codes: b, targets: lin(b) }, dim);
  assert.ok(r.r2 > 0.999, `R² ${r.r2}`);
  const z = ridgeProbe(
    { codes: a, targets: rng.normalArray(1000) },
    { codes: b, targets: rng.normalArray(400) },
    dim,
  );
  assert.ok(Math.abs(z.r2) < 0.03, `independent R² ${z.r2}`);
});

// ---- reconstruction MSE (§5.2) and the §5.4 scores (src/eval/recon.ts) ----

Deno.test("reconMse: both scales, accumulated over batches", () => {
  const x = [-1, 0, 0.5, 1], y = [-0.5, 0, 1, 0];
  // [−1, 1] inputs: squared errors 0.25, 0, 0.25, 1 -> 0.375 on [−1, 1], /4 on [0, 1].
  const r = reconMse(x, y);
  close(r.mseSigned, 0.375, 1e-15);
  close(r.mse01, 0.09375, 1e-15);
  const u = reconMse([0, 0.5], [0.5, 0.5], { signed: false });
  close(u.mse01, 0.125, 1e-15);
  close(u.mseSigned, 0.5, 1e-15);
  const m = new MseMeter();
  m.add(x.slice(0, 1), y.slice(0, 1));
  m.add(x.slice(1), y.slice(1));
  assert.equal(m.pixels, 4);
  close(m.result().mseSigned, 0.375, 1e-15);
  assert.throws(() => reconMse([1, 2], [1]), /flowgpu: reconMse: 2 pixels against 1/);
  assert.throws(() => new MseMeter().result(), /flowgpu: reconMse: no pixels added/);
});

Deno.test("inceptionScore, codeDrift, retargetError: known answers", () => {
  // Confident and uniform over k classes -> IS = k; identical rows -> IS = 1.
  const k = 4, eye = new Float64Array(8 * k);
  for (let i = 0; i < 8; i++) eye[i * k + (i % k)] = 1;
  close(inceptionScore(eye, k), 4, 1e-12);
  close(inceptionScore([0.3, 0.7, 0.3, 0.7], 2), 1, 1e-12);
  // Two rows (0.9, 0.1), (0.1, 0.9): p(y) = ½, KL = 0.9 ln 1.8 + 0.1 ln 0.2 each.
  close(
    inceptionScore([0.9, 0.1, 0.1, 0.9], 2),
    Math.exp(0.9 * Math.log(1.8) + 0.1 * Math.log(0.2)),
    1e-12,
  );
  assert.throws(() => inceptionScore([0.5, 0.6], 2), /flowgpu: inceptionScore: row 0 sums to 1.1/);
  assert.throws(
    () => inceptionScore([0.5, 0.5, 1], 2),
    /flowgpu: inceptionScore: 3 values are not rows of 2/,
  );
  close(codeDrift([0, 0, 1, 1], [1, 0, 1, 3], 2), (1 + 4) / 2, 1e-15);
  assert.throws(() => codeDrift([0, 0], [0, 0, 0, 0], 2), /flowgpu: codeDrift: 2 and 4 values/);
  const e = retargetError([1, 2, 3], [1, 0, 4]);
  close(e.mse, 5 / 3, 1e-15);
  close(e.mae, 1, 1e-15);
  assert.throws(() => retargetError([], []), /flowgpu: retargetError: 0 coordinates/);
});

// ---- the GPU estimator (src/eval/disentangle_gpu.ts) against the float64 CPU one ----

Deno.test("posteriorEntropiesGpu: agrees with the CPU estimator (10 factors: two passes)", async () => {
  const rng = new Rng(51), n = 301, dim = 3, m = 413;
  const mu = Float64Array.from(rng.normalArray(n * dim, 2));
  const logvar = Float64Array.from(rng.uniformArray(n * dim, -3, 0.5));
  const labels = Array.from({ length: 10 }, (_, f) => labelsOf(rng, n, 2 + f));
  // Factor 0 follows dim 0 closely, so some information is there to be measured.
  for (let i = 0; i < n; i++) mu[i * dim] = 3 * labels[0][i] + 0.1 * rng.normal();
  const factors = labels.map((l) => indexFactor(l));
  const source = Uint32Array.from({ length: m }, () => rng.int(n));
  const eps = Float64Array.from(rng.normalArray(m * dim));
  const cpu = posteriorEntropies({ mu, logvar, dim }, factors, source, eps);
  const gpu = await posteriorEntropiesGpu({ mu, logvar, dim }, factors, source, eps);
  for (let k = 0; k < dim; k++) close(gpu.hx[k], cpu.hx[k], 2e-5, `H(X_${k})`);
  for (let j = 0; j < cpu.mi.length; j++) close(gpu.mi[j], cpu.mi[j], 2e-5, `I ${j}`);
  assert.ok(cpu.mi[0] > 0.5, `I(L_0; X_0) ${cpu.mi[0]}`);
});

Deno.test("posteriorEntropiesGpu: a subset that underflows in f32 falls back to float64", async () => {
  // Code 0 is wide (σ = 50) and alone in its label value; the sample drawn from it at ε = 8 lands
  // on 39 very narrow codes (σ = 1e-18), whose density there is ~78 nats above code 0's own: its
  // subset sum underflows against the shared f32 max and must be redone in f64.
  const n = 40, mu = new Float64Array(n).fill(400), sigma = new Float64Array(n).fill(1e-18);
  [mu[0], sigma[0]] = [0, 50];
  const lab = Int32Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 0));
  const factors = [indexFactor(lab)];
  const source = new Uint32Array([0, 1, 2]), eps = [8, 0, 0];
  const cpu = posteriorEntropies({ mu, sigma, dim: 1 }, factors, source, eps);
  const gpu = await posteriorEntropiesGpu({ mu, sigma, dim: 1 }, factors, source, eps);
  close(gpu.hxGivenL[0], cpu.hxGivenL[0], 1e-5 * Math.abs(cpu.hxGivenL[0]), "H(X|L)");
  close(gpu.hx[0], cpu.hx[0], 1e-5 * Math.abs(cpu.hx[0]), "H(X)");
  // σ whose 1/2σ² overflows f32 is refused rather than turned into NaN.
  sigma[1] = 1e-20;
  await assert.rejects(
    () => posteriorEntropiesGpu({ mu, sigma, dim: 1 }, factors, source, eps),
    /flowgpu: posteriorEntropiesGpu: code 1 dim 0 has σ 1e-20, too small for f32 \(use the CPU mig\)/,
  );
});

Deno.test("migGpu: same MIG as the CPU on the correlated-shapes ceiling case", async () => {
  const rng = new Rng(52), n = 2000;
  const f = [labelsOf(rng, n, 10), new Int32Array(n), labelsOf(rng, n, 4)];
  for (let i = 0; i < n; i++) f[1][i] = (f[0][i] + [0, 1, 9][rng.int(3)]) % 10;
  const names = ["floor", "wall", "shape"];
  const enc = names.map((name, j) => ({
    name,
    dim: 2,
    noise: 0.02,
    mu: copyCode([f[j], rng.normalArray(n)], [0, 1], 0.02, rng),
  }));
  const fac = names.map((name, j) => ({ name, labels: f[j], encoder: name, labeled: j !== 2 }));
  const cpu = mig(enc, fac), gpu = await migGpu(enc, fac);
  close(gpu.migAll, cpu.migAll, 1e-4, "MIG_all");
  close(gpu.migLab, cpu.migLab, 1e-4, "MIG_lab");
  gpu.factors.forEach((r, j) => assert.equal(r.rivalEncoder, cpu.factors[j].rivalEncoder));
  close(cpu.factors[0].rival, 1 - Math.log(3) / Math.log(10), 0.03, "floor's rival");
});

Deno.test("equalMassBuckets: equal counts, order kept, ties never split; feeds MIG", () => {
  const rng = new Rng(61), n = 2400;
  const v = Float64Array.from({ length: n }, () => rng.normal());
  const b = equalMassBuckets(v, 24);
  const counts = new Array(24).fill(0);
  for (const x of b) counts[x]++;
  assert.deepEqual(counts, new Array(24).fill(100));
  for (let i = 0; i < 50; i++) {
    const [p, q] = [rng.int(n), rng.int(n)];
    if (v[p] < v[q]) assert.ok(b[p] <= b[q]);
  }
  assert.deepEqual([...equalMassBuckets([5, 1, 1, 1, 2, 3], 3)], [2, 0, 0, 0, 1, 2]);
  assert.throws(
    () => equalMassBuckets([1, 2], 3),
    /flowgpu: equalMassBuckets: 2 values cannot fill 3 buckets/,
  );
  // A continuous factor, bucketed, copied into a code: Î ≈ 1 with the labelled-code noise.
  const code = Float64Array.from(b, (x) => x + 0.01 * rng.normal());
  const r = mutualInformation({ mu: code, dim: 1, noise: MIG_NOISE.labeled }, [b]);
  close(r.info[0], 1, 0.01, "bucketed copy");
});

Deno.test("posteriorEntropiesGpu: refuses more codes than one invocation may loop over; migGpu then uses the CPU", async () => {
  const { MAX_GPU_CODES } = await import("../src/eval/disentangle_gpu.ts");
  const n = MAX_GPU_CODES + 1;
  const mu = Float64Array.from({ length: n }, (_, i) => (i % 2) + 0.01 * Math.sin(i));
  const labels = Int32Array.from({ length: n }, (_, i) => i % 2);
  const f = [indexFactor(labels)];
  await assert.rejects(
    () => posteriorEntropiesGpu({ mu, noise: 0.05, dim: 1 }, f, new Uint32Array([0, 1]), [0, 0]),
    /60001 codes, more than the 60000 one invocation may loop over/,
  );
  // The factor is copied into the code: the CPU path behind migGpu finds it.
  const r = await migGpu(
    [{ name: "z", mu, sigma: new Float64Array(n).fill(0.05), dim: 1 }],
    [{ name: "parity", labels, encoder: "z" }],
    { samples: 200, seed: 3 },
  );
  assert.ok(r.encoders[0].info.info[0] > 0.9, `Î ${r.encoders[0].info.info[0]}`);
});

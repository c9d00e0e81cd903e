// FUNS's paper evaluation with in-project networks (glow-funs.md §4.3, §4.6): how well the
// condition can be read back from generated targets (Table 2: digit accuracy on MNIST-exemplar,
// the regressor's L2 error on CHC, beside the real-pair and shuffled-pair rows), whether swapping
// the condition-invariant latents keeps it, and FID- and LPIPS-like scores on the classifier's
// features. Absolute values are not comparable with the paper's; the orderings are.
import {
  CHC_FEATURES,
  chcErrors,
  chcFeatures,
  fitChcRegressor,
  l2Error,
} from "../eval/chc_regressor.ts";
import { characteristicLength } from "../data/chc_sim.ts";
import { digitClassifier } from "../eval/digits.ts";
import { diversity, type FeatureLayer, frechetDistance } from "../eval/metrics.ts";
import { clearTape } from "../ops/tape.ts";
import type { Tensor } from "../ops/tensor.ts";
import { Rng } from "../util/rng.ts";
import { ChcPairs, MnistExemplar } from "./funs_data.ts";
import type { FunsModel } from "./funs_task.ts";

const CHUNK = 100;

/** The paper's sampling temperatures (Table 2 has a row for each). */
export const EVAL_TEMPERATURES = [1, 0.8];

/**
 * For the first n test pairs: conditions, real targets, generated targets at each temperature,
 * and targets whose invariant latents were swapped with another pair's.
 */
async function generate(m: FunsModel, n: number, temps: number[]) {
  const d = m.test.size * m.test.size;
  const out = {
    c: new Float32Array(n * d),
    real: new Float32Array(n * d),
    gen: temps.map(() => new Float32Array(n * d)),
    swap: new Float32Array(n * d),
    partner: new Float32Array(n * d),
  };
  m.funs.training = false;
  try {
    for (let s = 0; s < n; s += CHUNK) {
      const k = Math.min(CHUNK, n - s);
      const idx = Uint32Array.from({ length: k }, (_, i) => s + i);
      // The partner of pair i is pair i + k/2 (mod k) of the same chunk: another condition.
      const other = idx.map((_, i) => s + ((i + (k >> 1)) % k));
      const a = m.pairBatch(m.test, idx, new Rng(5 + s)),
        b = m.pairBatch(m.test, other, new Rng(6 + s));
      // The same noise at every temperature, so the rows differ by T alone.
      const gens = temps.map((t) => {
        const rng = new Rng(4242 + s);
        return m.funs.sample(a.c, (q) => rng.normalArray(q), t);
      });
      const swap = await m.funs.swap(a.x, b.x);
      const parts: [Tensor, Float32Array][] = [
        [a.c, out.c],
        [a.x, out.real],
        ...gens.map((g, i): [Tensor, Float32Array] => [g, out.gen[i]]),
        [swap, out.swap],
        [b.x, out.partner],
      ];
      for (const [t, dst] of parts) dst.set(await t.read(), s * d);
      clearTape();
    }
  } finally {
    m.funs.training = true;
  }
  return out;
}

/** Indices of the images (of n in x) whose every value is finite. */
export function finiteImages(x: Float32Array, n: number): number[] {
  const d = x.length / n, out: number[] = [];
  for (let i = 0; i < n; i++) {
    let ok = true;
    for (let j = i * d; j < (i + 1) * d && ok; j++) ok = Number.isFinite(x[j]);
    if (ok) out.push(i);
  }
  return out;
}

/** The images `idx` of x, packed. */
function pick(x: Float32Array, n: number, idx: number[]): Float32Array {
  const d = x.length / n, out = new Float32Array(idx.length * d);
  idx.forEach((i, k) => out.set(x.subarray(i * d, (i + 1) * d), k * d));
  return out;
}

/** Metric-name suffix of temperature t: `_t1`, `_t0.8`. */
export function tempKey(t: number): string {
  return `_t${+t.toFixed(3)}`;
}

/**
 * Patch features of `n` single-channel images for the LPIPS-proxy on CHC (no pretrained net
 * exists for microstructures): every 2x2 and 4x4 block as a feature vector, so the distance
 * compares local patterns at two scales after unit-normalising each patch.
 */
export function patchLayers(x: Float32Array, n: number, size: number): FeatureLayer[] {
  return [2, 4].map((b) => {
    const per = size / b, pos = per * per, ch = b * b;
    const data = new Float32Array(n * ch * pos);
    for (let i = 0; i < n; i++) {
      for (let y = 0; y < size; y++) {
        for (let x0 = 0; x0 < size; x0++) {
          const k = (y % b) * b + (x0 % b), p = Math.floor(y / b) * per + Math.floor(x0 / b);
          data[(i * ch + k) * pos + p] = x[(i * size + y) * size + x0];
        }
      }
    }
    return { data, channels: ch, positions: pos };
  });
}

/** CHC features for the FID-proxy: the regressor's three statistics and the length scale. */
function chcStats(x: Float32Array, n: number, size: number): Float64Array {
  const f = chcFeatures(x, n), F = CHC_FEATURES.length, out = new Float64Array(n * F);
  const d = size * size;
  for (let i = 0; i < n; i++) {
    for (let j = 1; j < F; j++) out[i * F + j - 1] = f[i * F + j];
    out[i * F + F - 1] = characteristicLength(x.subarray(i * d, (i + 1) * d), size) / size;
  }
  return out;
}

function meanOf(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i];
  return s / v.length;
}

/**
 * Table 1–2 analogues over the first `evalLimit` test pairs, at each of the paper's sampling
 * temperatures: condition predictability (digit accuracy or the regressor's L2 error) of real,
 * generated and invariant-swapped targets, the shuffled-pair error, FID- and LPIPS-proxies.
 */
export async function funsPaperMetrics(m: FunsModel): Promise<Record<string, number>> {
  const n = Math.min(m.cfg.evalLimit, m.test.count);
  const temps = EVAL_TEMPERATURES;
  const g = await generate(m, n, temps);
  const metrics: Record<string, number> = { eval_pairs: n };
  // An undertrained flow's inverse can overflow on a few samples: they count as failures in the
  // accuracies and errors below (a non-finite prediction never matches), and are left out of the
  // distances and feature statistics, with their number reported.
  const okGen = g.gen.map((x) => finiteImages(x, n)), okSwap = finiteImages(g.swap, n);
  temps.forEach((t, i) => (metrics[`generated_nonfinite${tempKey(t)}`] = n - okGen[i].length));
  metrics.swapped_nonfinite = n - okSwap.length;
  const real = pick(g.real, n, okSwap);
  metrics.swap_change = l2Error(pick(g.swap, n, okSwap), real, okSwap.length);
  metrics.partner_distance = l2Error(pick(g.partner, n, okSwap), real, okSwap.length);
  if (m.test instanceof MnistExemplar) {
    const labels = m.test.labels.subarray(0, n);
    const clf = await digitClassifier();
    try {
      metrics.acc_real = await clf.accuracy(g.real, labels);
      const correct = async (x: Float32Array, ok: number[]) => {
        const sub = Uint8Array.from(ok, (i) => labels[i]);
        return ok.length ? (await clf.accuracy(pick(x, n, ok), sub)) * ok.length / n : 0;
      };
      metrics.acc_swapped = await correct(g.swap, okSwap);
      const fr = await clf.features(g.real, n), lr = await clf.featureLayers(g.real, n);
      metrics.lpips_proxy_real = diversity(lr);
      metrics.c_lpips_proxy_real = diversity(lr, { conditions: labels });
      for (const [i, t] of temps.entries()) {
        const k = tempKey(t), ok = okGen[i];
        metrics[`acc_generated${k}`] = await correct(g.gen[i], ok);
        if (ok.length < 2) continue;
        const gen = pick(g.gen[i], n, ok), genLabels = Uint8Array.from(ok, (j) => labels[j]);
        const fg = await clf.features(gen, ok.length);
        metrics[`fid_proxy${k}`] = frechetDistance(fr, fg, fr.length / n);
        const lg = await clf.featureLayers(gen, ok.length);
        metrics[`lpips_proxy_generated${k}`] = diversity(lg);
        metrics[`c_lpips_proxy_generated${k}`] = diversity(lg, { conditions: genLabels });
      }
    } finally {
      clf.release();
    }
  } else if (m.test instanceof ChcPairs) {
    const test = m.test, set = test.set, size = set.size, per = set.runs * set.snapshots;
    const ics = Uint32Array.from({ length: n }, (_, i) => Math.floor(test.pairs[i] / per));
    const reg = fitChcRegressor(set);
    const rows = chcErrors(set, reg, set.split.test);
    metrics.err_real_all = rows.real;
    metrics.err_shuffled = rows.shuffled;
    metrics.err_oracle = rows.oracle;
    metrics.err_real = l2Error(reg.predict(g.real, n), g.c, n);
    // Over the finite samples (their count is reported above).
    const err = (x: Float32Array, ok: number[]) =>
      l2Error(reg.predict(pick(x, n, ok), ok.length), pick(g.c, n, ok), ok.length);
    metrics.err_swapped = err(g.swap, okSwap);
    const fr = chcStats(g.real, n, size), lr = patchLayers(g.real, n, size);
    metrics.length_real = meanOf(Array.from({ length: n }, (_, i) => fr[i * 4 + 3] * size));
    metrics.lpips_proxy_real = diversity(lr);
    metrics.c_lpips_proxy_real = diversity(lr, { conditions: ics });
    for (const [i, t] of temps.entries()) {
      const k = tempKey(t), ok = okGen[i];
      metrics[`err_generated${k}`] = err(g.gen[i], ok);
      if (ok.length < 2) continue;
      const gen = pick(g.gen[i], n, ok), fg = chcStats(gen, ok.length, size);
      metrics[`fid_proxy${k}`] = frechetDistance(fr, fg, 4);
      metrics[`length_generated${k}`] = meanOf(
        Array.from({ length: ok.length }, (_, j) => fg[j * 4 + 3] * size),
      );
      const lg = patchLayers(gen, ok.length, size);
      metrics[`lpips_proxy_generated${k}`] = diversity(lg);
      metrics[`c_lpips_proxy_generated${k}`] = diversity(lg, {
        conditions: Uint32Array.from(ok, (j) => ics[j]),
      });
    }
  }
  return metrics;
}

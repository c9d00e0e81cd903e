// FUNS's paper evaluation with in-project networks (glow-funs.md §4.3, §4.6): how well the
// condition can be read back from generated targets (Table 2: digit accuracy on MNIST-exemplar,
// the regressor's L2 error on CHC, beside the real-pair and shuffled-pair rows), whether swapping
// the condition-invariant latents keeps it, and FID- and LPIPS-like scores on the classifier's
// features. Absolute values are not comparable with the paper's; the orderings are.
import { chcErrors, fitChcRegressor, l2Error } from "../eval/chc_regressor.ts";
import { digitClassifier } from "../eval/digits.ts";
import { diversity, frechetDistance } from "../eval/metrics.ts";
import { clearTape } from "../ops/tape.ts";
import type { Tensor } from "../ops/tensor.ts";
import { Rng } from "../util/rng.ts";
import { ChcPairs, MnistExemplar } from "./funs_data.ts";
import type { FunsModel } from "./funs_task.ts";

const CHUNK = 100;

/**
 * For the first n test pairs: conditions, real targets, generated targets at the model's
 * temperature, and targets whose invariant latents were swapped with another pair's.
 */
async function generate(m: FunsModel, n: number) {
  const d = m.test.size * m.test.size;
  const out = {
    c: new Float32Array(n * d),
    real: new Float32Array(n * d),
    gen: new Float32Array(n * d),
    swap: new Float32Array(n * d),
    partner: new Float32Array(n * d),
  };
  const rng = new Rng(4242), noise = (k: number) => rng.normalArray(k);
  m.funs.training = false;
  try {
    for (let s = 0; s < n; s += CHUNK) {
      const k = Math.min(CHUNK, n - s);
      const idx = Uint32Array.from({ length: k }, (_, i) => s + i);
      // The partner of pair i is pair i + k/2 (mod k) of the same chunk: another condition.
      const other = idx.map((_, i) => s + ((i + (k >> 1)) % k));
      const a = m.pairBatch(m.test, idx, new Rng(5 + s)),
        b = m.pairBatch(m.test, other, new Rng(6 + s));
      const gen = m.funs.sample(a.c, noise, m.cfg.temperature);
      const swap = await m.funs.swap(a.x, b.x);
      const parts: [Tensor, Float32Array][] = [
        [a.c, out.c],
        [a.x, out.real],
        [gen, out.gen],
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

export async function funsPaperMetrics(m: FunsModel): Promise<Record<string, number>> {
  const n = Math.min(m.cfg.evalLimit, m.test.count);
  const g = await generate(m, n);
  const metrics: Record<string, number> = { eval_pairs: n };
  // An undertrained flow's inverse can overflow on a few samples: they count as failures in the
  // accuracies and errors below (a non-finite prediction never matches), and are left out of the
  // distances and feature statistics, with their number reported.
  const okGen = finiteImages(g.gen, n), okSwap = finiteImages(g.swap, n);
  metrics.generated_nonfinite = n - okGen.length;
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
      metrics.acc_generated = await correct(g.gen, okGen);
      metrics.acc_swapped = await correct(g.swap, okSwap);
      const m = okGen.length, gen = pick(g.gen, n, okGen);
      const genLabels = Uint8Array.from(okGen, (i) => labels[i]);
      const fr = await clf.features(g.real, n), fg = await clf.features(gen, m);
      metrics.fid_proxy = frechetDistance(fr, fg, fr.length / n);
      const lr = await clf.featureLayers(g.real, n), lg = await clf.featureLayers(gen, m);
      metrics.lpips_proxy_real = diversity(lr);
      metrics.c_lpips_proxy_real = diversity(lr, { conditions: labels });
      metrics.lpips_proxy_generated = diversity(lg);
      metrics.c_lpips_proxy_generated = diversity(lg, { conditions: genLabels });
    } finally {
      clf.release();
    }
  } else if (m.test instanceof ChcPairs) {
    const set = m.test.set;
    const reg = fitChcRegressor(set);
    const rows = chcErrors(set, reg, set.split.test);
    metrics.err_real_all = rows.real;
    metrics.err_shuffled = rows.shuffled;
    metrics.err_real = l2Error(reg.predict(g.real, n), g.c, n);
    // Over the finite samples (their count is reported above).
    const err = (x: Float32Array, ok: number[]) =>
      l2Error(reg.predict(pick(x, n, ok), ok.length), pick(g.c, n, ok), ok.length);
    metrics.err_generated = err(g.gen, okGen);
    metrics.err_swapped = err(g.swap, okSwap);
  }
  return metrics;
}

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

/** Mean per-image Euclidean distance of two image sets on the [−1, 1] scale. */
function meanDistance(a: Float32Array, b: Float32Array, n: number): number {
  return l2Error(a, b, n);
}

export async function funsPaperMetrics(m: FunsModel): Promise<Record<string, number>> {
  const n = Math.min(m.cfg.evalLimit, m.test.count);
  const g = await generate(m, n);
  const metrics: Record<string, number> = { eval_pairs: n };
  metrics.swap_change = meanDistance(g.swap, g.real, n);
  metrics.partner_distance = meanDistance(g.partner, g.real, n);
  if (m.test instanceof MnistExemplar) {
    const labels = m.test.labels.subarray(0, n);
    const clf = await digitClassifier();
    try {
      metrics.acc_real = await clf.accuracy(g.real, labels);
      metrics.acc_generated = await clf.accuracy(g.gen, labels);
      metrics.acc_swapped = await clf.accuracy(g.swap, labels);
      const fr = await clf.features(g.real, n), fg = await clf.features(g.gen, n);
      metrics.fid_proxy = frechetDistance(fr, fg, fr.length / n);
      const lr = await clf.featureLayers(g.real, n), lg = await clf.featureLayers(g.gen, n);
      metrics.lpips_proxy_real = diversity(lr);
      metrics.c_lpips_proxy_real = diversity(lr, { conditions: labels });
      metrics.lpips_proxy_generated = diversity(lg);
      metrics.c_lpips_proxy_generated = diversity(lg, { conditions: labels });
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
    metrics.err_generated = l2Error(reg.predict(g.gen, n), g.c, n);
    metrics.err_swapped = l2Error(reg.predict(g.swap, n), g.c, n);
  }
  return metrics;
}

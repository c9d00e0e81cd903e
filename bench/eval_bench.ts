// The evaluation networks' calibration on real data (the "Real data" rows of glow-funs.md
// Tables 1-2, in our proxies), and the cost of the CPU metrics.
//   deno run -A bench/eval_bench.ts [--chc small]   digit classifier (trained and cached on first
//                                                   use), FID/LPIPS-proxies of real digits, CHC
//                                                   regressor errors on a CHC preset
//   deno bench -A bench/eval_bench.ts               the Fréchet distance at 64-d, 3168 images
import { parseArgs } from "node:util";
import { chcSplit, loadChc } from "../src/data/chc.ts";
import { loadMnist } from "../src/data/mnist.ts";
import { chcErrors, fitChcRegressor } from "../src/eval/chc_regressor.ts";
import { digitClassifier, digitInputs } from "../src/eval/digits.ts";
import { diversity, frechetDistance } from "../src/eval/metrics.ts";
import { initGpu } from "../src/gpu/mod.ts";
import { Rng } from "../src/util/rng.ts";

const f = (v: number, d = 3) => v.toFixed(d);

async function digits(): Promise<void> {
  const t0 = performance.now();
  const c = await digitClassifier();
  console.log(
    `digits: ready in ${f((performance.now() - t0) / 1000, 1)} s (${c.path}); ` +
      `recorded test accuracy ${f(c.testAccuracy, 4)}`,
  );
  const test = await loadMnist("test");
  const x = digitInputs(test.images);
  const t1 = performance.now();
  const acc = await c.accuracy(x, test.labels);
  const feats = await c.features(x, test.count);
  console.log(
    `digits: test accuracy ${f(acc, 4)} on ${test.count}; predict + features ${
      f((performance.now() - t1) / 1000, 1)
    } s`,
  );
  const half = (test.count / 2) * 64;
  console.log(
    `digits: FID-proxy test[:5000] vs test[5000:] ${
      f(frechetDistance(feats.subarray(0, half), feats.subarray(half), 64))
    }`,
  );
  const n = 2000;
  const layers = await c.featureLayers(x.subarray(0, n * 1024), n);
  const labels = test.labels.subarray(0, n);
  console.log(
    `digits: LPIPS-proxy of real test digits ${f(diversity(layers))}, same-class ${
      f(diversity(layers, { conditions: labels }))
    } (2000 pairs of the first ${n})`,
  );
  c.release();
}

async function chc(preset: string): Promise<void> {
  const set = await loadChc({ preset });
  const reg = fitChcRegressor(set);
  console.log(`chc ${preset}: regressor weights ${JSON.stringify(reg.toJSON())}`);
  const { val, test } = chcSplit(set.ics);
  const all = Array.from({ length: set.ics }, (_, i) => i);
  const sets: [string, number[]][] = [["test", test], ["val+test", [...val, ...test]], [
    "all",
    all,
  ]];
  for (const [name, ics] of sets) {
    const r = chcErrors(set, reg, ics);
    console.log(
      `chc ${preset} ${name} (${ics.length} ICs, ${r.pairs} pairs): real ${f(r.real)}, ` +
        `shuffled ${f(r.shuffled)}, ū-oracle ${f(r.oracle)}`,
    );
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { chc: { type: "string", default: "small" } } });
  await initGpu();
  await digits();
  await chc(values.chc!);
} else {
  const rng = new Rng(1);
  const a = rng.normalArray(3168 * 64), b = rng.normalArray(3168 * 64);
  Deno.bench("frechetDistance 64-d, 3168 vs 3168 images", { n: 3, warmup: 1 }, () => {
    frechetDistance(a, b, 64);
  });
}

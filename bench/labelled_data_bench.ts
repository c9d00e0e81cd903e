// Images per second of the labelled data sets (vae-disentangle.md §4), rendered on the CPU in one
// thread, a batch of 64 random indices at a time, after a warm-up batch (the first batch also
// pays for compiling the renderer).
//   deno run -A --no-check bench/labelled_data_bench.ts [--batches 10]   a table
//   deno bench -A --no-check bench/labelled_data_bench.ts                one case per set
import { parseArgs } from "node:util";
import { type LabelledOptions, type LabelledSet, labelledSet } from "../src/data/labelled.ts";
import { Rng } from "../src/util/rng.ts";
import { fmt, median } from "./util.ts";

const BATCH = 64;
const CASES: [string, string, LabelledOptions][] = [
  ["shapes2.5d 64px", "shapes2.5d", {}],
  ["shapes2.5d 32px", "shapes2.5d", { size: 32 }],
  ["shapes2.5d-corr 64px", "shapes2.5d-corr", {}],
  ["procchairs 64px (2x2 SSAA)", "procchairs", {}],
  ["procchairs 128px (2x2 SSAA)", "procchairs", { size: 128 }],
  ["glyph10 28px", "glyph10", {}],
  ["cmnist28", "cmnist28", {}],
  ["cmnist32", "cmnist32", {}],
];

/** Milliseconds of each of `batches` timed batches of 64 random images (after one warm-up). */
function timeBatches(set: LabelledSet, batches: number, seed = 1): number[] {
  const rng = new Rng(seed);
  const pick = () => Array.from({ length: BATCH }, () => rng.int(set.count));
  set.batch(pick());
  const ms: number[] = [];
  for (let b = 0; b < batches; b++) {
    const idx = pick();
    const t0 = performance.now();
    set.batch(idx);
    ms.push(performance.now() - t0);
  }
  return ms;
}

const sets = new Map<string, LabelledSet>();
for (const [label, name, opts] of CASES) sets.set(label, await labelledSet(name, opts));

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { batches: { type: "string", default: "10" } },
  });
  const batches = Number(values.batches);
  console.log(`labelled data: batches of ${BATCH} random images (floats in [-1, 1]), one thread`);
  for (const [label] of CASES) {
    const set = sets.get(label)!;
    const ms = timeBatches(set, batches);
    const med = median(ms);
    console.log(
      `  ${label.padEnd(30)} ${`${fmt(med)} ms / batch`.padStart(16)}` +
        `  ${`${fmt((BATCH * 1000) / med)} images/s`.padStart(18)}  (best ${
          fmt(Math.min(...ms))
        } ms)`,
    );
  }
} else {
  for (const [label] of CASES) {
    Deno.bench(`${label}: batch of ${BATCH}`, { n: 3, warmup: 1 }, () => {
      const ms = median(timeBatches(sets.get(label)!, 3));
      console.log(`${label}: ${fmt((BATCH * 1000) / ms)} images/s`);
    });
  }
}

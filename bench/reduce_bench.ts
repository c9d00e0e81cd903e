// Reduction throughput, each over 4M elements read once: the sum to one value, the per-channel
// sum of an NCHW tensor [32, 128, 32, 32] to [128], the per-sample sum of [32, 128, 32, 32] to
// [32] (a loss), and the sum over the batch of [256, 16384] to [16384] (the row-sum kernel, as
// split-K partials and bias gradients use it).
// `deno bench -A --no-check bench/reduce_bench.ts`
import { sync } from "../src/gpu/encoder.ts";
import { Rng } from "../src/data/rng.ts";
import { sum, sumBatch, sumPerChannel, sumPerSample } from "../src/ops/reduce.ts";
import { clearTape } from "../src/ops/tape.ts";
import { type Shape, Tensor } from "../src/ops/tensor.ts";
import { adapterLine, initBench, measure, rateLine } from "./util.ts";

await initBench(["reduce.wgsl"]);

const REPS = 20;

function input(shape: Shape, seed: number): Tensor {
  const t = Tensor.persistent(shape, "bench-input");
  const rng = new Rng(seed);
  const data = new Float32Array(t.size);
  for (let i = 0; i < data.length; i++) data[i] = rng.next() * 2 - 1;
  return t.write(data);
}

const flat = input([4 * 1024 * 1024], 1);
const nchw = input([32, 128, 32, 32], 2);
const rows = input([256, 16384], 3);

const cases: [string, () => void, number][] = [
  ["sum [4M] -> [1]", () => sum(flat), flat.size * 4],
  ["sumPerChannel [32,128,32,32] -> [128]", () => sumPerChannel(nchw), nchw.size * 4],
  ["sumPerSample [32,128,32,32] -> [32]", () => sumPerSample(nchw), nchw.size * 4],
  ["sumBatch [256,16384] -> [16384]", () => sumBatch(rows), rows.size * 4],
];

console.log(adapterLine());
for (const [name, op, bytes] of cases) {
  const once = () => {
    op();
    clearTape();
  };
  const t = await measure(once, { reps: REPS, trials: 5, warmup: 2 });
  console.log(rateLine(name, t, { bytes }));
  Deno.bench({
    name: `${name} x${REPS}, submit + wait`,
    n: 5,
    warmup: 1,
    async fn() {
      for (let i = 0; i < REPS; i++) once();
      await sync();
    },
  });
}

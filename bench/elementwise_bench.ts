// Elementwise throughput: out = a * b over 4M elements (two reads and one write per element).
// `deno bench -A --no-check bench/elementwise_bench.ts`
import { sync } from "../src/gpu/encoder.ts";
import { Rng } from "../src/data/rng.ts";
import { mul } from "../src/ops/elementwise.ts";
import { axpy, clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { adapterLine, initBench, measure, rateLine } from "./util.ts";

await initBench(["elementwise.wgsl"]);

const N = 4 * 1024 * 1024;
const REPS = 20;

function input(n: number, seed: number): Tensor {
  const rng = new Rng(seed);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = rng.next() * 2 - 1;
  // Persistent and without gradient: the tape neither records nor releases it.
  return Tensor.persistent([n], "bench-input").write(data);
}

const a = input(N, 1);
const b = input(N, 2);

// Each iteration releases its output, so the pool hands the same buffer back every time.
const mulOnce = () => {
  mul(a, b);
  clearTape();
};

console.log(adapterLine());
const t = await measure(mulOnce, { reps: REPS, trials: 5, warmup: 2 });
console.log(rateLine("mul [4M] (read 2, write 1)", t, { bytes: 3 * 4 * N }));
// The same traffic through the vec4 in-place kernel the tape uses for gradients: a ceiling for
// what a streaming kernel reaches on this adapter.
const y = input(N, 3);
const ta = await measure(() => axpy(y, a, 1e-3), { reps: REPS, trials: 5, warmup: 2 });
console.log(rateLine("axpy [4M] vec4 (read 2, write 1)", ta, { bytes: 3 * 4 * N }));

Deno.bench({
  name: `mul [4M] x${REPS}, submit + wait`,
  n: 5,
  warmup: 1,
  async fn() {
    for (let i = 0; i < REPS; i++) mulOnce();
    await sync();
  },
});

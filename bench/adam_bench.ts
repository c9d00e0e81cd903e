// Adam over 10M parameters in one group (one tensor, and a 342-tensor Glow-like split of the same
// count): Adam itself is one dispatch per group either way; the split adds the one axpy per
// tensor that backward spends handing each its gradient. Adam moves 28 B/param (read g, p, m, v;
// write p, m, v).
// `deno bench -A --no-check bench/adam_bench.ts`
import { sync } from "../src/gpu/encoder.ts";
import { Rng } from "../src/data/rng.ts";
import { Adam } from "../src/ops/adam.ts";
import { accumulate, clearTape } from "../src/ops/tape.ts";
import { ParamStore } from "../src/nn/store.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { adapterLine, initBench, measure, rateLine } from "./util.ts";

await initBench(["adam.wgsl", "elementwise.wgsl"]);

const N = 10 * 1024 * 1024;
const REPS = 5;
const rng = new Rng(1);

function setup(parts: number): { opt: Adam; step: () => void } {
  const size = Math.floor(N / parts);
  // One group of `parts` tensors: Adam's dispatches do not depend on how it is split.
  const store = new ParamStore(rng);
  const params = Array.from(
    { length: parts },
    (_, i) => store.scope("g").param(`p${i}`, [size], rng.normalArray(size, 0.1)),
  );
  const grads = params.map((p) => Tensor.constant(rng.normalArray(p.size), p.shape, `g${p.name}`));
  const opt = new Adam(store.groups(), { lr: 1e-3, clipNorm: 1 });
  const step = () => {
    params.forEach((p, i) => accumulate(p, grads[i]));
    opt.step();
    clearTape();
  };
  return { opt, step };
}

console.log(adapterLine());
for (const parts of [1, 342]) {
  const { step } = setup(parts);
  const t = await measure(step, { reps: REPS, trials: 3, warmup: 1 });
  console.log(rateLine(`adam + clip, 10M params in ${parts} tensor(s)`, t, { bytes: 28 * N }));
  Deno.bench({
    name: `adam + clip, 10M params in ${parts} tensor(s)`,
    n: 3,
    warmup: 1,
    async fn() {
      step();
      await sync();
    },
  });
}

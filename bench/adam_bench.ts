// Adam over 10M parameters (one tensor, plus a 342-tensor Glow-like split of the same count, to
// show the per-dispatch cost): bytes moved per step = read g, p, m, v + write p, m, v = 28 B/param.
// `deno bench -A --no-check bench/adam_bench.ts`
import { sync } from "../src/gpu/encoder.ts";
import { Rng } from "../src/data/rng.ts";
import { Adam } from "../src/ops/adam.ts";
import { clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { adapterLine, initBench, measure, rateLine } from "./util.ts";

await initBench(["adam.wgsl", "elementwise.wgsl"]);

const N = 10 * 1024 * 1024;
const REPS = 5;
const rng = new Rng(1);

function setup(parts: number): { opt: Adam; step: () => void } {
  const size = Math.floor(N / parts);
  const params = Array.from(
    { length: parts },
    (_, i) => Tensor.param(rng.normalArray(size, 0.1), [size], `p${i}`),
  );
  const grads = params.map((p) => Tensor.constant(rng.normalArray(p.size), p.shape, `g${p.name}`));
  const opt = new Adam(params, { lr: 1e-3, clipNorm: 1 });
  // step() releases the gradients; views of persistent ones leave the data in place.
  const step = () => {
    params.forEach((p, i) => (p.grad = Tensor.view(grads[i], p.shape, "grad")));
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

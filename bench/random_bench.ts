// GPU random numbers: uniform and normal draws of a million values (Philox-4x32-10 is ~300
// integer ops per four values, emulating its 32x32 -> 64-bit products), and reparameterize on a
// batch of codes, forward and forward + backward.
// `deno bench -A --no-check bench/random_bench.ts`
import { sync } from "../src/gpu/encoder.ts";
import { GpuRng, reparameterize } from "../src/ops/random.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { adapterLine, initBench, measure, rateLine } from "./util.ts";

await initBench(["random.wgsl", "reduce.wgsl", "elementwise.wgsl"]);

const REPS = 10;
const BIG = [1 << 20];
const [B, D] = [64, 100];

const rng = new Rng(1);
const gpuRng = new GpuRng(1);
// Parameters: persistent, with gradients, so that backward runs every closure.
const mu = Tensor.param(rng.normalArray(B * D, 1), [B, D], "mu");
const logvar = Tensor.param(rng.normalArray(B * D, 0.3), [B, D], "logvar");

const draws: [string, () => Tensor][] = [
  [`uniform [${BIG}]`, () => gpuRng.uniform(BIG)],
  [`normal [${BIG}]`, () => gpuRng.normal(BIG)],
];
const once = (f: () => Tensor, grad: boolean) => () => {
  const y = f();
  if (grad) backward(y);
  else clearTape();
  mu.zeroGrad();
  logvar.zeroGrad();
};

console.log(adapterLine());
for (const [name, f] of draws) {
  const t = await measure(once(f, false), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(name, t, { bytes: 4 * BIG[0] }));
}
const rep = () => reparameterize(mu, logvar, gpuRng);
const tf = await measure(once(rep, false), { reps: REPS, trials: 3, warmup: 2 });
console.log(rateLine(`reparameterize [${B},${D}] fwd`, tf, { bytes: 4 * 4 * B * D }));
const tb = await measure(once(rep, true), { reps: REPS, trials: 3, warmup: 2 });
console.log(rateLine(`reparameterize [${B},${D}] fwd+bwd`, tb, {}));

for (
  const [name, f, grad] of [
    ...draws.map(([n, f]) => [n, f, false] as const),
    [
      `reparameterize [${B},${D}] fwd+bwd`,
      rep,
      true,
    ] as const,
  ]
) {
  Deno.bench({
    name: `${name} x${REPS}, submit + wait`,
    n: 3,
    warmup: 1,
    async fn() {
      for (let i = 0; i < REPS; i++) once(f, grad)();
      await sync();
    },
  });
}

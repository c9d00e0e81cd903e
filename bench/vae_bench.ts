// One VAE training step (forward, backward, Adam; the batch already on the GPU, eps drawn there)
// at the task's CPU defaults (Shapes2.5D 32x32x3 and MNIST 28x28, channel scale 8/32, batch 32)
// and at the spec's sizes (vae-disentangle.md §1.3, 64x64x3, batch 8 to keep lavapipe brief);
// plus the CPU time to render a Shapes2.5D batch, which the step waits for.
// `deno bench -A --no-check bench/vae_bench.ts`
import { sync } from "../src/gpu/encoder.ts";
import { labelledSet } from "../src/data/labelled.ts";
import { Vae } from "../src/models/vae.ts";
import { ParamStore } from "../src/nn/store.ts";
import { Adam } from "../src/ops/adam.ts";
import { GpuRng } from "../src/ops/random.ts";
import { backward } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { adapterLine, fmt, initBench, measure, rateLine } from "./util.ts";

await initBench([
  "conv.wgsl",
  "reduce.wgsl",
  "elementwise.wgsl",
  "matmul.wgsl",
  "divergence.wgsl",
  "random.wgsl",
  "adam.wgsl",
  "shape.wgsl",
]);

// [label, channels, size, width, batch, reps]
const configs: [string, number, number, number, number, number][] = [
  ["shapes2.5d 3x32x32 width 8 (cpu default)", 3, 32, 8, 32, 3],
  ["mnist 1x28x28 width 8 (cpu default)", 1, 28, 8, 32, 3],
  ["spec 3x64x64 width 32", 3, 64, 32, 8, 1],
];

console.log(adapterLine());
const steps: [string, () => void][] = [];
for (const [label, c, size, width, batch, reps] of configs) {
  const store = new ParamStore(1);
  const vae = new Vae(store.scope(), { channels: c, size, latents: 10, width });
  const adam = new Adam(store.groups(), { lr: 1e-4 });
  const rng = new Rng(2);
  const x = Tensor.constant(
    rng.uniformArray(batch * c * size * size, -1, 1),
    [batch, c, size, size],
    "x",
  );
  const noise = new GpuRng(3);
  const step = () => {
    const { loss } = vae.loss(x, noise);
    backward(loss, { params: adam.params });
    adam.step();
  };
  const t = await measure(step, { reps, trials: 3, warmup: 1 });
  const params = store.count().toLocaleString("en");
  console.log(rateLine(`vae step ${label} N=${batch} (${params} params)`, t, {}));
  steps.push([`${label} N=${batch}`, step]);
}

const shapes = await labelledSet("shapes2.5d", { size: 32 });
const pick = new Rng(4).permutation(shapes.count).subarray(0, 32);
shapes.batch(pick);
const t0 = performance.now();
for (let i = 0; i < 5; i++) shapes.batch(pick);
console.log(
  `shapes2.5d 32x32 batch of 32, render on the CPU: ${fmt((performance.now() - t0) / 5)} ms`,
);

for (const [label, step] of steps) {
  Deno.bench({
    name: `vae training step ${label}, submit + wait`,
    n: 3,
    warmup: 1,
    async fn() {
      step();
      await sync();
    },
  });
}

// One Glow training step (forward, backward, Adam) at the calibration configuration:
// K=8, L=3, width 128, batch 32, 32x32x1 MNIST. Reports images/s.
import { initGpu } from "../src/gpu/mod.ts";
import { sync } from "../src/gpu/encoder.ts";
import { loadMnist } from "../src/data/mnist.ts";
import { cpuPreset } from "../src/train/config.ts";
import { GlowTrainer } from "../src/train/glow_trainer.ts";

await initGpu();
const m = await loadMnist("train", { limit: 1024 });
for (const width of [128, 64]) {
  const cfg = { ...cpuPreset, width, depth: 8, levels: 3, batch: 32 };
  const t = new GlowTrainer(cfg, { ...m, channels: 1 });
  t.initialize();
  await t.trainStep(); // compile pipelines, fill the pool
  await sync();
  Deno.bench(`glow train step K=8 L=3 width ${width} batch 32`, { n: 3, warmup: 1 }, async (b) => {
    b.start();
    const t0 = performance.now();
    await t.trainStep();
    b.end();
    console.log(
      `  width ${width}: ${(32 / ((performance.now() - t0) / 1000)).toFixed(1)} images/s`,
    );
  });
}

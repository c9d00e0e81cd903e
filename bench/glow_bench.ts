// One Glow training step (forward, backward, Adam) at the calibration configuration:
// K=8, L=3, width 128, batch 32, 32x32x1 MNIST; also width 64 (the default run). Reports
// images/s. Each step is encoded whole and submitted once; the bench waits for it.
import { initGpu } from "../src/gpu/mod.ts";
import { sync } from "../src/gpu/encoder.ts";
import { parseTrain } from "../src/train/cli.ts";
import { Session } from "../src/train/trainer.ts";

await initGpu();
for (const width of [128, 64]) {
  const { task, cfg } = parseTrain(["--width", String(width), "--train-limit", "1024"]);
  const s = new Session(task, cfg, await task.build(cfg, "train"));
  s.model.init?.();
  s.trainStep(); // compile pipelines, fill the pool
  await sync();
  Deno.bench(`glow train step K=8 L=3 width ${width} batch 32`, { n: 5, warmup: 1 }, async (b) => {
    b.start();
    const t0 = performance.now();
    s.trainStep();
    await sync();
    b.end();
    console.log(
      `  width ${width}: ${(32 / ((performance.now() - t0) / 1000)).toFixed(1)} images/s`,
    );
  });
}

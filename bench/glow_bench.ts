// One Glow training step (forward, backward, Adam) at the calibration configuration:
// K=8, L=3, width 128, batch 32, 32x32x1 MNIST; also width 64 (the default run). Reports
// images/s. Each step is encoded whole and submitted once; the bench waits for it.
import { glowSession } from "./glow_session.ts";

for (const width of [128, 64]) {
  const { step } = await glowSession(["--width", String(width), "--train-limit", "1024"]);
  await step(); // compile pipelines, fill the pool
  Deno.bench(`glow train step K=8 L=3 width ${width} batch 32`, { n: 5, warmup: 1 }, async (b) => {
    b.start();
    const t0 = performance.now();
    await step();
    b.end();
    console.log(
      `  width ${width}: ${(32 / ((performance.now() - t0) / 1000)).toFixed(1)} images/s`,
    );
  });
}

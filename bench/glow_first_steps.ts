// The default Glow run's first 50 steps, bits/dim per step, against the figures the first
// trainer recorded (bench/glow_first50_before.json, same seed and configuration): the move onto
// the model platform must not change the training it does.
//   deno run -A bench/glow_first_steps.ts
import { initGpu } from "../src/gpu/mod.ts";
import { parseTrain } from "../src/train/cli.ts";
import { GpuMetrics } from "../src/train/metrics.ts";
import { Session } from "../src/train/trainer.ts";

await initGpu();
const { task, cfg } = parseTrain([]);
const s = new Session(task, cfg, await task.build(cfg, "train"));
s.model.init?.();
const before: number[] = JSON.parse(
  Deno.readTextFileSync(new URL("./glow_first50_before.json", import.meta.url)),
);
const metrics = new GpuMetrics();
let worst = 0;
for (let i = 0; i < 50; i++) {
  s.trainStep(metrics);
  const bpd = (await metrics.read()).get("bpd")!.last;
  worst = Math.max(worst, Math.abs(bpd - before[i]));
  console.log(`step ${i + 1}: bpd ${bpd.toFixed(6)} (before ${before[i].toFixed(6)})`);
}
console.log(`largest |difference| over 50 steps: ${worst.toExponential(2)} bits/dim`);

import { enableProfiling, initGpu, profileReport, resetProfile } from "./src/gpu/mod.ts";
import { sync } from "./src/gpu/encoder.ts";
import { GlowTrainer } from "./src/train/glow_trainer.ts";
import { cpuPreset } from "./src/train/config.ts";
import { loadMnist } from "./src/data/mnist.ts";
await initGpu();
const m = await loadMnist("train", { limit: 2000 });
const set = {
  images: m.images,
  labels: m.labels,
  count: m.count,
  channels: 1,
  height: 32,
  width: 32,
};
const cfg = {
  ...cpuPreset,
  width: Number(Deno.args[0] ?? 64),
  depth: Number(Deno.args[1] ?? 8),
  batch: Number(Deno.args[2] ?? 32),
};
const t = new GlowTrainer(cfg, set);
t.initialize();
await sync();
await t.trainStep();
let t0 = performance.now();
await t.trainStep();
console.log("plain step ms", (performance.now() - t0).toFixed(0));
enableProfiling();
resetProfile();
t0 = performance.now();
await t.trainStep();
console.log("profiled step ms", (performance.now() - t0).toFixed(0));
console.log(await profileReport(Number(Deno.args[3] ?? 12)));

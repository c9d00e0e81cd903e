// Median step time of the default Glow at a width (default 128), 12 timed steps after two warm
// ones: steadier than a few samples on a CPU driver whose step times swing by a third.
//   deno run -A bench/glow_ab.ts [WIDTH]
import process from "node:process";
import { glowSession } from "./glow_session.ts";

const width = Number(Deno.args[0] ?? 128);
const { step } = await glowSession(["--width", String(width), "--train-limit", "1024"]);
await step();
await step();
const ms: number[] = [];
const cpu0 = process.cpuUsage();
const wall0 = performance.now();
for (let i = 0; i < 12; i++) {
  const t0 = performance.now();
  await step();
  ms.push(performance.now() - t0);
}
ms.sort((a, b) => a - b);
const cpu = process.cpuUsage(cpu0);
const cpuMs = (cpu.user + cpu.system) / 1000 / 12;
console.log(
  `cpu per step ${cpuMs.toFixed(0)} ms (all threads), wall mean ${
    ((performance.now() - wall0) / 12).toFixed(0)
  } ms`,
);
console.log(
  `width ${width}: median ${ms[6].toFixed(0)} ms (min ${ms[0].toFixed(0)}), ${
    (32000 / ms[6]).toFixed(1)
  } images/s`,
);

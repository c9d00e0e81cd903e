// Per-kernel GPU time of one Glow training step (timestamp queries, see src/gpu/profile.ts).
//   deno run -A bench/profile_step.ts [--width 64] [--depth 8] [--levels 3] [--batch 32] [--top 30]
import { parseArgs } from "node:util";
import { enableProfiling, profileReport, resetProfile } from "../src/gpu/mod.ts";
import { glowSession } from "./glow_session.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    width: { type: "string", default: "64" },
    depth: { type: "string", default: "8" },
    levels: { type: "string", default: "3" },
    batch: { type: "string", default: "32" },
    top: { type: "string", default: "30" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log(
    "usage: deno run -A bench/profile_step.ts [--width N] [--depth K] [--levels L] [--batch N] [--top N]",
  );
  Deno.exit(0);
}
const { s, step } = await glowSession([
  ...["--width", values.width!, "--depth", values.depth!, "--levels", values.levels!],
  ...["--batch", values.batch!, "--train-limit", "2000"],
]);
const cfg = s.cfg;
await step();
let t0 = performance.now();
await step();
const ms = performance.now() - t0;
console.log(`step: ${ms.toFixed(0)} ms, ${(cfg.batch / ms * 1000).toFixed(1)} images/s`);
enableProfiling();
resetProfile();
t0 = performance.now();
await step();
console.log(`profiled step (passes serialised): ${(performance.now() - t0).toFixed(0)} ms`);
console.log(await profileReport(Number(values.top)));

// Per-kernel GPU time of one training step of any task (timestamp queries, see src/gpu/profile.ts).
//   deno run -A bench/profile_step.ts [--top 30] [-- <train flags>]
// Without train flags it profiles the default Glow step at width 64, depth 8, 3 levels, batch 32;
// e.g. `-- --model funs --data chc` profiles the FUNS step.
import { parseArgs } from "node:util";
import { enableProfiling, profileReport, resetProfile } from "../src/gpu/mod.ts";
import { glowSession } from "./glow_session.ts";

const split = Deno.args.indexOf("--");
const own = split < 0 ? Deno.args : Deno.args.slice(0, split);
const train = split < 0 ? [] : Deno.args.slice(split + 1);
const { values } = parseArgs({
  args: own,
  options: { top: { type: "string", default: "30" }, help: { type: "boolean", short: "h" } },
});
if (values.help) {
  console.log("usage: deno run -A bench/profile_step.ts [--top N] [-- <deno task train flags>]");
  Deno.exit(0);
}
const flags = train.length > 0 ? train : [
  ...["--width", "64", "--depth", "8", "--levels", "3", "--batch", "32", "--train-limit", "2000"],
];
const { s, step } = await glowSession(flags);
const batch = (s.cfg as { batch: number }).batch;
await step();
let t0 = performance.now();
await step();
const ms = performance.now() - t0;
console.log(`step: ${ms.toFixed(0)} ms, ${(batch / ms * 1000).toFixed(1)} examples/s`);
enableProfiling();
resetProfile();
t0 = performance.now();
await step();
console.log(`profiled step (passes serialised): ${(performance.now() - t0).toFixed(0)} ms`);
console.log(await profileReport(Number(values.top)));

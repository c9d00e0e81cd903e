// Cahn-Hilliard-Cook site-updates per second: the GPU stepper on a batch of 64x64 trajectories
// (two dispatches per step, all steps of a measurement in one submit) beside a plain TypeScript
// Euler loop of the same scheme and noise on one field.
//   deno run -A bench/chc_bench.ts [--batch 256 --steps 500]   prints the two side by side
//   deno bench -A bench/chc_bench.ts                            the same two as Deno.bench cases
import { parseArgs } from "node:util";
import { initGpu } from "../src/gpu/mod.ts";
import {
  ChcBatch,
  type ChcPhysics,
  initialCondition,
  referenceSteps,
  trajectorySeed,
} from "../src/data/chc_sim.ts";

const phys: ChcPhysics = { size: 64, gamma: 1.5, sigma: 2, dt: 0.01 };
const plane = phys.size * phys.size;

function gpuBatch(batch: number): ChcBatch {
  const u0 = new Float32Array(batch * plane);
  const seeds = new Uint32Array(2 * batch);
  for (let t = 0; t < batch; t++) {
    u0.set(initialCondition(1, t, phys.size, 0.25, 0.4).u, t * plane);
    seeds.set(trajectorySeed(1, t, 0), 2 * t);
  }
  return new ChcBatch(phys, u0, seeds);
}

/** GPU site-updates/s of `steps` steps of `batch` trajectories, submitted once. */
async function gpuRate(batch: number, steps: number): Promise<number> {
  const sim = gpuBatch(batch);
  sim.advance(20); // pipelines, bind groups and uniforms made outside the timing
  await sim.read();
  const t0 = performance.now();
  sim.advance(steps);
  await sim.read();
  const sec = (performance.now() - t0) / 1000;
  sim.release();
  return (batch * plane * steps) / sec;
}

/** TypeScript site-updates/s of `steps` float64 steps of one field. */
function cpuRate(steps: number): number {
  const field = Float64Array.from(initialCondition(1, 0, phys.size, 0.25, 0.4).u);
  referenceSteps(field, phys, trajectorySeed(1, 0, 0), 10);
  const t0 = performance.now();
  referenceSteps(field, phys, trajectorySeed(1, 0, 0), steps, 10);
  return (plane * steps) / ((performance.now() - t0) / 1000);
}

await initGpu();
const m = (x: number) => `${(x / 1e6).toFixed(1)}M`;

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      batch: { type: "string", default: "256" },
      steps: { type: "string", default: "500" },
    },
  });
  const batch = Number(values.batch), steps = Number(values.steps);
  const gpu = await gpuRate(batch, steps);
  const cpu = cpuRate(200);
  const total = 320 * 9000 * plane;
  console.log(`chc site-updates/s (64x64, γ=1.5, σ=2, Δt=0.01, noise on)`);
  console.log(`  GPU, ${batch} trajectories x ${steps} steps in one submit: ${m(gpu)}/s`);
  console.log(`  TypeScript float64 loop, one field:                 ${m(cpu)}/s`);
  console.log(`  GPU / TypeScript: ${(gpu / cpu).toFixed(1)}x`);
  console.log(
    `  the small preset (40 x 8 trajectories x 9000 steps) at these rates: ` +
      `${(total / gpu).toFixed(0)} s on the GPU, ${
        (total / cpu / 60).toFixed(0)
      } min in TypeScript`,
  );
} else {
  Deno.bench("chc GPU: 64 trajectories x 100 steps", { n: 3, warmup: 1 }, async () => {
    console.log(`chc GPU ${m(await gpuRate(64, 100))} site-updates/s`);
  });
  Deno.bench("chc TypeScript: one field x 20 steps", { n: 3, warmup: 1 }, () => {
    console.log(`chc TypeScript ${m(cpuRate(20))} site-updates/s`);
  });
}

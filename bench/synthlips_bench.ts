// Frames per second of the SynthLips renderer (af-mi-flow.md §5.2) on the CPU, one thread: whole
// clips (29 frames with their pixel noise), random frames of random training clips (what
// frame-level Glow / MI training draws), and the painting re-render, at 64x64 and 32x32.
//   deno run -A --no-check bench/synthlips_bench.ts [--reps 5]   a table
//   deno bench -A --no-check bench/synthlips_bench.ts             one case per row
import { parseArgs } from "node:util";
import { type SynthLips, synthLips } from "../src/data/synthlips.ts";
import { Rng } from "../src/util/rng.ts";
import { fmt, median } from "./util.ts";

const BATCH = 64; // random frames per batch

interface Case {
  label: string;
  size: 32 | 64;
  /** Frames rendered by one call of `run`. */
  frames: number;
  run(set: SynthLips, rng: Rng): void;
}

const clipCase = (size: 32 | 64): Case => ({
  label: `clip of 29 frames, ${size}px`,
  size,
  frames: 29,
  run: (set, rng) => {
    set.renderClip(set.clipAt("train", rng.int(set.clipCount("train"))));
  },
});

const framesCase = (size: 32 | 64): Case => ({
  label: `${BATCH} random train frames, ${size}px`,
  size,
  frames: BATCH,
  run: (set, rng) => {
    const n = set.frameCount("train");
    set.renderFrames("train", Array.from({ length: BATCH }, () => rng.int(n)));
  },
});

const paintingCase = (size: 32 | 64): Case => ({
  label: `painting clip (test ids), ${size}px`,
  size,
  frames: 29,
  run: (set, rng) => {
    set.renderClip(set.clipAt("test", rng.int(set.clipCount("test"))), { style: "painting" });
  },
});

const CASES: Case[] = [64, 32].flatMap((s) => {
  const size = s as 32 | 64;
  return [clipCase(size), framesCase(size), paintingCase(size)];
});

const sets = new Map<number, SynthLips>();
for (const size of [64, 32]) sets.set(size, await synthLips({ size }));

/** Milliseconds of each of `reps` timed calls (after one warm-up call that compiles the code). */
function time(c: Case, reps: number): number[] {
  const set = sets.get(c.size)!, rng = new Rng(7);
  c.run(set, rng);
  const ms: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    c.run(set, rng);
    ms.push(performance.now() - t0);
  }
  return ms;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { reps: { type: "string", default: "5" } },
  });
  const reps = Number(values.reps);
  console.log("synthlips: CPU renderer, one thread, 4x4 supersampling");
  for (const c of CASES) {
    const ms = time(c, reps), med = median(ms);
    console.log(
      `  ${c.label.padEnd(36)} ${`${fmt(med)} ms`.padStart(10)}` +
        `  ${`${fmt((c.frames * 1000) / med)} frames/s`.padStart(18)}  (best ${
          fmt(Math.min(...ms))
        } ms)`,
    );
  }
} else {
  for (const c of CASES) {
    Deno.bench(c.label, { n: 3, warmup: 1 }, () => {
      const ms = median(time(c, 3));
      console.log(`${c.label}: ${fmt((c.frames * 1000) / ms)} frames/s`);
    });
  }
}

// `deno task data <name> [flags]` generates (or verifies) a data set's cache. Each data set is
// one entry of `datasets`: its help text and a run function taking the remaining arguments.
import { parseArgs } from "node:util";
import { join } from "node:path";
import { initGpu } from "../gpu/mod.ts";
import { imageGrid, writePng } from "../train/png.ts";
import { CHC_PRESETS, chcLengths, type ChcProgress, type ChcSet, loadChc } from "./chc.ts";

interface Dataset {
  summary: string;
  help: string;
  run(args: string[]): Promise<void>;
}

const fmtTime = (s: number) =>
  s >= 3600
    ? `${(s / 3600).toFixed(1)} h`
    : s >= 60
    ? `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s`
    : `${s.toFixed(1)} s`;

function progressLine(p: ChcProgress): void {
  const line = `chc: ${p.done.toFixed(1)}/${p.total} trajectories, ` +
    `${(p.siteUpdatesPerSec / 1e6).toFixed(1)}M site-updates/s, ` +
    `${fmtTime(p.elapsed)} elapsed, ETA ${fmtTime(p.eta)}`;
  Deno.stdout.writeSync(new TextEncoder().encode(`\r${line.padEnd(90)}`));
}

/** Rows of `perRow` ICs, each IC as its condition beside the K snapshots of its first run. */
async function chcPreview(set: ChcSet, count: number, perRow = 2): Promise<Uint8Array> {
  const plane = set.size * set.size, K = set.snapshots;
  const n = Math.min(count, set.ics);
  const tiles = new Uint8Array(n * (K + 1) * plane);
  for (let i = 0; i < n; i++) {
    tiles.set(set.conditions.subarray(i * plane, (i + 1) * plane), i * (K + 1) * plane);
    const first = i * set.runs * K * plane;
    tiles.set(set.targets.subarray(first, first + K * plane), (i * (K + 1) + 1) * plane);
  }
  const cols = Math.min(perRow, n) * (K + 1);
  return await imageGrid(tiles, n * (K + 1), 1, set.size, set.size, cols);
}

const chc: Dataset = {
  summary: "Cahn-Hilliard-Cook microstructures (glow-funs.md §3.1), generated on the GPU",
  help: `usage: deno task data chc [options]

Simulates ICS initial conditions x RUNS noise realisations for STEPS explicit Euler steps on a
periodic SIZE x SIZE grid and caches the 8-bit snapshots (every SNAPSHOT-EVERY steps) in OUT with
a manifest; a valid cache is only verified, a cache with other parameters is regenerated.

  --preset NAME          ${
    Object.keys(CHC_PRESETS).join(" | ")
  } (default small: ${CHC_PRESETS.small.ics} x ${CHC_PRESETS.small.runs}; full: ${CHC_PRESETS.full.ics} x ${CHC_PRESETS.full.runs})
  --ics N                initial conditions
  --runs R               noise realisations per initial condition
  --steps N              Euler steps per trajectory (default 9000)
  --snapshot-every N     steps between snapshots (default 1000: 9 snapshots)
  --size N               grid side, a multiple of 4 (default 64)
  --seed N               base seed; trajectory (ic, run) uses hash(seed, ic, run)
  --batch N              trajectories advanced together on the GPU (default 512)
  --out DIR              cache folder (default data/chc-<preset>)
  --force                regenerate even if the cache is valid
`,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        preset: { type: "string", default: "small" },
        ics: { type: "string" },
        runs: { type: "string" },
        steps: { type: "string" },
        "snapshot-every": { type: "string" },
        size: { type: "string" },
        seed: { type: "string" },
        batch: { type: "string" },
        out: { type: "string" },
        force: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
    if (values.help) return console.log(this.help);
    if (positionals.length) {
      throw new Error(`flowgpu: unexpected argument '${positionals[0]}' (see --help)`);
    }
    const int = (name: string, v: string | undefined) => {
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!Number.isInteger(n)) throw new Error(`flowgpu: --${name} needs an integer, got '${v}'`);
      return n;
    };
    await initGpu();
    const dir = values.out ?? `data/chc-${values.preset}`;
    const set = await loadChc({
      preset: values.preset,
      dir,
      ics: int("ics", values.ics),
      runs: int("runs", values.runs),
      steps: int("steps", values.steps),
      snapshotEvery: int("snapshot-every", values["snapshot-every"]),
      size: int("size", values.size),
      seed: int("seed", values.seed),
      batch: int("batch", values.batch),
      force: values.force,
      onProgress: progressLine,
    });
    if (set.generated) {
      console.log(
        `\nchc: generated in ${fmtTime(set.speed.seconds)}, ` +
          `${(set.speed.siteUpdatesPerSec / 1e6).toFixed(1)}M site-updates/s`,
      );
    } else console.log(`chc: cache ${dir} is valid (checksums verified); nothing to generate`);
    const { train, val, test } = set.split;
    console.log(
      `chc: ${set.ics} ICs x ${set.runs} runs x ${set.snapshots} snapshots = ` +
        `${set.ics * set.runs * set.snapshots} pairs; split ${train.length}/${val.length}/` +
        `${test.length} ICs (train/val/test)`,
    );
    const lengths = chcLengths(set);
    if (lengths.every(Number.isFinite)) {
      console.log(
        `chc: characteristic length per snapshot (|ū| <= 0.1, px): ${
          lengths.map((l) => l.toFixed(1)).join(" ")
        }`,
      );
    }
    const png = join(dir, "preview.png");
    writePng(png, await chcPreview(set, 8));
    console.log(`chc: preview ${png} (each row: condition, then its ${set.snapshots} snapshots)`);
  },
};

/** Every data set `deno task data` can make, by name. */
export const datasets: Record<string, Dataset> = { chc };

function usage(): string {
  const list = Object.entries(datasets).map(([n, d]) => `  ${n.padEnd(8)} ${d.summary}`);
  return `usage: deno task data NAME [options]   (NAME --help for its options)\n\ndata sets:\n${
    list.join("\n")
  }`;
}

if (import.meta.main) {
  const [name, ...rest] = Deno.args;
  if (!name || name === "--help" || name === "-h") console.log(usage());
  else if (!datasets[name]) {
    console.error(`flowgpu: unknown data set '${name}'\n${usage()}`);
    Deno.exit(2);
  } else {
    try {
      await datasets[name].run(rest);
    } catch (e) {
      console.error(e instanceof Error ? e.message : e);
      Deno.exit(1);
    }
  }
}

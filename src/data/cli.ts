// `deno task data <name> [flags]` generates (or verifies) a data set's cache, or, for the
// labelled sets that are rendered on the fly (vae-disentangle.md §4), writes a preview grid with
// its factors. Each data set is one entry of `datasets`: its help text and a run function taking
// the remaining arguments.
import { parseArgs } from "node:util";
import { join } from "node:path";
import { initGpu } from "../gpu/mod.ts";
import { imageGrid, writePng } from "../train/png.ts";
import { Rng } from "../util/rng.ts";
import { writeCache } from "./cache.ts";
import { CHC_PRESETS, chcLengths, type ChcProgress, type ChcSet, loadChc } from "./chc.ts";
import { type LabelledOptions, type LabelledSet, labelledSet } from "./labelled.ts";
import {
  type SynthLips,
  synthLips,
  SYNTHLIPS_SPLITS,
  type SynthLipsClip,
  type SynthLipsSplit,
  type SynthLipsStyle,
  VISEMES,
} from "./synthlips.ts";

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

// ---- labelled sets: previews ----

/** At most this many columns in a preview (a factor with more values shows an even spread). */
const PREVIEW_COLS = 16;
const GAP = 96; // the grid's gap grey, so a blank tile reads as no image

/** A preview: tiles (row-major, `cols` per row, blanks as undefined) and caption lines. */
interface Preview {
  tiles: (number | undefined)[];
  cols: number;
  caption: string[];
}

const meaningOf = (set: LabelledSet, k: number, v: number) => {
  const m = set.factors[k].meaning?.[v];
  return m === undefined ? `${v}` : `${v} (${m})`;
};

/**
 * For sets holding every factor combination once: one row per factor, sweeping its values from
 * a random base image while the others stay fixed.
 */
function traversalPreview(set: LabelledSet, seed: number): Preview {
  const nf = set.factors.length;
  const base = set.labels([new Rng(seed).int(set.count)]);
  const tiles: (number | undefined)[] = [];
  const caption = [
    `${set.name}: one row per factor; each row sweeps that factor from the base image, the ` +
    `others fixed at ${set.factors.map((f, k) => `${f.name}=${base[k]}`).join(" ")}`,
  ];
  set.factors.forEach((f, k) => {
    const n = Math.min(f.size, PREVIEW_COLS);
    const values = Array.from(
      { length: n },
      (_, c) => n === f.size ? c : Math.round((c * (f.size - 1)) / (n - 1)),
    );
    // A value that leaves the set (the correlated subset's floor/wall pairs) is skipped.
    const shown: number[] = [];
    for (const v of values) {
      const f2 = Array.from(base.subarray(0, nf));
      f2[k] = v;
      try {
        tiles.push(set.indexOf!(f2));
        shown.push(v);
      } catch {
        continue;
      }
    }
    caption.push(
      `row ${k + 1}: ${f.name} = ${shown.map((v) => meaningOf(set, k, v)).join(", ")}`,
    );
    for (let c = shown.length; c < PREVIEW_COLS; c++) tiles.push(undefined);
  });
  return { tiles, cols: PREVIEW_COLS, caption };
}

/** For sets with random nuisances: one row per value of the first factor, train images. */
function classPreview(set: LabelledSet, perRow = 12): Preview {
  const f0 = set.factors[0], nf = set.factors.length;
  const rows: number[][] = Array.from({ length: f0.size }, () => []);
  const train = set.split("train");
  for (let s = 0; s < train.length && rows.some((r) => r.length < perRow); s += 4096) {
    const part = Array.from(train.subarray(s, s + 4096));
    const f = set.labels(part);
    part.forEach((i, b) => {
      const row = rows[f[b * nf]];
      if (row.length < perRow) row.push(i);
    });
  }
  const caption = [
    `${set.name}: one row per ${f0.name}, ${perRow} training images each; per tile: ` +
    `index ${set.factors.slice(1).map((f) => f.name).join(" ")}`,
  ];
  const tiles: (number | undefined)[] = [];
  rows.forEach((row, v) => {
    const f = set.labels(row);
    const items = row.map((i, b) =>
      [`#${i}`, ...Array.from(f.subarray(b * nf + 1, (b + 1) * nf))].join(" ")
    );
    caption.push(`row ${v + 1}: ${f0.name} = ${meaningOf(set, 0, v)}: ${items.join(" | ")}`);
    for (let c = 0; c < perRow; c++) tiles.push(row[c]);
  });
  return { tiles, cols: perRow, caption };
}

/** Renders a preview's tiles (blanks in the gap grey); also returns the images per second. */
function previewPixels(set: LabelledSet, p: Preview): { pixels: Uint8Array; perSec: number } {
  const d = set.channels * set.height * set.width;
  const idx = p.tiles.filter((t): t is number => t !== undefined);
  set.pixels(idx.slice(0, 16)); // compiles the renderer before the timing
  const t0 = performance.now();
  const px = set.pixels(idx).pixels;
  const perSec = idx.length / ((performance.now() - t0) / 1000);
  const pixels = new Uint8Array(p.tiles.length * d).fill(GAP);
  let k = 0;
  p.tiles.forEach((t, i) => {
    if (t !== undefined) pixels.set(px.subarray(k * d, ++k * d), i * d);
  });
  return { pixels, perSec };
}

interface LabelledCli {
  summary: string;
  /** Lines of set-specific options for the help text. */
  options: string;
  flags: Record<string, { type: "string" | "boolean" }>;
  /** The registry name and options from the parsed flags. */
  pick(v: Record<string, string | boolean | undefined>): { name: string; opts: LabelledOptions };
}

function intFlag(name: string, v: string | boolean | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== "string" || !Number.isInteger(n)) {
    throw new Error(`flowgpu: --${name} needs an integer, got '${v}'`);
  }
  return n;
}

/** `deno task data NAME` for a labelled set: options, preview grid, caption and manifest. */
function labelledDataset(cmd: string, spec: LabelledCli): Dataset {
  return {
    summary: spec.summary,
    help: `usage: deno task data ${cmd} [options]

${spec.summary}.
Images are rendered on demand from (seed, index), so nothing is cached: this writes
OUT/preview.png (a grid of images), OUT/preview.txt (the factor values of every tile) and
OUT/manifest.json (parameters, counts, checksums).

${spec.options}  --seed N               seed of the per-image randomness and of the split (default 1)
  --out DIR              output folder (default data/${cmd}-preview)
`,
    async run(args) {
      const { values, positionals } = parseArgs({
        args,
        allowPositionals: true,
        options: {
          ...spec.flags,
          seed: { type: "string" },
          out: { type: "string" },
          help: { type: "boolean", short: "h", default: false },
        },
      });
      if (values.help) return console.log(this.help);
      if (positionals.length) {
        throw new Error(`flowgpu: unexpected argument '${positionals[0]}' (see --help)`);
      }
      const { name, opts } = spec.pick(values);
      const seed = intFlag("seed", values.seed);
      const set = await labelledSet(name, { ...opts, seed });
      const preview = set.indexOf ? traversalPreview(set, set.seed) : classPreview(set);
      const { pixels, perSec } = previewPixels(set, preview);
      const png = await imageGrid(
        pixels,
        preview.tiles.length,
        set.channels,
        set.height,
        set.width,
        preview.cols,
      );
      const train = set.split("train").length, test = set.split("test").length;
      const facts = set.factors.map((f) => `${f.name} ${f.size}`).join(", ");
      const caption = [
        `${set.name} (seed ${set.seed}): ${set.count} images of ${set.channels}x${set.height}x` +
        `${set.width}, split ${train}/${test} (train/test)`,
        `factors: ${facts}`,
        ...(set.values.length ? [`continuous values: ${set.values.join(", ")}`] : []),
        ...preview.caption,
      ].join("\n") + "\n";
      const dir = values.out as string | undefined ?? `data/${cmd}-preview`;
      await writeCache(
        dir,
        "flowgpu-labelled-preview-1",
        { name, ...opts, seed: set.seed },
        { "preview.png": png, "preview.txt": new TextEncoder().encode(caption) },
        {
          count: set.count,
          shape: [set.channels, set.height, set.width],
          factors: set.factors.map((f) => ({ name: f.name, size: f.size })),
          values: set.values,
          split: { train, test },
        },
      );
      console.log(caption.split("\n").slice(0, 3).join("\n"));
      console.log(
        `${set.name}: rendered ${Math.round(perSec)} images/s (preview tiles, one thread)`,
      );
      console.log(
        `${set.name}: preview ${join(dir, "preview.png")}, caption ${join(dir, "preview.txt")}`,
      );
    },
  };
}

const sizeFlag =
  `  --size N               image side, 8..256 (default 64; 16 and 32 for quick tests)\n`;

const cmnist = labelledDataset("cmnist", {
  summary: "Coloured MNIST, CMNIST-28 or CMNIST-32 (vae-disentangle.md §4.2): digit, hue factors",
  options: `  --variant 28|32        CMNIST-28 (black background) or CMNIST-32 (textured, shifted)
  --background black|dark  CMNIST-28 background (default black)
`,
  flags: { variant: { type: "string" }, background: { type: "string" } },
  pick(v) {
    const variant = v.variant ?? "28";
    if (variant !== "28" && variant !== "32") {
      throw new Error(`flowgpu: --variant must be 28 or 32, got '${variant}'`);
    }
    const background = v.background as LabelledOptions["background"];
    return { name: `cmnist${variant}`, opts: background ? { background } : {} };
  },
});

const shapes = labelledDataset("shapes2.5d", {
  summary: "Shapes2.5D, a 3D Shapes substitute (vae-disentangle.md §4.3): 480,000 combinations",
  options: sizeFlag +
    `  --correlated           the subset with (floor - wall) hue mod 10 in {0, 1, 9} (144,000)\n`,
  flags: { size: { type: "string" }, correlated: { type: "boolean" } },
  pick: (v) => ({
    name: v.correlated ? "shapes2.5d-corr" : "shapes2.5d",
    opts: { size: intFlag("size", v.size) },
  }),
});

const glyph10 = labelledDataset("glyph10", {
  summary: "Glyph-10, a Fashion-MNIST substitute (vae-disentangle.md §4.6): 10 stroke shapes",
  options: "",
  flags: {},
  pick: () => ({ name: "glyph10", opts: {} }),
});

const procchairs = labelledDataset("procchairs", {
  summary: "ProcChairs, a 3D Chairs substitute (vae-disentangle.md §4.4): 1393 models x 62 views",
  options: sizeFlag,
  flags: { size: { type: "string" } },
  pick: (v) => ({ name: "procchairs", opts: { size: intFlag("size", v.size) } }),
});

// ---- SynthLips: clip previews ----

/** One preview row: a clip and the style it is drawn in. */
interface LipsRow {
  clip: SynthLipsClip;
  style: SynthLipsStyle;
}

/** Frames 0, every, 2·every, ... of a rendered clip, one tile each. */
function lipsRow(set: SynthLips, pixels: Uint8Array, every: number): Uint8Array[] {
  const d = 3 * set.size * set.size, out: Uint8Array[] = [];
  for (let n = 0; n < set.frames; n += every) out.push(pixels.subarray(n * d, (n + 1) * d));
  return out;
}

function lipsCaption(set: SynthLips, r: LipsRow, every: number): string {
  const { clip } = r, w = set.word(clip.word), id = set.identity(clip.split, clip.identity);
  const shown = Array.from({ length: Math.ceil(set.frames / every) }, (_, k) => k * every);
  const ood = id.oodKind === "none" ? "" : ` (ood: ${id.oodKind})`;
  return `${clip.split} identity ${clip.identity}${ood}${
    r.style === "painting" ? ", painting style" : ""
  }: word ${clip.word} '${w.name}' = ${w.visemes.map((v) => VISEMES[v].name).join(" ")}, ` +
    `utterance ${clip.utterance}; viseme per shown frame: ${
      shown.map((n) => VISEMES[clip.viseme[n]].letter).join("")
    }; o per shown frame: ${shown.map((n) => clip.o[n].toFixed(2)).join(" ")}`;
}

const synthlips: Dataset = {
  summary: "SynthLips talking mouths (af-mi-flow.md §5.2), rendered on the fly: clip previews",
  help: `usage: deno task data synthlips [options]

SynthLips (af-mi-flow.md §5.2): faces with fixed identity traits whose mouth follows the viseme
sequence of a word over 29-frame clips. Clips are rendered on demand from the seed, so nothing is
cached: this writes OUT/preview.png (one row per clip, every EVERY-th frame), OUT/preview.txt
(split, identity, word and visemes of each row), OUT/cross.png (a source clip, a query clip of
another identity, and the cross-identity ground truth: the query's face with the source's mouth)
and OUT/manifest.json.

  --size 32|64           image side (default 64; 32 is the CPU variant)
  --seed N               seed of identities, vocabulary and clips (default 1)
  --split NAME           ${
    SYNTHLIPS_SPLITS.join(" | ")
  }: all rows from one split (default: rows from every
                         split, and a test identity in the painting style)
  --clips N              rows of preview.png (default 8)
  --every K              show every K-th frame (default 2: frames 0, 2, ..., 28)
  --style photo|painting the style of the rows with --split (default photo)
  --vocab N              words in the vocabulary (default 32; 10 for the smoke set)
  --out DIR              output folder (default data/synthlips-preview)
`,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        size: { type: "string" },
        seed: { type: "string" },
        split: { type: "string" },
        clips: { type: "string" },
        every: { type: "string" },
        style: { type: "string" },
        vocab: { type: "string" },
        out: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
    if (values.help) return console.log(this.help);
    if (positionals.length) {
      throw new Error(`flowgpu: unexpected argument '${positionals[0]}' (see --help)`);
    }
    const clips = intFlag("clips", values.clips) ?? 8, every = intFlag("every", values.every) ?? 2;
    if (clips < 1 || clips > 64) throw new Error(`flowgpu: --clips must be in 1..64, got ${clips}`);
    if (every < 1 || every > 28) throw new Error(`flowgpu: --every must be in 1..28, got ${every}`);
    const style = (values.style ?? "photo") as SynthLipsStyle;
    if (style !== "photo" && style !== "painting") {
      throw new Error(`flowgpu: --style must be photo or painting, got '${style}'`);
    }
    const split = values.split as SynthLipsSplit | undefined;
    if (split !== undefined && !SYNTHLIPS_SPLITS.includes(split)) {
      throw new Error(
        `flowgpu: --split must be one of ${SYNTHLIPS_SPLITS.join(", ")}, got '${split}'`,
      );
    }
    const set = await synthLips({
      size: intFlag("size", values.size),
      seed: intFlag("seed", values.seed),
      vocab: intFlag("vocab", values.vocab),
    });
    const rng = new Rng(set.seed);
    // Without --split: train, val, test and ood rows in turn, the 8th of every 8 a painting.
    const plan: [SynthLipsSplit, SynthLipsStyle][] = [
      ["train", "photo"],
      ["train", "photo"],
      ["train", "photo"],
      ["val", "photo"],
      ["test", "photo"],
      ["test", "photo"],
      ["ood", "photo"],
      ["test", "painting"],
    ];
    const rows: LipsRow[] = Array.from({ length: clips }, (_, r) => {
      const [sp, st] = split ? [split, style] : plan[r % plan.length];
      const i = rng.int(set.identityCount(sp)), w = rng.int(set.vocab.length);
      return { clip: set.clip(sp, i, w, rng.int(set.utterances(sp))), style: st };
    });
    const t0 = performance.now();
    const rendered = rows.map((r) => set.renderClip(r.clip, { style: r.style }));
    const fps = (rows.length * set.frames) / ((performance.now() - t0) / 1000);
    const tiles = rendered.flatMap((px) => lipsRow(set, px, every));
    const cols = tiles.length / rows.length, S = set.size;
    const grid = (t: Uint8Array[]) => {
      const all = new Uint8Array(t.length * 3 * S * S);
      t.forEach((x, k) => all.set(x, k * 3 * S * S));
      return imageGrid(all, t.length, 3, S, S, cols);
    };
    // Cross-identity ground truth: a train source, a test query (frame k), the target.
    const source = set.clip(
      "train",
      rng.int(set.identityCount("train")),
      rng.int(set.vocab.length),
    );
    const query = set.clip("test", rng.int(set.identityCount("test")), rng.int(set.vocab.length));
    const k = rng.int(set.frames);
    const cross = [set.renderClip(source), set.renderClip(query), set.renderCross(source, query, k)]
      .flatMap((px) => lipsRow(set, px, every));
    const caption = [
      `synthlips (seed ${set.seed}, ${S}x${S}, ${set.vocab.length} words, ${set.frames} frames ` +
      `per clip): preview.png has one row per clip, frames 0, ${every}, ${2 * every}, ...; ` +
      `mouth box rows ${set.box.top}-${set.box.bottom}, cols ${set.box.left}-${set.box.right}`,
      ...rows.map((r, i) => `row ${i + 1}: ${lipsCaption(set, r, every)}`),
      `cross.png row 1 (source): ${lipsCaption(set, { clip: source, style: "photo" }, every)}`,
      `cross.png row 2 (query): ${lipsCaption(set, { clip: query, style: "photo" }, every)}`,
      `cross.png row 3: ground truth = test identity ${query.identity} with the pose of its ` +
      `frame ${k} and the mouth of every source frame (noise-free)`,
    ].join("\n") + "\n";
    const dir = values.out ?? "data/synthlips-preview";
    await writeCache(
      dir,
      "flowgpu-synthlips-preview-1",
      { size: S, seed: set.seed, vocab: set.vocab.length, split: split ?? "all", clips, every },
      {
        "preview.png": await grid(tiles),
        "preview.txt": new TextEncoder().encode(caption),
        "cross.png": await grid(cross),
      },
      {
        identities: Object.fromEntries(SYNTHLIPS_SPLITS.map((s) => [s, set.identityCount(s)])),
        clips: Object.fromEntries(SYNTHLIPS_SPLITS.map((s) => [s, set.clipCount(s)])),
        vocabulary: set.vocab.map((w) => w.name),
        box: set.box,
      },
    );
    console.log(caption.split("\n").slice(0, Math.min(rows.length, 4) + 1).join("\n"));
    console.log(`synthlips: rendered ${Math.round(fps)} frames/s (${S}x${S}, one thread)`);
    console.log(
      `synthlips: preview ${join(dir, "preview.png")}, cross-identity ${join(dir, "cross.png")}, ` +
        `caption ${join(dir, "preview.txt")}`,
    );
  },
};

/** Every data set `deno task data` can make, by name. */
export const datasets: Record<string, Dataset> = {
  chc,
  cmnist,
  "shapes2.5d": shapes,
  glyph10,
  procchairs,
  synthlips,
};

function usage(): string {
  const list = Object.entries(datasets).map(([n, d]) => `  ${n.padEnd(11)} ${d.summary}`);
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

// The Cahn-Hilliard-Cook microstructure data set (glow-funs.md §3.1): conditions c = u(0) and
// targets x = u(k·snapshotEvery·Δt), k = 1..K, for `runs` noise realisations of each of `ics`
// initial conditions, generated on the GPU in batches of trajectories, stored as 8-bit pixels in
// a checksummed cache folder, and served as (c, x) float pairs split by initial condition.
import type { Rng } from "../util/rng.ts";
import { readCache, writeCache } from "./cache.ts";
import {
  characteristicLength,
  ChcBatch,
  initialCondition,
  quantize,
  trajectorySeed,
} from "./chc_sim.ts";

/** Every parameter a cache depends on; any change regenerates it. */
export type ChcParams = {
  /** Grid side (periodic, Δx = 1). */
  size: number;
  gamma: number;
  sigma: number;
  dt: number;
  /** Euler steps of a trajectory. */
  steps: number;
  /** A snapshot every this many steps: K = steps / snapshotEvery targets per trajectory. */
  snapshotEvery: number;
  /** A of u(0) = ū + A·η. */
  amplitude: number;
  /** ū ~ U(−meanMax, meanMax) per initial condition. */
  meanMax: number;
  ics: number;
  runs: number;
  seed: number;
};

const BASE = {
  size: 64,
  gamma: 1.5,
  sigma: 2,
  dt: 0.01,
  steps: 9000,
  snapshotEvery: 1000,
  amplitude: 0.25,
  meanMax: 0.4,
  seed: 1,
};

/** `small` generates in minutes on a CPU driver; `full` is the paper's 999 x 32 x 9. */
export const CHC_PRESETS: Record<string, ChcParams> = {
  small: { ...BASE, ics: 40, runs: 8 },
  // 32x32 for FUNS on a CPU: a quarter of the pixels, five times the initial conditions.
  cpu: { ...BASE, size: 32, ics: 200, runs: 8 },
  full: { ...BASE, ics: 999, runs: 32 },
};

export const CHC_FORMAT = "flowgpu-chc-1";

/** Train / val / test IC indices: 800 / 100 / 99 of 999, scaled, in IC order. */
export interface ChcSplit {
  train: number[];
  val: number[];
  test: number[];
}

/** A loaded (or freshly generated) data set. */
export interface ChcSet {
  params: ChcParams;
  /** Cache folder. */
  dir: string;
  ics: number;
  runs: number;
  /** Snapshots per trajectory (K). */
  snapshots: number;
  size: number;
  /** u(0) of each IC as pixels, [ics, size, size]. */
  conditions: Uint8Array;
  /** Snapshots as pixels, [ics, runs, snapshots, size, size]. */
  targets: Uint8Array;
  /** ū of each IC. */
  means: number[];
  split: ChcSplit;
  /** Whether this call generated the data (false: read from the cache). */
  generated: boolean;
  /** Site-updates per second and seconds of the generation that made the cache. */
  speed: { siteUpdatesPerSec: number; seconds: number };
}

/** Progress of a generation, reported after every chunk of steps. */
export interface ChcProgress {
  /** Trajectories done, fractional within the running batch. */
  done: number;
  total: number;
  siteUpdatesPerSec: number;
  elapsed: number;
  eta: number;
}

export interface ChcGenerateOptions {
  /** Trajectories advanced together (default 512). */
  batch?: number;
  onProgress?: (p: ChcProgress) => void;
}

export function snapshotCount(p: ChcParams): number {
  if (!(p.snapshotEvery > 0) || p.steps % p.snapshotEvery !== 0) {
    throw new Error(
      `flowgpu: chc steps (${p.steps}) must be a multiple of snapshotEvery (${p.snapshotEvery})`,
    );
  }
  return p.steps / p.snapshotEvery;
}

export function chcSplit(ics: number): ChcSplit {
  const train = Math.round((ics * 800) / 999);
  const val = Math.min(ics - train, Math.round((ics * 100) / 999));
  const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
  return { train: range(0, train), val: range(train, train + val), test: range(train + val, ics) };
}

// Encoded steps per submit: thousands of dispatches per flush, yet a progress line now and then.
const STEPS_PER_SUBMIT = 1000;

/** Simulate every trajectory of `p`, `batch` at a time; pixels of conditions and targets. */
export async function generateChc(p: ChcParams, opts: ChcGenerateOptions = {}): Promise<{
  conditions: Uint8Array;
  targets: Uint8Array;
  means: number[];
  speed: { siteUpdatesPerSec: number; seconds: number };
}> {
  const K = snapshotCount(p);
  const plane = p.size * p.size;
  const total = p.ics * p.runs;
  const batch = Math.max(1, Math.min(opts.batch ?? 512, total));
  const conditions = new Uint8Array(p.ics * plane);
  const targets = new Uint8Array(total * K * plane);
  const ics = Array.from({ length: p.ics }, (_, i) => {
    const ic = initialCondition(p.seed, i, p.size, p.amplitude, p.meanMax);
    quantize(ic.u, conditions, i * plane);
    return ic;
  });
  const phys = { size: p.size, gamma: p.gamma, sigma: p.sigma, dt: p.dt };
  const t0 = performance.now();
  let updates = 0;
  for (let first = 0; first < total; first += batch) {
    const n = Math.min(batch, total - first);
    const u0 = new Float32Array(n * plane);
    const seeds = new Uint32Array(2 * n);
    for (let j = 0; j < n; j++) {
      const t = first + j, ic = Math.floor(t / p.runs);
      u0.set(ics[ic].u, j * plane);
      seeds.set(trajectorySeed(p.seed, ic, t % p.runs), 2 * j);
    }
    const sim = new ChcBatch(phys, u0, seeds);
    try {
      for (let k = 0; k < K; k++) {
        for (let s = 0; s < p.snapshotEvery; s += STEPS_PER_SUBMIT) {
          const m = Math.min(STEPS_PER_SUBMIT, p.snapshotEvery - s);
          sim.advance(m);
          if (s + m < p.snapshotEvery) await sim.sync();
          else {
            const u = await sim.read();
            for (let j = 0; j < n; j++) {
              const at = ((first + j) * K + k) * plane;
              quantize(u.subarray(j * plane, (j + 1) * plane), targets, at);
            }
          }
          updates += m * n * plane;
          const elapsed = (performance.now() - t0) / 1000;
          const done = first + (n * sim.step) / p.steps;
          opts.onProgress?.({
            done,
            total,
            siteUpdatesPerSec: updates / elapsed,
            elapsed,
            eta: (elapsed / done) * (total - done),
          });
        }
      }
    } finally {
      sim.release();
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    conditions,
    targets,
    means: ics.map((ic) => ic.mean),
    speed: { siteUpdatesPerSec: updates / seconds, seconds },
  };
}

export interface ChcLoadOptions extends Partial<ChcParams> {
  /** Starting values for the parameters not given (default "small"). */
  preset?: string;
  /** Cache folder (default data/chc-<preset>). */
  dir?: string;
  /** Trajectories per GPU batch when generating. */
  batch?: number;
  /** Regenerate even when the cache is valid. */
  force?: boolean;
  /** Where to say that the cache is generated, and why (default console.log). */
  log?: (line: string) => void;
  onProgress?: (p: ChcProgress) => void;
}

/** The parameters `opts` asks for: its preset overridden by whatever it sets. */
export function chcParams(opts: ChcLoadOptions = {}): ChcParams {
  const preset = opts.preset ?? "small";
  const base = CHC_PRESETS[preset];
  if (!base) {
    throw new Error(
      `flowgpu: unknown chc preset '${preset}' (one of ${Object.keys(CHC_PRESETS).join(", ")})`,
    );
  }
  const p: ChcParams = { ...base };
  const set = p as Record<string, number>;
  for (const k of Object.keys(base)) {
    const v = opts[k as keyof ChcParams];
    if (v !== undefined) set[k] = v;
  }
  for (const k of ["size", "steps", "snapshotEvery", "ics", "runs", "seed"]) {
    if (!Number.isInteger(set[k]) || set[k] < (k === "seed" ? 0 : 1)) {
      throw new Error(`flowgpu: chc ${k} must be a positive integer, got ${set[k]}`);
    }
  }
  snapshotCount(p);
  return p;
}

/**
 * The data set `opts` describes, from its cache folder when that holds exactly these parameters,
 * else generated (and cached). A cache with other parameters is regenerated, saying so; a
 * damaged one (a file missing, truncated or with a wrong checksum) throws, naming the file.
 */
export async function loadChc(opts: ChcLoadOptions = {}): Promise<ChcSet> {
  const params = chcParams(opts);
  const dir = opts.dir ?? `data/chc-${opts.preset ?? "small"}`;
  const log = opts.log ?? console.log;
  const K = snapshotCount(params);
  const shape = { ics: params.ics, runs: params.runs, snapshots: K, size: params.size };
  const split = chcSplit(params.ics);
  const state = opts.force ? { status: "forced" as const } : await readCache(
    dir,
    "chc",
    CHC_FORMAT,
    params,
  );
  if (state.status === "ok") {
    const info = state.manifest.info as { means: number[]; speed: ChcSet["speed"] };
    const set: ChcSet = {
      params,
      dir,
      ...shape,
      conditions: state.files["conditions.u8"],
      targets: state.files["targets.u8"],
      means: info.means,
      split,
      generated: false,
      speed: info.speed,
    };
    const plane = params.size * params.size;
    if (
      set.conditions?.length !== params.ics * plane ||
      set.targets?.length !== params.ics * params.runs * K * plane
    ) {
      throw new Error(
        `flowgpu: chc cache ${dir}/manifest.json: file sizes do not match its parameters; ` +
          "delete the folder to regenerate",
      );
    }
    return set;
  }
  const why = state.status === "missing"
    ? "no cache yet"
    : state.status === "stale"
    ? `cached parameters differ (${state.reason})`
    : "--force";
  log(
    `chc: generating ${params.ics} ICs x ${params.runs} runs x ${K} snapshots into ${dir} (${why})`,
  );
  const gen = await generateChc(params, { batch: opts.batch, onProgress: opts.onProgress });
  await writeCache(
    dir,
    CHC_FORMAT,
    params,
    { "conditions.u8": gen.conditions, "targets.u8": gen.targets },
    {
      counts: { ...shape, pairs: params.ics * params.runs * K },
      layout: {
        "conditions.u8": "uint8 [ics, size, size], round(clip((u+1)/2, 0, 1)*255)",
        "targets.u8": "uint8 [ics, runs, snapshots, size, size], same quantisation",
      },
      split: { train: split.train.length, val: split.val.length, test: split.test.length },
      means: gen.means,
      speed: gen.speed,
    },
  );
  return {
    params,
    dir,
    ...shape,
    conditions: gen.conditions,
    targets: gen.targets,
    means: gen.means,
    split,
    generated: true,
    speed: gen.speed,
  };
}

/** Every (c, x) pair of the ICs in `ics` as an index (ic·runs + run)·K + k. */
export function chcPairs(set: ChcSet, ics: readonly number[]): Uint32Array {
  const per = set.runs * set.snapshots;
  const out = new Uint32Array(ics.length * per);
  ics.forEach((ic, i) => {
    for (let j = 0; j < per; j++) out[i * per + j] = ic * per + j;
  });
  return out;
}

/**
 * Pairs `pairs` as floats [B, 1, size, size] in [−1, 1]: the target dequantised as the spec's
 * x = 2(pix + U[0,1))/256 − 1 (noise from `rng`), the condition at its bin centre; `k` is the
 * snapshot number (1..K) and `ic` the IC of each pair.
 */
export function chcBatch(set: ChcSet, pairs: ArrayLike<number>, rng: Rng): {
  c: Float32Array;
  x: Float32Array;
  k: Uint8Array;
  ic: Uint32Array;
} {
  const plane = set.size * set.size, per = set.runs * set.snapshots;
  const c = new Float32Array(pairs.length * plane), x = new Float32Array(pairs.length * plane);
  const k = new Uint8Array(pairs.length), ic = new Uint32Array(pairs.length);
  for (let b = 0; b < pairs.length; b++) {
    const p = pairs[b];
    ic[b] = Math.floor(p / per);
    k[b] = (p % set.snapshots) + 1;
    const cs = ic[b] * plane, xs = p * plane, o = b * plane;
    for (let i = 0; i < plane; i++) {
      c[o + i] = (2 * set.conditions[cs + i] + 1) / 256 - 1;
      x[o + i] = (2 * (set.targets[xs + i] + rng.next())) / 256 - 1;
    }
  }
  return { c, x, k, ic };
}

/**
 * Mean characteristic length per snapshot over the trajectories of ICs with |ū| ≤ `maxMean`
 * (the spec quotes ū = 0), at most `maxTrajectories` of them, from the 8-bit pixels.
 */
export function chcLengths(set: ChcSet, maxMean = 0.1, maxTrajectories = 64): number[] {
  const plane = set.size * set.size;
  const sums = new Array(set.snapshots).fill(0);
  let n = 0;
  const field = new Float64Array(plane);
  for (let ic = 0; ic < set.ics && n < maxTrajectories; ic++) {
    if (Math.abs(set.means[ic]) > maxMean) continue;
    for (let r = 0; r < set.runs && n < maxTrajectories; r++, n++) {
      for (let k = 0; k < set.snapshots; k++) {
        const off = ((ic * set.runs + r) * set.snapshots + k) * plane;
        for (let i = 0; i < plane; i++) field[i] = set.targets[off + i] / 127.5 - 1;
        sums[k] += characteristicLength(field, set.size);
      }
    }
  }
  return sums.map((s) => (n ? s / n : NaN));
}

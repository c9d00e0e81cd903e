// Labelled data sets for the VAE-family disentanglers (vae-disentangle.md §4): every image comes
// with its factors of variation. The procedural sets render any index on demand from
// (seed, index), so nothing is stored and two calls with the same seed give the same bytes.
//
// Modules that implement a set describe it as a `LabelledSource` (how to render and label one
// index) and `makeLabelledSet` turns that into the common `LabelledSet`. The factory at the end
// imports those modules while they import this one; the cycle is harmless because nothing here
// runs at module load (no `class extends` across it).
import { Rng } from "../util/rng.ts";
import { batchIndices } from "./batches.ts";
import { loadCmnist } from "./cmnist.ts";
import { glyph10 } from "./glyph10.ts";
import { procChairs } from "./procchairs.ts";
import { shapes25d } from "./shapes25d.ts";

/** One categorical factor: its name, its number of values and (optionally) what they mean. */
export interface Factor {
  readonly name: string;
  /** Values are 0..size-1. */
  readonly size: number;
  /** What value k stands for (a hue, an angle in degrees, a shape name), if it stands for one. */
  readonly meaning?: readonly (number | string)[];
}

/** Images of a batch as 8-bit pixels, with their labels. */
export interface LabelledPixels {
  n: number;
  /** [n, channels, height, width], 0..255. */
  pixels: Uint8Array;
  /** [n, factors.length], factor k of image b at b * factors.length + k. */
  factors: Int32Array;
  /** [n, values.length]: continuous ground truth (colours, angles, shifts) behind the image. */
  values: Float32Array;
}

/** Images of a batch as floats x = u8 / 127.5 − 1 in [−1, 1] (the spec's convention). */
export interface LabelledBatch {
  n: number;
  /** [n, channels, height, width] in [−1, 1]. */
  x: Float32Array;
  factors: Int32Array;
  values: Float32Array;
}

/** A labelled data set with a common shape: images, their factors, a train/test split. */
export interface LabelledSet {
  /** The registry name (`cmnist28`, `shapes2.5d`, ...). */
  readonly name: string;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  /** Images in the set; valid indices are 0..count-1. */
  readonly count: number;
  /** Categorical factors, in the column order of `factors` arrays. */
  readonly factors: readonly Factor[];
  /** Names of the continuous ground-truth columns, in the column order of `values` arrays. */
  readonly values: readonly string[];
  /** The seed the set was made with (per-image randomness and the split). */
  readonly seed: number;
  /** Images `idx` as 8-bit pixels with their factors and values. */
  pixels(idx: ArrayLike<number>): LabelledPixels;
  /** Images `idx` as floats in [−1, 1] with their factors and values. */
  batch(idx: ArrayLike<number>): LabelledBatch;
  /** Factors of `idx` only, without rendering ([n, factors.length]). */
  labels(idx: ArrayLike<number>): Int32Array;
  /** Indices of the train or test split, ascending. */
  split(which: "train" | "test"): Uint32Array;
  /** Column of the factor called `name`; throws on an unknown name. */
  factor(name: string): number;
  /**
   * For sets that hold every combination of their factors exactly once: the index of the image
   * with these factor values (undefined on sets without that property, such as CMNIST).
   */
  indexOf?(factorValues: ArrayLike<number>): number;
}

/** What a set module supplies: sizes, factors, and per-index rendering and labelling. */
export interface LabelledSource {
  name: string;
  channels: number;
  height: number;
  width: number;
  count: number;
  factors: readonly Factor[];
  values: readonly string[];
  seed: number;
  /** Renders image `i` as 8-bit CHW pixels into `out` from `offset`. */
  render(i: number, out: Uint8Array, offset: number): void;
  /** Writes the factors of `i` into `out` from `offset`. */
  label(i: number, out: Int32Array, offset: number): void;
  /** Writes the continuous values of `i` into `out` from `offset` (omit when `values` is empty). */
  value?(i: number, out: Float32Array, offset: number): void;
  /** A fixed split: the first `trainCount` indices train, the rest test (MNIST-based sets). */
  trainCount?: number;
  indexOf?(factorValues: ArrayLike<number>): number;
}

/** Fraction of a procedural set held out for testing (vae-disentangle.md §8 D14). */
export const TEST_FRACTION = 0.1;

// ---- per-index randomness ----

/** murmur3's 32-bit finaliser: a bijective mix of all input bits. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A u32 that depends on every bit of (seed, index, stream); distinct inputs rarely collide. */
export function hash3(seed: number, index: number, stream = 0): number {
  let h = fmix32((seed >>> 0) ^ 0x9e3779b9);
  h = fmix32((h ^ (index >>> 0)) + 0x7f4a7c15);
  return fmix32((h ^ (stream >>> 0)) + 0x2545f491);
}

/**
 * The generator of image `index` of a set made with `seed` (spec §4: per-image RNG seeded by
 * (dataset seed, index)), so any image can be made on its own, in any order.
 */
export function itemRng(seed: number, index: number, stream = 0): Rng {
  return new Rng(hash3(seed, index, stream));
}

/** Train/test indices: a seeded random TEST_FRACTION of 0..count-1 is test, both ascending. */
export function randomSplit(
  count: number,
  seed: number,
): { train: Uint32Array; test: Uint32Array } {
  const perm = new Rng(hash3(seed, 0x5b1175, 1)).permutation(count);
  const nTest = Math.round(count * TEST_FRACTION);
  const test = perm.slice(0, nTest).sort();
  const train = perm.slice(nTest).sort();
  return { train, test };
}

// ---- mixed-radix factor grids ----

/** Factor values of grid index `i` (last factor fastest, as in 3D Shapes' ordering). */
export function gridValues(sizes: readonly number[], i: number, out: Int32Array, offset = 0) {
  for (let k = sizes.length - 1; k >= 0; k--) {
    out[offset + k] = i % sizes[k];
    i = Math.floor(i / sizes[k]);
  }
}

/** Grid index of factor values `v`; throws when a value is outside its factor's range. */
export function gridIndex(set: string, factors: readonly Factor[], v: ArrayLike<number>): number {
  if (v.length !== factors.length) {
    throw new Error(
      `flowgpu: ${set}: indexOf needs ${factors.length} factor values ` +
        `(${factors.map((f) => f.name).join(", ")}), got ${v.length}`,
    );
  }
  let i = 0;
  factors.forEach((f, k) => {
    if (!(Number.isInteger(v[k]) && v[k] >= 0 && v[k] < f.size)) {
      throw new Error(`flowgpu: ${set}: factor ${f.name} = ${v[k]} is outside 0..${f.size - 1}`);
    }
    i = i * f.size + v[k];
  });
  return i;
}

// ---- small drawing helpers shared by the renderers ----

/** Hermite smoothstep, 0 below e0 and 1 above e1. */
export function smoothstep(e0: number, e1: number, x: number): number {
  const t = Math.min(1, Math.max(0, (x - e0) / (e1 - e0)));
  return t * t * (3 - 2 * t);
}

/** Anti-aliased coverage of a pixel by a shape whose signed distance (px, < 0 inside) is `sdf`. */
export function coverage(sdf: number): number {
  return smoothstep(-0.5, 0.5, -sdf);
}

/** HSV (all in [0, 1]) to RGB in [0, 1]. */
export function hsv(h: number, s: number, v: number): [number, number, number] {
  const f = (n: number) => {
    const k = (n + h * 6) % 6;
    return v - v * s * Math.max(0, Math.min(k, 4 - k, 1));
  };
  return [f(5), f(3), f(1)];
}

/** A value in [0, 1] as a byte. */
export function toByte(v: number): number {
  return Math.round(255 * Math.min(1, Math.max(0, v)));
}

// ---- the common set ----

function checkIndices(name: string, count: number, idx: ArrayLike<number>): void {
  for (let b = 0; b < idx.length; b++) {
    const i = idx[b];
    if (!(Number.isInteger(i) && i >= 0 && i < count)) {
      throw new Error(`flowgpu: ${name}: index ${i} (position ${b}) is outside 0..${count - 1}`);
    }
  }
}

/** Factor `k`'s labels from rows of `nf` factors ([n, nf] row-major): [n]. */
export function factorLabels(labels: ArrayLike<number>, nf: number, k: number): Int32Array {
  return Int32Array.from({ length: labels.length / nf }, (_, i) => labels[i * nf + k]);
}

/** Column of factor `name` in `factors`; throws naming the known factors otherwise. */
export function factorColumn(set: string, factors: readonly Factor[], name: string): number {
  const k = factors.findIndex((f) => f.name === name);
  if (k < 0) {
    throw new Error(
      `flowgpu: ${set}: unknown factor '${name}' (factors: ${
        factors.map((f) => f.name).join(", ")
      })`,
    );
  }
  return k;
}

/** The common `LabelledSet` over a source's per-index render and label functions. */
export function makeLabelledSet(src: LabelledSource): LabelledSet {
  const { name, channels, height, width, count, factors, values } = src;
  const d = channels * height * width, nf = factors.length, nv = values.length;
  let splits: { train: Uint32Array; test: Uint32Array } | undefined;
  const labels = (idx: ArrayLike<number>) => {
    checkIndices(name, count, idx);
    const f = new Int32Array(idx.length * nf);
    for (let b = 0; b < idx.length; b++) src.label(idx[b], f, b * nf);
    return f;
  };
  const pixels = (idx: ArrayLike<number>): LabelledPixels => {
    const factorsOut = labels(idx);
    const px = new Uint8Array(idx.length * d);
    const vals = new Float32Array(idx.length * nv);
    for (let b = 0; b < idx.length; b++) {
      src.render(idx[b], px, b * d);
      if (nv) src.value!(idx[b], vals, b * nv);
    }
    return { n: idx.length, pixels: px, factors: factorsOut, values: vals };
  };
  const set: LabelledSet = {
    name,
    channels,
    height,
    width,
    count,
    factors,
    values,
    seed: src.seed,
    pixels,
    batch(idx) {
      const p = pixels(idx);
      const x = new Float32Array(p.pixels.length);
      for (let i = 0; i < x.length; i++) x[i] = p.pixels[i] / 127.5 - 1;
      return { n: p.n, x, factors: p.factors, values: p.values };
    },
    labels,
    split(which) {
      if (which !== "train" && which !== "test") {
        throw new Error(`flowgpu: ${name}: unknown split '${which}' (expected train or test)`);
      }
      if (!splits) {
        if (src.trainCount !== undefined) {
          const all = Uint32Array.from({ length: count }, (_, i) => i);
          splits = { train: all.slice(0, src.trainCount), test: all.slice(src.trainCount) };
        } else splits = randomSplit(count, src.seed);
      }
      return splits[which];
    },
    factor: (f) => factorColumn(name, factors, f),
  };
  if (src.indexOf) set.indexOf = src.indexOf;
  return set;
}

/**
 * How often each value of each factor occurs among images `idx` (default: the train split):
 * counts[k][v] for factor k. Divide by idx.length for the class frequencies q_i of §1.1.
 */
export function factorCounts(
  set: LabelledSet,
  idx: ArrayLike<number> = set.split("train"),
): number[][] {
  const nf = set.factors.length;
  const counts = set.factors.map((f) => new Array<number>(f.size).fill(0));
  const chunk = 65536; // labels in pieces, so a 480,000-image set needs no 11 MB array
  for (let s = 0; s < idx.length; s += chunk) {
    const part = Array.prototype.slice.call(idx, s, Math.min(idx.length, s + chunk)) as number[];
    const f = set.labels(part);
    for (let b = 0; b < part.length; b++) {
      for (let k = 0; k < nf; k++) counts[k][f[b * nf + k]]++;
    }
  }
  return counts;
}

/**
 * Indices of training step `step`'s batch drawn from split `which`: each epoch is a seeded
 * permutation of the split (batches.ts's `batchIndices`, so a resumed run repeats it exactly).
 */
export function splitBatch(
  set: LabelledSet,
  which: "train" | "test",
  batch: number,
  step: number,
  seed: number,
): { idx: Uint32Array; epoch: number } {
  const split = set.split(which);
  const { idx, epoch } = batchIndices(split.length, batch, step, seed);
  return { idx: idx.map((k) => split[k]), epoch };
}

// ---- the registry ----

/** Options of `labelledSet`; each set uses some of them and rejects the others. */
export interface LabelledOptions {
  /** Seed of the per-image randomness and of the random split (default 1). */
  seed?: number;
  /** Image side for shapes2.5d and procchairs (default 64; 16 and 32 for fast tests). */
  size?: number;
  /** cmnist: a folder with the MNIST IDX files instead of the npm package's. */
  mnistDir?: string;
  /** cmnist: keep the first `limit` images of each MNIST split. */
  limit?: number;
  /** cmnist28: black background (default) or a random dark colour. */
  background?: "black" | "dark";
  /** procchairs: supersampling factor per axis for anti-aliasing (default 2). */
  ssaa?: number;
}

type Maker = (opts: LabelledOptions) => LabelledSet | Promise<LabelledSet>;

const REGISTRY: Record<string, { options: (keyof LabelledOptions)[]; make: Maker }> = {
  "cmnist28": {
    options: ["seed", "mnistDir", "limit", "background"],
    make: (o) => loadCmnist({ ...o, variant: 28 }),
  },
  "cmnist32": {
    options: ["seed", "mnistDir", "limit"],
    make: (o) => loadCmnist({ ...o, variant: 32 }),
  },
  "shapes2.5d": { options: ["seed", "size"], make: (o) => shapes25d(o) },
  "shapes2.5d-corr": {
    options: ["seed", "size"],
    make: (o) => shapes25d({ ...o, correlated: true }),
  },
  "glyph10": { options: ["seed"], make: (o) => glyph10(o) },
  "procchairs": { options: ["seed", "size", "ssaa"], make: (o) => procChairs(o) },
};

/** Names `labelledSet` knows. */
export const LABELLED_SETS: readonly string[] = Object.keys(REGISTRY);

/** The seed option checked: an integer in 0..2^32-1 (default 1). */
export function checkSeed(set: string, seed: number | undefined): number {
  seed ??= 1;
  if (!(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32)) {
    throw new Error(`flowgpu: ${set}: seed must be an integer in 0..2^32-1, got ${seed}`);
  }
  return seed;
}

/** The size option checked: an integer in 8..256 (default `fallback`). */
export function checkSize(set: string, size: number | undefined, fallback: number): number {
  size ??= fallback;
  if (!(Number.isInteger(size) && size >= 8 && size <= 256)) {
    throw new Error(`flowgpu: ${set}: size must be an integer in 8..256, got ${size}`);
  }
  return size;
}

/**
 * The labelled data set called `name` (one of LABELLED_SETS). Throws
 * `flowgpu: unknown data set 'X' (known: ...)` for other names and names an option the set does
 * not use.
 */
export async function labelledSet(
  name: string,
  opts: LabelledOptions = {},
): Promise<LabelledSet> {
  const entry = Object.hasOwn(REGISTRY, name) ? REGISTRY[name] : undefined;
  if (!entry) {
    throw new Error(`flowgpu: unknown data set '${name}' (known: ${LABELLED_SETS.join(", ")})`);
  }
  for (const [k, v] of Object.entries(opts)) {
    if (v !== undefined && !entry.options.includes(k as keyof LabelledOptions)) {
      throw new Error(
        `flowgpu: ${name}: option '${k}' does not apply (options: ${entry.options.join(", ")})`,
      );
    }
  }
  return await entry.make(opts);
}

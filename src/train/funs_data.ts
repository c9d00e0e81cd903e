// Paired data for FUNS: (condition c, target x) images, both size x size. Targets are
// dequantised to x = 2(k + u)/2^n − 1, conditions scaled to [−1, 1] without noise.
import { batchIndices } from "../data/batches.ts";
import { chcBatch, chcPairs, type ChcSet, loadChc } from "../data/chc.ts";
import { loadMnist } from "../data/mnist.ts";
import type { Rng } from "../util/rng.ts";

export interface PairSet {
  count: number;
  channels: number;
  condChannels: number;
  size: number;
  /** Dequantised targets and scaled conditions of pairs `idx`, NCHW floats. */
  batch(idx: ArrayLike<number>, nBits: number, rng: Rng): { x: Float32Array; c: Float32Array };
  /** The pairs of training step `step` (each epoch's order from the seed and the epoch). */
  order(batch: number, step: number, seed: number): Uint32Array;
  /** One pair for each of `n` distinct conditions (for panels). */
  exampleIndices(n: number): Uint32Array;
}

/** Dequantise 8-bit pixels to n bits in [−1, 1]. */
function dequant(
  px: Uint8Array,
  at: number,
  d: number,
  out: Float32Array,
  o: number,
  n: number,
  rng: Rng,
) {
  const shift = 8 - n, bins = 2 ** n;
  for (let i = 0; i < d; i++) out[o + i] = (2 * ((px[at + i] >> shift) + rng.next())) / bins - 1;
}

/**
 * MNIST-exemplar (glow-funs.md §3.3): the condition of every image of digit y is one fixed
 * training image of y, the first of its class in the training file (indices recorded in
 * `exemplars`).
 */
export class MnistExemplar implements PairSet {
  readonly channels = 1;
  readonly condChannels = 1;
  readonly size = 32;
  readonly count: number;

  constructor(
    readonly images: Uint8Array,
    readonly labels: Uint8Array,
    readonly exemplarPixels: Uint8Array[],
    readonly exemplars: number[],
  ) {
    this.count = labels.length;
  }

  batch(idx: ArrayLike<number>, nBits: number, rng: Rng) {
    const d = 32 * 32, x = new Float32Array(idx.length * d), c = new Float32Array(idx.length * d);
    for (let b = 0; b < idx.length; b++) {
      dequant(this.images, idx[b] * d, d, x, b * d, nBits, rng);
      const e = this.exemplarPixels[this.labels[idx[b]]];
      for (let i = 0; i < d; i++) c[b * d + i] = (2 * e[i]) / 255 - 1;
    }
    return { x, c };
  }

  order(batch: number, step: number, seed: number): Uint32Array {
    return batchIndices(this.count, batch, step, seed).idx;
  }

  exampleIndices(n: number): Uint32Array {
    const out: number[] = [];
    for (let y = 0; out.length < n; y = (y + 1) % 10) {
      const i = Array.from(this.labels).findIndex((l, k) => l === y && !out.includes(k));
      if (i < 0) break;
      out.push(i);
    }
    return Uint32Array.from(out);
  }
}

/** The first `n` pairs of a set (a quick run's --train-limit). */
function limitPairs(p: PairSet, n: number): PairSet {
  return {
    count: n,
    channels: p.channels,
    condChannels: p.condChannels,
    size: p.size,
    batch: (idx, bits, rng) => p.batch(idx, bits, rng),
    order: (batch, step, seed) => batchIndices(n, batch, step, seed).idx,
    exampleIndices: (k) => p.exampleIndices(k),
  };
}

async function mnistExemplar(trainLimit: number, mode: "train" | "evaluate") {
  const full = await loadMnist("train");
  const d = 32 * 32;
  const exemplars = Array.from({ length: 10 }, (_, y) => full.labels.indexOf(y));
  const pixels = exemplars.map((i) => full.images.slice(i * d, (i + 1) * d));
  const test = await loadMnist("test");
  const n = mode === "train" ? (trainLimit || full.count) : 0;
  return {
    train: new MnistExemplar(
      full.images.subarray(0, n * d),
      full.labels.subarray(0, n),
      pixels,
      exemplars,
    ),
    test: new MnistExemplar(test.images, test.labels, pixels, exemplars),
  };
}

/**
 * CHC microstructures (glow-funs.md §3.1): the condition is the initial field u(0), the target
 * one of its snapshots u(1000kΔt), over every run and k of the ICs given; 8-bit.
 */
export class ChcPairs implements PairSet {
  readonly channels = 1;
  readonly condChannels = 1;
  readonly size: number;
  readonly count: number;
  readonly pairs: Uint32Array;

  constructor(readonly set: ChcSet, readonly ics: number[]) {
    this.size = set.size;
    this.pairs = chcPairs(set, ics);
    this.count = this.pairs.length;
  }

  batch(idx: ArrayLike<number>, nBits: number, rng: Rng) {
    if (nBits !== 8) throw new Error(`flowgpu: funs: CHC targets are 8-bit (--bits ${nBits})`);
    const { x, c } = chcBatch(this.set, Array.from(idx, (i) => this.pairs[i]), rng);
    return { x, c };
  }

  order(batch: number, step: number, seed: number): Uint32Array {
    return batchIndices(this.count, batch, step, seed).idx;
  }

  /** For each of the first n ICs, its first run's middle snapshot. */
  exampleIndices(n: number): Uint32Array {
    const per = this.set.runs * this.set.snapshots;
    const m = Math.min(n, this.ics.length);
    return Uint32Array.from({ length: m }, (_, j) => j * per + (this.set.snapshots >> 1));
  }
}

export async function pairSets(
  name: string,
  o: { trainLimit: number; mode: "train" | "evaluate"; chcPreset?: string },
): Promise<{ train: PairSet; test: PairSet }> {
  if (name === "mnist-exemplar") return await mnistExemplar(o.trainLimit, o.mode);
  if (name === "chc") {
    const set = await loadChc({ preset: o.chcPreset ?? "cpu" });
    const train = new ChcPairs(set, set.split.train);
    const limit = o.trainLimit ? Math.min(o.trainLimit, train.count) : train.count;
    return {
      train: limit < train.count ? limitPairs(train, limit) : train,
      test: new ChcPairs(set, set.split.test),
    };
  }
  throw new Error(`flowgpu: funs: data set '${name}' is not available yet`);
}

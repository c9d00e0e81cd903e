// Image batches for flows: n-bit quantisation, uniform dequantisation and scaling to
// x = (k + u) / 2^n - 1/2 (Glow's convention; glow-funs.md §1.2), and epoch shuffling that a
// resumed run reproduces exactly (each epoch's order comes from the seed and the epoch number).
import { Rng } from "./rng.ts";

export interface ImageSet {
  images: Uint8Array; // 8-bit pixels, NCHW
  labels: Uint8Array;
  count: number;
  channels: number;
  height: number;
  width: number;
}

/** Dequantised floats for images `idx` of `set`, with noise u ~ U[0,1) from `rng`. */
export function dequantize(
  set: ImageSet,
  idx: ArrayLike<number>,
  nBits: number,
  rng: Rng,
): Float32Array {
  const d = set.channels * set.height * set.width;
  const out = new Float32Array(idx.length * d);
  const shift = 8 - nBits;
  const bins = 2 ** nBits;
  for (let b = 0; b < idx.length; b++) {
    const src = idx[b] * d;
    for (let i = 0; i < d; i++) {
      const k = set.images[src + i] >> shift;
      out[b * d + i] = (k + rng.next()) / bins - 0.5;
    }
  }
  return out;
}

/** Pixels 0..255 from model outputs x (the inverse map, clipped): k = floor((x + 1/2) 2^n). */
export function toPixels(x: Float32Array, nBits: number): Uint8Array {
  const bins = 2 ** nBits;
  const scale = 255 / (bins - 1);
  return Uint8Array.from(x, (v) => {
    const k = Math.min(bins - 1, Math.max(0, Math.floor((v + 0.5) * bins)));
    return Number.isFinite(v) ? Math.round(k * scale) : 0;
  });
}

/** Index of the images in batch `step` (batches never straddle epochs; the tail is dropped). */
export function batchIndices(
  count: number,
  batch: number,
  step: number,
  seed: number,
): { idx: Uint32Array; epoch: number } {
  const perEpoch = Math.floor(count / batch);
  if (perEpoch < 1) {
    throw new Error(`flowgpu: batch ${batch} is larger than the data set (${count} images)`);
  }
  const epoch = Math.floor(step / perEpoch);
  const pos = step % perEpoch;
  const perm = epochOrder(count, seed, epoch);
  return { idx: perm.subarray(pos * batch, (pos + 1) * batch), epoch };
}

let cached: { key: string; perm: Uint32Array } | undefined;
function epochOrder(count: number, seed: number, epoch: number): Uint32Array {
  const key = `${count}:${seed}:${epoch}`;
  if (cached?.key !== key) {
    cached = { key, perm: new Rng((seed * 1000003 + epoch * 7919) >>> 0).permutation(count) };
  }
  return cached.perm;
}

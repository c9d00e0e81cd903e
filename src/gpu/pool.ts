// Size-bucketed storage-buffer pool. Tensors borrow buffers and give them back; a training step
// that allocates the same shapes every time reuses the same buffers, which also keeps bind groups
// cached (they are keyed by buffer identity).
import { device } from "./device.ts";

const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
const MIN_BYTES = 256;

/** Round up to the next power of two, or to a quarter-power step above 1 MiB to waste less. */
export function bucketBytes(bytes: number): number {
  const b = Math.max(MIN_BYTES, Math.ceil(bytes / 16) * 16);
  const p = 2 ** Math.ceil(Math.log2(b));
  if (p <= 1 << 20) return p;
  const q = p / 8; // eight steps per octave
  return Math.ceil(b / q) * q;
}

const free = new Map<number, GPUBuffer[]>();
const sizes = new WeakMap<GPUBuffer, number>();
const ids = new WeakMap<GPUBuffer, number>();
let nextId = 1;

/**
 * Live counters of the buffer pool: bytes and buffers borrowed by tensors now, bytes of every
 * buffer ever created, and how many were created. Read them to spot leaks between steps.
 */
export const poolStats = { liveBytes: 0, liveBuffers: 0, totalBytes: 0, created: 0 };

export function acquireBuffer(bytes: number): GPUBuffer {
  const size = bucketBytes(bytes);
  const max = device().limits.maxStorageBufferBindingSize;
  if (size > max && bytes <= max) return track(createBuffer(bytes));
  if (bytes > max) {
    throw new Error(
      `flowgpu: a tensor of ${bytes} bytes exceeds this adapter's storage binding limit (${max} B)`,
    );
  }
  const list = free.get(size);
  const buf = list?.pop() ?? createBuffer(size);
  return track(buf);
}

function createBuffer(size: number): GPUBuffer {
  const buf = device().createBuffer({ size, usage: USAGE, label: `pool:${size}` });
  sizes.set(buf, size);
  ids.set(buf, nextId++);
  poolStats.totalBytes += size;
  poolStats.created++;
  return buf;
}

function track(buf: GPUBuffer): GPUBuffer {
  poolStats.liveBytes += sizes.get(buf)!;
  poolStats.liveBuffers++;
  return buf;
}

export function releaseBuffer(buf: GPUBuffer): void {
  const size = sizes.get(buf);
  if (size === undefined) throw new Error("flowgpu: releasing a buffer the pool does not own");
  poolStats.liveBytes -= size;
  poolStats.liveBuffers--;
  let list = free.get(size);
  if (!list) free.set(size, list = []);
  // Kept sorted by id, descending, so acquire pops the lowest id. Which buffer a tensor gets then
  // depends only on which buffers are free, not on release order: a training step that repeats
  // the same allocations gets the same buffers every time, and finds its bind groups cached.
  const id = bufferId(buf);
  let lo = 0, hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (bufferId(list[mid]) > id) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, buf);
}

/** A stable small integer per buffer, for cache keys. */
export function bufferId(buf: GPUBuffer): number {
  let id = ids.get(buf);
  if (id === undefined) ids.set(buf, id = nextId++);
  return id;
}

/** Destroy every free buffer (live ones stay). */
export function trimPool(): void {
  for (const list of free.values()) {
    for (const b of list) {
      poolStats.totalBytes -= sizes.get(b)!;
      b.destroy();
    }
  }
  free.clear();
}

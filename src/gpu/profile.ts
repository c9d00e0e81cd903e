// Per-kernel GPU time, for finding what to optimise: with FLOWGPU_PROFILE=1 (or
// enableProfiling()), every dispatch gets its own compute pass with timestamp writes, and the
// durations are summed per pipeline label. It serialises the work, so only relative figures
// matter. Needs the adapter's "timestamp-query" feature.
import { device, deviceInfo } from "./device.ts";

const CAPACITY = 4096; // timestamps per query set: 2048 dispatches per flush

interface Pending {
  labels: string[];
  read: GPUBuffer;
}

let enabled = false;
let querySet: GPUQuerySet | undefined;
let labels: string[] = [];
const pending: Promise<void>[] = [];
const totals = new Map<string, { ms: number; count: number }>();

export function enableProfiling(on = true): void {
  if (on && !deviceInfo().timestamps) {
    throw new Error("flowgpu: profiling needs the adapter's timestamp-query feature");
  }
  enabled = on;
}

export function profiling(): boolean {
  return enabled;
}

/** Timestamp writes for the next dispatch's pass, or undefined when the set is full. */
export function nextTimestamps(label: string): GPUComputePassTimestampWrites | undefined {
  if (labels.length * 2 >= CAPACITY) return undefined;
  querySet ??= device().createQuerySet({ type: "timestamp", count: CAPACITY });
  const k = labels.length;
  labels.push(label);
  return { querySet, beginningOfPassWriteIndex: 2 * k, endOfPassWriteIndex: 2 * k + 1 };
}

/** Encode the resolve of this encoder's timestamps; returns a callback to run after submit. */
export function resolveTimestamps(e: GPUCommandEncoder): (() => void) | undefined {
  if (!labels.length || !querySet) return undefined;
  const n = labels.length * 2;
  const dev = device();
  const resolve = dev.createBuffer({
    size: n * 8,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const read = dev.createBuffer({
    size: n * 8,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  e.resolveQuerySet(querySet, 0, n, resolve, 0);
  e.copyBufferToBuffer(resolve, 0, read, 0, n * 8);
  const job: Pending = { labels, read };
  labels = [];
  return () => {
    pending.push(
      read.mapAsync(GPUMapMode.READ).then(() => {
        const t = new BigUint64Array(read.getMappedRange());
        job.labels.forEach((label, k) => {
          const ms = Number(t[2 * k + 1] - t[2 * k]) / 1e6;
          const s = totals.get(label) ?? { ms: 0, count: 0 };
          s.ms += ms;
          s.count++;
          totals.set(label, s);
        });
        read.destroy();
        resolve.destroy();
      }),
    );
  };
}

/** Kernel time per pipeline since the last reset, largest first, as printable lines. */
export async function profileReport(top = 25): Promise<string> {
  await Promise.all(pending.splice(0));
  const rows = [...totals].sort((a, b) => b[1].ms - a[1].ms);
  const all = rows.reduce((a, [, s]) => a + s.ms, 0);
  return rows.slice(0, top).map(([label, s]) =>
    `${s.ms.toFixed(1).padStart(9)} ms ${(100 * s.ms / all).toFixed(1).padStart(5)}%  ` +
    `${String(s.count).padStart(6)}x  ${label}`
  ).join("\n") + `\n${all.toFixed(1).padStart(9)} ms total`;
}

export function resetProfile(): void {
  totals.clear();
}

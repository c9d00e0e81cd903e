// Bench helpers: a GPU timer for work encoded through src/gpu/encoder.ts, and rate formatting.
//
// The timer brackets the batched work with two tiny command buffers whose empty compute passes
// write a timestamp (begin, end). encoder.ts owns the encoder that holds the work, so the
// brackets are separate submits: the work is encoded first and the begin bracket is submitted
// just before `flush()`, so that only the flush's own submit cost (not the JavaScript that
// encoded the work) falls between the two timestamps.
import { device, deviceInfo, getDevice } from "../src/gpu/device.ts";
import { encoderStats, flush, sync } from "../src/gpu/encoder.ts";
import { loadModule } from "../src/gpu/kernels.ts";

/**
 * The device, with only the shader files a bench uses validated up front (initGpu compiles every
 * file in shaders/, so one unfinished shader elsewhere would stop every bench).
 */
export async function initBench(shaderFiles: string[]): Promise<GPUDevice> {
  const dev = await getDevice();
  for (const f of shaderFiles) await loadModule(f);
  return dev;
}

export type TimingMethod = "timestamp" | "wallclock";
export interface GpuTiming {
  /** Milliseconds per call of `encodeOnce`. */
  ms: number;
  method: TimingMethod;
}

/**
 * Per-iteration GPU time of the work that `encodeOnce` encodes (it must only encode: call
 * `dispatch`, never read back). GPU timestamps when the device has "timestamp-query", else
 * wall-clock from submit to `onSubmittedWorkDone`. The bracket alone measures ~0.4 ms on lavapipe
 * (the flush's submit between the two timestamps), so batch enough `reps` to dwarf it.
 */
export async function gpuTime(encodeOnce: () => void, reps: number): Promise<GpuTiming> {
  await sync(); // earlier work must not land inside the bracket
  const dev = device();
  let bracket: Bracket | undefined;
  if (timerMethod() === "timestamp") bracket = new Bracket(dev);
  const submits = encoderStats().submits;
  for (let i = 0; i < reps; i++) encodeOnce();
  if (encoderStats().submits !== submits) {
    throw new Error(
      "bench: gpuTime: encodeOnce submitted work (a read or sync); it must only encode",
    );
  }
  const t0 = performance.now();
  bracket?.begin();
  flush();
  const ns = await bracket?.end();
  await dev.queue.onSubmittedWorkDone();
  const wall = performance.now() - t0;
  await sync(); // surfaces validation errors of the timed work
  if (ns !== undefined) return { ms: ns / 1e6 / reps, method: "timestamp" };
  return { ms: wall / reps, method: "wallclock" };
}

// Set when an adapter advertises timestamps but writes none for an empty pass.
let timestampsBroken = false;

/** Timestamps when the device has them, unless FLOWGPU_BENCH_WALLCLOCK=1 asks for wall-clock. */
export function timerMethod(): TimingMethod {
  const forced = Deno.env.get("FLOWGPU_BENCH_WALLCLOCK") === "1";
  return deviceInfo().timestamps && !forced && !timestampsBroken ? "timestamp" : "wallclock";
}

class Bracket {
  #dev: GPUDevice;
  #set: GPUQuerySet;
  #first: GPUCommandBuffer;

  constructor(dev: GPUDevice) {
    this.#dev = dev;
    this.#set = dev.createQuerySet({ type: "timestamp", count: 2 });
    const e = dev.createCommandEncoder();
    e.beginComputePass({ timestampWrites: { querySet: this.#set, beginningOfPassWriteIndex: 0 } })
      .end();
    this.#first = e.finish();
  }

  begin(): void {
    this.#dev.queue.submit([this.#first]);
  }

  /** Nanoseconds between the two timestamps; undefined (and wall-clock from then on) if unusable. */
  async end(): Promise<number | undefined> {
    const dev = this.#dev;
    const resolve = dev.createBuffer({
      size: 16,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const staging = dev.createBuffer({
      size: 16,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const e = dev.createCommandEncoder();
    e.beginComputePass({ timestampWrites: { querySet: this.#set, endOfPassWriteIndex: 1 } }).end();
    e.resolveQuerySet(this.#set, 0, 2, resolve, 0);
    e.copyBufferToBuffer(resolve, 0, staging, 0, 16);
    dev.queue.submit([e.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const [t0, t1] = new BigUint64Array(staging.getMappedRange());
    staging.unmap();
    for (const b of [resolve, staging]) b.destroy();
    this.#set.destroy();
    if (t1 > t0) return Number(t1 - t0);
    // Some implementations leave an empty pass's timestamps unwritten (zero) or equal.
    timestampsBroken = true;
    console.warn(`bench: timestamps did not advance (${t0} -> ${t1}); wall-clock from now on`);
    return undefined;
  }
}

/**
 * `gpuTime` over `trials` batches of `reps` after `warmup` untimed calls; the median batch is the
 * figure (the CPU driver shares its cores with other work), the minimum is the best case.
 */
export async function measure(
  encodeOnce: () => void,
  opts: { reps: number; trials?: number; warmup?: number },
): Promise<GpuTiming & { min: number; all: number[] }> {
  for (let i = 0; i < (opts.warmup ?? 1); i++) encodeOnce();
  await sync();
  const all: number[] = [];
  let method: TimingMethod = "wallclock";
  for (let t = 0; t < (opts.trials ?? 3); t++) {
    const r = await gpuTime(encodeOnce, opts.reps);
    all.push(r.ms);
    method = r.method;
  }
  return { ms: median(all), min: Math.min(...all), method, all };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export const gflops = (flop: number, ms: number): number => flop / ms / 1e6;
export const gbps = (bytes: number, ms: number): number => bytes / ms / 1e6;

/** One result line: name, time per iteration, GFLOP/s and/or GB/s, and the timing method. */
export function rateLine(
  name: string,
  t: { ms: number; method: string; min?: number },
  work: { flop?: number; bytes?: number },
): string {
  const parts = [name.padEnd(36), `${fmt(t.ms)} ms`.padStart(12)];
  if (work.flop) parts.push(`${fmt(gflops(work.flop, t.ms))} GFLOP/s`.padStart(16));
  if (work.bytes) parts.push(`${fmt(gbps(work.bytes, t.ms))} GB/s`.padStart(13));
  if (t.min !== undefined) parts.push(`(best ${fmt(t.min)} ms)`);
  parts.push(`[${t.method}]`);
  return parts.join("  ");
}

/** Three significant digits, no exponent for the usual range. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toPrecision(3);
}

/** The adapter line every bench prints first. */
export function adapterLine(): string {
  const i = deviceInfo();
  return `adapter: ${i.description} (vendor ${i.vendor}${i.isFallback ? ", CPU fallback" : ""}); ` +
    `timer: ${
      timerMethod() === "timestamp"
        ? "GPU timestamp queries"
        : "wall-clock from submit to onSubmittedWorkDone"
    }`;
}

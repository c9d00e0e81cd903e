// Batches every dispatch, copy and upload into one command encoder until an explicit flush (a
// readback flushes too). Each submit-and-wait costs ~11 ms on lavapipe against ~0.1 ms for a
// dispatch, so a training step is encoded whole and submitted once.
import { device, lostMessage, takeUncapturedError } from "./device.ts";
import { type Constants, pipeline } from "./kernels.ts";
import { bufferId } from "./pool.ts";
import { nextTimestamps, profiling, resolveTimestamps } from "./profile.ts";

const MAX_WG = 65535;

let encoder: GPUCommandEncoder | undefined;
let pass: GPUComputePassEncoder | undefined;
let pendingError: Promise<GPUError | null> | undefined;
let lastKernels: string[] = [];
let stats = { dispatches: 0, submits: 0 };

export function encoderStats(): {
  dispatches: number;
  submits: number;
  bindGroups: number;
  uniforms: number;
} {
  return { ...stats, bindGroups: bindGroups.size, uniforms: uniforms.size };
}

function enc(): GPUCommandEncoder {
  if (!encoder) {
    const dev = device();
    dev.pushErrorScope("validation");
    encoder = dev.createCommandEncoder();
    lastKernels = [];
  }
  return encoder;
}

function computePass(): GPUComputePassEncoder {
  pass ??= enc().beginComputePass();
  return pass;
}

function endPass(): GPUCommandEncoder {
  const e = enc();
  if (pass) {
    pass.end();
    pass = undefined;
  }
  return e;
}

// Uniform buffers are immutable and keyed by content: shapes repeat every step, so after the
// first step no uniform is written again, and no queue write can race the batched encoder.
const uniforms = new Map<string, GPUBuffer>();

/** Uniform words: integers are u32, numbers wrapped by `f32()` are f32. */
export type Param = number | { f: number };
export const f32 = (f: number): { f: number } => ({ f });

function uniformBuffer(params: Param[]): GPUBuffer {
  const n = Math.max(4, Math.ceil(params.length / 4) * 4);
  const words = new ArrayBuffer(n * 4);
  const u = new Uint32Array(words);
  const f = new Float32Array(words);
  params.forEach((p, i) => {
    if (typeof p === "number") {
      if (!Number.isInteger(p) || p < 0 || p > 0xffffffff) {
        throw new Error(`flowgpu: uniform word ${i} = ${p} is not a u32 (wrap floats in f32())`);
      }
      u[i] = p;
    } else f[i] = p.f;
  });
  let key = "";
  for (let i = 0; i < n; i++) key += u[i].toString(36) + ",";
  let buf = uniforms.get(key);
  if (!buf) {
    if (uniforms.size > 50_000) clearUniforms();
    buf = device().createBuffer({
      size: n * 4,
      usage: GPUBufferUsage.UNIFORM,
      mappedAtCreation: true,
    });
    new Uint32Array(buf.getMappedRange()).set(u);
    buf.unmap();
    uniforms.set(key, buf);
  }
  return buf;
}

function clearUniforms() {
  // Buffers still referenced by the open encoder stay alive until it is submitted.
  for (const b of uniforms.values()) queueDestroy.push(b);
  uniforms.clear();
  bindGroups.clear();
}
const queueDestroy: GPUBuffer[] = [];

const bindGroups = new Map<string, GPUBindGroup>();

/** What a storage binding takes: a whole buffer, or anything with a buffer range (a Tensor). */
export type Bindable = GPUBuffer | { readonly binding: GPUBufferBinding };

function bufferBinding(b: Bindable): GPUBufferBinding {
  return b instanceof GPUBuffer ? { buffer: b } : b.binding;
}

/** One compute dispatch, batched into the shared command encoder by `dispatch()`. */
export interface Dispatch {
  /** Shader file under shaders/, e.g. "conv.wgsl". */
  file: string;
  /** WGSL entry point in that file. */
  entry: string;
  /**
   * Storage buffers at bindings 1..n, in order (`undefined` skips a binding the entry point does
   * not use); the uniform is binding 0 when `params` is set.
   */
  buffers: (Bindable | undefined)[];
  /** Words of the uniform at binding 0 (u32 integers, or `f32()`-wrapped floats). */
  params?: Param[];
  /** Pipeline-overridable constants (`override` in WGSL), e.g. `{ OP: 2, WG: 64 }`. */
  constants?: Constants;
  /** Workgroup counts, or a total invocation count for 1-D kernels (folded into y past 65,535). */
  groups?: [number, number?, number?];
  /** Total invocations of a 1-D kernel; workgroups are derived with `fold` (used without `groups`). */
  threads?: number;
}

/** Workgroups for `threads` invocations of a 1-D kernel of size 64, folded into y. */
export function fold(threads: number, wg = 64): [number, number, number] {
  const n = Math.max(1, Math.ceil(threads / wg));
  if (n <= MAX_WG) return [n, 1, 1];
  const y = Math.ceil(n / MAX_WG);
  const x = Math.ceil(n / y);
  if (y > MAX_WG) throw new Error(`flowgpu: dispatch of ${threads} threads is too large`);
  return [x, y, 1];
}

export function dispatch(d: Dispatch): void {
  enc(); // opens the error scope that also covers pipeline and bind group creation
  const pipe = pipeline(d.file, d.entry, d.constants);
  const uni = d.params ? uniformBuffer(d.params) : undefined;
  const ranges = d.buffers.map((b) => b && bufferBinding(b));
  let key = pipe.label;
  if (uni) key += "|u" + bufferId(uni);
  for (const r of ranges) {
    key += r ? `|${bufferId(r.buffer)}${r.offset ? `@${r.offset}+${r.size}` : ""}` : "|-";
  }
  let bg = bindGroups.get(key);
  if (!bg) {
    const entries: GPUBindGroupEntry[] = [];
    if (uni) entries.push({ binding: 0, resource: { buffer: uni } });
    ranges.forEach((r, i) => r && entries.push({ binding: i + 1, resource: r }));
    if (bindGroups.size > 100_000) bindGroups.clear();
    bg = device().createBindGroup({ layout: pipe.getBindGroupLayout(0), entries, label: key });
    bindGroups.set(key, bg);
  }
  const [x, y = 1, z = 1] = d.groups ?? fold(d.threads ?? 0, d.constants?.WG ?? 64);
  if (x === 0 || y === 0 || z === 0) return;
  if (x > MAX_WG || y > MAX_WG || z > MAX_WG) {
    throw new Error(`flowgpu: ${pipe.label}: ${x}x${y}x${z} workgroups exceed ${MAX_WG}`);
  }
  let timestampWrites = profiling() ? nextTimestamps(pipe.label) : undefined;
  if (profiling() && !timestampWrites) {
    flush();
    timestampWrites = nextTimestamps(pipe.label);
  }
  if (timestampWrites) endPass();
  const p = timestampWrites ? enc().beginComputePass({ timestampWrites }) : computePass();
  p.setPipeline(pipe);
  p.setBindGroup(0, bg);
  p.dispatchWorkgroups(x, y, z);
  if (timestampWrites) p.end();
  stats.dispatches++;
  if (lastKernels.length < 4096) lastKernels.push(pipe.label);
}

export function copyBuffer(src: GPUBuffer, dst: GPUBuffer, bytes: number, srcOff = 0, dstOff = 0) {
  endPass().copyBufferToBuffer(src, srcOff, dst, dstOff, bytes);
}

/** Upload through a staging copy inside the encoder, so it lands in order with the dispatches. */
export function upload(dst: GPUBuffer, data: Float32Array | Uint32Array | Int32Array, dstOff = 0) {
  const bytes = Math.ceil(data.byteLength / 4) * 4;
  if (bytes === 0) return;
  const staging = device().createBuffer({
    size: bytes,
    usage: GPUBufferUsage.COPY_SRC,
    mappedAtCreation: true,
  });
  new Uint8Array(staging.getMappedRange()).set(
    new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  );
  staging.unmap();
  endPass().copyBufferToBuffer(staging, 0, dst, dstOff, bytes);
  queueDestroy.push(staging);
}

/** Submit what has been encoded (no wait). */
export function flush(): void {
  if (!encoder) return;
  const e = endPass();
  encoder = undefined;
  const dev = device();
  const afterSubmit = resolveTimestamps(e);
  dev.queue.submit([e.finish()]);
  afterSubmit?.();
  stats.submits++;
  const kernels = lastKernels;
  const scope = dev.popErrorScope();
  const prev = pendingError;
  pendingError = scope.then(async (err) => {
    const before = prev ? await prev : null;
    if (before) return before;
    if (err) {
      const tail = kernels.slice(-3).join(", ");
      return Object.assign(err, { kernels: tail });
    }
    return null;
  });
  for (const b of queueDestroy.splice(0)) b.destroy();
}

/** Flush and wait for the GPU; throws the first validation error or device loss since last time. */
export async function sync(): Promise<void> {
  flush();
  await device().queue.onSubmittedWorkDone();
  await checkErrors();
}

async function checkErrors(): Promise<void> {
  const lost = lostMessage();
  if (lost) throw new Error(`flowgpu: the GPU device was lost (${lost})`);
  const stray = takeUncapturedError();
  if (stray) throw new Error(`flowgpu: GPU error: ${stray.trim()}`);
  if (!pendingError) return;
  const err = await pendingError;
  pendingError = undefined;
  if (err) {
    bindGroups.clear(); // one of them may be the invalid one
    const k = (err as GPUError & { kernels?: string }).kernels;
    throw new Error(`flowgpu: GPU validation error: ${err.message.trim()}\n  recent kernels: ${k}`);
  }
}

const readPool: GPUBuffer[] = [];

/** Copy `bytes` of `src` to the CPU: flushes the encoder and waits. */
export async function readBuffer(src: GPUBuffer, bytes: number, offset = 0): Promise<ArrayBuffer> {
  const size = Math.ceil(bytes / 4) * 4;
  const i = readPool.findIndex((b) => b.size >= size);
  const staging = i >= 0 ? readPool.splice(i, 1)[0] : device().createBuffer({
    size: Math.max(256, 2 ** Math.ceil(Math.log2(size))),
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  if (size > 0) endPass().copyBufferToBuffer(src, offset, staging, 0, size);
  flush();
  try {
    await staging.mapAsync(GPUMapMode.READ, 0, size || 4);
  } catch (e) {
    await checkErrors();
    throw e;
  }
  const out = staging.getMappedRange(0, size || 4).slice(0, bytes);
  staging.unmap();
  if (readPool.length < 16) readPool.push(staging);
  else staging.destroy();
  await checkErrors();
  return out;
}

/** Read several buffers with one submit and one map (checkpoints read hundreds of tensors). */
export async function readBuffers(
  list: { buffer: GPUBuffer; bytes: number; offset?: number }[],
): Promise<ArrayBuffer[]> {
  const offsets: number[] = [];
  let total = 0;
  for (const { bytes } of list) {
    offsets.push(total);
    total += Math.ceil(bytes / 256) * 256;
  }
  const staging = device().createBuffer({
    size: Math.max(256, total),
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const e = endPass();
  list.forEach(({ buffer, bytes, offset = 0 }, i) => {
    if (bytes > 0) {
      e.copyBufferToBuffer(buffer, offset, staging, offsets[i], Math.ceil(bytes / 4) * 4);
    }
  });
  flush();
  try {
    await staging.mapAsync(GPUMapMode.READ);
    const all = staging.getMappedRange();
    return list.map(({ bytes }, i) => all.slice(offsets[i], offsets[i] + bytes));
  } finally {
    await checkErrors().finally(() => staging.destroy());
  }
}

export function resetEncoderStats(): void {
  stats = { dispatches: 0, submits: 0 };
}

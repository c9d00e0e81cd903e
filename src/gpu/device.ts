// Adapter and device acquisition. One device per process: every tensor, pipeline and buffer
// belongs to it, so it is created once and shared.

/** What the chosen adapter reported, for logs and run metadata. */
export interface DeviceInfo {
  /** Adapter description, or its device name; "unknown" when the adapter gives neither. */
  description: string;
  /** Adapter vendor as WebGPU reports it (may be empty). */
  vendor: string;
  /** Whether the adapter calls itself a fallback (software) adapter; false when it does not say. */
  isFallback: boolean;
  /** Whether the device was created with "timestamp-query" (needed for kernel profiling). */
  timestamps: boolean;
}

let devicePromise: Promise<GPUDevice> | undefined;
let current: GPUDevice | undefined;
let lostReason: string | undefined;
let info: DeviceInfo | undefined;

/** The device, requested once. `verbose` prints the chosen adapter. */
export function getDevice(opts: { verbose?: boolean } = {}): Promise<GPUDevice> {
  devicePromise ??= acquire(opts.verbose ?? Deno.env.get("FLOWGPU_VERBOSE") === "1");
  return devicePromise;
}

/** The device after `getDevice` resolved; throws if it was never acquired or was lost. */
export function device(): GPUDevice {
  if (lostReason) throw new Error(`flowgpu: the GPU device was lost (${lostReason})`);
  if (!current) throw new Error("flowgpu: no device yet; await getDevice() (or initGpu()) first");
  return current;
}

/** The acquired adapter's description; throws before `getDevice()`/`initGpu()` resolved. */
export function deviceInfo(): DeviceInfo {
  if (!info) throw new Error("flowgpu: no device yet; await getDevice() first");
  return info;
}

/** Mesa's drivers want a private runtime folder; give them one when the session has none. */
function ensureRuntimeDir(): void {
  if (Deno.build.os !== "linux" || Deno.env.get("XDG_RUNTIME_DIR")) return;
  try {
    const dir = `/tmp/flowgpu-runtime-${Deno.uid() ?? 0}`;
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    Deno.chmodSync(dir, 0o700);
    Deno.env.set("XDG_RUNTIME_DIR", dir);
  } catch {
    // Only a warning from Mesa follows; nothing to do.
  }
}

async function acquire(verbose: boolean): Promise<GPUDevice> {
  ensureRuntimeDir();
  if (!("gpu" in navigator) || !navigator.gpu) {
    throw new Error(
      "flowgpu: this Deno has no WebGPU (navigator.gpu is missing); use Deno 2.x",
    );
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    throw new Error(
      "flowgpu: no WebGPU adapter found. Install a GPU driver, or Mesa's CPU Vulkan driver " +
        "(`apt-get install -y mesa-vulkan-drivers`, lavapipe). If Mesa complains about " +
        "XDG_RUNTIME_DIR, point it at a 0700 folder.",
    );
  }
  const a = adapter.limits;
  // Ask for the adapter's largest buffers and binding counts; everything else stays default so
  // the kernels run on every adapter.
  const requiredLimits: Record<string, number> = {
    maxBufferSize: a.maxBufferSize,
    maxStorageBufferBindingSize: a.maxStorageBufferBindingSize,
    maxStorageBuffersPerShaderStage: a.maxStorageBuffersPerShaderStage,
    maxComputeWorkgroupStorageSize: a.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: a.maxComputeInvocationsPerWorkgroup,
  };
  const timestamps = adapter.features.has("timestamp-query");
  const dev = await adapter.requestDevice({
    requiredLimits,
    requiredFeatures: timestamps ? ["timestamp-query"] : [],
  });
  const ai = adapter.info;
  info = {
    description: ai.description || ai.device || "unknown",
    vendor: ai.vendor,
    isFallback: (ai as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
    timestamps,
  };
  if (verbose) {
    console.error(
      `flowgpu: adapter "${info.description}" (vendor ${info.vendor}${
        info.isFallback ? ", CPU fallback" : ""
      }), max buffer ${a.maxBufferSize} B, max storage binding ${a.maxStorageBufferBindingSize} B`,
    );
  }
  // Errors outside an error scope are otherwise silent in Deno: keep the first, throw it at the
  // next sync (see encoder.ts).
  dev.addEventListener("uncapturederror", (e) => {
    uncaptured ??= (e as GPUUncapturedErrorEvent).error.message;
  });
  dev.lost.then((l) => {
    lostReason = `${l.reason}: ${l.message || "no message"}`;
    if (l.reason !== "destroyed") console.error(`flowgpu: GPU device lost (${lostReason})`);
  });
  // Tear the device down while this runtime is still whole. Left to the runtime's own drop order,
  // Mesa's CPU drivers sometimes corrupt the heap: `deno test` builds and drops one device per test
  // file, and about one run in four of 40 files aborted at exit ("corrupted size vs. prev_size").
  globalThis.addEventListener("unload", () => dev.destroy());
  current = dev;
  return dev;
}

let uncaptured: string | undefined;

/** The first uncaptured GPU error since the last call, if any (and forget it). */
export function takeUncapturedError(): string | undefined {
  const e = uncaptured;
  uncaptured = undefined;
  return e;
}

/** Why the device was lost, if it was. */
export function lostMessage(): string | undefined {
  return lostReason;
}

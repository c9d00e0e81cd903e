// The GPU layer's public face: acquire the device and validate every shader before any work.
import { getDevice } from "./device.ts";
import { compileAll } from "./kernels.ts";
import { enableProfiling } from "./profile.ts";

export { device, deviceInfo, getDevice } from "./device.ts";
export { dispatch, encoderStats, f32, flush, fold, readBuffer, sync, upload } from "./encoder.ts";
export { bufferId, poolStats, trimPool } from "./pool.ts";
export { enableProfiling, profileReport, resetProfile } from "./profile.ts";

let ready: Promise<GPUDevice> | undefined;

/** Acquire the device and compile every shaders/*.wgsl (a WGSL error throws here, with its line). */
export function initGpu(opts: { verbose?: boolean } = {}): Promise<GPUDevice> {
  ready ??= (async () => {
    const dev = await getDevice(opts);
    await compileAll();
    if (Deno.env.get("FLOWGPU_PROFILE") === "1") enableProfiling();
    return dev;
  })();
  return ready;
}

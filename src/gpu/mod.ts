// The GPU layer's public face: acquire the device and validate every shader before any work.
import { getDevice } from "./device.ts";
import { compileAll } from "./kernels.ts";

export { device, deviceInfo, getDevice } from "./device.ts";
export { dispatch, encoderStats, f32, flush, fold, readBuffer, sync, upload } from "./encoder.ts";
export { bufferId, poolStats, trimPool } from "./pool.ts";

let ready: Promise<GPUDevice> | undefined;

/** Acquire the device and compile every shaders/*.wgsl (a WGSL error throws here, with its line). */
export function initGpu(opts: { verbose?: boolean } = {}): Promise<GPUDevice> {
  ready ??= (async () => {
    const dev = await getDevice(opts);
    await compileAll();
    return dev;
  })();
  return ready;
}

// conv2d 3x3 64 -> 64, N = 16, 32x32, padding 1: forward, data gradient and weight gradient timed
// separately, in GFLOP/s of 2*N*O*C*9*H*W flops per pass. Each sample encodes R passes and waits
// once (wall-clock), so lavapipe's ~11 ms submit cost is spread over R passes.
//   deno bench -A --no-check bench/conv_bench.ts        (CONV_BENCH_REPS=R, default 4)
import { getDevice } from "../src/gpu/device.ts";
import { sync } from "../src/gpu/encoder.ts";
import { loadModule } from "../src/gpu/kernels.ts";
import { conv2dBackwardData, conv2dBackwardWeight, conv2dForward } from "../src/ops/conv.ts";
import { clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/data/rng.ts";

// Only the shaders this bench runs are validated (initGpu would compile every file in shaders/).
await getDevice();
for (const f of ["conv.wgsl", "reduce.wgsl", "elementwise.wgsl"]) await loadModule(f);

const N = 16, C = 64, O = 64, H = 32, W = 32, K = 3;
const R = Number(Deno.env.get("CONV_BENCH_REPS") ?? 4);
const FLOPS = 2 * N * O * C * K * K * H * W;

const rng = new Rng(1);
const x = Tensor.persistent([N, C, H, W], "x").write(rng.normalArray(N * C * H * W));
const w = Tensor.persistent([O, C, K, K], "w").write(rng.normalArray(O * C * K * K, 0.05));
const g = Tensor.persistent([N, O, H, W], "g").write(rng.normalArray(N * O * H * W));
const opts = { padding: 1 };

const passes: [string, () => Tensor][] = [
  ["forward", () => conv2dForward(x, w, opts)],
  ["data grad", () => conv2dBackwardData(g, w, x.shape, opts)],
  ["weight grad", () => conv2dBackwardWeight(g, x, w.shape, opts)],
];

/** Seconds for R passes of `f`, encoded back to back and waited for once. */
async function timeReps(f: () => Tensor): Promise<number> {
  await sync();
  const t0 = performance.now();
  for (let i = 0; i < R; i++) {
    f();
    clearTape(); // outputs go back to the pool; the encoder keeps the work in order
  }
  await sync();
  return (performance.now() - t0) / 1000;
}

const best = new Map<string, number>();
for (const [name, f] of passes) {
  await timeReps(f); // compile the pipelines, warm the buffer pool and the bind-group cache
  Deno.bench({
    name: `conv2d 3x3 ${C}->${O} N=${N} ${H}x${W} ${name} (${R} passes)`,
    n: 5,
    warmup: 1,
    async fn(b) {
      b.start();
      const s = await timeReps(f);
      b.end();
      best.set(name, Math.min(best.get(name) ?? Infinity, s));
    },
  });
}

globalThis.addEventListener("unload", () => {
  for (const [name, s] of best) {
    const ms = (s / R) * 1e3;
    const gflops = (FLOPS * R) / s / 1e9;
    console.log(`conv2d ${name}: ${ms.toFixed(1)} ms/pass, ${gflops.toFixed(2)} GFLOP/s (best)`);
  }
});

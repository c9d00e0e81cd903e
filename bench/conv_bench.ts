// conv2d 3x3 64 -> 64, N = 16, 32x32, padding 1: forward, data gradient and weight gradient timed
// separately, in GFLOP/s of 2*N*O*C*9*H*W flops per pass. Each sample encodes R passes and waits
// once (wall-clock), so lavapipe's ~11 ms submit cost is spread over R passes. Then the VAE
// nets' strided shapes, forward + data + weight gradient together: DisUnknown's ResDown conv
// (4x4, stride 2, padding 1, 32 -> 64 at 32x32) and a TensorFlow-"same" 5x5 stride-2 conv with
// asymmetric padding [1, 2, 1, 2] (Zheng & Sun's encoder shape, 32 -> 64 at 28x28).
//   deno bench -A --no-check bench/conv_bench.ts        (CONV_BENCH_REPS=R, default 4)
// Glow's thin shapes, GPU time per step: deno run -A bench/conv_bench.ts --glow [--width 32]
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

if (Deno.args.includes("--glow")) {
  const arg = (k: string, d: number) => {
    const i = Deno.args.indexOf(k);
    return i >= 0 ? Number(Deno.args[i + 1]) : d;
  };
  await glowBench(arg("--width", 64), arg("--reps", 4));
  Deno.exit(0);
}

const N = 16, C = 64, O = 64, H = 32, W = 32, K = 3;
const R = Number(Deno.env.get("CONV_BENCH_REPS") ?? 4);
const FLOPS = 2 * N * O * C * K * K * H * W;

const rng = new Rng(1);
const x = Tensor.persistent([N, C, H, W], "x").write(rng.normalArray(N * C * H * W));
const w = Tensor.persistent([O, C, K, K], "w").write(rng.normalArray(O * C * K * K, 0.05));
const g = Tensor.persistent([N, O, H, W], "g").write(rng.normalArray(N * O * H * W));
const opts = { padding: 1 };

// [name, encode one pass, flops of one pass]
const passes: [string, () => Tensor, number][] = [
  [`3x3 ${C}->${O} N=${N} ${H}x${W} forward`, () => conv2dForward(x, w, opts), FLOPS],
  [
    `3x3 ${C}->${O} N=${N} ${H}x${W} data grad`,
    () => conv2dBackwardData(g, w, x.shape, opts),
    FLOPS,
  ],
  [
    `3x3 ${C}->${O} N=${N} ${H}x${W} weight grad`,
    () => conv2dBackwardWeight(g, x, w.shape, opts),
    FLOPS,
  ],
  strided(4, 32, 64, 32, 1),
  strided(5, 32, 64, 28, [1, 2, 1, 2]),
];

/** Forward, data gradient and weight gradient of a k x k stride-2 conv at N = 16 (one "pass"). */
function strided(
  k: number,
  ci: number,
  co: number,
  hw: number,
  padding: number | [number, number, number, number],
): [string, () => Tensor, number] {
  const ho = Math.floor(
    (hw + (typeof padding === "number" ? 2 * padding : padding[0] + padding[1]) - k) / 2,
  ) + 1;
  const xs = Tensor.persistent([N, ci, hw, hw], "x").write(rng.normalArray(N * ci * hw * hw));
  const ws = Tensor.persistent([co, ci, k, k], "w").write(rng.normalArray(co * ci * k * k, 0.05));
  const gs = Tensor.persistent([N, co, ho, ho], "g").write(rng.normalArray(N * co * ho * ho));
  const o = { stride: 2 as const, padding };
  const pad = typeof padding === "number" ? `p${padding}` : `p[${padding}]`;
  return [
    `${k}x${k} s2 ${pad} ${ci}->${co} N=${N} ${hw}x${hw} fwd+dx+dw`,
    () => {
      conv2dForward(xs, ws, o);
      conv2dBackwardData(gs, ws, xs.shape, o);
      return conv2dBackwardWeight(gs, xs, ws.shape, o);
    },
    3 * 2 * N * co * ci * k * k * ho * ho,
  ];
}

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
const flopsOf = new Map(passes.map(([name, , flops]) => [name, flops]));
for (const [name, f] of passes) {
  await timeReps(f); // compile the pipelines, warm the buffer pool and the bind-group cache
  Deno.bench({
    name: `conv2d ${name} (${R} passes)`,
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
    const gflops = (flopsOf.get(name)! * R) / s / 1e9;
    console.log(`conv2d ${name}: ${ms.toFixed(1)} ms/pass, ${gflops.toFixed(2)} GFLOP/s (best)`);
  }
});

// ---- Glow's conv shapes (deno run -A bench/conv_bench.ts --glow [--width 64] [--reps 4]) ----
// GPU time (timestamp queries, passes serialised) per pass of every conv shape in one Glow step
// (batch 32, MNIST squeezed to 16x16x4, 3 levels), counted as often as a step runs it.
async function glowBench(width: number, reps: number): Promise<void> {
  const { enableProfiling, profileReport, resetProfile } = await import("../src/gpu/profile.ts");
  const n = 32, k = 8;
  // [label, C_in, C_out, kernel, spatial, bias, uses per step]
  const shapes: [string, number, number, number, number, boolean, number][] = [];
  for (const [c, hw] of [[4, 16], [8, 8], [16, 4]]) {
    shapes.push([`NN1 3x3 ${c / 2}->${width} @${hw}`, c / 2, width, 3, hw, false, k]);
    shapes.push([`NN2 1x1 ${width}->${width} @${hw}`, width, width, 1, hw, false, k]);
    shapes.push([`NN3 3x3 ${width}->${c} @${hw}`, width, c, 3, hw, true, k]);
    shapes.push([`inv 1x1 ${c}->${c} @${hw}`, c, c, 1, hw, false, k]);
    if (c < 16) shapes.push([`prior 3x3 ${c / 2}->${c} @${hw}`, c / 2, c, 3, hw, true, 1]);
  }
  enableProfiling();
  const rng = new Rng(2);
  let step = 0;
  for (const [label, ci, co, kk, hw, bias, uses] of shapes) {
    const x = Tensor.persistent([n, ci, hw, hw], "x").write(rng.normalArray(n * ci * hw * hw));
    const w = Tensor.persistent([co, ci, kk, kk], "w").write(
      rng.normalArray(co * ci * kk * kk, 0.1),
    );
    const g = Tensor.persistent([n, co, hw, hw], "g").write(rng.normalArray(n * co * hw * hw));
    const b = bias ? Tensor.persistent([co], "b").write(rng.normalArray(co)) : undefined;
    const o = { padding: (kk - 1) / 2, bias: b };
    const row: string[] = [];
    for (
      const [, f] of [
        ["fwd", () => conv2dForward(x, w, o)],
        ["dx", () => conv2dBackwardData(g, w, x.shape, o)],
        ["dw", () => conv2dBackwardWeight(g, x, w.shape, o)],
      ] as [string, () => Tensor][]
    ) {
      f();
      await sync();
      let ms = Infinity; // the best of 3 rounds: other work shares the CPU
      for (let round = 0; round < 3; round++) {
        resetProfile();
        for (let i = 0; i < reps; i++) f();
        await sync();
        const rep = await profileReport(100);
        ms = Math.min(ms, Number(/([\d.]+) ms total/.exec(rep)![1]) / reps);
        clearTape();
      }
      row.push((ms * uses).toFixed(1).padStart(7));
      step += ms * uses;
    }
    for (const t of [x, w, g, b]) t?.release();
    console.log(`${label.padEnd(24)} x${uses}  fwd/dx/dw ms per step:${row.join("")}`);
  }
  console.log(`conv GPU time per step (width ${width}): ${step.toFixed(0)} ms`);
}

// flowgpu beside TF.js's WebGPU backend, in one process on the same adapter: matmul
// 1024x1024x1024, and a 3x3 conv 64->64 on 16 images of 32x32 (pad same), forward and
// forward + backward (data and weight gradients, output gradient all ones).
//
// Both sides are timed the same way: after a warm-up, R iterations are issued back to back and
// the outputs of the last one are downloaded to the CPU; the wall-clock of all that over R is
// the compared figure. GPU-side times are printed too: flowgpu's from timestamps around its
// batched work (bench/util.ts), TF.js's from `tf.time` (kernelMs: the sum of its per-kernel
// timestamp pairs, each kernel submitted alone).
//
// TF.js runs in its native NHWC layout with HWIO filters (its fast path); flowgpu in NCHW with
// [O, C, KH, KW] filters. Same FLOPs, same data sizes.
//
// By default each library requests its own device from the same adapter (TF.js through its
// registered "webgpu" backend, as a user gets it). FLOWGPU_TFJS_SHARED_DEVICE=1 hands TF.js
// flowgpu's GPUDevice instead. FLOWGPU_BENCH_TARGET_MS (default 1000) sets the time a timed batch
// aims for, FLOWGPU_BENCH_TRIALS (default 3) the batches per library, FLOWGPU_BENCH_N (default 2)
// the iterations of the `Deno.bench` cases.
// `deno bench -A --no-check bench/tfjs_bench.ts`
// Pinned inline so the library's deno.json carries no bench-only dependency.
import * as tf from "@tensorflow/tfjs-core";
import { WebGPUBackend } from "@tensorflow/tfjs-backend-webgpu";
import { device, deviceInfo } from "../src/gpu/device.ts";
import { sync } from "../src/gpu/encoder.ts";
import { Rng } from "../src/data/rng.ts";
import { conv2d } from "../src/ops/conv.ts";
import { matmul } from "../src/ops/matmul.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { type Shape, Tensor } from "../src/ops/tensor.ts";
import { adapterLine, fmt, gflops, initBench, measure, median } from "./util.ts";

const TRIALS = Number(Deno.env.get("FLOWGPU_BENCH_TRIALS") ?? 3);
const TARGET_MS = Number(Deno.env.get("FLOWGPU_BENCH_TARGET_MS") ?? 1000);
const BENCH_N = Number(Deno.env.get("FLOWGPU_BENCH_N") ?? 2);
const SHARED = Deno.env.get("FLOWGPU_TFJS_SHARED_DEVICE") === "1";

// ---- TF.js ----

/**
 * tfjs-core alone registers no gradients: the @tensorflow/tfjs bundle imports
 * tfjs-core/dist/register_all_gradients, whose extensionless ESM imports Deno cannot load. This is
 * tfjs-core's own Conv2D gradient (gradients/Conv2D_grad.ts) through the public API, so
 * tf.valueAndGrads runs the Conv2DBackpropInput / Conv2DBackpropFilter kernels it would.
 */
function registerConv2dGrad(): void {
  tf.registerGradient({
    kernelName: "Conv2D",
    inputsToSave: ["x", "filter"],
    gradFunc: (dy, saved, attrs) => {
      const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
      const { strides, pad, dataFormat } = attrs as unknown as {
        strides: [number, number];
        pad: "same" | "valid";
        dataFormat: "NHWC" | "NCHW";
      };
      if (dataFormat !== "NHWC") throw new Error("bench: Conv2D gradient: NHWC only");
      const g = dy as tf.Tensor4D;
      return {
        x: () => tf.conv2dTranspose(g, filter, x.shape, strides, pad),
        filter: () =>
          tf.engine().runKernel("Conv2DBackpropFilter", { x, dy: g }, {
            strides,
            pad,
            dataFormat,
            filterShape: filter.shape,
          }) as tf.Tensor,
      };
    },
  });
}

async function tfSetup(): Promise<string> {
  if (!("gpu" in navigator)) throw new Error("bench: this Deno has no navigator.gpu");
  const name = "webgpu";
  if (SHARED) {
    // TF.js keys its kernels by backend name, so the shared device replaces the "webgpu" factory.
    const i = deviceInfo();
    tf.removeBackend(name);
    tf.registerBackend(
      name,
      () => new WebGPUBackend(device(), { vendor: i.vendor, architecture: "" } as GPUAdapterInfo),
      3,
    );
  }
  const ok = await tf.setBackend(name);
  await tf.ready();
  // Read through a plain view: these fields are private in the typings.
  const backend = tf.backend();
  if (!ok || tf.getBackend() !== name || !(backend instanceof WebGPUBackend)) {
    throw new Error(
      `bench: TF.js did not start its WebGPU backend (setBackend("${name}") -> ${ok}, ` +
        `getBackend() = ${tf.getBackend()}); refusing to time another backend`,
    );
  }
  registerConv2dGrad();
  const shared = backend.device === device();
  const view = backend as unknown as {
    adapterInfo: { vendor: string };
    supportTimestampQuery: boolean;
  };
  return `TF.js ${tf.version_core}: backend "${tf.getBackend()}" (WebGPUBackend), adapter vendor ` +
    `${view.adapterInfo.vendor}, ${
      shared ? "flowgpu's own GPUDevice" : "its own GPUDevice"
    }, timestamp-query ${view.supportTimestampQuery ? "on" : "off"}`;
}

/** One iteration's work; returns the tensors whose values the iteration produces. */
type TfStep = () => tf.Tensor[];

/** Wall-clock ms per iteration: `reps` iterations, then the last outputs downloaded. */
async function tfWall(step: TfStep, reps: number): Promise<number> {
  const t0 = performance.now();
  let outs: tf.Tensor[] = [];
  for (let i = 0; i < reps; i++) {
    tf.dispose(outs);
    outs = tf.tidy(step);
  }
  await Promise.all(outs.map((t) => t.data()));
  const ms = performance.now() - t0;
  tf.dispose(outs);
  return ms / reps;
}

/** TF.js's own GPU kernel time for one iteration (timestamp queries around each kernel). */
async function tfKernelMs(step: TfStep): Promise<number | undefined> {
  let outs: tf.Tensor[] = [];
  const info = await tf.time(() => {
    outs = tf.tidy(step);
  });
  await Promise.all(outs.map((t) => t.data()));
  tf.dispose(outs);
  const k = info.kernelMs;
  return typeof k === "number" && k > 0 ? k : undefined;
}

// ---- flowgpu ----

interface FlowStep {
  /** Encode one iteration; returns the tensors it produces. */
  step: () => Tensor[];
  /** Release what an iteration made, so memory stays flat. */
  done: () => void;
}

async function flowWall(f: FlowStep, reps: number): Promise<number> {
  await sync();
  const t0 = performance.now();
  let outs: Tensor[] = [];
  for (let i = 0; i < reps; i++) {
    if (i) f.done();
    outs = f.step();
  }
  await Promise.all(outs.map((t) => t.read()));
  const ms = performance.now() - t0;
  f.done();
  return ms / reps;
}

// ---- the cases ----

const M = 1024;
const CONV = { n: 16, c: 64, h: 32, w: 32, k: 3 };
const convFlop = 2 * CONV.n * CONV.h * CONV.w * CONV.c * CONV.c * CONV.k * CONV.k;

interface Case {
  name: string;
  flop: number;
  tf: TfStep;
  /** TF.js's outputs in flowgpu's layouts (for the agreement check). */
  tfAsFlow: (outs: tf.Tensor[]) => tf.Tensor[];
  flow: FlowStep;
}

function randn(n: number, seed: number, scale = 1): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

function cases(): Case[] {
  const { n, c, h, w, k } = CONV;
  // One set of values for both libraries: NCHW / OIHW for flowgpu, transposed for TF.js.
  const a = randn(M * M, 1);
  const b = randn(M * M, 2);
  const xs = [n, c, h, w];
  const ws = [c, c, k, k];
  const x = randn(n * c * h * w, 3);
  const wt = randn(c * c * k * k, 4, 1 / Math.sqrt(k * k * c));

  const ta = tf.tensor2d(a, [M, M]);
  const tb = tf.tensor2d(b, [M, M]);
  const tx = tf.tidy(() =>
    tf.transpose(tf.tensor4d(x, xs as [number, number, number, number]), [0, 2, 3, 1])
  );
  const tw = tf.tidy(() =>
    tf.transpose(tf.tensor4d(wt, ws as [number, number, number, number]), [2, 3, 1, 0])
  );
  const tdy = tf.ones([n, h, w, c]);
  const tconv = (x: tf.Tensor, f: tf.Tensor) =>
    tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, 1, "same");
  const tconvGrads = tf.valueAndGrads(tconv);
  const nhwcToNchw = (t: tf.Tensor) => tf.transpose(t, [0, 3, 1, 2]);
  const hwioToOihw = (t: tf.Tensor) => tf.transpose(t, [3, 2, 0, 1]);

  // Persistent tensors are neither recorded nor released by the tape; params want gradients.
  const constant = (data: Float32Array, shape: Shape) =>
    Tensor.persistent(shape, "bench-input").write(data);
  const fa = constant(a, [M, M]);
  const fb = constant(b, [M, M]);
  const fx = constant(x, xs);
  const fw = constant(wt, ws);
  const px = Tensor.param(x, xs, "x");
  const pw = Tensor.param(wt, ws, "w");
  const release = () => clearTape();
  return [
    {
      name: "matmul 1024x1024x1024",
      flop: 2 * M * M * M,
      tf: () => [tf.matMul(ta, tb)],
      tfAsFlow: (o) => o,
      flow: { step: () => [matmul(fa, fb)], done: release },
    },
    {
      name: "conv3x3 64->64 16x32x32 fwd",
      flop: convFlop,
      tf: () => [tconv(tx, tw)],
      tfAsFlow: (o) => [nhwcToNchw(o[0])],
      flow: { step: () => [conv2d(fx, fw, { padding: 1 })], done: release },
    },
    {
      name: "conv3x3 64->64 16x32x32 fwd+bwd",
      flop: 3 * convFlop,
      tf: () => tconvGrads([tx, tw], tdy as tf.Tensor4D).grads,
      tfAsFlow: (o) => [nhwcToNchw(o[0]), hwioToOihw(o[1])],
      flow: {
        step: () => {
          const y = conv2d(px, pw, { padding: 1 });
          backward(y); // seeded with ones, like TF.js's dy
          y.release();
          return [px.grad!, pw.grad!];
        },
        done: () => {
          px.zeroGrad();
          pw.zeroGrad();
          clearTape();
        },
      },
    },
  ];
}

/**
 * One iteration of each library (also their warm-up), outputs compared: a timing of two
 * different computations would mean nothing. Returns the largest difference relative to the
 * largest magnitude of each output.
 */
async function agreement(cs: Case): Promise<number> {
  const mine = cs.flow.step();
  const flowVals = await Promise.all(mine.map((t) => t.read()));
  cs.flow.done();
  const theirs = tf.tidy(() => cs.tfAsFlow(cs.tf()));
  const tfVals = await Promise.all(theirs.map((t) => t.data() as Promise<Float32Array>));
  tf.dispose(theirs);
  let worst = 0;
  flowVals.forEach((f, i) => {
    const t = tfVals[i];
    if (f.length !== t.length) throw new Error(`bench: ${cs.name}: output ${i} sizes differ`);
    let scale = 0, diff = 0;
    for (let j = 0; j < f.length; j++) {
      scale = Math.max(scale, Math.abs(t[j]));
      diff = Math.max(diff, Math.abs(f[j] - t[j]));
    }
    worst = Math.max(worst, diff / scale);
  });
  if (!(worst < 1e-3)) {
    throw new Error(`bench: ${cs.name}: flowgpu and TF.js disagree (max rel diff ${worst})`);
  }
  return worst;
}

// ---- run ----

await initBench(["matmul.wgsl", "conv.wgsl", "elementwise.wgsl", "reduce.wgsl"]);
console.log(`flowgpu ${adapterLine()}`);
console.log(await tfSetup());

/** Iterations per timed batch: enough for TARGET_MS, judged from one warm iteration. */
const repsFor = (ms: number) => Math.max(1, Math.min(50, Math.round(TARGET_MS / ms)));

interface Row {
  name: string;
  flop: number;
  flowWall: number;
  tfWall: number;
  /** Median over trials of TF.js time / flowgpu time, each pair measured back to back. */
  ratio: number;
  flowGpu: number;
  flowMethod: string;
  tfGpu?: number;
}

const rows: Row[] = [];
const all = cases();
for (const cs of all) {
  const agree = await agreement(cs);
  const tfReps = repsFor(await tfWall(cs.tf, 1));
  const flowReps = repsFor(await flowWall(cs.flow, 1));
  // Alternate the libraries batch by batch: the CPU driver shares its cores with other work,
  // and alternating exposes both to the same load.
  const tfWalls: number[] = [];
  const flowWalls: number[] = [];
  const ratios: number[] = [];
  for (let t = 0; t < TRIALS; t++) {
    tfWalls.push(await tfWall(cs.tf, tfReps));
    flowWalls.push(await flowWall(cs.flow, flowReps));
    ratios.push(tfWalls[t] / flowWalls[t]);
  }
  const tfGpu = await tfKernelMs(cs.tf);
  const g = await measure(() => {
    cs.flow.step();
    cs.flow.done();
  }, { reps: flowReps, trials: TRIALS, warmup: 0 });
  rows.push({
    name: cs.name,
    flop: cs.flop,
    flowWall: median(flowWalls),
    tfWall: median(tfWalls),
    ratio: median(ratios),
    flowGpu: g.ms,
    flowMethod: g.method,
    tfGpu,
  });
  console.log(
    `${cs.name}: outputs agree (max rel diff ${agree.toExponential(1)}); ` +
      `flowgpu ${flowWalls.map(fmt).join(", ")} ms (R=${flowReps}), ` +
      `TF.js ${tfWalls.map(fmt).join(", ")} ms (R=${tfReps})`,
  );
}
console.log(report(rows));

function report(rows: Row[]): string {
  const head = [
    "case",
    "flowgpu ms",
    "GFLOP/s",
    "TF.js ms",
    "GFLOP/s",
    "flowgpu/TF.js",
    "flowgpu GPU ms",
    "TF.js GPU ms",
  ];
  const body = rows.map((r) => [
    r.name,
    fmt(r.flowWall),
    fmt(gflops(r.flop, r.flowWall)),
    fmt(r.tfWall),
    fmt(gflops(r.flop, r.tfWall)),
    `${fmt(r.ratio)}x`,
    `${fmt(r.flowGpu)} (${r.flowMethod})`,
    r.tfGpu === undefined ? "-" : fmt(r.tfGpu),
  ]);
  const table = [head, ...body];
  const widths = head.map((_, i) => Math.max(...table.map((r) => r[i].length)));
  const lines = table.map((r) =>
    r.map((c, i) => (i ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ")
  );
  lines.splice(1, 0, widths.map((w) => "-".repeat(w)).join("  "));
  return [
    "ms = wall-clock per iteration incl. the final download (median of " + TRIALS + " batches);",
    "flowgpu/TF.js = flowgpu's throughput over TF.js's (>1: flowgpu is faster), the median of",
    "the per-trial ratios, each trial timing both libraries back to back.",
    ...lines,
  ].join("\n");
}

// The same comparison through `deno bench` (one iteration plus download per sample).
for (const cs of all) {
  Deno.bench({
    name: `TF.js ${cs.name}`,
    group: cs.name,
    baseline: true,
    n: BENCH_N,
    warmup: 1,
    async fn() {
      await tfWall(cs.tf, 1);
    },
  });
  Deno.bench({
    name: `flowgpu ${cs.name}`,
    group: cs.name,
    n: BENCH_N,
    warmup: 1,
    async fn() {
      await flowWall(cs.flow, 1);
    },
  });
}

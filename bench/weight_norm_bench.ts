// weightNorm and spectralNorm on the VAE nets' weight shapes, forward alone and forward +
// backward (GB/s: the forward reads w twice for weight norm, w three times for spectral norm's
// power iteration and division, and writes what once).
//   DisUnknown WNConv2d 4x4 64 -> 128, WNLinear 2048 -> 512, WNConvT2d 4x4 64 -> 32 (dim 1)
//   Zheng & Sun SN-conv 5x5 256 -> 256, SN-FC 4096 -> 512
// `deno bench -A --no-check bench/weight_norm_bench.ts`
import { sync } from "../src/gpu/encoder.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { type Shape, Tensor } from "../src/ops/tensor.ts";
import { spectralNorm, weightNorm } from "../src/ops/weight_norm.ts";
import { Rng } from "../src/util/rng.ts";
import { adapterLine, initBench, measure, rateLine } from "./util.ts";

await initBench(["weight_norm.wgsl", "reduce.wgsl", "elementwise.wgsl"]);

const REPS = 10;
const rng = new Rng(1);
const numel = (s: Shape) => s.reduce((a, b) => a * b, 1);
const param = (s: Shape) => Tensor.param(rng.normalArray(numel(s), 0.05), s, "w");

// [label, weight, forward, full-tensor passes of the forward]
const ops: [string, Tensor[], () => Tensor, number][] = [];
for (
  const [label, shape, dim] of [
    ["WNConv2d 4x4 64->128", [128, 64, 4, 4], 0],
    ["WNLinear 2048->512", [512, 2048], 0],
    ["WNConvT2d 4x4 64->32 dim 1", [64, 32, 4, 4], 1],
  ] as [string, Shape, 0 | 1][]
) {
  const w = param(shape);
  const gain = Tensor.param(new Float32Array(shape[dim]).fill(1), [shape[dim]], "gain");
  ops.push([`weightNorm ${label}`, [w, gain], () => weightNorm(w, { gain, dim }), 3]);
}
for (
  const [label, shape] of [
    ["SN-conv 5x5 256->256", [256, 256, 5, 5]],
    ["SN-FC 4096->512", [512, 4096]],
  ] as [string, Shape][]
) {
  const w = param(shape);
  const u = Tensor.persistent([shape[0]], "u").write(rng.normalArray(shape[0]));
  ops.push([`spectralNorm ${label}`, [w], () => spectralNorm(w, u), 4]);
}

const once = (f: () => Tensor, params: Tensor[], grad: boolean) => () => {
  const y = f();
  if (grad) backward(y);
  else clearTape();
  for (const p of params) p.zeroGrad();
};

console.log(adapterLine());
for (const [name, params, f, passes] of ops) {
  const bytes = passes * 4 * params[0].size;
  const t = await measure(once(f, params, false), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(`${name} fwd`, t, { bytes }));
  const tb = await measure(once(f, params, true), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(`${name} fwd+bwd`, tb, {}));
}

for (const [name, params, f] of ops) {
  Deno.bench({
    name: `${name} fwd+bwd x${REPS}, submit + wait`,
    n: 3,
    warmup: 1,
    async fn() {
      for (let i = 0; i < REPS; i++) once(f, params, true)();
      await sync();
    },
  });
}

// convTranspose2d on the VAE decoders' shapes, batch 16: forward alone and forward + backward
// (data, weight and bias gradients), in GFLOP/s of 2*N*Cin*Cout*KH*KW*H*W flops per pass (the
// forward; forward + backward counts three passes).
//   DisUnknown ResUp        4x4 s2 p1      64 -> 32, 16x16 -> 32x32
//   DisUnknown output       6x6 s2 p2      32 -> 3,  32x32 -> 64x64
//   Zheng & Sun decoder     5x5 s2 p2 op1 128 -> 32, 14x14 -> 28x28
// `deno bench -A --no-check bench/conv_transpose_bench.ts`
import { sync } from "../src/gpu/encoder.ts";
import { convTranspose2d, type ConvTranspose2dOptions } from "../src/ops/conv_transpose.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { adapterLine, initBench, measure, rateLine } from "./util.ts";

await initBench(["conv.wgsl", "reduce.wgsl", "elementwise.wgsl"]);

const N = 16;
const REPS = 4;
const rng = new Rng(1);

// [label, Cin, Cout, k, H, options]
const shapes: [string, number, number, number, number, ConvTranspose2dOptions][] = [
  ["ResUp 4x4 s2 p1 64->32 16x16", 64, 32, 4, 16, { stride: 2, padding: 1 }],
  ["output 6x6 s2 p2 32->3 32x32", 32, 3, 6, 32, { stride: 2, padding: 2 }],
  ["ZS 5x5 s2 p2 op1 128->32 14x14", 128, 32, 5, 14, { stride: 2, padding: 2, outputPadding: 1 }],
];

console.log(adapterLine());
const cases: [string, () => void][] = [];
for (const [label, ci, co, k, h, o] of shapes) {
  // Parameters: persistent, with gradients, so that backward runs every closure.
  const x = Tensor.param(rng.normalArray(N * ci * h * h), [N, ci, h, h], "x");
  const w = Tensor.param(rng.normalArray(ci * co * k * k, 0.05), [ci, co, k, k], "w");
  const b = Tensor.param(new Float32Array(co), [co], "b");
  const opts = { ...o, bias: b };
  const flop = 2 * N * ci * co * k * k * h * h;
  const once = (grad: boolean) => () => {
    const y = convTranspose2d(x, w, opts);
    if (grad) backward(y);
    else clearTape();
    for (const p of [x, w, b]) p.zeroGrad();
  };
  const t = await measure(once(false), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(`convTranspose2d ${label} fwd`, t, { flop }));
  const tb = await measure(once(true), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(`convTranspose2d ${label} fwd+bwd`, tb, { flop: 3 * flop }));
  cases.push([label, once(true)]);
}

for (const [label, f] of cases) {
  Deno.bench({
    name: `convTranspose2d ${label} N=${N} fwd+bwd x${REPS}, submit + wait`,
    n: 3,
    warmup: 1,
    async fn() {
      for (let i = 0; i < REPS; i++) f();
      await sync();
    },
  });
}

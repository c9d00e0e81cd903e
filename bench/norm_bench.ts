// The FUNS / VAE ops: batchNorm (training and eval), upsample2x, leakyRelu and a per-sample
// broadcast mul, each forward alone and forward + backward, on a decoder-sized activation.
// `deno bench -A --no-check bench/norm_bench.ts`
import { sync } from "../src/gpu/encoder.ts";
import { leakyRelu, mul } from "../src/ops/elementwise.ts";
import { batchNorm } from "../src/ops/norm.ts";
import { upsample2x } from "../src/ops/resample.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { adapterLine, initBench, measure, rateLine } from "./util.ts";

await initBench(["elementwise.wgsl", "norm.wgsl", "resample.wgsl", "reduce.wgsl"]);

const SHAPE = [16, 32, 16, 16];
const [N, C, H, W] = SHAPE;
const SIZE = N * C * H * W;
const REPS = 10;

const rng = new Rng(1);
// Parameters: persistent, with gradients, so that backward runs every closure.
const x = Tensor.param(rng.normalArray(SIZE, 1), SHAPE, "x");
const gamma = Tensor.param(new Float32Array(C).fill(1), [C], "gamma");
const beta = Tensor.param(new Float32Array(C), [C], "beta");
const runningMean = Tensor.constant(new Float32Array(C), [C], "running_mean");
const runningVar = Tensor.constant(new Float32Array(C).fill(1), [C], "running_var");
const m = Tensor.param(rng.normalArray(SIZE / N, 1), [1, C, H, W], "m");

const ops: [string, () => Tensor, number][] = [
  // name, forward, bytes moved by the forward (reads + writes of full tensors)
  [
    "batchNorm train",
    () => batchNorm(x, gamma, beta, { training: true, runningMean, runningVar }),
    3,
  ],
  [
    "batchNorm eval",
    () => batchNorm(x, gamma, beta, { training: false, runningMean, runningVar }),
    2,
  ],
  ["upsample2x", () => upsample2x(x), 5],
  ["leakyRelu", () => leakyRelu(x), 2],
  ["mul per-sample [1,C,H,W]", () => mul(x, m), 2],
];

const once = (f: () => Tensor, grad: boolean) => () => {
  const y = f();
  if (grad) backward(y);
  else clearTape();
  for (const p of [x, gamma, beta, m]) p.zeroGrad();
};

console.log(adapterLine());
const shape = `[${SHAPE.join(",")}]`;
for (const [name, f, passes] of ops) {
  const t = await measure(once(f, false), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(`${name} ${shape} fwd`, t, { bytes: passes * 4 * SIZE }));
  const tb = await measure(once(f, true), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(`${name} ${shape} fwd+bwd`, tb, {}));
}

// batchNorm's statistics and parameter sums are reductions over (N, H, W); a larger activation
// shows their cost apart from the dispatch overhead.
const BIG = [32, 64, 32, 32];
const xb = Tensor.param(rng.normalArray(BIG.reduce((a, b) => a * b), 1), BIG, "x big");
const gb = Tensor.param(new Float32Array(BIG[1]).fill(1), [BIG[1]], "gamma big");
const bb = Tensor.param(new Float32Array(BIG[1]), [BIG[1]], "beta big");
const big = () => batchNorm(xb, gb, bb, { training: true });
const onceBig = (grad: boolean) => () => {
  const y = big();
  if (grad) backward(y);
  else clearTape();
  for (const p of [xb, gb, bb]) p.zeroGrad();
};
const bigShape = `[${BIG.join(",")}]`;
const tbf = await measure(onceBig(false), { reps: REPS, trials: 3, warmup: 2 });
console.log(rateLine(`batchNorm train ${bigShape} fwd`, tbf, { bytes: 3 * 4 * xb.size }));
const tbb = await measure(onceBig(true), { reps: REPS, trials: 3, warmup: 2 });
console.log(rateLine(`batchNorm train ${bigShape} fwd+bwd`, tbb, {}));

for (const [name, f] of ops) {
  Deno.bench({
    name: `${name} ${shape} fwd+bwd x${REPS}, submit + wait`,
    n: 3,
    warmup: 1,
    async fn() {
      for (let i = 0; i < REPS; i++) once(f, true)();
      await sync();
    },
  });
}

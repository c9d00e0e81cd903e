// The activation ops: erf, abs, clamp, pow, PReLU and WN-PReLU (fused, with its per-channel
// moments), each forward alone and forward + backward, on a decoder-sized activation.
// `deno bench -A --no-check bench/activation_bench.ts`
import { sync } from "../src/gpu/encoder.ts";
import { abs, clamp, erf, pow, prelu, wnPrelu } from "../src/ops/activation.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { adapterLine, initBench, measure, rateLine } from "./util.ts";

await initBench(["activation.wgsl", "elementwise.wgsl", "reduce.wgsl"]);

const SHAPE = [16, 32, 16, 16];
const [N, C, H, W] = SHAPE;
const SIZE = N * C * H * W;
const REPS = 10;

const rng = new Rng(1);
// Parameters: persistent, with gradients, so that backward runs every closure.
const x = Tensor.param(rng.normalArray(SIZE, 1), SHAPE, "x");
const a = Tensor.param(new Float32Array(C).fill(0.25), [C], "a");
const beta = Tensor.param(rng.normalArray(C, 0.1), [C], "beta");

const ops: [string, () => Tensor, number][] = [
  // name, forward, bytes moved by the forward (reads + writes of full tensors)
  ["erf", () => erf(x), 2],
  ["abs", () => abs(x), 2],
  ["clamp", () => clamp(x, -1, 1), 2],
  ["pow 3", () => pow(x, 3), 2],
  ["prelu", () => prelu(x, a), 2],
  ["wnPrelu", () => wnPrelu(x, a, beta), 2],
];

const once = (f: () => Tensor, grad: boolean) => () => {
  const y = f();
  if (grad) backward(y);
  else clearTape();
  for (const p of [x, a, beta]) p.zeroGrad();
};

console.log(adapterLine());
const shape = `[${SHAPE.join(",")}]`;
for (const [name, f, passes] of ops) {
  const t = await measure(once(f, false), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(`${name} ${shape} fwd`, t, { bytes: passes * 4 * SIZE }));
  const tb = await measure(once(f, true), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(`${name} ${shape} fwd+bwd`, tb, {}));
}

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

// Pooling and resampling ops of the VAE nets on a decoder-sized activation [16, 32, 28, 28]:
// avgPool2d (padding 0: the vec4 kernels; padding 1: DisUnknown's ResDown at e = 1), upsample2x
// with crop 1 (ResUp's shortcut), translate2d (random-offset augmentation), and tile2d of a
// [16, 10] label vector over 28 x 28; each forward alone and forward + backward.
// `deno bench -A --no-check bench/pool_bench.ts`
import { sync } from "../src/gpu/encoder.ts";
import { avgPool2d } from "../src/ops/pool.ts";
import { tile2d, translate2d, upsample2x } from "../src/ops/resample.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { adapterLine, initBench, measure, rateLine } from "./util.ts";

await initBench(["pool.wgsl", "resample.wgsl", "reduce.wgsl", "elementwise.wgsl"]);

const SHAPE = [16, 32, 28, 28];
const [N, C, H, W] = SHAPE;
const SIZE = N * C * H * W;
const REPS = 10;

const rng = new Rng(1);
// Parameters: persistent, with gradients, so that backward runs every closure.
const x = Tensor.param(rng.normalArray(SIZE, 1), SHAPE, "x");
const labels = Tensor.param(rng.normalArray(N * 10, 1), [N, 10], "labels");
const shifts = Tensor.constant(
  Array.from({ length: 2 * N }, () => rng.int(13) - 6),
  [N, 2],
  "shifts",
);

const ops: [string, () => Tensor, number][] = [
  // name, forward, floats moved by the forward (reads + writes)
  ["avgPool2d pad 0", () => avgPool2d(x), 1.25 * SIZE],
  ["avgPool2d pad 1", () => avgPool2d(x, { padding: 1 }), SIZE + (SIZE * 15 * 15) / (28 * 28)],
  ["upsample2x crop 1", () => upsample2x(x, { crop: 1 }), SIZE + (SIZE * 54 * 54) / (28 * 28)],
  ["translate2d", () => translate2d(x, shifts), 2 * SIZE],
  ["tile2d [16,10] -> 28x28", () => tile2d(labels, H, W), N * 10 * H * W],
];

const once = (f: () => Tensor, grad: boolean) => () => {
  const y = f();
  if (grad) backward(y);
  else clearTape();
  for (const p of [x, labels]) p.zeroGrad();
};

console.log(adapterLine());
const shape = `[${SHAPE.join(",")}]`;
for (const [name, f, floats] of ops) {
  const t = await measure(once(f, false), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(`${name} ${shape} fwd`, t, { bytes: 4 * floats }));
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

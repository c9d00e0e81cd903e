// AF flow's new pieces on one SynthLips clip (29 frames) at the CPU default (32x32, L = 4): the
// encoder E over every level, the word RNN (H = 128) over the level-1 z^r, and L_AF (all four
// losses, source and query clips), each forward alone and forward + backward into E and C; then
// a whole stage-2 step's encoding: the frozen Glow (K = 4, width 64) on the source and query clips.
// `deno bench -A --no-check bench/af_bench.ts`
import { sync } from "../src/gpu/encoder.ts";
import { AfFlow } from "../src/models/af.ts";
import { ParamStore } from "../src/nn/store.ts";
import { sum } from "../src/ops/reduce.ts";
import { concatChannels, reshape } from "../src/ops/shape.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { adapterLine, initBench, measure, rateLine } from "./util.ts";

await initBench([
  "actnorm.wgsl",
  "classify.wgsl",
  "conv.wgsl",
  "coupling.wgsl",
  "divergence.wgsl",
  "elementwise.wgsl",
  "gather.wgsl",
  "loss.wgsl",
  "matmul.wgsl",
  "reduce.wgsl",
  "shape.wgsl",
  "squeeze.wgsl",
]);

const N = 29, SIDE = 32, REPS = 4;
const store = new ParamStore(1);
const af = new AfFlow(store, {
  channels: 3,
  height: SIDE,
  width: SIDE,
  levels: 4,
  depth: 4,
  hidden: 64,
  nBits: 5,
}, { words: 32, rnnHidden: 128 });
const rng = new Rng(1);
const latents = (seed: number) =>
  af.latentShapes.map((s, l) => {
    const shape = [N, ...s];
    return Tensor.constant(
      new Rng(seed + l).normalArray(shape.reduce((a, b) => a * b, 1), 1),
      shape,
      `z${seed}.${l}`,
    );
  });
const source = latents(10), query = latents(20);
const x = Tensor.constant(rng.uniformArray(2 * N * 3 * SIDE * SIDE, -0.5, 0.5), [
  2 * N,
  3,
  SIDE,
  SIDE,
], "frames");
store.group("flow").frozen = true;
af.glow.initialize(x);
clearTape();
const params = store.params(["encoder", "classifier"]);
const d1 = af.latentShapes[0].reduce((a, b) => a * b, 1);

const ops: [string, () => Tensor][] = [
  [
    "encoder E, 4 levels",
    () => concatChannels(af.irrelevant(source).map((t) => reshape(t, [N, -1]))),
  ],
  ["word RNN, 29 steps", () => af.classifier!.logits(reshape(af.relevant(source)[0], [N, d1]), N)],
  [
    "L_AF (L_s + L_t + L_p + L_y)",
    () => af.losses({ source, query, frames: N, queryFrames: [5], words: [3], shift: 7 }).total,
  ],
];

const once = (f: () => Tensor, grad: boolean) => () => {
  const y = f();
  if (grad) backward(sum(y), { params });
  else clearTape();
  for (const p of params) p.zeroGrad();
};

console.log(adapterLine());
for (const [name, f] of ops) {
  const t = await measure(once(f, false), { reps: REPS, trials: 3, warmup: 1 });
  console.log(rateLine(`${name} fwd`, t, {}));
  const tb = await measure(once(f, true), { reps: REPS, trials: 3, warmup: 1 });
  console.log(rateLine(`${name} fwd+bwd`, tb, {}));
}
const encode = () => {
  af.glow.encode(x);
  clearTape();
};
const te = await measure(encode, { reps: 2, trials: 3, warmup: 1 });
console.log(rateLine("frozen Glow encode, 2 clips (58 frames)", te, {}));

for (const [name, f] of ops) {
  Deno.bench({
    name: `${name} fwd+bwd x${REPS}, submit + wait`,
    n: 3,
    warmup: 1,
    async fn() {
      for (let i = 0; i < REPS; i++) once(f, true)();
      await sync();
    },
  });
}

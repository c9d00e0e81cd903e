// The MI flow's pieces: the composed 2x2 max-pool and the conditional prior network p_φ(z^r | c)
// forward and forward + backward, then one training step (L_MI forward, backward, Adam) of the
// task's CPU model (SynthLips 3x32x32, L = 4, K = 4, width 64, batch 16) with and without L_i, so
// the cost of the tracked inverse pass shows apart, and one AF-MI fine-tuning step (afmi's CPU
// batch: 1 clip of 8 frames, plus its 8 query frames and 8 pasted ones).
// `deno bench -A --no-check bench/mi_bench.ts`
import { sync } from "../src/gpu/encoder.ts";
import { ConditionPrior, maxPool2x2, MiFlow, type MiFlowConfig } from "../src/models/mi.ts";
import { MiHybrid } from "../src/models/mi_hybrid.ts";
import { ParamStore } from "../src/nn/store.ts";
import { Adam } from "../src/ops/adam.ts";
import { sum } from "../src/ops/reduce.ts";
import { concatChannels } from "../src/ops/shape.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { adapterLine, initBench, measure, rateLine } from "./util.ts";

await initBench([
  "actnorm.wgsl",
  "adam.wgsl",
  "conv.wgsl",
  "coupling.wgsl",
  "divergence.wgsl",
  "elementwise.wgsl",
  "gather.wgsl",
  "linalg.wgsl",
  "loss.wgsl",
  "matmul.wgsl",
  "random.wgsl",
  "reduce.wgsl",
  "shape.wgsl",
  "squeeze.wgsl",
]);

const rng = new Rng(1);
console.log(adapterLine());

// The prior network's first level on a batch of 16 conditions: conv 3 -> 6 at 32x32, pool.
const N = 16;
const POOL = [N, 6, 32, 32];
const px = Tensor.param(rng.normalArray(POOL.reduce((a, b) => a * b), 1), POOL, "x");
const store = new ParamStore(2);
const prior = new ConditionPrior(store.scope("prior"), 3, [[6, 16, 16], [12, 8, 8], [24, 4, 4]]);
const c = Tensor.param(rng.uniformArray(N * 3072, -0.5, 0.5), [N, 3, 32, 32], "c");
const ops: [string, () => Tensor][] = [
  [`maxPool2x2 [${POOL}]`, () => maxPool2x2(px)],
  [`condition prior [${N},3,32,32] 3 levels`, () => {
    const p = prior.apply(c);
    return concatChannels([p.mu[0], p.logStd[0]]);
  }],
];
const once = (f: () => Tensor, grad: boolean) => () => {
  const y = f();
  if (grad) backward(sum(y));
  else clearTape();
  for (const t of [px, c, ...store.params()]) t.zeroGrad();
};
for (const [name, f] of ops) {
  const t = await measure(once(f, false), { reps: 5, trials: 3, warmup: 2 });
  console.log(rateLine(`${name} fwd`, t, {}));
  const tb = await measure(once(f, true), { reps: 5, trials: 3, warmup: 2 });
  console.log(rateLine(`${name} fwd+bwd`, tb, {}));
}

// One step of the task's CPU model on a fixed batch (the data is rendered on the CPU separately).
const cpu: Partial<MiFlowConfig> = {
  channels: 3,
  size: 32,
  levels: 4,
  depth: 4,
  hidden: 64,
  box: { top: 15, bottom: 23, left: 10, right: 20 },
};
const x = Tensor.constant(rng.uniformArray(N * 3072, -0.5, 0.5), [N, 3, 32, 32], "x");
for (const li of [false, true]) {
  const s = new ParamStore(3);
  const mi = new MiFlow(s.scope(), { ...cpu, li });
  mi.glow.initialize(x);
  const adam = new Adam(s.groups(), { lr: 1e-4 });
  const noise = new Rng(4);
  const step = () => {
    const { total } = mi.losses(x, { noise: (n) => noise.normalArray(n) });
    backward(total, { params: adam.params });
    adam.step();
  };
  const t = await measure(step, { reps: 2, trials: 3, warmup: 1 });
  const what = li ? "L_d + α L_r + L_i" : "L_d + α L_r (no inverse)";
  console.log(
    rateLine(
      `mi step ${what} [${N},3,32,32] L4 K4 w64 (${s.count().toLocaleString("en")} params)`,
      t,
      {},
    ),
  );
  await sync();
  adam.release();
  mi.release();
  s.release();
}

{
  const T = 8;
  const s = new ParamStore(5);
  const mi = new MiFlow(s.scope(), { ...cpu, words: 32 });
  const xs = Tensor.constant(rng.uniformArray(T * 3072, -0.5, 0.5), [T, 3, 32, 32], "xs");
  const xq = Tensor.constant(rng.uniformArray(T * 3072, -0.5, 0.5), [T, 3, 32, 32], "xq");
  mi.glow.initialize(xs);
  const hybrid = new MiHybrid(mi, 0.5);
  const adam = new Adam(s.groups(), { lr: 1e-4 });
  const noise = new Rng(6);
  const step = () => {
    const { total } = hybrid.losses(
      xs,
      { noise: (n) => noise.normalArray(n), words: { frames: T, labels: [3] } },
      { frames: T, shift: 3, query: xq, queryFrames: [5] },
    );
    backward(total, { params: adam.params });
    adam.step();
  };
  const t = await measure(step, { reps: 2, trials: 3, warmup: 1 });
  console.log(rateLine(`afmi step L_MI + L_y + β L_AF^H [1 clip x ${T}] L4 K4 w64`, t, {}));
  await sync();
  adam.release();
  hybrid.release();
  mi.release();
  s.release();
}

for (const [name, f] of ops) {
  Deno.bench({
    name: `${name} fwd+bwd x5, submit + wait`,
    n: 3,
    warmup: 1,
    async fn() {
      for (let i = 0; i < 5; i++) once(f, true)();
      await sync();
    },
  });
}

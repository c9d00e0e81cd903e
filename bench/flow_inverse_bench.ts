// Differentiable inverses: a small Glow's decode with gradients (the MI flow's L_i pass) against
// its forward, both alone and with their backward, and the two ops with new backwards (the
// affine coupling's inverse, W^-1 of the 1x1 convolutions).
// `deno bench -A --no-check bench/flow_inverse_bench.ts`
import { sync } from "../src/gpu/encoder.ts";
import { Glow } from "../src/models/glow.ts";
import { affineCouplingInverse } from "../src/ops/coupling.ts";
import { inverseLogdet } from "../src/ops/linalg.ts";
import { mul } from "../src/ops/elementwise.ts";
import { sum } from "../src/ops/reduce.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { adapterLine, initBench, measure, rateLine } from "./util.ts";

await initBench([
  "actnorm.wgsl",
  "conv.wgsl",
  "coupling.wgsl",
  "elementwise.wgsl",
  "linalg.wgsl",
  "loss.wgsl",
  "matmul.wgsl",
  "reduce.wgsl",
  "shape.wgsl",
  "squeeze.wgsl",
]);

const rng = new Rng(1);
const REPS = 3;

// A small Glow: 1x16x16, L = 2, K = 4, width 32, batch 8; affine couplings, LU 1x1 convolutions.
const N = 8;
const glow = new Glow({ channels: 1, height: 16, width: 16, levels: 2, depth: 4, hidden: 32 });
const x = Tensor.constant(rng.uniformArray(N * 256, -0.5, 0.5), [N, 1, 16, 16], "x");
glow.initialize(x);
const latents = glow.latentShapes.map((s, l) =>
  Tensor.param(rng.normalArray(N * s[0] * s[1] * s[2], 0.7), [N, ...s], `z${l}`)
);
// A fixed target for the decoded images, as L_i's ‖x̂ − x‖² has.
const target = Tensor.constant(rng.uniformArray(N * 256, -0.5, 0.5), [N, 1, 16, 16], "target");
const zeroGrads = () => {
  for (const g of glow.store.groups()) g.zeroGrad();
  for (const z of latents) z.zeroGrad();
};

const model: [string, () => Tensor][] = [
  ["glow forward (loss)", () => glow.loss(x)],
  ["glow decode, grad", () => {
    const d = glow.decode(latents, { grad: true });
    return sum(mul(d, target));
  }],
];

const once = (f: () => Tensor, grad: boolean) => () => {
  const y = f();
  if (grad) backward(y);
  else clearTape();
  zeroGrads();
};

console.log(adapterLine());
const shape = `[${N},1,16,16] L2 K4 w32`;
const plain = await measure(() => {
  glow.decode(latents);
  clearTape();
}, { reps: REPS, trials: 3, warmup: 2 });
console.log(rateLine(`glow decode (sampling) ${shape} fwd`, plain, {}));
for (const [name, f] of model) {
  const t = await measure(once(f, false), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(`${name} ${shape} fwd`, t, {}));
  const tb = await measure(once(f, true), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(`${name} ${shape} fwd+bwd`, tb, {}));
}

// The ops: the affine coupling's inverse on a coupling-sized activation, W^-1 at Glow's widths.
// Backward seeds ones (the gradient of the output's sum).
const YB = [16, 6, 16, 16];
const size = YB.reduce((a, b) => a * b);
const yb = Tensor.param(rng.normalArray(size, 1), YB, "yb");
const h = Tensor.param(rng.normalArray(2 * size, 1), [16, 12, 16, 16], "h");
const ws = [12, 48, 96].map((c) =>
  Tensor.param(
    rng.normalArray(c * c, 1).map((v, i) => v + (i % (c + 1) === 0 ? 3 : 0)),
    [c, c],
    `w${c}`,
  )
);
const ops: [string, () => Tensor, number][] = [
  [
    `affineCouplingInverse [${YB}]`,
    () => affineCouplingInverse(yb, h).xb,
    5 * 4 * size, // y_b, h (2), x_b, -log s
  ],
  ...ws.map((w): [string, () => Tensor, number] => [
    `inverseLogdet W^-1 [${w.shape}]`,
    () => inverseLogdet(w).inv,
    0,
  ]),
];
const opOnce = (f: () => Tensor, grad: boolean) => () => {
  const y = f();
  if (grad) backward(y);
  else clearTape();
  for (const p of [yb, h, ...ws]) p.zeroGrad();
};
for (const [name, f, bytes] of ops) {
  const t = await measure(opOnce(f, false), { reps: 10, trials: 3, warmup: 2 });
  console.log(rateLine(`${name} fwd`, t, bytes ? { bytes } : {}));
  const tb = await measure(opOnce(f, true), { reps: 10, trials: 3, warmup: 2 });
  console.log(rateLine(`${name} fwd+bwd`, tb, {}));
}

for (const [name, f] of model) {
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

// Classification and GAN losses: logsumexp, softmax, NLL and NLU with labels (weighted, on an
// (m+1)-way softmax), soft and uniform cross-entropy, and BCE-with-logits / LSGAN / hinge on
// discriminator scores; each forward alone and forward + backward.
// `deno bench -A --no-check bench/classify_bench.ts`
import { sync } from "../src/gpu/encoder.ts";
import {
  logsumexp,
  nllLoss,
  nluClassWeights,
  nluLoss,
  softCrossEntropy,
  softmax,
} from "../src/ops/classify.ts";
import { bceWithLogits, hingeLoss, lsganLoss } from "../src/ops/gan.ts";
import { sum } from "../src/ops/reduce.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { adapterLine, initBench, measure, rateLine } from "./util.ts";

await initBench(["classify.wgsl", "gan.wgsl", "reduce.wgsl", "elementwise.wgsl"]);

// A classifier head's logits (B = 256 samples, 10 classes + 1 fake) and a discriminator's
// scores for a batch of 4096 (a large batch, or a patch discriminator's map).
const B = 256, K = 11, M = 10, S = 4096;
const REPS = 20;

const rng = new Rng(1);
// Parameters: persistent, with gradients, so that backward runs every closure.
const x = Tensor.param(rng.normalArray(B * K, 2), [B, K], "logits");
const target = Tensor.param(rng.uniformArray(B * K, 0, 1), [B, K], "target");
const scores = Tensor.param(rng.normalArray(S, 2), [S, 1], "scores");
const labels = Uint32Array.from({ length: B }, (_, i) => (i * 7) % M);
const cw = nluClassWeights(new Array(M).fill(1 / M));

const ops: [string, () => Tensor][] = [
  [`logsumexp [${B},${K}]`, () => sum(logsumexp(x))],
  [`softmax [${B},${K}]`, () => sum(softmax(x))],
  [`nllLoss [${B},${K}]`, () => nllLoss(x, labels)],
  [
    `nluLoss [${B},${K}] m-way, q-weighted`,
    () => nluLoss(x, labels, { classes: M, ignoreExtra: true, classWeights: cw }),
  ],
  [`nluLoss [${B},${K}] (m+1)-way`, () => nluLoss(x, labels, { classes: M })],
  [`softCrossEntropy [${B},${K}]`, () => softCrossEntropy(x, target)],
  [`softCrossEntropy uniform [${B},${K}]`, () => softCrossEntropy(x, "uniform")],
  [`bceWithLogits [${S},1] real`, () => bceWithLogits(scores, 1)],
  [`lsganLoss [${S},1] -1`, () => lsganLoss(scores, -1)],
  [`hingeLoss [${S},1] fake`, () => hingeLoss(scores, "fake")],
];

const once = (f: () => Tensor, grad: boolean) => () => {
  const y = f();
  if (grad) backward(y);
  else clearTape();
  for (const p of [x, target, scores]) p.zeroGrad();
};

console.log(adapterLine());
for (const [name, f] of ops) {
  const t = await measure(once(f, false), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(`${name} fwd`, t, {}));
  const tb = await measure(once(f, true), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(`${name} fwd+bwd`, tb, {}));
}

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

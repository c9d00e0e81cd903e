// The VAE-family divergences: MSE and the learned-sigma Gaussian NLL on a batch of 28x28 RGB
// reconstructions, KL against N(0, I) and between two diagonal Gaussians on a batch of codes, and
// the GM logits at Lr-LiVAE's MNIST sizes; each forward alone and forward + backward.
// `deno bench -A --no-check bench/divergence_bench.ts`
import { sync } from "../src/gpu/encoder.ts";
import { gaussianNll, gmLogits, klDiagGaussians, klStdNormal, mse } from "../src/ops/divergence.ts";
import { mean } from "../src/ops/reduce.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { adapterLine, initBench, measure, rateLine } from "./util.ts";

await initBench(["divergence.wgsl", "reduce.wgsl", "elementwise.wgsl"]);

const REPS = 10;
const IMG = [64, 3, 28, 28];
const IMG_SIZE = IMG.reduce((a, b) => a * b, 1);
const [B, D, C, DS] = [64, 100, 10, 32]; // batch, z_u size, classes, z_s size

const rng = new Rng(1);
// Parameters: persistent, with gradients, so that backward runs every closure.
const p = (n: number, shape: number[], name: string, std = 1) =>
  Tensor.param(rng.normalArray(n, std), shape, name);
const x = p(IMG_SIZE, IMG, "x"), xbar = p(IMG_SIZE, IMG, "xbar");
const logSigma = p(B, [B, 1], "logSigma", 0.1);
const mu = p(B * D, [B, D], "mu"), lv = p(B * D, [B, D], "logvar", 0.3);
const mu2 = p(B * D, [B, D], "mu2"), lv2 = p(B * D, [B, D], "logvar2", 0.3);
const zs = p(B * DS, [B, DS], "z_s");
const gmMu = p(C * DS, [C, DS], "gm.mu"), gmLv = p(C * DS, [C, DS], "gm.logvar", 0.3);
const all = [x, xbar, logSigma, mu, lv, mu2, lv2, zs, gmMu, gmLv];

const ops: [string, () => Tensor, { bytes?: number; flop?: number }][] = [
  // name, forward (a scalar loss), work of the forward
  [`mse [${IMG}]`, () => mse(x, xbar), { bytes: 2 * 4 * IMG_SIZE }],
  [`gaussianNll [${IMG}]`, () => mean(gaussianNll(x, xbar, logSigma)), { bytes: 2 * 4 * IMG_SIZE }],
  [`klStdNormal [${B},${D}]`, () => mean(klStdNormal(mu, lv)), { bytes: 2 * 4 * B * D }],
  [
    `klDiagGaussians [${B},${D}]`,
    () => mean(klDiagGaussians(mu, lv, mu2, lv2)),
    { bytes: 4 * 4 * B * D },
  ],
  [`gmLogits B${B} C${C} D${DS}`, () => mean(gmLogits(zs, gmMu, gmLv)), { flop: 6 * B * C * DS }],
];

const once = (f: () => Tensor, grad: boolean) => () => {
  const y = f();
  if (grad) backward(y);
  else clearTape();
  for (const t of all) t.zeroGrad();
};

console.log(adapterLine());
for (const [name, f, work] of ops) {
  const t = await measure(once(f, false), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(`${name} fwd`, t, work));
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

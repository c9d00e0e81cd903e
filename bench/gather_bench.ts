// Indexing ops at VAE-model sizes: a batch of 28x28 RGB images gathered by a derangement (the
// fusion partners of CMI-VAE), label embeddings, where with a full (nested-dropout) mask on a
// batch of codes, and the projection-discriminator term; each forward alone and forward +
// backward. The index upload (and its inverse, built on the CPU) is part of every forward.
// `deno bench -A --no-check bench/gather_bench.ts`
import { sync } from "../src/gpu/encoder.ts";
import { embedding, gatherBatch, projectionTerm, where } from "../src/ops/gather.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { adapterLine, initBench, measure, rateLine } from "./util.ts";

await initBench(["gather.wgsl", "reduce.wgsl", "elementwise.wgsl"]);

const REPS = 10;
const IMG = [64, 3, 28, 28];
const IMG_SIZE = IMG.reduce((a, b) => a * b, 1);
const [B, C, D, F] = [64, 10, 100, 512]; // batch, classes, code size, discriminator features

const rng = new Rng(1);
// Parameters: persistent, with gradients, so that backward runs every closure.
const p = (shape: number[], name: string) =>
  Tensor.param(rng.normalArray(shape.reduce((a, b) => a * b, 1), 1), shape, name);
const images = p(IMG, "x");
const table = p([C, D], "embed");
const a = p([B, D], "a"), b = p([B, D], "b");
const mask = Tensor.constant(Array.from({ length: B * D }, () => rng.int(2)), [B, D], "mask");
const projTable = p([C, F], "proj"), h = p([B, F], "h");
const all = [images, table, a, b, projTable, h];
const labels = Uint32Array.from({ length: B }, () => rng.int(C));
const derangement = Array.from({ length: B }, (_, i) => (i + 1 + rng.int(B - 1)) % B);

const ops: [string, () => Tensor, number][] = [
  // name, forward, bytes moved by the forward
  [`gatherBatch [${IMG}]`, () => gatherBatch(images, derangement), 2 * 4 * IMG_SIZE],
  [`embedding [${C},${D}] B${B}`, () => embedding(table, labels), 2 * 4 * B * D],
  [`where full mask [${B},${D}]`, () => where(mask, a, b), 4 * 4 * B * D],
  [`projectionTerm [${C},${F}] B${B}`, () => projectionTerm(projTable, labels, h), 2 * 4 * B * F],
];

const once = (f: () => Tensor, grad: boolean) => () => {
  const y = f();
  if (grad) backward(y);
  else clearTape();
  for (const t of all) t.zeroGrad();
};

console.log(adapterLine());
for (const [name, f, bytes] of ops) {
  const t = await measure(once(f, false), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(`${name} fwd`, t, { bytes }));
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

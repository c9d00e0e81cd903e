// The Glow trainer on a slice of real MNIST: the loss falls, a checkpoint round trip reproduces
// log p(x) bit for bit, resuming gives the same parameters as an uninterrupted run, and a
// checkpoint from another configuration is refused by name.
import assert from "node:assert/strict";
import "./setup.ts";
import { loadMnist } from "../src/data/mnist.ts";
import { encoderStats } from "../src/gpu/encoder.ts";
import type { ImageSet } from "../src/data/batches.ts";
import { cpuPreset, type TrainConfig } from "../src/train/config.ts";
import { GlowTrainer } from "../src/train/glow_trainer.ts";
import { dequantize } from "../src/data/batches.ts";
import { Rng } from "../src/data/rng.ts";
import { clearTape, noGrad } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";

const m = await loadMnist("train", { limit: 640 });
const train: ImageSet = { ...m, channels: 1 };
const tiny: TrainConfig = {
  ...cpuPreset,
  levels: 2,
  depth: 2,
  width: 16,
  batch: 16,
  warmup: 5,
  lr: 2e-3,
  initBatch: 64,
  evalBatch: 64,
};

async function logProbOf(t: GlowTrainer): Promise<Float32Array> {
  const x = dequantize(train, Uint32Array.from({ length: 8 }, (_, i) => i), 8, new Rng(3));
  const lp = await noGrad(() => t.model.logProb(Tensor.from(x, [8, 1, 32, 32]))).read();
  clearTape();
  return lp;
}

Deno.test("train: a tiny Glow's loss falls on real MNIST", async () => {
  const t = new GlowTrainer(tiny, train);
  const bpd: number[] = [];
  let groups = 0;
  for (let i = 0; i < 40; i++) {
    bpd.push((await t.trainStep()).bpd);
    if (i === 2) groups = encoderStats().bindGroups;
  }
  // Every step reuses the same pooled buffers, so no step after the first creates bind groups.
  assert.equal(encoderStats().bindGroups, groups, "bind groups created after the first steps");
  const first = bpd.slice(0, 5).reduce((a, b) => a + b) / 5;
  const last = bpd.slice(-5).reduce((a, b) => a + b) / 5;
  assert.ok(bpd.every(Number.isFinite), "finite losses");
  assert.ok(
    last < first - 0.5,
    `bits/dim fell from ${first.toFixed(3)} to only ${last.toFixed(3)}`,
  );
  const testBpd = await t.evaluate(train, 128);
  assert.ok(testBpd < first, `evaluation ${testBpd} below the starting ${first}`);
  t.model.params.release();
});

Deno.test("train: save -> load reproduces log p(x) bit for bit; resume equals an uninterrupted run", async () => {
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/checkpoint.safetensors`;
  const straight = new GlowTrainer(tiny, train);
  for (let i = 0; i < 6; i++) await straight.trainStep();

  const first = new GlowTrainer(tiny, train);
  for (let i = 0; i < 3; i++) await first.trainStep();
  await first.save(path);
  const before = await logProbOf(first);

  const resumed = new GlowTrainer(tiny, train);
  resumed.load(path);
  assert.deepEqual(await logProbOf(resumed), before, "log p(x) after load");
  assert.equal(resumed.step, 3);
  for (let i = 0; i < 3; i++) await resumed.trainStep();

  const a = await Tensor.readAll(straight.model.params.list());
  const b = await Tensor.readAll(resumed.model.params.list());
  a.forEach((v, i) =>
    assert.deepEqual(b[i], v, `parameter ${straight.model.params.list()[i].name}`)
  );
  for (const t of [straight, first, resumed]) t.model.params.release();
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("train: a checkpoint from another configuration is refused, naming the difference", async () => {
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/checkpoint.safetensors`;
  const t = new GlowTrainer(tiny, train);
  await t.trainStep();
  await t.save(path);
  const other = new GlowTrainer({ ...tiny, width: 8 }, train);
  assert.throws(() => other.load(path), /trained with width=16 but the model has width=8/);
  assert.throws(
    () => other.load(`${dir}/missing.safetensors`),
    /checkpoint .*missing.safetensors not found/,
  );
  t.model.params.release();
  other.model.params.release();
  Deno.removeSync(dir, { recursive: true });
});

// The one trainer on real MNIST: a tiny Glow's loss falls with no new bind groups after the first
// steps; a checkpoint round trip reproduces log p(x) bit for bit and a resumed run equals an
// uninterrupted one; checkpoints of another configuration, model or format are refused by name;
// a run folder belongs to one run (refusal, --overwrite, the lock, metrics purged on resume);
// evaluate writes eval.json; flags and --help come from the tables; the autoencoder learns.
import assert from "node:assert/strict";
import "./setup.ts";
import { join } from "node:path";
import { dequantize } from "../src/data/batches.ts";
import { encoderStats } from "../src/gpu/encoder.ts";
import { clearTape, noGrad } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { evaluate, parseTrain } from "../src/train/cli.ts";
import type { GlowMnist } from "../src/train/glow_task.ts";
import { GpuMetrics } from "../src/train/metrics.ts";
import { saveCheckpoint } from "../src/train/checkpoint.ts";
import { Session, train } from "../src/train/trainer.ts";

const TINY = [
  ...["--levels", "2", "--depth", "2", "--width", "16", "--batch", "16", "--warmup", "5"],
  ...["--init-batch", "64", "--eval-batch", "64", "--eval-limit", "64", "--train-limit", "640"],
  ...["--sample-every", "0", "--steps", "40"],
];

async function session(extra: string[] = []): Promise<Session> {
  const { task, cfg } = parseTrain([...TINY, ...extra]);
  const s = new Session(task, cfg, await task.build(cfg, "train"));
  s.model.init?.();
  clearTape();
  return s;
}

async function logProbOf(s: Session): Promise<Float32Array> {
  const m = s.model as GlowMnist;
  const x = dequantize(m.train, Uint32Array.from({ length: 8 }, (_, i) => i), 8, new Rng(3));
  const lp = await noGrad(() => m.glow.logProb(Tensor.from(x, [8, 1, 32, 32]))).read();
  clearTape();
  return lp;
}

Deno.test("train: a tiny Glow's bits/dim fall; one submit and no new bind groups per step", async () => {
  const s = await session();
  const metrics = new GpuMetrics();
  const bpd: number[] = [];
  let groups = 0;
  for (let i = 0; i < 40; i++) {
    const before = encoderStats().submits;
    s.trainStep(metrics);
    assert.equal(encoderStats().submits - before, 1, "one submit per step");
    if (i % 5 === 4) bpd.push((await metrics.read()).get("bpd")!.mean);
    if (i === 4) groups = encoderStats().bindGroups;
  }
  assert.equal(encoderStats().bindGroups, groups, "bind groups created after the first steps");
  assert.ok(bpd.every(Number.isFinite), `finite: ${bpd}`);
  assert.ok(bpd[7] < bpd[0] - 0.5, `bits/dim fell from ${bpd[0]} to only ${bpd[7]}`);
  const e = await s.model.evaluate({ final: false });
  assert.ok((e.metrics.test_bpd as number) < bpd[0], `test ${e.metrics.test_bpd} < ${bpd[0]}`);
  metrics.release();
  s.release();
});

Deno.test("train: save -> load reproduces log p(x) bit for bit; resume equals an uninterrupted run", async () => {
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/checkpoint.safetensors`;
  const straight = await session();
  for (let i = 0; i < 6; i++) straight.trainStep();

  const first = await session();
  for (let i = 0; i < 3; i++) first.trainStep();
  await first.save(path);
  const before = await logProbOf(first);

  const { task, cfg } = parseTrain(TINY);
  const resumed = new Session(task, cfg, await task.build(cfg, "train"));
  resumed.load(path);
  assert.deepEqual(await logProbOf(resumed), before, "log p(x) after load");
  assert.equal(resumed.step, 3);
  for (let i = 0; i < 3; i++) resumed.trainStep();

  const a = await Tensor.readAll(straight.model.store.params());
  const b = await Tensor.readAll(resumed.model.store.params());
  a.forEach((v, i) =>
    assert.deepEqual(b[i], v, `parameter ${straight.model.store.params()[i].name}`)
  );
  for (const s of [straight, first, resumed]) s.release();
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("train: checkpoints of another configuration, model or format are refused by name", async () => {
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/checkpoint.safetensors`;
  const s = await session();
  s.trainStep();
  await s.save(path);
  const other = await session(["--width", "8"]);
  assert.throws(() => other.load(path), /trained with width=16 but the model has width=8/);
  assert.throws(() => other.load(`${dir}/missing.safetensors`), /missing.safetensors not found/);
  const old = `${dir}/old.safetensors`;
  saveCheckpoint(old, { w: { shape: [1], data: new Float32Array(1) } }, {
    format: "flowgpu-glow-1",
  });
  assert.throws(() => other.load(old), /first Glow trainer \(format flowgpu-glow-1\)/);
  const { task, cfg } = parseTrain(["--model", "ae", "--train-limit", "64"]);
  const ae = new Session(task, cfg, await task.build(cfg, "train"));
  assert.throws(() => ae.load(path), /holds a 'glow' model, not 'ae'/);
  for (const x of [s, other, ae]) x.release();
  Deno.removeSync(dir, { recursive: true });
});

const lines = (dir: string) =>
  Deno.readTextFileSync(join(dir, "metrics.jsonl")).trim().split("\n").map((l) => JSON.parse(l));

Deno.test("train: a run folder belongs to one run; resume drops metric lines past the checkpoint", async () => {
  const dir = Deno.makeTempDirSync();
  const run = (extra: string[]) => {
    const { task, cfg } = parseTrain([...TINY, "--out", dir, "--log-every", "2", ...extra]);
    return train(task, cfg);
  };
  await run(["--steps", "4", "--checkpoint-every", "4"]);
  for (const f of ["config.json", "checkpoint.safetensors", "eval.json", "loss.png"]) {
    assert.ok(Deno.statSync(join(dir, f)).isFile, `${f} written`);
  }
  // A crash after logging steps 5 and 6 with the checkpoint still at 4:
  Deno.writeTextFileSync(join(dir, "metrics.jsonl"), '{"step":6,"bpd":1}\n{"step":8}\n', {
    append: true,
  });
  await assert.rejects(run(["--steps", "4"]), /holds another run \(config.json, metrics.jsonl/);
  await run(["--steps", "8", "--resume"]);
  const steps = lines(dir).filter((l) => !l.final && l.test_bpd === undefined).map((l) => l.step);
  assert.deepEqual(steps, [2, 4, 6, 8], "each step logged once");
  assert.equal(lines(dir).filter((l) => l.step === 8 && l.bpd === 1).length, 0);

  // Another process holds the folder: refused; a stale lock (dead process) is taken over.
  Deno.writeTextFileSync(join(dir, ".lock"), `${Deno.pid}\n`);
  await assert.rejects(run(["--steps", "2", "--overwrite"]), /in use by process/);
  Deno.writeTextFileSync(join(dir, ".lock"), "999999999\n");
  await run(["--steps", "2", "--overwrite"]);
  assert.deepEqual(lines(dir).filter((l) => !l.final).map((l) => l.step), [2], "overwritten");
  assert.throws(() => Deno.statSync(join(dir, ".lock")), "lock released");
  await assert.rejects(
    run(["--steps", "2", "--resume", "--out", `${dir}/empty`]),
    /nothing to resume/,
  );

  // evaluate reads the model and flags from the run's config.json.
  Deno.removeSync(join(dir, "eval.json"));
  await evaluate(["--out", dir, "--eval-limit", "32"]);
  const ev = JSON.parse(Deno.readTextFileSync(join(dir, "eval.json")));
  assert.equal(ev.model, "glow");
  assert.equal(ev.metrics.test_images, 32);
  assert.ok(ev.metrics.test_bpd > 0 && ev.metrics.test_bpd < 8, `test_bpd ${ev.metrics.test_bpd}`);
  assert.ok(ev.metrics.inverse_rel_error < 1e-4, `inverse error ${ev.metrics.inverse_rel_error}`);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("train: flags come from the tables, with clear errors and per-model help", () => {
  assert.throws(() => parseTrain(["--model", "nope"]), /unknown --model nope \(one of glow, ae/);
  assert.throws(() => parseTrain(["--widht", "3"]), /Unknown option '--widht'/);
  assert.throws(() => parseTrain(["--width", "3.5"]), /--width 3.5: expected an integer >= 1/);
  assert.throws(() => parseTrain(["--coupling", "x"]), /--coupling x: expected one of affine/);
  assert.throws(() => parseTrain(["--model", "ae", "--width", "3"]), /Unknown option '--width'/);
  const { cfg } = parseTrain(["--preset", "gpu", "--no-lu"]);
  assert.equal(cfg.width, 512);
  assert.equal(cfg.lu, false);
  assert.equal(cfg.out, "runs/glow-mnist-gpu");
  const help = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/train/cli.ts", "--model", "ae", "--help"],
    cwd: new URL("..", import.meta.url),
  }).outputSync();
  const text = new TextDecoder().decode(help.stdout);
  assert.equal(help.code, 0);
  assert.match(text, /--latent N\s+code size \[32\]/);
  assert.match(text, /--steps N\s+training steps \[1000; gpu: 20000\]/);
  assert.match(text, /glow\s+multi-scale Glow/);
});

Deno.test("train: the autoencoder task lowers its reconstruction error", async () => {
  const { task, cfg } = parseTrain(["--model", "ae", "--train-limit", "640", "--steps", "60"]);
  const s = new Session(task, cfg, await task.build(cfg, "train"));
  const metrics = new GpuMetrics();
  const mse: number[] = [];
  for (let i = 0; i < 60; i++) {
    s.trainStep(metrics);
    if (i % 10 === 9) mse.push((await metrics.read()).get("mse")!.mean);
  }
  assert.ok(mse[5] < 0.7 * mse[0], `mse fell from ${mse[0]} to only ${mse[5]}`);
  metrics.release();
  s.release();
});

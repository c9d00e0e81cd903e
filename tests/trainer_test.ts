// The trainer's own machinery on test-local tasks written only against the task interface: the
// GPU metric accumulators, the NaN/Inf guard (skipped updates leave parameters untouched and a
// run of them stops training with the checkpoint kept), two optimizers with their own groups and
// learning rates, and SIGINT (the run stops at a step boundary and checkpoints).
import assert from "node:assert/strict";
import "./setup.ts";
import { join } from "node:path";
import { ParamStore } from "../src/nn/store.ts";
import { mul, square, sub } from "../src/ops/elementwise.ts";
import { sum } from "../src/ops/reduce.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { defaults } from "../src/train/flags.ts";
import { GpuMetrics } from "../src/train/metrics.ts";
import { type Config, defineTask, type Model } from "../src/train/task.ts";
import { Session, train } from "../src/train/trainer.ts";
import { trainerTable } from "../src/train/trainer_flags.ts";

Deno.test("metrics: sums, counts and the last value per series; non-finite values counted apart", async () => {
  const m = new GpuMetrics();
  const vals = [1.5, NaN, 2.5, Infinity, -1];
  for (const v of vals) m.add("x", Tensor.from([v], [1]));
  m.add("clip", Tensor.from([0, 0.5, 1, 2], [4]), 1, "clipped");
  m.add("clip", Tensor.from([0, 0.5, 1, 2], [4]), 2, "clipped");
  const s = await m.read();
  assert.deepEqual(s.get("x"), { mean: 1, finite: 3, nonFinite: 2, last: -1 });
  assert.deepEqual(s.get("clip"), { mean: 0.5, finite: 2, nonFinite: 0, last: 0 });
  const again = await m.read();
  assert.equal(again.get("x")!.finite, 0, "read starts the window over");
  m.release();
});

const flags = {
  target: { default: 3, real: true, help: "what the parameter is pulled towards" },
  poison: { default: false, help: "multiply the loss by NaN" },
  stageAt: { default: 0, help: "from this step on, only optimizer a updates (0: never)" },
};

/** p is pulled to `target`; q (its own optimizer, half the learning rate) to -target. */
class Pull implements Model {
  readonly store = new ParamStore(1);
  readonly p = this.store.scope("a").param("p", [3], [0, 0, 0]);
  readonly q = this.store.scope("b").param("q", [2], [0, 0]);
  readonly optimizers = { a: { groups: ["a"] }, b: { groups: ["b"], lrScale: 0.5 } };
  readonly examplesPerStep = 1;
  constructor(readonly cfg: Config<typeof flags>) {}
  describe() {
    return "pull";
  }
  updates(step: number) {
    const t = this.cfg.target;
    const bad = Tensor.from([this.cfg.poison ? NaN : 1], [1]);
    const a = {
      optimizer: "a",
      run: () => ({ loss: mul(sum(square(sub(this.p, Tensor.from([t, t, t], [3])))), bad) }),
    };
    const b = {
      optimizer: "b",
      run: () => ({ loss: sum(square(sub(this.q, Tensor.from([-t, -t], [2])))) }),
    };
    return this.cfg.stageAt > 0 && step >= this.cfg.stageAt ? [a] : [a, b];
  }
  async evaluate() {
    const [p, q] = await Tensor.readAll([this.p, this.q]);
    return { metrics: { p0: p[0], q0: q[0] } };
  }
}

const pullTask = defineTask({
  name: "pull",
  summary: "test task",
  flags,
  build: (cfg): Model => new Pull(cfg),
});

function config(extra: Record<string, unknown>): Config<typeof flags> {
  return {
    ...defaults(trainerTable(), "cpu"),
    ...defaults(flags, "cpu"),
    lr: 0.1,
    decay: "none",
    sampleEvery: 0,
    checkpointEvery: 0,
    logEvery: 5,
    ...extra,
  } as Config<typeof flags>;
}

Deno.test("trainer: two optimizers, each on its own groups at its own learning rate", async () => {
  const cfg = config({ steps: 3 });
  const s = new Session(pullTask, cfg, await pullTask.build(cfg, "train"));
  s.trainStep();
  const [p, q] = await Tensor.readAll([(s.model as Pull).p, (s.model as Pull).q]);
  // Adam's first step moves each parameter by its learning rate (sign of the gradient).
  assert.ok(Math.abs(p[0] - 0.1) < 1e-6, `p moved by lr: ${p[0]}`);
  assert.ok(Math.abs(q[0] + 0.05) < 1e-6, `q moved by lr / 2: ${q[0]}`);
  s.release();
});

Deno.test("trainer: non-finite losses skip their updates and stop the run after 20 such steps", async () => {
  const dir = Deno.makeTempDirSync();
  const cfg = config({ steps: 100, out: dir, poison: true, checkpointEvery: 10 });
  await assert.rejects(
    train(pullTask, cfg),
    /non-finite loss or gradient in every step from 1 to 20/,
  );
  const log = Deno.readTextFileSync(join(dir, "metrics.jsonl")).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  assert.equal(log[0]["grad_norm.a_nonfinite"], 5, "the skipped updates are counted");
  assert.ok(Deno.statSync(join(dir, "checkpoint.safetensors")).isFile, "checkpoint kept");
  // The poisoned group never moved; the healthy one trained.
  const s = new Session(pullTask, cfg, await pullTask.build(cfg, "train"));
  s.load(join(dir, "checkpoint.safetensors"));
  const { metrics } = await s.model.evaluate({ final: true });
  assert.equal(metrics.p0, 0);
  assert.ok((metrics.q0 as number) < -0.4, `q trained (10 steps of ~lr/2): ${metrics.q0}`);
  s.release();
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("trainer: a series with nothing in a logging window (a stage switch) is left out, not NaN", async () => {
  const dir = Deno.makeTempDirSync();
  await train(pullTask, config({ steps: 15, out: dir, stageAt: 5 }));
  const log = Deno.readTextFileSync(join(dir, "metrics.jsonl")).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
  assert.ok(Number.isFinite(log[0]["loss.b"]), "both updates logged before the switch");
  assert.equal(log[1].step, 10);
  assert.ok(!("loss.b" in log[1]) && !("grad_norm.b" in log[1]), JSON.stringify(log[1]));
  assert.ok(Number.isFinite(log[1]["loss.a"]));
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("trainer: SIGINT finishes the step, writes a checkpoint and releases the folder", async () => {
  const dir = Deno.makeTempDirSync();
  const cmd = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "src/train/cli.ts",
      ...["--model", "ae", "--train-limit", "256", "--steps", "100000", "--log-every", "1"],
      ...["--out", dir, "--sample-every", "0", "--checkpoint-every", "0"],
    ],
    cwd: new URL("..", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = cmd.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("step 3/")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  cmd.kill("SIGINT");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  const status = await cmd.status;
  await cmd.stderr.cancel();
  assert.equal(status.code, 0, out);
  assert.match(out, /interrupted: finishing this step and writing a checkpoint/);
  assert.match(out, /checkpoint: .*\(step \d+\)/);
  assert.ok(Deno.statSync(join(dir, "checkpoint.safetensors")).isFile);
  assert.throws(() => Deno.statSync(join(dir, ".lock")), "lock released");
  Deno.removeSync(dir, { recursive: true });
});

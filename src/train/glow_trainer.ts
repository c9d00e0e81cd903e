// Training Glow on MNIST: Adam with linear warm-up and gradient-norm clipping, a NaN/Inf guard,
// progress lines, metrics as JSON lines, sample grids and a loss curve as PNG, atomic
// checkpoints (parameters + Adam state + step + RNG state) and exact resume.
import { join } from "node:path";
import { batchIndices, dequantize, type ImageSet, toPixels } from "../data/batches.ts";
import { Rng } from "../data/rng.ts";
import { copyBuffer } from "../gpu/encoder.ts";
import { Glow } from "../models/glow.ts";
import { Adam } from "../ops/adam.ts";
import { sum } from "../ops/reduce.ts";
import { backward, clearTape, noGrad } from "../ops/tape.ts";
import { Tensor } from "../ops/tensor.ts";
import { checkConfigMatches, loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import { MODEL_KEYS, type TrainConfig } from "./config.ts";
import { imageGrid, lineChartPng, writePng } from "./png.ts";
import type { NamedTensor } from "./safetensors.ts";

const FORMAT = "flowgpu-glow-1";

export function buildGlow(c: TrainConfig): Glow {
  return new Glow({
    channels: 1,
    height: 32,
    width: 32,
    levels: c.levels,
    depth: c.depth,
    hidden: c.width,
    affine: c.coupling === "affine",
    lu: c.lu,
    nBits: c.nBits,
    classes: c.conditional ? 10 : 0,
    seed: c.seed,
  });
}

export interface StepResult {
  /** Mean bits/dim of the batch (before the update). */
  bpd: number;
  gradNorm: number;
  clipped: boolean;
  /** The update was skipped because the loss or the gradient was not finite. */
  skipped: boolean;
}

export class GlowTrainer {
  readonly model: Glow;
  readonly opt: Adam;
  step = 0;
  /** Dequantisation noise; its state is checkpointed so a resumed run draws the same noise. */
  readonly noise: Rng;
  #stats = Tensor.persistent([4], "stats");

  constructor(readonly cfg: TrainConfig, readonly train: ImageSet) {
    this.model = buildGlow(cfg);
    this.opt = new Adam(this.model.params.list(), {
      lr: cfg.lr,
      clipNorm: cfg.clip,
      weightDecay: cfg.weightDecay,
    });
    this.noise = new Rng(cfg.seed ^ 0x5eed);
  }

  /** Linear warm-up, then constant or cosine decay to 0 at the last step. */
  lrAt(step: number): number {
    const { lr, warmup, steps, decay } = this.cfg;
    if (step < warmup) return (lr * (step + 1)) / warmup;
    if (decay === "none" || steps <= warmup) return lr;
    const progress = Math.min(1, (step - warmup) / (steps - warmup));
    return 0.5 * lr * (1 + Math.cos(Math.PI * progress));
  }

  /** Data-dependent actnorm init from the first `initBatch` images of a shuffled order. */
  initialize(): void {
    if (this.model.params.initialized) return;
    const n = Math.min(this.cfg.initBatch, this.train.count);
    const idx = new Rng(this.cfg.seed + 17).permutation(this.train.count).subarray(0, n);
    const x = Tensor.from(
      dequantize(this.train, idx, this.cfg.nBits, new Rng(this.cfg.seed + 18)),
      [n, 1, 32, 32],
    );
    this.model.initialize(x);
    clearTape();
  }

  batch(step: number): { x: Tensor; labels?: Uint8Array } {
    const { idx } = batchIndices(this.train.count, this.cfg.batch, step, this.cfg.seed);
    const x = Tensor.from(dequantize(this.train, idx, this.cfg.nBits, this.noise), [
      idx.length,
      1,
      32,
      32,
    ]);
    const labels = this.cfg.conditional
      ? Uint8Array.from(idx, (i) => this.train.labels[i])
      : undefined;
    return { x, labels };
  }

  /** One step: forward, backward, Adam, encoded together; one readback of three scalars. */
  async trainStep(): Promise<StepResult> {
    this.initialize();
    const { x, labels } = this.batch(this.step);
    const loss = this.model.loss(x, labels);
    backward(loss);
    this.opt.step(this.lrAt(this.step));
    copyBuffer(loss.buffer, this.#stats.buffer, 4, 0, 0);
    copyBuffer(this.opt.hyper.buffer, this.#stats.buffer, 8, 16, 4); // [scale, norm]
    loss.release();
    const [l, scale, norm] = await this.#stats.read();
    this.step++;
    const skipped = scale === 0 || !Number.isFinite(l);
    return { bpd: l + this.cfg.nBits, gradNorm: norm, clipped: scale < 1 && scale > 0, skipped };
  }

  /** Mean test bits/dim over the first `limit` images, one noise draw per image. */
  async evaluate(set: ImageSet, limit = set.count, batch = this.cfg.evalBatch): Promise<number> {
    this.initialize();
    const n = Math.min(limit, set.count);
    const rng = new Rng(12345);
    let total = 0;
    for (let start = 0; start < n; start += batch) {
      const idx = Uint32Array.from({ length: Math.min(batch, n - start) }, (_, i) => start + i);
      const x = Tensor.from(dequantize(set, idx, this.cfg.nBits, rng), [idx.length, 1, 32, 32]);
      const labels = this.cfg.conditional ? Uint8Array.from(idx, (i) => set.labels[i]) : undefined;
      total += await noGrad(() => sum(this.model.logProb(x, labels))).item();
      clearTape();
    }
    return -total / n / (this.model.dims * Math.LN2) + this.cfg.nBits;
  }

  /** An 8x8 grid of samples at the configured temperature, as PNG bytes. */
  async sampleGrid(n = 64, temperature = this.cfg.temperature): Promise<Uint8Array> {
    this.initialize();
    const labels = this.cfg.conditional ? Array.from({ length: n }, (_, i) => i % 10) : undefined;
    const x = await this.model.sample(n, temperature, new Rng(777), labels).read();
    clearTape();
    return imageGrid(toPixels(x, this.cfg.nBits), n, 1, 32, 32, 8);
  }

  /** Max relative error of decode(encode(x)) on the first n images of `set`. */
  async roundTripError(set: ImageSet, n = 64): Promise<number> {
    this.initialize();
    const idx = Uint32Array.from({ length: Math.min(n, set.count) }, (_, i) => i);
    const data = dequantize(set, idx, this.cfg.nBits, new Rng(5));
    const x = Tensor.from(data, [idx.length, 1, 32, 32]);
    const back = await this.model.decode(this.model.encode(x)).read();
    clearTape();
    let err = 0, scale = 0;
    data.forEach((v, i) => {
      err = Math.max(err, Math.abs(back[i] - v));
      scale = Math.max(scale, Math.abs(v));
    });
    return err / scale;
  }

  // ---- checkpoints ----

  #checkpointTensors(): Map<string, Tensor> {
    const m = new Map(this.model.params.tensors);
    this.opt.params.forEach((p, i) => {
      m.set(`adam.m.${p.name}`, this.opt.m[i]);
      m.set(`adam.v.${p.name}`, this.opt.v[i]);
    });
    return m;
  }

  async save(path: string): Promise<void> {
    const entries = [...this.#checkpointTensors()];
    const data = await Tensor.readAll(entries.map(([, t]) => t));
    const tensors: Record<string, NamedTensor> = {};
    entries.forEach(([name, t], i) => (tensors[name] = { shape: [...t.shape], data: data[i] }));
    saveCheckpoint(path, tensors, {
      format: FORMAT,
      config: JSON.stringify(this.cfg),
      step: String(this.step),
      adam_t: String(this.opt.t),
      rng_state: String(this.noise.save()),
      initialized: String(this.model.params.initialized),
    });
  }

  /** Restore everything a checkpoint holds; refuses one from a differently shaped model. */
  load(path: string): void {
    const ck = loadCheckpoint(path);
    if (ck.metadata.format !== FORMAT) {
      throw new Error(
        `flowgpu: ${path} is not a flowgpu Glow checkpoint (format ${
          ck.metadata.format ?? "missing"
        })`,
      );
    }
    const saved = JSON.parse(ck.metadata.config ?? "{}");
    checkConfigMatches(saved, this.cfg as unknown as Record<string, unknown>, MODEL_KEYS);
    for (const [name, t] of this.#checkpointTensors()) {
      const s = ck.tensors[name];
      if (!s) throw new Error(`flowgpu: checkpoint ${path} has no tensor ${name}`);
      if (s.data.length !== t.size) {
        throw new Error(
          `flowgpu: checkpoint ${path}: ${name} has shape [${s.shape}] but the model needs [${t.shape}]`,
        );
      }
      t.write(s.data);
    }
    this.step = Number(ck.metadata.step);
    this.opt.t = Number(ck.metadata.adam_t);
    this.noise.restore(Number(ck.metadata.rng_state));
    // Never re-run the data-dependent init on a loaded model.
    this.model.params.initialized = true;
  }
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(sec).padStart(2, "0")}s`;
}

/** The whole run: folders, loop, progress, metrics, samples, checkpoints, final evaluation. */
export async function runTraining(
  cfg: TrainConfig,
  train: ImageSet,
  test: ImageSet,
): Promise<number> {
  const out = cfg.out;
  const ckpt = join(out, "checkpoint.safetensors");
  const metricsPath = join(out, "metrics.jsonl");
  Deno.mkdirSync(join(out, "samples"), { recursive: true });
  const t = new GlowTrainer(cfg, train);
  if (cfg.resume) {
    t.load(ckpt);
    console.log(`resumed from ${ckpt} at step ${t.step}`);
  } else {
    Deno.writeTextFileSync(metricsPath, "");
  }
  Deno.writeTextFileSync(join(out, "config.json"), JSON.stringify(cfg, null, 2) + "\n");
  console.log(
    `glow: L=${cfg.levels} K=${cfg.depth} width ${cfg.width} ${cfg.coupling}${
      cfg.lu ? " LU" : ""
    }, ` +
      `${
        t.model.params.count().toLocaleString("en")
      } parameters; batch ${cfg.batch}, ${cfg.steps} steps; ` +
      `${train.count} training images -> ${out}`,
  );
  const log = (o: Record<string, unknown>) =>
    Deno.writeTextFileSync(metricsPath, JSON.stringify(o) + "\n", { append: true });
  const curve: [number, number][] = [], testCurve: [number, number][] = [];
  const writeCurve = async () => {
    const series = [{ name: "train bpd", values: curve }];
    if (testCurve.length) series.push({ name: "test bpd", values: testCurve });
    const lo = Math.min(...curve.map((v) => v[1]), ...testCurve.map((v) => v[1]));
    writePng(
      join(out, "loss.png"),
      await lineChartPng(series, {
        width: 640,
        height: 400,
        title: "bits/dim",
        yRange: [Math.max(0, lo - 0.1), Math.min(8, lo + 2)],
      }),
    );
  };
  let stop = false;
  const onSigint = () => {
    console.log("\ninterrupted: finishing this step and writing a checkpoint");
    stop = true;
  };
  Deno.addSignalListener("SIGINT", onSigint);
  try {
    const t0 = performance.now();
    const first = t.step;
    let windowStart = performance.now(), windowSteps = 0, windowBpd = 0, skippedInRow = 0;
    while (t.step < cfg.steps && !stop) {
      const r = await t.trainStep();
      windowSteps++;
      if (r.skipped) {
        skippedInRow++;
        console.log(
          `step ${t.step}: non-finite loss or gradient (bpd ${r.bpd}, grad norm ${r.gradNorm}): update skipped`,
        );
        log({ step: t.step, skipped: true, bpd: String(r.bpd), grad_norm: String(r.gradNorm) });
        if (skippedInRow >= 20) {
          throw new Error(
            `flowgpu: NaN/Inf loss for 20 steps in a row at step ${t.step}; stopping (last checkpoint kept)`,
          );
        }
        continue;
      }
      skippedInRow = 0;
      windowBpd += r.bpd;
      curve.push([t.step, r.bpd]);
      if (t.step % cfg.logEvery === 0 || t.step === cfg.steps) {
        const now = performance.now();
        const ips = (windowSteps * cfg.batch) / ((now - windowStart) / 1000);
        const perStep = (now - t0) / 1000 / (t.step - first);
        const epoch = (t.step * cfg.batch) / train.count;
        const line = {
          step: t.step,
          epoch: +epoch.toFixed(3),
          bpd: +(windowBpd / windowSteps).toFixed(4),
          grad_norm: +r.gradNorm.toFixed(3),
          clipped: r.clipped,
          lr: t.lrAt(t.step - 1),
          images_per_s: +ips.toFixed(2),
          elapsed_s: +((now - t0) / 1000).toFixed(1),
        };
        log(line);
        console.log(
          `step ${t.step}/${cfg.steps} ep ${epoch.toFixed(2)} | bpd ${line.bpd.toFixed(3)} | grad ${
            r.gradNorm.toFixed(1)
          }` +
            `${r.clipped ? " (clipped)" : ""} | lr ${line.lr.toExponential(1)} | ${
              ips.toFixed(1)
            } img/s | ` +
            `ETA ${fmtTime(perStep * (cfg.steps - t.step))}`,
        );
        windowStart = now;
        windowSteps = 0;
        windowBpd = 0;
      }
      if (cfg.sampleEvery && t.step % cfg.sampleEvery === 0) {
        writePng(
          join(out, "samples", `step-${String(t.step).padStart(6, "0")}.png`),
          await t.sampleGrid(),
        );
      }
      if (cfg.evalEvery && t.step % cfg.evalEvery === 0) {
        const bpd = await t.evaluate(test, cfg.evalLimit);
        testCurve.push([t.step, bpd]);
        log({ step: t.step, test_bpd: bpd, test_images: Math.min(cfg.evalLimit, test.count) });
        console.log(`step ${t.step}: test bits/dim ${bpd.toFixed(4)}`);
      }
      if (cfg.checkpointEvery && t.step % cfg.checkpointEvery === 0) {
        await t.save(ckpt);
        await writeCurve();
      }
    }
    await t.save(ckpt);
    console.log(`checkpoint: ${ckpt} (step ${t.step})`);
    if (stop) return NaN;
    writePng(join(out, "samples", "final.png"), await t.sampleGrid());
    const bpd = await t.evaluate(test, cfg.evalLimit);
    testCurve.push([t.step, bpd]);
    log({
      step: t.step,
      test_bpd: bpd,
      test_images: Math.min(cfg.evalLimit, test.count),
      final: true,
    });
    if (curve.length) await writeCurve();
    const minutes = (performance.now() - t0) / 60000;
    const rt = await t.roundTripError(test);
    log({ step: t.step, inverse_rel_error: rt });
    console.log(`inverse(forward(x)) max relative error on a test batch: ${rt.toExponential(2)}`);
    console.log(
      `test bits/dim: ${bpd.toFixed(4)} (${Math.min(cfg.evalLimit, test.count)} test images; ${
        minutes.toFixed(1)
      } min)`,
    );
    console.log(
      `samples: ${join(out, "samples", "final.png")}, loss curve: ${join(out, "loss.png")}`,
    );
    return bpd;
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
  }
}

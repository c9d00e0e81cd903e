// The one training loop every model runs: schedules, clipping, the NaN/Inf guard, a progress
// line with ETA, metrics.jsonl with every loss term, PNG previews and the loss chart, atomic
// checkpoints (every group's parameters, optimizer state, RNG states), --resume and SIGINT.
//
// A step encodes all its updates (forward, backward into one optimizer's groups, Adam) without
// waiting on the CPU: loss terms, gradient norms and clip flags add up on the GPU (metrics.ts)
// and are read back only on the steps that log.
import { flush } from "../gpu/encoder.ts";
import { Adam } from "../ops/adam.ts";
import { backward, clearTape } from "../ops/tape.ts";
import { GpuMetrics, type Summary } from "./metrics.ts";
import { lineChartPng, writePng } from "./png.ts";
import { CHECKPOINT, RunDir } from "./run_dir.ts";
import { loadState, type RunState, saveState } from "./state.ts";
import type { Config, Model, Task } from "./task.ts";
import type { FlagTable } from "./flags.ts";

/** Steps in a row whose every update was skipped (non-finite) before the run stops. */
const MAX_BAD_STEPS = 20;

/** A config of any task: trainer flags and the task's flags, untyped by task. */
export type AnyConfig = Config<FlagTable>;

/** Linear warm-up, then constant or cosine decay to 0 at the last step. */
export function lrAt(c: AnyConfig, step: number): number {
  const { lr, warmup, steps, decay } = c;
  if (step < warmup) return (lr * (step + 1)) / warmup;
  if (decay === "none" || steps <= warmup) return lr;
  const progress = Math.min(1, (step - warmup) / (steps - warmup));
  return 0.5 * lr * (1 + Math.cos(Math.PI * progress));
}

export function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(sec).padStart(2, "0")}s`;
}

/** The shape-fixing flags of a task: a checkpoint must agree on them. */
export function shapeKeys(task: Task): string[] {
  return Object.entries(task.flags).filter(([, f]) => f.shape).map(([k]) => k);
}

/** A built model with its optimizers: what training, evaluation and checkpoints share. */
export class Session {
  /** One Adam per `Model.optimizers` entry, by name. */
  readonly optimizers: Map<string, Adam> = new Map();
  readonly #lrScale = new Map<string, number>();
  /** Steps completed (the next step's index). */
  step = 0;

  /** Builds the optimizers of `model` (default: one, "main", over every group) from `cfg`. */
  constructor(readonly task: Task, readonly cfg: AnyConfig, readonly model: Model) {
    const specs = model.optimizers ?? { main: { groups: model.store.groups().map((g) => g.name) } };
    const seen = new Set<string>();
    for (const [name, o] of Object.entries(specs)) {
      for (const g of o.groups) {
        if (o.shared) continue;
        if (seen.has(g)) throw new Error(`flowgpu: group ${g} is in two optimizers`);
        seen.add(g);
      }
      this.#lrScale.set(name, o.lrScale ?? 1);
      this.optimizers.set(
        name,
        new Adam(o.groups.map((g) => model.store.group(g)), {
          lr: cfg.lr * (o.lrScale ?? 1),
          beta1: o.beta1,
          beta2: o.beta2,
          weightDecay: o.weightDecay ?? cfg.weightDecay,
          clipNorm: cfg.clip,
          stateName: o.shared ? `adam.${name}` : undefined,
        }),
      );
    }
  }

  /** What a checkpoint saves and restores, by reference to this session's objects. */
  get state(): RunState {
    return {
      model: this.task.name,
      store: this.model.store,
      optimizers: this.optimizers,
      rngs: this.model.rngs ?? {},
      step: this.step,
      config: this.cfg as Record<string, unknown>,
    };
  }

  /** Write a checkpoint (parameters, optimizer moments, RNGs, step, config) to `path`. */
  save(path: string): Promise<void> {
    return saveState(path, this.state);
  }

  /** Restore a checkpoint from `path`; its shape-fixing flags must match this config. */
  load(path: string): void {
    this.step = loadState(path, this.state, shapeKeys(this.task));
  }

  /** Encode one step: every update's forward, backward and optimizer step, plus its metrics. */
  trainStep(metrics?: GpuMetrics): void {
    const updates = this.model.updates(this.step);
    for (const u of updates) {
      const opt = this.optimizers.get(u.optimizer);
      if (!opt) throw new Error(`flowgpu: update for unknown optimizer '${u.optimizer}'`);
      const { loss, terms = {} } = u.run();
      // Terms describe the loss; a loss without terms is logged as itself.
      if (metrics && Object.keys(terms).length === 0) {
        metrics.add(this.optimizers.size > 1 ? `loss.${u.optimizer}` : "loss", loss);
      }
      if (metrics) { for (const [k, t] of Object.entries(terms)) metrics.add(k, t); }
      backward(loss, { params: opt.params, retain: u.retain });
      opt.step(lrAt(this.cfg, this.step) * this.#lrScale.get(u.optimizer)!);
      if (metrics) {
        const sfx = this.optimizers.size > 1 ? `.${u.optimizer}` : "";
        metrics.add(`grad_norm${sfx}`, opt.hyper, 5);
        metrics.add(`clipped${sfx}`, opt.hyper, 4, "clipped");
      }
      if (!u.retain) clearTape();
    }
    clearTape();
    // Submit without waiting: the GPU starts on this step while the CPU encodes the next.
    flush();
    this.step++;
  }

  /** Free the optimizers, the model's own buffers and its store. */
  release(): void {
    for (const o of this.optimizers.values()) o.release();
    this.model.release?.();
    this.model.store.release();
  }
}

function round(v: number): number {
  return Number.isFinite(v) ? +v.toPrecision(6) : v;
}

/** Train `task` into cfg.out; returns the final evaluation's metrics. */
export async function train(
  task: Task,
  cfg: AnyConfig,
): Promise<Record<string, number | string> | undefined> {
  const dir = new RunDir(cfg.out);
  dir.open({ resume: cfg.resume, overwrite: cfg.overwrite });
  const onSigint = () => {
    console.log("\ninterrupted: finishing this step and writing a checkpoint");
    stop = true;
  };
  let stop = false;
  let session: Session | undefined;
  Deno.addSignalListener("SIGINT", onSigint);
  try {
    session = new Session(task, cfg, await task.build(cfg, "train"));
    const s = session;
    if (cfg.resume) {
      s.load(dir.file(CHECKPOINT));
      const dropped = dir.purgeMetricsAfter(s.step);
      console.log(
        `resumed from ${dir.file(CHECKPOINT)} at step ${s.step}` +
          (dropped ? ` (dropped ${dropped} metric lines past it)` : ""),
      );
    } else {
      s.model.init?.();
      clearTape();
    }
    Deno.writeTextFileSync(
      dir.file("config.json"),
      JSON.stringify({ ...cfg, model: task.name }, null, 2) + "\n",
    );
    console.log(`${task.name}: ${s.model.describe()} -> ${cfg.out}`);
    return await loop(s, dir, () => stop);
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
    session?.release();
    dir.unlock();
  }
}

async function loop(
  s: Session,
  dir: RunDir,
  stopped: () => boolean,
): Promise<Record<string, number | string> | undefined> {
  const cfg = s.cfg;
  const metrics = new GpuMetrics();
  const chart = new Chart();
  for (const line of dir.readMetrics()) chart.add(line, !("examples_per_s" in line));
  const t0 = performance.now();
  const first = s.step;
  let windowStart = performance.now(), windowSteps = 0, badSteps = 0;
  try {
    while (s.step < cfg.steps && !stopped()) {
      s.trainStep(metrics);
      windowSteps++;
      const last = s.step === cfg.steps;
      if (s.step % cfg.logEvery === 0 || last) {
        const m = await metrics.read();
        const now = performance.now();
        const perStep = (now - t0) / 1000 / (s.step - first);
        const line = logLine(s, m, windowSteps, (now - windowStart) / 1000);
        badSteps = skippedSteps(m) >= windowSteps ? badSteps + windowSteps : 0;
        dir.appendMetrics(line);
        chart.add(line);
        console.log(progress(line, cfg.steps, perStep * (cfg.steps - s.step)));
        windowStart = now;
        windowSteps = 0;
        if (badSteps >= MAX_BAD_STEPS) {
          throw new Error(
            `flowgpu: non-finite loss or gradient in every step from ${
              s.step - badSteps + 1
            } to ${s.step}; stopping (the last checkpoint is kept)`,
          );
        }
      }
      if (cfg.sampleEvery && s.step % cfg.sampleEvery === 0 && !last) await previews(s, dir);
      if (cfg.evalEvery && s.step % cfg.evalEvery === 0 && !last) {
        const e = await s.model.evaluate({ final: false });
        dir.appendMetrics({ step: s.step, ...e.metrics });
        chart.add({ step: s.step, ...e.metrics }, true);
        console.log(`step ${s.step}: ${fmtMetrics(e.metrics)}`);
      }
      if (cfg.checkpointEvery && s.step % cfg.checkpointEvery === 0) {
        await s.save(dir.file(CHECKPOINT));
        await chart.write(dir);
      }
    }
    await s.save(dir.file(CHECKPOINT));
    console.log(`checkpoint: ${dir.file(CHECKPOINT)} (step ${s.step})`);
    if (stopped()) return undefined;
    await previews(s, dir, "final");
    const e = await s.model.evaluate({ final: true });
    const minutes = (performance.now() - t0) / 60000;
    const result = { step: s.step, ...e.metrics, train_minutes: round(minutes) };
    dir.appendMetrics({ ...result, final: true });
    writeEval(dir, s, e.metrics, e.images);
    chart.add({ step: s.step, ...e.metrics }, true);
    await chart.write(dir);
    console.log(`final (${minutes.toFixed(1)} min): ${fmtMetrics(e.metrics)}`);
    console.log(`eval: ${dir.file("eval.json")}; chart: ${dir.file("loss.png")}`);
    return e.metrics;
  } finally {
    metrics.release();
  }
}

function skippedSteps(m: Map<string, Summary>): number {
  let most = 0;
  for (const [k, v] of m) if (k.startsWith("grad_norm")) most = Math.max(most, v.nonFinite);
  return most;
}

function logLine(s: Session, m: Map<string, Summary>, steps: number, seconds: number) {
  const line: Record<string, number | boolean> = { step: s.step };
  for (const [k, v] of m) {
    // A series with nothing added in this window (an update that did not run, e.g. the first
    // stage's terms after a stage switch) is left out rather than logged as NaN.
    if (v.finite === 0 && v.nonFinite === 0) continue;
    line[k] = round(v.mean);
    if (v.nonFinite) line[`${k}_nonfinite`] = v.nonFinite;
  }
  line.lr = round(lrAt(s.cfg, s.step - 1));
  line.examples_per_s = round((steps * s.model.examplesPerStep) / seconds);
  return line;
}

function progress(line: Record<string, number | boolean>, steps: number, eta: number): string {
  const parts = Object.entries(line)
    .filter(([k]) => !["step", "lr", "examples_per_s"].includes(k) && !k.startsWith("clipped"))
    .map(([k, v]) => `${k} ${typeof v === "number" ? fmtNum(v) : v}`);
  return `step ${line.step}/${steps} | ${parts.join(" | ")} | lr ${
    (line.lr as number).toExponential(1)
  } | ${(line.examples_per_s as number).toFixed(1)}/s | ETA ${fmtTime(eta)}`;
}

const fmtNum = (v: number) =>
  Number.isInteger(v)
    ? String(v)
    : Math.abs(v) >= 100
    ? v.toFixed(1)
    : Math.abs(v) < 1e-3
    ? v.toExponential(2)
    : v.toFixed(4);

export function fmtMetrics(m: Record<string, number | string>): string {
  return Object.entries(m).map(([k, v]) => `${k} ${typeof v === "number" ? fmtNum(v) : v}`)
    .join(", ");
}

async function previews(s: Session, dir: RunDir, tag?: string): Promise<void> {
  if (!s.model.preview) return;
  const imgs = await s.model.preview();
  clearTape();
  Deno.mkdirSync(dir.file("samples"), { recursive: true });
  const stamp = tag ?? `step-${String(s.step).padStart(6, "0")}`;
  for (const [name, png] of Object.entries(imgs)) {
    writePng(dir.file(`samples/${name}-${stamp}.png`), png);
  }
}

/** eval.json (the model, its step, its config and the metrics) and its images under eval/. */
export function writeEval(
  dir: RunDir,
  s: Session,
  metrics: Record<string, number | string>,
  images: Record<string, Uint8Array> = {},
): void {
  Deno.mkdirSync(dir.file("eval"), { recursive: true });
  const files: string[] = [];
  for (const [name, png] of Object.entries(images)) {
    writePng(dir.file(`eval/${name}.png`), png);
    files.push(`eval/${name}.png`);
  }
  const doc = { model: s.task.name, step: s.step, metrics, images: files, config: s.cfg };
  Deno.writeTextFileSync(dir.file("eval.json"), JSON.stringify(doc, null, 2) + "\n");
}

/** Loss terms and evaluation metrics over steps, drawn into loss.png. */
class Chart {
  readonly #series = new Map<string, [number, number][]>();

  /**
   * Add a logged line's loss terms (not the bookkeeping: lr, throughput, gradient norms), or of an
   * evaluation only its test_* figures.
   */
  add(line: Record<string, unknown>, evaluation = false): void {
    const step = line.step as number;
    for (const [k, v] of Object.entries(line)) {
      if (typeof v !== "number" || !Number.isFinite(v) || CHART_SKIP.test(k)) continue;
      if ((evaluation || k.startsWith("test_")) && !/^test_(?!images)/.test(k)) continue;
      if (!this.#series.has(k)) this.#series.set(k, []);
      this.#series.get(k)!.push([step, v]);
    }
  }

  async write(dir: RunDir): Promise<void> {
    const series = [...this.#series].map(([name, values]) => ({ name, values }));
    if (!series.length) return;
    const all = series.flatMap((x) => x.values.map((v) => v[1]));
    const lo = Math.min(...all), hi = Math.max(...all), pad = 0.05 * (hi - lo + 1e-9);
    writePng(
      dir.file("loss.png"),
      await lineChartPng(series, {
        width: 640,
        height: 400,
        title: "training",
        yRange: [lo - pad, hi + pad],
      }),
    );
  }
}

const CHART_SKIP =
  /^(step|lr|examples_per_s|elapsed_s|train_minutes|test_images|grad_norm|clipped)|_nonfinite$/;

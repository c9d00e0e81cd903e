// A run's checkpoint: every named tensor of the store (parameters by name, fixed tensors), every
// optimizer's moments by parameter name, and as metadata the step, the config, the layers'
// flags, each optimizer's step count and every RNG's state. One safetensors file, written
// atomically (see checkpoint.ts).
import type { ParamStore } from "../nn/store.ts";
import type { Adam } from "../ops/adam.ts";
import { Tensor } from "../ops/tensor.ts";
import type { Rng } from "../util/rng.ts";
import { checkConfigMatches, loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import type { NamedTensor } from "./safetensors.ts";

export const FORMAT = "flowgpu-2";

/** Everything a checkpoint saves and restores, by reference: loading writes into these objects. */
export interface RunState {
  /** The task's name; a checkpoint of another model is refused. */
  model: string;
  /** Parameters, fixed tensors and flags. */
  store: ParamStore;
  /** Optimizers by name (their moments and step counts). */
  optimizers: Map<string, Adam>;
  /** Random streams by name, so a resumed run draws what it would have. */
  rngs: Record<string, Rng>;
  /** Steps completed. */
  step: number;
  /** The run's flag values (shape-fixing ones must match on load). */
  config: Record<string, unknown>;
}

function named(s: RunState): Map<string, Tensor> {
  const m = new Map(s.store.tensors);
  for (const opt of s.optimizers.values()) for (const [k, t] of opt.state()) m.set(k, t);
  return m;
}

export async function saveState(path: string, s: RunState): Promise<void> {
  const entries = [...named(s)];
  const data = await Tensor.readAll(entries.map(([, t]) => t));
  const tensors: Record<string, NamedTensor> = {};
  entries.forEach(([name, t], i) => (tensors[name] = { shape: [...t.shape], data: data[i] }));
  saveCheckpoint(path, tensors, {
    format: FORMAT,
    model: s.model,
    config: JSON.stringify(s.config),
    step: String(s.step),
    flags: JSON.stringify(s.store.flagState()),
    optimizer_steps: JSON.stringify(
      Object.fromEntries([...s.optimizers].map(([k, o]) => [k, o.t])),
    ),
    rngs: JSON.stringify(Object.fromEntries(Object.entries(s.rngs).map(([k, r]) => [k, r.save()]))),
  });
}

/**
 * Restore a checkpoint into `s` (tensors, flags, optimizer steps, RNGs) and return its step.
 * Refuses a file of another format, another model, or other values of the `shapeKeys` flags.
 */
export function loadState(path: string, s: RunState, shapeKeys: string[]): number {
  const ck = loadCheckpoint(path);
  const md = ck.metadata;
  if (md.format === "flowgpu-glow-1") {
    throw new Error(
      `flowgpu: ${path} was written by flowgpu's first Glow trainer (format flowgpu-glow-1), ` +
        `whose parameter names and optimizer layout this version does not read; retrain, or ` +
        `evaluate it with a checkout of that version`,
    );
  }
  if (md.format !== FORMAT) {
    throw new Error(
      `flowgpu: ${path} is not a flowgpu checkpoint (format ${md.format ?? "missing"}, ` +
        `expected ${FORMAT})`,
    );
  }
  if (md.model !== s.model) {
    throw new Error(`flowgpu: ${path} holds a '${md.model}' model, not '${s.model}'`);
  }
  checkConfigMatches(JSON.parse(md.config ?? "{}"), s.config, shapeKeys);
  for (const [name, t] of named(s)) {
    const saved = ck.tensors[name];
    if (!saved) throw new Error(`flowgpu: checkpoint ${path} has no tensor ${name}`);
    if (saved.data.length !== t.size) {
      throw new Error(
        `flowgpu: checkpoint ${path}: ${name} has shape [${saved.shape}] but the model needs [${t.shape}]`,
      );
    }
    t.write(saved.data);
  }
  s.store.loadFlags(JSON.parse(md.flags ?? "{}"));
  const steps = JSON.parse(md.optimizer_steps ?? "{}");
  for (const [k, o] of s.optimizers) o.t = Number(steps[k] ?? 0);
  const rngs = JSON.parse(md.rngs ?? "{}");
  for (const [k, r] of Object.entries(s.rngs)) {
    if (rngs[k] === undefined) throw new Error(`flowgpu: checkpoint ${path} has no RNG state ${k}`);
    r.restore(Number(rngs[k]));
  }
  return Number(md.step);
}

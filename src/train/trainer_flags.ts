// The flags every task shares: schedule, optimizer, run folder, logging. A task changes their
// defaults through `Task.trainer`, and adds its own table.
import type { Flag, FlagTable } from "./flags.ts";

/** The flags every task shares (schedule, optimizer, run folder, logging) with their defaults. */
export const trainerFlags = {
  model: { default: "glow", help: "what to train (see the list above)" },
  preset: {
    default: "cpu",
    choices: ["cpu", "gpu"],
    help: "cpu: sized for lavapipe; gpu: paper scale",
  },
  steps: { default: 2000, help: "training steps" },
  batch: { default: 32, min: 1, help: "examples per step" },
  lr: { default: 1e-3, real: true, help: "peak Adam learning rate" },
  warmup: { default: 0, help: "linear learning-rate warm-up steps" },
  decay: {
    default: "cosine",
    choices: ["cosine", "none"],
    help: "after warm-up: cosine to 0 at the last step, or constant",
  },
  clip: { default: 0, real: true, help: "clip the global gradient norm of each update (0: off)" },
  weightDecay: { default: 0, real: true, help: "decoupled (AdamW) weight decay" },
  seed: { default: 1, help: "seed for parameters, data order and noise" },
  out: {
    default: "runs/run",
    help: "run folder: config.json, metrics.jsonl, samples/, checkpoint",
  },
  resume: { default: false, help: "continue from OUT/checkpoint.safetensors" },
  overwrite: { default: false, help: "replace the run already in OUT" },
  logEvery: { default: 25, min: 1, help: "progress line and metrics every N steps" },
  sampleEvery: { default: 500, help: "preview images every N steps (0: only at the end)" },
  checkpointEvery: { default: 250, help: "checkpoint every N steps (and at the end)" },
  evalEvery: { default: 0, help: "quick evaluation every N steps (0: only the final one)" },
  verbose: { default: false, help: "print the chosen GPU adapter" },
} satisfies FlagTable;

/** The type of `trainerFlags`, for typed configs. */
export type TrainerFlags = typeof trainerFlags;

/** The trainer table with a task's defaults put in. */
export function trainerTable(
  overrides: Partial<Record<string, { default: number | string; gpu?: number | string }>> = {},
): FlagTable {
  const t: FlagTable = { ...trainerFlags };
  for (const [k, o] of Object.entries(overrides)) {
    if (!(k in t) || !o) throw new Error(`flowgpu: task overrides unknown trainer flag ${k}`);
    t[k] = { ...(t[k] as Flag), default: o.default, gpu: o.gpu };
  }
  return t;
}

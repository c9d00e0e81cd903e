// Command-line configuration of `deno task train` (Deno's node:util parseArgs; JSR's @std/cli is
// unreachable here). Every option has a default; presets set several at once, flags override.
import { parseArgs } from "node:util";

export interface TrainConfig {
  preset: string;
  steps: number;
  batch: number;
  levels: number;
  depth: number;
  width: number;
  coupling: "affine" | "additive";
  lu: boolean;
  nBits: number;
  lr: number;
  warmup: number;
  /** Learning-rate decay after warm-up: cosine to 0 at the last step, or none. */
  decay: "cosine" | "none";
  clip: number;
  weightDecay: number;
  initBatch: number;
  seed: number;
  out: string;
  resume: boolean;
  logEvery: number;
  sampleEvery: number;
  checkpointEvery: number;
  evalEvery: number;
  evalLimit: number;
  evalBatch: number;
  trainLimit: number;
  temperature: number;
  conditional: boolean;
  verbose: boolean;
}

/** Finishes in about 30 minutes on a 2-core CPU WebGPU driver (lavapipe). */
export const cpuPreset: TrainConfig = {
  preset: "cpu",
  steps: 2400,
  batch: 32,
  levels: 3,
  depth: 8,
  width: 64,
  coupling: "affine",
  lu: true,
  nBits: 8,
  lr: 2e-3,
  warmup: 200,
  decay: "cosine",
  clip: 50,
  weightDecay: 0,
  initBatch: 256,
  seed: 1,
  out: "runs/glow-mnist",
  resume: false,
  logEvery: 25,
  sampleEvery: 500,
  checkpointEvery: 250,
  evalEvery: 0,
  evalLimit: 10000,
  evalBatch: 250,
  trainLimit: 0,
  temperature: 0.7,
  conditional: false,
  verbose: false,
};

/** Paper-scale Glow for a workstation GPU (K=32, width 512 as in Glow's CIFAR-10 model). */
export const gpuPreset: TrainConfig = {
  ...cpuPreset,
  preset: "gpu",
  steps: 40000,
  batch: 64,
  depth: 32,
  width: 512,
  warmup: 1000,
  sampleEvery: 2000,
  checkpointEvery: 1000,
  evalEvery: 5000,
  out: "runs/glow-mnist-gpu",
};

export const presets: Record<string, TrainConfig> = { cpu: cpuPreset, gpu: gpuPreset };

const HELP: [string, string][] = [
  ["--preset NAME", "cpu (default: ~30 min on lavapipe) or gpu (paper scale: K=32, width 512)"],
  ["--steps N", "training steps"],
  ["--batch N", "images per step"],
  ["--levels L", "multi-scale levels"],
  ["--depth K", "flow steps per level"],
  ["--width C", "hidden channels of the coupling networks"],
  ["--coupling KIND", "affine | additive"],
  ["--no-lu", "train the 1x1 convolution's W directly instead of its LU factors"],
  ["--bits N", "bit depth of the data (1..8)"],
  ["--lr X", "peak Adam learning rate"],
  ["--warmup N", "linear learning-rate warm-up steps"],
  ["--decay KIND", "learning rate after warm-up: cosine (to 0 at the last step) | none"],
  ["--clip X", "gradient-norm clip (0: off)"],
  ["--weight-decay X", "decoupled (AdamW) weight decay"],
  ["--init-batch N", "images for the data-dependent actnorm initialisation"],
  ["--seed N", "seed for parameters, data order and noise"],
  ["--out DIR", "run folder: config.json, metrics.jsonl, samples/, checkpoint.safetensors"],
  ["--resume", "continue from DIR/checkpoint.safetensors"],
  ["--log-every N", "progress line and metrics every N steps"],
  ["--sample-every N", "sample grid PNG every N steps (and at the end)"],
  ["--checkpoint-every N", "checkpoint every N steps (and at the end)"],
  ["--eval-every N", "test bits/dim every N steps (0: only at the end)"],
  ["--eval-limit N", "test images used by evaluations (10000: all)"],
  ["--eval-batch N", "images per evaluation batch"],
  ["--train-limit N", "use only the first N training images (0: all)"],
  ["--temperature T", "sampling temperature (std scale) of the sample grids"],
  ["--conditional", "class-conditional top prior (labels)"],
  ["--verbose", "print the chosen GPU adapter"],
  ["--help", "this text"],
];

const DEFAULT_OF: Record<string, keyof TrainConfig> = {
  "--steps N": "steps",
  "--batch N": "batch",
  "--levels L": "levels",
  "--depth K": "depth",
  "--width C": "width",
  "--coupling KIND": "coupling",
  "--bits N": "nBits",
  "--lr X": "lr",
  "--warmup N": "warmup",
  "--decay KIND": "decay",
  "--clip X": "clip",
  "--weight-decay X": "weightDecay",
  "--init-batch N": "initBatch",
  "--seed N": "seed",
  "--out DIR": "out",
  "--log-every N": "logEvery",
  "--sample-every N": "sampleEvery",
  "--checkpoint-every N": "checkpointEvery",
  "--eval-every N": "evalEvery",
  "--eval-limit N": "evalLimit",
  "--eval-batch N": "evalBatch",
  "--train-limit N": "trainLimit",
  "--temperature T": "temperature",
};

export function helpText(cmd: string): string {
  const rows = HELP.map(([f, d]) => {
    const key = DEFAULT_OF[f];
    const def = key
      ? ` [${cpuPreset[key]}${gpuPreset[key] !== cpuPreset[key] ? `; gpu: ${gpuPreset[key]}` : ""}]`
      : "";
    return `  ${f.padEnd(22)} ${d}${def}`;
  }).join("\n");
  return `usage: ${cmd} [train] [options]      train Glow on MNIST
       ${cmd} evaluate [options]     test bits/dim and a sample grid from DIR's checkpoint

options [cpu preset default; gpu preset where it differs]:
${rows}
`;
}

const num = (name: string, v: string | undefined, min: number, int = true): number | undefined => {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isFinite(x) || x < min || (int && !Number.isInteger(x))) {
    throw new Error(
      `flowgpu: --${name} ${v}: expected ${int ? "an integer" : "a number"} >= ${min}`,
    );
  }
  return x;
};

export function parseTrainArgs(
  args: string[],
): { command: string; config: TrainConfig; help: boolean } {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      preset: { type: "string" },
      steps: { type: "string" },
      batch: { type: "string" },
      levels: { type: "string" },
      depth: { type: "string" },
      width: { type: "string" },
      coupling: { type: "string" },
      "no-lu": { type: "boolean" },
      bits: { type: "string" },
      lr: { type: "string" },
      warmup: { type: "string" },
      clip: { type: "string" },
      decay: { type: "string" },
      "weight-decay": { type: "string" },
      "init-batch": { type: "string" },
      seed: { type: "string" },
      out: { type: "string" },
      resume: { type: "boolean" },
      "log-every": { type: "string" },
      "sample-every": { type: "string" },
      "checkpoint-every": { type: "string" },
      "eval-every": { type: "string" },
      "eval-limit": { type: "string" },
      "eval-batch": { type: "string" },
      "train-limit": { type: "string" },
      temperature: { type: "string" },
      conditional: { type: "boolean" },
      verbose: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  const command = positionals[0] ?? "train";
  if (!["train", "evaluate"].includes(command)) {
    throw new Error(`flowgpu: unknown command '${command}' (train or evaluate; see --help)`);
  }
  const preset = values.preset ?? "cpu";
  const base = presets[preset];
  if (!base) throw new Error(`flowgpu: unknown --preset ${preset} (cpu or gpu)`);
  const coupling = values.coupling ?? base.coupling;
  if (coupling !== "affine" && coupling !== "additive") {
    throw new Error(`flowgpu: --coupling ${coupling}: expected affine or additive`);
  }
  const decay = values.decay ?? base.decay;
  if (decay !== "cosine" && decay !== "none") {
    throw new Error(`flowgpu: --decay ${decay}: expected cosine or none`);
  }
  const pick = <T>(v: T | undefined, d: T): T => (v === undefined ? d : v);
  const c: TrainConfig = {
    preset,
    steps: pick(num("steps", values.steps, 0), base.steps),
    batch: pick(num("batch", values.batch, 1), base.batch),
    levels: pick(num("levels", values.levels, 1), base.levels),
    depth: pick(num("depth", values.depth, 1), base.depth),
    width: pick(num("width", values.width, 1), base.width),
    coupling,
    lu: !values["no-lu"],
    nBits: pick(num("bits", values.bits, 1), base.nBits),
    lr: pick(num("lr", values.lr, 0, false), base.lr),
    warmup: pick(num("warmup", values.warmup, 0), base.warmup),
    decay,
    clip: pick(num("clip", values.clip, 0, false), base.clip),
    weightDecay: pick(num("weight-decay", values["weight-decay"], 0, false), base.weightDecay),
    initBatch: pick(num("init-batch", values["init-batch"], 1), base.initBatch),
    seed: pick(num("seed", values.seed, 0), base.seed),
    out: values.out ?? base.out,
    resume: values.resume ?? false,
    logEvery: pick(num("log-every", values["log-every"], 1), base.logEvery),
    sampleEvery: pick(num("sample-every", values["sample-every"], 0), base.sampleEvery),
    checkpointEvery: pick(
      num("checkpoint-every", values["checkpoint-every"], 0),
      base.checkpointEvery,
    ),
    evalEvery: pick(num("eval-every", values["eval-every"], 0), base.evalEvery),
    evalLimit: pick(num("eval-limit", values["eval-limit"], 1), base.evalLimit),
    evalBatch: pick(num("eval-batch", values["eval-batch"], 1), base.evalBatch),
    trainLimit: pick(num("train-limit", values["train-limit"], 0), base.trainLimit),
    temperature: pick(num("temperature", values.temperature, 0, false), base.temperature),
    conditional: values.conditional ?? false,
    verbose: values.verbose ?? false,
  };
  if (c.nBits > 8) throw new Error(`flowgpu: --bits ${c.nBits}: MNIST has 8 bits`);
  return { command, config: c, help: values.help ?? false };
}

/** The config keys that fix the model's parameter shapes (a checkpoint must agree on them). */
export const MODEL_KEYS = ["levels", "depth", "width", "coupling", "lu", "nBits", "conditional"];

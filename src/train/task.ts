// What a model brings to the one trainer: its flags, how to build it, its updates per step, and
// how to evaluate and preview it. A new model is one file in src/models, one task file in
// src/train and a line in src/train/registry.ts.
import type { ParamStore } from "../nn/store.ts";
import type { Tensor } from "../ops/tensor.ts";
import type { Rng } from "../util/rng.ts";
import type { FlagTable, Values } from "./flags.ts";
import type { TrainerFlags } from "./trainer_flags.ts";

/** One optimizer: Adam over whole parameter groups (their names are the first name component). */
export interface OptimizerSpec {
  /**
   * Names of the parameter groups it updates (each group in at most one optimizer, unless
   * `shared`).
   */
  groups: string[];
  /**
   * Its groups may also be in other optimizers: a group stepped on two losses, each with its own
   * Adam moments (Zheng & Sun step Enc_s on L_GM and on L_rec + λ L_lkd). Its moments are saved
   * as `adam.<optimizer name>.m.<param>`.
   */
  shared?: boolean;
  /** Learning rate relative to --lr (the schedule scales both). */
  lrScale?: number;
  /** Adam's first-moment decay (default 0.9). */
  beta1?: number;
  /** Adam's second-moment decay (default 0.999). */
  beta2?: number;
  /** Decoupled weight decay (default: --weight-decay). */
  weightDecay?: number;
}

/** Scalar loss terms by name ([1] tensors); each is logged as its mean between log lines. */
export type Terms = Record<string, Tensor>;

/** One gradient update: a loss, backpropagated into its optimizer's groups only. */
export interface Update {
  /** Name of the optimizer (a key of `Model.optimizers`) that steps on this loss. */
  optimizer: string;
  /** Run the forward pass and return the loss ([1]) and its named terms for logging. */
  run(): { loss: Tensor; terms?: Terms };
  /**
   * Keep the graph after this update's backward and step: the next update of the step may return
   * another loss of the same forward pass (Zheng & Sun's Algorithm 1 steps five groups on five
   * losses of one forward). Its backward must not pass through a group stepped earlier in the
   * chain (those weights changed in place). The graph is cleared after the step's last update.
   */
  retain?: boolean;
}

/** What an evaluation reports. */
export interface Evaluation {
  /** Headline numbers, written to eval.json and the metrics log. */
  metrics: Record<string, number | string>;
  /** Images by file stem (PNG bytes). */
  images?: Record<string, Uint8Array>;
}

/** A built model as the trainer drives it: parameters, optimizers, updates, evaluation. */
export interface Model {
  /** Every parameter, fixed tensor and flag of the model. */
  store: ParamStore;
  /** Optimizers by name (default: one, "main", over every group). */
  optimizers?: Record<string, OptimizerSpec>;
  /** Random streams a checkpoint must carry so that a resumed run draws what it would have. */
  rngs?: Record<string, Rng>;
  /** One line for the start of a run: sizes, parameter count, data. */
  describe(): string;
  /** Data-dependent initialisation before the first step (not on resume). */
  init?(): void;
  /** Images (or examples) per step, for the throughput figure. */
  examplesPerStep: number;
  /** This step's updates, in order (each sees the parameters the previous one changed). */
  updates(step: number): Update[];
  /** Evaluation; `final` asks for the full protocol, otherwise a quick one for progress logs. */
  evaluate(o: { final: boolean }): Promise<Evaluation>;
  /** Preview images (samples, reconstructions) by name, as PNG bytes. */
  preview?(): Promise<Record<string, Uint8Array>>;
  /** Free what the model holds besides its store (data on the GPU, caches). */
  release?(): void;
}

/** Trainer flags and the task's own, as one config object. */
export type Config<F extends FlagTable> = Values<F> & Values<TrainerFlags>;

/** A trainable model as the CLI and trainer see it: its flags and how to build it. */
export interface Task<F extends FlagTable = FlagTable> {
  /** The `--model` name. */
  name: string;
  /** One line for the help text. */
  summary: string;
  /** The task's flags (model shape, data, evaluation). */
  flags: F;
  /** The task's defaults for trainer flags (steps, lr, out, ...), cpu and gpu preset. */
  trainer?: Partial<
    Record<keyof TrainerFlags, { default: number | string; gpu?: number | string }>
  >;
  /** Build the model and its data; `mode` "evaluate" need not load training data. */
  build(cfg: Config<F>, mode: "train" | "evaluate"): Promise<Model> | Model;
}

/** Identity helper that keeps a task's flag table typed. */
export function defineTask<F extends FlagTable>(t: Task<F>): Task<F> {
  return t;
}

// DisUnknown (vae-disentangle.md §1) for the generic trainer: Stage I, Stage C and Stage II as
// step ranges of one run (`--stage all`), or Stage I + C alone (`--stage one`) and Stage II from
// such a run (`--stage two --init-from RUN`), so that the ablations of supplement Table 2 (`--no-adv-r`:
// R frozen after Stage C; `--no-match`: no unknown-code condition) can all start from one Stage-I
// run. Data: real MNIST (labelled = digit, unknown = style) by default, Shapes2.5D or any other
// labelled set with `--labelled` / `--unknown` choosing the labelled factors.
//
// Per step (§1.5–1.6): Stage I updates E, B, G_I on their objective, then C from its logits of
// the mismatched images of that same forward pass (the trainer's `retain`: C judges what E, B,
// G_I made before their step, the paper's simultaneous step); Stage C updates R; Stage II updates
// S and G_II, then D and R from their scores of that pass's images (plus the real batch). At the first Stage-II step G_II and R are copied from G_I and Stage C's R, and the code
// scale s_d of the frozen E is estimated on 2,000 training images (not the whole set: an
// estimate of a per-dim variance, identical in expectation). The unknown code of a Stage-II batch is
// encoded on the fly by the frozen E rather than read from a stored pass over the training set:
// the same posterior, at the cost of one encoder pass per step instead of one per training image.
//
// Budgets. `--preset gpu` is the released code's MNIST schedule (§1.7: Stage I/C/II 200k/40k/80k
// steps, batch 64, lr 1e-4 then 5e-5, width 32, w_dis 1). The cpu default trains in about 20
// minutes on lavapipe: width 8, batch 32, 1,500/200/400 steps, lr 3e-3 (Stage II a quarter of
// it) and w_dis 0.1. At the released rates nothing moves in 2,000 steps (a bias shifts 1e-4 a
// step); at 3e-3 G_I renders digits within Stage I, but σ_rec is still large in Stage II, so a full
// LSGAN weight drowns L_rec and roughens the digits. The ablations compare at this same budget.
//
// Evaluation (eval.json, eval/*.png): MIG_lab and MIG_all (§1.9, E for the unknown code, S per
// labelled factor), reconstruction MSE of G_II(E(x), S(x)) on both scales, attribute-swap accuracy
// with the in-project classifier (eval/swap.ts), leakage of each label into E's code, swap grids;
// before Stage II the labelled codes are the embedders' B(y) and the generator G_I. The Stage-I
// stability measurement of §1.9 is `code_drift` in every progress evaluation during Stage I:
// mean ‖μ_E,t(x) − μ_E,t−1(x)‖² over 500 test images between consecutive evaluations.
import type { Factor } from "../data/labelled.ts";
import { factorLabels, hash3 } from "../data/labelled.ts";
import { batchIndices } from "../data/batches.ts";
import { codeDrift, MseMeter } from "../eval/recon.ts";
import {
  disentanglerMig,
  type FactorClassifier,
  factorClassifier,
  gridSources,
  leakageProbe,
  leakageSplit,
  swapAccuracy,
  swapGrid,
  swapMetrics,
  type SwapResult,
} from "../eval/swap.ts";
import { copyBuffer } from "../gpu/encoder.ts";
import { copyGroup, DisUnknown, type DuDraws, prefixMasks } from "../models/disunknown.ts";
import { ParamStore } from "../nn/store.ts";
import { clamp } from "../ops/activation.ts";
import { add, scale, sqrt, square, sub } from "../ops/elementwise.ts";
import { GpuRng } from "../ops/random.ts";
import { sumBatch } from "../ops/reduce.ts";
import { concatChannels } from "../ops/shape.ts";
import { clearTape, noGrad } from "../ops/tape.ts";
import { Tensor } from "../ops/tensor.ts";
import { Rng } from "../util/rng.ts";
import { checkConfigMatches, loadCheckpoint } from "./checkpoint.ts";
import { imageGrid } from "./png.ts";
import { CHECKPOINT } from "./run_dir.ts";
import { FORMAT } from "./state.ts";
import {
  type Config,
  defineTask,
  type Evaluation,
  type Model,
  type OptimizerSpec,
  type Terms,
  type Update,
} from "./task.ts";
import { VAE_DATA, type VaeData, vaeData, type VaeSplit } from "./vae_task.ts";
import { join } from "node:path";

const flags = {
  data: {
    default: "mnist",
    shape: true,
    help: `data set: mnist (labelled = digit, unknown = style) or a labelled set (${
      VAE_DATA.filter((s) => s !== "mnist").join(", ")
    })`,
  },
  size: {
    default: 0,
    shape: true,
    help:
      "image side (0: mnist 28; shapes2.5d and procchairs 32 under the cpu preset, 64 under gpu)",
  },
  labelled: {
    default: "",
    shape: true,
    help: "comma list of labelled factors (default: every factor not in --unknown); the others " +
      "make up the unknown factor",
  },
  unknown: {
    default: "",
    shape: true,
    help: "comma list of factors taken as unknown (when --labelled is not given)",
  },
  unknownSize: {
    default: 0,
    shape: true,
    help: "unknown code size (0: supplement Table 1: MNIST-like 64, Shapes2.5D 8 per unknown " +
      "factor, ProcChairs the unknown factors' sizes)",
  },
  codeSize: {
    default: 0,
    shape: true,
    help: "labelled code size per factor (0: Table 1: Shapes2.5D 8, ProcChairs model 512 and " +
      "views 2, else the number of classes)",
  },
  width: {
    default: 8,
    gpu: 32,
    min: 1,
    shape: true,
    help: "channel scale: §1.3's channels and FC width times width/32 (32: the spec's)",
  },
  stage: {
    default: "all",
    choices: ["all", "one", "two"],
    help: "all: Stage I, C and II in one run; one: Stage I then C (all steps); two: Stage II " +
      "only, from --init-from (a --stage one run)",
  },
  stage1Steps: { default: 1500, gpu: 200000, help: "--stage all/one: Stage I steps" },
  stageCSteps: {
    default: 200,
    gpu: 40000,
    help: "--stage all: Stage C steps (after Stage I; the rest of --steps is Stage II)",
  },
  initFrom: {
    default: "",
    help: "--stage two: a run folder of this model whose checkpoint finished Stage I and C",
  },
  stage2Lr: {
    default: 0.25,
    gpu: 0.5,
    real: true,
    help: "Stage II learning rate relative to --lr (gpu 0.5: the released code's 5e-5 against " +
      "1e-4; cpu 0.25, as the cpu --lr is 30x the released code's)",
  },
  nestedDropout: { default: true, help: "nested dropout on every code (§1.4)" },
  adversary: {
    default: "nlu",
    choices: ["nlu", "nll"],
    help: "Stage I adversary: nlu (weighted NLU, the paper's) or nll (maximise C's NLL)",
  },
  advR: {
    default: true,
    help: "Stage II R trained adversarially (--no-adv-r: R frozen after Stage C, Table 2)",
  },
  match: {
    default: true,
    help: "the unknown-code condition L_match (--no-match: dropped, Table 2)",
  },
  wRec: { default: 1, real: true, help: "weight of L_rec" },
  wCla1: { default: 0.5, real: true, help: "weight of Stage I's adversarial loss" },
  wU: {
    default: -1,
    min: -1,
    real: true,
    help: "weight of the unknown code's KL (-1: 0.01 on shapes2.5d, else 0.001)",
  },
  wUb: { default: 0.1, real: true, help: "weight of the unknown code's batch-aggregate KL" },
  wL: {
    default: -1,
    min: -1,
    real: true,
    help:
      "weight of the labelled codes' KL (-1: 0.01 on MNIST-like sets and shapes2.5d, else 0.001)",
  },
  wLb: { default: 0.1, real: true, help: "weight of the labelled codes' batch-aggregate KL" },
  wDis: {
    default: 0.1,
    gpu: 1,
    real: true,
    help: "weight of Stage II's LSGAN generator loss (gpu 1, §1.7; cpu 0.1: after ~1,500 Stage-I " +
      "steps σ_rec is still large, L_rec's pull weak, and the GAN term alone roughens the digits)",
  },
  wCla2: { default: 1, real: true, help: "weight of Stage II's R loss for the generator" },
  wMatch: { default: 0.1, real: true, help: "weight of L_match" },
  trainLimit: { default: 0, help: "use only N training images (0: all)" },
  evalLimit: { default: 2000, gpu: 10000, min: 20, help: "test images for the evaluation" },
  migSamples: { default: 10000, min: 1, help: "MIG estimator samples M per code dim (§5.1)" },
  probeLimit: {
    default: 2000,
    gpu: 10000,
    min: 10,
    help: "training images whose unknown codes fit the final leakage probes (as lrlivae's, vae's)",
  },
  swapPairs: { default: 1000, min: 1, help: "pairs per labelled factor for swap accuracy" },
  evalNets: {
    default: "data/eval-nets",
    help: "cache folder of the evaluation classifiers (eval/swap.ts, eval/digits.ts)",
  },
  classifierSteps: {
    default: 2000,
    min: 1,
    help: "training steps of a non-MNIST set's evaluation classifier (cached in data/eval-nets)",
  },
};

/** The DisUnknown task's config. */
export type DisUnknownTaskConfig = Config<typeof flags>;

/** Sets whose side is an option (and their own side). */
const SIZED = new Set(["shapes2.5d", "shapes2.5d-corr", "procchairs"]);
const MNIST_LIKE = new Set(["mnist", "glyph10", "cmnist28", "cmnist32"]);

/** Supplement Table 1's code size of a labelled factor. */
export function tableCodeSize(data: string, f: Factor): number {
  if (data.startsWith("shapes2.5d")) return 8;
  if (data === "procchairs") return f.name === "model" ? 512 : 2;
  return f.size;
}

/** Supplement Table 1's unknown code size for the factors left unknown. */
export function tableUnknownSize(data: string, unknown: readonly Factor[]): number {
  if (MNIST_LIKE.has(data)) return 64;
  if (data.startsWith("shapes2.5d")) return 8 * Math.max(1, unknown.length);
  if (data === "procchairs") {
    return Math.max(2, unknown.reduce((s, f) => s + tableCodeSize(data, f), 0));
  }
  return 16;
}

/** Columns of the labelled factors: `labelled` if given, else every factor not in `unknown`. */
export function labelledColumns(data: VaeData, labelled: string, unknown: string): number[] {
  const names = data.factors.map((f) => f.name);
  const parse = (s: string, flag: string) =>
    s.split(",").map((v) => v.trim()).filter((v) => v).map((v) => {
      const k = names.indexOf(v);
      if (k < 0) {
        throw new Error(
          `flowgpu: disunknown: --${flag} ${v}: ${data.name} has no such factor (factors: ${
            names.join(", ")
          })`,
        );
      }
      return k;
    });
  const cols = labelled ? parse(labelled, "labelled") : (() => {
    const u = new Set(parse(unknown, "unknown"));
    return names.map((_, k) => k).filter((k) => !u.has(k));
  })();
  if (cols.length === 0) throw new Error("flowgpu: disunknown: no labelled factor is left");
  return [...new Set(cols)].sort((a, b) => a - b);
}

/** Class frequencies of each column over up to 20,000 training images (a seeded subset). */
function classFrequencies(split: VaeSplit, factors: readonly Factor[], cols: number[]): number[][] {
  const n = Math.min(split.count, 20000);
  const pos = new Rng(0xf7e9).permutation(split.count).subarray(0, n);
  const counts = cols.map((c) => new Float64Array(factors[c].size));
  const nf = factors.length;
  for (let s = 0; s < n; s += 1000) {
    const { labels } = split.batch(pos.subarray(s, Math.min(n, s + 1000)));
    for (let b = 0; b < labels.length / nf; b++) {
      cols.forEach((c, i) => counts[i][labels[b * nf + c]]++);
    }
  }
  // Classes absent from the sample get a floor share, so NLU_q's (1 − q)/q stays finite.
  return counts.map((cnt) => {
    const fl = cnt.map((v) => Math.max(v, 0.5));
    const t = fl.reduce((a, v) => a + v, 0);
    return Array.from(fl, (v) => v / t);
  });
}

type StageName = "I" | "C" | "II";
const CHUNK = 100;
/** Draw streams of the per-step CPU randomness. */
const STREAM = { draws: 1 } as const;

/** DisUnknown on a labelled data set, as the trainer drives it. */
export class DisUnknownModel implements Model {
  readonly store: ParamStore;
  readonly du: DisUnknown;
  readonly optimizers: Record<string, OptimizerSpec>;
  readonly noise: GpuRng;
  readonly examplesPerStep: number;
  /** Columns of the labelled factors in the data's factor order. */
  readonly cols: number[];
  readonly #ready: { value: boolean };
  readonly #evalPos: Uint32Array;
  readonly #shape: (n: number) => number[];
  #step = -1;
  #prevCodes?: Float32Array;
  #classifier?: FactorClassifier;

  constructor(
    readonly cfg: DisUnknownTaskConfig,
    readonly data: VaeData,
    freqs: number[][] | undefined,
    readonly mode: "train" | "evaluate",
  ) {
    if (cfg.stage === "two" && !cfg.initFrom && mode === "train" && !cfg.resume) {
      throw new Error(
        "flowgpu: disunknown: --stage two needs --init-from RUN (a --stage one run of this model)",
      );
    }
    this.cols = labelledColumns(data, cfg.labelled, cfg.unknown);
    const unknownFactors = data.factors.filter((_, k) => !this.cols.includes(k));
    const shapes = data.name.startsWith("shapes2.5d");
    this.store = new ParamStore(cfg.seed);
    this.du = new DisUnknown(this.store, {
      channels: data.channels,
      size: data.size,
      width: cfg.width,
      unknownSize: cfg.unknownSize || tableUnknownSize(data.name, unknownFactors),
      factors: this.cols.map((c, i) => {
        const f = data.factors[c];
        return {
          name: f.name,
          classes: f.size,
          codeSize: cfg.codeSize || tableCodeSize(data.name, f),
          freq: freqs?.[i] ?? Array(f.size).fill(1 / f.size),
        };
      }),
      nestedDropout: cfg.nestedDropout,
      adversary: cfg.adversary as "nlu" | "nll",
      weights: {
        rec: cfg.wRec,
        cla1: cfg.wCla1,
        u: cfg.wU >= 0 ? cfg.wU : shapes ? 0.01 : 0.001,
        ub: cfg.wUb,
        l: cfg.wL >= 0 ? cfg.wL : shapes || MNIST_LIKE.has(data.name) ? 0.01 : 0.001,
        lb: cfg.wLb,
        dis: cfg.wDis,
        cla2: cfg.wCla2,
        match: cfg.match ? cfg.wMatch : 0,
      },
    });
    this.#ready = this.store.scope("stage2").flag("initialised");
    // Stage II runs at --stage2-lr times Stage I's learning rate (§1.7: 5e-5 against 1e-4).
    const lr2 = cfg.stage2Lr;
    this.optimizers = {
      s1: { groups: ["enc", "emb", "gen1"] },
      c1: { groups: ["cls1"] },
      rc: { groups: ["rcls"] },
      s2: { groups: ["lenc", "gen2"], lrScale: lr2 },
      d2: { groups: ["disc"], lrScale: lr2 },
      r2: { groups: ["rcls2"], lrScale: lr2 },
    };
    this.noise = new GpuRng((cfg.seed * 2654435761 + 17) % 2 ** 32);
    this.examplesPerStep = cfg.batch;
    this.#evalPos = new Rng(0xe7a1).permutation(data.test.count).subarray(
      0,
      Math.min(cfg.evalLimit, data.test.count),
    );
    this.#shape = (n) => [n, data.channels, data.size, data.size];
  }

  /** Factor names of the labelled codes. */
  get labelledNames(): string[] {
    return this.cols.map((c) => this.data.factors[c].name);
  }

  describe(): string {
    const c = this.cfg, z = this.du.sizes;
    const groups = this.store.groups().map((g) => `${g.name} ${g.count().toLocaleString("en")}`);
    const [s1, sc] = this.stageSteps();
    const plan = c.stage === "two"
      ? `Stage II only (${c.steps} steps) from ${c.initFrom || "(resumed)"}`
      : c.stage === "one"
      ? `Stage I ${s1} steps, then Stage C`
      : `Stage I ${s1}, C ${sc}, II ${Math.max(0, c.steps - s1 - sc)} steps`;
    const abl = [
      c.advR ? "" : "non-adversarial R",
      c.match ? "" : "no unknown-code condition",
      c.adversary === "nll" ? "NLL-maximisation adversary" : "",
      c.nestedDropout ? "" : "no nested dropout",
    ].filter((v) => v);
    return `DisUnknown on ${this.data.name} ${this.data.channels}x${this.data.size}x${this.data.size}` +
      `: labelled ${this.labelledNames.join(", ")} (codes ${
        this.du.codeSizes.join("+")
      }), unknown ` +
      `code ${this.du.unknownSize}; DU-net channels [${z.channels}], F ${z.fc}; ` +
      `${abl.length ? abl.join(", ") + "; " : ""}parameters ${groups.join(", ")}; batch ` +
      `${c.batch}; ${plan}; ${this.data.train.count} images`;
  }

  /** Stage I and Stage C step counts under the config. */
  stageSteps(): [number, number] {
    const c = this.cfg;
    if (c.stage === "two") return [0, 0];
    if (c.stage === "one") return [c.stage1Steps, Infinity];
    return [c.stage1Steps, c.stageCSteps];
  }

  /** Which stage step `step` trains. */
  stageOf(step: number): StageName {
    const [s1, sc] = this.stageSteps();
    if (step < s1) return "I";
    if (step < s1 + sc) return "C";
    return "II";
  }

  /** --init-from: every tensor of a --stage one run's checkpoint (same shapes). */
  init(): void {
    if (this.cfg.stage !== "two") {
      this.#initOutputBias();
      return;
    }
    if (!this.cfg.initFrom) return;
    const dir = this.cfg.initFrom, path = join(dir, CHECKPOINT);
    const ck = loadCheckpoint(path);
    const md = ck.metadata;
    if (md.format !== FORMAT || md.model !== "disunknown") {
      throw new Error(
        `flowgpu: disunknown: --init-from ${dir}: ${path} is not a checkpoint of a disunknown ` +
          `run (format ${md.format ?? "missing"}, model ${md.model ?? "missing"})`,
      );
    }
    const saved = JSON.parse(md.config ?? "{}");
    checkConfigMatches(
      saved,
      this.cfg,
      Object.entries(flags).filter(([, f]) => "shape" in f && f.shape).map(([k]) => k),
    );
    const fl = JSON.parse(md.flags ?? "{}") as Record<string, boolean>;
    if (fl["stage2.initialised"]) {
      throw new Error(
        `flowgpu: disunknown: --init-from ${dir} already trained Stage II; start Stage II from ` +
          "a --stage one run",
      );
    }
    const step = Number(md.step), [s1] = [Number(saved.stage1Steps)];
    if (!(step > s1)) {
      throw new Error(
        `flowgpu: disunknown: --init-from ${dir} stopped at step ${step}, before Stage C ` +
          `(Stage I has ${s1} steps); finish it (--resume) first`,
      );
    }
    for (const [name, t] of this.store.tensors) {
      const s = ck.tensors[name];
      if (!s || s.data.length !== t.size) {
        throw new Error(
          `flowgpu: disunknown: --init-from ${dir}: ${path} lacks ${name} [${t.shape}]`,
        );
      }
      t.write(s.data);
    }
  }

  /**
   * Data-dependent init of G_I's output bias: tanh⁻¹ of each channel's mean pixel over 1,000
   * training images, so the generator starts at the mean colour rather than mid-grey. With the
   * released code's rates a bias moves ~1e-4 per step; at a CPU budget of ~1,000 steps the
   * background would otherwise take most of Stage I to appear.
   */
  #initOutputBias(): void {
    const n = Math.min(1000, this.data.train.count), c = this.data.channels;
    const pos = new Rng(0xb1a5).permutation(this.data.train.count).subarray(0, n);
    const { x } = this.data.train.batch(pos);
    const plane = this.data.size ** 2, mean = new Float32Array(c);
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < c; k++) {
        let s = 0;
        for (let p = 0; p < plane; p++) s += x[(i * c + k) * plane + p];
        mean[k] += s / (plane * n);
      }
    }
    this.du.gen1.out.b!.write(mean.map((m) => Math.atanh(Math.max(-0.95, Math.min(0.95, m)))));
  }

  /** A training batch: images as a tensor, per labelled factor its labels, and the floats. */
  #batch(step: number): { x: Tensor; xs: Float32Array; y: Int32Array[] } {
    const { idx } = batchIndices(this.data.train.count, this.cfg.batch, step, this.cfg.seed);
    const b = this.data.train.batch(idx);
    return { x: Tensor.from(b.x, this.#shape(idx.length)), xs: b.x, y: this.#labels(b.labels) };
  }

  #labels(all: Int32Array): Int32Array[] {
    const nf = this.data.factors.length, n = all.length / nf;
    return this.cols.map((c) => Int32Array.from({ length: n }, (_, b) => all[b * nf + c]));
  }

  /** The step's CPU randomness: masks, rolls and random offsets (§1.4–1.6). */
  #draws(step: number, stage: StageName): DuDraws {
    const rng = new Rng(hash3(this.cfg.seed, step, STREAM.draws));
    const B = this.cfg.batch, du = this.du, n0 = du.unknownSize, nl = du.labelledDim;
    const nd = this.cfg.nestedDropout;
    const masks = () => {
      const out = new Float32Array(B * nl);
      let at = 0;
      for (const n of du.codeSizes) {
        const k = du.keepL.subarray(at, at + n);
        const m = prefixMasks(k, B, () => rng.next());
        for (let b = 0; b < B; b++) out.set(m.subarray(b * n, (b + 1) * n), b * nl + at);
        at += n;
      }
      return out;
    };
    const holes = (m: Float32Array | undefined, n: number, shape: number[]) =>
      Tensor.from(m ? m.map((v) => 1 - v) : new Float32Array(B * n), shape);
    const rolls = du.codeSizes.map(() => {
      const k = 1 + rng.int(B - 1);
      return Uint32Array.from({ length: B }, (_, b) => (b + k) % B);
    });
    const o = Math.floor(this.data.size / 4);
    const shifts = Array.from({ length: 10 }, () => {
      const s = new Int32Array(2 * B);
      for (let i = 0; i < 2 * B; i++) s[i] = o - (rng.int(o) + rng.int(o));
      return s;
    });
    const m0 = nd && stage === "I" ? prefixMasks(du.keep0, B, () => rng.next()) : undefined;
    const mL = nd ? masks() : undefined;
    let mL2: Float32Array | undefined;
    if (nd && stage === "I") mL2 = masks();
    if (nd && stage === "II") {
      // The swapped codes are other samples' codes: their masks move with them.
      mL2 = new Float32Array(B * nl);
      let at = 0;
      du.codeSizes.forEach((n, i) => {
        for (let b = 0; b < B; b++) {
          const src = rolls[i][b];
          mL2!.set(mL!.subarray(src * nl + at, src * nl + at + n), b * nl + at);
        }
        at += n;
      });
    }
    const t = (m: Float32Array | undefined, n: number) => m && Tensor.from(m, [B, n]);
    return {
      mask0: t(m0, n0),
      holes0: holes(m0, n0, [B, n0]),
      maskL: t(mL, nl),
      holesL: holes(mL, nl, [B, nl]),
      maskL2: t(mL2, nl),
      holesL2: holes(mL2, nl, [B, nl]),
      roll: rolls,
      shifts,
      noise: this.noise,
    };
  }

  updates(step: number): Update[] {
    this.#step = step;
    const stage = this.stageOf(step);
    const seek = (j: number) => this.noise.seek(step * 8 + j);
    if (stage === "I") {
      // C's update reuses the logits of E, B and G_I's forward pass (`retain`): C saw the
      // images those parameters made before their step, the paper's simultaneous update.
      let s1: { logits: Tensor; y: Int32Array[] };
      return [{
        optimizer: "s1",
        retain: true,
        run: () => {
          seek(0);
          const b = this.#batch(step);
          const r = this.du.stage1({ x: b.x, y: b.y }, this.#draws(step, "I"));
          s1 = { logits: r.logits, y: b.y };
          const terms: Terms = { loss_s1: r.loss };
          for (const [k, v] of Object.entries(r.terms)) terms[k] = v;
          return { loss: r.loss, terms };
        },
      }, {
        optimizer: "c1",
        run: () => {
          const loss = this.du.stage1ClassifierLoss(s1.logits, s1.y);
          return { loss, terms: { cls1: loss } };
        },
      }];
    }
    if (stage === "C") {
      return [{
        optimizer: "rc",
        run: () => {
          const b = this.#batch(step);
          const loss = this.du.stageC({ x: b.x, y: b.y }, this.#draws(step, "C").shifts[0]);
          return { loss, terms: { rcls_c: loss } };
        },
      }];
    }
    if (!this.#ready.value) this.#enterStage2();
    this.store.group("enc").frozen = true;
    const advR = this.cfg.advR;
    const r = advR ? this.du.rcls2 : this.du.rcls;
    // D's and R's updates reuse S and G_II's forward pass (their scores of the generated images).
    let s2: ReturnType<DisUnknown["stage2"]> & { x: Tensor; y: Int32Array[]; draws: DuDraws };
    const out: Update[] = [{
      optimizer: "s2",
      retain: true,
      run: () => {
        seek(0);
        const b = this.#batch(step);
        const draws = this.#draws(step, "II");
        const g = this.du.stage2({ x: b.x, y: b.y }, draws, r);
        s2 = { ...g, x: b.x, y: b.y, draws };
        const terms: Terms = { loss_s2: g.loss };
        for (const [k, v] of Object.entries(g.terms)) terms[`${k}2`] = v;
        return { loss: g.loss, terms };
      },
    }, {
      optimizer: "d2",
      retain: advR,
      run: () => {
        const real = this.du.scoreD(s2.x, s2.draws.shifts[4]);
        const loss = this.du.stage2DiscLoss(real, s2.dRec, s2.dSwap);
        return { loss, terms: { disc: loss } };
      },
    }];
    if (advR) {
      out.push({
        optimizer: "r2",
        run: () => {
          const real = this.du.scoreR(s2.x, s2.draws.shifts[5]);
          const loss = this.du.stage2ClassifierLoss(real, s2.rRec, s2.rSwap, s2.y, s2.ySwap);
          return { loss, terms: { rcls2: loss } };
        },
      });
    }
    return out;
  }

  /**
   * The switch to Stage II: G_II <- G_I, R(II) <- R(C), and the frozen E's per-dim code scale
   * s_d = √(Var_x μ_d + Mean_x σ²_d) on 2,000 training images, all on the GPU (no readback).
   */
  #enterStage2(): void {
    copyGroup(this.store, "gen1", "gen2");
    copyGroup(this.store, "rcls", "rcls2");
    const n = Math.min(2000, this.data.train.count);
    const pos = new Rng(0x5ca1e).permutation(this.data.train.count).subarray(0, n);
    noGrad(() => {
      let s1: Tensor | undefined, s2: Tensor | undefined, sv: Tensor | undefined;
      for (let s = 0; s < n; s += CHUNK) {
        const part = pos.subarray(s, Math.min(n, s + CHUNK));
        const x = Tensor.from(this.data.train.batch(part).x, this.#shape(part.length));
        const q = this.du.enc.apply(x);
        const a = sumBatch(q.mu), b = sumBatch(square(q.mu)), c = sumBatch(square(q.sigma));
        [s1, s2, sv] = s1 ? [add(s1, a), add(s2!, b), add(sv!, c)] : [a, b, c];
      }
      const m = scale(s1!, 1 / n);
      const v = add(sub(scale(s2!, 1 / n), square(m)), scale(sv!, 1 / n));
      const sd = sqrt(clamp(v, 1e-8, Infinity));
      const t = this.du.codeScale;
      copyBuffer(sd.buffer, t.buffer, t.size * 4, sd.offset * 4, t.offset * 4);
    });
    this.#ready.value = true;
  }

  // ------------------------------------------------------------------------------------------
  // Evaluation

  /** Whether the labelled codes come from S and the images from G_II (Stage II has begun). */
  get trainedStage(): 1 | 2 {
    return this.#ready.value ? 2 : 1;
  }

  /**
   * Codes of positions `pos` of `split` (the test split unless given): E's (μ_0, σ_0) and the labelled codes' (μ, σ) — S's after
   * Stage II began, else the embedders' of the true labels — with the images and all labels.
   */
  async encode(pos: Uint32Array, recon?: MseMeter, split: VaeSplit = this.data.test): Promise<{
    mu0: Float32Array;
    s0: Float32Array;
    muL: Float32Array;
    sL: Float32Array;
    labels: Int32Array;
  }> {
    const n = pos.length, n0 = this.du.unknownSize, nl = this.du.labelledDim;
    const nf = this.data.factors.length;
    const mu0 = new Float32Array(n * n0), s0 = new Float32Array(n * n0);
    const muL = new Float32Array(n * nl), sL = new Float32Array(n * nl);
    const labels = new Int32Array(n * nf);
    const stage = this.trainedStage;
    for (let s = 0; s < n; s += CHUNK) {
      const part = pos.subarray(s, Math.min(n, s + CHUNK));
      const b = split.batch(part);
      labels.set(b.labels, s * nf);
      const x = Tensor.from(b.x, this.#shape(part.length));
      const got = await noGrad(async () => {
        const e = this.du.enc.apply(x);
        const l = stage === 2 ? this.du.lenc.apply(x) : this.du.embed(this.#labels(b.labels));
        const ts = [e.mu, e.sigma, l.mu, l.sigma];
        if (recon) ts.push(this.du.decode(concatChannels([e.mu, l.mu]), stage));
        return await Tensor.readAll(ts);
      });
      clearTape();
      mu0.set(got[0], s * n0);
      s0.set(got[1], s * n0);
      muL.set(got[2], s * nl);
      sL.set(got[3], s * nl);
      if (recon) recon.add(b.x, got[4]);
    }
    return { mu0, s0, muL, sL, labels };
  }

  /** Decodes codes given on the CPU ([n, m_0 + Σ codes] rows) with the trained generator. */
  async decodeRows(z: Float32Array, n: number): Promise<Float32Array> {
    const dim = this.du.unknownSize + this.du.labelledDim,
      d = this.data.channels * this.data.size ** 2;
    const out = new Float32Array(n * d);
    for (let s = 0; s < n; s += CHUNK) {
      const m = Math.min(CHUNK, n - s);
      const zt = Tensor.from(z.subarray(s * dim, (s + m) * dim), [m, dim]);
      out.set(await noGrad(() => this.du.decode(zt, this.trainedStage)).read(), s * d);
      clearTape();
    }
    return out;
  }

  /**
   * A renderer for eval/swap.ts: image k takes labelled factor `i`'s code from a[k] and every
   * other code (the unknown one, the other labelled ones) from b[k].
   */
  renderer(codes: { mu0: Float32Array; muL: Float32Array }, i: number) {
    const n0 = this.du.unknownSize, nl = this.du.labelledDim, dim = n0 + nl;
    const at = this.du.codeSizes.slice(0, i).reduce((s, v) => s + v, 0), len = this.du.codeSizes[i];
    return async (a: Uint32Array, b: Uint32Array): Promise<Float32Array> => {
      const z = new Float32Array(a.length * dim);
      for (let k = 0; k < a.length; k++) {
        z.set(codes.mu0.subarray(b[k] * n0, (b[k] + 1) * n0), k * dim);
        z.set(codes.muL.subarray(b[k] * nl, (b[k] + 1) * nl), k * dim + n0);
        z.set(codes.muL.subarray(a[k] * nl + at, a[k] * nl + at + len), k * dim + n0 + at);
      }
      return await this.decodeRows(z, a.length);
    };
  }

  async #classifierFor(): Promise<FactorClassifier> {
    this.#classifier ??= await factorClassifier(this.data, {
      steps: this.cfg.classifierSteps,
      dir: this.cfg.evalNets,
    });
    return this.#classifier;
  }

  async evaluate({ final }: { final: boolean }): Promise<Evaluation> {
    const nf = this.data.factors.length, n0 = this.du.unknownSize;
    const metrics: Record<string, number | string> = {
      stage: this.#step >= 0 ? this.stageOf(this.#step) : `trained ${this.trainedStage}`,
      eval_stage: this.trainedStage,
    };
    const pos = final
      ? this.#evalPos
      : this.#evalPos.subarray(0, Math.min(500, this.#evalPos.length));
    const meter = new MseMeter(true);
    const codes = await this.encode(pos, meter);
    const mse = meter.result();
    metrics.mse_01 = mse.mse01;
    metrics.mse_pm1 = mse.mseSigned;
    metrics.eval_images = pos.length;
    // §1.9 stability: drift of E's posterior means between consecutive Stage-I evaluations.
    if (!final && this.#step >= 0 && this.stageOf(this.#step) === "I") {
      const cur = codes.mu0;
      if (this.#prevCodes && this.#prevCodes.length === cur.length) {
        metrics.code_drift = codeDrift(this.#prevCodes, cur, n0);
      }
      this.#prevCodes = cur;
    }
    const col = (labels: Int32Array, k: number) => factorLabels(labels, nf, k);
    // The final probe is fitted on training images' codes, as lrlivae's and vae's are (same count,
    // same draw), so that the leakage columns of `table --layout shapes` compare one protocol;
    // the quick evaluations (and a set without training images) split the evaluation codes.
    const np = Math.min(this.cfg.probeLimit, this.data.train.count);
    const fit = final && np >= 10
      ? await this.encode(
        new Rng(0x9e0b).permutation(this.data.train.count).subarray(0, np),
        undefined,
        this.data.train,
      )
      : undefined;
    if (fit) metrics.leak_probe_n = np;
    this.cols.forEach((c) => {
      const name = this.data.factors[c].name;
      const l = fit
        ? leakageProbe(
          { codes: fit.mu0, labels: col(fit.labels, c) },
          { codes: codes.mu0, labels: col(codes.labels, c) },
          n0,
        )
        : leakageSplit(codes.mu0, col(codes.labels, c), n0);
      metrics[`leak_${name}`] = l.accuracy;
      metrics[`leak_${name}_chance`] = l.chance;
      metrics[`leak_${name}_norm`] = l.normalized;
    });
    if (!final) return { metrics };
    const muLParts = this.#splitRows(codes.muL), sLParts = this.#splitRows(codes.sL);
    Object.assign(
      metrics,
      await disentanglerMig({
        unknown: { mu: codes.mu0, sigma: codes.s0, dim: n0 },
        labelled: this.cols.map((c, i) => ({
          factor: this.data.factors[c].name,
          code: { mu: muLParts[i], sigma: sLParts[i], dim: this.du.codeSizes[i] },
        })),
        factors: this.data.factors,
        labels: codes.labels,
        samples: this.cfg.migSamples,
      }),
    );
    const classifier = await this.#classifierFor();
    classifier.factors.forEach((
      f,
      k,
    ) => (metrics[`classifier_acc_${f.name}`] = classifier.testAccuracy[k]));
    const results: Record<string, SwapResult> = {};
    const images: Record<string, Uint8Array> = {};
    for (const [i, c] of this.cols.entries()) {
      const name = this.data.factors[c].name;
      const render = this.renderer(codes, i);
      results[name] = await swapAccuracy({
        classifier,
        factor: c,
        labels: codes.labels,
        render,
        pairs: this.cfg.swapPairs,
      });
      images[`swap_${name}`] = await this.#swapGrid(codes, i, pos);
    }
    Object.assign(metrics, swapMetrics(results));
    images.reconstructions = await this.reconGrid();
    return { metrics, images };
  }

  /** Per-factor rows of a labelled [n, Σ codes] array. */
  #splitRows(a: Float32Array): Float32Array[] {
    const nl = this.du.labelledDim, n = a.length / nl;
    let at = 0;
    return this.du.codeSizes.map((len) => {
      const out = new Float32Array(n * len);
      for (let b = 0; b < n; b++) out.set(a.subarray(b * nl + at, b * nl + at + len), b * len);
      at += len;
      return out;
    });
  }

  async #swapGrid(
    codes: { mu0: Float32Array; muL: Float32Array; labels: Int32Array },
    i: number,
    pos: Uint32Array,
  ): Promise<Uint8Array> {
    const c = this.cols[i], nf = this.data.factors.length, n = codes.labels.length / nf;
    const col = Int32Array.from({ length: n }, (_, k) => codes.labels[k * nf + c]);
    return await swapGrid({
      render: this.renderer(codes, i),
      images: (p) => this.data.test.batch(Array.from(p, (k) => pos[k])).x,
      rows: gridSources(col, 6, 3),
      cols: gridSources(col, Math.min(10, this.data.factors[c].size), 4),
      channels: this.data.channels,
      size: this.data.size,
    });
  }

  /** Rows of 8 test images, each above its reconstruction from posterior means. */
  async reconGrid(count = 32): Promise<Uint8Array> {
    const pos = this.#evalPos.subarray(0, Math.min(count, this.#evalPos.length));
    const n = pos.length, d = this.data.channels * this.data.size ** 2;
    const { x } = this.data.test.batch(pos);
    const e = await this.encode(pos);
    const n0 = this.du.unknownSize, nl = this.du.labelledDim;
    const z = new Float32Array(n * (n0 + nl));
    for (let k = 0; k < n; k++) {
      z.set(e.mu0.subarray(k * n0, (k + 1) * n0), k * (n0 + nl));
      z.set(e.muL.subarray(k * nl, (k + 1) * nl), k * (n0 + nl) + n0);
    }
    const xhat = await this.decodeRows(z, n);
    const cols = 8, rows = Math.ceil(n / cols);
    const px = new Float32Array(2 * rows * cols * d).fill(-1);
    for (let k = 0; k < n; k++) {
      const r = Math.floor(k / cols), c = k % cols;
      px.set(x.subarray(k * d, (k + 1) * d), (2 * r * cols + c) * d);
      px.set(xhat.subarray(k * d, (k + 1) * d), ((2 * r + 1) * cols + c) * d);
    }
    const s = this.data.size;
    return await imageGrid(px, 2 * rows * cols, this.data.channels, s, s, cols, { range: [-1, 1] });
  }

  async preview(): Promise<Record<string, Uint8Array>> {
    const pos = this.#evalPos.subarray(0, Math.min(200, this.#evalPos.length));
    const codes = await this.encode(pos);
    return {
      reconstructions: await this.reconGrid(),
      [`swap_${this.labelledNames[0]}`]: await this.#swapGrid(codes, 0, pos),
    };
  }

  release(): void {
    this.noise.release();
    this.#classifier?.release();
  }
}

/** `--model disunknown`: DisUnknown's three stages on MNIST or a labelled set. */
export const disunknownTask = defineTask({
  name: "disunknown",
  summary: "DisUnknown (Stage I / C / II, NLU adversary, nested dropout) on MNIST or a labelled " +
    "set: MIG_lab/MIG_all, swap accuracy, leakage, swap grids",
  flags,
  trainer: {
    steps: { default: 2100, gpu: 320000 },
    batch: { default: 32, gpu: 64 },
    lr: { default: 3e-3, gpu: 1e-4 },
    warmup: { default: 100 },
    decay: { default: "none" },
    out: { default: "runs/disunknown", gpu: "runs/disunknown-gpu" },
    sampleEvery: { default: 500, gpu: 10000 },
    checkpointEvery: { default: 500, gpu: 5000 },
    evalEvery: { default: 250, gpu: 10000 },
  },
  async build(cfg, mode): Promise<Model> {
    const size = cfg.size || (SIZED.has(cfg.data) && cfg.preset !== "gpu" ? 32 : 0);
    const data = await vaeData(cfg.data, { size, trainLimit: cfg.trainLimit, mode });
    const cols = labelledColumns(data, cfg.labelled, cfg.unknown);
    const freqs = mode === "train" ? classFrequencies(data.train, data.factors, cols) : undefined;
    return new DisUnknownModel(cfg, data, freqs, mode);
  },
});

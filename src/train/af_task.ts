// AF flow (af-mi-flow.md §2) on SynthLips (§5.2), for the generic trainer. Two stages in one run
// by default (`--stage two`): the first --glow-steps train the Glow by likelihood on random
// frames (§2.4 step 1, the paper's batch of 16 frames), then the `flow` group is frozen and the
// encoder and the word classifier train on whole clips (one clip of 29 frames per step, §2.3)
// with L_AF = L_s + L_t + L_p + L_y (each switchable: --no-loss-s, ... for the Table I
// ablations). `--stage glow` trains only the Glow; `--stage af --glow-from RUN` trains only stage
// 2 on the Glow of another run; `--stage joint` is AF-1 (L_f + L_AF on clips, nothing frozen).
//
// Every step draws its frames, clips, query and noise from hash(seed, step), so a resumed run sees
// exactly what it would have. Stage 2 encodes clean frames (no dequantisation noise, §2.4 [C]).
// Evaluation: progress evaluations (--eval-every) are quick: test bits/dim, the AF losses and word
// accuracy on unseen identities, and a one-k self-reenactment and cross-identity PSNR for the AF
// factorisation and for the plain-Glow split (A16: top latent = z^i). The final one (and `deno
// task evaluate`) runs the shared Table I protocol of src/eval/reenact.ts on the run's own
// factorisation (AF once its stage ran; the Glow split for --stage glow, the Glow baseline), plus
// test bits/dim, the AF losses, word accuracy and the run's training time.
import { join } from "node:path";
import { hash3 } from "../data/labelled.ts";
import {
  type SynthLips,
  synthLips,
  SYNTHLIPS_FRAMES,
  type SynthLipsClip,
  type SynthLipsSplit,
  toFlowInput,
} from "../data/synthlips.ts";
import {
  clipStrip,
  decodeEach,
  modelPsnr,
  reenactmentProtocol,
  type Reenactor,
  runTimes,
} from "../eval/reenact.ts";
import { AfFlow, type AfLossSwitches, ALL_AF_LOSSES, type EncoderForm } from "../models/af.ts";
import { ParamStore } from "../nn/store.ts";
import { add } from "../ops/elementwise.ts";
import { gatherBatch } from "../ops/gather.ts";
import { sum } from "../ops/reduce.ts";
import { clearTape, noGrad } from "../ops/tape.ts";
import { Tensor } from "../ops/tensor.ts";
import { Rng } from "../util/rng.ts";
import { checkConfigMatches, loadCheckpoint } from "./checkpoint.ts";
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

const flags = {
  stage: {
    default: "two",
    choices: ["two", "glow", "af", "joint"],
    help: "two: Glow for --glow-steps, then AF on the frozen Glow (AF-2); glow: the Glow only; " +
      "af: AF only, on the Glow of --glow-from; joint: Glow and AF together (AF-1)",
  },
  glowSteps: {
    default: 1500,
    gpu: 200000,
    help: "--stage two: steps of stage 1 (Glow by likelihood); the rest are stage 2",
  },
  glowFrom: {
    default: "",
    help: "--stage af: a run folder of this model whose checkpoint holds the trained Glow",
  },
  size: { default: 32, gpu: 64, shape: true, help: "image side: 32 (CPU variant) or 64" },
  levels: { default: 4, min: 1, shape: true, help: "Glow levels L (γ = 2^-(L-1))" },
  depth: { default: 4, gpu: 32, min: 1, shape: true, help: "flow steps per level (K)" },
  width: { default: 64, gpu: 512, min: 1, shape: true, help: "hidden channels of the couplings" },
  coupling: {
    default: "affine",
    choices: ["affine", "additive"],
    shape: true,
    help: "coupling layer (A1: the paper's affine; the reference code's additive)",
  },
  lu: { default: true, shape: true, help: "LU-parameterised 1x1 convolutions" },
  encoders: {
    default: 1,
    min: 1,
    shape: true,
    help: "1: one encoder E, z^r = z - E(z) (the paper's best); 2: separate E_i and E_r",
  },
  encoder: {
    default: "residual",
    choices: ["residual", "mlp"],
    shape: true,
    help: "encoder form: residual, E(v) = v + MLP(v) starting at E = I; mlp: E(v) = MLP(v) " +
      "(spec §2.1), which underfits L_s at CPU budgets",
  },
  rnnHidden: {
    default: 128,
    gpu: 256,
    min: 1,
    shape: true,
    help: "hidden units of the word RNN (H)",
  },
  lossS: {
    default: true,
    help: "the source-structure loss L_s (eq. 2); off: its Table I ablation",
  },
  lossT: {
    default: true,
    help: "the target-structure loss L_t (eq. 3); off: its Table I ablation",
  },
  lossP: { default: true, help: "the random-pair loss L_p (eq. 4); off: its Table I ablation" },
  lossY: {
    default: true,
    shape: true,
    help: "the word-classification loss L_y (eq. 5); off: its ablation, without a classifier",
  },
  clips: { default: 1, min: 1, help: "clips of 29 frames per AF step (the paper: 1)" },
  afLrScale: {
    default: 1,
    real: true,
    help: "learning rate of the AF encoder and classifier relative to --lr",
  },
  vocab: { default: 32, min: 2, shape: true, help: "SynthLips words (N_y)" },
  identities: { default: 400, min: 2, help: "SynthLips training identities (the spec: 400)" },
  dataSeed: { default: 1, help: "seed of the SynthLips set (identities, words, clips)" },
  logos: { default: true, help: "MNIST shirt logos on half the identities (loads MNIST)" },
  nuisance: { default: true, help: "head jitter, brightness jitter and blinks in clips" },
  initBatch: { default: 64, min: 1, help: "frames for the data-dependent actnorm init" },
  evalFrames: { default: 128, min: 1, help: "test frames for bits/dim" },
  evalClips: {
    default: 8,
    gpu: 100,
    min: 1,
    help: "test clips of the evaluation (the AF losses and the Table I protocol)",
  },
  evalSeeds: {
    default: 3,
    gpu: 5,
    min: 1,
    help: "final evaluation: draws of the frame k (and of the cross-identity queries) per clip",
  },
};

/** The AF task's config: trainer flags and its own. */
export type AfTaskConfig = Config<typeof flags>;

/** The flags that fix the Glow's shapes: a --glow-from run must agree on them. */
const GLOW_KEYS = ["size", "levels", "depth", "width", "coupling", "lu"];
const N = SYNTHLIPS_FRAMES;
const N_BITS = 5;
const STREAM = { frames: 1, clips: 2, init: 3, test: 4, eval: 5 };
/** The AF loss switches and the names their values are logged under. */
const TERMS: [keyof AfLossSwitches, string][] = [
  ["source", "l_s"],
  ["target", "l_t"],
  ["pair", "l_p"],
  ["word", "l_y"],
];

/** A source clip, its query clip (another identity) and the query frame k. */
export interface ClipPair {
  source: SynthLipsClip;
  query: SynthLipsClip;
  k: number;
}

/** Quick-evaluation figures of a set of clip pairs (means over clips). */
interface ClipFigures {
  glowSelf?: number;
  glowCross?: number;
  afSelf?: number;
  afCross?: number;
  losses?: Record<string, number>;
  wordAccuracy?: number;
}

/** AF flow on SynthLips, as the trainer drives it. */
export class AfModel implements Model {
  readonly store: ParamStore;
  readonly af: AfFlow;
  readonly optimizers: Record<string, OptimizerSpec>;
  readonly examplesPerStep: number;
  readonly #bits: Tensor;
  readonly #dim: number;
  /** The step of the last `updates` call: previews and evaluations know which stage ran. */
  #step = 0;
  readonly #mode: "train" | "evaluate";

  constructor(readonly cfg: AfTaskConfig, readonly data: SynthLips, mode: "train" | "evaluate") {
    if (cfg.encoders !== 1 && cfg.encoders !== 2) {
      throw new Error(`flowgpu: af: --encoders must be 1 or 2, got ${cfg.encoders}`);
    }
    if (cfg.stage === "af" && !cfg.glowFrom && mode === "train") {
      throw new Error(
        "flowgpu: af: --stage af needs --glow-from RUN (a run of this model with a trained Glow)",
      );
    }
    if (data.size !== cfg.size) throw new Error(`flowgpu: af: data side ${data.size} != --size`);
    this.#mode = mode;
    const losses = this.losses;
    this.store = new ParamStore(cfg.seed);
    this.af = new AfFlow(this.store, {
      channels: 3,
      height: cfg.size,
      width: cfg.size,
      levels: cfg.levels,
      depth: cfg.depth,
      hidden: cfg.width,
      affine: cfg.coupling === "affine",
      lu: cfg.lu,
      nBits: N_BITS,
      seed: cfg.seed,
    }, {
      encoders: cfg.encoders,
      encoder: cfg.encoder as EncoderForm,
      words: data.vocab.length,
      rnnHidden: cfg.rnnHidden,
      losses,
    });
    const afGroups = ["encoder", ...(cfg.lossY ? ["classifier"] : [])];
    this.optimizers = {
      two: { glow: { groups: ["flow"] }, af: { groups: afGroups, lrScale: cfg.afLrScale } },
      glow: { glow: { groups: ["flow"] } },
      af: { af: { groups: afGroups, lrScale: cfg.afLrScale } },
      joint: { main: { groups: ["flow", ...afGroups] } },
    }[cfg.stage]!;
    this.examplesPerStep = cfg.stage === "glow" ? cfg.batch : cfg.clips * N;
    this.#bits = Tensor.constant([N_BITS], [1], "n_bits");
    this.#dim = 3 * cfg.size * cfg.size;
    if (cfg.stage === "af" && mode === "train") {
      this.loadGlow(cfg.glowFrom);
      this.store.group("flow").frozen = true;
    }
  }

  /** The loss switches of the config. */
  get losses(): AfLossSwitches {
    const c = this.cfg;
    return { source: c.lossS, target: c.lossT, pair: c.lossP, word: c.lossY };
  }

  describe(): string {
    const c = this.cfg;
    const sw = this.losses;
    const off = TERMS.filter(([k]) => !sw[k]).map(([, t]) => t);
    const stage = c.stage === "two"
      ? `Glow ${c.glowSteps} steps of ${c.batch} frames, then AF on ${c.clips} clip(s) per step`
      : c.stage === "glow"
      ? `Glow only, ${c.batch} frames per step`
      : c.stage === "af"
      ? `AF only on the Glow of ${c.glowFrom || "(loaded)"}`
      : `AF-1: Glow and AF jointly on ${c.clips} clip(s) per step`;
    const groups = this.store.groups().map((g) => `${g.name} ${g.count().toLocaleString("en")}`);
    return `SynthLips ${c.size}x${c.size}, ${this.data.identityCount("train")} identities, ` +
      `${this.data.vocab.length} words; Glow L=${c.levels} K=${c.depth} width ${c.width} ` +
      `${c.coupling}; ${c.encoders} ${c.encoder} encoder(s)${
        off.length ? `, without ${off.map((t) => `L_${t.slice(2)}`).join(", ")}` : ""
      }; parameters ${groups.join(", ")}; ${stage}; ${c.steps} steps`;
  }

  /** Whether `step` trains the Glow alone (stage 1). */
  glowStage(step: number): boolean {
    return this.cfg.stage === "glow" || (this.cfg.stage === "two" && step < this.cfg.glowSteps);
  }

  /**
   * Copy the Glow (every `flow.*` tensor and flag) from the checkpoint of the run in `dir`, which
   * must be a run of this model with the same Glow shape whose Glow stage finished.
   */
  loadGlow(dir: string): void {
    const path = join(dir, CHECKPOINT);
    const ck = loadCheckpoint(path);
    const md = ck.metadata;
    if (md.format !== FORMAT || md.model !== "af") {
      throw new Error(
        `flowgpu: af: --glow-from ${dir}: ${path} is not a checkpoint of an af run ` +
          `(format ${md.format ?? "missing"}, model ${md.model ?? "missing"})`,
      );
    }
    const saved = JSON.parse(md.config ?? "{}");
    checkConfigMatches(saved, this.cfg, GLOW_KEYS);
    const step = Number(md.step);
    if (saved.stage === "two" && step < Number(saved.glowSteps)) {
      throw new Error(
        `flowgpu: af: --glow-from ${dir}: its Glow stage stopped at step ${step} of ` +
          `${saved.glowSteps}; finish it (--resume) first`,
      );
    }
    for (const [name, t] of this.store.tensors) {
      if (!name.startsWith("flow.")) continue;
      const s = ck.tensors[name];
      if (!s || s.data.length !== t.size) {
        throw new Error(`flowgpu: af: --glow-from ${dir}: ${path} lacks ${name} [${t.shape}]`);
      }
      t.write(s.data);
    }
    const fl = JSON.parse(md.flags ?? "{}") as Record<string, boolean>;
    this.store.loadFlags(
      Object.fromEntries(Object.entries(fl).filter(([k]) => k.startsWith("flow."))),
    );
  }

  /** Model inputs of 8-bit frames: 5-bit bins, plus U(0, 1) of a bin when `rng` is given. */
  #input(pixels: Uint8Array, n: number, rng?: Rng): Tensor {
    const x = toFlowInput(pixels);
    if (rng) { for (let i = 0; i < x.length; i++) x[i] += rng.next() / 32; }
    return Tensor.from(x, [n, 3, this.cfg.size, this.cfg.size]);
  }

  /** `n` random frames of `split` as flow inputs, dequantised with `rng`'s noise. */
  #frames(split: SynthLipsSplit, n: number, rng: Rng): Tensor {
    const total = this.data.frameCount(split);
    const refs = Array.from({ length: n }, () => rng.int(total));
    return this.#input(this.data.renderFrames(split, refs).pixels, n, rng);
  }

  /** Data-dependent actnorm init from `initBatch` training frames (a loaded Glow keeps its own). */
  init(): void {
    if (this.af.glow.initialized) return;
    const rng = new Rng(hash3(this.cfg.seed, 0, STREAM.init));
    this.af.glow.initialize(this.#frames("train", this.cfg.initBatch, rng));
  }

  /** A random pair of `split`: the source clip, a clip of another identity, a query frame. */
  pair(split: SynthLipsSplit, rng: Rng): ClipPair {
    const ids = this.data.identityCount(split), words = this.data.vocab.length;
    const utt = this.data.utterances(split);
    const i = rng.int(ids);
    const j = (i + 1 + rng.int(ids - 1)) % ids;
    const source = this.data.clip(split, i, rng.int(words), rng.int(utt));
    const query = this.data.clip(split, j, rng.int(words), rng.int(utt));
    return { source, query, k: rng.int(N) };
  }

  /** The frames of clips as one flow input [clips·29, 3, s, s] (dequantised with `rng`). */
  clipInput(clips: SynthLipsClip[], rng?: Rng): Tensor {
    const d = this.#dim * N, px = new Uint8Array(clips.length * d);
    clips.forEach((c, b) => px.set(this.data.renderClip(c), b * d));
    return this.#input(px, clips.length * N, rng);
  }

  updates(step: number): Update[] {
    this.#step = step;
    const flow = this.store.group("flow");
    if (this.glowStage(step)) {
      flow.frozen = false;
      return [{ optimizer: "glow", run: () => this.#glowUpdate(step) }];
    }
    if (this.cfg.stage !== "joint") flow.frozen = true;
    const optimizer = this.cfg.stage === "joint" ? "main" : "af";
    return [{ optimizer, run: () => this.#afUpdate(step) }];
  }

  #glowUpdate(step: number): { loss: Tensor; terms: Terms } {
    const rng = new Rng(hash3(this.cfg.seed, step, STREAM.frames));
    const loss = this.af.glow.loss(this.#frames("train", this.cfg.batch, rng));
    return { loss, terms: { bpd: add(loss, this.#bits) } };
  }

  #afUpdate(step: number): { loss: Tensor; terms: Terms } {
    const rng = new Rng(hash3(this.cfg.seed, step, STREAM.clips));
    const joint = this.cfg.stage === "joint";
    const pairs = Array.from({ length: this.cfg.clips }, () => this.pair("train", rng));
    const shift = 1 + rng.int(N - 1);
    // AF-1 trains θ through z (and L_f), so it encodes the dequantised frames it scores.
    const noise = joint ? rng : undefined;
    const encode = (x: Tensor) => joint ? this.af.glow.flow(x).latents : this.af.glow.encode(x);
    const xs = this.clipInput(pairs.map((p) => p.source), noise);
    let source: Tensor[], bits: Tensor | undefined;
    if (joint) ({ latents: source, bits } = this.af.flowWithBits(xs));
    else source = encode(xs);
    const query = this.cfg.lossT
      ? encode(this.clipInput(pairs.map((p) => p.query), noise))
      : undefined;
    const l = this.af.losses({
      source,
      frames: N,
      query,
      queryFrames: pairs.map((p) => p.k),
      words: pairs.map((p) => p.source.word),
      shift,
    });
    const terms: Terms = { l_af: l.total };
    if (l.source) terms.l_s = l.source;
    if (l.target) terms.l_t = l.target;
    if (l.pair) terms.l_p = l.pair;
    if (l.word) terms.l_y = l.word;
    if (!bits) return { loss: l.total, terms };
    terms.bpd = add(bits, this.#bits);
    return { loss: add(bits, l.total), terms };
  }

  /** Test bits/dim over `n` test frames (seeded frames and noise). */
  async testBpd(n: number): Promise<number> {
    const rng = new Rng(hash3(this.cfg.seed, 0, STREAM.test));
    let total = 0;
    for (let s = 0; s < n; s += 64) {
      const m = Math.min(64, n - s);
      const x = this.#frames("test", m, rng);
      total += await noGrad(() => sum(this.af.glow.logProb(x))).item();
      clearTape();
    }
    return -total / n / (this.#dim * Math.LN2) + N_BITS;
  }

  /** The fixed evaluation pairs: test identities, queries of other test identities. */
  evalPairs(n: number): ClipPair[] {
    const rng = new Rng(hash3(this.cfg.dataSeed, n, STREAM.eval));
    return Array.from({ length: n }, () => this.pair("test", rng));
  }

  /**
   * Reenacted latents of source latents `zs` [29, ...] with the identity of query frame `k` of
   * `zq`: "af" (z_T = E_i(z_{q,k}) + z^r(z_S), §2.5) or "glow" (A16: the source's split-off
   * latents under the query frame's top latent).
   */
  reenactLatents(zs: Tensor[], zq: Tensor[], k: number, mode: "af" | "glow"): Tensor[] {
    const n = zs[0].shape[0];
    if (mode === "af") return this.af.reenact(zs, zq.map((t) => gatherBatch(t, [k])));
    const top = zq.length - 1;
    return zs.map((z, l) => l < top ? z : gatherBatch(zq[top], new Array(n).fill(k)));
  }

  /**
   * Quick figures over `pairs` (see the file comment): the AF losses and word accuracy (once the
   * AF stage ran) and, with `psnrs`, one-k self and cross PSNRs of both factorisations.
   */
  async clipFigures(pairs: ClipPair[], withAf: boolean, psnrs = true): Promise<ClipFigures> {
    const sums: Record<string, number> = {};
    const addTo = (k: string, v: number) => (sums[k] = (sums[k] ?? 0) + v);
    const d = this.#dim;
    // Every loss this model has, whatever the training switches: the ablations compare on all.
    const which = { ...ALL_AF_LOSSES, word: !!this.af.classifier };
    const terms = TERMS.filter(([k]) => which[k]);
    const modes: ("glow" | "af")[] = !psnrs ? [] : withAf ? ["glow", "af"] : ["glow"];
    for (const [j, p] of pairs.entries()) {
      const kSelf = hash3(this.cfg.dataSeed, j, 77) % N;
      const xs = this.clipInput([p.source]);
      const xsData = await xs.read();
      const out = await noGrad(async () => {
        const zs = this.af.glow.encode(xs);
        const zq = this.af.glow.encode(this.clipInput([p.query]));
        const decoded = modes.flatMap((m) => [
          this.af.glow.decode(this.reenactLatents(zs, zs, kSelf, m)),
          this.af.glow.decode(this.reenactLatents(zs, zq, p.k, m)),
        ]);
        const scalars: Tensor[] = [];
        if (withAf) {
          const l = this.af.losses({
            source: zs,
            frames: N,
            query: zq,
            queryFrames: [p.k],
            words: [p.source.word],
            shift: 1 + (j % (N - 1)),
          }, which);
          for (const [k] of terms) scalars.push(l[k]!);
          if (l.lastLogits) scalars.push(l.lastLogits);
        }
        return await Tensor.readAll([...decoded, ...scalars]);
      });
      clearTape();
      const frame = (a: Float32Array, n: number) => a.subarray(n * d, (n + 1) * d);
      if (psnrs) {
        const cross = toFlowInput(this.data.renderCross(p.source, p.query, p.k));
        const frames = Array.from({ length: N }, (_, n) => n);
        const mean = (img: Float32Array, ref: Float32Array, ns: number[]) =>
          ns.reduce((s, n) => s + modelPsnr(frame(img, n), frame(ref, n)), 0) / ns.length;
        modes.forEach((m, i) => {
          addTo(`${m}Self`, mean(out[2 * i], xsData, frames.filter((n) => n !== kSelf)));
          addTo(`${m}Cross`, mean(out[2 * i + 1], cross, frames));
        });
      }
      if (withAf) {
        const at = 2 * modes.length;
        terms.forEach(([, name], i) => addTo(name, out[at + i][0]));
        if (this.af.classifier) {
          const logits = out[at + terms.length];
          let best = 0;
          logits.forEach((v, c) => (best = v > logits[best] ? c : best));
          addTo("word", best === p.source.word ? 1 : 0);
        }
      }
    }
    const mean = (k: string) => sums[k] / pairs.length;
    const fig: ClipFigures = {};
    if (psnrs) {
      fig.glowSelf = mean("glowSelf");
      fig.glowCross = mean("glowCross");
    }
    if (withAf) {
      if (psnrs) {
        fig.afSelf = mean("afSelf");
        fig.afCross = mean("afCross");
      }
      fig.losses = Object.fromEntries(
        Object.keys(sums).filter((k) => k.startsWith("l_")).map((k) => [k, mean(k)]),
      );
      if (this.af.classifier) fig.wordAccuracy = mean("word");
    }
    return fig;
  }

  /**
   * Whether the AF networks have trained: not in a Glow-only run, nor during the Glow stage (an
   * evaluation of a saved run takes its AF stage as begun).
   */
  get afTrained(): boolean {
    if (this.cfg.stage === "glow") return false;
    return this.#mode === "evaluate" || !this.glowStage(this.#step);
  }

  /**
   * The reenactment route of src/eval/reenact.ts: "af" (§2.5) once the AF stage ran, else the
   * Glow split (A16), or the one `mode` names.
   */
  reenactor(mode: "af" | "glow" = this.afTrained ? "af" : "glow"): Reenactor {
    const s = this.cfg.size, d = this.#dim, glow = this.af.glow;
    return {
      method: mode,
      set: this.data,
      input: (pixels) => toFlowInput(pixels),
      reenact: async (source, identities) => {
        const n = source.length / d, m = identities.length / d;
        const zs = glow.encode(Tensor.from(source, [n, 3, s, s]));
        const zq = glow.encode(Tensor.from(identities, [m, 3, s, s]));
        return await decodeEach(
          m,
          [...zs, ...zq],
          (j) => glow.decode(this.reenactLatents(zs, zq, j, mode)),
        );
      },
    };
  }

  async evaluate({ final }: { final: boolean }): Promise<Evaluation> {
    const metrics: Record<string, number | string> = {
      test_bpd: await this.testBpd(this.cfg.evalFrames),
    };
    const withAf = this.afTrained;
    // The final evaluation takes its PSNRs from the protocol: here only the AF losses, if any.
    const f = final && !withAf
      ? {}
      : await this.clipFigures(this.evalPairs(this.cfg.evalClips), withAf, !final);
    if (!final) {
      metrics.test_glow_self_psnr = f.glowSelf!;
      metrics.test_glow_cross_psnr = f.glowCross!;
      if (withAf) {
        metrics.test_af_self_psnr = f.afSelf!;
        metrics.test_af_cross_psnr = f.afCross!;
      }
    }
    if (withAf) {
      for (const [k, v] of Object.entries(f.losses!)) metrics[`test_${k}`] = v;
      if (f.wordAccuracy !== undefined) metrics.test_word_acc = f.wordAccuracy;
    }
    metrics.eval_clips = this.cfg.evalClips;
    if (!final) return { metrics };
    const p = await reenactmentProtocol(this.reenactor(), {
      clips: this.cfg.evalClips,
      seeds: this.cfg.evalSeeds,
    });
    Object.assign(metrics, p.metrics, { gamma: 2 ** -(this.cfg.levels - 1) });
    const from = this.cfg.stage === "af" ? this.cfg.glowFrom : undefined;
    Object.assign(metrics, runTimes(this.cfg.out, this.examplesPerStep, from));
    return { metrics, images: p.images };
  }

  /**
   * One test pair as a strip of 9 columns (the query frame, then source frames 0, 4, ..., 28):
   * rows source, rendered cross-identity ground truth, the Glow split's reenactment, and (once
   * the AF stage ran) AF's.
   */
  async reenactmentStrip(): Promise<Uint8Array> {
    const p = this.evalPairs(1)[0], d = this.#dim;
    const src = toFlowInput(this.data.renderClip(p.source));
    const gt = toFlowInput(this.data.renderCross(p.source, p.query, p.k));
    const q = toFlowInput(this.data.renderClip(p.query)).subarray(p.k * d, (p.k + 1) * d);
    const modes: ("glow" | "af")[] = this.afTrained ? ["glow", "af"] : ["glow"];
    const decoded: Float32Array[] = [];
    for (const m of modes) decoded.push(...await this.reenactor(m).reenact(src, q));
    const rows = [src, gt, ...decoded].map((clip) => ({ lead: q, clip }));
    return await clipStrip(this.cfg.size, rows, [0, 4, 8, 12, 16, 20, 24, 28]);
  }

  async preview(): Promise<Record<string, Uint8Array>> {
    return { reenactment: await this.reenactmentStrip() };
  }

  release(): void {
    this.#bits.release();
  }
}

/** `--model af`: AF flow (attribute factorisation) on SynthLips. */
export const afTask = defineTask({
  name: "af",
  summary: "AF flow (Glow, then encoder + word RNN on the frozen Glow) on SynthLips clips",
  flags,
  trainer: {
    steps: { default: 2500, gpu: 400000 },
    batch: { default: 16 },
    lr: { default: 1e-3, gpu: 1e-4 },
    warmup: { default: 100, gpu: 0 },
    decay: { default: "none" },
    clip: { default: 50, gpu: 5 },
    out: { default: "runs/af", gpu: "runs/af-gpu" },
    sampleEvery: { default: 500, gpu: 10000 },
    checkpointEvery: { default: 250, gpu: 5000 },
    evalEvery: { default: 0, gpu: 20000 },
  },
  async build(cfg, mode): Promise<Model> {
    if (cfg.size !== 32 && cfg.size !== 64) {
      throw new Error(`flowgpu: af: --size must be 32 or 64, got ${cfg.size}`);
    }
    const data = await synthLips({
      seed: cfg.dataSeed,
      size: cfg.size,
      vocab: cfg.vocab,
      identities: { train: cfg.identities },
      logos: cfg.logos,
      nuisance: cfg.nuisance,
    });
    return new AfModel(cfg, data, mode);
  },
});

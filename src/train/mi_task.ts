// The MI flow (af-mi-flow.md §3) on SynthLips (§5.2): frame-level training on random frames of
// random training clips (32x32 by default, 64x64 with --preset gpu), or, with --word-loss, on
// clips (A15: B clips of --clip-frames frames at stride --clip-stride from a random offset, rows
// clip-major) so that the word classifier sees sequences. Every step renders its frames on the
// CPU (5-bit, x = floor(u8 / 8) / 32 − 1/2), dequantises them with U(0, 1/32) and uploads them.
//
// Evaluation on unseen test identities: conditional NLL (bits/dim); the final one (and `deno task
// evaluate`) adds the shared Table I protocol of src/eval/reenact.ts by the G1 route (z^r inferred
// from the source frames, z^i of the identity frame), the inverse's round-trip error, word
// accuracy with --word-loss and the run's training time (an afmi run's includes its MI run's).
import { hash3 } from "../data/labelled.ts";
import {
  type SynthLips,
  synthLips,
  SYNTHLIPS_BOX,
  SYNTHLIPS_FRAMES,
  type SynthLipsClip,
  type SynthLipsSplit,
} from "../data/synthlips.ts";
import {
  decodeEach,
  protocolClips,
  reenactmentProtocol,
  type Reenactor,
  runTimes,
} from "../eval/reenact.ts";
import { MiFlow, type MiLosses } from "../models/mi.ts";
import { MiHybrid } from "../models/mi_hybrid.ts";
import { ParamStore } from "../nn/store.ts";
import { gatherBatch } from "../ops/gather.ts";
import { reshape } from "../ops/shape.ts";
import { clearTape, noGrad } from "../ops/tape.ts";
import { Tensor } from "../ops/tensor.ts";
import { Rng } from "../util/rng.ts";
import { checkConfigMatches, loadCheckpoint } from "./checkpoint.ts";
import { type Config, defineTask, type Evaluation, type Model, type Terms } from "./task.ts";

const flags = {
  size: { default: 32, gpu: 64, min: 32, shape: true, help: "image side: 32 or 64" },
  levels: { default: 4, min: 2, shape: true, help: "levels L (γ = 2^-(L-1); 4: γ = 0.125)" },
  depth: { default: 4, gpu: 32, min: 1, shape: true, help: "flow steps per level (K)" },
  width: { default: 64, gpu: 512, min: 1, shape: true, help: "hidden channels of the couplings" },
  coupling: {
    default: "affine",
    choices: ["affine", "additive"],
    shape: true,
    help: "coupling layer (affine: the paper's; additive: the reference code's)",
  },
  lu: { default: true, shape: true, help: "LU-factorised 1x1 convolutions (--no-lu: plain W)" },
  bits: { default: 5, min: 1, help: "bit depth of the model's input (1..8)" },
  alpha: { default: 0.1, real: true, help: "weight α of L_r (0: the 'w/o L_r' ablation)" },
  temperature: { default: 0.7, real: true, help: "temperature of the z^r draw in L_i" },
  ld: { default: true, help: "include L_d (--no-ld: the 'w/o L_d' ablation)" },
  li: { default: true, help: "include L_i (--no-li: the 'w/o L_i' ablation)" },
  wordLoss: {
    default: false,
    shape: true,
    help: "add L_y (vanilla-RNN word classifier on z^r_1 sequences); steps then take clips",
  },
  wordWeight: { default: 1, real: true, help: "weight of L_y (nats) with --word-loss" },
  wordHidden: { default: 256, min: 1, shape: true, help: "hidden units of the word RNN" },
  clipFrames: {
    default: 8,
    min: 1,
    help: "frames per clip with --word-loss (clips per step: round(batch / clip-frames))",
  },
  clipStride: { default: 3, min: 1, help: "frame stride within a clip with --word-loss" },
  vocab: { default: 32, min: 2, shape: true, help: "SynthLips words (10: the smoke set)" },
  trainIds: { default: 0, help: "training identities (0: all 400)" },
  logos: { default: true, help: "MNIST shirt logos on half the identities (--no-logos)" },
  dataSeed: { default: 1, help: "seed of the SynthLips set" },
  initBatch: { default: 64, min: 1, help: "frames for the data-dependent actnorm init" },
  evalClips: { default: 8, gpu: 100, min: 1, help: "test clips for the evaluation" },
  evalSeeds: {
    default: 3,
    gpu: 5,
    min: 1,
    help: "final evaluation: draws of the frame k (and of the cross-identity queries) per clip",
  },
};

/** The AF-MI hybrid's own flags (§4.1): β, the MI run it starts from, the AF term switches. */
const hybridFlags = {
  beta: { default: 0.5, real: true, help: "weight β of L_AF^H (0.1, 0.5, 0.8 in Table I)" },
  initFrom: {
    default: "",
    help: "run folder of a trained MI flow to fine-tune (its checkpoint; '': from scratch)",
  },
  afSource: { default: true, help: "L_s^H, z^i of every frame at its clip's centroid" },
  afTarget: { default: true, help: "L_t^H, pasted-mouth frames encode to the query's z̄^i" },
  afPair: { default: true, help: "L_p^H, z^i of paired frames equal" },
  afWord: { default: true, help: "L_y in L_AF^H (needs --word-loss)" },
};

/** The flags that fix the flow's and prior's shapes: an --init-from run must share them. */
const FLOW_KEYS = ["size", "levels", "depth", "width", "coupling", "lu"];

export type MiTaskConfig = Config<typeof flags> & Partial<Config<typeof hybridFlags>>;

/** A batch of frames: dequantised x̃ and the clean x, both [N, 3, S, S] model inputs. */
interface FrameBatch {
  noisy: Float32Array;
  clean: Float32Array;
  n: number;
}

export class MiModel implements Model {
  readonly store: ParamStore;
  readonly mi: MiFlow;
  /** Dequantisation noise and the ε of L_i; checkpointed so a resumed run draws the same. */
  readonly noise: Rng;
  readonly rngs: Record<string, Rng>;
  readonly examplesPerStep: number;
  /** Clips per step and frames per clip in clip mode (--word-loss, the hybrid). */
  readonly clips: number;
  readonly frames: number;
  /** Steps take clips (the word loss and the hybrid need sequences). */
  readonly clipMode: boolean;
  /** The AF-MI fine-tuning objective (the afmi task). */
  readonly hybrid?: MiHybrid;
  readonly #trainFrames: number;

  constructor(readonly cfg: MiTaskConfig, readonly set: SynthLips) {
    const size = set.size;
    this.store = new ParamStore(cfg.seed);
    this.mi = new MiFlow(this.store.scope(), {
      channels: 3,
      size,
      levels: cfg.levels,
      depth: cfg.depth,
      hidden: cfg.width,
      affine: cfg.coupling === "affine",
      lu: cfg.lu,
      nBits: cfg.bits,
      box: SYNTHLIPS_BOX[set.size],
      alpha: cfg.alpha,
      temperature: cfg.temperature,
      ld: cfg.ld,
      li: cfg.li,
      words: cfg.wordLoss ? set.vocab.length : 0,
      wordHidden: cfg.wordHidden,
      wordWeight: cfg.wordWeight,
    });
    this.noise = new Rng(cfg.seed ^ 0x5eed);
    this.rngs = { noise: this.noise };
    if (cfg.beta !== undefined) {
      this.hybrid = new MiHybrid(this.mi, cfg.beta, {
        source: cfg.afSource ?? true,
        target: cfg.afTarget ?? true,
        pair: cfg.afPair ?? true,
        word: (cfg.afWord ?? true) && cfg.wordLoss,
      });
      if (cfg.clipFrames < 2) {
        throw new Error(`flowgpu: afmi: --clip-frames must be >= 2, got ${cfg.clipFrames}`);
      }
    }
    this.clipMode = cfg.wordLoss || this.hybrid !== undefined;
    this.frames = this.clipMode ? cfg.clipFrames : 1;
    this.clips = this.clipMode ? Math.max(1, Math.round(cfg.batch / cfg.clipFrames)) : cfg.batch;
    if (this.clipMode && (cfg.clipFrames - 1) * cfg.clipStride >= SYNTHLIPS_FRAMES) {
      throw new Error(
        `flowgpu: mi: --clip-frames ${cfg.clipFrames} at --clip-stride ${cfg.clipStride} span ` +
          `more than the ${SYNTHLIPS_FRAMES} frames of a clip`,
      );
    }
    this.examplesPerStep = this.clips * this.frames;
    this.#trainFrames = set.frameCount("train");
  }

  describe(): string {
    const c = this.cfg, m = this.mi;
    const zi = m.glow.latentShapes[c.levels - 1];
    const gamma = zi.reduce((a, b) => a * b, 1) / m.dims;
    const terms = [c.ld ? "L_d" : "", c.alpha > 0 ? `${c.alpha}·L_r` : "", c.li ? "L_i" : ""]
      .concat(c.wordLoss ? [`${c.wordWeight}·L_y`] : []).filter(Boolean).join(" + ") +
      (this.hybrid ? ` + ${c.beta}·L_AF^H${c.initFrom ? ` from ${c.initFrom}` : ""}` : "");
    const batch = this.clipMode
      ? `${this.clips} clip(s) x ${this.frames} frames (stride ${c.clipStride})`
      : `${c.batch} frames`;
    return `SynthLips ${this.set.size}x${this.set.size}: L=${c.levels} K=${c.depth} width ` +
      `${c.width} ${c.coupling}${c.lu ? " LU" : ""}, γ=${gamma}, loss ${terms}, ${
        this.store.count().toLocaleString("en")
      } parameters; ${batch} per step, ${c.steps} steps; ${
        this.set.identityCount("train")
      } training identities`;
  }

  /** Frames `refs` of `split` as model inputs; dequantisation noise from `rng`. */
  frameBatch(split: SynthLipsSplit, refs: ArrayLike<number>, rng: Rng): FrameBatch {
    const f = this.set.renderFrames(split, refs);
    return this.#fromPixels(f.pixels, refs.length, rng);
  }

  #fromPixels(pixels: Uint8Array, n: number, rng?: Rng): FrameBatch {
    const shift = 8 - this.cfg.bits, bins = 2 ** this.cfg.bits;
    const clean = new Float32Array(pixels.length), noisy = new Float32Array(pixels.length);
    for (let i = 0; i < pixels.length; i++) {
      const k = pixels[i] >> shift;
      clean[i] = k / bins - 0.5;
      noisy[i] = rng ? (k + rng.next()) / bins - 0.5 : clean[i];
    }
    return { clean, noisy, n };
  }

  #tensor(data: Float32Array, n: number): Tensor {
    const s = this.set.size;
    return Tensor.from(data, [n, 3, s, s]);
  }

  /**
   * This step's frame refs (and clip words with --word-loss): random frames of random training
   * clips, or B clips of T frames at the stride from a random offset, clip-major (row b·T + t).
   */
  stepRefs(step: number): { refs: Uint32Array; words?: number[]; rng: Rng } {
    const rng = new Rng(hash3(this.cfg.seed, step, 0x3c1));
    if (!this.clipMode) {
      const refs = Uint32Array.from({ length: this.clips }, () => rng.int(this.#trainFrames));
      return { refs, rng };
    }
    const clipCount = this.set.clipCount("train");
    const refs = new Uint32Array(this.clips * this.frames), words: number[] = [];
    for (let b = 0; b < this.clips; b++) {
      const c = rng.int(clipCount);
      words.push(this.set.clipAt("train", c).word);
      refs.set(this.#clipRefs(c, rng), b * this.frames);
    }
    return { refs, words, rng };
  }

  /** T frame refs of training clip c at the stride from a random offset. */
  #clipRefs(c: number, rng: Rng): number[] {
    const T = this.frames, stride = this.cfg.clipStride;
    const offset = rng.int(SYNTHLIPS_FRAMES - (T - 1) * stride);
    return Array.from({ length: T }, (_, t) => c * SYNTHLIPS_FRAMES + offset + t * stride);
  }

  /**
   * The hybrid's query clips (one of another identity per source clip, T frames each, clip-major),
   * the query frame k of each, and the pair shift s in 1..T−1; drawn from the step's stream.
   */
  queryRefs(refs: Uint32Array, rng: Rng): { refs: Uint32Array; ks: number[]; shift: number } {
    const T = this.frames, perId = this.set.vocab.length * this.set.utterances("train");
    const clipCount = this.set.clipCount("train");
    const out = new Uint32Array(refs.length), ks: number[] = [];
    for (let b = 0; b < this.clips; b++) {
      const id = Math.floor(refs[b * T] / SYNTHLIPS_FRAMES / perId);
      let c = rng.int(clipCount);
      // A different identity (a set of one identity has no other: then any clip).
      for (let tries = 0; tries < 16 && Math.floor(c / perId) === id; tries++) {
        c = rng.int(clipCount);
      }
      out.set(this.#clipRefs(c, rng), b * T);
      ks.push(rng.int(T));
    }
    return { refs: out, ks, shift: 1 + rng.int(T - 1) };
  }

  /**
   * Start from the MI run in --init-from (its flow, prior, flags and, if it had one, word
   * classifier), or the data-dependent actnorm init from `initBatch` random training frames.
   */
  init(): void {
    if (this.cfg.initFrom) return this.#loadMi(this.cfg.initFrom);
    const rng = new Rng(this.cfg.seed + 17);
    const n = this.cfg.initBatch;
    const refs = Uint32Array.from({ length: n }, () => rng.int(this.#trainFrames));
    const b = this.frameBatch("train", refs, new Rng(this.cfg.seed + 18));
    this.mi.glow.initialize(this.#tensor(b.noisy, n));
  }

  #loadMi(dir: string): void {
    const path = `${dir}/checkpoint.safetensors`;
    const ck = loadCheckpoint(path);
    if (ck.metadata.model !== "mi" && ck.metadata.model !== "afmi") {
      throw new Error(
        `flowgpu: afmi: ${path} holds a '${ck.metadata.model}' model, not an MI flow`,
      );
    }
    checkConfigMatches(JSON.parse(ck.metadata.config ?? "{}"), this.cfg, FLOW_KEYS);
    for (const [name, t] of this.store.tensors) {
      const saved = ck.tensors[name];
      // A run without L_y has no word classifier: it starts fresh.
      if (!saved && name.startsWith("word.")) continue;
      if (!saved) throw new Error(`flowgpu: afmi: ${path} has no tensor ${name}`);
      if (saved.data.length !== t.size) {
        throw new Error(
          `flowgpu: afmi: ${path}: ${name} is [${saved.shape}], the model needs [${t.shape}]`,
        );
      }
      t.write(saved.data);
    }
    this.store.loadFlags(JSON.parse(ck.metadata.flags ?? "{}"));
    if (!this.mi.glow.initialized) throw new Error(`flowgpu: afmi: ${path}: actnorms not set`);
  }

  updates(step: number) {
    return [{
      optimizer: "main",
      run: () => {
        const { refs, words, rng } = this.stepRefs(step);
        const b = this.frameBatch("train", refs, this.noise);
        const x = this.#tensor(b.noisy, b.n), clean = this.#tensor(b.clean, b.n);
        const opts = {
          clean,
          noise: (k: number) => this.noise.normalArray(k),
          words: words && this.cfg.wordLoss ? { frames: this.frames, labels: words } : undefined,
        };
        if (this.hybrid) {
          const q = this.queryRefs(refs, rng);
          const query = this.#tensor(this.frameBatch("train", q.refs, this.noise).noisy, b.n);
          const h = this.hybrid.losses(x, opts, {
            frames: this.frames,
            shift: q.shift,
            query,
            queryFrames: q.ks,
          });
          const terms = this.#terms(h.mi);
          terms.l_af = h.af;
          if (h.source) terms.l_s = h.source;
          if (h.target) terms.l_t = h.target;
          if (h.pair) terms.l_p = h.pair;
          return { loss: h.total, terms };
        }
        const l = this.mi.losses(x, opts);
        return { loss: l.total, terms: this.#terms(l) };
      },
    }];
  }

  #terms(l: MiLosses): Terms {
    const terms: Terms = { bpd: l.d, l_r: l.r };
    if (l.i) terms.l_i = l.i;
    if (l.y) terms.l_y = l.y;
    return terms;
  }

  /** Test clips for evaluations: `evalClips` spread evenly over the test split. */
  evalClipList(): SynthLipsClip[] {
    return protocolClips(this.set, Math.min(this.cfg.evalClips, this.set.clipCount("test")));
  }

  /** The clip's frames (rendered with its noise) as clean model inputs. */
  #clipFrames(clip: SynthLipsClip): Float32Array {
    return this.#fromPixels(this.set.renderClip(clip), SYNTHLIPS_FRAMES).clean;
  }

  /** Mean conditional bits/dim of the eval clips' frames, one seeded noise draw per frame. */
  async testBpd(): Promise<number> {
    const rng = new Rng(12345);
    let total = 0;
    const clips = this.evalClipList();
    for (const clip of clips) {
      const b = this.#fromPixels(this.set.renderClip(clip), SYNTHLIPS_FRAMES, rng);
      total += await noGrad(() => this.mi.bitsPerDim(this.#tensor(b.noisy, b.n))).item();
      clearTape();
    }
    return total / clips.length;
  }

  /** Max |f⁻¹(f(x)) − x| / max |x| over the first eval clip's frames (the inverse's sanity). */
  async roundTripError(): Promise<number> {
    const x = this.#clipFrames(this.evalClipList()[0]);
    const { zr, zi } = this.mi.encode(this.#tensor(x, SYNTHLIPS_FRAMES));
    const back = await this.mi.decode(zi, zr).read();
    clearTape();
    let err = 0, scale = 0;
    x.forEach((v, i) => {
      err = Math.max(err, Math.abs(back[i] - v));
      scale = Math.max(scale, Math.abs(v));
    });
    return err / scale;
  }

  /** The G1 reenactment route for src/eval/reenact.ts: z^i of the identity frame, z^r of each frame. */
  reenactor(): Reenactor {
    const S = this.set.size, d = 3 * S * S;
    return {
      method: "mi",
      set: this.set,
      input: (pixels) => this.#fromPixels(pixels, pixels.length / d).clean,
      reenact: async (source, identities) => {
        const n = source.length / d, m = identities.length / d;
        const { zr } = this.mi.encode(this.#tensor(source, n));
        const { zi } = this.mi.encode(this.#tensor(identities, m));
        const tile = (j: number) => new Array(n).fill(j);
        return await decodeEach(
          m,
          [...zr, zi],
          (j) => this.mi.decode(gatherBatch(zi, tile(j)), zr),
        );
      },
    };
  }

  /** Word accuracy of the classifier's last-frame logits on the eval clips (with --word-loss). */
  async wordAccuracy(): Promise<number> {
    const clips = this.evalClipList();
    let right = 0;
    for (const clip of clips) {
      const x = this.#tensor(this.#clipFrames(clip), SYNTHLIPS_FRAMES);
      const last = await noGrad(() => {
        const z1 = this.mi.encode(x).zr[0];
        return this.mi.word!.loss(reshape(z1, [SYNTHLIPS_FRAMES, -1]), SYNTHLIPS_FRAMES, [0]).last;
      }).read();
      clearTape();
      const best = last.indexOf(Math.max(...last));
      if (best === clip.word) right++;
    }
    return right / clips.length;
  }

  /** Strips of the protocol's first test clip: self-reenactment and an unseen identity. */
  async preview() {
    const r = this.reenactor();
    const opts = { clips: 1, seeds: 1, cross: ["unseen" as const], stripClips: 1 };
    return (await reenactmentProtocol(r, opts)).images;
  }

  async evaluate({ final }: { final: boolean }): Promise<Evaluation> {
    const metrics: Record<string, number | string> = { test_bpd: await this.testBpd() };
    if (!final) return { metrics };
    metrics.inverse_rel_error = await this.roundTripError();
    const p = await reenactmentProtocol(this.reenactor(), {
      clips: this.cfg.evalClips,
      seeds: this.cfg.evalSeeds,
    });
    Object.assign(metrics, p.metrics, { gamma: 2 ** -(this.cfg.levels - 1) });
    if (this.mi.word) metrics.word_top1 = await this.wordAccuracy();
    Object.assign(metrics, runTimes(this.cfg.out, this.examplesPerStep, this.cfg.initFrom));
    return { metrics, images: p.images };
  }

  release(): void {
    this.hybrid?.release();
    this.mi.release();
  }
}

export const miTask = defineTask({
  name: "mi",
  summary: "MI flow (conditional prior on z^r from the mouth box) on SynthLips: reenactment",
  flags,
  trainer: {
    steps: { default: 1500, gpu: 200000 },
    batch: { default: 16, gpu: 8 },
    lr: { default: 1e-3, gpu: 1e-4 },
    warmup: { default: 100, gpu: 0 },
    decay: { default: "cosine", gpu: "none" },
    clip: { default: 50, gpu: 5 },
    out: { default: "runs/mi", gpu: "runs/mi-gpu" },
    sampleEvery: { default: 500, gpu: 5000 },
    checkpointEvery: { default: 250, gpu: 2000 },
  },
  build: (cfg) => buildMi(cfg),
});

async function buildMi(cfg: MiTaskConfig): Promise<Model> {
  if (cfg.size !== 32 && cfg.size !== 64) {
    throw new Error(`flowgpu: mi: --size must be 32 or 64, got ${cfg.size}`);
  }
  if (cfg.bits > 8) throw new Error(`flowgpu: mi: --bits ${cfg.bits}: SynthLips has 8 bits`);
  const set = await synthLips({
    seed: cfg.dataSeed,
    size: cfg.size,
    vocab: cfg.vocab,
    logos: cfg.logos,
    ...(cfg.trainIds > 0 ? { identities: { train: cfg.trainIds } } : {}),
  });
  return new MiModel(cfg, set);
}

/**
 * The AF-MI hybrid (§4.1): an MI flow (--init-from its run) fine-tuned on clip batches with
 * L_MI + β L_AF^H. Defaults: the word loss on (L_y is in both), 1 clip of 8 frames at stride 3
 * per CPU step, a whole clip (29 frames) with --preset gpu, 50k steps there [R].
 */
export const afmiTask = defineTask({
  name: "afmi",
  summary: "AF-MI hybrid: an MI flow fine-tuned with L_MI + β·L_AF on SynthLips clips",
  flags: {
    ...flags,
    wordLoss: { ...flags.wordLoss, default: true },
    clipFrames: { ...flags.clipFrames, default: 8, gpu: 29 },
    clipStride: { ...flags.clipStride, default: 3, gpu: 1 },
    ...hybridFlags,
  },
  trainer: {
    steps: { default: 500, gpu: 50000 },
    batch: { default: 8, gpu: 29 },
    lr: { default: 1e-3, gpu: 1e-4 },
    warmup: { default: 50, gpu: 0 },
    decay: { default: "cosine", gpu: "none" },
    clip: { default: 50, gpu: 5 },
    out: { default: "runs/afmi", gpu: "runs/afmi-gpu" },
    sampleEvery: { default: 250, gpu: 5000 },
    checkpointEvery: { default: 250, gpu: 2000 },
  },
  build: (cfg) => buildMi(cfg),
});

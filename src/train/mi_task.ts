// The MI flow (af-mi-flow.md §3) on SynthLips (§5.2): frame-level training on random frames of
// random training clips (32x32 by default, 64x64 with --preset gpu), or, with --word-loss, on
// clips (A15: B clips of --clip-frames frames at stride --clip-stride from a random offset, rows
// clip-major) so that the word classifier sees sequences. Every step renders its frames on the
// CPU (5-bit, x = floor(u8 / 8) / 32 − 1/2), dequantises them with U(0, 1/32) and uploads them.
//
// Evaluation on unseen test identities: conditional NLL (bits/dim), and reenactment PSNR/SSIM by
// the G1 route (z^r inferred from the source frame): self-reenactment (§6.2: z^i of one random
// frame k of the clip, z^r of every other frame n, against x_n) and cross-identity (z^i of frame
// k of another identity's clip, z^r of the source's frames, against the rendered ground truth).
import { hash3 } from "../data/labelled.ts";
import {
  type SynthLips,
  synthLips,
  SYNTHLIPS_BOX,
  SYNTHLIPS_FRAMES,
  type SynthLipsClip,
  type SynthLipsSplit,
} from "../data/synthlips.ts";
import { ssim } from "../eval/ssim.ts";
import { MiFlow } from "../models/mi.ts";
import { ParamStore } from "../nn/store.ts";
import { reshape } from "../ops/shape.ts";
import { clearTape, noGrad } from "../ops/tape.ts";
import { Tensor } from "../ops/tensor.ts";
import { Rng } from "../util/rng.ts";
import { imageGrid } from "./png.ts";
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
  evalClips: { default: 16, gpu: 100, min: 1, help: "test clips for the evaluation" },
};

export type MiTaskConfig = Config<typeof flags>;

/** A batch of frames: dequantised x̃ and the clean x, both [N, 3, S, S] model inputs. */
interface FrameBatch {
  noisy: Float32Array;
  clean: Float32Array;
  n: number;
}

const psnr = (mse: number) => 10 * Math.log10(1 / Math.max(mse, 1e-12));

/** Mean and (population) standard deviation. */
function meanStd(v: number[]): [number, number] {
  const m = v.reduce((a, b) => a + b, 0) / v.length;
  return [m, Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / v.length)];
}

export class MiModel implements Model {
  readonly store: ParamStore;
  readonly mi: MiFlow;
  /** Dequantisation noise and the ε of L_i; checkpointed so a resumed run draws the same. */
  readonly noise: Rng;
  readonly rngs: Record<string, Rng>;
  readonly examplesPerStep: number;
  /** Clips per step and frames per clip with --word-loss. */
  readonly clips: number;
  readonly frames: number;
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
    this.frames = cfg.wordLoss ? cfg.clipFrames : 1;
    this.clips = cfg.wordLoss ? Math.max(1, Math.round(cfg.batch / cfg.clipFrames)) : cfg.batch;
    if (cfg.wordLoss && (cfg.clipFrames - 1) * cfg.clipStride >= SYNTHLIPS_FRAMES) {
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
      .concat(c.wordLoss ? [`${c.wordWeight}·L_y`] : []).filter(Boolean).join(" + ");
    const batch = c.wordLoss
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
  stepRefs(step: number): { refs: Uint32Array; words?: number[] } {
    const rng = new Rng(hash3(this.cfg.seed, step, 0x3c1));
    if (!this.cfg.wordLoss) {
      return { refs: Uint32Array.from({ length: this.clips }, () => rng.int(this.#trainFrames)) };
    }
    const B = this.clips, T = this.frames, stride = this.cfg.clipStride;
    const clipCount = this.set.clipCount("train");
    const refs = new Uint32Array(B * T), words: number[] = [];
    for (let b = 0; b < B; b++) {
      const c = rng.int(clipCount);
      words.push(this.set.clipAt("train", c).word);
      const offset = rng.int(SYNTHLIPS_FRAMES - (T - 1) * stride);
      for (let t = 0; t < T; t++) refs[b * T + t] = c * SYNTHLIPS_FRAMES + offset + t * stride;
    }
    return { refs, words };
  }

  /** Data-dependent actnorm init from `initBatch` random training frames. */
  init(): void {
    const rng = new Rng(this.cfg.seed + 17);
    const n = this.cfg.initBatch;
    const refs = Uint32Array.from({ length: n }, () => rng.int(this.#trainFrames));
    const b = this.frameBatch("train", refs, new Rng(this.cfg.seed + 18));
    this.mi.glow.initialize(this.#tensor(b.noisy, n));
  }

  updates(step: number) {
    return [{
      optimizer: "main",
      run: () => {
        const { refs, words } = this.stepRefs(step);
        const b = this.frameBatch("train", refs, this.noise);
        const x = this.#tensor(b.noisy, b.n), clean = this.#tensor(b.clean, b.n);
        const l = this.mi.losses(x, {
          clean,
          noise: (k) => this.noise.normalArray(k),
          words: words ? { frames: this.frames, labels: words } : undefined,
        });
        const terms: Terms = { bpd: l.d, l_r: l.r };
        if (l.i) terms.l_i = l.i;
        if (l.y) terms.l_y = l.y;
        return { loss: l.total, terms };
      },
    }];
  }

  /** Test clips for evaluations: `evalClips` spread evenly over the test split. */
  evalClipList(): SynthLipsClip[] {
    const count = this.set.clipCount("test"), n = Math.min(this.cfg.evalClips, count);
    return Array.from({ length: n }, (_, j) => this.set.clipAt("test", Math.floor(j * count / n)));
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

  /** f⁻¹(z^i of `query` frame k, tiled, with z^r of every `source` frame): [29, 3, S, S]. */
  async reenact(source: Float32Array, query: Float32Array, k: number): Promise<Float32Array> {
    const N = SYNTHLIPS_FRAMES, d = source.length / N;
    // encode and decode record nothing.
    const zi = await this.mi.encode(this.#tensor(query.slice(k * d, (k + 1) * d), 1)).zi.read();
    const { zr } = this.mi.encode(this.#tensor(source, N));
    const tiled = new Float32Array(N * zi.length);
    for (let n = 0; n < N; n++) tiled.set(zi, n * zi.length);
    const top = this.mi.glow.latentShapes[this.cfg.levels - 1];
    const out = await this.mi.decode(Tensor.from(tiled, [N, ...top]), zr).read();
    clearTape();
    return out;
  }

  /**
   * Self- and cross-identity reenactment over the eval clips (see the file comment): PSNR (dB,
   * images on [0, 1]) and SSIM per frame, mean and std, and strips of the first clip.
   */
  async reenactment(): Promise<{ metrics: Record<string, number>; strip: Uint8Array }> {
    const clips = this.evalClipList(), N = SYNTHLIPS_FRAMES, S = this.set.size;
    const d = 3 * S * S, ids = this.set.identityCount("test");
    const rng = new Rng(4321);
    const selfP: number[] = [], selfS: number[] = [], crossP: number[] = [], crossS: number[] = [];
    let strip: Float32Array[] = [];
    for (const [j, src] of clips.entries()) {
      const xs = this.#clipFrames(src);
      // Self: z^i of frame k, z^r of frame n != k (n = k is an exact round trip).
      const k = rng.int(N);
      const self = await this.reenact(xs, xs, k);
      const keep = Array.from({ length: N }, (_, n) => n).filter((n) => n !== k);
      this.#score(self, xs, keep, selfP, selfS);
      // Cross: a clip of the next identity, a random word and frame k.
      const qid = (src.identity + 1 + rng.int(Math.max(1, ids - 1))) % ids;
      const query = this.set.clip("test", qid, rng.int(this.set.vocab.length));
      const kq = rng.int(N);
      const xq = this.#clipFrames(query);
      const cross = await this.reenact(xs, xq, kq);
      const gt = this.#fromPixels(this.set.renderCross(src, query, kq), N).clean;
      this.#score(cross, gt, Array.from({ length: N }, (_, n) => n), crossP, crossS);
      if (j === 0) strip = [xs, xq.slice(kq * d, (kq + 1) * d), cross, gt, self];
    }
    const metrics: Record<string, number> = {};
    const put = (name: string, v: number[]) => {
      const [m, s] = meanStd(v);
      metrics[name] = m;
      metrics[`${name}_std`] = s;
    };
    put("self_psnr", selfP);
    put("self_ssim", selfS);
    put("cross_psnr", crossP);
    put("cross_ssim", crossS);
    metrics.eval_clips = clips.length;
    return { metrics, strip: await this.#strip(strip) };
  }

  /** PSNR and SSIM of frames `keep` of x against ref (model inputs, [−1/2, 1/2]). */
  #score(x: Float32Array, ref: Float32Array, keep: number[], p: number[], s: number[]): void {
    const S = this.set.size, d = 3 * S * S;
    const a = new Float32Array(keep.length * d), b = new Float32Array(keep.length * d);
    keep.forEach((n, i) => {
      for (let e = 0; e < d; e++) {
        a[i * d + e] = Math.min(1, Math.max(0, x[n * d + e] + 0.5));
        b[i * d + e] = ref[n * d + e] + 0.5;
      }
      let se = 0;
      for (let e = 0; e < d; e++) se += (a[i * d + e] - b[i * d + e]) ** 2;
      p.push(psnr(se / d));
    });
    for (const v of ssim(a, b, [keep.length, 3, S, S])) s.push(v);
  }

  /**
   * Rows: the source clip, then the query frame k, the cross-identity reenactment, its rendered
   * ground truth and the self-reenactment, every 4th frame.
   */
  #strip(parts: Float32Array[]): Promise<Uint8Array> {
    const S = this.set.size, d = 3 * S * S;
    const cols = Array.from({ length: Math.ceil(SYNTHLIPS_FRAMES / 4) }, (_, i) => 4 * i);
    const [xs, q, cross, gt, self] = parts;
    const rows = [xs, null, cross, gt, self];
    const out = new Float32Array(rows.length * cols.length * d);
    rows.forEach((r, i) => {
      cols.forEach((n, j) => {
        const src = r ? r.subarray(n * d, (n + 1) * d) : q;
        out.set(src, (i * cols.length + j) * d);
      });
    });
    return imageGrid(out, rows.length * cols.length, 3, S, S, cols.length, {
      range: [-0.5, 0.5],
    });
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

  async preview() {
    return { reenactment: (await this.reenactment()).strip };
  }

  async evaluate({ final }: { final: boolean }): Promise<Evaluation> {
    const metrics: Record<string, number> = { test_bpd: await this.testBpd() };
    if (!final) return { metrics };
    metrics.inverse_rel_error = await this.roundTripError();
    const r = await this.reenactment();
    Object.assign(metrics, r.metrics);
    if (this.mi.word) metrics.word_top1 = await this.wordAccuracy();
    return { metrics, images: { reenactment: r.strip } };
  }

  release(): void {
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
  async build(cfg): Promise<Model> {
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
  },
});

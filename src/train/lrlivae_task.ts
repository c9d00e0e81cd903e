// Zheng & Sun's label relevant/irrelevant VAE (`--model lrlivae`, vae-disentangle.md §3) and its
// cVAE-GAN baseline (`--variant cvaegan`, §3.5) on a labelled data set, by default Shapes2.5D
// with the object hue as the label. Algorithm 1 per step: n_gm GM updates (Enc_s and the mixture
// on L_GM, each on its own batch), then one end-to-end forward whose losses step Enc_s, Enc_u,
// q_ω, Dec and D in turn (each its own Adam; the graph is kept between them, `Update.retain`).
//
// Evaluation (the final one; quick ones log MSE, KL and the GM accuracy) on a fixed subset of
// the test split, from posterior means, BN in running-statistics mode:
//   - MIG (§1.9 multi-encoder: z_s owns the label, z_u every other factor; swap.ts) as mig_lab,
//     mig_all, mig_<f>; and the classic per-dim MIG on the concatenated code (mig_concat_<f>),
//     the form the plain VAE's mig_<f> takes;
//   - reconstruction MSE (§5.2), the GM classification accuracy of ẑ_s;
//   - leakage (a logistic probe fitted on training-image codes, scored on the test codes): the
//     label from z_u (cVAE-GAN: from its code z), and, as a reference, from ẑ_s;
//   - swap accuracy (label code of A, the rest of B, read by swap.ts's FactorNet);
//   - the paper's ordering check: the inception-like score of class-conditional samples under the
//     same classifier, their accuracy, and the intra-class diversity 1 − mean MS-SSIM (Eq. 12,
//     all pairs and distinct pairs);
//   - images: reconstructions, samples per class, the §3.3 traversals (z_s path per class with a
//     fixed z_u, z_u path with a fixed z_s per class, single z_u dims of a test image), the swap
//     grid and the inpainting panel (right half, bottom half, object box).
import { batchIndices } from "../data/batches.ts";
import { factorLabels, LABELLED_SETS } from "../data/labelled.ts";
import { MIG_NOISE } from "../eval/disentangle.ts";
import { migGpu } from "../eval/disentangle_gpu.ts";
import { inceptionScore, MseMeter } from "../eval/recon.ts";
import { intraClassDiversity } from "../eval/ssim.ts";
import {
  disentanglerMig,
  type FactorClassifier,
  factorClassifier,
  gridSources,
  leakageProbe,
  realAccuracy,
  swapAccuracy,
  swapGrid,
  swapMetrics,
} from "../eval/swap.ts";
import {
  LrLiVae,
  LRLIVAE_VARIANTS,
  type LrLiVaeVariant,
  type StepLosses,
} from "../models/lrlivae.ts";
import { ParamStore } from "../nn/store.ts";
import { GpuRng } from "../ops/random.ts";
import { clearTape, noGrad } from "../ops/tape.ts";
import { Tensor } from "../ops/tensor.ts";
import { Rng } from "../util/rng.ts";
import { imageGrid } from "./png.ts";
import type { Config, Evaluation, Model, OptimizerSpec, Terms, Update } from "./task.ts";
import { defineTask } from "./task.ts";
import { dimsByKl, klPerDim, migPicks, type VaeData, vaeData, type VaeSplit } from "./vae_task.ts";

const flags = {
  data: {
    default: "shapes2.5d",
    shape: true,
    help: `data set: shapes2.5d, mnist or another labelled set (${
      LABELLED_SETS.filter((s) => s !== "shapes2.5d").join(", ")
    }) at a side 4·2^L`,
  },
  size: {
    default: 0,
    shape: true,
    help: "image side (0: shapes2.5d and procchairs 32 under the cpu preset, their own 64 under " +
      "gpu; mnist 32)",
  },
  label: {
    default: "object_hue",
    shape: true,
    help: "the labelled factor c (shapes2.5d: floor_hue, wall_hue, object_hue, scale, shape, " +
      "orientation; mnist: digit); the set's only factor when it has one",
  },
  variant: {
    default: "lrlivae",
    choices: LRLIVAE_VARIANTS,
    shape: true,
    help: "lrlivae (Zheng & Sun) or cvaegan (the §3.5 baseline: one encoder of x and one-hot y)",
  },
  zs: { default: 4, gpu: 64, min: 1, shape: true, help: "dims of the label-relevant code z_s" },
  zu: { default: 6, gpu: 64, min: 1, shape: true, help: "dims of the label-irrelevant code z_u" },
  base: {
    default: 8,
    gpu: 64,
    min: 1,
    shape: true,
    help: "channels of the first level (doubling per level, at most 8x; §3.4: 64; the cpu " +
      "default 8 gives the plain VAE's channels at 32 px)",
  },
  fc: { default: 128, gpu: 1024, min: 1, shape: true, help: "fully connected width F" },
  advHidden: {
    default: 64,
    gpu: 256,
    min: 1,
    shape: true,
    help: "hidden width of the latent classifier q_ω",
  },
  nGm: { default: 3, help: "GM updates of Enc_s and the mixture per end-to-end update (n_gm)" },
  lambdaLkd: { default: 0.1, real: true, help: "λ_lkd" },
  lambdaKl: { default: 0, real: true, help: "λ_kl (0: the paper's 10 / N_pixel)" },
  lambdaRec: { default: 0, real: true, help: "λ_rec of Enc_u's loss (0: the paper's 1 / d_u)" },
  gan: { default: true, help: "the label-conditioned pixel discriminator (--no-gan: off)" },
  beta1: { default: 0.5, real: true, help: "Adam β1 of every group (§8 Z5)" },
  beta2: { default: 0.999, real: true, help: "Adam β2 of every group" },
  trainLimit: { default: 0, help: "use only N training images (0: all)" },
  evalLimit: { default: 2000, gpu: 10000, min: 10, help: "test images for the evaluation" },
  probeLimit: {
    default: 2000,
    gpu: 10000,
    min: 10,
    help: "training images whose codes fit the leakage probes",
  },
  migSamples: { default: 10000, min: 1, help: "MIG estimator samples M (§5.1)" },
  swapPairs: { default: 1000, min: 1, help: "pairs scored for the swap accuracy" },
  genPerClass: {
    default: 100,
    gpu: 500,
    min: 1,
    help: "samples per class for the inception-like score (§3.7: 500 for CIFAR-10)",
  },
  divPerClass: {
    default: 40,
    gpu: 100,
    min: 2,
    help: "samples per class for the intra-class diversity (all pairs: n² MS-SSIMs per class)",
  },
};

/** The task's config: trainer flags and its own. */
export type LrLiVaeTaskConfig = Config<typeof flags>;

/** Codes of images and their factors, read back. */
export interface EncodedSet {
  n: number;
  /** ẑ_s [n, zs] (Lr-LiVAE). */
  zs?: Float32Array;
  /** Posterior means and log-variances of z_u (cVAE-GAN: of z), [n, codeDims]. */
  mu: Float32Array;
  logvar: Float32Array;
  /** Factors [n, factors]. */
  labels: Int32Array;
  /** MSE of the reconstructions from posterior means. */
  mse?: { mse01: number; mseSigned: number };
}

const CHUNK = 100;
/** Sweep values of a single-dim z_u traversal. */
const SWEEP = Array.from({ length: 11 }, (_, i) => -2.5 + 0.5 * i);
/** Steps α of the §3.3 interpolations. */
const ALPHAS = Array.from({ length: 10 }, (_, i) => i / 9);

/** Inpainting masks (1 = corrupted) on an S x S image: §3.3's halves, and the object's box. */
export function inpaintMasks(size: number): Record<string, Uint8Array> {
  const make = (f: (y: number, x: number) => boolean) => {
    const m = new Uint8Array(size * size);
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) m[y * size + x] = f(y, x) ? 1 : 0;
    return m;
  };
  // Shapes2.5D draws its object around (S/2, 0.68 S) with a base size up to 0.28 S.
  const c = size / 2, r = 0.22 * size, cy = 0.68 * size;
  return {
    right: make((_, x) => x >= size / 2),
    bottom: make((y) => y >= size / 2),
    centre: make((y, x) => Math.abs(x + 0.5 - c) < r && Math.abs(y + 0.5 - cy) < r),
  };
}

/** The model on a data set as the trainer drives it. */
export class LrLiVaeModel implements Model {
  readonly store: ParamStore;
  readonly model: LrLiVae;
  readonly noise: GpuRng;
  readonly examplesPerStep: number;
  readonly optimizers: Record<string, OptimizerSpec>;
  /** Column of the label in the data's factors, and its class count. */
  readonly labelCol: number;
  readonly classes: number;
  readonly variant: LrLiVaeVariant;
  readonly #evalPos: Uint32Array;
  /** GpuRng draws per step: z_u's ε, and with the GAN the prior's z'_u (and z'_s's ε). */
  readonly #draws: number;
  #step?: StepLosses;
  #classifier?: FactorClassifier;

  constructor(readonly cfg: LrLiVaeTaskConfig, readonly data: VaeData) {
    this.labelCol = labelColumn(data, cfg.label);
    this.classes = data.factors[this.labelCol].size;
    this.variant = cfg.variant as LrLiVaeVariant;
    this.store = new ParamStore(cfg.seed);
    this.model = new LrLiVae(this.store.scope(), {
      variant: this.variant,
      channels: data.channels,
      size: data.size,
      classes: this.classes,
      zs: cfg.zs,
      zu: cfg.zu,
      base: cfg.base,
      fc: cfg.fc,
      advHidden: cfg.advHidden,
      lambdaLkd: cfg.lambdaLkd,
      lambdaKl: cfg.lambdaKl || undefined,
      lambdaRec: cfg.lambdaRec || undefined,
      gan: cfg.gan,
      // At 32 px a Shapes2.5D pixel stands for four of its own 64 px (vae_task.ts's σ rule).
      pixelWeight: (data.nativeSize / data.size) ** 2,
    });
    const groups = this.variant === "lrlivae"
      ? ["encs", "encu", "advcls", "dec", "disc"]
      : ["enc", "dec", "disc"];
    // One Adam per group and loss: Algorithm 1 steps each group on its own loss, and Enc_s on two
    // (the GM stage's with the mixture, and its end-to-end one), each with its own moments as
    // separate optimizers have them (so the GM steps are not scaled by L_rec's gradients).
    const adam = { beta1: cfg.beta1, beta2: cfg.beta2 };
    this.optimizers = Object.fromEntries(groups.map((g) => [g, { groups: [g], ...adam }]));
    if (this.variant === "lrlivae") {
      this.optimizers.gm_stage = { groups: ["encs", "gm"], shared: true, ...adam };
    }
    this.noise = new GpuRng((cfg.seed * 2654435761 + 0x11a) % 2 ** 32);
    this.examplesPerStep = cfg.batch * (1 + (this.variant === "lrlivae" ? cfg.nGm : 0));
    this.#draws = 1 + (cfg.gan ? (this.variant === "lrlivae" ? 2 : 1) : 0);
    this.#evalPos = new Rng(0xe7a1).permutation(data.test.count).subarray(
      0,
      Math.min(cfg.evalLimit, data.test.count),
    );
  }

  describe(): string {
    const c = this.cfg, m = this.model;
    const name = this.variant === "lrlivae" ? "Lr-LiVAE" : "cVAE-GAN";
    return `${name} on ${this.data.name} ${this.data.channels}x${this.data.size}x${this.data.size}` +
      `, label ${this.data.factors[this.labelCol].name} (${this.classes} classes): ` +
      `z_s ${c.zs}, z_u ${c.zu}, channels [${m.chans}], FC ${c.fc}, ` +
      `λ_kl ${m.lambdaKl.toPrecision(3)}, λ_rec ${m.lambdaRec.toPrecision(3)}, ` +
      `λ_lkd ${m.lambdaLkd}, n_gm ${this.variant === "lrlivae" ? c.nGm : "-"}, ` +
      `GAN ${m.gan ? "on" : "off"}; ${this.store.count().toLocaleString("en")} parameters; ` +
      `batch ${c.batch}, ${c.steps} steps; ${this.data.train.count} images`;
  }

  /** Images of `split` at `pos` as a tensor, their labels and the floats. */
  #batch(split: VaeSplit, pos: ArrayLike<number>) {
    const b = split.batch(pos);
    const nf = this.data.factors.length, n = pos.length;
    const y = Int32Array.from({ length: n }, (_, i) => b.labels[i * nf + this.labelCol]);
    const s = this.data.size;
    return { x: Tensor.from(b.x, [n, this.data.channels, s, s]), y, xs: b.x, labels: b.labels };
  }

  #trainBatch(k: number) {
    const { idx } = batchIndices(this.data.train.count, this.cfg.batch, k, this.cfg.seed);
    return this.#batch(this.data.train, idx);
  }

  updates(step: number): Update[] {
    const out: Update[] = [];
    const lr = this.variant === "lrlivae";
    const per = 1 + (lr ? this.cfg.nGm : 0);
    if (lr) {
      for (let i = 0; i < this.cfg.nGm; i++) {
        out.push({
          optimizer: "gm_stage",
          run: () => {
            const { x, y } = this.#trainBatch(step * per + i);
            const l = this.model.gmLoss(x, y);
            return { loss: l.loss, terms: { gm_cls: l.cls, gm_lkd: l.lkd } };
          },
        });
      }
    }
    const groups = lr ? ["encs", "encu", "advcls", "dec", "disc"] : ["enc", "dec", "disc"];
    const used = this.model.gan ? groups : groups.filter((g) => g !== "disc");
    used.forEach((g, j) => {
      out.push({
        optimizer: g,
        retain: j < used.length - 1,
        run: () => {
          if (j === 0) {
            const { x, y } = this.#trainBatch(step * per + per - 1);
            // Only after a resume (or a skipped step) does the counter need an upload.
            const at = step * this.#draws;
            if (this.noise.counter !== at) this.noise.seek(at);
            this.#step = this.model.stepLosses(x, y, this.noise);
          }
          const u = this.#step!.updates[j];
          if (u.group !== g) {
            throw new Error(`flowgpu: lrlivae: update ${j} is ${u.group}, not ${g}`);
          }
          return { loss: u.loss, terms: j === 0 ? this.#step!.terms as Terms : undefined };
        },
      });
    });
    return out;
  }

  /** The fixed evaluation subset of the test split. */
  get evalPositions(): Uint32Array {
    return this.#evalPos;
  }

  /** Runs `f` with batch norm in running-statistics mode and no tape. */
  async #eval<T>(f: () => Promise<T>): Promise<T> {
    this.model.setTraining(false);
    try {
      return await f();
    } finally {
      this.model.setTraining(true);
      clearTape();
    }
  }

  /** Codes of `split` at `pos` (posterior means), and the MSE of their reconstructions. */
  encodeSet(split: VaeSplit, pos: ArrayLike<number>, withMse = true): Promise<EncodedSet> {
    return this.#eval(async () => {
      const n = pos.length, nf = this.data.factors.length;
      const dz = this.model.codeDims, ds = this.cfg.zs, lr = this.variant === "lrlivae";
      const out: EncodedSet = {
        n,
        zs: lr ? new Float32Array(n * ds) : undefined,
        mu: new Float32Array(n * dz),
        logvar: new Float32Array(n * dz),
        labels: new Int32Array(n * nf),
      };
      const meter = new MseMeter(true);
      for (let s = 0; s < n; s += CHUNK) {
        const part = Array.from(pos).slice(s, Math.min(n, s + CHUNK));
        const b = this.#batch(split, part);
        out.labels.set(b.labels, s * nf);
        const res = await noGrad(async () => {
          const c = this.model.encode(b.x, b.y);
          const ts = [c.mu, c.logvar, ...(c.zs ? [c.zs] : [])];
          if (withMse) ts.push(this.model.decode(c.zs, c.mu, b.y));
          return await Tensor.readAll(ts);
        });
        clearTape();
        out.mu.set(res[0], s * dz);
        out.logvar.set(res[1], s * dz);
        if (lr) out.zs!.set(res[2], s * ds);
        if (withMse) meter.add(b.xs, res[res.length - 1]);
      }
      if (withMse) out.mse = meter.result();
      return out;
    });
  }

  /** Images of codes (rows of z_s [n, zs] for Lr-LiVAE, z_u / z [n, codeDims], labels y). */
  decodeCodes(
    zs: Float32Array | undefined,
    zu: Float32Array,
    y: ArrayLike<number> | undefined,
  ): Promise<Float32Array> {
    return this.#eval(async () => {
      const dz = this.model.codeDims, ds = this.cfg.zs, n = zu.length / dz;
      const d = this.data.channels * this.data.size ** 2;
      const out = new Float32Array(n * d);
      for (let s = 0; s < n; s += CHUNK) {
        const m = Math.min(CHUNK, n - s);
        const u = Tensor.from(zu.subarray(s * dz, (s + m) * dz), [m, dz]);
        const z = zs ? Tensor.from(zs.subarray(s * ds, (s + m) * ds), [m, ds]) : undefined;
        const yy = y ? Array.from(y).slice(s, s + m) : undefined;
        out.set(await noGrad(() => this.model.decode(z, u, yy)).read(), s * d);
        clearTape();
      }
      return out;
    });
  }

  /** The mixture's means and standard deviations per class, [C, zs] each (Lr-LiVAE). */
  async mixture(): Promise<{ mu: Float32Array; sd: Float32Array }> {
    const [mu, lv] = await noGrad(() =>
      Tensor.readAll([this.model.gmMu!, this.model.gmLogvarFloored()])
    );
    clearTape();
    return { mu, sd: lv.map((v) => Math.exp(0.5 * v)) };
  }

  /**
   * Prior samples for labels y (§3.5): Lr-LiVAE z_s = μ_y + σ_y ε, z_u ~ N(0, I); cVAE-GAN
   * z ~ N(0, I) with one-hot y. Deterministic in `seed`.
   */
  async samples(y: ArrayLike<number>, seed: number): Promise<Float32Array> {
    const rng = new Rng(seed), n = y.length, dz = this.model.codeDims, ds = this.cfg.zs;
    const zu = rng.normalArray(n * dz);
    if (this.variant === "cvaegan") return await this.decodeCodes(undefined, zu, y);
    const { mu, sd } = await this.mixture();
    const zs = new Float32Array(n * ds);
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < ds; k++) {
        zs[i * ds + k] = mu[y[i] * ds + k] + sd[y[i] * ds + k] * rng.normal();
      }
    }
    return await this.decodeCodes(zs, zu, y);
  }

  /** Judge swaps and samples with `c` instead of swap.ts's cached FactorNet (tests). */
  useClassifier(c: FactorClassifier): void {
    this.#classifier = c;
  }

  /** The factor classifier of the data (swap.ts's FactorNet, cached), made once. */
  async classifier(): Promise<FactorClassifier> {
    this.#classifier ??= await factorClassifier(this.data);
    return this.#classifier;
  }

  async evaluate({ final }: { final: boolean }): Promise<Evaluation> {
    const pos = final
      ? this.#evalPos
      : this.#evalPos.subarray(0, Math.min(500, this.#evalPos.length));
    const e = await this.encodeSet(this.data.test, pos);
    const pixels = this.data.channels * this.data.size ** 2;
    const kl = klPerDim(e.mu, e.logvar, this.model.codeDims);
    const metrics: Record<string, number | string> = {
      variant: this.variant,
      label: this.data.factors[this.labelCol].name,
      mse_01: e.mse!.mse01,
      mse_pm1: e.mse!.mseSigned,
      test_rec: (e.mse!.mseSigned * pixels * this.model.pixelWeight) / 2,
      test_kl: kl.reduce((a, v) => a + v, 0),
      eval_images: e.n,
    };
    if (e.zs) metrics.gm_acc = await this.gmAccuracy(e);
    if (!final) return { metrics };
    Object.assign(metrics, await this.disentanglement(e));
    Object.assign(metrics, await this.leakage(e));
    const c = await this.classifier();
    metrics.classifier = c.description;
    const real = await realAccuracy(c, this.data, 2000);
    metrics.classifier_acc = real[this.labelCol];
    Object.assign(metrics, await this.swaps(e, c));
    Object.assign(metrics, await this.generation(c));
    const images: Record<string, Uint8Array> = {
      reconstructions: await this.reconGrid(),
      samples: await this.sampleGrid(),
      swap: await this.swapPanel(e),
      inpainting: await this.inpaintPanel(metrics),
      traversal_zs: await this.interpolation("zs"),
      traversal_zu: await this.interpolation("zu"),
    };
    const order = dimsByKl(kl);
    metrics.traversal_dims = order.join(",");
    for (let j = 0; j < Math.min(2, e.n); j++) {
      images[`traversal_dims_${j}`] = await this.dimTraversal(e, j, order);
    }
    return { metrics, images };
  }

  /** Share of ẑ_s whose GM posterior argmax is the label. */
  async gmAccuracy(e: EncodedSet): Promise<number> {
    const { mu, sd } = await this.mixture();
    const ds = this.cfg.zs, nf = this.data.factors.length;
    let ok = 0;
    for (let i = 0; i < e.n; i++) {
      let best = 0, bv = -Infinity;
      for (let c = 0; c < this.classes; c++) {
        let l = 0;
        for (let k = 0; k < ds; k++) {
          const s = sd[c * ds + k];
          l -= ((e.zs![i * ds + k] - mu[c * ds + k]) / s) ** 2 / 2 + Math.log(s);
        }
        if (l > bv) [bv, best] = [l, c];
      }
      if (best === e.labels[i * nf + this.labelCol]) ok++;
    }
    return ok / e.n;
  }

  /** MIG: §1.9's multi-encoder form (swap.ts) and the classic per-dim form on [z_s, z_u]. */
  async disentanglement(e: EncodedSet): Promise<Record<string, number | string>> {
    const factors = this.data.factors, nf = factors.length, dz = this.model.codeDims;
    const unknown = { mu: e.mu, logvar: e.logvar, dim: dz };
    const out = await disentanglerMig({
      unknown,
      labelled: e.zs
        ? [{
          factor: factors[this.labelCol].name,
          encoder: "zs",
          code: { mu: e.zs, dim: this.cfg.zs, noise: MIG_NOISE.labeled },
        }]
        : [],
      factors,
      labels: e.labels,
      samples: this.cfg.migSamples,
    });
    // The per-dim gap over one concatenated code, z_s with the labelled codes' σ = 0.02.
    const ds = e.zs ? this.cfg.zs : 0, dim = ds + dz;
    const mu = new Float32Array(e.n * dim), logvar = new Float32Array(e.n * dim);
    const lv0 = 2 * Math.log(MIG_NOISE.labeled);
    for (let i = 0; i < e.n; i++) {
      for (let k = 0; k < ds; k++) {
        mu[i * dim + k] = e.zs![i * ds + k];
        logvar[i * dim + k] = lv0;
      }
      mu.set(e.mu.subarray(i * dz, (i + 1) * dz), i * dim + ds);
      logvar.set(e.logvar.subarray(i * dz, (i + 1) * dz), i * dim + ds);
    }
    const r = await migGpu(
      [{ name: "z", mu, logvar, dim }],
      factors.map((f, k) => ({
        name: f.name,
        labels: factorLabels(e.labels, nf, k),
        encoder: "z",
      })),
      { samples: this.cfg.migSamples, seed: 1 },
    );
    const picks = migPicks(r.encoders[0].info.info, nf, dim);
    let all = 0;
    factors.forEach((f, k) => {
      out[`mig_concat_${f.name}`] = picks[k].gap;
      out[`mig_concat_${f.name}_dim`] = picks[k].dim;
      all += picks[k].gap;
    });
    out.mig_concat_all = all / nf;
    return out;
  }

  /** Leakage probes: the label from z_u (cVAE-GAN: z) and from ẑ_s, fitted on training codes. */
  async leakage(e: EncodedSet): Promise<Record<string, number>> {
    const n = Math.min(this.cfg.probeLimit, this.data.train.count);
    const pos = new Rng(0x9e0b).permutation(this.data.train.count).subarray(0, n);
    const t = await this.encodeSet(this.data.train, pos, false);
    const nf = this.data.factors.length;
    const col = (s: EncodedSet) =>
      Int32Array.from({ length: s.n }, (_, i) => s.labels[i * nf + this.labelCol]);
    const out: Record<string, number> = {};
    const u = leakageProbe(
      { codes: t.mu, labels: col(t) },
      { codes: e.mu, labels: col(e) },
      this.model.codeDims,
    );
    Object.assign(out, {
      leak_acc: u.accuracy,
      leak_norm: u.normalized,
      leak_chance: u.chance,
      leak_train_acc: u.trainAccuracy,
      leak_probe_n: u.trainCount,
    });
    if (e.zs) {
      const s = leakageProbe(
        { codes: t.zs!, labels: col(t) },
        { codes: e.zs, labels: col(e) },
        this.cfg.zs,
      );
      out.leak_zs_acc = s.accuracy;
    }
    return out;
  }

  /**
   * Swap renderer on encoded evaluation codes: the label code of a[k] with the rest of b[k]
   * (Lr-LiVAE: ẑ_s(a) with μ_u(b); cVAE-GAN: μ(b) with a's one-hot label).
   */
  renderer(e: EncodedSet): (a: Uint32Array, b: Uint32Array) => Promise<Float32Array> {
    const dz = this.model.codeDims, ds = this.cfg.zs, nf = this.data.factors.length;
    return async (a, b) => {
      const zu = new Float32Array(b.length * dz);
      b.forEach((j, k) => zu.set(e.mu.subarray(j * dz, (j + 1) * dz), k * dz));
      const y = Array.from(a, (i) => e.labels[i * nf + this.labelCol]);
      if (!e.zs) return await this.decodeCodes(undefined, zu, y);
      const zs = new Float32Array(a.length * ds);
      a.forEach((i, k) => zs.set(e.zs!.subarray(i * ds, (i + 1) * ds), k * ds));
      return await this.decodeCodes(zs, zu, y);
    };
  }

  async swaps(e: EncodedSet, c: FactorClassifier): Promise<Record<string, number>> {
    const r = await swapAccuracy({
      classifier: c,
      factor: this.labelCol,
      labels: e.labels,
      render: this.renderer(e),
      pairs: this.cfg.swapPairs,
    });
    return {
      ...swapMetrics({ [this.data.factors[this.labelCol].name]: r }),
      swap_chance: r.chance,
    };
  }

  /**
   * The ordering check of §6: `genPerClass` samples of every class scored by the classifier
   * (inception-like score of the label head, accuracy), and the intra-class diversity of the
   * first `divPerClass` of them.
   */
  async generation(c: FactorClassifier): Promise<Record<string, number | string>> {
    const g = this.cfg.genPerClass, k = this.classes, nf = this.data.factors.length;
    const y = Int32Array.from({ length: g * k }, (_, i) => Math.floor(i / g));
    const x = await this.samples(y, 0x15c0);
    if (!c.probabilities) {
      throw new Error("flowgpu: lrlivae: the classifier gives no probabilities");
    }
    const probs = await c.probabilities(x, y.length, this.labelCol);
    const pred = await c.predict(x, y.length);
    let ok = 0;
    for (let i = 0; i < y.length; i++) if (pred[i * nf + this.labelCol] === y[i]) ok++;
    const m = Math.min(this.cfg.divPerClass, g), d = this.data.channels * this.data.size ** 2;
    const sub = new Float32Array(k * m * d), ys = new Int32Array(k * m);
    for (let cl = 0; cl < k; cl++) {
      sub.set(x.subarray(cl * g * d, (cl * g + m) * d), cl * m * d);
      ys.fill(cl, cl * m, (cl + 1) * m);
    }
    const s = this.data.size;
    const div = intraClassDiversity(sub, [k * m, this.data.channels, s, s], ys, { signed: true });
    return {
      inception_score: inceptionScore(probs, k),
      sample_acc: ok / y.length,
      gen_per_class: g,
      div_all_pairs: div.allPairs,
      div_distinct_pairs: div.distinctPairs,
      div_per_class: m,
      div_variant: div.variant.label,
    };
  }

  #grid(px: Float32Array, n: number, cols: number): Promise<Uint8Array> {
    const s = this.data.size;
    return imageGrid(px, n, this.data.channels, s, s, cols, { range: [-1, 1] });
  }

  /** Rows of 8 test images, each above its reconstruction from posterior means. */
  async reconGrid(count = 32): Promise<Uint8Array> {
    const pos = this.#evalPos.subarray(0, Math.min(count, this.#evalPos.length));
    const e = await this.encodeSet(this.data.test, pos, false);
    const nf = this.data.factors.length;
    const y = Array.from({ length: e.n }, (_, i) => e.labels[i * nf + this.labelCol]);
    const xhat = await this.decodeCodes(e.zs, e.mu, y);
    const xs = this.data.test.batch(pos).x;
    const d = this.data.channels * this.data.size ** 2, cols = 8, rows = Math.ceil(e.n / cols);
    const px = new Float32Array(2 * rows * cols * d).fill(-1);
    for (let i = 0; i < e.n; i++) {
      const r = Math.floor(i / cols), c = i % cols;
      px.set(xs.subarray(i * d, (i + 1) * d), (2 * r * cols + c) * d);
      px.set(xhat.subarray(i * d, (i + 1) * d), ((2 * r + 1) * cols + c) * d);
    }
    return await this.#grid(px, 2 * rows * cols, cols);
  }

  /** One row per class (at most 10) of 10 prior samples. */
  async sampleGrid(): Promise<Uint8Array> {
    const k = Math.min(10, this.classes), per = 10;
    const y = Array.from({ length: k * per }, (_, i) => Math.floor(i / per));
    return await this.#grid(await this.samples(y, 0x5a3), k * per, per);
  }

  /** The swap grid: rows keep z_u (cVAE-GAN: z) of their image, columns give the label code. */
  async swapPanel(e: EncodedSet): Promise<Uint8Array> {
    const nf = this.data.factors.length;
    const col = Int32Array.from({ length: e.n }, (_, i) => e.labels[i * nf + this.labelCol]);
    const cols = gridSources(col, Math.min(10, this.classes), 2);
    const rows = gridSources(new Int32Array(e.n).map((_, i) => i), 8, 3);
    return await swapGrid({
      render: this.renderer(e),
      images: (p) => this.data.test.batch(Array.from(p, (i) => this.#evalPos[i])).x,
      rows,
      cols,
      channels: this.data.channels,
      size: this.data.size,
    });
  }

  /**
   * Inpainting (§3.3): corrupted pixels set to 0 (mid-grey), encoded, decoded, pasted back:
   * M ⊙ x' + (1 − M) ⊙ x. Per mask, rows of originals, corrupted inputs and results; adds the
   * MSE inside the mask ([0, 1] scale) to `metrics`.
   */
  async inpaintPanel(metrics: Record<string, number | string>, count = 8): Promise<Uint8Array> {
    const pos = this.#evalPos.subarray(0, Math.min(count, this.#evalPos.length));
    const n = pos.length, s = this.data.size, ch = this.data.channels, d = ch * s * s;
    const b = this.#batch(this.data.test, pos);
    const masks = inpaintMasks(s);
    const px = new Float32Array(Object.keys(masks).length * 3 * n * d);
    let row = 0;
    for (const [name, m] of Object.entries(masks)) {
      const bad = new Float32Array(b.xs);
      for (let i = 0; i < n; i++) {
        for (let c = 0; c < ch; c++) {
          for (let p = 0; p < s * s; p++) if (m[p]) bad[i * d + c * s * s + p] = 0;
        }
      }
      const enc = await this.#eval(async () => {
        const cds = noGrad(() => this.model.encode(Tensor.from(bad, b.x.shape), b.y));
        const out = await noGrad(() => this.model.decode(cds.zs, cds.mu, b.y)).read();
        return out;
      });
      const res = new Float32Array(b.xs);
      let se = 0, cnt = 0;
      for (let i = 0; i < n; i++) {
        for (let c = 0; c < ch; c++) {
          for (let p = 0; p < s * s; p++) {
            if (!m[p]) continue;
            const j = i * d + c * s * s + p;
            res[j] = enc[j];
            se += ((enc[j] - b.xs[j]) / 2) ** 2;
            cnt++;
          }
        }
      }
      metrics[`inpaint_mse_${name}`] = se / cnt;
      px.set(b.xs, row++ * n * d);
      px.set(bad, row++ * n * d);
      px.set(res, row++ * n * d);
    }
    return await this.#grid(px, row * n, n);
  }

  /**
   * §3.3 / Fig. 4 traversals, one row per class (at most 10), columns α = 0..1:
   * "zs": z_s = (α z1 + (1 − α) z2) ⊙ σ_c + μ_c with one z_u ~ N(0, I) for every cell;
   * "zu": one z_s ~ N(μ_c, σ²_c) per row, z_u = α z1 + (1 − α) z2. The cVAE-GAN interpolates
   * its whole code with the row's one-hot label (both kinds alike).
   */
  async interpolation(kind: "zs" | "zu"): Promise<Uint8Array> {
    const rng = new Rng(kind === "zs" ? 0x2a1 : 0x2a2);
    const k = Math.min(10, this.classes), na = ALPHAS.length, n = k * na;
    const dz = this.model.codeDims, ds = this.cfg.zs;
    const y = Array.from({ length: n }, (_, i) => Math.floor(i / na));
    const lerp = (dim: number) => {
      const z1 = rng.normalArray(dim), z2 = rng.normalArray(dim);
      return (a: number, out: Float32Array, o: number) => {
        for (let j = 0; j < dim; j++) out[o + j] = a * z1[j] + (1 - a) * z2[j];
      };
    };
    const zu = new Float32Array(n * dz);
    if (this.variant === "cvaegan") {
      const path = lerp(dz);
      for (let i = 0; i < n; i++) path(ALPHAS[i % na], zu, i * dz);
      return await this.#grid(await this.decodeCodes(undefined, zu, y), n, na);
    }
    const { mu, sd } = await this.mixture();
    const zs = new Float32Array(n * ds);
    if (kind === "zs") {
      const path = lerp(ds), fixed = rng.normalArray(dz), t = new Float32Array(ds);
      for (let i = 0; i < n; i++) {
        path(ALPHAS[i % na], t, 0);
        for (let j = 0; j < ds; j++) zs[i * ds + j] = t[j] * sd[y[i] * ds + j] + mu[y[i] * ds + j];
        zu.set(fixed, i * dz);
      }
    } else {
      const path = lerp(dz);
      for (let r = 0; r < k; r++) {
        const e = rng.normalArray(ds);
        for (let c = 0; c < na; c++) {
          const i = r * na + c;
          for (let j = 0; j < ds; j++) zs[i * ds + j] = mu[r * ds + j] + sd[r * ds + j] * e[j];
          path(ALPHAS[c], zu, i * dz);
        }
      }
    }
    return await this.#grid(await this.decodeCodes(zs, zu, y), n, na);
  }

  /**
   * Single-dim traversals (Fig. 5) of evaluation image j: one row per z_u dim (most KL first),
   * the image itself and then its code with that dim set to −2.5 .. 2.5.
   */
  async dimTraversal(e: EncodedSet, j: number, order: number[]): Promise<Uint8Array> {
    const dz = this.model.codeDims, ds = this.cfg.zs, k = SWEEP.length, rows = order.length;
    const nf = this.data.factors.length;
    const zu = new Float32Array(rows * k * dz);
    const zs = e.zs ? new Float32Array(rows * k * ds) : undefined;
    order.forEach((dim, r) => {
      for (let c = 0; c < k; c++) {
        const i = r * k + c;
        zu.set(e.mu.subarray(j * dz, (j + 1) * dz), i * dz);
        zu[i * dz + dim] = SWEEP[c];
        zs?.set(e.zs!.subarray(j * ds, (j + 1) * ds), i * ds);
      }
    });
    const y = new Array(rows * k).fill(e.labels[j * nf + this.labelCol]);
    const dec = await this.decodeCodes(zs, zu, y);
    const d = this.data.channels * this.data.size ** 2, cols = k + 1;
    const img = this.data.test.batch(this.#evalPos.subarray(j, j + 1)).x;
    const px = new Float32Array(rows * cols * d);
    for (let r = 0; r < rows; r++) {
      px.set(img, r * cols * d);
      px.set(dec.subarray(r * k * d, (r + 1) * k * d), (r * cols + 1) * d);
    }
    return await this.#grid(px, rows * cols, cols);
  }

  async preview(): Promise<Record<string, Uint8Array>> {
    return { reconstructions: await this.reconGrid(), samples: await this.sampleGrid() };
  }

  release(): void {
    this.noise.release();
    this.#classifier?.release();
  }
}

/** Column of the label factor; a set with one factor takes it whatever `--label` says. */
function labelColumn(data: VaeData, name: string): number {
  if (data.factors.length === 1) return 0;
  const k = data.factors.findIndex((f) => f.name === name);
  if (k < 0) {
    throw new Error(
      `flowgpu: lrlivae: --label ${name}: ${data.name} has no such factor (factors: ${
        data.factors.map((f) => f.name).join(", ")
      })`,
    );
  }
  return k;
}

/** Sets whose side is an option, with their own side. */
const SIZED = new Set(["shapes2.5d", "shapes2.5d-corr", "procchairs"]);

/** `--model lrlivae`: Zheng & Sun's label relevant/irrelevant VAE and the cVAE-GAN baseline. */
export const lrlivaeTask = defineTask({
  name: "lrlivae",
  summary: "label relevant/irrelevant VAE (Zheng & Sun) or --variant cvaegan on shapes2.5d: " +
    "MIG, leakage, swaps, IS / diversity, traversals, inpainting",
  flags,
  trainer: {
    steps: { default: 1200, gpu: 60000 },
    batch: { default: 32, gpu: 64 },
    // The paper's α = 5e-4 under gpu; the short cpu run learns faster at 1e-3.
    lr: { default: 1e-3, gpu: 5e-4 },
    warmup: { default: 50, gpu: 500 },
    out: { default: "runs/lrlivae", gpu: "runs/lrlivae-gpu" },
    sampleEvery: { default: 500, gpu: 5000 },
    checkpointEvery: { default: 250, gpu: 2500 },
    evalEvery: { default: 500, gpu: 10000 },
  },
  async build(cfg, mode): Promise<Model> {
    const size = cfg.size ||
      (SIZED.has(cfg.data) ? (cfg.preset === "gpu" ? 0 : 32) : cfg.data === "mnist" ? 32 : 0);
    const data = await vaeData(cfg.data, { size, trainLimit: cfg.trainLimit, mode });
    return new LrLiVaeModel(cfg, data);
  },
});

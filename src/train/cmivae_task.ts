// `--model cmivae`: the conditional-MI VAE of Tang et al. (vae-disentangle.md §2) on CMNIST-28
// (§4.2), with the foreground colour (f = RGB in [-1, 1], L_f2 through the frozen regressor f_φ)
// or the digit (f = one-hot, L_f1 through Q) as the specified feature (§8 T8); or, with
// `--data shapes2.5d`, on Shapes2.5D (§4.3, loaded as vae_task.ts loads it) with a labelled factor
// (`--label`, default object_hue) as a one-hot feature through L_f1, the digit's path. There the
// default code is z2 4 + z1 6 (the plain VAE's 10 latents, Lr-LiVAE's z_s 4 + z_u 6) at width 8,
// and f_φ is left out unless --lf asks for L_f2: with L_f1 alone nothing needs it.
//
// Steps 0..fphi-steps-1 train f_φ alone on real images (group fphi); then fphi is frozen and each
// step runs two updates: the encoders, G and Q on L = L_VAE + λ3 L_f + λ4 L_GAN (optimizer main),
// then D on L_D (optimizer disc) with the pairs the main update just made, copied aside on the GPU
// so that D's update needs no second generator pass (as the usual "fake.detach()" GAN step).
//
// Evaluation (src/eval/swap.ts, shared by the issue-10 models): reconstruction MSE from posterior
// means; the §1.9 MIG with z2 as the specified factor's code and z1 as the "unknown" code (mig_lab
// = the specified factor's gap, mig_all over every factor); attribute-swap accuracy of
// G(μ1(B), μ2(f(A))) judged by a FactorNet trained on the set's real images; the leakage probe
// from μ1 to the specified factor on held-out codes (and to every other factor, probe_z1_<f>);
// f_φ's reading of the swaps (where there is an f_φ); for colour the analytic colour estimate of
// §4.2 against A's true colour; the swap grid and reconstructions as PNGs.
import { batchIndices } from "../data/batches.ts";
import { estimateColour, hueBin } from "../data/cmnist.ts";
import {
  type Factor,
  factorLabels,
  hash3,
  type LabelledSet,
  labelledSet,
} from "../data/labelled.ts";
import { copyBuffer } from "../gpu/encoder.ts";
import { MseMeter } from "../eval/recon.ts";
import {
  disentanglerMig,
  type FactorClassifier,
  factorClassifier,
  gridSources,
  leakageProbe,
  swapAccuracy,
  type SwapData,
  swapGrid,
  swapMetrics,
} from "../eval/swap.ts";
import { type CmiTerms, CmiVae, derangement } from "../models/cmivae.ts";
import { ParamStore } from "../nn/store.ts";
import { GpuRng } from "../ops/random.ts";
import { clearTape, noGrad } from "../ops/tape.ts";
import { Tensor } from "../ops/tensor.ts";
import { Rng } from "../util/rng.ts";
import { imageGrid } from "./png.ts";
import {
  type Config,
  defineTask,
  type Evaluation,
  type Model,
  type OptimizerSpec,
  type Terms,
  type Update,
} from "./task.ts";
import { vaeData } from "./vae_task.ts";

/** Data sets the task trains on. */
const DATA = ["cmnist28", "shapes2.5d"] as const;

const flags = {
  data: {
    default: "cmnist28",
    choices: DATA,
    shape: true,
    help: "data set: cmnist28 (feature --feature) or shapes2.5d (feature: the factor --label)",
  },
  size: {
    default: 0,
    shape: true,
    help: "image side (0: cmnist28 28; shapes2.5d 32 under the cpu preset, its own 64 under gpu)",
  },
  feature: {
    default: "colour",
    choices: ["colour", "digit"],
    shape: true,
    help: "cmnist28's specified feature f(x): colour (foreground RGB, L_f2) or digit (one-hot, " +
      "L_f1)",
  },
  label: {
    default: "object_hue",
    shape: true,
    help: "shapes2.5d's specified factor, one-hot through L_f1 (floor_hue, wall_hue, object_hue, " +
      "scale, shape, orientation)",
  },
  z1: {
    default: 0,
    shape: true,
    help: "dims of z1, the image code (0: 16 on cmnist28, 6 on shapes2.5d)",
  },
  z2: {
    default: 0,
    shape: true,
    help: "dims of z2, the feature code (0: 4 colour, 8 digit, 4 on shapes2.5d)",
  },
  width: {
    default: 0,
    gpu: 32,
    shape: true,
    help: "channel scale: §2.3's channels and FC widths times width/32 (32: the spec's; 0: 16 " +
      "on cmnist28, 8 on shapes2.5d, the plain VAE's)",
  },
  lf: {
    default: "auto",
    choices: ["auto", "f1", "f2", "both"],
    shape: true,
    help: "conditional-MI terms: L_f1 (Q on z1, x̂; adds group q), L_f2 (frozen f_φ), both; " +
      "auto: f2 for colour, f1 for digit",
  },
  lambda1: { default: 1, real: true, help: "weight of KL(q(z1|x) || N(0, I))" },
  lambda2: { default: 1, real: true, help: "weight of KL(q(z2|f(x)) || N(0, I))" },
  lambda3: {
    default: -1,
    real: true,
    min: -1,
    help: "weight of L_f (-1: 10 for L_f2 on colour, 1 otherwise)",
  },
  lambda4: {
    default: 0.1,
    real: true,
    shape: true,
    help: "weight of the generator's GAN loss (0: no discriminator)",
  },
  dReal: {
    default: "recon",
    choices: ["recon", "data"],
    help: "D's real pair (z2, ·): the reconstruction x' (the paper, literally) or the image x",
  },
  dLrScale: { default: 1, real: true, help: "D's learning rate relative to --lr" },
  fphiSteps: {
    default: 300,
    gpu: 2000,
    help: "steps that train f_φ (the frozen regressor/classifier of the feature) first " +
      "(none on shapes2.5d with L_f1 alone, which has no f_φ)",
  },
  trainLimit: { default: 0, help: "use only N training images (0: all)" },
  evalLimit: { default: 2000, gpu: 10000, min: 2, help: "test images for the evaluation" },
  probeTrain: {
    default: 2000,
    gpu: 10000,
    min: 2,
    help: "training images whose μ1 fit the leakage probe",
  },
  swapPairs: { default: 1000, gpu: 5000, min: 1, help: "pairs scored for swap accuracy" },
  judgeSteps: {
    default: 2000,
    min: 1,
    help: "training steps of the swap judge (swap.ts's FactorNet on the set's real images, cached)",
  },
  migSamples: { default: 10000, min: 1, help: "MIG estimator samples M per code dim (§5.1)" },
};

/** The task's config: trainer flags and its own. */
export type CmiVaeTaskConfig = Config<typeof flags>;

/** A split by position: images, factors and (CMNIST-28) the foreground colour of each image. */
export interface CmiSplit {
  count: number;
  /** Images in [-1, 1], factors [n, factors] and foreground RGB in [0, 1], [n, 3] (CMNIST-28). */
  batch(pos: ArrayLike<number>): { x: Float32Array; labels: Int32Array; rgb?: Float32Array };
}

/** The task's data: a SwapData whose CMNIST-28 splits also give the colour. */
export interface CmiData extends SwapData {
  train: CmiSplit;
  test: CmiSplit;
  /** The side the set is made for (Shapes2.5D: 64 at any side). */
  nativeSize: number;
}

function split(set: LabelledSet, which: "train" | "test", limit: number): CmiSplit {
  let idx = set.split(which);
  if (limit && limit < idx.length) {
    const perm = new Rng(0xc31 + (which === "test" ? 1 : 0)).permutation(idx.length);
    idx = Uint32Array.from(perm.subarray(0, limit), (p) => idx[p]).sort();
  }
  const all = idx, nv = set.values.length;
  return {
    count: all.length,
    batch(pos) {
      const b = set.batch(Array.from(pos, (p) => all[p]));
      const rgb = new Float32Array(b.n * 3);
      // fg_r, fg_g, fg_b lead CMNIST's value columns.
      for (let i = 0; i < b.n; i++) rgb.set(b.values.subarray(i * nv, i * nv + 3), i * 3);
      return { x: b.x, labels: b.factors, rgb };
    },
  };
}

/** CMNIST-28 with both MNIST splits; `trainLimit` keeps a seeded subset of the training images. */
export async function cmiData(trainLimit = 0): Promise<CmiData> {
  const set = await labelledSet("cmnist28");
  if (set.values.slice(0, 3).join() !== "fg_r,fg_g,fg_b") {
    throw new Error(`flowgpu: cmivae: ${set.name} lacks the fg_r, fg_g, fg_b value columns`);
  }
  return {
    name: set.name,
    channels: set.channels,
    size: set.height,
    nativeSize: set.height,
    factors: set.factors,
    train: split(set, "train", trainLimit),
    test: split(set, "test", 0),
  };
}

/**
 * The task's data set: CMNIST-28 (`cmiData`) or Shapes2.5D through vae_task.ts's `vaeData` at
 * `size` (0: 32 under the cpu preset, 64 under gpu).
 */
export async function cmiDataOf(
  name: string,
  opts: { size?: number; trainLimit?: number; preset?: string } = {},
): Promise<CmiData> {
  const size = opts.size ?? 0, limit = opts.trainLimit ?? 0;
  if (name === "cmnist28") {
    if (size && size !== 28) throw new Error(`flowgpu: cmivae: cmnist28 is 28 px, not ${size}`);
    return await cmiData(limit);
  }
  if (name !== "shapes2.5d") {
    throw new Error(`flowgpu: cmivae: unknown data set '${name}' (known: ${DATA.join(", ")})`);
  }
  return await vaeData(name, {
    size: size || (opts.preset === "gpu" ? 0 : 32),
    trainLimit: limit,
  });
}

const CHUNK = 200;
/** Random streams per step (hash3's stream argument). */
const STREAM = { perm: 1 } as const;

/** The feature is CMNIST-28's foreground colour. */
function isColour(cfg: CmiVaeTaskConfig): boolean {
  return cfg.data === "cmnist28" && cfg.feature === "colour";
}

/** The conditional-MI terms on (auto: L_f2 for the colour, L_f1 for a one-hot). */
function termsOf(cfg: CmiVaeTaskConfig): CmiTerms {
  return cfg.lf === "auto" ? (isColour(cfg) ? "f2" : "f1") : cfg.lf as CmiTerms;
}

/**
 * Whether the model has f_φ: L_f2 needs it; on CMNIST-28 it also reads the fusions with L_f1
 * alone, on Shapes2.5D it is left out then.
 */
export function usesFphi(cfg: CmiVaeTaskConfig): boolean {
  return cfg.data === "cmnist28" || termsOf(cfg) !== "f1";
}

/** The conditional-MI VAE on CMNIST-28 or Shapes2.5D, as the trainer drives it. */
export class CmiVaeModel implements Model {
  readonly store: ParamStore;
  readonly cmi: CmiVae;
  readonly optimizers: Record<string, OptimizerSpec>;
  readonly noise: GpuRng;
  readonly examplesPerStep: number;
  /** Column of the specified factor and of the kept one (the swap grid's rows). */
  readonly spec: number;
  readonly kept: number;
  /** The feature is CMNIST-28's RGB colour (else a one-hot of the specified factor). */
  readonly colour: boolean;
  /** Steps of f_φ's own stage (0 where there is no f_φ). */
  readonly fphiSteps: number;
  readonly #evalPos: Uint32Array;
  /** D's pairs of the last main update, real rows first: codes [2B, d2] and images. */
  #pairs?: { z: Tensor; x: Tensor };

  constructor(readonly cfg: CmiVaeTaskConfig, readonly data: CmiData) {
    const shapes = cfg.data === "shapes2.5d";
    const colour = this.colour = isColour(cfg);
    if (shapes) {
      this.spec = factorColumn(data.factors, cfg.label);
      // The swap grid's rows spread over another factor: the object's shape shows at any side.
      this.kept = factorColumn(data.factors, cfg.label === "shape" ? "object_hue" : "shape");
    } else {
      this.spec = factorColumn(data.factors, colour ? "hue" : "digit");
      this.kept = factorColumn(data.factors, colour ? "digit" : "hue");
    }
    const terms = termsOf(cfg);
    this.store = new ParamStore(cfg.seed);
    this.cmi = new CmiVae(this.store.scope(), {
      channels: data.channels,
      size: data.size,
      feature: colour ? 3 : data.factors[this.spec].size,
      categorical: !colour,
      z1: cfg.z1 || (shapes ? 6 : 16),
      z2: cfg.z2 || (shapes || colour ? 4 : 8),
      width: cfg.width || (shapes ? 8 : 16),
      lambda1: cfg.lambda1,
      lambda2: cfg.lambda2,
      lambda3: cfg.lambda3 >= 0 ? cfg.lambda3 : colour && terms !== "f1" ? 10 : 1,
      lambda4: cfg.lambda4,
      terms,
      fphi: usesFphi(cfg),
      // At 32 px a Shapes2.5D pixel stands for four of its own 64 px (lrlivae_task.ts's rule).
      pixelWeight: (data.nativeSize / data.size) ** 2,
    });
    this.fphiSteps = this.cmi.fphi ? cfg.fphiSteps : 0;
    // §2.3: Adam β = (0.5, 0.999) for the adversarial pair; f_φ is a plain regression.
    this.optimizers = {
      ...(this.cmi.fphi ? { fphi: { groups: ["fphi"] } } : {}),
      main: { groups: this.cmi.mainGroups, beta1: 0.5 },
      ...(this.cmi.disc ? { disc: { groups: ["disc"], beta1: 0.5, lrScale: cfg.dLrScale } } : {}),
    };
    this.noise = new GpuRng((cfg.seed * 2654435761) % 2 ** 32);
    this.examplesPerStep = cfg.batch;
    this.#evalPos = new Rng(0xe7a1).permutation(data.test.count)
      .subarray(0, Math.min(cfg.evalLimit, data.test.count));
  }

  describe(): string {
    const c = this.cfg, m = this.cmi, d = this.data;
    const groups = this.store.groups().map((g) => `${g.name} ${g.count().toLocaleString("en")}`);
    const feature = c.data === "cmnist28" ? c.feature : `${d.factors[this.spec].name} (one-hot)`;
    return `conditional-MI VAE on ${d.name} ${d.channels}x${d.size}x${d.size}, feature ${feature} (${
      m.terms === "both" ? "L_f1 + L_f2" : `L_${m.terms}`
    }, λ = ${
      m.lambda.join("/")
    }, pixel weight ${m.pixelWeight}), z1 ${m.cfg.z1}, z2 ${m.cfg.z2}, ` +
      `width ${m.cfg.width}; parameters ${groups.join(", ")}; ${
        m.fphi ? `f_φ ${this.fphiSteps} steps, then ` : "no f_φ; "
      }${c.steps - this.fphiSteps} steps; batch ${c.batch}; ${d.train.count} training images`;
  }

  /**
   * G's output bias starts at atanh of the training images' mean per channel: CMNIST is mostly
   * black (-1), which a zero bias behind the tanh takes hundreds of steps to reach. The images are
   * a seeded random 512: in Shapes2.5D's index order the first 4,800 share a red floor and wall.
   */
  init(): void {
    const count = this.data.train.count;
    const pos = new Rng(0x1b1a).permutation(count).subarray(0, Math.min(512, count));
    const { x } = this.data.train.batch(pos);
    const c = this.data.channels, plane = this.data.size ** 2;
    const bias = new Float32Array(c);
    for (let i = 0; i < x.length; i++) bias[Math.floor(i / plane) % c] += x[i] / (x.length / c);
    this.cmi.gen.convt2.b!.write(bias.map((m) => Math.atanh(Math.min(0.95, Math.max(-0.95, m)))));
  }

  /** The feature f(x) rows of a batch: 2 RGB − 1, or one-hot of the specified factor. */
  features(labels: Int32Array, rgb: Float32Array | undefined, n: number): Float32Array {
    if (this.colour) {
      if (!rgb) throw new Error("flowgpu: cmivae: the colour feature needs the images' RGB");
      return rgb.map((v) => 2 * v - 1);
    }
    const nf = this.data.factors.length, k = this.data.factors[this.spec].size;
    const f = new Float32Array(n * k);
    for (let b = 0; b < n; b++) f[b * k + labels[b * nf + this.spec]] = 1;
    return f;
  }

  #batch(step: number) {
    const { idx } = batchIndices(this.data.train.count, this.cfg.batch, step, this.cfg.seed);
    const b = this.data.train.batch(idx);
    const n = idx.length, nf = this.data.factors.length;
    const s = this.data.size;
    const classes = Int32Array.from({ length: n }, (_, i) => b.labels[i * nf + this.spec]);
    const f = this.features(b.labels, b.rgb, n);
    return {
      x: Tensor.from(b.x, [n, this.data.channels, s, s]),
      f: Tensor.from(f, [n, f.length / n]),
      classes,
    };
  }

  updates(step: number): Update[] {
    const fphi = this.cmi.fphi ? this.store.group("fphi") : undefined;
    if (fphi && step < this.fphiSteps) {
      fphi.frozen = false;
      return [{
        optimizer: "fphi",
        run: () => {
          const b = this.#batch(step);
          const loss = this.cmi.featureLoss(b.x, b.f, b.classes);
          return { loss, terms: { fphi_loss: loss } };
        },
      }];
    }
    if (fphi) fphi.frozen = true;
    const ups: Update[] = [{ optimizer: "main", run: () => this.#main(step) }];
    if (this.cmi.disc) {
      ups.push({
        optimizer: "disc",
        run: () => {
          const { z, x } = this.#pairs!;
          const loss = this.cmi.discLoss(z, x);
          return { loss, terms: { d_loss: loss } };
        },
      });
    }
    return ups;
  }

  #main(step: number): { loss: Tensor; terms: Terms } {
    const b = this.#batch(step);
    const perm = derangement(this.cfg.batch, new Rng(hash3(this.cfg.seed, step, STREAM.perm)));
    // Two draws per step (z1, z2): after a resume the counter is put back where it was.
    if (this.noise.counter !== 2 * step) this.noise.seek(2 * step);
    const l = this.cmi.loss({ ...b, perm }, this.noise);
    if (this.cmi.disc) this.#keepPairs(this.cfg.dReal === "data" ? b.x : l.recons, l);
    const terms: Terms = { loss: l.loss, recon: l.recon, kl1: l.kl1, kl2: l.kl2 };
    if (l.lf1) terms.lf1 = l.lf1;
    if (l.lf2) terms.lf2 = l.lf2;
    if (l.gan) terms.gan = l.gan;
    return { loss: l.loss, terms };
  }

  /** Copy D's pairs (real: (z2, real), fake: (z̃2, x̂)) into buffers that outlive the tape. */
  #keepPairs(real: Tensor, l: { z2: Tensor; z2t: Tensor; fusions: Tensor }): void {
    const n = real.shape[0];
    if (!this.#pairs) {
      this.#pairs = {
        z: Tensor.persistent([2 * n, l.z2.shape[1]], "cmivae D codes"),
        x: Tensor.persistent([2 * n, ...real.shape.slice(1)], "cmivae D images"),
      };
    }
    const { z, x } = this.#pairs;
    const copy = (src: Tensor, dst: Tensor, at: number) =>
      copyBuffer(src.buffer, dst.buffer, src.size * 4, src.offset * 4, at * src.size * 4);
    copy(l.z2, z, 0);
    copy(l.z2t, z, 1);
    copy(real, x, 0);
    copy(l.fusions, x, 1);
  }

  /** Posterior means (and log-variances) of images at `pos` of `split`, in chunks, no tape. */
  async encode(
    split: CmiSplit,
    pos: ArrayLike<number>,
    opts: { meter?: MseMeter } = {},
  ): Promise<{ mu1: Float32Array; lv1: Float32Array; mu2: Float32Array; lv2: Float32Array }> {
    const n = pos.length, d1 = this.cmi.cfg.z1, d2 = this.cmi.cfg.z2, s = this.data.size;
    const out = {
      mu1: new Float32Array(n * d1),
      lv1: new Float32Array(n * d1),
      mu2: new Float32Array(n * d2),
      lv2: new Float32Array(n * d2),
    };
    for (let at = 0; at < n; at += CHUNK) {
      const part = Array.from(pos).slice(at, Math.min(n, at + CHUNK)), m = part.length;
      const b = split.batch(part);
      const f = this.features(b.labels, b.rgb, m);
      const x = Tensor.from(b.x, [m, this.data.channels, s, s]);
      const r = await noGrad(async () => {
        const q1 = this.cmi.enc1.apply(x),
          q2 = this.cmi.enc2.apply(Tensor.from(f, [m, f.length / m]));
        const ts = [q1.mu, q1.logvar, q2.mu, q2.logvar];
        if (opts.meter) ts.push(this.cmi.generate(q1.mu, q2.mu));
        return await Tensor.readAll(ts);
      });
      clearTape();
      out.mu1.set(r[0], at * d1);
      out.lv1.set(r[1], at * d1);
      out.mu2.set(r[2], at * d2);
      out.lv2.set(r[3], at * d2);
      opts.meter?.add(b.x, r[4]);
    }
    return out;
  }

  /** G(mu1 rows, mu2 rows) for pairs of row indices, [n, C, S, S] in (-1, 1). */
  async render(
    mu1: Float32Array,
    mu2: Float32Array,
    rows1: ArrayLike<number>,
    rows2: ArrayLike<number>,
  ): Promise<Float32Array> {
    const d1 = this.cmi.cfg.z1, d2 = this.cmi.cfg.z2, n = rows1.length;
    const pix = this.data.channels * this.data.size ** 2;
    const out = new Float32Array(n * pix);
    for (let at = 0; at < n; at += CHUNK) {
      const m = Math.min(CHUNK, n - at);
      const z1 = new Float32Array(m * d1), z2 = new Float32Array(m * d2);
      for (let k = 0; k < m; k++) {
        z1.set(mu1.subarray(rows1[at + k] * d1, (rows1[at + k] + 1) * d1), k * d1);
        z2.set(mu2.subarray(rows2[at + k] * d2, (rows2[at + k] + 1) * d2), k * d2);
      }
      const img = await noGrad(() =>
        this.cmi.generate(Tensor.from(z1, [m, d1]), Tensor.from(z2, [m, d2]))
      ).read();
      clearTape();
      out.set(img, at * pix);
    }
    return out;
  }

  /** f_φ on images [n, C, S, S]: [n, feature] outputs. */
  async fphi(x: Float32Array, n: number): Promise<Float32Array> {
    const net = this.cmi.fphi;
    if (!net) throw new Error("flowgpu: cmivae: this model has no f_φ");
    const s = this.data.size, pix = this.data.channels * s * s, k = this.cmi.cfg.feature;
    const out = new Float32Array(n * k);
    for (let at = 0; at < n; at += CHUNK) {
      const m = Math.min(CHUNK, n - at);
      const xt = Tensor.from(x.subarray(at * pix, (at + m) * pix), [m, this.data.channels, s, s]);
      out.set(await noGrad(() => net.apply(xt)).read(), at * k);
      clearTape();
    }
    return out;
  }

  async evaluate({ final }: { final: boolean }): Promise<Evaluation> {
    this.cmi.training = false;
    try {
      return await this.#evaluate(final);
    } finally {
      this.cmi.training = true;
    }
  }

  async #evaluate(final: boolean): Promise<Evaluation> {
    const pos = this.#evalPos, n = pos.length, nf = this.data.factors.length;
    const meter = new MseMeter(true);
    const e = await this.encode(this.data.test, pos, { meter });
    const mse = meter.result();
    const ev = this.data.test.batch(pos);
    const metrics: Record<string, number | string> = {
      mse_01: mse.mse01,
      mse_pm1: mse.mseSigned,
      test_kl1: meanKl(e.mu1, e.lv1, n),
      test_kl2: meanKl(e.mu2, e.lv2, n),
      eval_images: n,
    };
    const specName = this.data.factors[this.spec].name;
    metrics.specified = specName;
    if (this.cmi.fphi) {
      // Fusions of every evaluation image with a fixed partner: f_φ's and the colour reading.
      const partner = derangement(n, new Rng(0x5a1));
      const ident = Uint32Array.from({ length: n }, (_, i) => i);
      const fused = await this.render(e.mu1, e.mu2, ident, partner);
      Object.assign(metrics, await this.#featureReadings(fused, ev, partner, n));
    }
    if (!final) return { metrics };

    const judge = await this.judge();
    try {
      metrics.judge = judge.description;
      const swap = await swapAccuracy({
        classifier: judge,
        factor: this.spec,
        labels: ev.labels,
        render: (a, b) => this.render(e.mu1, e.mu2, b, a),
        pairs: this.cfg.swapPairs,
      });
      Object.assign(metrics, swapMetrics({ [specName]: swap }));
      metrics.swap_chance = swap.chance;
      this.data.factors.forEach((f, k) => {
        metrics[`judge_real_acc_${f.name}`] = judge.testAccuracy[k];
      });
    } finally {
      judge.release();
    }

    Object.assign(
      metrics,
      await disentanglerMig({
        unknown: { mu: e.mu1, logvar: e.lv1, dim: this.cmi.cfg.z1 },
        labelled: [{
          factor: specName,
          encoder: "z2",
          code: { mu: e.mu2, logvar: e.lv2, dim: this.cmi.cfg.z2 },
        }],
        factors: this.data.factors,
        labels: ev.labels,
        samples: this.cfg.migSamples,
      }),
    );
    metrics.mig_spec = metrics[`mig_${specName}`];

    // Leakage: μ1 of held-out training images fit the probe, the evaluation images score it.
    const probePos = new Rng(0x9b0).permutation(this.data.train.count)
      .subarray(0, Math.min(this.cfg.probeTrain, this.data.train.count));
    const tr = await this.encode(this.data.train, probePos);
    const trLabels = this.data.train.batch(probePos).labels;
    const col = (l: Int32Array, k: number) => factorLabels(l, nf, k);
    // The specified factor (leak_*), and every other factor, which z1 should hold (probe_z1_*).
    const probes: [number, string][] = [[this.spec, "leak"]];
    this.data.factors.forEach((f, k) => k !== this.spec && probes.push([k, `probe_z1_${f.name}`]));
    for (const [k, key] of probes) {
      const r = leakageProbe(
        { codes: tr.mu1, labels: col(trLabels, k) },
        { codes: e.mu1, labels: col(ev.labels, k) },
        this.cmi.cfg.z1,
      );
      metrics[`${key}_acc`] = r.accuracy;
      metrics[`${key}_chance`] = r.chance;
      // (accuracy − chance) / (1 − chance), as Lr-LiVAE's and DisUnknown's leak_*_norm.
      metrics[`${key}_norm`] = r.normalized;
    }
    return { metrics, images: await this.images(e, ev.labels) };
  }

  /** What f_φ (and, for colour, the analytic estimate of §4.2) read from the fusions. */
  async #featureReadings(
    fused: Float32Array,
    ev: { x: Float32Array; labels: Int32Array; rgb?: Float32Array },
    partner: Uint32Array,
    n: number,
  ): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    const nf = this.data.factors.length, s = this.data.size;
    const pred = await this.fphi(fused, n);
    const real = await this.fphi(ev.x, n);
    if (!this.colour) {
      const k = this.cmi.cfg.feature;
      const argmax = (p: Float32Array, i: number) => {
        let best = 0;
        for (let j = 1; j < k; j++) if (p[i * k + j] > p[i * k + best]) best = j;
        return best;
      };
      let swap = 0, self = 0, ok = 0;
      for (let i = 0; i < n; i++) {
        const d = argmax(pred, i);
        if (d === ev.labels[partner[i] * nf + this.spec]) swap++;
        if (d === ev.labels[i * nf + this.spec]) self++;
        if (argmax(real, i) === ev.labels[i * nf + this.spec]) ok++;
      }
      out.fphi_swap_acc = swap / n;
      out.fphi_swap_ignored = self / n;
      out.fphi_real_acc = ok / n;
      return out;
    }
    // Colour: mean absolute error per channel on [0, 1] against the partner's true colour.
    const rgbs = ev.rgb!;
    let swap = 0, self = 0, realErr = 0, est = 0, estHue = 0;
    const pix = 3 * s * s, img = new Float32Array(pix);
    for (let i = 0; i < n; i++) {
      const j = partner[i];
      for (let c = 0; c < 3; c++) {
        const p = (pred[i * 3 + c] + 1) / 2;
        swap += Math.abs(p - rgbs[j * 3 + c]) / (3 * n);
        self += Math.abs(p - rgbs[i * 3 + c]) / (3 * n);
        realErr += Math.abs((real[i * 3 + c] + 1) / 2 - rgbs[i * 3 + c]) / (3 * n);
      }
      for (let p = 0; p < pix; p++) img[p] = (fused[i * pix + p] + 1) / 2;
      const rgb = estimateColour(img, s, s);
      for (let c = 0; c < 3; c++) est += Math.abs(rgb[c] - rgbs[j * 3 + c]) / (3 * n);
      if (hueBin(rgbHue(rgb)) === ev.labels[j * nf + this.spec]) estHue += 1 / n;
    }
    out.fphi_swap_err = swap;
    out.fphi_swap_err_own = self;
    out.fphi_real_err = realErr;
    out.colour_swap_err = est;
    out.colour_swap_hue_acc = estHue;
    return out;
  }

  /**
   * The swap judge: swap.ts's FactorNet on the set's real images (every training image, so that
   * runs with and without --train-limit share one cached judge), cached.
   */
  async judge(): Promise<FactorClassifier> {
    const c = this.cfg;
    const full = c.trainLimit > 0
      ? await cmiDataOf(c.data, { size: this.data.size, preset: c.preset })
      : this.data;
    return await factorClassifier(full, { steps: c.judgeSteps });
  }

  /** The swap grid (rows keep z1, columns give z2) and reconstructions. */
  async images(
    e: { mu1: Float32Array; mu2: Float32Array },
    labels: Int32Array,
  ): Promise<Record<string, Uint8Array>> {
    const nf = this.data.factors.length, n = labels.length / nf;
    const col = (k: number) => Int32Array.from({ length: n }, (_, i) => labels[i * nf + k]);
    const pos = this.#evalPos;
    const images = (p: Uint32Array) => this.data.test.batch(Array.from(p, (i) => pos[i])).x;
    const grid = await swapGrid({
      render: (a, b) => this.render(e.mu1, e.mu2, b, a),
      images,
      rows: gridSources(col(this.kept), 8, 3),
      cols: gridSources(col(this.spec), 8, 4),
      channels: this.data.channels,
      size: this.data.size,
    });
    const m = Math.min(32, n), ident = Uint32Array.from({ length: m }, (_, i) => i);
    const rec = await this.render(e.mu1, e.mu2, ident, ident);
    const real = images(ident);
    const d = this.data.channels * this.data.size ** 2, cols = 8;
    const px = new Float32Array(2 * Math.ceil(m / cols) * cols * d).fill(-1);
    for (let i = 0; i < m; i++) {
      const r = Math.floor(i / cols), c = i % cols;
      px.set(real.subarray(i * d, (i + 1) * d), (2 * r * cols + c) * d);
      px.set(rec.subarray(i * d, (i + 1) * d), ((2 * r + 1) * cols + c) * d);
    }
    const s = this.data.size;
    const recon = await imageGrid(px, px.length / d, this.data.channels, s, s, cols, {
      range: [-1, 1],
    });
    const name = this.cfg.data === "cmnist28"
      ? this.cfg.feature
      : this.data.factors[this.spec].name;
    return { [`swap_${name}`]: grid, reconstructions: recon };
  }

  async preview(): Promise<Record<string, Uint8Array>> {
    this.cmi.training = false;
    try {
      const pos = this.#evalPos.subarray(0, Math.min(200, this.#evalPos.length));
      const e = await this.encode(this.data.test, pos);
      return await this.images(e, this.data.test.batch(pos).labels);
    } finally {
      this.cmi.training = true;
    }
  }

  release(): void {
    this.noise.release();
    this.#pairs?.z.release();
    this.#pairs?.x.release();
  }
}

/** Hue in [0, 1) of an RGB colour in [0, 1] (black and greys: 0). */
export function rgbHue([r, g, b]: readonly number[]): number {
  const max = Math.max(r, g, b), min = Math.min(r, g, b), c = max - min;
  if (c <= 0) return 0;
  let h = max === r ? (g - b) / c : max === g ? 2 + (b - r) / c : 4 + (r - g) / c;
  h /= 6;
  return h < 0 ? h + 1 : h;
}

/** Mean over samples of KL(N(mu, e^logvar) || N(0, I)) summed over dims. */
function meanKl(mu: Float32Array, lv: Float32Array, n: number): number {
  let s = 0;
  for (let i = 0; i < mu.length; i++) s += 0.5 * (mu[i] ** 2 + Math.exp(lv[i]) - 1 - lv[i]);
  return s / n;
}

function factorColumn(factors: readonly Factor[], name: string): number {
  const k = factors.findIndex((f) => f.name === name);
  if (k < 0) {
    throw new Error(
      `flowgpu: cmivae: no factor '${name}' (factors: ${factors.map((f) => f.name).join(", ")})`,
    );
  }
  return k;
}

/** `--model cmivae`: the conditional-MI VAE of Tang et al. on CMNIST-28 or Shapes2.5D. */
export const cmivaeTask = defineTask({
  name: "cmivae",
  summary: "conditional-MI VAE (Tang et al.) on CMNIST-28 (--feature colour|digit) or " +
    "--data shapes2.5d (--label): MIG, swaps, leakage",
  flags,
  trainer: {
    steps: { default: 2300, gpu: 30000 },
    batch: { default: 32, gpu: 64 },
    lr: { default: 1e-3, gpu: 2e-4 },
    warmup: { default: 50 },
    out: { default: "runs/cmivae", gpu: "runs/cmivae-gpu" },
    sampleEvery: { default: 1000, gpu: 5000 },
    checkpointEvery: { default: 500, gpu: 5000 },
  },
  async build(cfg, mode): Promise<Model> {
    if (usesFphi(cfg) && cfg.fphiSteps >= cfg.steps && mode === "train") {
      throw new Error(
        `flowgpu: cmivae: --fphi-steps ${cfg.fphiSteps} leaves no step of --steps ${cfg.steps}`,
      );
    }
    if (cfg.batch < 2) throw new Error("flowgpu: cmivae: --batch must be >= 2 (fusion partners)");
    const data = await cmiDataOf(cfg.data, {
      size: cfg.size,
      trainLimit: mode === "train" ? cfg.trainLimit : 0,
      preset: cfg.preset,
    });
    return new CmiVaeModel(cfg, data);
  },
});

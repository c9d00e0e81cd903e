// The conditional-MI VAE of Tang, Zhou, He & Ma (ICPR 2020; vae-disentangle.md §2): a VAE whose
// code is split into z1 ~ q(z1|x), encoded from the image, and z2 ~ q(z2|f(x)), encoded from a
// *specified feature* f(x) alone (a colour, a class). Because z1 can carry everything, a plain
// VAE may ignore z2; the paper maximises the conditional MI I(z2; x' | z1) instead, through
// fusion images x̂ = G(z1, z̃2) whose z̃2 comes from another sample x̃ of the batch (a
// derangement, §8 T7):
//   L_f1 = ½ ‖Q(z1, x̂) − sg(z̃2)‖²            (variational bound; stop-gradient on the target, T4)
//   L_f2 = ‖f_φ(x̂) − f(x̃)‖² (or CE)          (data-processing bound through a frozen f_φ, T5)
// and a projection-conditioned GAN on top: D(z, x) = wᵀh(x) + b + (P z)ᵀh(x) with the codes
// detached at D's input (T6), real pair (z2, x') with x' the reconstruction (T2, literal; or the
// data x), fake pair (z̃2, x̂).
// Networks are §2.3's [R] architecture, channel counts scaled by width/32 (32: the spec's):
//   E1   conv4x4 s2 (C→w) LReLU → conv4x4 s2 (w→2w) BN LReLU → FC 8w BN LReLU → μ1, logvar1
//   E2   f → FC 2w LReLU → FC 2w LReLU → μ2, logvar2
//   G    [z1, z2] → FC 8w BN ReLU → FC 2w·(S/4)² BN ReLU → convT (2w→w) BN ReLU → convT (w→C) tanh
//   D    E1's trunk without BN → h (8w); projection head with P [8w x d2]
//   Q    D's trunk on x̂ → h; [h, z1] → FC 4w LReLU → FC d2
//   f_φ  D's trunk → FC (feature dims): a regressor (MSE) or a classifier (CE), frozen after
//        its own training on real images.
// Groups (the first name component): enc1, enc2, gen, q (with L_f1), disc, fphi (unless left out
// where no L_f2 needs it).
import { BatchNorm, Conv2d, ConvTranspose2d, fanIn, Linear } from "../nn/layers.ts";
import type { Scope } from "../nn/store.ts";
import { nllLoss } from "../ops/classify.ts";
import { klStdNormal, squaredError } from "../ops/divergence.ts";
import { add, leakyRelu, mul, relu, scale, tanh } from "../ops/elementwise.ts";
import { bceWithLogits } from "../ops/gan.ts";
import { gatherBatch } from "../ops/gather.ts";
import { type GpuRng, reparameterize } from "../ops/random.ts";
import { mean, sumPerSample } from "../ops/reduce.ts";
import { concatChannels, reshape, splitChannels } from "../ops/shape.ts";
import { detach } from "../ops/tape.ts";
import { fmtShape, type Tensor } from "../ops/tensor.ts";
import type { Rng } from "../util/rng.ts";

/** He initialisation for LeakyReLU(0.2): gain sqrt(2 / (1 + 0.2²)). */
const lrelu = (fan: number) => fanIn(fan, Math.sqrt(2 / 1.04));
/** He initialisation for ReLU. */
const he = (fan: number) => fanIn(fan, Math.SQRT2);

/**
 * A uniformly random derangement of 0..n-1 (a permutation without a fixed point, n >= 2): every
 * sample's fusion partner is another sample. Rejection from uniform permutations (about e draws).
 */
export function derangement(n: number, rng: Rng): Uint32Array {
  if (!(Number.isInteger(n) && n >= 2)) {
    throw new Error(`flowgpu: cmivae: a derangement needs n >= 2 items, got ${n}`);
  }
  for (;;) {
    const p = rng.permutation(n);
    if (p.every((v, i) => v !== i)) return p;
  }
}

/** x [2M, ...] as its first and second halves along the batch, [M, ...] each. */
export function halves(x: Tensor): [Tensor, Tensor] {
  const n = x.shape[0];
  if (n % 2) throw new Error(`flowgpu: cmivae: halves of an odd batch ${fmtShape(x.shape)}`);
  const half = x.size / 2, rest = x.shape.slice(1);
  const [a, b] = splitChannels(reshape(x, [1, x.size]), [half, half]);
  return [reshape(a, [n / 2, ...rest]), reshape(b, [n / 2, ...rest])];
}

/** Tensors [N_i, ...rest] stacked along the batch: [Σ N_i, ...rest]. */
export function stackRows(xs: Tensor[]): Tensor {
  const rest = xs[0].shape.slice(1);
  const n = xs.reduce((a, x) => a + x.shape[0], 0);
  return reshape(concatChannels(xs.map((x) => reshape(x, [1, x.size]))), [n, ...rest]);
}

/**
 * §2.3's convolutional trunk: conv4x4 s2 (C→w) LReLU → conv4x4 s2 (w→2w) [BN] LReLU → flatten
 * → FC `out` [BN] LReLU. Used by E1 (with BN), D, Q and f_φ (without).
 */
export class ConvTrunk {
  readonly conv1: Conv2d;
  readonly conv2: Conv2d;
  readonly fc: Linear;
  readonly bn2?: BatchNorm;
  readonly bnFc?: BatchNorm;

  constructor(
    s: Scope,
    channels: number,
    size: number,
    width: number,
    readonly out: number,
    bn: boolean,
  ) {
    const flat = 2 * width * (size / 4) ** 2;
    this.conv1 = new Conv2d(s.child("conv1"), channels, width, 4, {
      stride: 2,
      padding: 1,
      init: lrelu(channels * 16),
    });
    // A bias before a batch norm is cancelled by its mean: none there.
    this.conv2 = new Conv2d(s.child("conv2"), width, 2 * width, 4, {
      stride: 2,
      padding: 1,
      bias: !bn,
      init: lrelu(width * 16),
    });
    this.fc = new Linear(s.child("fc"), flat, out, { bias: !bn, init: lrelu(flat) });
    if (bn) {
      this.bn2 = new BatchNorm(s.child("bn2"), 2 * width);
      this.bnFc = new BatchNorm(s.child("bn_fc"), out);
    }
  }

  /** [N, C, S, S] -> features [N, out]. */
  apply(x: Tensor): Tensor {
    let h = leakyRelu(this.conv1.apply(x), 0.2);
    h = this.conv2.apply(h);
    if (this.bn2) h = this.bn2.apply(h);
    h = leakyRelu(h, 0.2);
    h = this.fc.apply(reshape(h, [x.shape[0], -1]));
    if (this.bnFc) h = this.bnFc.apply(h);
    return leakyRelu(h, 0.2);
  }

  /** Its batch norms (to switch between batch and running statistics). */
  get norms(): BatchNorm[] {
    return [this.bn2, this.bnFc].filter((b): b is BatchNorm => !!b);
  }
}

/** A diagonal Gaussian posterior N(mu, e^logvar). */
export interface Posterior {
  mu: Tensor;
  logvar: Tensor;
}

/** E1: the image encoder, q(z1 | x). */
export class ImageEncoder {
  readonly trunk: ConvTrunk;
  readonly muHead: Linear;
  readonly logvarHead: Linear;

  constructor(s: Scope, channels: number, size: number, width: number, latents: number) {
    const f = 8 * width;
    this.trunk = new ConvTrunk(s.child("trunk"), channels, size, width, f, true);
    this.muHead = new Linear(s.child("mu"), f, latents);
    // Small initial log-variances: the posterior starts near N(mu, 1), not at a random scale.
    this.logvarHead = new Linear(s.child("logvar"), f, latents, { init: fanIn(f, 0.1) });
  }

  apply(x: Tensor): Posterior {
    const h = this.trunk.apply(x);
    return { mu: this.muHead.apply(h), logvar: this.logvarHead.apply(h) };
  }
}

/** E2: the feature encoder, q(z2 | f(x)): an MLP on the feature vector alone. */
export class FeatureEncoder {
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly muHead: Linear;
  readonly logvarHead: Linear;

  constructor(s: Scope, feature: number, width: number, latents: number) {
    const h = 2 * width;
    this.fc1 = new Linear(s.child("fc1"), feature, h, { init: lrelu(feature) });
    this.fc2 = new Linear(s.child("fc2"), h, h, { init: lrelu(h) });
    this.muHead = new Linear(s.child("mu"), h, latents);
    this.logvarHead = new Linear(s.child("logvar"), h, latents, { init: fanIn(h, 0.1) });
  }

  apply(f: Tensor): Posterior {
    const h = leakyRelu(this.fc2.apply(leakyRelu(this.fc1.apply(f), 0.2)), 0.2);
    return { mu: this.muHead.apply(h), logvar: this.logvarHead.apply(h) };
  }
}

/** G: [z1, z2] -> an image in (-1, 1). */
export class Generator {
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly convt1: ConvTranspose2d;
  readonly convt2: ConvTranspose2d;
  readonly norms: BatchNorm[];
  readonly #top: number[];

  constructor(s: Scope, channels: number, size: number, width: number, code: number) {
    const f = 8 * width, t = size / 4, top = 2 * width * t * t;
    this.#top = [2 * width, t, t];
    this.fc1 = new Linear(s.child("fc1"), code, f, { bias: false, init: he(code) });
    this.fc2 = new Linear(s.child("fc2"), f, top, { bias: false, init: he(f) });
    this.convt1 = new ConvTranspose2d(s.child("convt1"), 2 * width, width, 4, {
      stride: 2,
      padding: 1,
      bias: false,
      init: he((2 * width * 16) / 4),
    });
    this.convt2 = new ConvTranspose2d(s.child("convt2"), width, channels, 4, {
      stride: 2,
      padding: 1,
      init: fanIn((width * 16) / 4),
    });
    this.norms = [
      new BatchNorm(s.child("bn1"), f),
      new BatchNorm(s.child("bn2"), top),
      new BatchNorm(s.child("bn3"), width),
    ];
  }

  /** Code [N, d1 + d2] -> [N, C, S, S]. */
  apply(z: Tensor): Tensor {
    const [bn1, bn2, bn3] = this.norms;
    let h = relu(bn1.apply(this.fc1.apply(z)));
    h = relu(bn2.apply(this.fc2.apply(h)));
    h = reshape(h, [z.shape[0], ...this.#top]);
    h = relu(bn3.apply(this.convt1.apply(h)));
    return tanh(this.convt2.apply(h));
  }
}

/**
 * D: the projection discriminator of the pair (z, x) (Miyato & Koyama 2018 with a continuous
 * condition): logit = wᵀh(x) + b + (P z)ᵀh(x), [N, 1].
 */
export class Discriminator {
  readonly trunk: ConvTrunk;
  readonly out: Linear;
  readonly proj: Linear;

  constructor(s: Scope, channels: number, size: number, width: number, code: number) {
    const f = 8 * width;
    this.trunk = new ConvTrunk(s.child("trunk"), channels, size, width, f, false);
    this.out = new Linear(s.child("out"), f, 1);
    // A small projection at first: D starts as an unconditional critic and learns the pairing.
    this.proj = new Linear(s.child("proj"), code, f, { bias: false, init: fanIn(code * f) });
  }

  apply(z: Tensor, x: Tensor): Tensor {
    const h = this.trunk.apply(x);
    const dot = sumPerSample(mul(this.proj.apply(z), h));
    return add(this.out.apply(h), reshape(dot, [x.shape[0], 1]));
  }
}

/** Q: the variational q(z̃2 | z1, x̂) of L_f1: a unit-variance Gaussian's mean. */
export class CodePredictor {
  readonly trunk: ConvTrunk;
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(s: Scope, channels: number, size: number, width: number, z1: number, z2: number) {
    const f = 8 * width, h = 4 * width;
    this.trunk = new ConvTrunk(s.child("trunk"), channels, size, width, f, false);
    this.fc1 = new Linear(s.child("fc1"), f + z1, h, { init: lrelu(f + z1) });
    this.fc2 = new Linear(s.child("fc2"), h, z2);
  }

  apply(z1: Tensor, x: Tensor): Tensor {
    const h = concatChannels([this.trunk.apply(x), z1]);
    return this.fc2.apply(leakyRelu(this.fc1.apply(h), 0.2));
  }
}

/** f_φ: the feature of an image, a regression (continuous f) or class logits (categorical f). */
export class FeatureNet {
  readonly trunk: ConvTrunk;
  readonly head: Linear;

  constructor(s: Scope, channels: number, size: number, width: number, feature: number) {
    const f = 8 * width;
    this.trunk = new ConvTrunk(s.child("trunk"), channels, size, width, f, false);
    this.head = new Linear(s.child("head"), f, feature);
  }

  apply(x: Tensor): Tensor {
    return this.head.apply(this.trunk.apply(x));
  }
}

/** Which conditional-MI terms train the encoders and G. */
export type CmiTerms = "f1" | "f2" | "both";

/** Shape and objective of a `CmiVae`. */
export interface CmiVaeConfig {
  /** Image channels. */
  channels: number;
  /** Image side, a multiple of 4. */
  size: number;
  /** Dims of the specified feature f(x) (3 for an RGB colour, the class count for a one-hot). */
  feature: number;
  /** f(x) is a one-hot class (f_φ a classifier, L_f2 a cross-entropy) or a vector (MSE). */
  categorical: boolean;
  /** Dims of z1 (the unspecified code) and z2 (the specified feature's code). */
  z1: number;
  z2: number;
  /** Channel scale (32: §2.3's sizes). */
  width?: number;
  /** Weights of KL(z1), KL(z2), L_f and L_GAN (defaults 1, 1, 1, 0.1). */
  lambda1?: number;
  lambda2?: number;
  lambda3?: number;
  lambda4?: number;
  /** L_f1, L_f2 or both (default: f2 for a continuous feature, f1 for a categorical one). */
  terms?: CmiTerms;
  /** Build f_φ (default true; L_f2 needs it, with L_f1 alone it only reads fusions). */
  fphi?: boolean;
  /**
   * Weight of L_rec's pixel sum (default 1): (native side / side)² when a set is trained below its
   * own side, so that an image region weighs as much against the KL as at the side it is made for.
   */
  pixelWeight?: number;
}

/** One evaluation of the encoders' and G's objective and what it was made of. */
export interface CmiLoss {
  /** L_rec + λ1 KL1 + λ2 KL2 + λ3 (L_f1 + L_f2) + λ4 L_GAN, [1]. */
  loss: Tensor;
  /** Batch mean of ‖x − x'‖² over pixels (times the pixel weight), [1]. */
  recon: Tensor;
  /** Batch means of KL(q(z1|x) ‖ N(0, I)) and KL(q(z2|f(x)) ‖ N(0, I)), [1] each. */
  kl1: Tensor;
  kl2: Tensor;
  /** The conditional-MI terms that are on, [1] each. */
  lf1?: Tensor;
  lf2?: Tensor;
  /** The generator's non-saturating GAN loss on the fusions, [1] (when λ4 > 0). */
  gan?: Tensor;
  /** The reconstructions x' = G(z1, z2) and fusions x̂ = G(z1, z̃2), [B, C, S, S] each. */
  recons: Tensor;
  fusions: Tensor;
  /** The codes: z1, z2 and the partners' z̃2 = z2[perm], and the posteriors. */
  z1: Tensor;
  z2: Tensor;
  z2t: Tensor;
  q1: Posterior;
  q2: Posterior;
}

/** A training batch: images, their features, and the fusion partners. */
export interface CmiBatch {
  /** Images [B, C, S, S] in [-1, 1]. */
  x: Tensor;
  /** Features f(x), [B, feature] (one-hot rows for a categorical feature). */
  f: Tensor;
  /** Class ids of a categorical feature (for L_f2's cross-entropy), [B]. */
  classes?: ArrayLike<number>;
  /** Partner of each sample (a derangement): x̃_b = x[perm[b]]. */
  perm: ArrayLike<number>;
}

/** The conditional-MI VAE: encoders, generator, discriminator, Q (L_f1) and the frozen f_φ. */
export class CmiVae {
  readonly enc1: ImageEncoder;
  readonly enc2: FeatureEncoder;
  readonly gen: Generator;
  readonly disc?: Discriminator;
  readonly q?: CodePredictor;
  readonly fphi?: FeatureNet;
  readonly terms: CmiTerms;
  readonly lambda: [number, number, number, number];
  readonly pixelWeight: number;

  /** Declares the groups enc1, enc2, gen, disc (λ4 > 0), q (L_f1 on) and fphi (cfg.fphi) under `s`. */
  constructor(s: Scope, readonly cfg: CmiVaeConfig) {
    const { channels: c, size, feature, z1, z2 } = cfg;
    const w = cfg.width ?? 32;
    if (!(Number.isInteger(size) && size >= 4 && size % 4 === 0)) {
      throw new Error(`flowgpu: cmivae: image size ${size} must be a multiple of 4`);
    }
    for (const [k, v] of [["z1", z1], ["z2", z2], ["feature", feature], ["width", w]] as const) {
      if (!(Number.isInteger(v) && v >= 1)) {
        throw new Error(`flowgpu: cmivae: ${k} ${v} must be an integer >= 1`);
      }
    }
    this.lambda = [cfg.lambda1 ?? 1, cfg.lambda2 ?? 1, cfg.lambda3 ?? 1, cfg.lambda4 ?? 0.1];
    if (!this.lambda.every((l) => l >= 0)) {
      throw new Error(`flowgpu: cmivae: weights λ1..λ4 must be >= 0, got ${this.lambda}`);
    }
    this.terms = cfg.terms ?? (cfg.categorical ? "f1" : "f2");
    if (!["f1", "f2", "both"].includes(this.terms)) {
      throw new Error(`flowgpu: cmivae: terms '${this.terms}' is not f1, f2 or both`);
    }
    if (cfg.fphi === false && this.terms !== "f1") {
      throw new Error(`flowgpu: cmivae: L_f2 (terms ${this.terms}) needs f_φ`);
    }
    this.pixelWeight = cfg.pixelWeight ?? 1;
    if (!(this.pixelWeight > 0)) {
      throw new Error(`flowgpu: cmivae: pixel weight ${this.pixelWeight} must be > 0`);
    }
    this.enc1 = new ImageEncoder(s.child("enc1"), c, size, w, z1);
    this.enc2 = new FeatureEncoder(s.child("enc2"), feature, w, z2);
    this.gen = new Generator(s.child("gen"), c, size, w, z1 + z2);
    if (this.lambda[3] > 0) this.disc = new Discriminator(s.child("disc"), c, size, w, z2);
    if (this.terms !== "f2") this.q = new CodePredictor(s.child("q"), c, size, w, z1, z2);
    if (cfg.fphi ?? true) this.fphi = new FeatureNet(s.child("fphi"), c, size, w, feature);
  }

  /** Groups trained by the encoders' and G's objective. */
  get mainGroups(): string[] {
    return ["enc1", "enc2", "gen", ...(this.q ? ["q"] : [])];
  }

  /** Every batch norm (E1's and G's): `training` false evaluates with running statistics. */
  set training(on: boolean) {
    for (const b of [...this.enc1.trunk.norms, ...this.gen.norms]) b.training = on;
  }

  /** G on [z1, z2]. */
  generate(z1: Tensor, z2: Tensor): Tensor {
    return this.gen.apply(concatChannels([z1, z2]));
  }

  /**
   * The encoders' and G's objective on a batch. eps: a GpuRng (two draws: z1, then z2) or the
   * two noise tensors [B, d1], [B, d2] (fixed, e.g. for a gradient check).
   */
  loss(b: CmiBatch, eps: GpuRng | [Tensor, Tensor]): CmiLoss {
    const { x, f, perm } = b;
    const n = x.shape[0];
    if (perm.length !== n || f.shape[0] !== n) {
      throw new Error(
        `flowgpu: cmivae: batch of ${n} images with ${
          f.shape[0]
        } features, ${perm.length} partners`,
      );
    }
    const [l1, l2, l3, l4] = this.lambda;
    const q1 = this.enc1.apply(x), q2 = this.enc2.apply(f);
    const [e1, e2] = Array.isArray(eps) ? eps : [eps, eps];
    const z1 = reparameterize(q1.mu, q1.logvar, e1);
    const z2 = reparameterize(q2.mu, q2.logvar, e2);
    // z̃2 ~ q(z2 | f(x̃)): the partner's sample (its gradient reaches E2 through the gather).
    const z2t = gatherBatch(z2, perm);
    // One G pass over [x'; x̂]: the batch norms see both halves, as at evaluation.
    const out = this.gen.apply(
      concatChannels([stackRows([z1, z1]), stackRows([z2, z2t])]),
    );
    const [recons, fusions] = halves(out);
    const perSample = 1 / n;
    const recon = scale(squaredError(recons, x, "sum"), this.pixelWeight * perSample);
    const kl1 = mean(klStdNormal(q1.mu, q1.logvar));
    const kl2 = mean(klStdNormal(q2.mu, q2.logvar));
    let loss = add(add(recon, scale(kl1, l1)), scale(kl2, l2));
    const r: Partial<CmiLoss> = {};
    if (this.q) {
      // −log N(sg(z̃2); Q(z1, x̂), I) up to a constant.
      r.lf1 = scale(squaredError(this.q.apply(z1, fusions), detach(z2t), "sum"), 0.5 * perSample);
      loss = add(loss, scale(r.lf1, l3));
    }
    if (this.terms !== "f1") {
      const pred = this.fphi!.apply(fusions);
      if (this.cfg.categorical) {
        if (!b.classes) throw new Error("flowgpu: cmivae: L_f2 on a class needs batch.classes");
        const cls = b.classes;
        r.lf2 = nllLoss(pred, Array.from(perm, (p) => cls[p]));
      } else {
        r.lf2 = scale(squaredError(pred, gatherBatch(f, perm), "sum"), perSample);
      }
      loss = add(loss, scale(r.lf2, l3));
    }
    if (this.disc) {
      r.gan = bceWithLogits(this.disc.apply(detach(z2t), fusions), 1);
      loss = add(loss, scale(r.gan, l4));
    }
    return { ...r, loss, recon, kl1, kl2, recons, fusions, z1, z2, z2t, q1, q2 };
  }

  /**
   * The discriminator's L_D on pairs stacked real-first: z [2M, d2], x [2M, C, S, S], rows 0..M-1
   * real, M..2M-1 fake: −mean log D(real) − mean log(1 − D(fake)). Both are detached here.
   */
  discLoss(z: Tensor, x: Tensor): Tensor {
    if (!this.disc) throw new Error("flowgpu: cmivae: no discriminator (λ4 = 0)");
    const m = x.shape[0];
    if (m % 2 || z.shape[0] !== m) {
      throw new Error(
        `flowgpu: cmivae: discLoss needs matching even batches, got z ${fmtShape(z.shape)}, x ${
          fmtShape(x.shape)
        }`,
      );
    }
    const target = new Float32Array(m).fill(0, m / 2).fill(1, 0, m / 2);
    // bce's mean over 2M rows is half of mean_real + mean_fake.
    return scale(bceWithLogits(this.disc.apply(detach(z), detach(x)), target), 2);
  }

  /** f_φ's own objective on real images: MSE to f (continuous) or CE to the classes. */
  featureLoss(x: Tensor, f: Tensor, classes?: ArrayLike<number>): Tensor {
    if (!this.fphi) throw new Error("flowgpu: cmivae: no f_φ (built with fphi false)");
    const pred = this.fphi.apply(x);
    if (!this.cfg.categorical) return scale(squaredError(pred, f, "sum"), 1 / x.shape[0]);
    if (!classes) throw new Error("flowgpu: cmivae: f_φ on a class needs the class ids");
    return nllLoss(pred, classes);
  }
}

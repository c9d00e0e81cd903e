// A convolutional VAE (Kingma & Welling 2014) and β-VAE (Higgins et al. 2017): the baseline every
// disentangling model of vae-disentangle.md must beat. Sizes follow the DU-net size rule of §1.3
// (levels, channels, extra paddings, FC width F for an S x S image) in the §1.3 "simplified
// variant": plain convolutions with bias and LeakyReLU(0.2), no weight norm, and here also no
// residual shortcuts or FCRes blocks, which a plain VAE does not have.
//   encoder: conv 6x6 s2 (pad 2+e0) -> conv 4x4 s2 (pad 1+e_i) per further level -> flatten
//            -> linear F -> two linear heads: mu and logvar of the code
//   decoder: linear F -> linear c_{L-1} t^2 -> reshape -> convT 4x4 s2 (pad 1+e_i) per level
//            -> convT 6x6 s2 (pad 2+e0) -> tanh (images live in [-1, 1])
// Loss per sample: ||x - x̂||² / (2 σ²) (a Gaussian decoder with fixed σ; σ = 1 is §8 Z2's
// L_rec = ½ Σ_pix) + β KL(q(z|x) || N(0, I)), averaged over the batch.
import { Conv2d, ConvTranspose2d, fanIn, Linear } from "../nn/layers.ts";
import type { Scope } from "../nn/store.ts";
import { klStdNormal, squaredError } from "../ops/divergence.ts";
import { add, leakyRelu, scale, tanh } from "../ops/elementwise.ts";
import { type GpuRng, reparameterize } from "../ops/random.ts";
import { mean } from "../ops/reduce.ts";
import { reshape } from "../ops/shape.ts";
import { fmtShape, type Tensor } from "../ops/tensor.ts";

/** The DU-net sizes of §1.3 for an S x S image. */
export interface DuNetSizes {
  /** Stride-2 levels L (the image shrinks by 2 per level, to `top`). */
  levels: number;
  /** Channels per level, [L]. */
  channels: number[];
  /** Extra padding e_i per level, [L] (1 where a level's side is 2 mod 4, so it halves to even). */
  extra: number[];
  /** Side t of the top feature map. */
  top: number;
  /** Width F of the fully connected layers. */
  fc: number;
}

const CHANNELS: Record<number, number[]> = {
  1: [16],
  2: [16, 32],
  3: [32, 64, 128],
  4: [32, 64, 128, 256],
  5: [32, 64, 128, 256, 512],
  6: [32, 64, 128, 256, 384, 512],
};
const FC: Record<number, number> = { 1: 128, 2: 256, 3: 512, 4: 512, 5: 512, 6: 512 };

/**
 * §1.3's size rule for side `size` (8 -> [16], 28 -> [32, 64, 128] with e = [0, 1, 0], 64 ->
 * [32, 64, 128, 256]; t = 4 for all three). `width` scales every channel count and F by width/32
 * (32: the spec's sizes; CPU runs use less), at least 1 each.
 */
export function duNetSizes(size: number, width = 32): DuNetSizes {
  if (!(Number.isInteger(size) && size >= 6)) {
    throw new Error(`flowgpu: vae: image size ${size} must be an integer >= 6`);
  }
  if (!(Number.isInteger(width) && width >= 1)) {
    throw new Error(`flowgpu: vae: width ${width} must be an integer >= 1`);
  }
  let s = size, levels = 0;
  while (s >= 12) {
    s = 2 * Math.floor((s + 2) / 4);
    levels++;
  }
  if (s >= 6) levels++;
  if (!CHANNELS[levels]) {
    throw new Error(`flowgpu: vae: image size ${size} needs ${levels} levels (at most 6)`);
  }
  const extra: number[] = [];
  s = size;
  for (let i = 0; i < levels - 1; i++) {
    if (s % 4 === 2) {
      extra.push(1);
      s = s / 2 + 1;
    } else {
      extra.push(0);
      s = Math.floor(s / 2);
    }
  }
  extra.push(0);
  const sc = (c: number) => Math.max(1, Math.round((c * width) / 32));
  return {
    levels,
    channels: CHANNELS[levels].map(sc),
    extra,
    top: Math.floor(s / 2),
    fc: sc(FC[levels]),
  };
}

/** Shape and objective of a `Vae`. */
export interface VaeConfig {
  /** Image channels (1 or 3). */
  channels: number;
  /** Image height and width. */
  size: number;
  /** Code dims. */
  latents: number;
  /** Channel scale: the §1.3 channel counts and F times width/32 (default 32, the spec's). */
  width?: number;
  /** Weight of the KL term (default 1: the VAE; > 1: β-VAE). */
  beta?: number;
  /** Fixed decoder σ on the [-1, 1] pixel scale (default 1). */
  sigma?: number;
}

/** One evaluation of the VAE objective and what it was made of. */
export interface VaeLoss {
  /** recon + β kl, [1]. */
  loss: Tensor;
  /** Batch mean of ||x - x̂||² / (2 σ²), [1]. */
  recon: Tensor;
  /** Batch mean of KL(q(z|x) || N(0, I)) in nats, [1]. */
  kl: Tensor;
  /** Posterior means and log-variances, [N, latents]. */
  mu: Tensor;
  logvar: Tensor;
  /** The reparameterised sample and its decoding. */
  z: Tensor;
  xhat: Tensor;
}

/** Convolutional VAE: x [N, C, S, S] in [-1, 1] -> q(z|x) = N(mu, e^logvar) -> x̂ = tanh(dec(z)). */
export class Vae {
  /** The §1.3 sizes this model was built with. */
  readonly sizes: DuNetSizes;
  /** Encoder convolutions, one per level (6x6 then 4x4, all stride 2). */
  readonly encConvs: Conv2d[] = [];
  /** Flattened features -> F. */
  readonly encFc: Linear;
  /** F -> posterior mean. */
  readonly muHead: Linear;
  /** F -> posterior log-variance. */
  readonly logvarHead: Linear;
  /** Code -> F. */
  readonly decFc: Linear;
  /** F -> top feature map [c_{L-1}, t, t]. */
  readonly decTop: Linear;
  /** Decoder transposed convolutions, top level first (4x4, then the 6x6 to the image). */
  readonly decConvs: ConvTranspose2d[] = [];
  /** β. */
  readonly beta: number;
  /** Decoder σ. */
  readonly sigma: number;

  /** Declares `encoder.*` and `decoder.*` parameters under `s` (at the root: two groups). */
  constructor(s: Scope, readonly cfg: VaeConfig) {
    const { channels: cin, size, latents } = cfg;
    if (!(Number.isInteger(latents) && latents >= 1)) {
      throw new Error(`flowgpu: vae: latents ${latents} must be an integer >= 1`);
    }
    this.beta = cfg.beta ?? 1;
    this.sigma = cfg.sigma ?? 1;
    if (!(this.beta >= 0) || !(this.sigma > 0)) {
      throw new Error(
        `flowgpu: vae: need beta >= 0 and sigma > 0, got ${this.beta}, ${this.sigma}`,
      );
    }
    const z = (this.sizes = duNetSizes(size, cfg.width ?? 32));
    const { levels, channels: c, extra: e, top: t, fc } = z;
    const enc = s.child("encoder"), dec = s.child("decoder");
    // He initialisation for LeakyReLU(0.2): gain sqrt(2 / (1 + 0.2²)).
    const gain = Math.sqrt(2 / 1.04);
    const he = (fan: number) => fanIn(fan, gain);
    for (let i = 0; i < levels; i++) {
      const [ci, k] = i === 0 ? [cin, 6] : [c[i - 1], 4];
      const pad = (i === 0 ? 2 : 1) + e[i];
      this.encConvs.push(
        new Conv2d(enc.child(`conv${i}`), ci, c[i], k, {
          stride: 2,
          padding: pad,
          init: he(ci * k * k),
        }),
      );
    }
    const flat = c[levels - 1] * t * t;
    this.encFc = new Linear(enc.child("fc"), flat, fc, { init: he(flat) });
    this.muHead = new Linear(enc.child("mu"), fc, latents);
    // Small initial log-variances: the posterior starts near N(mu, 1), not at a random scale.
    this.logvarHead = new Linear(enc.child("logvar"), fc, latents, { init: fanIn(fc, 0.1) });
    this.decFc = new Linear(dec.child("fc"), latents, fc, { init: he(latents) });
    this.decTop = new Linear(dec.child("top"), fc, flat, { init: he(fc) });
    // Sides along the encoder; each transposed convolution returns to its level's side (an odd
    // side needs output padding 1).
    const sides = [size];
    for (let i = 0; i < levels; i++) {
      const k = i === 0 ? 6 : 4, pad = (i === 0 ? 2 : 1) + e[i];
      sides.push(Math.floor((sides[i] + 2 * pad - k) / 2) + 1);
    }
    if (sides[levels] !== t) {
      throw new Error(`flowgpu: vae: size ${size} reaches ${sides[levels]}, not the top side ${t}`);
    }
    for (let i = levels - 1; i >= 0; i--) {
      const [co, k] = i === 0 ? [cin, 6] : [c[i - 1], 4];
      const pad = (i === 0 ? 2 : 1) + e[i];
      const outputPadding = sides[i] - ((sides[i + 1] - 1) * 2 - 2 * pad + k);
      const init = i === 0 ? fanIn((c[i] * k * k) / 4) : he((c[i] * k * k) / 4);
      this.decConvs.push(
        new ConvTranspose2d(dec.child(`convt${i}`), c[i], co, k, {
          stride: 2,
          padding: pad,
          outputPadding,
          init,
        }),
      );
    }
  }

  /** Posterior N(mu, e^logvar) of a batch: [N, C, S, S] -> two [N, latents]. */
  encode(x: Tensor): { mu: Tensor; logvar: Tensor } {
    const { channels: c, size } = this.cfg;
    const s = x.shape;
    if (s.length !== 4 || s[1] !== c || s[2] !== size || s[3] !== size) {
      throw new Error(`flowgpu: vae: input ${fmtShape(s)} is not [N, ${c}, ${size}, ${size}]`);
    }
    let h = x;
    for (const conv of this.encConvs) h = leakyRelu(conv.apply(h), 0.2);
    h = leakyRelu(this.encFc.apply(reshape(h, [s[0], -1])), 0.2);
    return { mu: this.muHead.apply(h), logvar: this.logvarHead.apply(h) };
  }

  /** Images in (-1, 1) of codes [N, latents] -> [N, C, S, S]. */
  decode(z: Tensor): Tensor {
    const { latents } = this.cfg;
    if (z.shape.length !== 2 || z.shape[1] !== latents) {
      throw new Error(`flowgpu: vae: code ${fmtShape(z.shape)} is not [N, ${latents}]`);
    }
    const { channels: c, levels, top: t } = this.sizes;
    let h = leakyRelu(this.decFc.apply(z), 0.2);
    h = leakyRelu(this.decTop.apply(h), 0.2);
    h = reshape(h, [z.shape[0], c[levels - 1], t, t]);
    this.decConvs.forEach((conv, j) => {
      h = conv.apply(h);
      if (j < levels - 1) h = leakyRelu(h, 0.2);
    });
    return tanh(h);
  }

  /**
   * The objective on a batch x in [-1, 1]: z = mu + σ eps with eps drawn by `noise` on the GPU
   * (a GpuRng: no upload) or given ([N, latents], e.g. fixed for a gradient check).
   */
  loss(x: Tensor, noise: GpuRng | Tensor): VaeLoss {
    const { mu, logvar } = this.encode(x);
    const z = reparameterize(mu, logvar, noise);
    const xhat = this.decode(z);
    const recon = scale(mean(squaredError(xhat, x, "perSample")), 1 / (2 * this.sigma ** 2));
    const kl = mean(klStdNormal(mu, logvar));
    const loss = this.beta === 1 ? add(recon, kl) : add(recon, scale(kl, this.beta));
    return { loss, recon, kl, mu, logvar, z, xhat };
  }
}

// A plain convolutional autoencoder: the smallest model on the platform, and the shape every
// VAE-family model starts from. Encoder: two stride-2 convolutions and a linear map to a code
// z; decoder: a linear map back and two depth-to-space upsamplings (unsqueeze, Glow's inverse
// squeeze). Trained on mean squared error of pixels in [0, 1].
import { Conv2d, fanIn, Linear } from "../nn/layers.ts";
import type { Scope } from "../nn/store.ts";
import { relu, square, sub } from "../ops/elementwise.ts";
import { mean } from "../ops/reduce.ts";
import { reshape } from "../ops/shape.ts";
import { unsqueeze } from "../ops/squeeze.ts";
import { fmtShape, type Tensor } from "../ops/tensor.ts";

/** Shape of an `Autoencoder`. */
export interface AutoencoderConfig {
  /** Image channels. */
  channels: number;
  /** Height and width, a multiple of 4. */
  size: number;
  /** Hidden channels of the first convolution (the second has twice as many). */
  hidden: number;
  /** Length of the code z. */
  latent: number;
}

/**
 * Convolutional autoencoder: x [N, C, S, S] -> code z [N, latent] -> pixels in (0, 1), trained on
 * mean squared error.
 */
export class Autoencoder {
  /** 3x3 stride-2 convolution C -> hidden (S -> S/2). */
  readonly enc1: Conv2d;
  /** 3x3 stride-2 convolution hidden -> 2 hidden (S/2 -> S/4). */
  readonly enc2: Conv2d;
  /** Linear map from the flattened features to the code. */
  readonly toCode: Linear;
  /** Linear map from the code back to [2 hidden, S/4, S/4] features. */
  readonly fromCode: Linear;
  /** 3x3 convolution to 4 hidden channels, then depth-to-space to S/2. */
  readonly dec1: Conv2d;
  /** 3x3 convolution to 4 C channels, then depth-to-space to S. */
  readonly dec2: Conv2d;

  /** Declares the encoder and decoder parameters under `s` (`encoder.*`, `decoder.*`). */
  constructor(s: Scope, readonly cfg: AutoencoderConfig) {
    const { channels: c, size, hidden: h, latent } = cfg;
    if (size % 4) throw new Error(`flowgpu: ae: size ${size} is not a multiple of 4`);
    const cells = 2 * h * (size / 4) ** 2;
    const enc = s.child("encoder"), dec = s.child("decoder");
    // He initialisation (gain sqrt 2) where a ReLU follows.
    const he = (fan: number) => fanIn(fan, Math.SQRT2);
    this.enc1 = new Conv2d(enc.child("conv1"), c, h, 3, { stride: 2, init: he(c * 9) });
    this.enc2 = new Conv2d(enc.child("conv2"), h, 2 * h, 3, { stride: 2, init: he(h * 9) });
    this.toCode = new Linear(enc.child("code"), cells, latent);
    this.fromCode = new Linear(dec.child("code"), latent, cells, { init: he(latent) });
    this.dec1 = new Conv2d(dec.child("conv1"), 2 * h, 4 * h, 3, { init: he(2 * h * 9) });
    this.dec2 = new Conv2d(dec.child("conv2"), h, 4 * c, 3);
  }

  /** The code of a batch: [N, C, S, S] -> [N, latent]. */
  encode(x: Tensor): Tensor {
    const { channels: c, size } = this.cfg;
    const s = x.shape;
    if (s.length !== 4 || s[1] !== c || s[2] !== size || s[3] !== size) {
      throw new Error(`flowgpu: ae: input ${fmtShape(s)} is not [N, ${c}, ${size}, ${size}]`);
    }
    const h = relu(this.enc2.apply(relu(this.enc1.apply(x))));
    return this.toCode.apply(reshape(h, [s[0], -1]));
  }

  /**
   * Pixels (about 0..1). The output is linear, not a sigmoid: a sigmoid lets the net settle on an
   * all-black image with saturated, vanishing gradients, which it does within 100 steps here.
   */
  decode(z: Tensor): Tensor {
    const q = this.cfg.size / 4;
    const h = relu(reshape(this.fromCode.apply(z), [z.shape[0], 2 * this.cfg.hidden, q, q]));
    const up = relu(unsqueeze(this.dec1.apply(h)));
    return unsqueeze(this.dec2.apply(up));
  }

  /** Mean squared error of the reconstruction, per pixel. */
  loss(x: Tensor): { loss: Tensor; recon: Tensor } {
    const recon = this.decode(this.encode(x));
    return { loss: mean(square(sub(recon, x))), recon };
  }
}

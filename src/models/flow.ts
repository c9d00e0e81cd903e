// Glow's invertible layers (glow-funs.md §1.3-1.7). Each maps x to y with a per-sample log-det
// ([N], or [1] when it is the same for every sample) and inverts y back to x. Inverses are for
// sampling and record nothing on the tape, unless asked with `{ grad: true }`: a loss on a decoded
// image (the MI flow's L_i, af-mi-flow.md §3.3) needs gradients through f^-1 into its input and
// into the flow's parameters.
import { ActNorm as ActNormLayer, ZeroConv } from "../nn/layers.ts";
import { normal, type Scope } from "../nn/store.ts";
import { actnormInverse, actnormLogdet } from "../ops/actnorm.ts";
import { conv2d } from "../ops/conv.ts";
import { affineCoupling, affineCouplingInverse } from "../ops/coupling.ts";
import { add, exp, mul, neg, relu, scale, sub } from "../ops/elementwise.ts";
import { inverseLogdet } from "../ops/linalg.ts";
import { gaussianLogProb } from "../ops/loss.ts";
import { matmul } from "../ops/matmul.ts";
import { sum, sumPerSample } from "../ops/reduce.ts";
import { concatChannels, evenOddChannels, reshape, splitChannels } from "../ops/shape.ts";
import { noGrad } from "../ops/tape.ts";
import type { Tensor } from "../ops/tensor.ts";
import { luDecompose, randomRotation } from "./lu.ts";

/** Options of a flow layer's `inverse`. */
export interface InverseOptions {
  /**
   * Record the inverse on the tape, so that gradients reach y and the layer's parameters
   * (default false: sampling, nothing recorded).
   */
  grad?: boolean;
}

/** An invertible layer: y and its per-sample log-det (undefined means 0). */
export interface FlowLayer {
  /** y = f(x) and log|det df/dx|, recorded on the tape. */
  forward(x: Tensor): { y: Tensor; logdet?: Tensor };
  /**
   * x and the inverse's log-det (the negative of the forward's at that x); recorded on the tape
   * only with `{ grad: true }`.
   */
  inverse(y: Tensor, opts?: InverseOptions): { x: Tensor; logdet?: Tensor };
}

const pixels = (x: Tensor) => x.size / (x.shape[0] * x.shape[1]);

/** Sum of log-dets, where undefined means 0. */
export function addLogdet(a?: Tensor, b?: Tensor): Tensor | undefined {
  return a && b ? add(a, b) : a ?? b;
}

/** Per-channel affine with data-dependent init; as a flow layer it adds S * sum(a) to the log-det. */
export class ActNorm implements FlowLayer {
  /** The underlying layer (its parameters and initialised flag). */
  readonly layer: ActNormLayer;

  /** Declares the layer's parameters in `s`. */
  constructor(s: Scope, channels: number) {
    this.layer = new ActNormLayer(s, channels);
  }

  /** y = exp(a) x + b with log-det H * W * sum(a), the same for every sample ([1]). */
  forward(x: Tensor): { y: Tensor; logdet: Tensor } {
    return { y: this.layer.apply(x), logdet: actnormLogdet(x, this.layer.a) };
  }

  /** x = (y - b) exp(-a), and the negated log-det; recorded only with `{ grad: true }`. */
  inverse(y: Tensor, opts: InverseOptions = {}): { x: Tensor; logdet: Tensor } {
    const { a, b } = this.layer;
    if (opts.grad) {
      // Composed from elementwise ops, whose backwards exist: actnormInverse's fused kernel has
      // none. Three more dispatches, two of them on [C] vectors.
      return {
        x: mul(sub(y, b), exp(neg(a))),
        logdet: scale(actnormLogdet(y, a), -1),
      };
    }
    return noGrad(() => ({
      x: actnormInverse(y, a, b),
      logdet: scale(actnormLogdet(y, a), -1),
    }));
  }
}

/**
 * Invertible 1x1 convolution. LU form: W = P L (U + diag(sign * exp(logS))), log|det W| =
 * sum(logS); plain form: W trained directly, log|det W| from a GPU LU. W is assembled once per
 * forward (one per training step), and W^-1 only when inverting.
 */
export class InvConv1x1 implements FlowLayer {
  /** Channels (W is [c, c]). */
  readonly c: number;
  /** Whether W is parameterised in LU form. */
  readonly lu: boolean;
  #w?: Tensor;
  #lower?: Tensor;
  #upper?: Tensor;
  #logS?: Tensor;
  #perm?: Tensor;
  #sign?: Tensor;
  #lowerMask?: Tensor;
  #upperMask?: Tensor;
  #eye?: Tensor;

  /** Starts from a random rotation drawn from the store's RNG. */
  constructor(s: Scope, c: number, lu: boolean) {
    this.c = c;
    this.lu = lu;
    const q = randomRotation(c, s.rng);
    if (!lu) {
      this.#w = s.param("weight", [c, c], q);
      return;
    }
    const { p: perm, l, u } = luDecompose(q, c);
    const diag = Array.from({ length: c }, (_, i) => u[i * c + i]);
    const lowerMask = new Float32Array(c * c), upperMask = new Float32Array(c * c);
    const eye = new Float32Array(c * c);
    for (let i = 0; i < c; i++) {
      eye[i * c + i] = 1;
      for (let j = 0; j < c; j++) {
        if (j < i) lowerMask[i * c + j] = 1;
        if (j > i) upperMask[i * c + j] = 1;
      }
    }
    this.#lower = s.param("lower", [c, c], l.map((v, k) => v * lowerMask[k]));
    this.#upper = s.param("upper", [c, c], u.map((v, k) => v * upperMask[k]));
    this.#logS = s.param("log_s", [c], diag.map((v) => Math.log(Math.abs(v))));
    this.#perm = s.fixed("perm", [c, c], perm);
    this.#sign = s.fixed("sign", [c], diag.map(Math.sign));
    this.#lowerMask = s.fixed("lower_mask", [c, c], lowerMask);
    this.#upperMask = s.fixed("upper_mask", [c, c], upperMask);
    this.#eye = s.fixed("eye", [c, c], eye);
  }

  /** W as a [C, C] tensor, recorded on the tape when parameters need gradients. */
  weight(): Tensor {
    if (!this.lu) return this.#w!;
    const l = add(mul(this.#lower!, this.#lowerMask!), this.#eye!);
    // mul(eye, v) broadcasts v over dim 1: eye[i, j] * v[j] = diag(v).
    const diag = mul(this.#eye!, mul(this.#sign!, exp(this.#logS!)));
    const u = add(mul(this.#upper!, this.#upperMask!), diag);
    return matmul(this.#perm!, matmul(l, u));
  }

  /** log|det W| as a [1] tensor. */
  logAbsDet(): Tensor {
    return this.lu ? sum(this.#logS!) : inverseLogdet(this.#w!).logabsdet;
  }

  /** y = W x at every pixel, log-det H * W * log|det W| ([1]). */
  forward(x: Tensor): { y: Tensor; logdet: Tensor } {
    const c = this.c;
    const y = conv2d(x, reshape(this.weight(), [c, c, 1, 1]), { padding: 0 });
    return { y, logdet: scale(this.logAbsDet(), pixels(x)) };
  }

  /**
   * x = W⁻¹ y, with the log-det computed from W⁻¹; records nothing. With `{ grad: true }`, W⁻¹
   * is differentiable w.r.t. W (so the LU parameters), and the log-det is -H W log|det W|.
   */
  inverse(y: Tensor, opts: InverseOptions = {}): { x: Tensor; logdet: Tensor } {
    if (opts.grad) {
      const { inv, logabsdet } = inverseLogdet(this.weight());
      const logdet = scale(this.lu ? sum(this.#logS!) : logabsdet, -pixels(y));
      return { x: conv2d(y, reshape(inv, [this.c, this.c, 1, 1]), { padding: 0 }), logdet };
    }
    return noGrad(() => {
      const inv = inverseLogdet(this.weight()).inv;
      // log|det W^-1| from W^-1 itself, so forward + inverse = 0 is a real check.
      const logdet = scale(inverseLogdet(inv).logabsdet, pixels(y));
      return { x: conv2d(y, reshape(inv, [this.c, this.c, 1, 1]), { padding: 0 }), logdet };
    });
  }
}

/** NN(x_a): conv3x3 -> actnorm -> relu -> conv1x1 -> actnorm -> relu -> zero conv3x3. */
export class CouplingNet {
  /** 3x3 convolution weight, [width, cin, 3, 3]. */
  readonly w1: Tensor;
  /** Actnorm after the first convolution. */
  readonly an1: ActNormLayer;
  /** 1x1 convolution weight, [width, width, 1, 1]. */
  readonly w2: Tensor;
  /** Actnorm after the second convolution. */
  readonly an2: ActNormLayer;
  /** Zero-initialised 3x3 output convolution to `cout` channels. */
  readonly out: ZeroConv;

  /** Declares the network's parameters in `s`. */
  constructor(s: Scope, cin: number, width: number, cout: number) {
    this.w1 = s.param("conv1.weight", [width, cin, 3, 3], normal(0.05));
    this.an1 = new ActNormLayer(s.child("actnorm1"), width);
    this.w2 = s.param("conv2.weight", [width, width, 1, 1], normal(0.05));
    this.an2 = new ActNormLayer(s.child("actnorm2"), width);
    this.out = new ZeroConv(s.child("conv3"), width, cout);
  }

  /** [N, cin, H, W] -> [N, cout, H, W], recorded on the tape. */
  apply(xa: Tensor): Tensor {
    // The inner actnorms are plain normalisations: no log-det.
    const h1 = relu(this.an1.apply(conv2d(xa, this.w1, { padding: 1 })));
    const h2 = relu(this.an2.apply(conv2d(h1, this.w2, { padding: 0 })));
    return this.out.apply(h2);
  }
}

/** Affine (sigmoid(r + 2) scale) or additive coupling; x_a = x[:C/2] passes through. */
export class Coupling implements FlowLayer {
  /** The network computing the transform of x_b from x_a. */
  readonly nn: CouplingNet;
  /** Channels of x_a (C / 2). */
  readonly half: number;

  /** Declares the coupling network (hidden `width`) in `s.nn`. */
  constructor(s: Scope, c: number, width: number, readonly affine: boolean) {
    this.half = c / 2;
    this.nn = new CouplingNet(s.child("nn"), this.half, width, affine ? c : c - this.half);
  }

  /** y = [x_a, transformed x_b]; log-det per sample ([N]) when affine, none when additive. */
  forward(x: Tensor): { y: Tensor; logdet?: Tensor } {
    const [xa, xb] = splitChannels(x, [this.half, x.shape[1] - this.half]);
    const h = this.nn.apply(xa);
    if (!this.affine) return { y: concatChannels([xa, add(xb, h)]) };
    const { yb, logs } = affineCoupling(xb, h);
    return { y: concatChannels([xa, yb]), logdet: sumPerSample(logs) };
  }

  /**
   * x from y, and the inverse's per-sample log-det when affine; recorded only with
   * `{ grad: true }` (then gradients reach y_b directly and y_a through NN(y_a) too).
   */
  inverse(y: Tensor, opts: InverseOptions = {}): { x: Tensor; logdet?: Tensor } {
    return opts.grad ? this.#inverse(y) : noGrad(() => this.#inverse(y));
  }

  #inverse(y: Tensor): { x: Tensor; logdet?: Tensor } {
    const [ya, yb] = splitChannels(y, [this.half, y.shape[1] - this.half]);
    const h = this.nn.apply(ya);
    if (!this.affine) return { x: concatChannels([ya, sub(yb, h)]) };
    const { xb, neglogs } = affineCouplingInverse(yb, h);
    return { x: concatChannels([ya, xb]), logdet: sumPerSample(neglogs) };
  }
}

/** One Glow step: actnorm -> invertible 1x1 conv -> coupling. */
export class FlowStep implements FlowLayer {
  /** Actnorm, invertible 1x1 convolution and coupling, in forward order. */
  readonly layers: FlowLayer[];

  /** Declares the three layers under `s` (`actnorm`, `invconv`, `coupling`). */
  constructor(s: Scope, c: number, width: number, o: { lu: boolean; affine: boolean }) {
    this.layers = [
      new ActNorm(s.child("actnorm"), c),
      new InvConv1x1(s.child("invconv"), c, o.lu),
      new Coupling(s.child("coupling"), c, width, o.affine),
    ];
  }

  /** The three layers in order; their log-dets summed. */
  forward(x: Tensor): { y: Tensor; logdet?: Tensor } {
    let logdet: Tensor | undefined;
    for (const layer of this.layers) {
      const r = layer.forward(x);
      x = r.y;
      logdet = addLogdet(logdet, r.logdet);
    }
    return { y: x, logdet };
  }

  /** The three inverses in reverse order; their log-dets summed. Recorded with `{ grad: true }`. */
  inverse(y: Tensor, opts: InverseOptions = {}): { x: Tensor; logdet?: Tensor } {
    let logdet: Tensor | undefined;
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const r = this.layers[i].inverse(y, opts);
      y = r.x;
      logdet = addLogdet(logdet, r.logdet);
    }
    return { x: y, logdet };
  }
}

/**
 * Split with a learned prior: z1 = z[:C/2] goes on, z2 = z[C/2:] is this level's latent with
 * z2 ~ N(mu, exp(logstd)^2) where (mu, logstd) = even/odd channels of ZeroConv(z1).
 */
export class SplitPrior {
  /** Zero-initialised convolution z1 -> (mu, logstd), interleaved as even/odd channels. */
  readonly conv: ZeroConv;
  /** Channels of z1 (C / 2). */
  readonly half: number;

  /** Declares the prior's convolution in `s.prior`. */
  constructor(s: Scope, c: number) {
    this.half = c / 2;
    this.conv = new ZeroConv(s.child("prior"), this.half, 2 * (c - this.half));
  }

  /** (mu, logstd) of z2 given z1, each shaped like z2. */
  prior(z1: Tensor): [Tensor, Tensor] {
    return evenOddChannels(this.conv.apply(z1));
  }

  /** (z1, z2, log p(z2 | z1) per sample). */
  forward(z: Tensor): { z1: Tensor; z2: Tensor; logp: Tensor } {
    const [z1, z2] = splitChannels(z, [this.half, z.shape[1] - this.half]);
    const [mean, logStd] = this.prior(z1);
    return { z1, z2, logp: gaussianLogProb(z2, mean, logStd) };
  }
}

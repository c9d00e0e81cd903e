// Reusable layers on a parameter store. A layer declares its parameters in its scope with an init
// and knows nothing of optimizers or files; `apply` records on the tape like any op.
import { actnorm, actnormInit } from "../ops/actnorm.ts";
import { conv2d } from "../ops/conv.ts";
import { convTranspose2d } from "../ops/conv_transpose.ts";
import { exp, mul, scale } from "../ops/elementwise.ts";
import { linear } from "../ops/matmul.ts";
import { batchNorm } from "../ops/norm.ts";
import type { Tensor } from "../ops/tensor.ts";
import { constant, type Flag, type Init, normal, type Scope, zeros } from "./store.ts";

/** He-style default: N(0, 1/fan_in) scaled by `gain`. */
export const fanIn = (fanIn: number, gain = 1): Init => normal(gain / Math.sqrt(fanIn));

/** x [N, In] -> x Wᵀ + b, W [Out, In]. */
export class Linear {
  /** Weight, [Out, In] (parameter `weight`). */
  readonly w: Tensor;
  /** Bias, [Out] (parameter `bias`), unless made with `bias: false`. */
  readonly b?: Tensor;

  /** Declares `weight` (default init `fanIn(inp)`) and `bias` (zeros) in scope `s`. */
  constructor(
    s: Scope,
    inp: number,
    out: number,
    o: { bias?: boolean; init?: Init } = {},
  ) {
    this.w = s.param("weight", [out, inp], o.init ?? fanIn(inp));
    if (o.bias ?? true) this.b = s.param("bias", [out], zeros);
  }

  /** [N, In] -> [N, Out], recorded on the tape. */
  apply(x: Tensor): Tensor {
    return linear(x, this.w, this.b);
  }
}

/** 2-D convolution [N, Ci, H, W] -> [N, Co, H', W'] (square kernel, zero padding). */
export class Conv2d {
  /** Weight, [Co, Ci, K, K] (parameter `weight`). */
  readonly w: Tensor;
  /** Bias, [Co] (parameter `bias`), unless made with `bias: false`. */
  readonly b?: Tensor;
  /** Zero padding on every side (default floor(K / 2), "same" at stride 1 for odd K). */
  readonly padding: number;
  /** Step in both directions. */
  readonly stride: 1 | 2;

  /** Declares a K x K convolution's `weight` (default `fanIn(cin * k * k)`) and `bias` in `s`. */
  constructor(
    s: Scope,
    cin: number,
    cout: number,
    k: number,
    o: { bias?: boolean; init?: Init; padding?: number; stride?: 1 | 2 } = {},
  ) {
    this.w = s.param("weight", [cout, cin, k, k], o.init ?? fanIn(cin * k * k));
    if (o.bias ?? true) this.b = s.param("bias", [cout], zeros);
    this.padding = o.padding ?? Math.floor(k / 2);
    this.stride = o.stride ?? 1;
  }

  /** [N, Ci, H, W] -> [N, Co, H', W'], recorded on the tape. */
  apply(x: Tensor): Tensor {
    return conv2d(x, this.w, { bias: this.b, padding: this.padding, stride: this.stride });
  }
}

/**
 * Transposed 2-D convolution [N, Ci, H, W] -> [N, Co, H', W'] (PyTorch's ConvTranspose2d: square
 * kernel, symmetric padding, H' = (H - 1) S - 2 padding + K + outputPadding).
 */
export class ConvTranspose2d {
  /** Weight, [Ci, Co, K, K] (parameter `weight`; PyTorch's layout, input channels first). */
  readonly w: Tensor;
  /** Bias, [Co] (parameter `bias`), unless made with `bias: false`. */
  readonly b?: Tensor;
  /** Rows and columns cropped from every side of the full output (default 0). */
  readonly padding: number;
  /** Step between the input pixels' footprints in the output. */
  readonly stride: 1 | 2;
  /** Rows and columns added at the bottom and right (default 0; less than the stride). */
  readonly outputPadding: number;

  /**
   * Declares a K x K transposed convolution's `weight` and `bias` in `s`. The default init is
   * `fanIn(cin * k * k / stride²)`: each output pixel sums about cin K²/S² taps, not the
   * cout K² that PyTorch's default counts from the weight's second axis.
   */
  constructor(
    s: Scope,
    cin: number,
    cout: number,
    k: number,
    o: {
      bias?: boolean;
      init?: Init;
      padding?: number;
      stride?: 1 | 2;
      outputPadding?: number;
    } = {},
  ) {
    this.stride = o.stride ?? 1;
    this.w = s.param(
      "weight",
      [cin, cout, k, k],
      o.init ?? fanIn(Math.max(1, (cin * k * k) / this.stride ** 2)),
    );
    if (o.bias ?? true) this.b = s.param("bias", [cout], zeros);
    this.padding = o.padding ?? 0;
    this.outputPadding = o.outputPadding ?? 0;
  }

  /** [N, Ci, H, W] -> [N, Co, H', W'], recorded on the tape. */
  apply(x: Tensor): Tensor {
    return convTranspose2d(x, this.w, {
      bias: this.b,
      padding: this.padding,
      stride: this.stride,
      outputPadding: this.outputPadding,
    });
  }
}

/**
 * Glow's zero-initialised output convolution: (conv3x3(x) + b) * exp(3 * logscale), so a flow
 * starts as the identity and the scale can still grow fast.
 */
export class ZeroConv {
  /** Weight, [Co, Ci, 3, 3], initially 0. */
  readonly w: Tensor;
  /** Bias, [Co], initially 0. */
  readonly b: Tensor;
  /** Per-channel log-scale, [Co], initially 0; the output is scaled by exp(3 * logscale). */
  readonly logscale: Tensor;

  /** Declares `weight`, `bias` and `logscale`, all zeros, in scope `s`. */
  constructor(s: Scope, cin: number, cout: number) {
    this.w = s.param("weight", [cout, cin, 3, 3], zeros);
    this.b = s.param("bias", [cout], zeros);
    this.logscale = s.param("logscale", [cout], zeros);
  }

  /** [N, Ci, H, W] -> [N, Co, H, W], recorded on the tape. */
  apply(x: Tensor): Tensor {
    return mul(conv2d(x, this.w, { bias: this.b, padding: 1 }), exp(scale(this.logscale, 3)));
  }
}

/**
 * Per-channel y = exp(a) x + b whose first call sets a and b from the batch it sees (zero mean,
 * unit variance per channel). The layer owns that "initialised" flag; checkpoints carry it, so a
 * loaded model never re-initialises.
 */
export class ActNorm {
  /** Per-channel log-scale, [C] (parameter `logscale`). */
  readonly a: Tensor;
  /** Per-channel bias, [C] (parameter `bias`). */
  readonly b: Tensor;
  /** Set once a and b were initialised from data (flag `initialized`). */
  readonly initialized: Flag;

  /** Declares `logscale`, `bias` and the `initialized` flag in scope `s`. */
  constructor(s: Scope, channels: number) {
    this.a = s.param("logscale", [channels], zeros);
    this.b = s.param("bias", [channels], zeros);
    this.initialized = s.flag("initialized");
  }

  /** exp(a) x + b on [N, C, ...], initialising a and b from `x` on the first call. */
  apply(x: Tensor): Tensor {
    if (!this.initialized.value) {
      actnormInit(x, this.a, this.b);
      this.initialized.value = true;
    }
    return actnorm(x, this.a, this.b);
  }
}

/**
 * Batch normalisation per channel with a learnt affine (gamma, beta) and running statistics.
 * `training` (default true) normalises with each batch's statistics and updates the running ones;
 * a model sets it false to sample or evaluate with the running statistics. The running mean and
 * variance are fixed tensors of the store, so checkpoints carry them.
 */
export class BatchNorm {
  /** Per-channel scale, [C] (parameter `gamma`), initially 1. */
  readonly gamma: Tensor;
  /** Per-channel shift, [C] (parameter `beta`), initially 0. */
  readonly beta: Tensor;
  /** Running mean, [C] (fixed tensor `running_mean`), initially 0. */
  readonly runningMean: Tensor;
  /** Running unbiased variance, [C] (fixed tensor `running_var`), initially 1. */
  readonly runningVar: Tensor;
  /** Decay of the running statistics: r = momentum r + (1 - momentum) batch. */
  readonly momentum: number;
  /** Added to the variance under the square root. */
  readonly eps: number;
  /** Batch statistics (true) or running statistics (false). */
  training = true;

  /** Declares `gamma`, `beta`, `running_mean` and `running_var` in scope `s`. */
  constructor(s: Scope, channels: number, o: { momentum?: number; eps?: number } = {}) {
    this.gamma = s.param("gamma", [channels], constant(1));
    this.beta = s.param("beta", [channels], zeros);
    this.runningMean = s.fixed("running_mean", [channels], zeros);
    this.runningVar = s.fixed("running_var", [channels], constant(1));
    this.momentum = o.momentum ?? 0.99;
    this.eps = o.eps ?? 1e-5;
  }

  /** [N, C, ...] -> same shape, recorded on the tape; updates the running statistics if training. */
  apply(x: Tensor): Tensor {
    return batchNorm(x, this.gamma, this.beta, {
      training: this.training,
      runningMean: this.runningMean,
      runningVar: this.runningVar,
      momentum: this.momentum,
      eps: this.eps,
    });
  }
}

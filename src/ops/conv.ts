// 2-D convolution (NCHW, cross-correlation, zero padding, symmetric or per side, stride 1 or 2)
// and its gradients.
// Kernels: shaders/conv.wgsl. Every pass is a register-blocked, barrier-free kernel reading
// zero-padded copies of its inputs:
//   forward  y  = corr(pad(x), pack(w)) + b
//   data     dx = for each phase (r_y, r_x) of dx modulo the stride: corr(pad(g), flipped
//                 sub-kernel of the taps that reach that phase), written with stride S
//   weight   dw = sum over chunks of output rows (split-K) of wgrad, added by reduceABC
//   bias     db = reduceABC(g) per channel
// 3x3 and 1x1 kernels at stride 1 (the hot shapes of Glow) have unrolled kernels; every other
// size and stride runs a generic one. A 1x1 stride-1 unpadded convolution is a batched matmul:
// each image is flattened to one row of H*W pixels, which needs no padded copy when the row
// length suits the kernel. Thin convolutions (Glow's coupling networks: packed kernel <= 64 KiB,
// rows of a multiple of 4 columns) run the `_u` variants: the packed kernel goes through one
// dedicated STORAGE|UNIFORM buffer read as a uniform (cheaper loads on lavapipe), outputs are
// stored as vec4s.
//
// Files by role: conv_geometry (shapes), conv_pack (padded and packed copies), conv_forward (the
// correlation and the forward pass), conv_data (data gradient), conv_weight (weight and bias).
import type { Conv2dOptions } from "./conv_geometry.ts";
import { conv2dBackwardData } from "./conv_data.ts";
import { conv2dForward } from "./conv_forward.ts";
import { conv2dBackwardBias, conv2dBackwardWeight } from "./conv_weight.ts";
import { accumulate, record } from "./tape.ts";
import type { Tensor } from "./tensor.ts";

export {
  type Conv2dOptions,
  type ConvGeometry,
  convGeometry,
  type Padding,
} from "./conv_geometry.ts";
export { conv2dBackwardBias, conv2dBackwardData, conv2dBackwardWeight, conv2dForward };

/**
 * y = conv2d(x, w) + bias, x [N, C, H, W], w [O, C, KH, KW], bias [O]; zero padding `padding`
 * (default floor((KH - 1) / 2)) on every side, or [top, bottom, left, right];
 * y [N, O, Ho, Wo], Ho = floor((H + top + bottom - KH) / S) + 1 (Wo likewise). Any kernel size;
 * stride 1 or 2. Only the gradients of inputs that require one are computed.
 */
export function conv2d(x: Tensor, w: Tensor, opts: Conv2dOptions = {}): Tensor {
  const out = conv2dForward(x, w, opts);
  const bias = opts.bias;
  return record(out, bias ? [x, w, bias] : [x, w], (g) => {
    if (x.requiresGrad) accumulate(x, conv2dBackwardData(g, w, x.shape, opts));
    if (w.requiresGrad) accumulate(w, conv2dBackwardWeight(g, x, w.shape, opts));
    if (bias?.requiresGrad) accumulate(bias, conv2dBackwardBias(g));
  });
}

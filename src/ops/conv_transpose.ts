// Transposed 2-D convolution (PyTorch's ConvTranspose2d, NCHW): the adjoint of conv2d, so it is
// built from conv2d's own passes (shaders/conv.wgsl) with the roles of input and output swapped:
//   forward  y  = conv2d's data gradient of x through w (a gather per output phase mod S) + b
//   data     dx = conv2d(g, w)               (the forward correlation)
//   weight   dw = conv2d's weight gradient with x as its output gradient and g as its input
//   bias     db = per-channel sum of g
// so each of them runs the register-blocked, barrier-free kernels conv2d runs.
import type { Padding } from "./conv_geometry.ts";
import { conv2dBackwardData } from "./conv_data.ts";
import { conv2dForward } from "./conv_forward.ts";
import { conv2dBackwardBias, conv2dBackwardWeight } from "./conv_weight.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, type Shape, type Tensor } from "./tensor.ts";

/** Options of `convTranspose2d` (PyTorch's names and defaults). */
export interface ConvTranspose2dOptions {
  /** Per-output-channel bias, shape [Cout]. */
  bias?: Tensor;
  /** Step between the input pixels' footprints in the output (default 1). */
  stride?: 1 | 2;
  /**
   * Rows and columns cropped from the full output (default 0): one number for every side, or
   * [top, bottom, left, right].
   */
  padding?: number | Padding;
  /** Rows and columns added at the bottom and right (default 0; less than the stride). */
  outputPadding?: number;
}

/** Output shape [N, Cout, Ho, Wo] of convTranspose2d; throws `flowgpu: convTranspose2d: ...`. */
export function convTranspose2dShape(
  xShape: Shape,
  wShape: Shape,
  opts: ConvTranspose2dOptions = {},
): Shape {
  const where = "flowgpu: convTranspose2d";
  const shapes = `x ${fmtShape(xShape)}, w ${fmtShape(wShape)}`;
  if (xShape.length !== 4) throw new Error(`${where}: x must be [N, Cin, H, W], got ${shapes}`);
  if (wShape.length !== 4) {
    throw new Error(`${where}: w must be [Cin, Cout, KH, KW], got ${shapes}`);
  }
  const [n, ci, h, w] = xShape;
  const [cw, co, kh, kw] = wShape;
  if (cw !== ci) {
    throw new Error(
      `${where}: channel mismatch: x has ${ci} channels, w [Cin, Cout, KH, KW] expects ${cw} ` +
        `(${shapes})`,
    );
  }
  if ([n, ci, h, w, co, kh, kw].some((d) => d < 1)) {
    throw new Error(`${where}: empty dimension in ${shapes}`);
  }
  const s = opts.stride ?? 1;
  if (s !== 1 && s !== 2) throw new Error(`${where}: stride must be 1 or 2, got ${s}`);
  const p = opts.padding ?? 0;
  const pads = typeof p === "number" ? [p, p, p, p] : p;
  if (
    !Array.isArray(pads) || pads.length !== 4 || !pads.every((v) => Number.isInteger(v) && v >= 0)
  ) {
    const got = Array.isArray(p) ? `[${p.join(", ")}]` : String(p);
    throw new Error(
      `${where}: padding must be an integer >= 0 or [top, bottom, left, right] of them, got ${got}`,
    );
  }
  const op = opts.outputPadding ?? 0;
  if (!Number.isInteger(op) || op < 0 || op >= s) {
    throw new Error(
      `${where}: outputPadding must be an integer in [0, stride) = [0, ${s}), got ${op}`,
    );
  }
  const [pt, pb, pl, pr] = pads;
  const ho = (h - 1) * s + kh - pt - pb + op;
  const wo = (w - 1) * s + kw - pl - pr + op;
  if (ho < 1 || wo < 1) {
    throw new Error(
      `${where}: padding ${fmtPad(p)} leaves no output of ${shapes} at stride ${s} ` +
        `(${ho} x ${wo})`,
    );
  }
  const b = opts.bias;
  if (b && (b.shape.length !== 1 || b.shape[0] !== co)) {
    throw new Error(`${where}: bias ${fmtShape(b.shape)} must be [${co}] for ${shapes}`);
  }
  return [n, co, ho, wo];
}

const fmtPad = (p: number | Padding) => (typeof p === "number" ? String(p) : `[${p.join(", ")}]`);

/**
 * y = convTranspose2d(x, w) + bias, PyTorch semantics: x [N, Cin, H, W], w [Cin, Cout, KH, KW],
 * bias [Cout]; each input pixel (iy, ix) adds x * w[c, :, ky, kx] at output
 * (iy*S - top + ky, ix*S - left + kx). y [N, Cout, Ho, Wo] with
 * Ho = (H - 1) S - top - bottom + KH + outputPadding (Wo likewise): with padding p on every side,
 * (H - 1) S - 2p + KH + outputPadding. It is the gradient of conv2d(., w) with respect to its
 * input, which is how it runs; only the gradients of inputs that require one are computed.
 */
export function convTranspose2d(x: Tensor, w: Tensor, opts: ConvTranspose2dOptions = {}): Tensor {
  const outShape = convTranspose2dShape(x.shape, w.shape, opts);
  // The convolution whose data gradient this is: input [N, Cout, Ho, Wo], output x's shape.
  const conv = { stride: opts.stride, padding: opts.padding ?? 0 };
  const bias = opts.bias;
  const y = conv2dBackwardData(x, w, outShape, conv, bias);
  return record(y, bias ? [x, w, bias] : [x, w], (g) => {
    if (x.requiresGrad) accumulate(x, conv2dForward(g, w, conv));
    if (w.requiresGrad) accumulate(w, conv2dBackwardWeight(x, g, w.shape, conv));
    if (bias?.requiresGrad) accumulate(bias, conv2dBackwardBias(g));
  });
}

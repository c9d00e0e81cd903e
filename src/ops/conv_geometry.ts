// Shapes of a convolution: the options, the sizes every pass derives from them, and the checks
// that name the shapes when they do not fit. Shared by every conv2d pass (see conv.ts).
import { fmtShape, type Shape, type Tensor } from "./tensor.ts";

export const FILE = "conv.wgsl";
export const MAX_GROUPS = 65535;
export const WG = 64;

/** Options of `conv2d`. */
export interface Conv2dOptions {
  /** Per-output-channel bias, shape [O]. */
  bias?: Tensor;
  /** Step of the kernel in both directions (default 1). */
  stride?: 1 | 2;
  /** Zero padding on every side; default floor((KH - 1) / 2), "same" for odd kernels. */
  padding?: number;
}

/** Sizes of one convolution. h, w, ho, wo are per-image rows/columns as the kernels see them. */
export interface ConvGeometry {
  n: number;
  c: number;
  h: number;
  w: number;
  o: number;
  kh: number;
  kw: number;
  s: number;
  p: number;
  ho: number;
  wo: number;
  /** Output shape [N, O, Ho, Wo] (before any flattening). */
  outShape: Shape;
}

/** Check shapes and options; throws `flowgpu: conv2d: ...` naming the shapes. */
export function convGeometry(xShape: Shape, wShape: Shape, opts: Conv2dOptions = {}): ConvGeometry {
  const shapes = `x ${fmtShape(xShape)}, w ${fmtShape(wShape)}`;
  if (xShape.length !== 4) {
    throw new Error(`flowgpu: conv2d: x must be [N, C, H, W], got ${shapes}`);
  }
  if (wShape.length !== 4) {
    throw new Error(`flowgpu: conv2d: w must be [O, C, KH, KW], got ${shapes}`);
  }
  const [n, c, h, w] = xShape;
  const [o, cw, kh, kw] = wShape;
  if (cw !== c) {
    throw new Error(
      `flowgpu: conv2d: channel mismatch: x has ${c} channels, w expects ${cw} (${shapes})`,
    );
  }
  if (o < 1 || kh < 1 || kw < 1 || c < 1 || n < 1) {
    throw new Error(`flowgpu: conv2d: empty dimension in ${shapes}`);
  }
  const s = opts.stride ?? 1;
  if (s !== 1 && s !== 2) throw new Error(`flowgpu: conv2d: stride must be 1 or 2, got ${s}`);
  const p = opts.padding ?? Math.floor((kh - 1) / 2);
  if (!Number.isInteger(p) || p < 0) {
    throw new Error(`flowgpu: conv2d: padding must be an integer >= 0, got ${p}`);
  }
  const ho = Math.floor((h + 2 * p - kh) / s) + 1;
  const wo = Math.floor((w + 2 * p - kw) / s) + 1;
  if (ho < 1 || wo < 1) {
    throw new Error(
      `flowgpu: conv2d: kernel ${kh}x${kw} does not fit ${shapes} with padding ${p}, stride ${s}`,
    );
  }
  const b = opts.bias;
  if (b && (b.shape.length !== 1 || b.shape[0] !== o)) {
    throw new Error(`flowgpu: conv2d: bias ${fmtShape(b.shape)} must be [${o}] for ${shapes}`);
  }
  const outShape = [n, o, ho, wo];
  if (kh === 1 && kw === 1 && s === 1 && p === 0) {
    return { n, c, h: 1, w: h * w, o, kh, kw, s, p, ho: 1, wo: ho * wo, outShape };
  }
  return { n, c, h, w, o, kh, kw, s, p, ho, wo, outShape };
}

export const roundUp = (v: number, m: number) => Math.ceil(v / m) * m;

/** Throws unless g has the shape of the convolution's output. */
export function checkGrad(g: Tensor, geo: ConvGeometry, xShape: Shape, wShape: Shape): void {
  const want = geo.outShape;
  if (g.shape.length !== 4 || g.shape.some((d, i) => d !== want[i])) {
    throw new Error(
      `flowgpu: conv2d: gradient ${fmtShape(g.shape)} does not match the output ${
        fmtShape(want)
      } of x ${fmtShape(xShape)}, w ${fmtShape(wShape)}`,
    );
  }
}

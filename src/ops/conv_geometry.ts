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
  /**
   * Zero padding: one number for every side (default floor((KH - 1) / 2), "same" for odd
   * kernels), or [top, bottom, left, right] (e.g. TensorFlow's "same" at stride 2 on even sizes,
   * [1, 2, 1, 2] for a 5x5 kernel).
   */
  padding?: number | Padding;
}

/** Zero padding per side: [top, bottom, left, right]. */
export type Padding = readonly [number, number, number, number];

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
  /** Zero padding at the top, bottom, left and right. */
  pt: number;
  pb: number;
  pl: number;
  pr: number;
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
  const [pt, pb, pl, pr] = paddingOf(opts.padding, kh, "conv2d");
  const ho = Math.floor((h + pt + pb - kh) / s) + 1;
  const wo = Math.floor((w + pl + pr - kw) / s) + 1;
  if (ho < 1 || wo < 1) {
    const pad = typeof opts.padding === "object" ? `[${opts.padding.join(", ")}]` : pt;
    throw new Error(
      `flowgpu: conv2d: kernel ${kh}x${kw} does not fit ${shapes} with padding ${pad}, stride ${s}`,
    );
  }
  const b = opts.bias;
  if (b && (b.shape.length !== 1 || b.shape[0] !== o)) {
    throw new Error(`flowgpu: conv2d: bias ${fmtShape(b.shape)} must be [${o}] for ${shapes}`);
  }
  const outShape = [n, o, ho, wo];
  const pads = { pt, pb, pl, pr };
  if (kh === 1 && kw === 1 && s === 1 && pt + pb + pl + pr === 0) {
    return { n, c, h: 1, w: h * w, o, kh, kw, s, ...pads, ho: 1, wo: ho * wo, outShape };
  }
  return { n, c, h, w, o, kh, kw, s, ...pads, ho, wo, outShape };
}

/**
 * [top, bottom, left, right] from a `padding` option (default floor((k - 1) / 2) on every side);
 * throws `flowgpu: <op>: padding must be ...` unless every entry is an integer >= 0.
 */
export function paddingOf(padding: number | Padding | undefined, k: number, op: string): Padding {
  const p = padding ?? Math.floor((k - 1) / 2);
  const pads: Padding = typeof p === "number" ? [p, p, p, p] : p;
  const ok = Array.isArray(pads) && pads.length === 4 &&
    pads.every((p) => Number.isInteger(p) && p >= 0);
  if (!ok) {
    const got = Array.isArray(p) ? `[${p.join(", ")}]` : String(p);
    throw new Error(
      `flowgpu: ${op}: padding must be an integer >= 0 or [top, bottom, left, right] of them, ` +
        `got ${got}`,
    );
  }
  return pads;
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

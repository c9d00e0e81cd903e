// PNG output for sample grids and loss curves, using imagescript (pure JS/wasm, no native deps)
// only as an RGBA bitmap container and PNG encoder: everything else is drawn pixel by pixel.
// Text uses a built-in 3x5 bitmap font, since imagescript renders text only from a font file.

import { Image } from "imagescript";
import { writeFileAtomic } from "./checkpoint.ts";

export interface GridOptions {
  /** Maps float values lo..hi to 0..255 (clamped); without it values are taken as 0..255. */
  range?: [number, number];
  /** Gap in pixels between images and around the grid (default 2). */
  pad?: number;
  /** Grey level of the gaps (default 96). */
  background?: number;
}

const NAN_RGB = [255, 0, 0]; // a NaN pixel shows as pure red, so a diverged sample is obvious

async function encode(img: Image): Promise<Uint8Array> {
  // A fixed creation time keeps the bytes reproducible.
  return await img.encode(1, { creationTime: 0, software: "flowgpu" });
}

/**
 * Tiles `n` images (NCHW, `channels` 1 or 3, each h x w) into a grid `cols` wide and returns PNG
 * bytes. Uint8Array values are used as is; float values are rounded and clamped to 0..255 after
 * the optional `range` mapping. NaN pixels are drawn red.
 */
export async function imageGrid(
  images: Float32Array | Uint8Array,
  n: number,
  channels: number,
  h: number,
  w: number,
  cols: number,
  opts: GridOptions = {},
): Promise<Uint8Array> {
  if (channels !== 1 && channels !== 3) {
    throw new Error(`flowgpu: imageGrid: channels must be 1 or 3, got ${channels}`);
  }
  if (images.length !== n * channels * h * w) {
    throw new Error(
      `flowgpu: imageGrid: ${images.length} values but ${n} images of [${channels}, ${h}, ${w}] ` +
        `need ${n * channels * h * w}`,
    );
  }
  if (!(Number.isInteger(cols) && cols >= 1) || !(n >= 1)) {
    throw new Error(
      `flowgpu: imageGrid: need n >= 1 and an integer cols >= 1, got n=${n} cols=${cols}`,
    );
  }
  const pad = opts.pad ?? 2;
  const rows = Math.ceil(n / cols);
  const img = new Image(cols * w + (cols + 1) * pad, rows * h + (rows + 1) * pad);
  const bg = opts.background ?? 96;
  img.fill(((bg << 24) | (bg << 16) | (bg << 8) | 0xff) >>> 0);
  const [lo, hi] = opts.range ?? [0, 255];
  const scale = 255 / (hi - lo);
  const bitmap = img.bitmap;
  const plane = h * w;
  for (let i = 0; i < n; i++) {
    const ox = pad + (i % cols) * (w + pad), oy = pad + Math.floor(i / cols) * (h + pad);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const p = 4 * ((oy + y) * img.width + ox + x);
        const src = i * channels * plane + y * w + x;
        let nan = false;
        for (let c = 0; c < 3; c++) {
          const v = images[src + (channels === 3 ? c * plane : 0)];
          nan ||= Number.isNaN(v);
          bitmap[p + c] = (v - lo) * scale; // the clamped array rounds and clamps to 0..255
        }
        if (nan) bitmap.set(NAN_RGB, p);
        bitmap[p + 3] = 255;
      }
    }
  }
  return await encode(img);
}

/** Writes PNG (or any) bytes to `path` atomically, creating the parent folder. */
export function writePng(path: string, bytes: Uint8Array): void {
  writeFileAtomic(path, bytes);
}

// ---- line charts ----

export interface Series {
  name: string;
  values: [number, number][];
}

export interface ChartOptions {
  width: number;
  height: number;
  title?: string;
  /** Fixed y range; points outside are clipped (useful when early losses dwarf the rest). */
  yRange?: [number, number];
}

// matplotlib's tab10 colours.
const PALETTE = [0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f];
const BLACK = 0x000000, GRID = 0xe4e4e4, WHITE = 0xffffff, FRAME = 0xa0a0a0;

// 3x5 glyphs, rows top to bottom; lower case is drawn as upper case, unknown characters as "?".
const FONT: Record<string, string> = {
  "0": "111 101 101 101 111",
  "1": "010 110 010 010 111",
  "2": "111 001 111 100 111",
  "3": "111 001 111 001 111",
  "4": "101 101 111 001 001",
  "5": "111 100 111 001 111",
  "6": "111 100 111 101 111",
  "7": "111 001 001 001 001",
  "8": "111 101 111 101 111",
  "9": "111 101 111 001 111",
  "A": "010 101 111 101 101",
  "B": "110 101 110 101 110",
  "C": "011 100 100 100 011",
  "D": "110 101 101 101 110",
  "E": "111 100 110 100 111",
  "F": "111 100 110 100 100",
  "G": "011 100 101 101 011",
  "H": "101 101 111 101 101",
  "I": "111 010 010 010 111",
  "J": "001 001 001 101 010",
  "K": "101 101 110 101 101",
  "L": "100 100 100 100 111",
  "M": "101 111 111 101 101",
  "N": "110 101 101 101 101",
  "O": "010 101 101 101 010",
  "P": "110 101 110 100 100",
  "Q": "010 101 101 110 011",
  "R": "110 101 110 101 101",
  "S": "011 100 010 001 110",
  "T": "111 010 010 010 010",
  "U": "101 101 101 101 111",
  "V": "101 101 101 101 010",
  "W": "101 101 111 111 101",
  "X": "101 101 010 101 101",
  "Y": "101 101 010 010 010",
  "Z": "111 001 010 100 111",
  ".": "000 000 000 000 010",
  "-": "000 000 111 000 000",
  "+": "000 010 111 010 000",
  "_": "000 000 000 000 111",
  ":": "000 010 000 010 000",
  "/": "001 001 010 100 100",
  "(": "010 100 100 100 010",
  ")": "010 001 001 001 010",
  "=": "000 111 000 111 000",
  ",": "000 000 000 010 100",
  "%": "101 001 010 100 101",
  " ": "000 000 000 000 000",
  "?": "111 001 010 000 010",
};

class Canvas {
  readonly img: Image;
  constructor(readonly width: number, readonly height: number) {
    this.img = new Image(width, height);
  }

  set(x: number, y: number, rgb: number): void {
    x = Math.round(x), y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const p = 4 * (y * this.width + x), b = this.img.bitmap;
    b[p] = rgb >> 16, b[p + 1] = (rgb >> 8) & 255, b[p + 2] = rgb & 255, b[p + 3] = 255;
  }

  rect(x0: number, y0: number, x1: number, y1: number, rgb: number): void {
    for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) this.set(x, y, rgb);
  }

  /** Bresenham line, keeping only pixels inside `clip` [x0, y0, x1, y1]. */
  line(ax: number, ay: number, bx: number, by: number, rgb: number, clip: number[], thick = 1) {
    ax = Math.round(ax), ay = Math.round(ay), bx = Math.round(bx), by = Math.round(by);
    const dx = Math.abs(bx - ax), dy = -Math.abs(by - ay);
    const sx = ax < bx ? 1 : -1, sy = ay < by ? 1 : -1;
    let err = dx + dy;
    for (let guard = 0; guard <= dx - dy; guard++) {
      for (let t = 0; t < thick; t++) {
        const ty = ay - t; // thicker lines grow upwards
        if (ax >= clip[0] && ty >= clip[1] && ax <= clip[2] && ty <= clip[3]) this.set(ax, ty, rgb);
      }
      if (ax === bx && ay === by) break;
      const e2 = 2 * err;
      if (e2 >= dy) err += dy, ax += sx;
      if (e2 <= dx) err += dx, ay += sy;
    }
  }

  text(x: number, y: number, s: string, rgb: number, scale: number): void {
    for (const ch of s.toUpperCase()) {
      const glyph = (FONT[ch] ?? FONT["?"]).replaceAll(" ", "");
      for (let i = 0; i < 15; i++) {
        if (glyph[i] === "1") {
          const gx = x + (i % 3) * scale, gy = y + Math.floor(i / 3) * scale;
          this.rect(gx, gy, gx + scale - 1, gy + scale - 1, rgb);
        }
      }
      x += 4 * scale;
    }
  }
}

/** About `count` round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of 10). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + 1e-9 * step; k++) {
    ticks.push(Number((k * step).toPrecision(12)));
  }
  return ticks;
}

function tickLabel(v: number, step: number): string {
  if (v === 0) return "0";
  if (Math.abs(v) >= 1e5 || step < 1e-4) return v.toExponential(1).replace("e+", "e");
  return v.toFixed(Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
}

function span(values: number[], fallback: [number, number]): [number, number] {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (Number.isFinite(v)) lo = Math.min(lo, v), hi = Math.max(hi, v);
  if (lo > hi) return fallback;
  if (lo === hi) {
    const d = Math.abs(lo) * 0.05 || 1;
    return [lo - d, hi + d];
  }
  return [lo, hi];
}

/**
 * Plots each series' (x, y) points as a polyline (non-finite points break the line) with axes,
 * grid lines, labelled ticks, an optional title and a legend; returns PNG bytes.
 */
export async function lineChartPng(series: Series[], opts: ChartOptions): Promise<Uint8Array> {
  const { width, height } = opts;
  if (!(Number.isInteger(width) && Number.isInteger(height) && width >= 64 && height >= 48)) {
    throw new Error(
      `flowgpu: lineChartPng: size must be integers of at least 64x48, got ${width}x${height}`,
    );
  }
  const s = width >= 400 && height >= 250 ? 2 : 1; // font scale
  const charW = 4 * s, charH = 5 * s;
  const points = series.flatMap((ser) => ser.values);
  const [xlo, xhi] = span(points.map((p) => p[0]), [0, 1]);
  const [ylo0, yhi0] = opts.yRange ?? span(points.map((p) => p[1]), [0, 1]);
  const yPad = (yhi0 - ylo0) * (opts.yRange ? 0 : 0.05);
  const [ylo, yhi] = [ylo0 - yPad, yhi0 + yPad];
  const xTicks = niceTicks(xlo, xhi, Math.max(2, Math.floor(width / 120)));
  const yTicks = niceTicks(ylo, yhi, Math.max(2, Math.floor(height / 60)));
  const xStep = xTicks.length > 1 ? xTicks[1] - xTicks[0] : 1;
  const yStep = yTicks.length > 1 ? yTicks[1] - yTicks[0] : 1;
  const yLabels = yTicks.map((v) => tickLabel(v, yStep));
  const xLabels = xTicks.map((v) => tickLabel(v, xStep));

  const left = 6 + Math.max(0, ...yLabels.map((l) => l.length)) * charW + 4;
  const top = opts.title ? charH + 10 : 8;
  const right = width - 1 - Math.max(8, Math.ceil((xLabels.at(-1)?.length ?? 0) * charW / 2) + 2);
  const bottom = height - 1 - (charH + 10);
  if (right - left < 16 || bottom - top < 16) {
    throw new Error(`flowgpu: lineChartPng: ${width}x${height} leaves no room for the plot`);
  }
  const px = (x: number) => left + (x - xlo) / (xhi - xlo) * (right - left);
  const py = (y: number) => bottom - (y - ylo) / (yhi - ylo) * (bottom - top);

  const c = new Canvas(width, height);
  c.rect(0, 0, width - 1, height - 1, WHITE);
  if (opts.title) {
    c.text(Math.round((width - opts.title.length * charW) / 2), 4, opts.title, BLACK, s);
  }
  xTicks.forEach((v, i) => {
    const x = Math.round(px(v));
    c.rect(x, top, x, bottom - 1, GRID);
    c.rect(x, bottom + 1, x, bottom + 3, BLACK);
    c.text(x - Math.floor(xLabels[i].length * charW / 2) + s, bottom + 6, xLabels[i], BLACK, s);
  });
  yTicks.forEach((v, i) => {
    const y = Math.round(py(v));
    c.rect(left + 1, y, right, y, GRID);
    c.rect(left - 3, y, left - 1, y, BLACK);
    c.text(left - 5 - yLabels[i].length * charW, y - Math.floor(charH / 2), yLabels[i], BLACK, s);
  });
  const clip = [left + 1, top, right, bottom - 1];
  series.forEach((ser, k) => {
    const rgb = PALETTE[k % PALETTE.length];
    let prev: [number, number] | undefined;
    for (const [x, y] of ser.values) {
      if (!Number.isFinite(x) || !Number.isFinite(y)) {
        prev = undefined;
        continue;
      }
      const cur: [number, number] = [px(x), py(y)];
      c.line(...(prev ?? cur), ...cur, rgb, clip, s);
      // Sparse series (a few evaluations) get a marker, so a lone point is visible.
      if (ser.values.length <= 50) {
        for (let d = -2; d <= 2; d++) {
          c.line(cur[0] - 2, cur[1] + d, cur[0] + 2, cur[1] + d, rgb, clip, s);
        }
      }
      prev = cur;
    }
  });
  c.rect(left, top, left, bottom, BLACK); // axes drawn last so curves never hide them
  c.rect(left, bottom, right, bottom, BLACK);

  const named = series.filter((ser) => ser.name.length > 0);
  if (named.length > 0) {
    const lw = 6 + 4 * charW + Math.max(...named.map((ser) => ser.name.length)) * charW;
    const lh = 4 + series.length * (charH + 4);
    const lx = right - lw - 4, ly = top + 4;
    c.rect(lx, ly, lx + lw, ly + lh, FRAME);
    c.rect(lx + 1, ly + 1, lx + lw - 1, ly + lh - 1, WHITE);
    series.forEach((ser, k) => {
      const y = ly + 4 + k * (charH + 4);
      c.rect(
        lx + 4,
        y + Math.floor(charH / 2),
        lx + 4 + 3 * charW,
        y + Math.floor(charH / 2) + s - 1,
        PALETTE[k % PALETTE.length],
      );
      c.text(lx + 4 + 4 * charW, y, ser.name, BLACK, s);
    });
  }
  return await encode(c.img);
}

// Glyph-10 (vae-disentangle.md §4.6), the Fashion-MNIST substitute: 28x28 grey images of ten
// procedural shapes drawn as strokes (or filled, p = 0.3) under a random style: stroke width,
// rotation, shear, scale, translation and a sinusoidal wobble. The class is the labelled factor;
// the style is the unknown one, recorded as continuous values. 60,000 train + 10,000 test images,
// classes balanced (image i has class i mod 10).
import {
  checkSeed,
  type Factor,
  itemRng,
  type LabelledSet,
  makeLabelledSet,
  smoothstep,
} from "./labelled.ts";

/** Class names, in factor order. */
export const GLYPH10_CLASSES = [
  "circle",
  "square",
  "triangle",
  "cross",
  "star",
  "ring",
  "heart",
  "diamond",
  "arrow",
  "H",
] as const;

/** The one factor: the glyph class. */
export const GLYPH10_FACTORS: readonly Factor[] = [
  { name: "class", size: 10, meaning: GLYPH10_CLASSES },
];

/** Continuous style of each image (angles in degrees, lengths in pixels; filled is 0 or 1). */
export const GLYPH10_VALUES = [
  "stroke_width",
  "rotation",
  "shear",
  "scale",
  "tx",
  "ty",
  "wobble",
  "filled",
] as const;

const SIDE = 28;
const TRAIN = 60000, TEST = 10000;
/** Half the glyph box at scale 1, in pixels (a 20-px box like MNIST's digits). */
const HALF = 10;

type Ring = [number, number][];
const circle = (r: number, n = 48): Ring =>
  Array.from(
    { length: n },
    (_, i) => [r * Math.cos((2 * Math.PI * i) / n), r * Math.sin((2 * Math.PI * i) / n)],
  );

// Closed outlines in a [−1, 1]² frame (y down). Every glyph is a set of closed rings, so the
// outline and the filled (even-odd) version both exist for all ten.
const GLYPHS: Ring[][] = [
  [circle(1)],
  [[[-0.85, -0.85], [0.85, -0.85], [0.85, 0.85], [-0.85, 0.85]]],
  [[[0, -1], [0.95, 0.75], [-0.95, 0.75]]],
  [[
    [-0.3, -1],
    [0.3, -1],
    [0.3, -0.3],
    [1, -0.3],
    [1, 0.3],
    [0.3, 0.3],
    [0.3, 1],
    [-0.3, 1],
    [-0.3, 0.3],
    [-1, 0.3],
    [-1, -0.3],
    [-0.3, -0.3],
  ]],
  [Array.from({ length: 10 }, (_, i) => {
    const r = i % 2 ? 0.42 : 1, t = -Math.PI / 2 + (Math.PI * i) / 5;
    return [r * Math.cos(t), r * Math.sin(t) + 0.08] as [number, number];
  })],
  [circle(1), circle(0.55, 36)],
  [Array.from({ length: 56 }, (_, i) => {
    const t = (2 * Math.PI * i) / 56;
    const x = 16 * Math.sin(t) ** 3;
    const y = -(13 * Math.cos(t) - 5 * Math.cos(2 * t) - 2 * Math.cos(3 * t) - Math.cos(4 * t));
    return [x / 17, (y - 2.5) / 15] as [number, number];
  })],
  [[[0, -1], [0.7, 0], [0, 1], [-0.7, 0]]],
  [[[-1, -0.25], [0.15, -0.25], [0.15, -0.75], [1, 0], [0.15, 0.75], [0.15, 0.25], [-1, 0.25]]],
  [[
    [-0.9, -1],
    [-0.5, -1],
    [-0.5, -0.17],
    [0.5, -0.17],
    [0.5, -1],
    [0.9, -1],
    [0.9, 1],
    [0.5, 1],
    [0.5, 0.17],
    [-0.5, 0.17],
    [-0.5, 1],
    [-0.9, 1],
  ]],
];

/** The style of image `i`, drawn from its own generator. */
export interface GlyphStyle {
  cls: number;
  strokeWidth: number;
  /** Degrees. */
  rotation: number;
  shear: number;
  scale: number;
  tx: number;
  ty: number;
  /** Wobble amplitude (px), wavelength (px) and phases. */
  wobble: number;
  wavelength: number;
  phaseX: number;
  phaseY: number;
  filled: boolean;
}

/** The class and style of image `i` of a Glyph-10 set made with `seed`. */
export function glyphStyle(seed: number, i: number): GlyphStyle {
  const rng = itemRng(seed, i);
  const u = (lo: number, hi: number) => lo + (hi - lo) * rng.next();
  return {
    cls: i % 10,
    strokeWidth: u(1.2, 3.5),
    rotation: u(-20, 20),
    shear: u(-0.3, 0.3),
    scale: u(0.7, 1.0),
    tx: u(-2, 2),
    ty: u(-2, 2),
    wobble: u(0, 1),
    wavelength: u(6, 14),
    phaseX: u(0, 2 * Math.PI),
    phaseY: u(0, 2 * Math.PI),
    filled: rng.next() < 0.3,
  };
}

/** Renders a glyph of `style` as 28x28 bytes (white ink on black) into `out` from `offset`. */
export function renderGlyph(style: GlyphStyle, out: Uint8Array, offset = 0): void {
  // Affine map from the glyph frame to pixels: scale, shear (x += k·y), rotation, translation.
  const t = (style.rotation * Math.PI) / 180, c = Math.cos(t), s = Math.sin(t);
  const k = style.shear, m = HALF * style.scale;
  const ox = SIDE / 2 + style.tx, oy = SIDE / 2 + style.ty;
  const rings = GLYPHS[style.cls].map((ring) =>
    ring.map(([x, y]) => {
      const sx = m * (x + k * y), sy = m * y;
      return [ox + c * sx - s * sy, oy + s * sx + c * sy];
    })
  );
  // Edges as flat arrays for the per-pixel loop.
  const ax: number[] = [], ay: number[] = [], bx: number[] = [], by: number[] = [];
  let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
  for (const ring of rings) {
    for (let i = 0; i < ring.length; i++) {
      const [x0, y0] = ring[i], [x1, y1] = ring[(i + 1) % ring.length];
      ax.push(x0), ay.push(y0), bx.push(x1), by.push(y1);
      minX = Math.min(minX, x0), maxX = Math.max(maxX, x0);
      minY = Math.min(minY, y0), maxY = Math.max(maxY, y0);
    }
  }
  const halfW = style.strokeWidth / 2, A = style.wobble, w = (2 * Math.PI) / style.wavelength;
  const reach = halfW + A + 1;
  const xa = Math.max(0, Math.floor(minX - reach)), xb = Math.min(SIDE, Math.ceil(maxX + reach));
  const ya = Math.max(0, Math.floor(minY - reach)), yb = Math.min(SIDE, Math.ceil(maxY + reach));
  out.fill(0, offset, offset + SIDE * SIDE);
  const n = ax.length;
  for (let y = ya; y < yb; y++) {
    for (let x = xa; x < xb; x++) {
      // Wobble: sample the glyph at a sinusoidally displaced point (a smooth warp of the image).
      const px = x + 0.5 + A * Math.sin(w * (y + 0.5) + style.phaseX);
      const py = y + 0.5 + A * Math.sin(w * (x + 0.5) + style.phaseY);
      let d2 = Infinity, inside = false;
      for (let e = 0; e < n; e++) {
        const ex = bx[e] - ax[e], ey = by[e] - ay[e];
        const wx = px - ax[e], wy = py - ay[e];
        const h = Math.min(1, Math.max(0, (wx * ex + wy * ey) / (ex * ex + ey * ey)));
        const dx = wx - h * ex, dy = wy - h * ey;
        d2 = Math.min(d2, dx * dx + dy * dy);
        // Even-odd crossing test (holes of the ring glyph come out right).
        if ((ay[e] > py) !== (by[e] > py) && px < ax[e] + ((py - ay[e]) * ex) / ey) {
          inside = !inside;
        }
      }
      const d = Math.sqrt(d2);
      const sdf = style.filled && inside ? -d : d; // filled: the interior plus the stroke
      out[offset + y * SIDE + x] = Math.round(255 * smoothstep(-0.5, 0.5, halfW - sdf));
    }
  }
}

/** Glyph-10: 70,000 images (the first 60,000 train, the last 10,000 test), 28x28x1. */
export function glyph10(opts: { seed?: number } = {}): LabelledSet {
  const name = "glyph10";
  const seed = checkSeed(name, opts.seed);
  return makeLabelledSet({
    name,
    channels: 1,
    height: SIDE,
    width: SIDE,
    count: TRAIN + TEST,
    factors: GLYPH10_FACTORS,
    values: GLYPH10_VALUES,
    seed,
    trainCount: TRAIN,
    render: (i, out, offset) => renderGlyph(glyphStyle(seed, i), out, offset),
    label(i, out, offset) {
      out[offset] = i % 10;
    },
    value(i, out, offset) {
      const st = glyphStyle(seed, i);
      out.set(
        [st.strokeWidth, st.rotation, st.shear, st.scale, st.tx, st.ty, st.wobble, +st.filled],
        offset,
      );
    },
  });
}

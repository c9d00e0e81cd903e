// Shapes2.5D (vae-disentangle.md §4.3): a 3D Shapes substitute with the same six factors and
// cardinalities (floor hue 10, wall hue 10, object hue 10, scale 8, shape 4, orientation 15), one
// image per combination (480,000), rendered on the CPU from the factors alone: a room corner
// (two wall panes and a floor with perspective lines, all moving with the camera yaw) and one
// object with a soft shadow. Edges are anti-aliased with smoothstep coverage of signed distances.
// Index order is 3D Shapes' (orientation fastest), so index = mixed-radix number of the factors.
import {
  checkSeed,
  checkSize,
  coverage,
  type Factor,
  gridIndex,
  gridValues,
  hsv,
  type LabelledSet,
  makeLabelledSet,
  smoothstep,
  toByte,
} from "./labelled.ts";

const linspace = (a: number, b: number, n: number) =>
  Array.from({ length: n }, (_, i) => Number((a + ((b - a) * i) / (n - 1)).toPrecision(12)));
const HUES = Array.from({ length: 10 }, (_, i) => i / 10);

/** Object shapes, in factor order. */
export const SHAPES25D_SHAPES = ["box", "cylinder", "sphere", "capsule"] as const;

/** The six factors, in 3D Shapes' order (the last varies fastest along the index). */
export const SHAPES25D_FACTORS: readonly Factor[] = [
  { name: "floor_hue", size: 10, meaning: HUES },
  { name: "wall_hue", size: 10, meaning: HUES },
  { name: "object_hue", size: 10, meaning: HUES },
  { name: "scale", size: 8, meaning: linspace(0.75, 1.25, 8) },
  { name: "shape", size: 4, meaning: SHAPES25D_SHAPES },
  { name: "orientation", size: 15, meaning: linspace(-30, 30, 15) },
];

const SIZES = SHAPES25D_FACTORS.map((f) => f.size);
/** Images in the full set: every combination once. */
export const SHAPES25D_COUNT = SIZES.reduce((a, b) => a * b, 1);
const BLOCK = SHAPES25D_COUNT / 100; // combinations per (floor hue, wall hue)

/** Whether (floor hue, wall hue) belongs to the correlated subset: (floor − wall) mod 10 ∈ {0,1,9}. */
export function isCorrelatedPair(floor: number, wall: number): boolean {
  const d = (((floor - wall) % 10) + 10) % 10;
  return d === 0 || d === 1 || d === 9;
}

/** Images in the correlated subset (3 of the 10 wall hues for each floor hue). */
export const SHAPES25D_CORR_COUNT = (SHAPES25D_COUNT * 3) / 10;

/** Full-set index of image `j` of the correlated subset (ascending in j). */
export function correlatedToFull(j: number): number {
  const pair = Math.floor(j / BLOCK), rest = j % BLOCK;
  const floor = Math.floor(pair / 3);
  // The three wall hues of this floor hue in ascending order, so the subset keeps index order.
  const walls = [floor - 1, floor, floor + 1].map((w) => (w + 10) % 10).sort((a, b) => a - b);
  return (floor * 10 + walls[pair % 3]) * BLOCK + rest;
}

/** Correlated-subset index of full-set index `i`, or −1 when `i` is not in the subset. */
export function fullToCorrelated(i: number): number {
  const floor = Math.floor(i / (10 * BLOCK)), wall = Math.floor(i / BLOCK) % 10;
  if (!isCorrelatedPair(floor, wall)) return -1;
  const walls = [floor - 1, floor, floor + 1].map((w) => (w + 10) % 10).sort((a, b) => a - b);
  return (floor * 3 + walls.indexOf(wall)) * BLOCK + (i % BLOCK);
}

// Scratch colour planes reused across images of one size (rendering allocates nothing).
let scratch: { size: number; r: Float64Array; g: Float64Array; b: Float64Array } | undefined;
function planes(size: number) {
  if (scratch?.size !== size) {
    const n = size * size;
    scratch = { size, r: new Float64Array(n), g: new Float64Array(n), b: new Float64Array(n) };
  }
  return scratch;
}

/** Distance from (px, py) to the segment (ax, ay)-(bx, by). */
function segmentDistance(
  px: number,
  py: number,
  ax: number,
  ay: number,
  bx: number,
  by: number,
): number {
  const dx = bx - ax, dy = by - ay;
  const t = Math.min(1, Math.max(0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)));
  return Math.hypot(px - ax - t * dx, py - ay - t * dy);
}

/** Approximate signed distance to an axis-aligned ellipse (Quilez's first-order estimate). */
function ellipseSdf(dx: number, dy: number, rx: number, ry: number): number {
  const k0 = Math.hypot(dx / rx, dy / ry);
  const k1 = Math.hypot(dx / (rx * rx), dy / (ry * ry));
  return k1 === 0 ? -Math.min(rx, ry) : (k0 * (k0 - 1)) / k1;
}

/** Signed distance to a convex polygon (max over edge half-planes; exact inside and at edges). */
function convexSdf(px: number, py: number, xs: number[], ys: number[]): number {
  const n = xs.length;
  // Orientation from the signed area, so either winding works.
  let area = 0;
  for (let i = 0; i < n; i++) {
    const j = (i + 1) % n;
    area += xs[i] * ys[j] - xs[j] * ys[i];
  }
  const sign = area > 0 ? 1 : -1;
  let d = -Infinity;
  for (let i = 0; i < n; i++) {
    const j = (i + 1) % n;
    const ex = xs[j] - xs[i], ey = ys[j] - ys[i];
    const len = Math.hypot(ex, ey);
    // Outward normal of a counter-clockwise (positive area) edge is (ey, −ex).
    const e = (sign * ((px - xs[i]) * ey - (py - ys[i]) * ex)) / len;
    if (e > d) d = e;
  }
  return d;
}

// Light from the upper left, towards the viewer (image y points down).
const LIGHT = (() => {
  const l = [-0.5, -0.6, 0.62];
  const n = Math.hypot(...l);
  return l.map((v) => v / n);
})();

/**
 * Renders the image with factor values `f` (floor hue, wall hue, object hue, scale, shape,
 * orientation indices) as 8-bit CHW RGB of side `size` into `out` from `offset`.
 */
export function renderShapes25d(
  f: ArrayLike<number>,
  size: number,
  out: Uint8Array,
  offset = 0,
): void {
  const S = size, u = S / 64; // u: one pixel of the 64-px design
  const yaw = (SHAPES25D_FACTORS[5].meaning![f[5]] as number) * Math.PI / 180;
  const sy = Math.sin(yaw), cyaw = Math.cos(yaw);
  const scale = SHAPES25D_FACTORS[3].meaning![f[3]] as number;
  const floorC = hsv(f[0] / 10, 0.9, 0.9), wallC = hsv(f[1] / 10, 0.9, 0.9);
  const objC = hsv(f[2] / 10, 0.9, 0.9);
  const { r: R, g: G, b: B } = planes(S);

  // Room: horizon, the wall corner and the floor's vanishing point all move with the yaw.
  const yh = 0.55 * S + 2 * u * sy;
  const xc = S / 2 + 0.4 * S * sy;
  const vx = S / 2 - 0.5 * S * sy;
  const lines = [vx - 0.75 * S, vx + 0.75 * S]; // where the two floor lines meet the bottom edge
  const halfLine = Math.max(0.35, 0.5 * u);
  for (let y = 0; y < S; y++) {
    const py = y + 0.5;
    const toFloor = smoothstep(-0.5, 0.5, py - yh);
    const ramp = 0.7 + 0.3 * Math.min(1, Math.max(0, (py - yh) / (S - yh)));
    for (let x = 0; x < S; x++) {
      const px = x + 0.5, p = y * S + x;
      const pane = 1 - 0.15 * smoothstep(-0.5, 0.5, px - xc);
      let fr = floorC[0] * ramp, fg = floorC[1] * ramp, fb = floorC[2] * ramp;
      if (toFloor > 0) {
        let ink = 0;
        for (const lx of lines) {
          const d = segmentDistance(px, py, vx, yh, lx, S);
          ink = Math.max(ink, smoothstep(-0.5, 0.5, halfLine - d));
        }
        const k = 1 - 0.25 * ink;
        fr *= k, fg *= k, fb *= k;
      }
      R[p] = wallC[0] * pane * (1 - toFloor) + fr * toFloor;
      G[p] = wallC[1] * pane * (1 - toFloor) + fg * toFloor;
      B[p] = wallC[2] * pane * (1 - toFloor) + fb * toFloor;
    }
  }

  // Object geometry: base size a, centred at (cx, cy); every shape stays within cy ± a.
  const a = 0.22 * S * scale, cx = S / 2, cy = 0.68 * S;
  const x0 = Math.max(0, Math.floor(cx - 1.35 * a)), x1 = Math.min(S, Math.ceil(cx + 1.35 * a));
  const y0 = Math.max(0, Math.floor(cy - 1.2 * a)), y1 = Math.min(S, Math.ceil(cy + 1.2 * a));

  // Soft shadow on the floor under the object (wider than the object, so drawn first).
  const shY = cy + 0.92 * a, shX = 1.05 * a, shR = 0.26 * a;
  for (let y = Math.max(0, Math.floor(shY - 1.2 * shR)); y < Math.min(S, shY + 1.2 * shR); y++) {
    for (let x = Math.max(0, Math.floor(cx - 1.2 * shX)); x < Math.min(S, cx + 1.2 * shX); x++) {
      const rho = Math.hypot((x + 0.5 - cx) / shX, (y + 0.5 - shY) / shR);
      const k = 1 - 0.45 * (1 - smoothstep(0.55, 1.15, rho));
      const p = y * S + x;
      R[p] *= k, G[p] *= k, B[p] *= k;
    }
  }

  const paint = (p: number, cov: number, shade: number, white = 0) => {
    if (cov <= 0) return;
    const r = (objC[0] + (1 - objC[0]) * white) * shade;
    const g = (objC[1] + (1 - objC[1]) * white) * shade;
    const b = (objC[2] + (1 - objC[2]) * white) * shade;
    R[p] += (r - R[p]) * cov, G[p] += (g - G[p]) * cov, B[p] += (b - B[p]) * cov;
  };
  const lambert = (nx: number, ny: number) => {
    const nz = Math.sqrt(Math.max(0, 1 - nx * nx - ny * ny));
    return Math.max(0, nx * LIGHT[0] + ny * LIGHT[1] + nz * LIGHT[2]);
  };

  const shape = SHAPES25D_SHAPES[f[4]];
  if (shape === "box") {
    // A square rotated by the yaw, with a side and a top face extruded up and to the right.
    const h = 0.62 * a, bx = cx, by = cy + 0.15 * a, ox = 0.3 * a, oy = -0.32 * a;
    const corner = (sx: number, syy: number): [number, number] => [
      bx + cyaw * sx * h - sy * syy * h,
      by + sy * sx * h + cyaw * syy * h,
    ];
    const [p1, p2, p3] = [corner(-1, -1), corner(1, -1), corner(1, 1)];
    const top = {
      xs: [p1[0], p2[0], p2[0] + ox, p1[0] + ox],
      ys: [p1[1], p2[1], p2[1] + oy, p1[1] + oy],
    };
    const side = {
      xs: [p2[0], p3[0], p3[0] + ox, p2[0] + ox],
      ys: [p2[1], p3[1], p3[1] + oy, p2[1] + oy],
    };
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const px = x + 0.5, py = y + 0.5, p = y * S + x;
        paint(p, coverage(convexSdf(px, py, side.xs, side.ys)), 0.62);
        paint(p, coverage(convexSdf(px, py, top.xs, top.ys)), 1, 0.3);
        const lu = cyaw * (px - bx) + sy * (py - by), lv = -sy * (px - bx) + cyaw * (py - by);
        const qx = Math.abs(lu) - h, qy = Math.abs(lv) - h;
        const d = Math.hypot(Math.max(qx, 0), Math.max(qy, 0)) + Math.min(Math.max(qx, qy), 0);
        paint(p, coverage(d), 0.85);
      }
    }
  } else if (shape === "cylinder") {
    // The ellipse (and with it the whole cylinder) narrows by up to 10 % of |sin yaw|.
    const w = 0.62 * a * (1 - 0.1 * Math.abs(sy)), ry = 0.28 * w;
    const yt = cy - 0.45 * a, yb = cy + 0.7 * a;
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const px = x + 0.5, py = y + 0.5, p = y * S + x, dx = px - cx;
        const qx = Math.abs(dx) - w, qy = Math.abs(py - (yt + yb) / 2) - (yb - yt) / 2;
        const rect = Math.hypot(Math.max(qx, 0), Math.max(qy, 0)) + Math.min(Math.max(qx, qy), 0);
        const body = Math.min(rect, ellipseSdf(dx, py - yb, w, ry));
        const nx = Math.min(1, Math.max(-1, dx / w));
        paint(p, coverage(body), 0.35 + 0.65 * lambert(nx, 0));
        paint(p, coverage(ellipseSdf(dx, py - yt, w, ry)), 0.95, 0.25);
      }
    }
  } else if (shape === "sphere") {
    const r = 0.78 * a, sx = cx, syc = cy + 0.12 * a;
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const dx = x + 0.5 - sx, dy = y + 0.5 - syc, p = y * S + x;
        const d = Math.hypot(dx, dy);
        const k = Math.min(1, d / r);
        const nx = d > 0 ? (dx / d) * k : 0, ny = d > 0 ? (dy / d) * k : 0;
        paint(p, coverage(d - r), 0.3 + 0.7 * lambert(nx, ny));
      }
    }
  } else {
    // Capsule: a vertical segment rounded by r, rotated by half the yaw about its centre.
    const r = 0.44 * a, half = 0.42 * a, qx0 = cx, qy0 = cy + 0.1 * a;
    const c2 = Math.cos(yaw / 2), s2 = Math.sin(yaw / 2);
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const dx = x + 0.5 - qx0, dy = y + 0.5 - qy0, p = y * S + x;
        const lu = c2 * dx + s2 * dy, lv = -s2 * dx + c2 * dy;
        const rv = lv - Math.min(half, Math.max(-half, lv));
        const d = Math.hypot(lu, rv);
        // Surface normal in the image plane: from the axis towards the pixel, rotated back.
        const k = Math.min(1, d / r) / (d || 1);
        const nu = lu * k, nv = rv * k;
        paint(p, coverage(d - r), 0.35 + 0.65 * lambert(c2 * nu - s2 * nv, s2 * nu + c2 * nv));
      }
    }
  }

  const plane = S * S;
  for (let p = 0; p < plane; p++) {
    out[offset + p] = toByte(R[p]);
    out[offset + plane + p] = toByte(G[p]);
    out[offset + 2 * plane + p] = toByte(B[p]);
  }
}

/**
 * Shapes2.5D: all 480,000 factor combinations (`correlated`: the 144,000 whose floor and wall
 * hues satisfy (floor − wall) mod 10 ∈ {0, 1, 9}), `size` x `size` x 3 (default 64). Images depend
 * on the factors only; the seed chooses the random 10 % test split.
 */
export function shapes25d(
  opts: { seed?: number; size?: number; correlated?: boolean } = {},
): LabelledSet {
  const name = opts.correlated ? "shapes2.5d-corr" : "shapes2.5d";
  const seed = checkSeed(name, opts.seed);
  const size = checkSize(name, opts.size, 64);
  const toFull = opts.correlated ? correlatedToFull : (i: number) => i;
  const f = new Int32Array(6);
  return makeLabelledSet({
    name,
    channels: 3,
    height: size,
    width: size,
    count: opts.correlated ? SHAPES25D_CORR_COUNT : SHAPES25D_COUNT,
    factors: SHAPES25D_FACTORS,
    values: [],
    seed,
    render(i, out, offset) {
      gridValues(SIZES, toFull(i), f);
      renderShapes25d(f, size, out, offset);
    },
    label: (i, out, offset) => gridValues(SIZES, toFull(i), out, offset),
    indexOf(v) {
      const i = gridIndex(name, SHAPES25D_FACTORS, v);
      if (!opts.correlated) return i;
      const j = fullToCorrelated(i);
      if (j < 0) {
        throw new Error(
          `flowgpu: ${name}: floor hue ${v[0]} and wall hue ${v[1]} are not in the correlated ` +
            `subset ((floor − wall) mod 10 must be 0, 1 or 9)`,
        );
      }
      return j;
    },
  });
}

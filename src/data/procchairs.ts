// ProcChairs (vae-disentangle.md §4.4), the 3D Chairs substitute: 1393 procedural chair models
// (each a union of cuboids from its own seed: seat, one of four leg types, one of four back types,
// armrests with p = 0.35, a grey albedo), each seen from 31 azimuths x 2 elevations. Rendered on
// the CPU by an orthographic z-buffer rasteriser of the cuboids' faces (two triangles each, back
// faces culled), Lambertian shading with a light fixed to the camera plus 0.35 ambient, on white,
// supersampled for anti-aliasing. The object is scaled so that its bounding sphere spans 80 % of
// the frame in every view, so the apparent size does not reveal the view.
import {
  checkSeed,
  checkSize,
  type Factor,
  gridIndex,
  gridValues,
  itemRng,
  type LabelledSet,
  makeLabelledSet,
  toByte,
} from "./labelled.ts";

/** Chair models (3D Chairs has 1393). */
export const PROCCHAIRS_MODELS = 1393;
const AZIMUTHS = 31, ELEVATIONS = [20, 30];

/** Factors in index order: model, elevation (20°, 30°), azimuth (k·360°/31). */
export const PROCCHAIRS_FACTORS: readonly Factor[] = [
  { name: "model", size: PROCCHAIRS_MODELS },
  { name: "elevation", size: 2, meaning: ELEVATIONS },
  {
    name: "azimuth",
    size: AZIMUTHS,
    meaning: Array.from({ length: AZIMUTHS }, (_, k) => Number(((k * 360) / AZIMUTHS).toFixed(6))),
  },
];
const SIZES = PROCCHAIRS_FACTORS.map((f) => f.size);

/** Images in the set: 1393 models x 62 views. */
export const PROCCHAIRS_COUNT = SIZES.reduce((a, b) => a * b, 1);

/** Leg and back types, in the order of the `legs` and `back` values. */
export const CHAIR_LEGS = ["posts", "splayed", "pedestal", "sled"] as const;
export const CHAIR_BACKS = ["panel", "slats", "rails", "none"] as const;

/** Continuous ground truth: the view in degrees and the model's shape parameters. */
export const PROCCHAIRS_VALUES = [
  "azimuth_deg",
  "elevation_deg",
  "legs",
  "back",
  "arms",
  "albedo",
] as const;

type V3 = [number, number, number];
/** An oriented cuboid: centre and three half-extent vectors (corners c ± a ± b ± d). */
export interface Cuboid {
  c: V3;
  axes: [V3, V3, V3];
}

/** The shape parameters of one chair model. */
export interface ChairModel {
  seatW: number;
  seatD: number;
  seatT: number;
  seatH: number;
  legs: number;
  legT: number;
  back: number;
  slats: number;
  backH: number;
  /** Degrees, leaning backwards. */
  backTilt: number;
  arms: boolean;
  albedo: number;
}

/** Model `id` of a set made with `seed` (the model's own generator, so models are independent). */
export function chairModel(seed: number, id: number): ChairModel {
  const rng = itemRng(seed, id, 7);
  const u = (lo: number, hi: number) => lo + (hi - lo) * rng.next();
  return {
    seatW: u(0.8, 1.2),
    seatD: u(0.8, 1.2),
    seatT: u(0.08, 0.2),
    seatH: u(0.8, 1.1),
    legs: rng.int(4),
    legT: u(0.05, 0.12),
    back: rng.int(4),
    slats: 2 + rng.int(4),
    backH: u(0.6, 1.4),
    backTilt: u(0, 20),
    arms: rng.next() < 0.35,
    albedo: u(0.35, 0.85),
  };
}

const box = (x0: number, x1: number, y0: number, y1: number, z0: number, z1: number): Cuboid => ({
  c: [(x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2],
  axes: [[(x1 - x0) / 2, 0, 0], [0, (y1 - y0) / 2, 0], [0, 0, (z1 - z0) / 2]],
});

const sub = (a: V3, b: V3): V3 => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const dot = (a: V3, b: V3) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a: V3, b: V3): V3 => [
  a[1] * b[2] - a[2] * b[1],
  a[2] * b[0] - a[0] * b[2],
  a[0] * b[1] - a[1] * b[0],
];
const scaled = (a: V3, s: number): V3 => [a[0] * s, a[1] * s, a[2] * s];
const unit = (a: V3): V3 => scaled(a, 1 / Math.hypot(...a));

/** A beam of square cross-section `t` from p to q (splayed legs). */
function beam(p: V3, q: V3, t: number): Cuboid {
  const along = scaled(sub(q, p), 0.5);
  const side = scaled(unit(cross(along, [1, 0, 0])), t / 2);
  const third = scaled(unit(cross(along, side)), t / 2);
  return { c: scaled([p[0] + q[0], p[1] + q[1], p[2] + q[2]], 0.5), axes: [along, side, third] };
}

/** Rotates a cuboid about the x axis through `pivot` by `deg` (positive leans +y towards −z). */
function leanBack(b: Cuboid, pivot: V3, deg: number): Cuboid {
  const t = (-deg * Math.PI) / 180, c = Math.cos(t), s = Math.sin(t);
  const rot = (v: V3): V3 => [v[0], v[1] * c - v[2] * s, v[1] * s + v[2] * c];
  const rel = rot(sub(b.c, pivot));
  return {
    c: [rel[0] + pivot[0], rel[1] + pivot[1], rel[2] + pivot[2]],
    axes: [rot(b.axes[0]), rot(b.axes[1]), rot(b.axes[2])],
  };
}

/** The cuboids of a chair (y up, the seat front towards +z, the floor at y = 0). */
export function chairCuboids(m: ChairModel): Cuboid[] {
  const w = m.seatW, d = m.seatD, h = m.seatH, t = m.seatT, lt = m.legT;
  const under = h - t;
  const parts: Cuboid[] = [box(-w / 2, w / 2, under, h, -d / 2, d / 2)];
  const lx = w / 2 - lt / 2 - 0.02, lz = d / 2 - lt / 2 - 0.02;
  const corners: [number, number][] = [[-lx, -lz], [lx, -lz], [-lx, lz], [lx, lz]];
  const legs = CHAIR_LEGS[m.legs];
  if (legs === "posts") {
    for (const [x, z] of corners) {
      parts.push(box(x - lt / 2, x + lt / 2, 0, under, z - lt / 2, z + lt / 2));
    }
  } else if (legs === "splayed") {
    for (const [x, z] of corners) {
      const leg = beam([x, under, z], [x + Math.sign(x) * 0.12, 0, z + Math.sign(z) * 0.12], lt);
      // A slanted beam's end face dips below its axis: lift it to stand on the floor (the top
      // then reaches a little into the seat, where it is hidden).
      leg.c[1] -= Math.min(...cuboidCorners(leg).map((p) => p[1]));
      parts.push(leg);
    }
  } else if (legs === "pedestal") {
    const col = Math.max(lt, 0.08), reach = 0.45 * Math.max(w, d);
    parts.push(box(-col / 2, col / 2, 0.05, under, -col / 2, col / 2));
    parts.push(box(-reach, reach, 0, 0.05, -0.05, 0.05));
    parts.push(box(-0.05, 0.05, 0, 0.05, -reach, reach));
  } else {
    for (const x of [-(w / 2 - lt / 2), w / 2 - lt / 2]) {
      parts.push(box(x - lt / 2, x + lt / 2, 0, lt, -d / 2 - 0.05, d / 2 + 0.05));
      for (const z of [-lz, lz]) {
        parts.push(box(x - lt / 2, x + lt / 2, lt, under, z - lt / 2, z + lt / 2));
      }
    }
  }
  // The back stands on the seat's rear edge and leans back about it.
  const pivot: V3 = [0, h, -d / 2];
  const bh = m.backH, bt = 0.06, z0 = -d / 2, pt = Math.max(lt, 0.06);
  const back: Cuboid[] = [];
  const post = (x: number) => box(x - pt / 2, x + pt / 2, h, h + bh, z0, z0 + bt);
  const kind = CHAIR_BACKS[m.back];
  if (kind === "panel") back.push(box(-w / 2, w / 2, h, h + bh, z0, z0 + bt));
  else if (kind === "slats") {
    back.push(post(-w / 2 + pt / 2), post(w / 2 - pt / 2));
    back.push(box(-w / 2, w / 2, h + bh - 0.12, h + bh, z0, z0 + bt));
    const inner = w - 2 * pt, sw = Math.min(0.12, inner / (2 * m.slats));
    for (let k = 0; k < m.slats; k++) {
      const x = -w / 2 + pt + (inner * (k + 1)) / (m.slats + 1);
      back.push(box(x - sw / 2, x + sw / 2, h, h + bh - 0.12, z0 + 0.01, z0 + bt - 0.01));
    }
  } else if (kind === "rails") {
    back.push(post(-w / 2 + pt / 2), post(w / 2 - pt / 2));
    for (const f of [0.45, 0.7, 0.95]) {
      back.push(box(-w / 2, w / 2, h + bh * f - 0.08, h + bh * f, z0 + 0.01, z0 + bt - 0.01));
    }
  }
  for (const b of back) parts.push(leanBack(b, pivot, m.backTilt));
  if (m.arms) {
    for (const x of [-(w / 2 - 0.035), w / 2 - 0.035]) {
      parts.push(box(x - 0.035, x + 0.035, h + 0.22, h + 0.28, -d / 2, d / 2 - 0.05));
      parts.push(box(x - 0.03, x + 0.03, h, h + 0.22, d / 2 - 0.11, d / 2 - 0.05));
    }
  }
  return parts;
}

/** Corners of a cuboid, index bits (i, j, k) choosing the sign of each axis. */
function cuboidCorners(b: Cuboid): V3[] {
  const out: V3[] = [];
  for (let n = 0; n < 8; n++) {
    const s = [n & 1 ? 1 : -1, n & 2 ? 1 : -1, n & 4 ? 1 : -1];
    out.push(
      [0, 1, 2].map((k) =>
        b.c[k] + s[0] * b.axes[0][k] + s[1] * b.axes[1][k] + s[2] * b.axes[2][k]
      ) as V3,
    );
  }
  return out;
}

/** Centre and radius of a bounding sphere of the cuboids (centre of their bounding box). */
export function boundingSphere(parts: Cuboid[]): { c: V3; r: number } {
  const pts = parts.flatMap(cuboidCorners);
  const lo = [0, 1, 2].map((k) => Math.min(...pts.map((p) => p[k])));
  const hi = [0, 1, 2].map((k) => Math.max(...pts.map((p) => p[k])));
  const c = [0, 1, 2].map((k) => (lo[k] + hi[k]) / 2) as V3;
  return { c, r: Math.max(...pts.map((p) => Math.hypot(...sub(p, c)))) };
}

let buffers: { n: number; depth: Float64Array; shade: Float64Array } | undefined;

/**
 * Renders `parts` seen from azimuth `azDeg` and elevation `elDeg` (degrees) as 8-bit grey in
 * three CHW channels of side `size` into `out` from `offset`, supersampled `ssaa` x `ssaa`.
 */
export function renderChair(
  parts: Cuboid[],
  albedo: number,
  azDeg: number,
  elDeg: number,
  size: number,
  out: Uint8Array,
  offset = 0,
  ssaa = 2,
): void {
  const N = size * ssaa;
  if (buffers?.n !== N) {
    buffers = { n: N, depth: new Float64Array(N * N), shade: new Float64Array(N * N) };
  }
  const { depth, shade } = buffers;
  depth.fill(-Infinity);
  shade.fill(1); // white background
  const az = (azDeg * Math.PI) / 180, el = (elDeg * Math.PI) / 180;
  const toCam: V3 = [Math.sin(az) * Math.cos(el), Math.sin(el), Math.cos(az) * Math.cos(el)];
  const right: V3 = [Math.cos(az), 0, -Math.sin(az)];
  const up = cross(toCam, right);
  // Light fixed to the camera: from the upper left, in front.
  const light = unit([
    -0.45 * right[0] + 0.6 * up[0] + 0.65 * toCam[0],
    -0.45 * right[1] + 0.6 * up[1] + 0.65 * toCam[1],
    -0.45 * right[2] + 0.6 * up[2] + 0.65 * toCam[2],
  ]);
  const sphere = boundingSphere(parts);
  const k = (0.4 * N) / sphere.r; // the sphere's diameter covers 80 % of the frame
  const project = (p: V3): V3 => {
    const q = sub(p, sphere.c);
    return [N / 2 + k * dot(q, right), N / 2 - k * dot(q, up), dot(q, toCam)];
  };
  for (const b of parts) {
    const P = cuboidCorners(b).map(project);
    for (let axis = 0; axis < 3; axis++) {
      for (const sign of [-1, 1]) {
        const normal = unit(scaled(b.axes[axis], sign));
        const facing = dot(normal, toCam);
        if (facing <= 1e-9) continue; // back face (orthographic: one view direction)
        const g = albedo * (0.35 + 0.65 * Math.max(0, dot(normal, light)));
        // The face's 4 corners: bit `axis` fixed by `sign`, the other two bits in a cycle.
        const [o1, o2] = [0, 1, 2].filter((a) => a !== axis);
        const fixed = sign > 0 ? 1 << axis : 0;
        const quad = [0, 1 << o1, (1 << o1) | (1 << o2), 1 << o2].map((m) => P[m | fixed]);
        triangle(quad[0], quad[1], quad[2], g, N, depth, shade);
        triangle(quad[0], quad[2], quad[3], g, N, depth, shade);
      }
    }
  }
  const plane = size * size, inv = 1 / (ssaa * ssaa);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let s = 0;
      for (let j = 0; j < ssaa; j++) {
        for (let i = 0; i < ssaa; i++) s += shade[(y * ssaa + j) * N + x * ssaa + i];
      }
      const v = toByte(s * inv), p = offset + y * size + x;
      out[p] = v, out[p + plane] = v, out[p + 2 * plane] = v;
    }
  }
}

/** Z-buffered flat triangle at pixel centres (vertices: screen x, y, depth; nearer is larger). */
function triangle(
  a: V3,
  b: V3,
  c: V3,
  g: number,
  N: number,
  depth: Float64Array,
  shade: Float64Array,
): void {
  const area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
  if (Math.abs(area) < 1e-12) return;
  const x0 = Math.max(0, Math.floor(Math.min(a[0], b[0], c[0])));
  const x1 = Math.min(N - 1, Math.ceil(Math.max(a[0], b[0], c[0])));
  const y0 = Math.max(0, Math.floor(Math.min(a[1], b[1], c[1])));
  const y1 = Math.min(N - 1, Math.ceil(Math.max(a[1], b[1], c[1])));
  const inv = 1 / area;
  for (let y = y0; y <= y1; y++) {
    const py = y + 0.5;
    for (let x = x0; x <= x1; x++) {
      const px = x + 0.5;
      // Barycentric weights; all of one sign (that of the area) inside.
      const wa = ((b[0] - px) * (c[1] - py) - (b[1] - py) * (c[0] - px)) * inv;
      const wb = ((c[0] - px) * (a[1] - py) - (c[1] - py) * (a[0] - px)) * inv;
      const wc = 1 - wa - wb;
      // A small tolerance: a pixel centre on the diagonal two triangles of a face share must
      // not fall through both by rounding (a white crack).
      if (wa < -1e-9 || wb < -1e-9 || wc < -1e-9) continue;
      const z = wa * a[2] + wb * b[2] + wc * c[2];
      const p = y * N + x;
      if (z > depth[p]) depth[p] = z, shade[p] = g;
    }
  }
}

/**
 * ProcChairs: 1393 models x 2 elevations x 31 azimuths = 86,366 images, `size` x `size` x 3
 * (default 64), grey on white. The seed makes the models and the random 10 % test split.
 */
export function procChairs(
  opts: { seed?: number; size?: number; ssaa?: number } = {},
): LabelledSet {
  const name = "procchairs";
  const seed = checkSeed(name, opts.seed);
  const size = checkSize(name, opts.size, 64);
  const ssaa = opts.ssaa ?? 2;
  if (!(Number.isInteger(ssaa) && ssaa >= 1 && ssaa <= 4)) {
    throw new Error(`flowgpu: ${name}: ssaa must be an integer in 1..4, got ${ssaa}`);
  }
  // Neighbouring indices share a model (62 views each), so keep the last model's cuboids.
  let last: { id: number; model: ChairModel; parts: Cuboid[] } | undefined;
  const model = (id: number) => {
    if (last?.id !== id) {
      const m = chairModel(seed, id);
      last = { id, model: m, parts: chairCuboids(m) };
    }
    return last;
  };
  const f = new Int32Array(3);
  return makeLabelledSet({
    name,
    channels: 3,
    height: size,
    width: size,
    count: PROCCHAIRS_COUNT,
    factors: PROCCHAIRS_FACTORS,
    values: PROCCHAIRS_VALUES,
    seed,
    render(i, out, offset) {
      gridValues(SIZES, i, f);
      const { model: m, parts } = model(f[0]);
      const az = (f[2] * 360) / AZIMUTHS, el = ELEVATIONS[f[1]];
      renderChair(parts, m.albedo, az, el, size, out, offset, ssaa);
    },
    label: (i, out, offset) => gridValues(SIZES, i, out, offset),
    value(i, out, offset) {
      gridValues(SIZES, i, f);
      const m = model(f[0]).model;
      out.set(
        [(f[2] * 360) / AZIMUTHS, ELEVATIONS[f[1]], m.legs, m.back, +m.arms, m.albedo],
        offset,
      );
    },
    indexOf: (v) => gridIndex(name, PROCCHAIRS_FACTORS, v),
  });
}

// SynthLips faces (af-mi-flow.md §5.2): the identity traits of one face, drawn from a seeded
// generator, and the renderer of a face in one frame state (mouth parameters, head translation,
// blink, brightness).
//
// The renderer works on the 64x64 canvas in pixel units with pixel centres at integer coordinates
// (so the canvas centre is 31.5, as in the spec). Each output pixel averages ssaa x ssaa point
// samples; a sample takes the colour of the front-most shape that contains it (painter's order of
// the spec, tested front to back so most samples stop early). A 32x32 image samples the same
// canvas at half resolution, so both sizes show the same face. Head parts are placed relative to
// the face centre, which moves with the per-frame head translation; background and shirt are
// static.
import { Rng } from "../util/rng.ts";
import { hsv, toByte } from "./labelled.ts";

/** An RGB colour in [0, 1]. */
export type RGB = [number, number, number];

/** Hair styles, in the order of `hairStyle`. */
export const HAIR_STYLES = ["short", "bangs", "long", "bald"] as const;
/** Hair colours, in the order of `hairColour`. */
export const HAIR_COLOURS = ["black", "brown", "blond", "red", "grey"] as const;
const HAIR_RGB: RGB[] = [
  [0.09, 0.07, 0.06],
  [0.33, 0.2, 0.11],
  [0.82, 0.68, 0.4],
  [0.58, 0.24, 0.1],
  [0.62, 0.61, 0.6],
];

/** Skin tone end points of t in [0, 1] (spec: (255,224,196) -> (94,58,40)). */
const SKIN_LIGHT: RGB = [255 / 255, 224 / 255, 196 / 255];
const SKIN_DARK: RGB = [94 / 255, 58 / 255, 40 / 255];
const LIP_RED: RGB = [0.78, 0.16, 0.2];

/** Training ranges of the traits that OOD identities leave (spec §5.2 (c)). */
export const TRAIN_RANGES = {
  skinT: [0, 1],
  faceA: [18, 23],
  faceBUp: [21, 25],
  faceBLow: [21, 24],
} as const;

/** Which traits of an out-of-distribution identity lie outside the training ranges. */
export type OodKind = "none" | "skin" | "size" | "both";

/** The fixed appearance of one face (everything that does not change within a clip). */
export interface FaceTraits {
  /** Background gradient: colour at the top and at the bottom row. */
  bgTop: RGB;
  bgBottom: RGB;
  shirt: RGB;
  /** A 9x9 ink mask in [0, 1] (an MNIST digit) on the shirt, or null for none. */
  logo: Float32Array | null;
  /** Colour of the logo ink (white on dark shirts, black on light ones). */
  logoInk: RGB;
  /** Face centre offset (px) from (31.5, 31). */
  faceDx: number;
  faceDy: number;
  /** Half-width of the face. */
  faceA: number;
  /** Upper semi-axis (half-ellipse) and lower semi-axis (superellipse) of the face. */
  faceBUp: number;
  faceBLow: number;
  /** Exponent of the lower superellipse (2 = ellipse, larger = squarer jaw). */
  faceP: number;
  /** Skin tone parameter t (light 0 .. dark 1; OOD identities leave [0, 1]). */
  skinT: number;
  skin: RGB;
  /** Index into HAIR_STYLES. */
  hairStyle: number;
  /** Index into HAIR_COLOURS. */
  hairColour: number;
  hair: RGB;
  /** Canvas row of the hairline (9..15). */
  hairline: number;
  /** Phase of the fringe's wave (bangs). */
  fringePhase: number;
  browLength: number;
  browThickness: number;
  /** Degrees; the two brows are mirror images. */
  browAngle: number;
  /** Height of the brow above the eye centre. */
  browRaise: number;
  /** Horizontal distance e of each eye centre from the face centre. */
  eyeSpacing: number;
  /** Canvas row y_e of the eye centres (25..28). */
  eyeY: number;
  scleraRx: number;
  scleraRy: number;
  irisR: number;
  iris: RGB;
  /** Canvas row of the nostrils (30.5..32.5, inside the mouth box). */
  noseY: number;
  /** Horizontal distance of each nostril from the face centre. */
  nostrilSpacing: number;
  moustache: boolean;
  glasses: boolean;
  /** Rest half-width w0 of the mouth. */
  mouthW0: number;
  /** Upper and lower lip thickness tu, tl. */
  lipUpper: number;
  lipLower: number;
  /** Share of red in the lip colour (lip = mix(skin, red, lipMix)). */
  lipMix: number;
  lip: RGB;
  cavity: RGB;
  /** Speaking speed and amplitude factors (v_id, a_id) of the identity. */
  speed: number;
  amplitude: number;
  /** Seed of the identity's low-frequency colour field in the painting style. */
  paintSeed: number;
}

/** Names of the identity parameter vector (`faceVector`), in column order. */
export const FACE_PARAMS = [
  "bg_top_r",
  "bg_top_g",
  "bg_top_b",
  "bg_bottom_r",
  "bg_bottom_g",
  "bg_bottom_b",
  "shirt_r",
  "shirt_g",
  "shirt_b",
  "logo",
  "face_dx",
  "face_dy",
  "face_a",
  "face_b_up",
  "face_b_low",
  "face_p",
  "skin_t",
  "skin_r",
  "skin_g",
  "skin_b",
  "hair_style",
  "hair_colour",
  "hairline",
  "brow_length",
  "brow_thickness",
  "brow_angle",
  "brow_raise",
  "eye_spacing",
  "eye_y",
  "sclera_rx",
  "sclera_ry",
  "iris_r",
  "nose_y",
  "nostril_spacing",
  "moustache",
  "glasses",
  "mouth_w0",
  "lip_upper",
  "lip_lower",
  "lip_mix",
  "speed",
  "amplitude",
] as const;

/** The identity parameter vector of a face (columns FACE_PARAMS). */
export function faceVector(f: FaceTraits): Float32Array {
  return Float32Array.from([
    ...f.bgTop,
    ...f.bgBottom,
    ...f.shirt,
    f.logo ? 1 : 0,
    f.faceDx,
    f.faceDy,
    f.faceA,
    f.faceBUp,
    f.faceBLow,
    f.faceP,
    f.skinT,
    ...f.skin,
    f.hairStyle,
    f.hairColour,
    f.hairline,
    f.browLength,
    f.browThickness,
    f.browAngle,
    f.browRaise,
    f.eyeSpacing,
    f.eyeY,
    f.scleraRx,
    f.scleraRy,
    f.irisR,
    f.noseY,
    f.nostrilSpacing,
    f.moustache ? 1 : 0,
    f.glasses ? 1 : 0,
    f.mouthW0,
    f.lipUpper,
    f.lipLower,
    f.lipMix,
    f.speed,
    f.amplitude,
  ]);
}

const clamp01 = (v: number) => Math.min(1, Math.max(0, v));
const mix = (a: RGB, b: RGB, t: number): RGB => [
  a[0] + (b[0] - a[0]) * t,
  a[1] + (b[1] - a[1]) * t,
  a[2] + (b[2] - a[2]) * t,
];
const scale = (a: RGB, k: number): RGB => [a[0] * k, a[1] * k, a[2] * k];
const luma = (c: RGB) => 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];

/** Skin colour of tone t (extrapolated and clamped outside [0, 1]). */
export function skinTone(t: number): RGB {
  return mix(SKIN_LIGHT, SKIN_DARK, t).map(clamp01) as RGB;
}

/** 9x9 ink mask of a 32x32 MNIST frame (area average over the central 28x28 digit). */
export function logoMask(digit32: Uint8Array): Float32Array {
  const out = new Float32Array(81);
  const cell = 28 / 9, sub = 4;
  for (let v = 0; v < 9; v++) {
    for (let u = 0; u < 9; u++) {
      let acc = 0;
      for (let j = 0; j < sub; j++) {
        for (let i = 0; i < sub; i++) {
          const x = 2 + Math.floor((u + (i + 0.5) / sub) * cell);
          const y = 2 + Math.floor((v + (j + 0.5) / sub) * cell);
          acc += digit32[y * 32 + x];
        }
      }
      out[v * 9 + u] = acc / (sub * sub * 255);
    }
  }
  return out;
}

/**
 * Draws one face from `rng`. `ood` faces have a skin tone, a face size or both outside the
 * training ranges (spec §5.2 (c)); `logo` is the 9x9 mask of a shirt logo or null.
 */
export function sampleFace(
  rng: Rng,
  ood: boolean,
  logo: Float32Array | null,
): { face: FaceTraits; oodKind: OodKind } {
  const u = (lo: number, hi: number) => lo + (hi - lo) * rng.next();
  const bgTop = hsv(rng.next(), u(0.1, 0.4), u(0.3, 0.9));
  const bgBottom = hsv(rng.next(), u(0.1, 0.4), u(0.3, 0.9));
  const shirt = hsv(rng.next(), u(0.3, 0.8), u(0.25, 0.85));
  // Drawn for every face (used or not) so in- and out-of-distribution faces share the stream.
  const oodPick = rng.int(3);
  const oodKind: OodKind = ood ? (["skin", "size", "both"] as const)[oodPick] : "none";
  let skinT = rng.next();
  const lighter = rng.next() < 0.5;
  let faceA = u(18, 23), faceBUp = u(21, 25), faceBLow = u(21, 24);
  const small = rng.next() < 0.5, sizeU = rng.next(), sizeV = rng.next(), sizeW = rng.next();
  if (oodKind === "skin" || oodKind === "both") {
    skinT = lighter ? -0.25 + 0.17 * skinT : 1.1 + 0.15 * skinT;
  }
  if (oodKind === "size" || oodKind === "both") {
    faceA = small ? 15.5 + 2 * sizeU : 23.5 + 1.5 * sizeU;
    faceBUp = small ? 18 + 2.5 * sizeV : 25.5 + 1.5 * sizeV;
    faceBLow = small ? 18.5 + 2 * sizeW : 24.5 + 1 * sizeW;
  }
  const skin = skinTone(skinT).map((c) => clamp01(c + u(-6, 6) / 255)) as RGB;
  const hairStyle = rng.int(HAIR_STYLES.length), hairColour = rng.int(HAIR_COLOURS.length);
  const hair = HAIR_RGB[hairColour].map((c) => clamp01(c + u(-0.03, 0.03))) as RGB;
  const irisHue = [0.07, 0.08, 0.58, 0.3, 0.1][rng.int(5)];
  const face: FaceTraits = {
    bgTop,
    bgBottom,
    shirt,
    logo,
    logoInk: luma(shirt) < 0.5 ? [0.95, 0.95, 0.95] : [0.05, 0.05, 0.05],
    faceDx: u(-0.5, 0.5),
    faceDy: u(-0.5, 0.5),
    faceA,
    faceBUp,
    faceBLow,
    faceP: u(1.8, 2.6),
    skinT,
    skin,
    hairStyle,
    hairColour,
    hair,
    hairline: u(9, 15),
    fringePhase: u(0, 2 * Math.PI),
    browLength: u(6, 8),
    browThickness: u(1, 2.5),
    browAngle: u(-15, 15),
    browRaise: u(3.5, 5),
    eyeSpacing: u(8, 11),
    eyeY: u(25, 28),
    scleraRx: u(2.5, 3),
    scleraRy: u(1.5, 2),
    irisR: u(1.4, 2),
    iris: hsv(irisHue + u(-0.03, 0.03), u(0.4, 0.8), u(0.25, 0.6)),
    noseY: u(30.5, 32.5),
    nostrilSpacing: u(1.3, 1.9),
    moustache: rng.next() < 0.15,
    glasses: rng.next() < 0.2,
    mouthW0: u(4.75, 6.25),
    lipUpper: u(1.0, 1.8),
    lipLower: u(1.3, 2.3),
    lipMix: u(0.3, 0.6),
    lip: [0, 0, 0],
    cavity: [u(50, 70) / 255, u(5, 25) / 255, u(10, 30) / 255],
    speed: u(0.85, 1.15),
    amplitude: u(0.75, 1.15),
    paintSeed: Math.floor(rng.next() * 2 ** 32),
  };
  face.lip = mix(skin, LIP_RED, face.lipMix);
  return { face, oodKind };
}

/** The per-frame state of a face: mouth parameters and nuisances. */
export interface FrameState {
  /** Mouth openness in [0, 1]. */
  o: number;
  /** Mouth spread in [-1, 1] (-1 rounded, +1 wide). */
  s: number;
  /** Lip press in [0, 1] (p/b/m). */
  press: number;
  /** Head translation in px (canvas units), within ±1. */
  tx: number;
  ty: number;
  /** Eyes closed. */
  blink: boolean;
  /** Brightness factor (1 + small noise). */
  brightness: number;
}

/** The rest state: mouth at rest (V0), no translation, eyes open, brightness 1. */
export const REST_STATE: Readonly<FrameState> = {
  o: 0.05,
  s: 0,
  press: 0,
  tx: 0,
  ty: 0,
  blink: false,
  brightness: 1,
};

/** Geometry of the lips in a frame, on the 64x64 canvas. */
export interface MouthGeometry {
  /** Centre (x_c, y_c). */
  x: number;
  y: number;
  /** Half-width W, gap G, effective lip thicknesses tu', tl', rounding r. */
  halfWidth: number;
  gap: number;
  upper: number;
  lower: number;
  round: number;
  /** Bounding box of the lips [x0, y0, x1, y1] (canvas units). */
  bounds: [number, number, number, number];
}

/** The lips of `face` in state `st` (spec §5.2 item 9). */
export function mouthGeometry(face: FaceTraits, st: FrameState): MouthGeometry {
  const r = Math.max(0, -st.s), thin = 1 - 0.2 * st.press;
  const W = face.mouthW0 * (1 + 0.3 * st.s), G = 6 * st.o;
  const upper = face.lipUpper * (1 + 0.4 * r) * thin, lower = face.lipLower * (1 + 0.4 * r) * thin;
  const x = 31.5 + face.faceDx + st.tx, y = 37.5 + face.faceDy + st.ty + 0.3 * G;
  // The smile warp only lifts the corners, so the box of the unwarped lips holds them; the
  // corners rise by at most 0.8·s.
  const y0 = y - G / 2 - upper - (st.s > 0 ? 0.8 * st.s : 0);
  return {
    x,
    y,
    halfWidth: W,
    gap: G,
    upper,
    lower,
    round: r,
    bounds: [x - W, y0, x + W, y + G / 2 + lower],
  };
}

// ---- colour codes of the samples ----

const BG = 0, SHIRT = 1, NECK = 2, HAIR = 3, EAR = 4, SKIN = 5, BROW = 6, SCLERA = 7, IRIS = 8;
const PUPIL = 9, LID = 10, LASH = 11, NOSE = 12, NOSTRIL = 13, LIP = 14, CAVITY = 15;
const TEETH = 16, SEAM = 17, GLASSES = 18, CODES = 19;

/** Everything one frame's sampler needs, in head-relative canvas units. */
class Scene {
  // face centre and outline
  cx = 0;
  cy = 0;
  a = 0;
  bUp = 0;
  bLow = 0;
  p = 2;
  // ears, hair
  hairStyle = 0;
  hairline = 0;
  hairA = 0;
  hairB = 0;
  sideX = 0;
  sideY = 0;
  fringePhase = 0;
  // eyes, brows
  e = 0;
  ey = 0;
  rx = 1;
  ry = 1;
  ri = 1;
  blink = false;
  browX = 0;
  browY = 0;
  browDx = 1;
  browDy = 0;
  browHalf = 0;
  browR = 0;
  // nose
  noseY = 0;
  nostrilX = 0;
  // mouth (relative centre 0, mY)
  mY = 0;
  W = 1;
  halfG = 0;
  upper = 0;
  lower = 0;
  smile = 0;
  cavW = 1;
  teeth = 0;
  seam = false;
  mTop = 0;
  mBot = 0;
  // extras
  glasses = false;
  moustache = false;
  mustY = 0;
  mustW = 0;
  // static layers (absolute)
  shirtY = 53.5;
  logo: Float32Array | null = null;
  pal = new Float32Array(3 * CODES);
  bgTop: RGB = [0, 0, 0];
  bgBottom: RGB = [0, 0, 0];
  // per sample row: half-widths of the face, the front hair ellipse and the long hair behind
  // (-1 where the row misses the shape), so the samples need no square roots or powers
  faceHalf = new Float64Array(0);
  hairHalf = new Float64Array(0);
  backHalf = new Float64Array(0);
  // rows (head-relative) that can hold eyes, brows or glasses
  featTop = 0;
  featBot = 0;
}

/** The scene of one frame; `ys` are the canvas rows of the sample rows. */
function scene(f: FaceTraits, st: FrameState, ys: Float64Array): Scene {
  const sc = new Scene();
  const m = mouthGeometry(f, st);
  sc.cx = 31.5 + f.faceDx + st.tx;
  sc.cy = 31 + f.faceDy + st.ty;
  sc.a = f.faceA;
  sc.bUp = f.faceBUp;
  sc.bLow = f.faceBLow + 0.3 * m.gap; // jaw drop lowers the chin
  sc.p = f.faceP;
  sc.hairStyle = f.hairStyle;
  sc.hairline = f.hairline - 31;
  sc.hairA = f.faceA + 1.3;
  sc.hairB = f.faceBUp + 1.6;
  sc.sideX = f.faceA - 2.4;
  sc.sideY = f.eyeY - 31 - 2.5;
  sc.fringePhase = f.fringePhase;
  sc.e = f.eyeSpacing;
  sc.ey = f.eyeY - 31;
  sc.rx = f.scleraRx;
  sc.ry = f.scleraRy;
  sc.ri = f.irisR;
  sc.blink = st.blink;
  const th = (f.browAngle * Math.PI) / 180;
  sc.browX = f.eyeSpacing;
  sc.browY = sc.ey - f.browRaise;
  sc.browDx = Math.cos(th);
  sc.browDy = -Math.sin(th); // positive angle lifts the outer end (y grows downwards)
  sc.browR = f.browThickness / 2;
  sc.browHalf = Math.max(0, f.browLength / 2 - sc.browR);
  sc.noseY = f.noseY - 31;
  sc.nostrilX = f.nostrilSpacing;
  sc.mY = m.y - sc.cy;
  sc.W = m.halfWidth;
  sc.halfG = m.gap / 2;
  sc.upper = m.upper;
  sc.lower = m.lower;
  sc.smile = st.s > 0 ? 0.8 * st.s : 0;
  sc.cavW = m.halfWidth * (0.85 - 0.25 * m.round);
  sc.teeth = st.s > -0.4 ? Math.min(1.6, 0.35 * m.gap) : 0;
  sc.seam = m.gap < 0.3;
  sc.mTop = sc.mY - sc.halfG - sc.upper - sc.smile;
  sc.mBot = sc.mY + sc.halfG + sc.lower;
  sc.glasses = f.glasses;
  sc.moustache = f.moustache;
  sc.mustY = 6.5 - f.lipUpper - 1.5; // 1.5 px above the upper lip at rest
  sc.mustW = f.mouthW0 + 1.5;
  sc.logo = f.logo;
  sc.bgTop = f.bgTop;
  sc.bgBottom = f.bgBottom;
  const set = (code: number, c: RGB) => sc.pal.set(c, 3 * code);
  set(SHIRT, f.shirt);
  set(NECK, scale(f.skin, 0.85));
  set(HAIR, f.hair);
  set(EAR, scale(f.skin, 0.92));
  set(SKIN, f.skin);
  set(BROW, scale(f.hair, 0.7));
  set(SCLERA, [0.95, 0.94, 0.92]);
  set(IRIS, f.iris);
  set(PUPIL, [0.05, 0.04, 0.04]);
  set(LID, f.skin);
  set(LASH, [0.12, 0.08, 0.07]);
  set(NOSE, scale(f.skin, 0.8));
  set(NOSTRIL, scale(f.skin, 0.42));
  set(LIP, f.lip);
  set(CAVITY, f.cavity);
  set(TEETH, [0.93, 0.91, 0.85]);
  set(SEAM, scale(f.lip, 0.35));
  set(GLASSES, [0.1, 0.1, 0.12]);
  sc.featTop = Math.min(sc.browY - sc.browHalf - sc.browR - 1, sc.ey - 5);
  sc.featBot = sc.ey + 5;
  const ellipseHalf = (a: number, b: number, Y: number) =>
    Math.abs(Y) <= b ? a * Math.sqrt(1 - (Y / b) * (Y / b)) : -1;
  sc.faceHalf = new Float64Array(ys.length);
  sc.hairHalf = new Float64Array(ys.length);
  sc.backHalf = new Float64Array(ys.length);
  ys.forEach((y, j) => {
    const Y = y - sc.cy;
    sc.faceHalf[j] = Y < 0
      ? ellipseHalf(sc.a, sc.bUp, Y)
      : Y < sc.bLow
      ? sc.a * Math.pow(1 - Math.pow(Y / sc.bLow, sc.p), 1 / sc.p)
      : -1;
    sc.hairHalf[j] = Y < 0 ? ellipseHalf(sc.hairA, sc.hairB, Y) : -1;
    sc.backHalf[j] = sc.hairStyle !== 2
      ? -1
      : Y < 0
      ? ellipseHalf(sc.a + 3.5, sc.bUp + 2, Y)
      : Y < 23
      ? sc.a + 3.5
      : -1;
  });
  return sc;
}

/** Colour code of the front-most shape at canvas point (x, y); `j` indexes y's sample row. */
function shade(sc: Scene, x: number, y: number, j: number): number {
  const X = x - sc.cx, Y = y - sc.cy, ax = Math.abs(X);
  // 9. mouth (front-most), smile-warped: the shape is tested at y' = y + 0.8 s (dx/W)^2.
  if (Y > sc.mTop && Y < sc.mBot && ax < sc.W) {
    const q = X / sc.W, u = q * q;
    const dy = Y + sc.smile * u - sc.mY;
    const h = dy < 0 ? sc.halfG + sc.upper : sc.halfG + sc.lower;
    if (u + (dy * dy) / (h * h) <= 1) {
      if (sc.seam) return Math.abs(dy) < 0.3 && ax < 0.92 * sc.W ? SEAM : LIP;
      const qc = X / sc.cavW, rc = dy / sc.halfG;
      if (qc * qc + rc * rc <= 1) return dy < -sc.halfG + sc.teeth ? TEETH : CAVITY;
      return LIP;
    }
  }
  // 8. glasses (rings, bridge, arms), moustache, nostrils, nose line
  const feat = Y > sc.featTop && Y < sc.featBot;
  if (sc.glasses && feat) {
    const ddx = ax - sc.e, ddy = Y - sc.ey;
    const d = Math.sqrt(ddx * ddx + ddy * ddy);
    if (Math.abs(d - 4.5) < 0.4) return GLASSES;
    if (Math.abs(Y - sc.ey + 0.8) < 0.35 && ax < sc.e - 4.3) return GLASSES;
    if (Math.abs(Y - sc.ey) < 0.35 && ax > sc.e + 4.5 && ax < sc.a - 0.5) return GLASSES;
  }
  if (sc.moustache && ax < sc.mustW) {
    const q = X / sc.mustW;
    if (Math.abs(Y - sc.mustY - 0.9 * q * q) < 0.8) return HAIR;
  }
  if (Y > sc.ey + 2 && Y < sc.noseY + 1 && ax < 3) {
    const ddx = ax - sc.nostrilX, ddy = Y - sc.noseY;
    if (ddx * ddx + ddy * ddy < 0.42) return NOSTRIL;
    // nose line: from (0.9, ey + 2) to (1.5, noseY - 1.3), 0.7 px thick
    if (Y < sc.noseY - 1.3) {
      const t = (Y - sc.ey - 2) / (sc.noseY - 1.3 - sc.ey - 2);
      if (Math.abs(X - 0.9 - 0.6 * t) < 0.35) return NOSE;
    }
  }
  if (feat) {
    // 7. eyes (the lid covers the sclera ellipse when blinking)
    const ddx = ax - sc.e, ddy = Y - sc.ey;
    const qx = ddx / sc.rx, qy = ddy / sc.ry, el = qx * qx + qy * qy;
    if (sc.blink) {
      if (el <= 1.2) return Math.abs(ddy) < 0.3 && Math.abs(qx) < 1.05 ? LASH : LID;
    } else if (el <= 1) {
      const d2 = ddx * ddx + ddy * ddy;
      if (d2 <= 0.49) return PUPIL;
      return d2 <= sc.ri * sc.ri ? IRIS : SCLERA;
    }
    // 6. eyebrows: capsules, mirror images of each other
    const px = ax - sc.browX, py = Y - sc.browY;
    let t = px * sc.browDx + py * sc.browDy;
    t = t < -sc.browHalf ? -sc.browHalf : t > sc.browHalf ? sc.browHalf : t;
    const bx = px - t * sc.browDx, by = py - t * sc.browDy;
    if (bx * bx + by * by <= sc.browR * sc.browR) return BROW;
  }
  // 5. hair in front of the face
  if (ax <= sc.hairHalf[j]) {
    if (sc.hairStyle === 3) {
      if (ax > sc.sideX && Y > sc.sideY - 5 && Y < sc.sideY + 1.5) return HAIR; // bald: tufts
    } else {
      if (Y < sc.hairline || (ax > sc.sideX && Y < sc.sideY)) return HAIR;
      if (sc.hairStyle === 1 && Y < sc.hairline + 4.5 + 1.2 * Math.sin(1.4 * X + sc.fringePhase)) {
        return HAIR;
      }
    }
  }
  // 4. face: upper half-ellipse, lower superellipse lowered by the jaw
  if (ax <= sc.faceHalf[j]) return SKIN;
  // 3. ears, long hair behind the head
  {
    const ddx = (ax - sc.a) / 2.5, ddy = (Y + 1) / 4;
    if (ddx * ddx + ddy * ddy <= 1) return EAR;
  }
  if (ax <= sc.backHalf[j] && (Y < 0 || Y < 20 + 0.15 * ax)) return HAIR;
  // 2. neck, shirt (static), 1. background
  if (ax <= 6 && Y >= 15 && Y <= 25) return NECK;
  return y >= sc.shirtY ? SHIRT : BG;
}

/** Output sizes: the spec's 64x64 and the 32x32 CPU variant. */
export type SynthLipsSize = 32 | 64;

/** Render style: the plain render, or the OOD "painting" re-render (spec §5.2 (b)). */
export type SynthLipsStyle = "photo" | "painting";

/** Options of `renderFace`. */
export interface FaceRenderOptions {
  size: SynthLipsSize;
  /** Samples per pixel along each axis (default 4: 4x4 supersampling). */
  ssaa?: number;
  style?: SynthLipsStyle;
  /** Seed of the Gaussian pixel noise (σ = 1.5/255); undefined renders without noise. */
  noise?: number;
}

const NOISE_SIGMA = 1.5 / 255;
const scratch = new Map<number, Float32Array>();
const sampleRows = new Map<number, Float64Array>();

/**
 * Renders `face` in state `st` as 8-bit CHW RGB (3 x size x size) into `out` from `offset`:
 * supersampled shapes, brightness, the painting style if asked, pixel noise if seeded, rounding.
 */
export function renderFace(
  face: FaceTraits,
  st: FrameState,
  opts: FaceRenderOptions,
  out: Uint8Array,
  offset = 0,
): void {
  const S = opts.size, ss = opts.ssaa ?? 4, k = 64 / S, plane = S * S;
  let img = scratch.get(S);
  if (!img) scratch.set(S, img = new Float32Array(3 * plane));
  let ys = sampleRows.get(S * 16 + ss);
  if (!ys) {
    ys = Float64Array.from(
      { length: S * ss },
      (_, j) => -0.5 + (Math.floor(j / ss) + ((j % ss) + 0.5) / ss) * k,
    );
    sampleRows.set(S * 16 + ss, ys);
  }
  const sc = scene(face, st, ys), pal = sc.pal, logo = sc.logo;
  const [t0, t1, t2] = sc.bgTop, [b0, b1, b2] = sc.bgBottom;
  const w = st.brightness / (ss * ss);
  for (let py = 0; py < S; py++) {
    for (let px = 0; px < S; px++) {
      let r = 0, g = 0, b = 0;
      for (let j = 0; j < ss; j++) {
        const row = py * ss + j, y = ys[row];
        for (let i = 0; i < ss; i++) {
          const x = -0.5 + (px + (i + 0.5) / ss) * k;
          const c = shade(sc, x, y, row);
          if (c === BG) {
            const t = Math.min(1, Math.max(0, (y + 0.5) / 64));
            r += t0 + (b0 - t0) * t;
            g += t1 + (b1 - t1) * t;
            b += t2 + (b2 - t2) * t;
            continue;
          }
          let cr = pal[3 * c], cg = pal[3 * c + 1], cb = pal[3 * c + 2];
          if (c === SHIRT && logo) {
            // 9x9 logo centred at (32, 59), one logo pixel per canvas pixel, alpha = ink·0.6
            const lu = Math.floor(x - 27.5), lv = Math.floor(y - 54.5);
            if (lu >= 0 && lu < 9 && lv >= 0 && lv < 9) {
              const al = 0.6 * logo[lv * 9 + lu];
              cr += (face.logoInk[0] - cr) * al;
              cg += (face.logoInk[1] - cg) * al;
              cb += (face.logoInk[2] - cb) * al;
            }
          }
          r += cr;
          g += cg;
          b += cb;
        }
      }
      const p = py * S + px;
      img[p] = r * w;
      img[p + plane] = g * w;
      img[p + 2 * plane] = b * w;
    }
  }
  const style = opts.style ?? "photo";
  if (style === "painting") paint(img, S, face.paintSeed);
  else if (style !== "photo") {
    throw new Error(`flowgpu: synthlips: style must be 'photo' or 'painting', got '${style}'`);
  }
  const rng = opts.noise === undefined ? undefined : new Rng(opts.noise);
  for (let i = 0; i < 3 * plane; i++) {
    out[offset + i] = toByte(rng ? img[i] + NOISE_SIGMA * rng.normal() : img[i]);
  }
}

/** Levels per channel of the painting style. */
export const PAINT_LEVELS = 6;
const PAINT_GRID = 4; // the colour field is a 4x4 grid per channel, bilinearly interpolated
const OUTLINE = 0.3; // outline pixels keep 30 % of their colour
const EDGE = 0.12; // channel step that counts as a shape edge

/**
 * The painting re-render in place (spec §5.2 (b)): a low-frequency colour field (±10 % per
 * channel, fixed per identity), 1-px dark outlines on the pixels that differ by more than
 * EDGE in some channel from their right or lower neighbour (shape edges, not the smooth background
 * gradient), and posterisation to 6 levels per channel.
 */
export function paint(img: Float32Array, S: number, seed: number): void {
  const plane = S * S, rng = new Rng(seed), L = PAINT_LEVELS - 1;
  const G = PAINT_GRID, field = new Float32Array(3 * G * G);
  for (let i = 0; i < field.length; i++) field[i] = 0.1 * (2 * rng.next() - 1);
  for (let c = 0; c < 3; c++) {
    const f = field.subarray(c * G * G);
    for (let y = 0; y < S; y++) {
      const fy = ((y + 0.5) / S) * (G - 1), y0 = Math.min(G - 2, Math.floor(fy)), v = fy - y0;
      for (let x = 0; x < S; x++) {
        const fx = ((x + 0.5) / S) * (G - 1), x0 = Math.min(G - 2, Math.floor(fx)), u = fx - x0;
        const n = (1 - v) * ((1 - u) * f[y0 * G + x0] + u * f[y0 * G + x0 + 1]) +
          v * ((1 - u) * f[(y0 + 1) * G + x0] + u * f[(y0 + 1) * G + x0 + 1]);
        const p = c * plane + y * S + x;
        img[p] = clamp01(img[p] * (1 + n));
      }
    }
  }
  const edge = new Uint8Array(plane);
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const p = y * S + x;
      for (let c = 0; c < 3; c++) {
        const v = img[c * plane + p];
        if (
          (x + 1 < S && Math.abs(v - img[c * plane + p + 1]) > EDGE) ||
          (y + 1 < S && Math.abs(v - img[c * plane + p + S]) > EDGE)
        ) edge[p] = 1;
      }
    }
  }
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < plane; p++) {
      const q = Math.round(img[c * plane + p] * L) / L;
      img[c * plane + p] = edge[p] ? q * OUTLINE : q;
    }
  }
}

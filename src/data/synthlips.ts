// SynthLips (af-mi-flow.md §5.2), the rendered talking-mouth data set standing in for LRW: faces
// with fixed identity traits whose mouth follows the viseme sequence of a spoken word over a clip
// of 29 frames. Everything is rendered on demand from the set's seed, so nothing is stored:
//   identity (split, i)          -> traits from hash(seed, split, i) (splits have disjoint seeds)
//   vocabulary                   -> hash(seed, vocabulary size)
//   clip (split, i, word, utt.)  -> mouth trajectory and per-frame nuisances from their own streams
// The ground truth of every frame (identity vector, mouth parameters o, s, press, viseme, word,
// blink, head translation, lip bounds) comes with the pixels, and any identity can be rendered
// with any frame state, which gives exact cross-identity targets: identity Q with the head pose,
// blink and brightness of query frame k and the mouth of source frame n.
//
// Splits (spec): train 400 identities x 32 words x 2 utterances, val 40 x 32 x 1, test (unseen
// identities) 100 x 32 x 1, and ood: 100 identities whose skin tone and/or face size lie outside
// the training ranges. The "painting" style (posterised, colour-noised, outlined) re-renders any
// identity, usually the test ones, as the other OOD analogue.
import { Rng } from "../util/rng.ts";
import { hash3 } from "./labelled.ts";
import { loadMnist, type Mnist } from "./mnist.ts";
import {
  type FaceTraits,
  faceVector,
  type FrameState,
  logoMask,
  mouthGeometry,
  type OodKind,
  renderFace,
  sampleFace,
  type SynthLipsSize,
  type SynthLipsStyle,
} from "./synthlips_face.ts";
import {
  makeVocabulary,
  mouthTrajectory,
  SYNTHLIPS_FRAMES,
  SYNTHLIPS_VOCAB,
  type SynthLipsWord,
  VISEMES,
} from "./synthlips_words.ts";

export {
  FACE_PARAMS,
  type FaceTraits,
  faceVector,
  type FrameState,
  HAIR_COLOURS,
  HAIR_STYLES,
  mouthGeometry,
  type OodKind,
  paint,
  PAINT_LEVELS,
  REST_STATE,
  type SynthLipsSize,
  type SynthLipsStyle,
  TRAIN_RANGES,
} from "./synthlips_face.ts";
export {
  catmullRom,
  makeVocabulary,
  MAX_WORD_FRAMES,
  type MouthTrajectory,
  mouthTrajectory,
  SYNTHLIPS_FRAMES,
  SYNTHLIPS_VOCAB,
  type SynthLipsWord,
  twinPairs,
  type Viseme,
  VISEMES,
} from "./synthlips_words.ts";

/** Identity splits: training, validation, unseen test identities, out-of-range identities. */
export type SynthLipsSplit = "train" | "val" | "test" | "ood";
/** The splits in order. */
export const SYNTHLIPS_SPLITS: readonly SynthLipsSplit[] = ["train", "val", "test", "ood"];
/** Identities per split (spec: 400 / 40 / 100, and 100 OOD). */
export const SYNTHLIPS_IDENTITIES: Readonly<Record<SynthLipsSplit, number>> = {
  train: 400,
  val: 40,
  test: 100,
  ood: 100,
};
/** Utterances of every word by every identity (spec: 2 for training, 1 elsewhere). */
export const SYNTHLIPS_UTTERANCES: Readonly<Record<SynthLipsSplit, number>> = {
  train: 2,
  val: 1,
  test: 1,
  ood: 1,
};

/** A box of pixel rows top..bottom and columns left..right, inclusive, 0-based. */
export interface MouthBox {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

/**
 * The fixed mouth box the MI flow's condition keeps (spec §3.2: rows 31-46, cols 21-41 at 64x64;
 * §8: rows 15-23, cols 10-20 at 32x32). The lips stay inside it in every frame.
 */
export const SYNTHLIPS_BOX: Readonly<Record<SynthLipsSize, Readonly<MouthBox>>> = {
  64: { top: 31, bottom: 46, left: 21, right: 41 },
  32: { top: 15, bottom: 23, left: 10, right: 20 },
};

/** Options of `synthLips`. */
export interface SynthLipsOptions {
  /** Seed of everything (default 1). */
  seed?: number;
  /** Image side, 64 (the spec's) or 32 (the CPU variant); default 64. */
  size?: number;
  /** Words in the vocabulary (default 32; 10 for the smoke set). */
  vocab?: number;
  /** Identities per split (defaults SYNTHLIPS_IDENTITIES). */
  identities?: Partial<Record<SynthLipsSplit, number>>;
  /** Head translation walk, brightness jitter and blinks (default true). */
  nuisance?: boolean;
  /** Gaussian pixel noise σ = 1.5/255 on clip frames (default true). */
  noise?: boolean;
  /** MNIST digits as shirt logos on half the identities (default true; loads MNIST). */
  logos?: boolean;
  /** A folder with the MNIST IDX files instead of the npm package's. */
  mnistDir?: string;
  /** Supersampling per axis (default 4). */
  ssaa?: number;
}

/** One identity: its traits, identity vector and where it comes from. */
export interface SynthLipsIdentity {
  split: SynthLipsSplit;
  /** Index within the split. */
  index: number;
  face: FaceTraits;
  /** Identity parameter vector (columns FACE_PARAMS). */
  vector: Float32Array;
  /** Which traits leave the training ranges ("none" outside the ood split). */
  oodKind: OodKind;
  /** The shirt logo's MNIST source: split (train ids: MNIST-train, others MNIST-test), index, digit. */
  logo: { mnist: "train" | "test"; index: number; digit: number } | null;
}

/** One clip: who says which word, and the ground truth of each of its 29 frames. */
export interface SynthLipsClip {
  split: SynthLipsSplit;
  identity: number;
  word: number;
  utterance: number;
  /** Index of the clip within its split (see `clipAt`). */
  index: number;
  /** Speed and amplitude of this utterance (identity's factor times the utterance's). */
  speed: number;
  amplitude: number;
  /** Rest knot where the word starts (frames) and each viseme's duration (frames). */
  onset: number;
  durations: Float32Array;
  /** Per frame: openness, spread, lip press. */
  o: Float32Array;
  s: Float32Array;
  press: Float32Array;
  /** Per frame: viseme id (0 = rest). */
  viseme: Int32Array;
  /** Per frame: 1 when the eyes are closed. */
  blink: Uint8Array;
  /** Per frame: head translation (canvas px) and brightness factor. */
  tx: Float32Array;
  ty: Float32Array;
  brightness: Float32Array;
  /** Seed of the clip's pixel noise (frame n uses hash(noiseSeed, n)). */
  noiseSeed: number;
}

/** Frames of a batch with their ground truth. */
export interface SynthLipsFrames {
  n: number;
  /** [n, 3, size, size], 0..255. */
  pixels: Uint8Array;
  /** Per frame: clip index in the split, frame index in the clip, identity, word, viseme, blink. */
  clip: Int32Array;
  frame: Int32Array;
  identity: Int32Array;
  word: Int32Array;
  viseme: Int32Array;
  blink: Uint8Array;
  /** [n, 3]: o, s, press. */
  mouth: Float32Array;
  /** [n, 2]: tx, ty (canvas px). */
  pose: Float32Array;
  /** [n, 4]: lip bounds x0, y0, x1, y1 in output pixel coordinates. */
  lips: Float32Array;
}

/** Options of the render calls. */
export interface SynthLipsRenderOptions {
  /** "photo" (default) or the OOD "painting" re-render. */
  style?: SynthLipsStyle;
}

const STREAM = { vocab: 11, face: 20, logo: 30, trajectory: 40, nuisance: 50, noise: 60 };
const SPLIT_CODE: Record<SynthLipsSplit, number> = { train: 0, val: 1, test: 2, ood: 3 };
const LOGO_P = 0.5;
const WALK_STEP = 0.15, WALK_MAX = 1, BRIGHTNESS_SIGMA = 0.01, BLINK_P = 0.3;

/** The frame state of frame n of a clip. */
export function clipState(clip: SynthLipsClip, n: number): FrameState {
  checkFrame(n);
  return {
    o: clip.o[n],
    s: clip.s[n],
    press: clip.press[n],
    tx: clip.tx[n],
    ty: clip.ty[n],
    blink: clip.blink[n] === 1,
    brightness: clip.brightness[n],
  };
}

/**
 * Frame states of the cross-identity target: the mouth (o, s, press) of every source frame n with
 * the head pose, blink and brightness of query frame k (spec §5.2 GT_{T,n}).
 */
export function crossStates(source: SynthLipsClip, query: SynthLipsClip, k: number): FrameState[] {
  const q = clipState(query, k);
  return Array.from({ length: SYNTHLIPS_FRAMES }, (_, n) => ({
    ...q,
    o: source.o[n],
    s: source.s[n],
    press: source.press[n],
  }));
}

function checkFrame(n: number): void {
  if (!(Number.isInteger(n) && n >= 0 && n < SYNTHLIPS_FRAMES)) {
    throw new Error(
      `flowgpu: synthlips: frame ${n} is outside 0..${
        SYNTHLIPS_FRAMES - 1
      } (clips have ${SYNTHLIPS_FRAMES} frames)`,
    );
  }
}

function checkInt(what: string, v: number, lo: number, hi: number): void {
  if (!(Number.isInteger(v) && v >= lo && v <= hi)) {
    throw new Error(`flowgpu: synthlips: ${what} must be an integer in ${lo}..${hi}, got ${v}`);
  }
}

/**
 * 5-bit model input of 8-bit pixels (spec §1.1): x = floor(u8 / 8) / 32 - 0.5, in [-0.5, 0.47].
 */
export function toFlowInput(
  pixels: Uint8Array,
  out: Float32Array = new Float32Array(pixels.length),
): Float32Array {
  for (let i = 0; i < pixels.length; i++) out[i] = (pixels[i] >> 3) / 32 - 0.5;
  return out;
}

/** A 0/1 mask of size x size with ones inside `box` (the MI condition c = M ⊙ x̃). */
export function boxMask(size: number, box: MouthBox): Float32Array {
  const m = new Float32Array(size * size);
  for (let y = box.top; y <= box.bottom; y++) {
    m.fill(1, y * size + box.left, y * size + box.right + 1);
  }
  return m;
}

/** The SynthLips data set of one seed and size (see the file comment). */
export class SynthLips {
  readonly seed: number;
  readonly size: SynthLipsSize;
  readonly frames = SYNTHLIPS_FRAMES;
  /** The vocabulary; word w is vocab[w]. */
  readonly vocab: readonly SynthLipsWord[];
  /** The fixed mouth box at this size. */
  readonly box: Readonly<MouthBox>;
  readonly nuisance: boolean;
  readonly noise: boolean;
  readonly ssaa: number;
  readonly #counts: Record<SynthLipsSplit, number>;
  readonly #mnist: { train: Mnist; test: Mnist } | null;
  readonly #ids = new Map<string, SynthLipsIdentity>();

  /** Use `synthLips(opts)`, which checks the options and loads MNIST for the logos. */
  constructor(
    opts: SynthLipsOptions,
    mnist: { train: Mnist; test: Mnist } | null,
  ) {
    const seed = opts.seed ?? 1;
    checkInt("seed", seed, 0, 2 ** 32 - 1);
    const size = opts.size ?? 64;
    if (size !== 32 && size !== 64) {
      throw new Error(`flowgpu: synthlips: size must be 32 or 64, got ${size}`);
    }
    const vocab = opts.vocab ?? SYNTHLIPS_VOCAB;
    checkInt("vocabulary size", vocab, 2, 200);
    this.ssaa = opts.ssaa ?? 4;
    checkInt("ssaa", this.ssaa, 1, 8);
    this.#counts = { ...SYNTHLIPS_IDENTITIES };
    for (const [k, v] of Object.entries(opts.identities ?? {})) {
      this.#split(k); // throws on an unknown split
      if (v === undefined) continue;
      checkInt(`identities.${k}`, v, 0, 100_000);
      this.#counts[k as SynthLipsSplit] = v;
    }
    this.seed = seed;
    this.size = size;
    this.box = SYNTHLIPS_BOX[size];
    this.nuisance = opts.nuisance ?? true;
    this.noise = opts.noise ?? true;
    this.#mnist = mnist;
    this.vocab = makeVocabulary(vocab, new Rng(hash3(seed, vocab, STREAM.vocab)));
  }

  #split(split: string): SynthLipsSplit {
    if (!SYNTHLIPS_SPLITS.includes(split as SynthLipsSplit)) {
      throw new Error(
        `flowgpu: synthlips: unknown split '${split}' (splits: ${SYNTHLIPS_SPLITS.join(", ")})`,
      );
    }
    return split as SynthLipsSplit;
  }

  /** Identities in `split`. */
  identityCount(split: SynthLipsSplit): number {
    return this.#counts[this.#split(split)];
  }

  /** Utterances of each word per identity in `split`. */
  utterances(split: SynthLipsSplit): number {
    return SYNTHLIPS_UTTERANCES[this.#split(split)];
  }

  /** Clips in `split`: identities x words x utterances. */
  clipCount(split: SynthLipsSplit): number {
    return this.identityCount(split) * this.vocab.length * this.utterances(split);
  }

  /** Frames in `split` (29 per clip). */
  frameCount(split: SynthLipsSplit): number {
    return this.clipCount(split) * SYNTHLIPS_FRAMES;
  }

  /** Identity `i` of `split`: traits from hash(seed, split, i), so splits never share a seed. */
  identity(split: SynthLipsSplit, i: number): SynthLipsIdentity {
    const n = this.identityCount(split);
    if (!(Number.isInteger(i) && i >= 0 && i < n)) {
      throw new Error(
        `flowgpu: synthlips: identity ${i} is outside 0..${n - 1} of the ${split} split`,
      );
    }
    const key = `${split}:${i}`;
    let id = this.#ids.get(key);
    if (id) return id;
    const h = hash3(this.seed, i, 1000 + SPLIT_CODE[split]);
    // The logo has its own stream, so turning logos off leaves every other trait as it was.
    let logo: SynthLipsIdentity["logo"] = null, mask: Float32Array | null = null;
    const lrng = new Rng(hash3(h, 0, STREAM.logo));
    if (this.#mnist && lrng.next() < LOGO_P) {
      const src = split === "train" ? "train" : "test", pool = this.#mnist[src];
      const k = lrng.int(pool.count);
      logo = { mnist: src, index: k, digit: pool.labels[k] };
      mask = logoMask(pool.images.subarray(k * 1024, (k + 1) * 1024));
    }
    const { face, oodKind } = sampleFace(new Rng(hash3(h, 0, STREAM.face)), split === "ood", mask);
    id = { split, index: i, face, vector: faceVector(face), oodKind, logo };
    this.#ids.set(key, id);
    return id;
  }

  /** Word `w` of the vocabulary. */
  word(w: number): SynthLipsWord {
    if (!(Number.isInteger(w) && w >= 0 && w < this.vocab.length)) {
      throw new Error(
        `flowgpu: synthlips: word ${w} is outside 0..${
          this.vocab.length - 1
        } (vocabulary of ${this.vocab.length})`,
      );
    }
    return this.vocab[w];
  }

  /** Clip `c` of `split`; c = (identity · words + word) · utterances + utterance. */
  clipAt(split: SynthLipsSplit, c: number): SynthLipsClip {
    const n = this.clipCount(split), U = this.utterances(split);
    if (!(Number.isInteger(c) && c >= 0 && c < n)) {
      throw new Error(`flowgpu: synthlips: clip ${c} is outside 0..${n - 1} of the ${split} split`);
    }
    const u = c % U, rest = (c - u) / U, w = rest % this.vocab.length;
    return this.clip(split, (rest - w) / this.vocab.length, w, u);
  }

  /** The clip of identity `i` of `split` saying word `w` (utterance `u`), without pixels. */
  clip(split: SynthLipsSplit, i: number, w: number, u = 0): SynthLipsClip {
    const id = this.identity(split, i), word = this.word(w), U = this.utterances(split);
    if (!(Number.isInteger(u) && u >= 0 && u < U)) {
      throw new Error(
        `flowgpu: synthlips: utterance ${u} is outside 0..${U - 1} of the ${split} split`,
      );
    }
    const h = hash3(hash3(this.seed, i, 1000 + SPLIT_CODE[split]), w * 64 + u, 7);
    const trng = new Rng(hash3(h, 0, STREAM.trajectory));
    const speed = id.face.speed * (0.9 + 0.2 * trng.next());
    const amplitude = id.face.amplitude * (0.9 + 0.2 * trng.next());
    const tr = mouthTrajectory(word.visemes, speed, amplitude, trng);
    const N = SYNTHLIPS_FRAMES;
    const tx = new Float32Array(N), ty = new Float32Array(N);
    const brightness = new Float32Array(N).fill(1), blink = new Uint8Array(N);
    if (this.nuisance) {
      const nrng = new Rng(hash3(h, 0, STREAM.nuisance));
      const clampWalk = (v: number) => Math.min(WALK_MAX, Math.max(-WALK_MAX, v));
      for (let n = 0; n < N; n++) {
        tx[n] = n === 0 ? 0 : clampWalk(tx[n - 1] + WALK_STEP * nrng.normal());
        ty[n] = n === 0 ? 0 : clampWalk(ty[n - 1] + WALK_STEP * nrng.normal());
        brightness[n] = 1 + BRIGHTNESS_SIGMA * nrng.normal();
      }
      if (nrng.next() < BLINK_P) {
        const b = nrng.int(N - 1); // one blink of two frames
        blink[b] = blink[b + 1] = 1;
      }
    }
    return {
      split,
      identity: i,
      word: w,
      utterance: u,
      index: (i * this.vocab.length + w) * U + u,
      speed,
      amplitude,
      onset: tr.onset,
      durations: tr.durations,
      o: tr.o,
      s: tr.s,
      press: tr.press,
      viseme: tr.viseme,
      blink,
      tx,
      ty,
      brightness,
      noiseSeed: hash3(h, 0, STREAM.noise),
    };
  }

  /**
   * Renders any identity in any frame state (8-bit CHW, 3 x size x size) into `out` from
   * `offset`. `noise` seeds the pixel noise; without it the frame is noise-free.
   */
  render(
    id: SynthLipsIdentity | FaceTraits,
    st: FrameState,
    opts: SynthLipsRenderOptions & { noise?: number } = {},
    out: Uint8Array = new Uint8Array(3 * this.size * this.size),
    offset = 0,
  ): Uint8Array {
    const face = "face" in id ? id.face : id;
    const need = offset + 3 * this.size * this.size;
    if (out.length < need) {
      throw new Error(
        `flowgpu: synthlips: output holds ${out.length} bytes, the frame needs ${need}`,
      );
    }
    renderFace(
      face,
      st,
      { size: this.size, ssaa: this.ssaa, style: opts.style, noise: opts.noise },
      out,
      offset,
    );
    return out;
  }

  /** The 29 frames of a clip, [29, 3, size, size], with the clip's pixel noise if the set has it. */
  renderClip(clip: SynthLipsClip, opts: SynthLipsRenderOptions = {}): Uint8Array {
    const d = 3 * this.size * this.size, out = new Uint8Array(SYNTHLIPS_FRAMES * d);
    const id = this.identity(clip.split, clip.identity);
    for (let n = 0; n < SYNTHLIPS_FRAMES; n++) {
      const noise = this.noise ? hash3(clip.noiseSeed, n, 1) : undefined;
      this.render(id, clipState(clip, n), { ...opts, noise }, out, n * d);
    }
    return out;
  }

  /**
   * Cross-identity ground truth [29, 3, size, size]: the query's identity with the head pose,
   * blink and brightness of query frame k and the mouth of each source frame, noise-free.
   */
  renderCross(
    source: SynthLipsClip,
    query: SynthLipsClip,
    k: number,
    opts: SynthLipsRenderOptions = {},
  ): Uint8Array {
    const d = 3 * this.size * this.size, out = new Uint8Array(SYNTHLIPS_FRAMES * d);
    const id = this.identity(query.split, query.identity);
    crossStates(source, query, k).forEach((st, n) => this.render(id, st, opts, out, n * d));
    return out;
  }

  /**
   * Lip bounds [x0, y0, x1, y1] of an identity in a frame state, in output pixel coordinates
   * (pixel centres at integers): inside the mouth box when x0 >= left - 0.5, x1 <= right + 0.5 ...
   */
  lipBounds(id: SynthLipsIdentity | FaceTraits, st: FrameState): [number, number, number, number] {
    const face = "face" in id ? id.face : id, k = 64 / this.size;
    const b = mouthGeometry(face, st).bounds;
    return b.map((v) => (v + 0.5) / k - 0.5) as [number, number, number, number];
  }

  /**
   * Frames `refs` of `split` (ref = clip index · 29 + frame) with their ground truth, as the clip
   * renders them (the clip's noise included): for frame-level training (Glow, MI flow).
   */
  renderFrames(
    split: SynthLipsSplit,
    refs: ArrayLike<number>,
    opts: SynthLipsRenderOptions = {},
  ): SynthLipsFrames {
    const n = refs.length, d = 3 * this.size * this.size, total = this.frameCount(split);
    const f: SynthLipsFrames = {
      n,
      pixels: new Uint8Array(n * d),
      clip: new Int32Array(n),
      frame: new Int32Array(n),
      identity: new Int32Array(n),
      word: new Int32Array(n),
      viseme: new Int32Array(n),
      blink: new Uint8Array(n),
      mouth: new Float32Array(3 * n),
      pose: new Float32Array(2 * n),
      lips: new Float32Array(4 * n),
    };
    for (let b = 0; b < n; b++) {
      const r = refs[b];
      if (!(Number.isInteger(r) && r >= 0 && r < total)) {
        throw new Error(
          `flowgpu: synthlips: frame ref ${r} (position ${b}) is outside 0..${
            total - 1
          } of the ${split} split`,
        );
      }
      const t = r % SYNTHLIPS_FRAMES, clip = this.clipAt(split, (r - t) / SYNTHLIPS_FRAMES);
      const id = this.identity(split, clip.identity), st = clipState(clip, t);
      const noise = this.noise ? hash3(clip.noiseSeed, t, 1) : undefined;
      this.render(id, st, { ...opts, noise }, f.pixels, b * d);
      f.clip[b] = clip.index;
      f.frame[b] = t;
      f.identity[b] = clip.identity;
      f.word[b] = clip.word;
      f.viseme[b] = clip.viseme[t];
      f.blink[b] = clip.blink[t];
      f.mouth.set([st.o, st.s, st.press], 3 * b);
      f.pose.set([st.tx, st.ty], 2 * b);
      f.lips.set(this.lipBounds(id, st), 4 * b);
    }
    return f;
  }

  /** The mouth box as a size x size 0/1 mask. */
  mask(): Float32Array {
    return boxMask(this.size, this.box);
  }

  /** Name of a viseme id (for captions). */
  static visemeName(v: number): string {
    return VISEMES[v]?.name ?? `?${v}`;
  }
}

/**
 * The SynthLips set for `opts` (see SynthLipsOptions). Loads the MNIST digits for the shirt logos
 * unless `logos` is false; throws `flowgpu: synthlips: ...` on a bad option.
 */
export async function synthLips(opts: SynthLipsOptions = {}): Promise<SynthLips> {
  const known = [
    "seed",
    "size",
    "vocab",
    "identities",
    "nuisance",
    "noise",
    "logos",
    "mnistDir",
    "ssaa",
  ];
  for (const k of Object.keys(opts)) {
    if (!known.includes(k)) {
      throw new Error(`flowgpu: synthlips: unknown option '${k}' (options: ${known.join(", ")})`);
    }
  }
  new SynthLips({ ...opts }, null); // checks the options before the MNIST load
  const mnist = opts.logos ?? true
    ? {
      train: await loadMnist("train", { dir: opts.mnistDir }),
      test: await loadMnist("test", { dir: opts.mnistDir }),
    }
    : null;
  return new SynthLips(opts, mnist);
}

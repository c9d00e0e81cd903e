// SynthLips words (af-mi-flow.md §5.2): the eight visemes as mouth targets, a seeded vocabulary of
// words made of 3-5 visemes, and the 29-frame mouth trajectory of one utterance of a word.
//
// A word is known only from the order and timing of its visemes: at least a quarter of the words
// have a twin with the same visemes in another order, so a classifier that looks at single frames
// (or at the multiset of mouth shapes) cannot tell twins apart. The trajectory puts knots at rest
// before and after the word and at the centre of each viseme, interpolates them with a Catmull-Rom
// spline (zero slope at the rest knots), and adds a little per-frame jitter.
import type { Rng } from "../util/rng.ts";

/** Frames per clip (LRW's 29). */
export const SYNTHLIPS_FRAMES = 29;

/** One viseme: its mouth target (openness o, spread s, lip press) and a letter for word names. */
export interface Viseme {
  readonly id: number;
  readonly name: string;
  /** One letter per viseme, so a word's name spells its visemes. */
  readonly letter: string;
  /** Openness target in [0, 1]. */
  readonly o: number;
  /** Spread target in [-1, 1] (-1 rounded, +1 wide). */
  readonly s: number;
  /** Lip press target in [0, 1]: 1 thins both lips to 0.8 of their thickness (p/b/m). */
  readonly press: number;
}

/** V0..V7 of the spec: rest, p/b/m, aa, ee, oo, oh, f/v, eh. */
export const VISEMES: readonly Viseme[] = [
  { id: 0, name: "rest", letter: "_", o: 0.05, s: 0, press: 0 },
  { id: 1, name: "p/b/m", letter: "m", o: 0.0, s: -0.15, press: 1 },
  { id: 2, name: "aa", letter: "a", o: 0.95, s: 0.15, press: 0 },
  { id: 3, name: "ee", letter: "i", o: 0.30, s: 0.95, press: 0 },
  { id: 4, name: "oo", letter: "u", o: 0.30, s: -0.95, press: 0 },
  { id: 5, name: "oh", letter: "o", o: 0.70, s: -0.55, press: 0 },
  { id: 6, name: "f/v", letter: "f", o: 0.12, s: 0.35, press: 0 },
  { id: 7, name: "eh", letter: "e", o: 0.55, s: 0.55, press: 0 },
];

/** A word: its id (its position in the vocabulary), a name spelling its visemes, the visemes. */
export interface SynthLipsWord {
  readonly id: number;
  readonly name: string;
  /** Viseme ids in 1..7, 3 to 5 of them, no viseme twice in a row. */
  readonly visemes: readonly number[];
}

/** Vocabulary size of the spec's main set (LRW has 500 words; SynthLips 32, smoke set 10). */
export const SYNTHLIPS_VOCAB = 32;

const key = (v: readonly number[]) => v.join(",");
const multisetKey = (v: readonly number[]) => [...v].sort().join(",");
const noRepeat = (v: readonly number[]) => v.every((x, i) => i === 0 || v[i - 1] !== x);

/**
 * Twin pairs in a vocabulary of `size` words: enough that at least 25 % of the words have a
 * twin (spec §5.2), with a little margin (5 pairs = 10 of 32 words; 2 pairs = 4 of 10).
 */
export function twinPairs(size: number): number {
  return Math.min(Math.floor(size / 2), Math.ceil(0.15 * size));
}

/**
 * The seeded vocabulary of `size` distinct words (2..200). `twinPairs(size)` pairs share a viseme
 * multiset in different orders; the order of the words is shuffled so twins are not neighbours.
 */
export function makeVocabulary(size: number, rng: Rng): SynthLipsWord[] {
  if (!(Number.isInteger(size) && size >= 2 && size <= 200)) {
    throw new Error(
      `flowgpu: synthlips: vocabulary size must be an integer in 2..200, got ${size}`,
    );
  }
  const seqs: number[][] = [];
  const seen = new Set<string>();
  const randomWord = () => {
    const n = 3 + rng.int(3);
    const v: number[] = [];
    while (v.length < n) {
      const x = 1 + rng.int(7);
      if (v.length === 0 || v[v.length - 1] !== x) v.push(x);
    }
    return v;
  };
  // Another order of the same visemes, also without immediate repeats, not yet in the set.
  const twinOf = (v: number[]): number[] | undefined => {
    for (let tries = 0; tries < 200; tries++) {
      const p = rng.permutation(v.length);
      const w = Array.from(p, (i) => v[i]);
      if (noRepeat(w) && !seen.has(key(w)) && key(w) !== key(v)) return w;
    }
    return undefined;
  };
  const add = (v: number[]) => {
    seqs.push(v);
    seen.add(key(v));
  };
  const pairs = twinPairs(size);
  const multisets = new Set<string>(); // of the words so far
  while (seqs.length < 2 * pairs) {
    const v = randomWord();
    if (seen.has(key(v)) || multisets.has(multisetKey(v))) continue;
    const w = twinOf(v);
    if (!w) continue;
    add(v);
    add(w);
    multisets.add(multisetKey(v));
  }
  while (seqs.length < size) {
    const v = randomWord();
    // Singles keep clear of every multiset so far, so the twin count is exactly as planned.
    if (!multisets.has(multisetKey(v))) {
      add(v);
      multisets.add(multisetKey(v));
    }
  }
  const order = rng.permutation(size);
  return Array.from(order, (k, id) => ({
    id,
    name: seqs[k].map((x) => VISEMES[x].letter).join(""),
    visemes: seqs[k],
  }));
}

/** The mouth over one utterance: per-frame parameters and the viseme of every frame. */
export interface MouthTrajectory {
  /** Openness per frame, in [0, 1]. */
  o: Float32Array;
  /** Spread per frame, in [-1, 1]. */
  s: Float32Array;
  /** Lip press per frame, in [0, 1]. */
  press: Float32Array;
  /** Viseme id per frame (0 = rest outside the word). */
  viseme: Int32Array;
  /** Time (frames) of the rest knot where the word starts. */
  onset: number;
  /** Duration of each viseme in frames (after the fit to 24 frames). */
  durations: Float32Array;
  /** Knot times: onset, each viseme's centre, end (frames). */
  knots: Float32Array;
}

/** Longest word in frames (so that 2 rest frames fit at each end of 29). */
export const MAX_WORD_FRAMES = 24;
const FRAME_JITTER = 0.02;

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

/**
 * The mouth trajectory of one utterance (spec §5.2): viseme durations 3.5/speed·U[0.8,1.2] frames
 * (scaled down to fit 24 frames), a uniform onset leaving at least 2 rest frames at each end,
 * knots at rest and at each viseme centre, Catmull-Rom interpolation with zero slope at the rest
 * knots, openness scaled by `amplitude`, jitter N(0, 0.02²) on o and s, then clamped.
 * `speed` and `amplitude` are already the product of the identity's and the utterance's factors.
 */
export function mouthTrajectory(
  visemes: readonly number[],
  speed: number,
  amplitude: number,
  rng: Rng,
): MouthTrajectory {
  const N = SYNTHLIPS_FRAMES, K = visemes.length;
  const durations = new Float32Array(K);
  let total = 0;
  for (let k = 0; k < K; k++) total += durations[k] = (3.5 / speed) * (0.8 + 0.4 * rng.next());
  if (total > MAX_WORD_FRAMES) {
    for (let k = 0; k < K; k++) durations[k] *= MAX_WORD_FRAMES / total;
    total = MAX_WORD_FRAMES;
  }
  // Frames 0, 1 and N-2, N-1 stay at rest: onset >= 1 and onset + total <= N - 2.
  const onset = 1 + rng.next() * (N - 3 - 1 - total);
  const t = new Float64Array(K + 2), start = new Float64Array(K + 1);
  t[0] = onset;
  start[0] = onset;
  for (let k = 0; k < K; k++) {
    start[k + 1] = start[k] + durations[k];
    t[k + 1] = start[k] + durations[k] / 2;
  }
  t[K + 1] = onset + total;
  const ids = [0, ...visemes, 0];
  const channels = [
    ids.map((v) => VISEMES[v].o),
    ids.map((v) => VISEMES[v].s),
    ids.map((v) => VISEMES[v].press),
  ];
  const out = [new Float32Array(N), new Float32Array(N), new Float32Array(N)];
  const viseme = new Int32Array(N);
  for (let n = 0; n < N; n++) {
    let i = 0; // interval [t_i, t_{i+1}] holding n (or the ends)
    while (i < K && n > t[i + 1]) i++;
    for (let c = 0; c < 3; c++) out[c][n] = catmullRom(t, channels[c], i, n);
    for (let k = 0; k < K; k++) if (n >= start[k] && n < start[k + 1]) viseme[n] = visemes[k];
  }
  for (let n = 0; n < N; n++) {
    out[0][n] = clamp(amplitude * out[0][n] + FRAME_JITTER * rng.normal(), 0, 1);
    out[1][n] = clamp(out[1][n] + FRAME_JITTER * rng.normal(), -1, 1);
    out[2][n] = clamp(out[2][n], 0, 1);
  }
  return {
    o: out[0],
    s: out[1],
    press: out[2],
    viseme,
    onset,
    durations,
    knots: Float32Array.from(t),
  };
}

/**
 * Value at time `x` of the Catmull-Rom spline through knots (t, p) on interval i (cubic Hermite
 * with slopes (p_{i+1} - p_{i-1}) / (t_{i+1} - t_{i-1}), zero at the first and last knot); before
 * the first and after the last knot the spline holds the end value.
 */
export function catmullRom(
  t: ArrayLike<number>,
  p: readonly number[],
  i: number,
  x: number,
): number {
  const last = t.length - 1;
  if (x <= t[0]) return p[0];
  if (x >= t[last]) return p[last];
  const slope = (j: number) =>
    j === 0 || j === last ? 0 : (p[j + 1] - p[j - 1]) / (t[j + 1] - t[j - 1]);
  const h = t[i + 1] - t[i], u = (x - t[i]) / h;
  const u2 = u * u, u3 = u2 * u;
  return (2 * u3 - 3 * u2 + 1) * p[i] + (u3 - 2 * u2 + u) * h * slope(i) +
    (-2 * u3 + 3 * u2) * p[i + 1] + (u3 - u2) * h * slope(i + 1);
}

// The Table I evaluation protocol (af-mi-flow.md §6.2, §6.4) shared by the AF flow, the MI flow,
// the AF-MI hybrid and the Glow baseline: every model hands over a `Reenactor` (its factorisation:
// z^i of one frame, z^r of every source frame, decoded), and this file draws the clips, the query
// frames and the ground truth, and scores the decodes. Same draws for every model (they depend on
// the data set only), so runs compare clip for clip.
//
// Self-reenactment (§6.2): for each of `clips` test clips spread evenly over the test split and each
// of `seeds` draws of a frame k, z^i of frame k with z^r of every frame n ≠ k, against x_n.
// Cross-identity (§6.4, new): per clip and draw, a query clip of another identity and a frame k;
// z^i of that frame with z^r of the source frames, against SynthLips' rendered ground truth
// (the query identity with the pose, blink and brightness of frame k and the mouth of source frame
// n). Query sets: "unseen" (other test identities), "ood" (the ood split: skin tones and face sizes
// outside the training ranges), "painting" (other test identities re-rendered in the painting
// style, query frame and ground truth alike). The source clips are always test photos.
//
// Scores per frame on [0, 1] images (x + 1/2; decodes clamped, a non-finite value counted as the
// farthest value from the reference): PSNR = 10 log10(1 / MSE) over all 3·S·S values, capped at
// PSNR_CAP dB (identical images would give +∞), also inside and outside the mouth box; SSIM from
// ssim.ts (11x11 Gaussian σ = 1.5 window, valid region, channel mean). Per condition:
//   <cond>_<metric>            mean over (seed, clip, frame): each seed's mean over clips and
//                               frames, averaged over seeds
//   <cond>_<metric>_std        population std over seeds of the seed means (Table I's ±, A17)
//   <cond>_<metric>_std_clips  population std over clips of the clip means (seeds averaged)
// with <cond> ∈ self, cross_unseen, cross_ood, cross_painting and <metric> ∈ psnr, ssim, and
// <cond>_psnr_box, <cond>_psnr_outside (means only).
import { hash3 } from "../data/labelled.ts";
import {
  type SynthLips,
  SYNTHLIPS_FRAMES,
  type SynthLipsClip,
  type SynthLipsSplit,
  type SynthLipsStyle,
  toFlowInput,
} from "../data/synthlips.ts";
import { clearTape, noGrad } from "../ops/tape.ts";
import type { Tensor } from "../ops/tensor.ts";
import { imageGrid } from "../train/png.ts";
import { Rng } from "../util/rng.ts";
import { ssim } from "./ssim.ts";

/** PSNR of a frame that matches its reference exactly (10 log10(1 / 1e-10)). */
export const PSNR_CAP = 100;

/** The query sets of the cross-identity protocol (see the file comment). */
export type CrossSet = "unseen" | "ood" | "painting";
export const CROSS_SETS: readonly CrossSet[] = ["unseen", "ood", "painting"];

/** Where each query set draws its identities, and how it renders them. */
const CROSS_SOURCE: Record<CrossSet, { split: SynthLipsSplit; style: SynthLipsStyle }> = {
  unseen: { split: "test", style: "photo" },
  ood: { split: "ood", style: "photo" },
  painting: { split: "test", style: "painting" },
};

/** Seed of the protocol's draws: fixed, so every model is scored on the same clips and frames. */
const EVAL_SEED = 2022;
const N = SYNTHLIPS_FRAMES;

/**
 * A model's reenactment route: z^i of an identity frame with z^r of each source frame, decoded.
 * `method` names the factorisation: "af" (E(z) and z − E(z), §2.5), "glow" (A16: top latent and
 * split-offs), "mi" (top latent and the split-offs under the conditional prior, G1 of §3.5).
 */
export interface Reenactor {
  readonly method: string;
  /** The data set the model was trained on (its size, seed and vocabulary). */
  readonly set: SynthLips;
  /** Model inputs [n, 3, S, S] of 8-bit frames, as the model quantises them (x in [−1/2, 1/2]). */
  input(pixels: Uint8Array): Float32Array;
  /**
   * Reenacts the source frames (model inputs, [n, 3, S, S]) once per identity frame (model inputs,
   * [m, 3, S, S]): m decodes of [n, 3, S, S] each. The source is encoded once.
   */
  reenact(source: Float32Array, identities: Float32Array): Promise<Float32Array[]>;
}

/**
 * A reenactor without a model, the floor any model is read against: "source" returns the source
 * frames unchanged (all mouth, no identity), "identity" repeats the identity frame (all identity,
 * no mouth). On SynthLips the second is strong, since the mouth is a small part of the frame.
 */
export function copyReenactor(set: SynthLips, what: "source" | "identity"): Reenactor {
  const d = 3 * set.size * set.size;
  return {
    method: `copy-${what}`,
    set,
    input: (px) => toFlowInput(px),
    reenact: (source, identities) =>
      Promise.resolve(Array.from({ length: identities.length / d }, (_, j) => {
        if (what === "source") return source.slice();
        const out = new Float32Array(source.length);
        const frame = identities.subarray(j * d, (j + 1) * d);
        for (let i = 0; i < source.length; i += d) out.set(frame, i);
        return out;
      })),
  };
}

/**
 * The values of `decode(j)` for j < m, decoded one at a time without recording; between decodes
 * the tape keeps only `keep` (the encodings the decodes share), and is cleared at the end.
 */
export async function decodeEach(
  m: number,
  keep: Tensor[],
  decode: (j: number) => Tensor,
): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  try {
    for (let j = 0; j < m; j++) {
      out.push(await noGrad(() => decode(j)).read());
      clearTape(keep);
    }
  } finally {
    clearTape();
  }
  return out;
}

/** Whether `m` (a task's model) can reenact: af, mi and afmi models can. */
export function canReenact(m: object): m is { reenactor(): Reenactor } {
  return typeof (m as { reenactor?: unknown }).reenactor === "function";
}

/** Options of `reenactmentProtocol`. */
export interface ProtocolOptions {
  /** Test clips (spread evenly over the test split). */
  clips: number;
  /** Draws of k (and of the cross-identity queries) per clip. */
  seeds: number;
  /** Query sets of the cross-identity part (default all three). */
  cross?: readonly CrossSet[];
  /** Clips shown in the strips (default 2; 0: no images). */
  stripClips?: number;
}

/** What the protocol reports: flat metrics (see the file comment) and strips by name. */
export interface ProtocolResult {
  metrics: Record<string, number | string>;
  images: Record<string, Uint8Array>;
}

/** Mean and population standard deviation (0 for one value). */
export function meanStd(v: ArrayLike<number>): [number, number] {
  let m = 0;
  for (let i = 0; i < v.length; i++) m += v[i];
  m /= v.length;
  let s = 0;
  for (let i = 0; i < v.length; i++) s += (v[i] - m) ** 2;
  return [m, Math.sqrt(s / v.length)];
}

/** PSNR (dB) of a mean squared error on [0, 1] images, capped at PSNR_CAP. */
export function psnrOfMse(mse: number): number {
  return Math.min(PSNR_CAP, 10 * Math.log10(1 / mse));
}

/**
 * PSNR (dB) of two images on [0, 1] (same length), over the elements where `mask` (a 0/1 plane
 * repeated over channels) is 1, or 0 with `outside`; over all elements without a mask.
 */
export function psnr(
  x: ArrayLike<number>,
  ref: ArrayLike<number>,
  mask?: { plane: ArrayLike<number>; outside?: boolean },
): number {
  if (x.length !== ref.length || x.length === 0) {
    throw new Error(`flowgpu: psnr: ${x.length} values against ${ref.length}`);
  }
  let se = 0, n = 0;
  const p = mask?.plane, want = mask?.outside ? 0 : 1;
  for (let i = 0; i < x.length; i++) {
    if (p && p[i % p.length] !== want) continue;
    se += (x[i] - ref[i]) ** 2;
    n++;
  }
  if (n === 0) throw new Error("flowgpu: psnr: the mask selects no element");
  return psnrOfMse(se / n);
}

/**
 * Model-space frames (x in [−1/2, 1/2]) on [0, 1]: decodes clamped, a non-finite decode replaced
 * by the farthest value from the reference (the largest error a pixel can have). Returns the
 * images and the count of non-finite values.
 */
export function toUnit(decoded: Float32Array, ref: Float32Array): { x: Float32Array; bad: number } {
  const x = new Float32Array(decoded.length);
  let bad = 0;
  for (let i = 0; i < x.length; i++) {
    const v = decoded[i];
    if (Number.isFinite(v)) x[i] = Math.min(1, Math.max(0, v + 0.5));
    else {
      x[i] = ref[i] < 0 ? 1 : 0;
      bad++;
    }
  }
  return { x, bad };
}

/** PSNR (dB) of a decoded frame against its reference, both in model space (see `toUnit`). */
export function modelPsnr(decoded: Float32Array, ref: Float32Array): number {
  return psnr(toUnit(decoded, ref).x, ref.map((v) => v + 0.5));
}

/** The protocol's test clips: `n` spread evenly over the test split. */
export function protocolClips(set: SynthLips, n: number): SynthLipsClip[] {
  const count = set.clipCount("test");
  if (!(Number.isInteger(n) && n >= 1 && n <= count)) {
    throw new Error(`flowgpu: reenact: clips must be 1..${count} (the test split), got ${n}`);
  }
  return Array.from({ length: n }, (_, j) => set.clipAt("test", Math.floor(j * count / n)));
}

/** One query of the cross-identity protocol: its clip, frame k and render style. */
export interface Query {
  clip: SynthLipsClip;
  k: number;
  style: SynthLipsStyle;
}

/** Frame k of clip j, draw s (self-reenactment). */
export function selfFrame(j: number, s: number): number {
  return hash3(EVAL_SEED, j, 16 * s) % N;
}

/** The query of source clip `src` (clip j), draw s, in query set `which`. */
export function crossQuery(
  set: SynthLips,
  src: SynthLipsClip,
  j: number,
  s: number,
  which: CrossSet,
): Query {
  const { split, style } = CROSS_SOURCE[which];
  const rng = new Rng(hash3(EVAL_SEED, j, 16 * s + 1 + CROSS_SETS.indexOf(which)));
  const ids = set.identityCount(split);
  // Another identity than the source's when both come from the same split.
  const id = split === src.split && ids > 1
    ? (src.identity + 1 + rng.int(ids - 1)) % ids
    : rng.int(ids);
  const clip = set.clip(split, id, rng.int(set.vocab.length), rng.int(set.utterances(split)));
  return { clip, k: rng.int(N), style };
}

/** Frame k of a query clip (with the clip's pixel noise), rendered in its style. */
export function queryFrame(set: SynthLips, q: Query): Uint8Array {
  return set.renderFrames(q.clip.split, [q.clip.index * N + q.k], { style: q.style }).pixels;
}

/** Mean scores of decoded frames against their references (see `scoreFrames`). */
export interface Scores {
  psnr: number;
  ssim: number;
  box: number;
  outside: number;
  /** Non-finite decoded values. */
  bad: number;
}

/**
 * Means over frames `keep` of decoded clips against references (both model space, [n, 3, S, S]):
 * PSNR over the whole frame, inside and outside the mouth box (`box`, an S x S 0/1 plane), SSIM.
 */
export function scoreFrames(
  decoded: Float32Array,
  ref: Float32Array,
  keep: number[],
  size: number,
  box: Float32Array,
): Scores {
  const d = 3 * size * size;
  const a = new Float32Array(keep.length * d), b = new Float32Array(keep.length * d);
  keep.forEach((n, i) => {
    a.set(decoded.subarray(n * d, (n + 1) * d), i * d);
    b.set(ref.subarray(n * d, (n + 1) * d), i * d);
  });
  const { x, bad } = toUnit(a, b);
  for (let i = 0; i < b.length; i++) b[i] += 0.5;
  let p = 0, pin = 0, pout = 0;
  for (let i = 0; i < keep.length; i++) {
    const xi = x.subarray(i * d, (i + 1) * d), bi = b.subarray(i * d, (i + 1) * d);
    p += psnr(xi, bi);
    pin += psnr(xi, bi, { plane: box });
    pout += psnr(xi, bi, { plane: box, outside: true });
  }
  const s = ssim(x, b, [keep.length, 3, size, size]);
  const n = keep.length;
  return {
    psnr: p / n,
    ssim: s.reduce((u, v) => u + v, 0) / n,
    box: pin / n,
    outside: pout / n,
    bad,
  };
}

/**
 * Runs the protocol (see the file comment) with `r` and returns its metrics and strips
 * (`reenact_self`, `reenact_<set>`: the first `stripClips` clips at the first draw).
 */
export async function reenactmentProtocol(
  r: Reenactor,
  o: ProtocolOptions,
): Promise<ProtocolResult> {
  const t0 = performance.now();
  const set = r.set, S = set.size, d = 3 * S * S;
  if (!(Number.isInteger(o.seeds) && o.seeds >= 1)) {
    throw new Error(`flowgpu: reenact: seeds must be an integer >= 1, got ${o.seeds}`);
  }
  const cross = o.cross ?? CROSS_SETS;
  for (const c of cross) {
    if (!CROSS_SETS.includes(c)) {
      throw new Error(`flowgpu: reenact: unknown query set '${c}' (${CROSS_SETS.join(", ")})`);
    }
  }
  const clips = protocolClips(set, o.clips);
  const conds = ["self", ...cross.map((c) => `cross_${c}`)];
  // scores[cond][seed][clip]
  const all = conds.map(() => Array.from({ length: o.seeds }, () => [] as Scores[]));
  const box = set.mask();
  const stripClips = Math.min(o.stripClips ?? 2, clips.length);
  const strips = conds.map(() => [] as StripRow[]);
  let bad = 0;
  for (const [j, src] of clips.entries()) {
    const xs = r.input(set.renderClip(src));
    const ks = Array.from({ length: o.seeds }, (_, s) => selfFrame(j, s));
    const queries = ks.map((_, s) => cross.map((c) => crossQuery(set, src, j, s, c)));
    // Identity frames, draw-major: [self k, then each query set's frame k] per draw.
    const per = 1 + cross.length;
    const ids = new Float32Array(o.seeds * per * d);
    ks.forEach((k, s) => {
      ids.set(xs.subarray(k * d, (k + 1) * d), s * per * d);
      queries[s].forEach((q, c) => ids.set(r.input(queryFrame(set, q)), (s * per + 1 + c) * d));
    });
    const outs = await r.reenact(xs, ids);
    for (let s = 0; s < o.seeds; s++) {
      const k = ks[s];
      const keep = Array.from({ length: N }, (_, n) => n).filter((n) => n !== k);
      const self = scoreFrames(outs[s * per], xs, keep, S, box);
      all[0][s].push(self);
      bad += self.bad;
      if (s === 0 && j < stripClips) {
        strips[0].push({ lead: null, clip: xs }, {
          lead: xs.subarray(k * d, (k + 1) * d),
          clip: outs[0],
        });
      }
      for (const [c, q] of queries[s].entries()) {
        const gt = r.input(set.renderCross(src, q.clip, q.k, { style: q.style }));
        const every = Array.from({ length: N }, (_, n) => n);
        const sc = scoreFrames(outs[s * per + 1 + c], gt, every, S, box);
        all[1 + c][s].push(sc);
        bad += sc.bad;
        if (s === 0 && j < stripClips) {
          const lead = ids.subarray((1 + c) * d, (2 + c) * d);
          strips[1 + c].push({ lead: null, clip: xs }, { lead, clip: gt }, {
            lead,
            clip: outs[1 + c],
          });
        }
      }
    }
  }
  const metrics: Record<string, number | string> = { reenact_method: r.method };
  conds.forEach((cond, c) => {
    for (const m of ["psnr", "ssim"] as const) {
      const seedMeans = all[c].map((row) => meanStd(row.map((v) => v[m]))[0]);
      const clipMeans = clips.map((_, j) => meanStd(all[c].map((row) => row[j][m]))[0]);
      metrics[`${cond}_${m}`] = meanStd(seedMeans)[0];
      metrics[`${cond}_${m}_std`] = meanStd(seedMeans)[1];
      metrics[`${cond}_${m}_std_clips`] = meanStd(clipMeans)[1];
    }
    for (const m of ["box", "outside"] as const) {
      metrics[`${cond}_psnr_${m}`] = meanStd(all[c].flat().map((v) => v[m]))[0];
    }
  });
  metrics.eval_clips = clips.length;
  metrics.eval_seeds = o.seeds;
  metrics.nonfinite_pixels = bad;
  metrics.eval_seconds = (performance.now() - t0) / 1000;
  const images: Record<string, Uint8Array> = {};
  if (stripClips > 0) {
    const cols = Array.from({ length: Math.ceil(N / 2) }, (_, i) => 2 * i);
    for (const [c, cond] of conds.entries()) {
      images[`reenact_${cond.replace("cross_", "")}`] = await clipStrip(S, strips[c], cols);
    }
  }
  return { metrics, images };
}

/** One row of a strip: a clip [29, 3, S, S] (model space) and a frame for the first column. */
export interface StripRow {
  /** The frame of the first column (the identity frame), or null for an empty cell. */
  lead: Float32Array | null;
  clip: Float32Array;
}

/**
 * Rows of clip frames as a PNG (model-space values, [−1/2, 1/2]; NaN shows red): column 0 holds
 * each row's `lead` frame (grey when null), then frames `cols` of the row's clip.
 */
export function clipStrip(size: number, rows: StripRow[], cols: number[]): Promise<Uint8Array> {
  const d = 3 * size * size, w = cols.length + 1;
  const px = new Float32Array(rows.length * w * d);
  // The grid's gap grey (96/255), so an empty cell reads as a gap.
  const grey = 96 / 255 - 0.5;
  rows.forEach((r, i) => {
    if (r.lead) px.set(r.lead, i * w * d);
    else px.fill(grey, i * w * d, (i * w + 1) * d);
    cols.forEach((n, c) => px.set(r.clip.subarray(n * d, (n + 1) * d), (i * w + 1 + c) * d));
  });
  return imageGrid(px, rows.length * w, 3, size, size, w, { range: [-0.5, 0.5] });
}

// ---- training time (Table I's Time column) ---------------------------------------------------

/** Parsed lines of a run's metrics.jsonl ([] when it has none). */
function metricLines(dir: string): Record<string, unknown>[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(`${dir}/metrics.jsonl`);
  } catch {
    return [];
  }
  return text.split("\n").filter((l) => l.trim()).flatMap((l) => {
    try {
      return [JSON.parse(l)];
    } catch {
      return []; // a torn last line
    }
  });
}

/**
 * Seconds of training in the run folder `dir`, from its progress lines: each logged window took
 * (steps since the last line) · examplesPerStep / examples_per_s (the trainer's own figure, wall
 * time including previews and checkpoints). NaN when nothing was logged.
 */
export function trainSeconds(dir: string, examplesPerStep: number): number {
  let prev = 0, total = 0, seen = false;
  for (const l of metricLines(dir)) {
    const step = l.step, eps = l.examples_per_s;
    if (typeof step !== "number" || typeof eps !== "number" || !(eps > 0)) continue;
    total += (Math.max(0, step - prev) * examplesPerStep) / eps;
    prev = step;
    seen = true;
  }
  return seen ? total : NaN;
}

/**
 * The whole training time of a finished run another run started from (--glow-from, --init-from):
 * its eval.json's train_seconds_total, else its final line's train_minutes, else the sum of its
 * progress lines (a run stopped early); NaN if none of these.
 */
export function finishedRunSeconds(dir: string): number {
  try {
    const doc = JSON.parse(Deno.readTextFileSync(`${dir}/eval.json`));
    const t = doc?.metrics?.train_seconds_total;
    if (typeof t === "number") return t;
  } catch { /* no eval.json: the log below */ }
  const last = metricLines(dir).filter((l) => typeof l.train_minutes === "number").at(-1);
  if (last) return 60 * (last.train_minutes as number);
  // A run stopped before its end (or a prefix of one) has no final line: sum its progress lines.
  try {
    const batch = JSON.parse(Deno.readTextFileSync(`${dir}/config.json`))?.batch;
    if (typeof batch === "number") return trainSeconds(dir, batch);
  } catch { /* no config either */ }
  return NaN;
}

/**
 * The run's training time for eval.json: train_seconds (this run's own steps) and
 * train_seconds_total (plus the run it started from, when `from` names one).
 */
export function runTimes(
  dir: string,
  examplesPerStep: number,
  from?: string,
): { train_seconds: number; train_seconds_total: number } {
  const own = trainSeconds(dir, examplesPerStep);
  return { train_seconds: own, train_seconds_total: from ? own + finishedRunSeconds(from) : own };
}

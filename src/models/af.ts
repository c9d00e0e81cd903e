// AF flow, attribute factorisation on a Glow (af-mi-flow.md §2; Chien & Huang, TNNLS 2022, §III).
// A Glow f_θ maps every frame x_n of a clip to latents z_n = (z_1 .. z_L), one tensor per level.
// An encoder E_φ, applied to every level, splits them additively:
//   z^i = E_φ(z)   (attribute-irrelevant: identity, global face)
//   z^r = z − z^i  (attribute-relevant: the mouth)            [two-encoder variant: z^r = E_r(z)]
// and four losses shape it, ℓ(a, b) = Σ_l mean((a_l − b_l)²) (A12):
//   L_s  source structure (eq. 2): every frame's z^i is its clip's centroid z̄_S
//   L_t  target structure (eq. 3): E_i(z^r_{S,n} + z^i_q) is the query clip's centroid z̄_Q
//   L_p  random-pair reconstruction (eq. 4): E_i(z_n) + z^r_m rebuilds z_m (n = m + s mod N)
//   L_y  sequential word classification (eq. 5): a vanilla RNN over the level-1 z^r of the frames
// L_AF = L_s + L_t + L_p + L_y (eq. 6), each with a switch for the Table I ablations. AF-2 trains
// the Glow first by likelihood and freezes it (the task freezes the `flow` group); AF-1 trains
// everything jointly. Reenactment (§2.5): z_T = E_i(z_q) + z^r(z_S), x_T = f⁻¹(z_T).
import { Linear } from "../nn/layers.ts";
import { type ParamStore, type Scope, zeros } from "../nn/store.ts";
import { add, relu, sub, tanh } from "../ops/elementwise.ts";
import { nllLoss } from "../ops/classify.ts";
import { mse } from "../ops/divergence.ts";
import { gatherBatch } from "../ops/gather.ts";
import { gaussianLogProb } from "../ops/loss.ts";
import { linear, matmul } from "../ops/matmul.ts";
import { concatChannels, reshape, splitChannels } from "../ops/shape.ts";
import { fmtShape, type Shape, Tensor } from "../ops/tensor.ts";
import { Glow, type GlowConfig } from "./glow.ts";

/** Which AF losses enter L_AF (eq. 6); switching one off is a Table I ablation. */
export interface AfLossSwitches {
  /** L_s, source structure (eq. 2). */
  source: boolean;
  /** L_t, target structure (eq. 3). */
  target: boolean;
  /** L_p, random-pair reconstruction (eq. 4). */
  pair: boolean;
  /** L_y, sequential word classification (eq. 5). */
  word: boolean;
}

/** Shape and options of the AF part (the Glow has its own `GlowConfig`). */
export interface AfConfig {
  /** 1: a single encoder E (z^r = z − E(z), the paper's best); 2: separate E_i and E_r. */
  encoders: 1 | 2;
  /** "residual": E(v) = v + MLP(v), starting at E = I; "mlp": E(v) = MLP(v) (spec §2.1 [R]). */
  encoder: EncoderForm;
  /** Vocabulary of the word classifier (N_y). */
  words: number;
  /** Hidden units of the recurrent classifier (H; the spec's 256). */
  rnnHidden: number;
  /** The losses of L_AF; without `word` no classifier is built. */
  losses: AfLossSwitches;
}

/** The defaults: one encoder, 32 words, H = 256, every loss on. */
export const defaultAfConfig: AfConfig = {
  encoders: 1,
  encoder: "residual",
  words: 32,
  rnnHidden: 256,
  losses: { source: true, target: true, pair: true, word: true },
};

/** Every AF loss on. */
export const ALL_AF_LOSSES: Readonly<AfLossSwitches> = {
  source: true,
  target: true,
  pair: true,
  word: true,
};

const count = (s: Shape) => s.reduce((a, b) => a * b, 1);

/** The two forms of the encoder: with a skip connection around the MLP, or the plain MLP. */
export type EncoderForm = "residual" | "mlp";

/**
 * The encoder E_φ (spec §2.1 [R]): one MLP per level, M_l(v) = W2 ReLU(W1 v + b1) + b2 on each
 * channel's flattened h_l × w_l map v, its weights shared by every channel of the level, hidden
 * width h_l w_l. Latents in and out have the Glow's per-level shapes.
 *
 * "mlp" is E_l = M_l. "residual" is E_l(v) = v + M_l(v) with W2 starting at zero, so E starts as
 * the identity: L_s's target, the clip centroid, is the frame minus its mouth and nuisance, which
 * the plain MLP must first rebuild through a ReLU bottleneck. On 32x32 SynthLips it did not: after
 * 1500 steps its L_s (0.92) was still above that of E = I (0.68).
 */
export class LatentEncoder {
  /** Per level: the hidden and the output layer. */
  readonly layers: { fc1: Linear; fc2: Linear }[];
  /** Per-level latent shapes without N ([C, h, w]). */
  readonly shapes: number[][];

  /** Declares `level<l>.fc1` and `level<l>.fc2` in `s` for latents of `shapes` ([C, h, w] each). */
  constructor(s: Scope, shapes: number[][], readonly form: EncoderForm = "residual") {
    if (form !== "residual" && form !== "mlp") {
      throw new Error(`flowgpu: af: encoder form must be residual or mlp, got ${form}`);
    }
    if (shapes.length === 0 || shapes.some((sh) => sh.length !== 3 || sh.some((d) => !(d >= 1)))) {
      throw new Error(
        `flowgpu: af: encoder needs per-level latent shapes [C, h, w], got ${
          JSON.stringify(shapes)
        }`,
      );
    }
    this.shapes = shapes.map((sh) => [...sh]);
    this.layers = shapes.map(([, h, w], l) => {
      const ls = s.child(`level${l}`), d = h * w;
      const fc2 = new Linear(ls.child("fc2"), d, d, form === "residual" ? { init: zeros } : {});
      return { fc1: new Linear(ls.child("fc1"), d, d), fc2 };
    });
  }

  /** E(z), level by level; each z_l is [N, C, h, w] of this encoder's shapes. */
  apply(z: Tensor[]): Tensor[] {
    checkLatents("encoder input", z, this.shapes);
    return z.map((zl, l) => {
      const [n, c, h, w] = zl.shape;
      const { fc1, fc2 } = this.layers[l];
      const v = reshape(zl, [n * c, h * w]);
      const m = fc2.apply(relu(fc1.apply(v)));
      return reshape(this.form === "residual" ? add(v, m) : m, [n, c, h, w]);
    });
  }
}

/**
 * The sequential word classifier C_ψ (spec §2.1 [R], the paper's Fig. 4a vanilla RNN): per clip,
 * h_n = tanh(W_in u_n + W_hh h_{n−1} + b), h_0 = 0, and per-frame logits o_n = W_out h_n + b_out.
 * Built from linear, tanh and the channel split/concat, so each op's own backward gives BPTT.
 */
export class WordRnn {
  /** u -> W_in u + b (parameters `input.weight`, `input.bias`). */
  readonly input: Linear;
  /** Recurrent weight W_hh [H, H] (parameter `recurrent`). */
  readonly recurrent: Tensor;
  /** h -> o (parameters `output.weight`, `output.bias`). */
  readonly output: Linear;

  /** Declares the classifier's parameters in `s`: `inputs` features per frame, `hidden` units. */
  constructor(
    s: Scope,
    readonly inputs: number,
    readonly hidden: number,
    readonly classes: number,
  ) {
    const sizes: [string, number][] = [["inputs", inputs], ["hidden", hidden], [
      "classes",
      classes,
    ]];
    for (const [what, v] of sizes) {
      if (!(Number.isInteger(v) && v >= 1)) {
        throw new Error(`flowgpu: af: word classifier ${what} must be an integer >= 1, got ${v}`);
      }
    }
    this.input = new Linear(s.child("input"), inputs, hidden);
    this.recurrent = s.param(
      "recurrent",
      [hidden, hidden],
      (n, rng) => rng.normalArray(n, 1 / Math.sqrt(hidden)),
    );
    this.output = new Linear(s.child("output"), hidden, classes);
  }

  /** Per-frame logits [B·N, K] of u [B·N, inputs]: B clips of `frames` frames, clip-major. */
  logits(u: Tensor, frames: number): Tensor {
    const [rows, d] = u.shape;
    if (
      u.shape.length !== 2 || d !== this.inputs || !(Number.isInteger(frames) && frames >= 1) ||
      rows % frames !== 0
    ) {
      throw new Error(
        `flowgpu: af: word classifier input ${
          fmtShape(u.shape)
        } is not [clips x ${frames} frames, ${this.inputs}]`,
      );
    }
    const b = rows / frames, hd = this.hidden;
    // W_in u_n for every frame in one product; only the recurrence is sequential.
    const a = reshape(this.input.apply(u), [b, frames, hd]);
    const steps = frames > 1 ? splitChannels(a, new Array(frames).fill(1)) : [a];
    const hs: Tensor[] = [];
    let h: Tensor | undefined;
    for (const step of steps) {
      const pre = reshape(step, [b, hd]);
      h = tanh(h ? add(pre, linear(h, this.recurrent)) : pre);
      hs.push(reshape(h, [b, 1, hd]));
    }
    const all = hs.length > 1 ? concatChannels(hs) : hs[0];
    return this.output.apply(reshape(all, [rows, hd]));
  }

  /**
   * L_y = mean over clips and frames of CE(o_n, y) (eq. 5, averaged [R]), and the last frame's
   * logits [B, K] (accuracy is read from o_N). `words` holds one label per clip.
   */
  loss(u: Tensor, frames: number, words: ArrayLike<number>): { loss: Tensor; last: Tensor } {
    const logits = this.logits(u, frames);
    const b = logits.shape[0] / frames;
    if (words.length !== b) {
      throw new Error(`flowgpu: af: ${words.length} word labels for ${b} clips`);
    }
    const labels = new Array<number>(b * frames);
    for (let c = 0; c < b; c++) {
      const y = words[c];
      if (!(Number.isInteger(y) && y >= 0 && y < this.classes)) {
        throw new Error(
          `flowgpu: af: word label ${y} (clip ${c}) is not an integer in [0, ${this.classes})`,
        );
      }
      labels.fill(y, c * frames, (c + 1) * frames);
    }
    const lastRows = Array.from({ length: b }, (_, c) => (c + 1) * frames - 1);
    return { loss: nllLoss(logits, labels), last: gatherBatch(logits, lastRows) };
  }
}

function checkLatents(what: string, z: Tensor[], shapes: number[][], n?: number): void {
  const rows = n ?? z[0]?.shape[0];
  const ok = z.length === shapes.length &&
    z.every((t, l) =>
      t.shape.length === 4 && t.shape[0] === rows &&
      t.shape.slice(1).every((d, i) => d === shapes[l][i])
    );
  if (!ok) {
    throw new Error(
      `flowgpu: af: ${what} must be ${shapes.length} latents shaped ${
        shapes.map((s) => `[${n ?? "N"}, ${s.join(", ")}]`).join(", ")
      }, got ${z.map((t) => fmtShape(t.shape)).join(", ") || "none"}`,
    );
  }
}

/** ℓ(a, b) = Σ_l mean over elements of (a_l − b_l)² (spec §0, A12). */
export function levelError(a: Tensor[], b: Tensor[]): Tensor {
  let total: Tensor | undefined;
  a.forEach((al, l) => {
    const e = mse(al, b[l]);
    total = total ? add(total, e) : e;
  });
  if (!total) throw new Error("flowgpu: af: levelError of no levels");
  return total;
}

/**
 * Each row of z [B·N, ...] replaced by the mean of its clip's N rows (the centroid z̄ of eq. 2),
 * as two small products: (1/N)·1ᵀ over a clip, then 1 back over its frames.
 */
export function clipMean(z: Tensor, frames: number): Tensor {
  const rows = z.shape[0];
  if (!(Number.isInteger(frames) && frames >= 1) || rows % frames !== 0) {
    throw new Error(`flowgpu: af: ${fmtShape(z.shape)} is not clips of ${frames} frames`);
  }
  const b = rows / frames, d = z.size / rows;
  const avg = Tensor.from(new Float32Array(frames).fill(1 / frames), [1, frames]);
  const ones = Tensor.from(new Float32Array(frames).fill(1), [frames, 1]);
  const centroid = matmul(avg, reshape(z, [b, frames, d])); // [B, 1, D]
  return reshape(matmul(ones, centroid), [...z.shape]);
}

/**
 * The latents an encoder that met L_s exactly (E(z_n) = z̄ of the clip) would reenact, per level:
 * z_T,n = z̄_Q + (z_S,n − z̄_S), with the query clip's centroid for E(z_q). A bound for AF on a given
 * Glow, not a model: it needs the query's whole clip.
 */
export function centroidSwap(source: Tensor[], query: Tensor[], frames: number): Tensor[] {
  if (source.length !== query.length) {
    throw new Error(`flowgpu: af: ${source.length} source levels, ${query.length} query levels`);
  }
  return source.map((z, l) => add(sub(z, clipMean(z, frames)), clipMean(query[l], frames)));
}

/** One AF step's latents: B clips of N frames each (clip-major rows), and what the losses need. */
export interface AfBatch {
  /** Source latents z_{S,n}, per level [B·N, C, h, w]. */
  source: Tensor[];
  /** Frames per clip (N = 29 in SynthLips and LRW). */
  frames: number;
  /** Query clips' latents (another identity each), per level [B·N, ...]; L_t needs them. */
  query?: Tensor[];
  /** The query frame k of each query clip (z^i_q = E_i(z_{Q,k})); L_t needs them. */
  queryFrames?: ArrayLike<number>;
  /** The word label of each source clip; L_y needs them. */
  words?: ArrayLike<number>;
  /** The pair offset s in 1..N−1: frame m pairs with n = (m + s) mod N (L_p). */
  shift?: number;
}

/** The AF loss terms that were computed ([1] each) and their sum. */
export interface AfLosses {
  total: Tensor;
  source?: Tensor;
  target?: Tensor;
  pair?: Tensor;
  word?: Tensor;
  /** Logits of each clip's last frame [B, N_y], when L_y was computed. */
  lastLogits?: Tensor;
}

/**
 * AF flow: a Glow (`flow` group), the encoder E_φ or the pair E_i, E_r (`encoder` group) and the
 * word classifier C_ψ (`classifier` group, only with the word loss).
 */
export class AfFlow {
  /** The Glow f_θ (scope `flow`). */
  readonly glow: Glow;
  /** E_φ, or E_i with two encoders (scope `encoder`, or `encoder.i`). */
  readonly encoder: LatentEncoder;
  /** E_r of the two-encoder variant (scope `encoder.r`). */
  readonly encoderR?: LatentEncoder;
  /** C_ψ on the level-1 z^r (scope `classifier`), when the word loss is on. */
  readonly classifier?: WordRnn;
  /** The AF configuration (defaults filled in). */
  readonly cfg: AfConfig;

  /** Builds the Glow of `glow` and the AF networks of `cfg` in `store`. */
  constructor(store: ParamStore, glow: Partial<GlowConfig>, cfg: Partial<AfConfig> = {}) {
    const c: AfConfig = {
      ...defaultAfConfig,
      ...cfg,
      losses: { ...defaultAfConfig.losses, ...cfg.losses },
    };
    if (c.encoders !== 1 && c.encoders !== 2) {
      throw new Error(`flowgpu: af: encoders must be 1 or 2, got ${c.encoders}`);
    }
    if (!Object.values(c.losses).some((on) => on)) {
      throw new Error("flowgpu: af: every AF loss is switched off (L_s, L_t, L_p, L_y)");
    }
    this.cfg = c;
    this.glow = new Glow({ ...glow, splitPriors: true }, store.scope("flow"));
    const shapes = this.glow.latentShapes;
    const enc = store.scope("encoder");
    if (c.encoders === 1) this.encoder = new LatentEncoder(enc, shapes, c.encoder);
    else {
      this.encoder = new LatentEncoder(enc.child("i"), shapes, c.encoder);
      this.encoderR = new LatentEncoder(enc.child("r"), shapes, c.encoder);
    }
    if (c.losses.word) {
      this.classifier = new WordRnn(
        store.scope("classifier"),
        count(shapes[0]),
        c.rnnHidden,
        c.words,
      );
    }
  }

  /** Per-level latent shapes without N. */
  get latentShapes(): number[][] {
    return this.glow.latentShapes;
  }

  /** z^i = E_i(z) per level. */
  irrelevant(z: Tensor[]): Tensor[] {
    return this.encoder.apply(z);
  }

  /** z^r: z − E(z) (one encoder; `zi` reuses a computed E(z)) or E_r(z) (two encoders). */
  relevant(z: Tensor[], zi?: Tensor[]): Tensor[] {
    if (this.encoderR) return this.encoderR.apply(z);
    const e = zi ?? this.encoder.apply(z);
    return z.map((zl, l) => sub(zl, e[l]));
  }

  /** Both factors of z. */
  factorize(z: Tensor[]): { zi: Tensor[]; zr: Tensor[] } {
    const zi = this.irrelevant(z);
    return { zi, zr: this.relevant(z, zi) };
  }

  /**
   * Reenactment latents (§2.5): z_T = E_i(z_q) + z^r(z_S) per level. `query` is one frame
   * ([1, ...], shared by every source frame) or one per source frame.
   */
  reenact(source: Tensor[], query: Tensor[]): Tensor[] {
    checkLatents("reenact source", source, this.latentShapes);
    const q = query[0]?.shape[0] === 1 ? 1 : source[0].shape[0];
    checkLatents("reenact query", query, this.latentShapes, q);
    const zi = this.irrelevant(query);
    return this.relevant(source).map((r, l) => add(r, zi[l]));
  }

  /**
   * Latents of x (recorded, so AF-1 trains θ through them) and the Glow's bits/dim less n_bits,
   * -log p(x) / (D ln 2), for the likelihood loss L_f.
   */
  flowWithBits(x: Tensor): { latents: Tensor[]; bits: Tensor } {
    const { latents, logdet, logpSplits } = this.glow.flow(x);
    let logp = gaussianLogProb(latents[latents.length - 1]);
    for (const l of logpSplits) logp = add(logp, l);
    return { latents, bits: this.glow.bitsPerDim(add(logp, logdet)) };
  }

  /**
   * The AF losses of `b` named in `which` (default: the configured switches) and their sum
   * L_AF (eq. 6). L_y needs the classifier; L_t the query clips and frames.
   */
  losses(b: AfBatch, which: AfLossSwitches = this.cfg.losses): AfLosses {
    const N = b.frames, shapes = this.latentShapes;
    if (!(Number.isInteger(N) && N >= 2)) {
      throw new Error(`flowgpu: af: a clip needs at least 2 frames, got ${N}`);
    }
    checkLatents("source latents", b.source, shapes);
    const rows = b.source[0].shape[0];
    if (rows % N !== 0) {
      throw new Error(`flowgpu: af: ${rows} source frames are not whole clips of ${N} frames`);
    }
    const clips = rows / N;
    if (which.word && !this.classifier) {
      throw new Error("flowgpu: af: L_y asked of a model built without the word loss");
    }
    const out: Partial<AfLosses> = {};
    const z = b.source;
    const { zi, zr } = this.factorize(z);
    if (which.source) out.source = levelError(zi, z.map((zl) => clipMean(zl, N)));
    if (which.pair) {
      const s = b.shift;
      if (!(Number.isInteger(s) && s! >= 1 && s! < N)) {
        throw new Error(`flowgpu: af: L_p needs a pair shift s in 1..${N - 1}, got ${s}`);
      }
      const partner = Array.from({ length: rows }, (_, r) => r - (r % N) + ((r % N) + s!) % N);
      // Frame m rebuilt from the identity part of frame n = m + s and its own attribute part.
      const rebuilt = zi.map((t, l) => add(gatherBatch(t, partner), zr[l]));
      out.pair = levelError(rebuilt, z);
    }
    if (which.target) {
      const { query, queryFrames: ks } = b;
      if (!query || !ks) throw new Error("flowgpu: af: L_t needs query latents and query frames");
      checkLatents("query latents", query, shapes, rows);
      if (ks.length !== clips) {
        throw new Error(`flowgpu: af: ${ks.length} query frames for ${clips} clips`);
      }
      const pick = Array.from({ length: clips }, (_, c) => {
        const k = ks[c];
        if (!(Number.isInteger(k) && k >= 0 && k < N)) {
          throw new Error(`flowgpu: af: query frame ${k} (clip ${c}) is not in 0..${N - 1}`);
        }
        return c * N + k;
      });
      const spread = Array.from({ length: rows }, (_, r) => Math.floor(r / N));
      const ziq = this.irrelevant(query.map((t) => gatherBatch(t, pick)));
      const transfer = zr.map((r, l) => add(r, gatherBatch(ziq[l], spread)));
      out.target = levelError(this.irrelevant(transfer), query.map((t) => clipMean(t, N)));
    }
    if (which.word) {
      if (!b.words) throw new Error("flowgpu: af: L_y needs the clips' word labels");
      const u = reshape(zr[0], [rows, count(shapes[0])]);
      const { loss, last } = this.classifier!.loss(u, N, b.words);
      out.word = loss;
      out.lastLogits = last;
    }
    let total: Tensor | undefined;
    for (const k of ["source", "target", "pair", "word"] as const) {
      const t = out[k];
      if (t) total = total ? add(total, t) : t;
    }
    if (!total) throw new Error("flowgpu: af: no AF loss asked for");
    return { ...out, total };
  }
}

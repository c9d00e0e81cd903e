// The evaluation shared by the disentangling VAEs of vae-disentangle.md (DisUnknown, CMI-VAE,
// Lr-LiVAE): whatever their networks, each has a code for a labelled factor and a code for the
// rest, and is judged by the same four things (§5.4, §1.9, issue 10):
//   - attribute-swap accuracy: render (labelled code of A, every other code of B); an in-project
//     classifier trained on real images should read A's label for the swapped factor and B's for
//     the others (`swapAccuracy`);
//   - leakage: can a linear probe, trained on held-out codes, read the label from the
//     label-irrelevant code? (`leakageProbe`, `leakageSplit`: logisticProbe of disentangle.ts);
//   - MIG_lab / MIG_all of the multi-encoder §1.9 form, flattened into eval.json keys
//     (`disentanglerMig`);
//   - a swap grid PNG (`swapGrid`): rows = source of the kept code, columns = source of the
//     swapped code, the first row and column the source images themselves.
// The classifiers are `FactorClassifier`s: real MNIST's digit goes to digits.ts's cached
// DigitClassifier (the network every MNIST figure of the project scores with); every other
// labelled set gets a small multi-head CNN trained on its real training images, one head per
// factor, cached under data/eval-nets/ by a hash of its recipe and data (`FactorNet`).
import { batchIndices } from "../data/batches.ts";
import type { Factor } from "../data/labelled.ts";
import { flush } from "../gpu/encoder.ts";
import { Conv2d, fanIn, Linear } from "../nn/layers.ts";
import { ParamStore, type Scope } from "../nn/store.ts";
import { Adam } from "../ops/adam.ts";
import { nllLoss } from "../ops/classify.ts";
import { add, relu } from "../ops/elementwise.ts";
import { reshape, sliceChannels } from "../ops/shape.ts";
import { backward, clearTape, noGrad } from "../ops/tape.ts";
import { Tensor } from "../ops/tensor.ts";
import { saveCheckpoint } from "../train/checkpoint.ts";
import { imageGrid } from "../train/png.ts";
import type { NamedTensor } from "../train/safetensors.ts";
import { Rng } from "../util/rng.ts";
import { configHash, type DigitClassifier, digitClassifier, loadNetCache } from "./digits.ts";
import {
  logisticProbe,
  type MigEncoder,
  type MigFactor,
  type PosteriorCode,
  type ProbeResult,
} from "./disentangle.ts";
import { migGpu } from "./disentangle_gpu.ts";

// ---------------------------------------------------------------------------------------------
// Data and classifiers

/** A split of a labelled image set: images by position 0..count-1 with their factors. */
export interface SwapSplit {
  count: number;
  /** Images at `pos` in [-1, 1], [n, C, S, S], and their factors [n, factors]. */
  batch(pos: ArrayLike<number>): { x: Float32Array; labels: Int32Array };
}

/**
 * What a factor classifier is trained on: a labelled set of square images (vae_task.ts's
 * `VaeData` has this shape, so every VAE-family task can pass its data as is).
 */
export interface SwapData {
  /** Set name ("mnist" selects the digit classifier of digits.ts). */
  name: string;
  channels: number;
  size: number;
  factors: readonly Factor[];
  train: SwapSplit;
  test: SwapSplit;
}

/** A frozen classifier of every factor of a data set, trained on its real images. */
export interface FactorClassifier {
  /** The factors it predicts, in the data's column order. */
  readonly factors: readonly Factor[];
  /** Accuracy per factor on real test images, measured when it was trained (NaN: not measured). */
  readonly testAccuracy: readonly number[];
  /** One line: what network, where it is cached. */
  readonly description: string;
  /** Predicted factors of `n` images [n, C, S, S] in [-1, 1]: [n, factors.length]. */
  predict(x: Float32Array, n: number): Promise<Int32Array>;
  /**
   * Softmax probabilities of factor column `factor` for `n` images: [n, factors[factor].size]
   * (the p(y | x) of an inception-like score, §3.7). Both built-in classifiers have it.
   */
  probabilities?(x: Float32Array, n: number, factor: number): Promise<Float32Array>;
  /** Frees the network. */
  release(): void;
}

/** Bumped whenever FactorNet's architecture or recipe changes, so old caches are not reused. */
const FACTOR_NET_VERSION = 1;
const FACTOR_FORMAT = "flowgpu-eval-factors-1";

/** The training recipe of a `FactorNet` (with the data, it names the cache file). */
export interface FactorNetConfig {
  seed: number;
  /** Adam steps. */
  steps: number;
  batch: number;
  /** Peak learning rate (cosine decay to a tenth). */
  lr: number;
}

/** Default recipe: a few minutes on lavapipe for a 32 x 32 set; > 95% on Shapes2.5D's factors. */
export const FACTOR_NET_DEFAULTS: FactorNetConfig = { seed: 1, steps: 2000, batch: 64, lr: 2e-3 };

/**
 * conv3x3 s2 (C -> 16) ReLU, then further conv3x3 s2 with doubled channels while the side is
 * above 8, flatten -> linear 128 ReLU -> one linear head per factor (concatenated logits).
 */
export class FactorNet {
  readonly convs: Conv2d[] = [];
  readonly fc: Linear;
  readonly head: Linear;
  /** Offsets of each factor's logits in the concatenated head, and their total. */
  readonly offsets: number[];
  readonly classes: number;

  constructor(s: Scope, channels: number, size: number, readonly factors: readonly Factor[]) {
    const he = (fan: number) => fanIn(fan, Math.SQRT2);
    let side = size, c = channels, out = 16, i = 0;
    do {
      this.convs.push(
        new Conv2d(s.child(`conv${i++}`), c, out, 3, { stride: 2, padding: 1, init: he(c * 9) }),
      );
      side = Math.floor((side - 1) / 2) + 1;
      c = out;
      out *= 2;
    } while (side > 8);
    const flat = c * side * side;
    this.fc = new Linear(s.child("fc"), flat, 128, { init: he(flat) });
    this.offsets = [];
    let total = 0;
    for (const f of factors) {
      this.offsets.push(total);
      total += f.size;
    }
    this.classes = total;
    this.head = new Linear(s.child("head"), 128, total);
  }

  /** Concatenated logits [N, Σ m_f] of images [N, C, S, S]. */
  logits(x: Tensor): Tensor {
    let h = x;
    for (const conv of this.convs) h = relu(conv.apply(h));
    return this.head.apply(relu(this.fc.apply(reshape(h, [x.shape[0], -1]))));
  }

  /** Sum over factors of the mean cross-entropy of each head. */
  loss(x: Tensor, labels: Int32Array): Tensor {
    const n = x.shape[0], nf = this.factors.length;
    const z = this.logits(x);
    let total: Tensor | undefined;
    this.factors.forEach((f, k) => {
      const y = Int32Array.from({ length: n }, (_, b) => labels[b * nf + k]);
      const part = nf === 1 ? z : sliceChannels(z, this.offsets[k], this.offsets[k] + f.size);
      const l = nllLoss(part, y);
      total = total ? add(total, l) : l;
    });
    return total!;
  }

  /** Argmax per factor of concatenated logits [n · classes]: [n, factors]. */
  argmax(logits: Float32Array, n: number): Int32Array {
    const nf = this.factors.length, out = new Int32Array(n * nf);
    for (let b = 0; b < n; b++) {
      this.factors.forEach((f, k) => {
        const o = b * this.classes + this.offsets[k];
        let best = 0;
        for (let j = 1; j < f.size; j++) if (logits[o + j] > logits[o + best]) best = j;
        out[b * nf + k] = best;
      });
    }
    return out;
  }
}

/** Images per forward pass when classifying or rendering for the evaluation. */
const CHUNK = 200;

class FactorNetClassifier implements FactorClassifier {
  constructor(
    readonly store: ParamStore,
    readonly net: FactorNet,
    readonly shape: [number, number, number],
    readonly testAccuracy: number[],
    readonly description: string,
  ) {}

  get factors(): readonly Factor[] {
    return this.net.factors;
  }

  /** Concatenated logits of `n` images, chunk by chunk. */
  async #logits(
    x: Float32Array,
    n: number,
    each: (logits: Float32Array, s: number, m: number) => void,
  ) {
    const [c, h, w] = this.shape, d = c * h * w;
    if (x.length !== n * d) {
      throw new Error(
        `flowgpu: factor classifier: ${x.length} values are not ${n} images ${c}x${h}x${w}`,
      );
    }
    for (let s = 0; s < n; s += CHUNK) {
      const m = Math.min(CHUNK, n - s);
      const xt = Tensor.from(x.subarray(s * d, (s + m) * d), [m, c, h, w]);
      const logits = await noGrad(() => this.net.logits(xt)).read();
      clearTape();
      each(logits, s, m);
    }
  }

  async predict(x: Float32Array, n: number): Promise<Int32Array> {
    const out = new Int32Array(n * this.net.factors.length);
    await this.#logits(
      x,
      n,
      (l, s, m) => out.set(this.net.argmax(l, m), s * this.net.factors.length),
    );
    return out;
  }

  async probabilities(x: Float32Array, n: number, factor: number): Promise<Float32Array> {
    const k = checkFactor(this.net.factors, factor), o = this.net.offsets[factor];
    const out = new Float32Array(n * k);
    await this.#logits(x, n, (l, s, m) => {
      for (let b = 0; b < m; b++) {
        softmaxInto(l, b * this.net.classes + o, k, out, (s + b) * k);
      }
    });
    return out;
  }

  release(): void {
    this.store.release();
  }
}

/** The digit classifier of digits.ts on MNIST images of side 28 (padded back to 32) or 32. */
class DigitFactorClassifier implements FactorClassifier {
  readonly factors: readonly Factor[] = [{ name: "digit", size: 10 }];
  readonly testAccuracy: number[];
  readonly description: string;

  constructor(readonly digits: DigitClassifier, readonly side: number) {
    this.testAccuracy = [digits.testAccuracy];
    this.description = `digits.ts DigitClassifier (${digits.path ?? "not cached"}), ` +
      `test accuracy ${digits.testAccuracy.toFixed(4)}`;
  }

  async predict(x: Float32Array, n: number): Promise<Int32Array> {
    return Int32Array.from(await this.digits.predict(this.#pad(x, n), n));
  }

  async probabilities(x: Float32Array, n: number, factor: number): Promise<Float32Array> {
    checkFactor(this.factors, factor);
    const x32 = this.#pad(x, n), out = new Float32Array(n * 10), d = 1024;
    for (let s = 0; s < n; s += CHUNK) {
      const m = Math.min(CHUNK, n - s);
      const xt = Tensor.from(x32.subarray(s * d, (s + m) * d), [m, 1, 32, 32]);
      const l = await noGrad(() => this.digits.net.forward(xt).logits).read();
      clearTape();
      for (let b = 0; b < m; b++) softmaxInto(l, b * 10, 10, out, (s + b) * 10);
    }
    return out;
  }

  /** Images of side 28 padded to the classifier's 32 (side 32 as is). */
  #pad(x: Float32Array, n: number): Float32Array {
    const s = this.side, d = s * s;
    if (x.length !== n * d) {
      throw new Error(
        `flowgpu: digit factor classifier: ${x.length} values are not ${n} images 1x${s}x${s}`,
      );
    }
    let x32 = x;
    if (s !== 32) {
      // vae_task.ts crops 28 from MNIST's padded 32: the padding is background (-1).
      const o = (32 - s) / 2;
      x32 = new Float32Array(n * 1024).fill(-1);
      for (let b = 0; b < n; b++) {
        for (let y = 0; y < s; y++) {
          x32.set(x.subarray(b * d + y * s, b * d + (y + 1) * s), b * 1024 + (y + o) * 32 + o);
        }
      }
    }
    return x32;
  }

  release(): void {
    this.digits.release();
  }
}

/** Class count of factor column `factor`; throws when there is no such column. */
function checkFactor(factors: readonly Factor[], factor: number): number {
  if (!(Number.isInteger(factor) && factor >= 0 && factor < factors.length)) {
    throw new Error(
      `flowgpu: factor classifier: factor ${factor} is not a column of ${factors.length}`,
    );
  }
  return factors[factor].size;
}

/** softmax of src[o .. o + k) into dst[at .. at + k), in f64. */
function softmaxInto(src: Float32Array, o: number, k: number, dst: Float32Array, at: number) {
  let mx = -Infinity, z = 0;
  for (let j = 0; j < k; j++) mx = Math.max(mx, src[o + j]);
  for (let j = 0; j < k; j++) z += Math.exp(src[o + j] - mx);
  for (let j = 0; j < k; j++) dst[at + j] = Math.exp(src[o + j] - mx) / z;
}

/** Options of `factorClassifier`. */
export interface FactorClassifierOptions extends Partial<FactorNetConfig> {
  /** Cache folder (default data/eval-nets). */
  dir?: string;
  /** Read and write the cache (default true). */
  cache?: boolean;
  /** Real test images scored after training (default 2000; 0: none). */
  testLimit?: number;
  /** Use FactorNet even for MNIST (default false: digits.ts's DigitClassifier). */
  generic?: boolean;
  log?: (line: string) => void;
}

/** The cache file of `data`'s FactorNet under `opts`' recipe. */
export function factorNetCachePath(data: SwapData, opts: FactorClassifierOptions = {}): string {
  const cfg = factorNetConfig(opts);
  const key = JSON.stringify({
    v: FACTOR_NET_VERSION,
    set: data.name,
    shape: [data.channels, data.size],
    factors: data.factors.map((f) => [f.name, f.size]),
    train: data.train.count,
    ...cfg,
  });
  const safe = data.name.replace(/[^A-Za-z0-9.-]/g, "_");
  return `${opts.dir ?? "data/eval-nets"}/factors-${safe}-${data.size}-${
    configHash(key)
  }.safetensors`;
}

function factorNetConfig(opts: Partial<FactorNetConfig>): FactorNetConfig {
  const cfg = {
    seed: opts.seed ?? FACTOR_NET_DEFAULTS.seed,
    steps: opts.steps ?? FACTOR_NET_DEFAULTS.steps,
    batch: opts.batch ?? FACTOR_NET_DEFAULTS.batch,
    lr: opts.lr ?? FACTOR_NET_DEFAULTS.lr,
  };
  for (const k of ["steps", "batch"] as const) {
    if (!Number.isInteger(cfg[k]) || cfg[k] < 1) {
      throw new Error(`flowgpu: factor classifier: ${k} must be a positive integer, got ${cfg[k]}`);
    }
  }
  return cfg;
}

/** Accuracy per factor of predictions against labels, both [n, nf]. */
export function factorAccuracy(pred: Int32Array, labels: Int32Array, nf: number): number[] {
  const n = labels.length / nf;
  if (pred.length !== labels.length || !Number.isInteger(n) || n < 1) {
    throw new Error(
      `flowgpu: factorAccuracy: ${pred.length} predictions for ${labels.length} labels`,
    );
  }
  return Array.from({ length: nf }, (_, k) => {
    let ok = 0;
    for (let b = 0; b < n; b++) if (pred[b * nf + k] === labels[b * nf + k]) ok++;
    return ok / n;
  });
}

/** Accuracy per factor of `c` on the first `limit` real test images of `data`. */
export async function realAccuracy(
  c: FactorClassifier,
  data: SwapData,
  limit: number,
): Promise<number[]> {
  const n = Math.min(limit, data.test.count);
  const pos = new Rng(0x5ca1).permutation(data.test.count).subarray(0, n);
  const { x, labels } = data.test.batch(pos);
  return factorAccuracy(await c.predict(x, n), labels, data.factors.length);
}

/**
 * The classifier that judges swaps on `data`: for "mnist" (one factor, the digit) digits.ts's
 * cached DigitClassifier, otherwise a FactorNet read from its cache or trained on the real
 * training images (Adam, cosine decay) and cached. A cache file that is unreadable throws; one
 * that does not fit the network is retrained and overwritten, saying why.
 */
export async function factorClassifier(
  data: SwapData,
  opts: FactorClassifierOptions = {},
): Promise<FactorClassifier> {
  const log = opts.log ?? console.log;
  if (data.name === "mnist" && !opts.generic) {
    if (data.channels !== 1 || (data.size !== 28 && data.size !== 32)) {
      throw new Error(
        `flowgpu: factor classifier: mnist must be 1x28x28 or 1x32x32, got ${data.channels}x${data.size}`,
      );
    }
    const d = await digitClassifier({ dir: opts.dir, cache: opts.cache, log });
    return new DigitFactorClassifier(d, data.size);
  }
  const cfg = factorNetConfig(opts);
  const store = new ParamStore(cfg.seed);
  const net = new FactorNet(store.scope("factors"), data.channels, data.size, data.factors);
  store.layout();
  const path = (opts.cache ?? true) ? factorNetCachePath(data, opts) : undefined;
  const shape: [number, number, number] = [data.channels, data.size, data.size];
  const describe = (acc: number[]) =>
    `FactorNet on ${data.name} ${data.size}px (${path ?? "not cached"}), real test accuracy ${
      data.factors.map((f, k) => `${f.name} ${acc[k].toFixed(3)}`).join(", ")
    }`;
  let why = "no cache";
  if (path) {
    const c = loadNetCache(path, store, FACTOR_FORMAT, "factor classifier");
    if (c.ck) {
      const acc = JSON.parse(c.ck.metadata.test_accuracy ?? "[]") as number[];
      return new FactorNetClassifier(store, net, shape, acc, describe(acc));
    }
    why = c.why;
  }
  log(`factors: training the ${data.name} evaluation classifier (${why}): ${JSON.stringify(cfg)}`);
  const t0 = performance.now();
  await trainFactorNet(store, net, data, cfg, log);
  const seconds = (performance.now() - t0) / 1000;
  const limit = opts.testLimit ?? 2000;
  const tmp = new FactorNetClassifier(store, net, shape, [], "");
  const acc = limit > 0 ? await realAccuracy(tmp, data, limit) : data.factors.map(() => NaN);
  log(`factors: trained in ${seconds.toFixed(1)} s; ${describe(acc)}`);
  if (path) {
    const entries = [...store.tensors];
    const values = await Tensor.readAll(entries.map(([, t]) => t));
    const tensors: Record<string, NamedTensor> = {};
    entries.forEach(([name, t], i) => (tensors[name] = { shape: [...t.shape], data: values[i] }));
    saveCheckpoint(path, tensors, {
      format: FACTOR_FORMAT,
      config: JSON.stringify(cfg),
      factors: JSON.stringify(data.factors.map((f) => f.name)),
      test_accuracy: JSON.stringify(acc),
      train_seconds: seconds.toFixed(1),
    });
    log(`factors: cached in ${path}`);
  }
  return new FactorNetClassifier(store, net, shape, acc, describe(acc));
}

async function trainFactorNet(
  store: ParamStore,
  net: FactorNet,
  data: SwapData,
  cfg: FactorNetConfig,
  log: (line: string) => void,
): Promise<void> {
  const opt = new Adam(store.groups(), { lr: cfg.lr });
  const every = Math.max(1, Math.round(cfg.steps / 4));
  const shape = [cfg.batch, data.channels, data.size, data.size];
  try {
    for (let step = 0; step < cfg.steps; step++) {
      const { idx } = batchIndices(data.train.count, cfg.batch, step, cfg.seed);
      const b = data.train.batch(idx);
      const loss = net.loss(Tensor.from(b.x, shape), b.labels);
      backward(loss);
      opt.step(cfg.lr * (0.1 + 0.45 * (1 + Math.cos((Math.PI * step) / cfg.steps))));
      if ((step + 1) % every === 0 || step + 1 === cfg.steps) {
        log(`factors: step ${step + 1}/${cfg.steps} loss ${(await loss.item()).toFixed(4)}`);
      }
      clearTape();
      flush();
    }
  } finally {
    opt.release();
  }
}

// ---------------------------------------------------------------------------------------------
// Attribute swap

/**
 * Renders swaps: image k decodes the swapped factor's code of evaluation image `a[k]` with every
 * other code (other labelled codes, the unknown / label-irrelevant code) of image `b[k]`, as
 * floats [a.length, C, S, S] in [-1, 1]. A model calls its encoders and generator with posterior
 * means here (no dropout, no sampling).
 */
export type SwapRenderer = (a: Uint32Array, b: Uint32Array) => Promise<Float32Array>;

/** Options of `swapAccuracy`. */
export interface SwapOptions {
  classifier: FactorClassifier;
  /** Column (in `classifier.factors`) of the factor whose code is swapped. */
  factor: number;
  /** Factors of the evaluation images, [n, classifier.factors.length]. */
  labels: Int32Array;
  render: SwapRenderer;
  /** Pairs scored (default 1000). */
  pairs?: number;
  seed?: number;
  /** Pairs rendered per call of `render` (default 200). */
  chunk?: number;
}

/** What `swapAccuracy` measured on the swapped images. */
export interface SwapResult {
  /** Fraction whose swapped factor reads as A's label (the headline; 1 is a perfect swap). */
  accuracy: number;
  /** Fraction whose swapped factor reads as B's label: the generator ignored the swapped code. */
  ignored: number;
  /** Per factor of the classifier: fraction that reads as B's value (NaN at the swapped one). */
  keptPerFactor: number[];
  /** Mean of `keptPerFactor` over the other factors: are they kept? (NaN with one factor). */
  kept: number;
  /** Share of the most common A label among the pairs: a generator that renders one class. */
  chance: number;
  pairs: number;
}

/**
 * Seeded pairs (a[k], b[k]) of evaluation images whose labels differ on the swapped factor, so
 * that a swap that does nothing scores 0, not 1/m. Throws when every image has one label.
 */
export function swapPairs(
  labels: ArrayLike<number>,
  count: number,
  seed = 1,
): { a: Uint32Array; b: Uint32Array } {
  const n = labels.length;
  const first = labels[0];
  if (n < 2 || Array.from(labels).every((l) => l === first)) {
    throw new Error(`flowgpu: swapPairs: the ${n} labels give no pair with different values`);
  }
  const rng = new Rng(seed);
  const a = new Uint32Array(count), b = new Uint32Array(count);
  for (let k = 0; k < count; k++) {
    const i = rng.int(n);
    let j = rng.int(n);
    while (labels[j] === labels[i]) j = rng.int(n);
    [a[k], b[k]] = [i, j];
  }
  return { a, b };
}

/**
 * Attribute-swap accuracy (§5.4): renders `pairs` swaps (swapped factor's code from A, the rest
 * from B, `render`) and classifies them with the frozen classifier trained on real images.
 */
export async function swapAccuracy(o: SwapOptions): Promise<SwapResult> {
  const nf = o.classifier.factors.length;
  const n = o.labels.length / nf;
  if (!Number.isInteger(n) || n < 2) {
    throw new Error(
      `flowgpu: swapAccuracy: ${o.labels.length} labels are not rows of ${nf} factors`,
    );
  }
  if (!(Number.isInteger(o.factor) && o.factor >= 0 && o.factor < nf)) {
    throw new Error(`flowgpu: swapAccuracy: factor ${o.factor} is not a column of ${nf}`);
  }
  const col = Int32Array.from({ length: n }, (_, i) => o.labels[i * nf + o.factor]);
  const count = o.pairs ?? 1000, chunk = o.chunk ?? CHUNK;
  const { a, b } = swapPairs(col, count, o.seed ?? 1);
  let hit = 0, ignored = 0;
  const kept = new Float64Array(nf);
  const freq = new Map<number, number>();
  for (let s = 0; s < count; s += chunk) {
    const pa = a.subarray(s, Math.min(count, s + chunk)), pb = b.subarray(s, s + pa.length);
    const x = await o.render(pa, pb);
    const pred = await o.classifier.predict(x, pa.length);
    for (let k = 0; k < pa.length; k++) {
      const la = o.labels[pa[k] * nf + o.factor], p = pred[k * nf + o.factor];
      freq.set(la, (freq.get(la) ?? 0) + 1);
      if (p === la) hit++;
      if (p === o.labels[pb[k] * nf + o.factor]) ignored++;
      for (let f = 0; f < nf; f++) {
        if (f !== o.factor && pred[k * nf + f] === o.labels[pb[k] * nf + f]) kept[f]++;
      }
    }
  }
  const keptPerFactor = Array.from(kept, (v, f) => (f === o.factor ? NaN : v / count));
  const others = keptPerFactor.filter((v) => !Number.isNaN(v));
  return {
    accuracy: hit / count,
    ignored: ignored / count,
    keptPerFactor,
    kept: others.length ? others.reduce((s, v) => s + v, 0) / others.length : NaN,
    chance: Math.max(...freq.values()) / count,
    pairs: count,
  };
}

/**
 * eval.json keys of swap results by factor name: swap_acc (mean over the swapped factors),
 * swap_acc_<f>, swap_ignored_<f>, swap_kept_<f> (when there are other factors), swap_pairs.
 */
export function swapMetrics(results: Record<string, SwapResult>): Record<string, number> {
  const out: Record<string, number> = {};
  const names = Object.keys(results);
  if (names.length === 0) return out;
  out.swap_acc = names.reduce((s, k) => s + results[k].accuracy, 0) / names.length;
  for (const k of names) {
    const r = results[k];
    out[`swap_acc_${k}`] = r.accuracy;
    out[`swap_ignored_${k}`] = r.ignored;
    if (!Number.isNaN(r.kept)) out[`swap_kept_${k}`] = r.kept;
  }
  out.swap_pairs = results[names[0]].pairs;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Leakage

/** A leakage probe's result: logisticProbe's, with the accuracy rescaled between chance and 1. */
export interface LeakageResult extends ProbeResult {
  /** (accuracy − chance) / (1 − chance): 0 = no linear leakage, 1 = the label is in the code. */
  normalized: number;
  trainCount: number;
  testCount: number;
}

/**
 * The leakage probe (§5.4): can the label be read from the label-irrelevant code? Multinomial
 * logistic regression fitted on `train` codes, scored on held-out `test` codes.
 */
export function leakageProbe(
  train: { codes: ArrayLike<number>; labels: ArrayLike<number> },
  test: { codes: ArrayLike<number>; labels: ArrayLike<number> },
  dim: number,
  opts: { l2?: number; iterations?: number } = {},
): LeakageResult {
  const r = logisticProbe(train, test, dim, opts);
  return {
    ...r,
    normalized: r.chance < 1 ? (r.accuracy - r.chance) / (1 - r.chance) : 0,
    trainCount: train.labels.length,
    testCount: test.labels.length,
  };
}

/**
 * `leakageProbe` on one set of codes, split by a seeded permutation: the first `trainFraction`
 * (default 0.5) fit the probe, the rest score it.
 */
export function leakageSplit(
  codes: ArrayLike<number>,
  labels: ArrayLike<number>,
  dim: number,
  opts: { trainFraction?: number; seed?: number; l2?: number; iterations?: number } = {},
): LeakageResult {
  const n = labels.length, f = opts.trainFraction ?? 0.5;
  if (codes.length !== n * dim) {
    throw new Error(
      `flowgpu: leakageSplit: ${codes.length} code values for ${n} labels x ${dim} dims`,
    );
  }
  if (!(f > 0 && f < 1)) {
    throw new Error(`flowgpu: leakageSplit: trainFraction must be in (0, 1), got ${f}`);
  }
  const perm = new Rng(opts.seed ?? 0x1ea4).permutation(n);
  const nt = Math.ceil(f * n);
  if (nt < 2 || n - nt < 1) {
    throw new Error(`flowgpu: leakageSplit: ${n} codes leave too few to train and test`);
  }
  const take = (idx: Uint32Array) => {
    const c = new Float64Array(idx.length * dim), l = new Int32Array(idx.length);
    idx.forEach((i, j) => {
      for (let d = 0; d < dim; d++) c[j * dim + d] = codes[i * dim + d];
      l[j] = labels[i];
    });
    return { codes: c, labels: l };
  };
  return leakageProbe(take(perm.subarray(0, nt)), take(perm.subarray(nt)), dim, opts);
}

// ---------------------------------------------------------------------------------------------
// MIG

/** A model's labelled code: the encoder output that should hold `factor`. */
export interface LabelledCode {
  /** The factor (a name in `factors`). */
  factor: string;
  /** Encoder name (default the factor's); codes shared by several factors repeat the name. */
  encoder?: string;
  code: PosteriorCode;
}

/** Options of `disentanglerMig`. */
export interface DisentanglerMigOptions {
  /** The unknown / label-irrelevant code (encoder "unknown"). */
  unknown: PosteriorCode;
  labelled: LabelledCode[];
  /** Every factor with ground truth, in the column order of `labels`. */
  factors: readonly Factor[];
  /** Ground truth of the codes' samples, [n, factors.length]. */
  labels: Int32Array;
  /** §5.1 samples M (default 10,000) and cap on N (default 10,000). */
  samples?: number;
  maxCodes?: number;
  seed?: number;
}

/**
 * The §1.9 multi-encoder MIG of a disentangler as eval.json keys: mig_lab (labelled factors,
 * each against its own code), mig_all (also the factors without a labelled code, whose own
 * encoder is the unknown code), and per factor mig_<f> (the gap), mig_<f>_own, mig_<f>_rival and
 * mig_<f>_rival_enc, with mig_n and mig_m. MIG on the GPU estimator (same draws as the CPU one).
 */
export async function disentanglerMig(
  o: DisentanglerMigOptions,
): Promise<Record<string, number | string>> {
  const nf = o.factors.length;
  const names = o.factors.map((f) => f.name);
  const encoders: MigEncoder[] = [{ name: "unknown", ...o.unknown }];
  const own = new Map<string, string>();
  for (const l of o.labelled) {
    if (!names.includes(l.factor)) {
      throw new Error(
        `flowgpu: disentanglerMig: labelled factor ${l.factor} is not one of ${names.join(", ")}`,
      );
    }
    const enc = l.encoder ?? l.factor;
    if (enc === "unknown") {
      throw new Error("flowgpu: disentanglerMig: 'unknown' names the unknown code");
    }
    own.set(l.factor, enc);
    if (!encoders.some((e) => e.name === enc)) encoders.push({ name: enc, ...l.code });
  }
  const factors: MigFactor[] = o.factors.map((f, k) => ({
    name: f.name,
    labels: Int32Array.from({ length: o.labels.length / nf }, (_, i) => o.labels[i * nf + k]),
    encoder: own.get(f.name) ?? "unknown",
    labeled: own.has(f.name),
  }));
  const r = await migGpu(encoders, factors, {
    samples: o.samples ?? 10000,
    maxCodes: o.maxCodes ?? 10000,
    seed: o.seed ?? 1,
  });
  const out: Record<string, number | string> = { mig_lab: r.migLab, mig_all: r.migAll };
  for (const f of r.factors) {
    out[`mig_${f.name}`] = f.gap;
    out[`mig_${f.name}_own`] = f.own;
    out[`mig_${f.name}_rival`] = f.rival;
    out[`mig_${f.name}_rival_enc`] = f.rivalEncoder;
  }
  out.mig_n = r.n;
  out.mig_m = r.m;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Swap grid

/** Options of `swapGrid`. */
export interface SwapGridOptions {
  render: SwapRenderer;
  /** The evaluation images at positions, [n, C, S, S] in [-1, 1]. */
  images(pos: Uint32Array): Float32Array | Promise<Float32Array>;
  /** Positions of the row sources (whose kept codes each row uses). */
  rows: Uint32Array;
  /** Positions of the column sources (whose swapped code each column uses). */
  cols: Uint32Array;
  channels: number;
  size: number;
}

/**
 * The swap grid PNG: cell (r, c) renders the swapped code of column source c with every kept code
 * of row source r; the first row shows the column sources, the first column the row sources, and
 * the corner is blank (mid-grey). Reading across a row, the swapped factor should change while
 * everything else stays; down a column, the swapped factor should stay.
 */
export async function swapGrid(o: SwapGridOptions): Promise<Uint8Array> {
  const nr = o.rows.length, nc = o.cols.length, d = o.channels * o.size * o.size;
  if (nr < 1 || nc < 1) throw new Error("flowgpu: swapGrid: needs at least one row and one column");
  const a = new Uint32Array(nr * nc), b = new Uint32Array(nr * nc);
  for (let r = 0; r < nr; r++) {
    for (let c = 0; c < nc; c++) [a[r * nc + c], b[r * nc + c]] = [o.cols[c], o.rows[r]];
  }
  const cells = await o.render(a, b);
  const rowImg = await o.images(o.rows), colImg = await o.images(o.cols);
  for (
    const [what, got, want] of [["cells", cells, nr * nc * d], ["row images", rowImg, nr * d], [
      "column images",
      colImg,
      nc * d,
    ]] as const
  ) {
    if (got.length !== want) {
      throw new Error(`flowgpu: swapGrid: ${got.length} values of ${what}, expected ${want}`);
    }
  }
  const w = nc + 1;
  const px = new Float32Array((nr + 1) * w * d);
  px.set(colImg, d);
  for (let r = 0; r < nr; r++) {
    px.set(rowImg.subarray(r * d, (r + 1) * d), (r + 1) * w * d);
    px.set(cells.subarray(r * nc * d, (r + 1) * nc * d), ((r + 1) * w + 1) * d);
  }
  return await imageGrid(px, (nr + 1) * w, o.channels, o.size, o.size, w, { range: [-1, 1] });
}

/**
 * Row and column sources for a swap grid: `count` evaluation positions, one per value of the
 * factor where it has enough values (so the columns show different labels), else distinct ones.
 */
export function gridSources(labels: ArrayLike<number>, count: number, seed = 2): Uint32Array {
  const n = labels.length;
  const rng = new Rng(seed);
  const perm = rng.permutation(n);
  const out: number[] = [], seen = new Set<number>();
  for (const i of perm) {
    if (out.length >= count) break;
    if (!seen.has(labels[i])) {
      seen.add(labels[i]);
      out.push(i);
    }
  }
  for (const i of perm) {
    if (out.length >= Math.min(count, n)) break;
    if (!out.includes(i)) out.push(i);
  }
  return Uint32Array.from(out);
}

// The digit classifier that stands in for the paper's in-house networks on MNIST (glow-funs.md
// §3.3, §4.6): its accuracy on generated digits is Table 2's "Acc" analogue, its 64-d
// penultimate layer feeds the FID-proxy and its layers the LPIPS-proxy. No pretrained network
// can be fetched here, so it is trained on real MNIST, deterministically from a seed, and cached
// under data/eval-nets/ by a hash of everything that determines its weights: every evaluation
// of every model then scores with the very same network.
import { batchIndices } from "../data/batches.ts";
import { loadMnist, type Mnist } from "../data/mnist.ts";
import { flush } from "../gpu/encoder.ts";
import { Conv2d, fanIn, Linear } from "../nn/layers.ts";
import { ParamStore, type Scope } from "../nn/store.ts";
import { Adam } from "../ops/adam.ts";
import { relu } from "../ops/elementwise.ts";
import { crossEntropy } from "../ops/loss.ts";
import { reshape } from "../ops/shape.ts";
import { backward, clearTape, noGrad } from "../ops/tape.ts";
import { Tensor } from "../ops/tensor.ts";
import { loadCheckpoint, saveCheckpoint } from "../train/checkpoint.ts";
import type { NamedTensor, Safetensors } from "../train/safetensors.ts";
import { accuracy, argmaxRows, type FeatureLayer } from "./metrics.ts";

/** Bumped whenever the architecture or the training recipe changes, so old caches are not reused. */
const VERSION = 1;
const FORMAT = "flowgpu-eval-digits-1";
const SIZE = 32, D = SIZE * SIZE;
/** Width of the penultimate layer (the FID-proxy's feature dimension). */
export const DIGIT_FEATURES = 64;

/** Everything that determines the trained weights (and so the cache file's name). */
export interface DigitTrainConfig {
  /** Seed of the init and of the batch order. */
  seed: number;
  /** Adam steps. */
  steps: number;
  /** Images per step. */
  batch: number;
  /** Peak learning rate (cosine decay to a tenth of it). */
  lr: number;
  /** Train on the first N training images only (0: all 60,000). */
  trainLimit: number;
}

/** The evaluation network's recipe: 98.3% test accuracy after about two minutes on lavapipe. */
export const DIGIT_DEFAULTS: DigitTrainConfig = {
  seed: 1,
  steps: 1500,
  batch: 64,
  lr: 2e-3,
  trainLimit: 0,
};

/** Options of `digitClassifier`. */
export interface DigitClassifierOptions extends Partial<DigitTrainConfig> {
  /** Cache folder (default data/eval-nets). */
  dir?: string;
  /** Read and write the cache (default true); false always trains and writes nothing. */
  cache?: boolean;
  /** Test images scored after training (default all 10,000; 0: none). */
  testLimit?: number;
  /** Where training and cache messages go (default console.log). */
  log?: (line: string) => void;
}

/** conv3x3 s2 1→16, ReLU, conv3x3 s2 16→32, ReLU, linear 2048→64, ReLU, linear 64→10. */
export class DigitNet {
  readonly conv1: Conv2d;
  readonly conv2: Conv2d;
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(s: Scope) {
    // He initialisation (gain sqrt 2) where a ReLU follows.
    const he = (fan: number) => fanIn(fan, Math.SQRT2);
    this.conv1 = new Conv2d(s.child("conv1"), 1, 16, 3, { stride: 2, init: he(9) });
    this.conv2 = new Conv2d(s.child("conv2"), 16, 32, 3, { stride: 2, init: he(16 * 9) });
    this.fc1 = new Linear(s.child("fc1"), 32 * 8 * 8, DIGIT_FEATURES, { init: he(32 * 64) });
    this.fc2 = new Linear(s.child("fc2"), DIGIT_FEATURES, 10);
  }

  /** x [N, 1, 32, 32] in [−1, 1] -> every layer's activations and the logits. */
  forward(x: Tensor): { h1: Tensor; h2: Tensor; feat: Tensor; logits: Tensor } {
    const h1 = relu(this.conv1.apply(x));
    const h2 = relu(this.conv2.apply(h1));
    const feat = relu(this.fc1.apply(reshape(h2, [x.shape[0], -1])));
    return { h1, h2, feat, logits: this.fc2.apply(feat) };
  }
}

/** MNIST pixels 0..255 as the classifier's inputs, 2·pix/255 − 1. */
export function digitInputs(pixels: Uint8Array): Float32Array {
  return Float32Array.from(pixels, (v) => (2 * v) / 255 - 1);
}

/** FNV-1a of a string as 8 hex digits: a short, stable name for a config. */
export function configHash(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}

/** A trained digit classifier on the GPU; `release()` frees it. */
export class DigitClassifier {
  /** Images per forward pass of the inference methods. */
  static readonly CHUNK = 250;

  /** Wraps a trained `net` whose parameters live in `store`. */
  constructor(
    readonly store: ParamStore,
    readonly net: DigitNet,
    /** The recipe the weights came from. */
    readonly config: DigitTrainConfig,
    /** Test accuracy measured when it was trained (NaN when not measured). */
    readonly testAccuracy: number,
    /** The cache file it was read from or written to (undefined without a cache). */
    readonly path?: string,
  ) {}

  #check(x: Float32Array, n: number): void {
    if (!Number.isInteger(n) || n < 0 || x.length !== n * D) {
      throw new Error(
        `flowgpu: digit classifier: ${x.length} values are not ${n} images of 1x32x32`,
      );
    }
  }

  /** Runs the net over `n` images in chunks without a tape, reading back what `pick` names. */
  async #run(
    x: Float32Array,
    n: number,
    pick: (o: ReturnType<DigitNet["forward"]>) => Tensor[],
  ): Promise<Float32Array[][]> {
    this.#check(x, n);
    const out: Float32Array[][] = [];
    for (let s = 0; s < n; s += DigitClassifier.CHUNK) {
      const m = Math.min(DigitClassifier.CHUNK, n - s);
      const xt = Tensor.from(x.subarray(s * D, (s + m) * D), [m, 1, SIZE, SIZE]);
      const ts = noGrad(() => pick(this.net.forward(xt)));
      out.push(await Tensor.readAll(ts));
      clearTape();
    }
    return out;
  }

  /** Predicted digits of `n` images [n, 1, 32, 32] in [−1, 1]. */
  async predict(x: Float32Array, n: number): Promise<Uint8Array> {
    const chunks = await this.#run(x, n, (o) => [o.logits]);
    return argmaxRows(concat(chunks.map((c) => c[0]), n * 10), 10);
  }

  /** The 64-d penultimate activations (after the ReLU) of `n` images, [n, 64]. */
  async features(x: Float32Array, n: number): Promise<Float32Array> {
    const chunks = await this.#run(x, n, (o) => [o.feat]);
    return concat(chunks.map((c) => c[0]), n * DIGIT_FEATURES);
  }

  /**
   * The three hidden layers of `n` images for the LPIPS-proxy: conv1 [16 x 16·16], conv2
   * [32 x 8·8] and the penultimate [64 x 1], channel-major per image.
   */
  async featureLayers(x: Float32Array, n: number): Promise<FeatureLayer[]> {
    const chunks = await this.#run(x, n, (o) => [o.h1, o.h2, o.feat]);
    return [[16, 256], [32, 64], [DIGIT_FEATURES, 1]].map(([channels, positions], l) => ({
      data: concat(chunks.map((c) => c[l]), n * channels * positions),
      channels,
      positions,
    }));
  }

  /** Fraction of `labels` predicted right on images `x` ([labels.length, 1, 32, 32]). */
  async accuracy(x: Float32Array, labels: ArrayLike<number>): Promise<number> {
    return accuracy(await this.predict(x, labels.length), labels);
  }

  /** Free the parameters. */
  release(): void {
    this.store.release();
  }
}

function concat(parts: Float32Array[], total: number): Float32Array {
  const out = new Float32Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function batchOf(m: Mnist, idx: ArrayLike<number>): { x: Tensor; labels: Uint32Array } {
  const x = new Float32Array(idx.length * D);
  const labels = new Uint32Array(idx.length);
  for (let i = 0; i < idx.length; i++) {
    const src = m.images.subarray(idx[i] * D, (idx[i] + 1) * D);
    for (let j = 0; j < D; j++) x[i * D + j] = (2 * src[j]) / 255 - 1;
    labels[i] = m.labels[idx[i]];
  }
  return { x: Tensor.from(x, [idx.length, 1, SIZE, SIZE]), labels };
}

/** Train a fresh net by `cfg` (Adam, cosine decay to lr/10); logs the loss now and then. */
async function train(
  store: ParamStore,
  net: DigitNet,
  cfg: DigitTrainConfig,
  log: (line: string) => void,
): Promise<void> {
  const data = await loadMnist("train", cfg.trainLimit ? { limit: cfg.trainLimit } : {});
  const opt = new Adam(store.groups(), { lr: cfg.lr });
  const t0 = performance.now();
  const every = Math.max(1, Math.round(cfg.steps / 4));
  try {
    for (let step = 0; step < cfg.steps; step++) {
      const { idx } = batchIndices(data.count, cfg.batch, step, cfg.seed);
      const { x, labels } = batchOf(data, idx);
      const loss = crossEntropy(net.forward(x).logits, labels);
      backward(loss);
      const lr = cfg.lr * (0.1 + 0.45 * (1 + Math.cos((Math.PI * step) / cfg.steps)));
      opt.step(lr);
      // Reading the loss now and then also keeps the queue of submitted steps short.
      if ((step + 1) % every === 0 || step + 1 === cfg.steps) {
        const v = await loss.item();
        log(
          `digits: step ${step + 1}/${cfg.steps} loss ${v.toFixed(4)} (${
            ((performance.now() - t0) / 1000).toFixed(1)
          } s)`,
        );
      }
      clearTape();
      flush();
    }
  } finally {
    opt.release();
  }
}

async function testAccuracy(c: DigitClassifier, limit: number): Promise<number> {
  if (limit <= 0) return NaN;
  const test = await loadMnist("test", { limit });
  return await c.accuracy(digitInputs(test.images), test.labels);
}

/** Why a cache file cannot be used as this network, or undefined when it can. */
function mismatch(ck: Safetensors, store: ParamStore, format: string): string | undefined {
  if (ck.metadata.format !== format) {
    return `format ${ck.metadata.format ?? "missing"}, expected ${format}`;
  }
  for (const [name, t] of store.tensors) {
    const saved = ck.tensors[name];
    if (!saved) return `no tensor ${name}`;
    if (saved.shape.join(",") !== t.shape.join(",")) {
      return `${name} has shape [${saved.shape}], the network needs [${t.shape}]`;
    }
  }
  return undefined;
}

/**
 * Loads a cached evaluation network (`format` checkpoint at `path`) into `store`: the checkpoint
 * when it fits (its tensors then written), else why not (no file, another network). An unreadable
 * file releases the store and throws, naming `what`.
 */
export function loadNetCache(
  path: string,
  store: ParamStore,
  format: string,
  what: string,
): { ck?: Safetensors; why: string } {
  let ck: Safetensors;
  try {
    ck = loadCheckpoint(path);
  } catch (e) {
    if (!(e instanceof Error && / not found$/.test(e.message))) {
      store.release();
      throw new Error(
        `flowgpu: ${what} cache ${path} is unreadable (delete it to retrain): ${
          (e as Error).message
        }`,
      );
    }
    return { why: `no cache at ${path}` };
  }
  const bad = mismatch(ck, store, format);
  if (bad) return { why: `cache ${path} does not fit the network (${bad})` };
  for (const [name, t] of store.tensors) t.write(ck.tensors[name].data);
  return { ck, why: "" };
}

/** The training recipe `opts` asks for: the defaults overridden by what it sets. */
export function digitConfig(opts: Partial<DigitTrainConfig> = {}): DigitTrainConfig {
  const cfg: DigitTrainConfig = {
    seed: opts.seed ?? DIGIT_DEFAULTS.seed,
    steps: opts.steps ?? DIGIT_DEFAULTS.steps,
    batch: opts.batch ?? DIGIT_DEFAULTS.batch,
    lr: opts.lr ?? DIGIT_DEFAULTS.lr,
    trainLimit: opts.trainLimit ?? DIGIT_DEFAULTS.trainLimit,
  };
  for (const k of ["steps", "batch"] as const) {
    if (!Number.isInteger(cfg[k]) || cfg[k] < 1) {
      throw new Error(`flowgpu: digit classifier: ${k} must be a positive integer, got ${cfg[k]}`);
    }
  }
  return cfg;
}

/** The cache file of the classifier `opts` describes: <dir>/digits-<hash of the recipe>. */
export function digitCachePath(opts: DigitClassifierOptions = {}): string {
  const hash = configHash(JSON.stringify({ v: VERSION, ...digitConfig(opts) }));
  return `${opts.dir ?? "data/eval-nets"}/digits-${hash}.safetensors`;
}

/**
 * The evaluation digit classifier: read from its cache when one with this recipe exists, else
 * trained (about two minutes on a CPU driver) and cached. A cache that is not a readable
 * safetensors file throws, naming it; one that is readable but does not fit this network (shapes,
 * names, format) is retrained and overwritten, saying why.
 */
export async function digitClassifier(opts: DigitClassifierOptions = {}): Promise<DigitClassifier> {
  const cfg = digitConfig(opts);
  const log = opts.log ?? console.log;
  const path = (opts.cache ?? true) ? digitCachePath(opts) : undefined;
  const store = new ParamStore(cfg.seed);
  const net = new DigitNet(store.scope("digits"));
  store.layout();
  let why = "no cache";
  if (path) {
    const c = loadNetCache(path, store, FORMAT, "digit classifier");
    if (c.ck) {
      return new DigitClassifier(store, net, cfg, Number(c.ck.metadata.test_accuracy), path);
    }
    why = c.why;
  }
  log(`digits: training the evaluation classifier (${why}): ${JSON.stringify(cfg)}`);
  const t0 = performance.now();
  await train(store, net, cfg, log);
  const seconds = (performance.now() - t0) / 1000;
  const c0 = new DigitClassifier(store, net, cfg, NaN, path);
  const acc = await testAccuracy(c0, opts.testLimit ?? 10000);
  log(
    `digits: trained in ${seconds.toFixed(1)} s; test accuracy ${
      Number.isNaN(acc) ? "not measured" : acc.toFixed(4)
    }`,
  );
  if (path) {
    const entries = [...store.tensors];
    const data = await Tensor.readAll(entries.map(([, t]) => t));
    const tensors: Record<string, NamedTensor> = {};
    entries.forEach(([name, t], i) => (tensors[name] = { shape: [...t.shape], data: data[i] }));
    saveCheckpoint(path, tensors, {
      format: FORMAT,
      config: JSON.stringify(cfg),
      test_accuracy: String(acc),
      train_seconds: seconds.toFixed(1),
    });
    log(`digits: cached in ${path}`);
  }
  return new DigitClassifier(store, net, cfg, acc, path);
}

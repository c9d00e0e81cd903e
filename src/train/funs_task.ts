// FUNS on paired images (c, x): the Cahn–Hilliard–Cook microstructures (condition = initial
// field, target = a later snapshot) or MNIST-exemplar (condition = one fixed training image per
// digit, target = any image of that digit).
import { Funs } from "../models/funs.ts";
import { ParamStore } from "../nn/store.ts";
import { add, scale } from "../ops/elementwise.ts";
import { clearTape, noGrad } from "../ops/tape.ts";
import { Tensor } from "../ops/tensor.ts";
import { Rng } from "../util/rng.ts";
import { imageGrid } from "./png.ts";
import { type Config, defineTask, type Model } from "./task.ts";
import { type PairSet, pairSets } from "./funs_data.ts";
import { funsPaperMetrics } from "./funs_eval.ts";

const flags = {
  data: {
    default: "mnist-exemplar",
    choices: ["chc", "mnist-exemplar"],
    shape: true,
    help: "paired data set",
  },
  chcPreset: {
    default: "cpu",
    gpu: "full",
    choices: ["small", "cpu", "full"],
    shape: true,
    help: "CHC data preset (cpu: 32x32, small and full: 64x64; see deno task data chc --help)",
  },
  levels: { default: 3, gpu: 4, min: 1, shape: true, help: "flow levels (L)" },
  depth: { default: 4, gpu: 48, min: 1, shape: true, help: "flow steps per level (K)" },
  width: { default: 48, gpu: 512, min: 1, shape: true, help: "hidden channels of the couplings" },
  coupling: {
    // Additive by default: the affine-sigmoid inverse divides by s = σ(r + 2), and at this CPU
    // budget it overflowed on most samples (see the README's FUNS figures).
    default: "additive",
    choices: ["affine", "additive"],
    shape: true,
    help: "coupling layer of the flow",
  },
  base: { default: 16, min: 1, shape: true, help: "encoder/decoder channels at full resolution" },
  bits: {
    default: 0,
    min: 0,
    shape: true,
    help: "bit depth of the targets (0: the data set's own: 5 for mnist-exemplar, as the paper's " +
      "CelebA, 8 for chc, as the paper's CHC)",
  },
  alpha: { default: 0.01, real: true, help: "weight of ‖M‖₁" },
  beta: { default: 0.1, real: true, help: "weight of the mask-weighted prior entropy" },
  initBatch: { default: 128, min: 1, help: "targets for the data-dependent actnorm init" },
  trainLimit: { default: 0, help: "use only the first N training pairs (0: all)" },
  evalLimit: { default: 2000, min: 1, help: "test pairs for the evaluation" },
  temperature: { default: 1, real: true, help: "sampling temperature" },
};

export type FunsTaskConfig = Config<typeof flags>;

export class FunsModel implements Model {
  readonly store: ParamStore;
  readonly funs: Funs;
  readonly noise: Rng;
  readonly rngs: Record<string, Rng>;
  readonly examplesPerStep: number;
  readonly #bpdOffset: Tensor;

  constructor(readonly cfg: FunsTaskConfig, readonly train: PairSet, readonly test: PairSet) {
    this.store = new ParamStore(cfg.seed);
    this.funs = new Funs(this.store.scope(), {
      channels: train.channels,
      condChannels: train.condChannels,
      size: train.size,
      levels: cfg.levels,
      depth: cfg.depth,
      hidden: cfg.width,
      affine: cfg.coupling === "affine",
      base: cfg.base,
      nBits: cfg.bits,
      alpha: cfg.alpha,
      beta: cfg.beta,
    });
    this.noise = new Rng(cfg.seed ^ 0x5eed);
    this.rngs = { noise: this.noise };
    this.examplesPerStep = cfg.batch;
    // x = 2(k + u)/2^n − 1: bits/dim = L_flow / (D ln 2) + n − 1.
    this.#bpdOffset = Tensor.constant([cfg.bits - 1], [1], "bpd_offset");
  }

  describe(): string {
    const c = this.cfg;
    return `${c.data}: L=${c.levels} K=${c.depth} width ${c.width}, encoder base ${c.base}, ${
      this.store.count().toLocaleString("en")
    } parameters; batch ${c.batch}, ${c.steps} steps; ${this.train.count} training pairs`;
  }

  /** Tensors of pairs `idx` of `set`. */
  pairBatch(set: PairSet, idx: ArrayLike<number>, rng: Rng): { x: Tensor; c: Tensor } {
    const { x, c } = set.batch(idx, this.cfg.bits, rng);
    const shape = (ch: number) => [idx.length, ch, set.size, set.size];
    return { x: Tensor.from(x, shape(set.channels)), c: Tensor.from(c, shape(set.condChannels)) };
  }

  init(): void {
    const n = Math.min(this.cfg.initBatch, this.train.count);
    const idx = new Rng(this.cfg.seed + 17).permutation(this.train.count).subarray(0, n);
    const { x } = this.pairBatch(this.train, idx, new Rng(this.cfg.seed + 18));
    this.funs.glow.initialize(x);
  }

  updates(step: number) {
    return [{
      optimizer: "main",
      run: () => {
        const idx = this.train.order(this.cfg.batch, step, this.cfg.seed);
        const { x, c } = this.pairBatch(this.train, idx, this.noise);
        const l = this.funs.losses(x, c, (n) => this.noise.normalArray(n));
        const perDim = 1 / (this.funs.dims * Math.LN2);
        const bpd = noGrad(() => add(scale(l.flow, perDim), this.#bpdOffset));
        return {
          loss: l.total,
          terms: {
            bpd,
            flow: l.flow,
            recons: l.recons,
            squeeze: l.squeeze,
            entropy: l.entropy,
          },
        };
      },
    }];
  }

  /** Conditional test bits/dim over `limit` pairs (BatchNorm in eval mode). */
  async testBpd(limit: number): Promise<number> {
    const n = Math.min(limit, this.test.count), rng = new Rng(12345);
    this.funs.training = false;
    let total = 0;
    for (let s = 0; s < n; s += 100) {
      const idx = Uint32Array.from({ length: Math.min(100, n - s) }, (_, i) => s + i);
      const { x, c } = this.pairBatch(this.test, idx, rng);
      const l = noGrad(() => this.funs.losses(x, c, (k) => rng.normalArray(k)));
      total += (await l.flow.item()) * idx.length;
      clearTape();
    }
    this.funs.training = true;
    return total / n / (this.funs.dims * Math.LN2) + this.cfg.bits - 1;
  }

  /** Fraction of condition-dependent latent elements (M > 0) per level. */
  async maskFractions(): Promise<number[]> {
    return (await this.funs.conditionMask()).map((m) => m.reduce((a, v) => a + v, 0) / m.length);
  }

  /** Rows: a condition, then samples for it; one row per test condition shown. */
  async panel(most = 8, perRow = 7): Promise<Uint8Array> {
    const set = this.test, size = set.size, d = size * size;
    const idx = set.exampleIndices(most);
    const rows = idx.length;
    const { c, x } = this.pairBatch(set, idx, new Rng(3));
    const cs = await c.read(), xs = await x.read();
    this.funs.training = false;
    const rng = new Rng(777);
    const reps: number[] = [];
    for (let r = 0; r < rows; r++) for (let k = 0; k < perRow - 2; k++) reps.push(r);
    const cRep = Tensor.from(
      Float32Array.from(
        { length: reps.length * d },
        (_, i) => cs[reps[Math.floor(i / d)] * d + i % d],
      ),
      [reps.length, 1, size, size],
    );
    const samples = await this.funs.sample(cRep, (n) => rng.normalArray(n), this.cfg.temperature)
      .read();
    this.funs.training = true;
    clearTape();
    const px = new Uint8Array(rows * perRow * d);
    const put = (slot: number, src: Float32Array, at: number) => {
      for (let i = 0; i < d; i++) {
        px[slot * d + i] = Math.max(0, Math.min(255, Math.round((src[at + i] + 1) * 127.5)));
      }
    };
    for (let r = 0; r < rows; r++) {
      put(r * perRow, cs, r * d);
      for (let k = 0; k < perRow - 2; k++) {
        put(r * perRow + 1 + k, samples, (r * (perRow - 2) + k) * d);
      }
      put(r * perRow + perRow - 1, xs, r * d);
    }
    return imageGrid(px, rows * perRow, 1, size, size, perRow);
  }

  /**
   * Algorithm 1 on test images (the paper's Fig. 6): per row, the given x, then `k` x_sp
   * (condition-specific latents redrawn from e(z | ĉ(x))), `k` x_iv (invariant ones redrawn),
   * and x's specific latents with the next row's invariant ones, then that next image.
   */
  async algorithmPanel(rows = 6, k = 3): Promise<Uint8Array> {
    const set = this.test, size = set.size, d = size * size;
    const idx = set.exampleIndices(rows);
    const n = idx.length, cols = 2 * k + 3;
    const next = idx.map((_, i) => idx[(i + 1) % n]);
    const a = this.pairBatch(set, idx, new Rng(8)), b = this.pairBatch(set, next, new Rng(9));
    const rng = new Rng(99), noise = (q: number) => rng.normalArray(q);
    const rep = (x: Float32Array) => {
      const out = new Float32Array(n * k * d);
      for (let i = 0; i < n * k; i++) {
        out.set(x.subarray(Math.floor(i / k) * d, (Math.floor(i / k) + 1) * d), i * d);
      }
      return Tensor.from(out, [n * k, 1, size, size]);
    };
    this.funs.training = false;
    let parts: Float32Array[];
    try {
      const xs = await a.x.read(), xn = await b.x.read();
      const t = this.cfg.temperature;
      const sp = await (await this.funs.resample(rep(xs), "sp", noise, t)).read();
      const iv = await (await this.funs.resample(rep(xs), "iv", noise, t)).read();
      const sw = await (await this.funs.swap(a.x, b.x)).read();
      parts = [xs, sp, iv, sw, xn];
    } finally {
      this.funs.training = true;
      clearTape();
    }
    const [xs, sp, iv, sw, xn] = parts;
    const px = new Uint8Array(n * cols * d);
    const put = (slot: number, src: Float32Array, at: number) => {
      for (let i = 0; i < d; i++) {
        const v = src[at + i];
        px[slot * d + i] = Number.isFinite(v)
          ? Math.max(0, Math.min(255, Math.round((v + 1) * 127.5)))
          : 0;
      }
    };
    for (let r = 0; r < n; r++) {
      put(r * cols, xs, r * d);
      for (let j = 0; j < k; j++) {
        put(r * cols + 1 + j, sp, (r * k + j) * d);
        put(r * cols + 1 + k + j, iv, (r * k + j) * d);
      }
      put(r * cols + 2 * k + 1, sw, r * d);
      put(r * cols + 2 * k + 2, xn, r * d);
    }
    return imageGrid(px, n * cols, 1, size, size, cols);
  }

  async preview() {
    return { samples: await this.panel() };
  }

  async evaluate({ final }: { final: boolean }) {
    const metrics: Record<string, number> = { test_bpd: await this.testBpd(this.cfg.evalLimit) };
    (await this.maskFractions()).forEach((f, l) => (metrics[`mask_fraction_level${l + 1}`] = f));
    if (!final) return { metrics };
    Object.assign(metrics, await funsPaperMetrics(this));
    return {
      metrics,
      images: { panel: await this.panel(), algorithm1: await this.algorithmPanel() },
    };
  }

  release(): void {
    this.#bpdOffset.release();
  }
}

export const funsTask = defineTask({
  name: "funs",
  summary: "FUNS (flow U-Net with squeeze modules) on CHC microstructures or MNIST-exemplar",
  flags,
  trainer: {
    steps: { default: 1000, gpu: 100000 },
    batch: { default: 32, gpu: 32 },
    lr: { default: 2e-3, gpu: 1e-4 },
    warmup: { default: 100, gpu: 1000 },
    clip: { default: 50 },
    out: { default: "runs/funs", gpu: "runs/funs-gpu" },
    sampleEvery: { default: 500, gpu: 5000 },
    checkpointEvery: { default: 250, gpu: 2000 },
  },
  async build(cfg, mode): Promise<Model> {
    if (cfg.bits === 0) cfg.bits = cfg.data === "chc" ? 8 : 5;
    const { train, test } = await pairSets(cfg.data, {
      trainLimit: cfg.trainLimit,
      mode,
      chcPreset: cfg.chcPreset,
    });
    return new FunsModel(cfg, train, test);
  },
});

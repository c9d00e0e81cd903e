// Glow on MNIST (padded to 32x32, dequantised): the default task of `deno task train`.
import { batchIndices, dequantize, type ImageSet, toPixels } from "../data/batches.ts";
import { loadMnist } from "../data/mnist.ts";
import { Glow } from "../models/glow.ts";
import { ParamStore } from "../nn/store.ts";
import { add, scale } from "../ops/elementwise.ts";
import { sum } from "../ops/reduce.ts";
import { clearTape, noGrad } from "../ops/tape.ts";
import { Tensor } from "../ops/tensor.ts";
import { Rng } from "../util/rng.ts";
import { imageGrid } from "./png.ts";
import { type Config, defineTask, type Model } from "./task.ts";

const flags = {
  levels: { default: 3, min: 1, shape: true, help: "multi-scale levels (L)" },
  depth: { default: 8, gpu: 32, min: 1, shape: true, help: "flow steps per level (K)" },
  width: { default: 64, gpu: 512, min: 1, shape: true, help: "hidden channels of the couplings" },
  coupling: {
    default: "affine",
    choices: ["affine", "additive"],
    shape: true,
    help: "coupling layer",
  },
  lu: { default: true, shape: true, help: "LU-factorised 1x1 convolutions (--no-lu: plain W)" },
  bits: { default: 8, min: 1, shape: true, help: "bit depth of the data (1..8)" },
  conditional: { default: false, shape: true, help: "class-conditional top prior (labels)" },
  classWeight: {
    default: 0.01,
    real: true,
    help: "weight of the auxiliary classifier's bits (with --conditional)",
  },
  initBatch: { default: 256, min: 1, help: "images for the data-dependent actnorm init" },
  trainLimit: { default: 0, help: "use only the first N training images (0: all)" },
  evalLimit: { default: 10000, min: 1, help: "test images for evaluations (10000: all)" },
  evalBatch: { default: 250, min: 1, help: "images per evaluation batch" },
  temperature: { default: 0.7, real: true, help: "sampling temperature of the previews" },
};

export type GlowTaskConfig = Config<typeof flags>;

async function mnist(split: "train" | "test", limit: number): Promise<ImageSet> {
  const m = await loadMnist(split, limit ? { limit } : {});
  return { images: m.images, labels: m.labels, count: m.count, channels: 1, height: 32, width: 32 };
}

export class GlowMnist implements Model {
  readonly store: ParamStore;
  readonly glow: Glow;
  /** Dequantisation noise; checkpointed so a resumed run draws the same noise. */
  readonly noise: Rng;
  readonly rngs: Record<string, Rng>;
  readonly examplesPerStep: number;
  #nBits: Tensor;

  constructor(readonly cfg: GlowTaskConfig, readonly train: ImageSet, readonly test: ImageSet) {
    if (cfg.bits > 8) throw new Error(`flowgpu: --bits ${cfg.bits}: MNIST has 8 bits`);
    this.store = new ParamStore(cfg.seed);
    this.glow = new Glow({
      channels: 1,
      height: 32,
      width: 32,
      levels: cfg.levels,
      depth: cfg.depth,
      hidden: cfg.width,
      affine: cfg.coupling === "affine",
      lu: cfg.lu,
      nBits: cfg.bits,
      classes: cfg.conditional ? 10 : 0,
    }, this.store.scope("flow"));
    this.noise = new Rng(cfg.seed ^ 0x5eed);
    this.rngs = { noise: this.noise };
    this.examplesPerStep = cfg.batch;
    this.#nBits = Tensor.constant([cfg.bits], [1], "n_bits");
  }

  describe(): string {
    const c = this.cfg;
    return `L=${c.levels} K=${c.depth} width ${c.width} ${c.coupling}${c.lu ? " LU" : ""}` +
      `${c.conditional ? " class-conditional" : ""}, ${
        this.store.count().toLocaleString("en")
      } parameters; batch ${c.batch}, ${c.steps} steps; ${this.train.count} training images`;
  }

  #labels(set: ImageSet, idx: ArrayLike<number>): Uint8Array | undefined {
    return this.cfg.conditional ? Uint8Array.from(idx, (i) => set.labels[i]) : undefined;
  }

  /** Data-dependent actnorm init from the first `initBatch` images of a shuffled order. */
  init(): void {
    const n = Math.min(this.cfg.initBatch, this.train.count);
    const idx = new Rng(this.cfg.seed + 17).permutation(this.train.count).subarray(0, n);
    const x = dequantize(this.train, idx, this.cfg.bits, new Rng(this.cfg.seed + 18));
    this.glow.initialize(Tensor.from(x, [n, 1, 32, 32]));
  }

  updates(step: number) {
    return [{
      optimizer: "main",
      run: () => {
        const { idx } = batchIndices(this.train.count, this.cfg.batch, step, this.cfg.seed);
        const x = dequantize(this.train, idx, this.cfg.bits, this.noise);
        const xs = Tensor.from(x, [idx.length, 1, 32, 32]);
        const labels = this.#labels(this.train, idx);
        const { logp, top } = this.glow.logProbAndTop(xs, labels);
        const bpd = this.glow.bitsPerDim(logp);
        const terms: Record<string, Tensor> = { bpd: add(bpd, this.#nBits) };
        let loss = bpd;
        if (labels && this.cfg.classWeight > 0) {
          const cls = this.glow.classBits(top, labels);
          terms.class_bits = cls;
          loss = add(bpd, scale(cls, this.cfg.classWeight));
        }
        return { loss, terms };
      },
    }];
  }

  /** Mean test bits/dim over `limit` images, one noise draw per image (seeded). */
  async testBpd(limit: number): Promise<number> {
    const n = Math.min(limit, this.test.count), batch = this.cfg.evalBatch;
    const rng = new Rng(12345);
    let total = 0;
    for (let start = 0; start < n; start += batch) {
      const idx = Uint32Array.from({ length: Math.min(batch, n - start) }, (_, i) => start + i);
      const x = Tensor.from(dequantize(this.test, idx, this.cfg.bits, rng), [
        idx.length,
        1,
        32,
        32,
      ]);
      const labels = this.#labels(this.test, idx);
      total += await noGrad(() => sum(this.glow.logProb(x, labels))).item();
      clearTape();
    }
    return -total / n / (this.glow.dims * Math.LN2) + this.cfg.bits;
  }

  /** Max relative error of decode(encode(x)) on the first n test images. */
  async roundTripError(n = 64): Promise<number> {
    const idx = Uint32Array.from({ length: Math.min(n, this.test.count) }, (_, i) => i);
    const data = dequantize(this.test, idx, this.cfg.bits, new Rng(5));
    const x = Tensor.from(data, [idx.length, 1, 32, 32]);
    const back = await this.glow.decode(this.glow.encode(x)).read();
    clearTape();
    let err = 0, scale = 0;
    data.forEach((v, i) => {
      err = Math.max(err, Math.abs(back[i] - v));
      scale = Math.max(scale, Math.abs(v));
    });
    return err / scale;
  }

  async samples(n = 64): Promise<Uint8Array> {
    const labels = this.cfg.conditional ? Array.from({ length: n }, (_, i) => i % 10) : undefined;
    const x = await this.glow.sample(n, this.cfg.temperature, new Rng(777), labels).read();
    clearTape();
    return imageGrid(toPixels(x, this.cfg.bits), n, 1, 32, 32, 8);
  }

  async preview() {
    return { samples: await this.samples() };
  }

  release(): void {
    this.#nBits.release();
  }

  async evaluate({ final }: { final: boolean }) {
    const limit = this.cfg.evalLimit;
    const metrics: Record<string, number> = { test_bpd: await this.testBpd(limit) };
    metrics.test_images = Math.min(limit, this.test.count);
    if (!final) return { metrics };
    metrics.inverse_rel_error = await this.roundTripError();
    return { metrics, images: { samples: await this.samples() } };
  }
}

export const glowTask = defineTask({
  name: "glow",
  summary: "multi-scale Glow on MNIST (32x32, dequantised): bits/dim",
  flags,
  trainer: {
    steps: { default: 2400, gpu: 40000 },
    batch: { default: 32, gpu: 64 },
    lr: { default: 2e-3 },
    warmup: { default: 200, gpu: 1000 },
    clip: { default: 50 },
    out: { default: "runs/glow-mnist", gpu: "runs/glow-mnist-gpu" },
    sampleEvery: { default: 500, gpu: 2000 },
    checkpointEvery: { default: 250, gpu: 1000 },
    evalEvery: { default: 0, gpu: 5000 },
  },
  async build(cfg, mode) {
    const test = await mnist("test", cfg.evalLimit < 10000 ? cfg.evalLimit : 0);
    const train = mode === "train" ? await mnist("train", cfg.trainLimit) : test;
    return new GlowMnist(cfg, train, test);
  },
});

// A convolutional autoencoder on MNIST, trained by the generic trainer: reconstruction MSE.
import { batchIndices } from "../data/batches.ts";
import { loadMnist } from "../data/mnist.ts";
import { Autoencoder } from "../models/ae.ts";
import { ParamStore } from "../nn/store.ts";
import { sum } from "../ops/reduce.ts";
import { clearTape, noGrad } from "../ops/tape.ts";
import { Tensor } from "../ops/tensor.ts";
import { imageGrid } from "./png.ts";
import { type Config, defineTask, type Model } from "./task.ts";

const flags = {
  hidden: { default: 16, gpu: 64, min: 1, shape: true, help: "channels of the first conv" },
  latent: { default: 32, min: 1, shape: true, help: "code size" },
  trainLimit: { default: 0, help: "use only the first N training images (0: all)" },
  evalLimit: { default: 2000, min: 1, help: "test images for the evaluation" },
};

type AeConfig = Config<typeof flags>;
type Images = { x: Float32Array; count: number };

/** MNIST as floats in [0, 1], [N, 1, 32, 32]. */
async function mnist(split: "train" | "test", limit: number): Promise<Images> {
  const m = await loadMnist(split, limit ? { limit } : {});
  return { x: Float32Array.from(m.images, (v) => v / 255), count: m.count };
}

const D = 32 * 32;

class AeMnist implements Model {
  readonly store: ParamStore;
  readonly ae: Autoencoder;
  readonly examplesPerStep: number;

  constructor(readonly cfg: AeConfig, readonly train: Images, readonly test: Images) {
    this.store = new ParamStore(cfg.seed);
    this.ae = new Autoencoder(this.store.scope("ae"), {
      channels: 1,
      size: 32,
      hidden: cfg.hidden,
      latent: cfg.latent,
    });
    this.examplesPerStep = cfg.batch;
  }

  describe(): string {
    return `conv autoencoder, code ${this.cfg.latent}, ${
      this.store.count().toLocaleString("en")
    } parameters; batch ${this.cfg.batch}, ${this.cfg.steps} steps; ${this.train.count} images`;
  }

  #batch(set: Images, idx: ArrayLike<number>): Tensor {
    const x = new Float32Array(idx.length * D);
    for (let i = 0; i < idx.length; i++) x.set(set.x.subarray(idx[i] * D, (idx[i] + 1) * D), i * D);
    return Tensor.from(x, [idx.length, 1, 32, 32]);
  }

  updates(step: number) {
    return [{
      optimizer: "main",
      run: () => {
        // Each epoch's order comes from the seed and the epoch: a resumed run sees the same.
        const { idx } = batchIndices(this.train.count, this.cfg.batch, step, this.cfg.seed);
        const { loss } = this.ae.loss(this.#batch(this.train, idx));
        return { loss, terms: { mse: loss } };
      },
    }];
  }

  async evaluate() {
    const n = Math.min(this.cfg.evalLimit, this.test.count);
    let total = 0;
    for (let s = 0; s < n; s += 250) {
      const idx = Uint32Array.from({ length: Math.min(250, n - s) }, (_, i) => s + i);
      const x = this.#batch(this.test, idx);
      total += await noGrad(() => sum(this.ae.loss(x).loss)).item() * idx.length;
      clearTape();
    }
    return {
      metrics: { test_mse: total / n, test_images: n },
      images: await this.preview(),
    };
  }

  /** 32 test digits (odd rows) above their reconstructions (even rows). */
  async preview() {
    const idx = Uint32Array.from({ length: 32 }, (_, i) => i);
    const recon = await noGrad(() => this.ae.loss(this.#batch(this.test, idx)).recon).read();
    clearTape();
    const px = new Uint8Array(64 * D);
    for (let r = 0; r < 4; r++) {
      for (let c = 0; c < 8; c++) {
        const i = r * 8 + c;
        const src = this.test.x.subarray(i * D, (i + 1) * D);
        px.set(src.map((v) => Math.round(v * 255)), ((2 * r) * 8 + c) * D);
        px.set(
          recon.subarray(i * D, (i + 1) * D).map((v) =>
            Math.min(255, Math.max(0, Math.round(v * 255)))
          ),
          ((2 * r + 1) * 8 + c) * D,
        );
      }
    }
    return { reconstructions: await imageGrid(px, 64, 1, 32, 32, 8) };
  }
}

export const aeTask = defineTask({
  name: "ae",
  summary: "convolutional autoencoder on MNIST: reconstruction MSE",
  flags,
  trainer: {
    steps: { default: 1000, gpu: 20000 },
    batch: { default: 32, gpu: 128 },
    lr: { default: 2e-3 },
    warmup: { default: 20 },
    out: { default: "runs/ae-mnist", gpu: "runs/ae-mnist-gpu" },
    sampleEvery: { default: 250, gpu: 2000 },
    checkpointEvery: { default: 250, gpu: 2000 },
  },
  async build(cfg, mode) {
    const test = await mnist("test", 0);
    const train = mode === "train" ? await mnist("train", cfg.trainLimit) : test;
    return new AeMnist(cfg, train, test);
  },
});

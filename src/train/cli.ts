// `deno task train`: train Glow on MNIST (default), or `evaluate` a run's checkpoint.
import { join } from "node:path";
import { loadMnist } from "../data/mnist.ts";
import type { ImageSet } from "../data/batches.ts";
import { initGpu } from "../gpu/mod.ts";
import { helpText, parseTrainArgs } from "./config.ts";
import { GlowTrainer, runTraining } from "./glow_trainer.ts";
import { writePng } from "./png.ts";

async function mnist(split: "train" | "test", limit: number): Promise<ImageSet> {
  const m = await loadMnist(split, limit ? { limit } : {});
  return { images: m.images, labels: m.labels, count: m.count, channels: 1, height: 32, width: 32 };
}

async function main(args: string[]): Promise<number> {
  const { command, config, help } = parseTrainArgs(args);
  if (help) {
    console.log(helpText("deno task train"));
    return 0;
  }
  await initGpu({ verbose: config.verbose });
  const test = await mnist("test", config.evalLimit < 10000 ? config.evalLimit : 0);
  if (command === "evaluate") {
    const t = new GlowTrainer(config, test);
    t.load(join(config.out, "checkpoint.safetensors"));
    const bpd = await t.evaluate(test, config.evalLimit);
    const png = join(config.out, "samples", `eval-step-${String(t.step).padStart(6, "0")}.png`);
    Deno.mkdirSync(join(config.out, "samples"), { recursive: true });
    writePng(png, await t.sampleGrid());
    console.log(
      `step ${t.step}: test bits/dim ${bpd.toFixed(4)} over ${
        Math.min(config.evalLimit, test.count)
      } images`,
    );
    console.log(
      `inverse(forward(x)) max relative error on a test batch: ${
        (await t.roundTripError(test)).toExponential(2)
      }`,
    );
    console.log(`samples: ${png}`);
    return 0;
  }
  const train = await mnist("train", config.trainLimit);
  await runTraining(config, train, test);
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    Deno.exit(1);
  }
}

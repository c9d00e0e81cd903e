// A training task built for a bench, with `--flags` on top of its defaults: the session
// after data-dependent init, and a step that waits for the GPU.
import { sync } from "../src/gpu/encoder.ts";
import { initGpu } from "../src/gpu/mod.ts";
import { parseTrain } from "../src/train/cli.ts";
import { Session } from "../src/train/trainer.ts";

export async function glowSession(
  flags: string[],
): Promise<{ s: Session; step: () => Promise<void> }> {
  await initGpu();
  const { task, cfg } = parseTrain(flags);
  const s = new Session(task, cfg, await task.build(cfg, "train"));
  s.model.init?.();
  const step = async () => {
    s.trainStep();
    await sync();
  };
  return { s, step };
}

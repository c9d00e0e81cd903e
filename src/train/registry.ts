// Every trainable model, by its --model name: adding a model is one line here.
import { aeTask } from "./ae_task.ts";
import { afTask } from "./af_task.ts";
import { cmivaeTask } from "./cmivae_task.ts";
import { disunknownTask } from "./disunknown_task.ts";
import { funsTask } from "./funs_task.ts";
import { glowTask } from "./glow_task.ts";
import { lrlivaeTask } from "./lrlivae_task.ts";
import { afmiTask, miTask } from "./mi_task.ts";
import type { Task } from "./task.ts";
import { vaeTask } from "./vae_task.ts";

/** Every trainable task by its `--model` name. */
export const tasks: Record<string, Task> = {
  glow: glowTask,
  ae: aeTask,
  funs: funsTask,
  vae: vaeTask,
  af: afTask,
  mi: miTask,
  afmi: afmiTask,
  lrlivae: lrlivaeTask,
  cmivae: cmivaeTask,
  disunknown: disunknownTask,
};

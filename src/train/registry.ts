// Every trainable model, by its --model name: adding a model is one line here.
import { aeTask } from "./ae_task.ts";
import { glowTask } from "./glow_task.ts";
import type { Task } from "./task.ts";

export const tasks: Record<string, Task> = {
  glow: glowTask as unknown as Task,
  ae: aeTask as unknown as Task,
};

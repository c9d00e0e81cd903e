// `deno task train [--model NAME] [flags]` trains any registered model (default: glow);
// `deno task evaluate --out DIR` (or `deno task train evaluate --out DIR`) evaluates the run in
// DIR with the model and config it was trained with, into DIR/eval.json and DIR/eval/*.png.
import { join } from "node:path";
import { initGpu } from "../gpu/mod.ts";
import { defaults, type FlagTable, helpSection, parseFlags } from "./flags.ts";
import { tasks } from "./registry.ts";
import { RunDir } from "./run_dir.ts";
import type { Task } from "./task.ts";
import { type AnyConfig, fmtMetrics, Session, train, writeEval } from "./trainer.ts";
import { trainerTable } from "./trainer_flags.ts";

/** The value of `--name X` or `--name=X` in args, before the tables are known. */
function peek(args: string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === `--${name}`) return args[i + 1];
    if (args[i].startsWith(`--${name}=`)) return args[i].slice(name.length + 3);
  }
  return undefined;
}

function taskNamed(name: string): Task {
  const t = tasks[name];
  if (!t) {
    throw new Error(`flowgpu: unknown --model ${name} (one of ${Object.keys(tasks).join(", ")})`);
  }
  return t;
}

function usage(task: Task, table: FlagTable): string {
  const list = Object.values(tasks).map((t) => `  ${t.name.padEnd(10)} ${t.summary}`).join("\n");
  return `usage: deno task train [--model NAME] [options]   train a model (default: glow)
       deno task evaluate --out DIR                 evaluate the run in DIR into DIR/eval.json

models:
${list}

${helpSection("training options [cpu default; gpu preset where it differs]", table)}

${helpSection(`${task.name} options`, task.flags)}
`;
}

export function parseTrain(args: string[]): { task: Task; cfg: AnyConfig; help: boolean } {
  const help = args.includes("--help") || args.includes("-h");
  const rest = args.filter((a) => a !== "--help" && a !== "-h");
  const task = taskNamed(peek(rest, "model") ?? "glow");
  const table = trainerTable(task.trainer);
  if (help) {
    console.log(usage(task, table));
    return { task, cfg: {} as AnyConfig, help };
  }
  const preset = peek(rest, "preset") ?? "cpu";
  const { values, positionals } = parseFlags(rest, [table, task.flags], preset);
  if (positionals.length) {
    throw new Error(`flowgpu: unexpected argument '${positionals[0]}' (see --help)`);
  }
  return { task, cfg: values as AnyConfig, help };
}

/** `deno task evaluate --out DIR [flags]`. */
export async function evaluate(args: string[]): Promise<void> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(`usage: deno task evaluate --out DIR [--eval-limit N] [--verbose]

Evaluates the run in DIR (its config.json names the model and its flags; its checkpoint holds
the parameters) and writes DIR/eval.json and DIR/eval/*.png. Flags after --out override the
run's own (for example a smaller --eval-limit). For af, mi and afmi runs eval.json holds the
Table I protocol (src/eval/reenact.ts: --eval-clips test clips, --eval-seeds draws of the frame
k); \`deno task table --runs DIR,...\` gathers several runs into one table.`);
    return;
  }
  const out = peek(args, "out");
  if (!out) throw new Error("flowgpu: evaluate needs --out DIR (a run folder)");
  const { task, dir, session: s } = await openRun(out, args, { lock: true });
  try {
    const e = await s.model.evaluate({ final: true });
    writeEval(dir, s, e.metrics, e.images);
    console.log(`${task.name} at step ${s.step}: ${fmtMetrics(e.metrics)}`);
    console.log(`wrote ${dir.file("eval.json")}`);
  } finally {
    s.release();
    dir.unlock();
  }
}

/**
 * The run in folder `out` built as it was trained (its config.json: model and flags; `args`
 * override flags) with its checkpoint loaded, on an initialised GPU. `lock` holds the folder
 * (release the session and unlock the folder when done).
 */
export async function openRun(
  out: string,
  args: string[],
  o: { lock: boolean },
): Promise<{ task: Task; cfg: AnyConfig; dir: RunDir; session: Session }> {
  let saved: Record<string, unknown>;
  try {
    saved = JSON.parse(Deno.readTextFileSync(join(out, "config.json")));
  } catch {
    throw new Error(
      `flowgpu: ${join(out, "config.json")} not found or unreadable: not a run folder`,
    );
  }
  const task = taskNamed(String(saved.model));
  const table = trainerTable(task.trainer);
  const { values, given } = parseFlags(args, [table, task.flags], String(saved.preset ?? "cpu"));
  const all: Record<string, unknown> = {
    ...defaults(table, "cpu"),
    ...defaults(task.flags, "cpu"),
    ...saved,
    out,
  };
  for (const k of given) all[k] = values[k];
  const cfg = all as AnyConfig;
  await initGpu({ verbose: cfg.verbose });
  const dir = new RunDir(out);
  if (o.lock) dir.lock();
  let s: Session | undefined;
  try {
    s = new Session(task, cfg, await task.build(cfg, "evaluate"));
    s.load(dir.file("checkpoint.safetensors"));
    return { task, cfg, dir, session: s };
  } catch (e) {
    s?.release();
    dir.unlock();
    throw e;
  }
}

async function main(args: string[]): Promise<number> {
  if (args[0] === "evaluate") {
    await evaluate(args.slice(1));
    return 0;
  }
  const { task, cfg, help } = parseTrain(args[0] === "train" ? args.slice(1) : args);
  if (help) return 0;
  await initGpu({ verbose: cfg.verbose });
  await train(task, cfg);
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

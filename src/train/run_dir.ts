// A run folder holds one run. A new run refuses a folder that holds another run's files (unless
// told to --overwrite, or to --resume it); a lock file keeps a second process out while a run
// writes; a resumed run drops the metric lines past its checkpoint's step, as TensorBoard's
// purge_step does, so the log never holds a step twice.
import { join } from "node:path";
import { writeFileAtomic } from "./checkpoint.ts";

/** What a run writes into its folder; any of them present means the folder holds a run. */
export const RUN_FILES = ["config.json", "metrics.jsonl", "checkpoint.safetensors", "eval.json"];
const RUN_DIRS = ["samples", "eval"];
export const CHECKPOINT = "checkpoint.safetensors";

const exists = (p: string) => {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
};

function alive(pid: number): boolean {
  if (pid === Deno.pid) return true;
  if (Deno.build.os === "linux") return exists(`/proc/${pid}`);
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

export class RunDir {
  readonly #lock: string;
  #held = false;

  constructor(readonly path: string) {
    this.#lock = join(path, ".lock");
  }

  file(name: string): string {
    return join(this.path, name);
  }

  /** Take the folder for a run: refuse another run's files, or clear them when `overwrite`. */
  open(o: { resume: boolean; overwrite: boolean }): void {
    Deno.mkdirSync(this.path, { recursive: true });
    this.lock();
    try {
      if (o.resume) {
        if (!exists(this.file(CHECKPOINT))) {
          throw new Error(
            `flowgpu: --resume: ${
              this.file(CHECKPOINT)
            } not found (nothing to resume in ${this.path})`,
          );
        }
        return;
      }
      const found = [...RUN_FILES, ...RUN_DIRS].filter((f) => exists(this.file(f)));
      if (found.length && !o.overwrite) {
        throw new Error(
          `flowgpu: ${this.path} holds another run (${found.join(", ")}); use --resume to ` +
            "continue it, --overwrite to replace it, or another --out",
        );
      }
      for (const f of found) Deno.removeSync(this.file(f), { recursive: true });
    } catch (e) {
      this.unlock();
      throw e;
    }
  }

  /** The lock file names the process; a lock whose process is gone is stale and taken over. */
  lock(): void {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const f = Deno.openSync(this.#lock, { write: true, createNew: true });
        f.writeSync(new TextEncoder().encode(`${Deno.pid}\n`));
        f.close();
        this.#held = true;
        return;
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
        const pid = Number(Deno.readTextFileSync(this.#lock).trim());
        if (Number.isInteger(pid) && pid > 0 && alive(pid)) {
          throw new Error(
            `flowgpu: ${this.path} is in use by process ${pid} (${this.#lock}); wait for it or ` +
              "choose another --out",
          );
        }
        Deno.removeSync(this.#lock); // stale: its process is gone
      }
    }
    throw new Error(`flowgpu: could not lock ${this.path}`);
  }

  unlock(): void {
    if (!this.#held) return;
    this.#held = false;
    try {
      Deno.removeSync(this.#lock);
    } catch { /* already gone */ }
  }

  /** Keep only the metric lines at or before `step` (a resumed run logs the rest again). */
  purgeMetricsAfter(step: number): number {
    const path = this.file("metrics.jsonl");
    if (!exists(path)) return 0;
    const lines = Deno.readTextFileSync(path).split("\n").filter((l) => l.trim());
    const keep = lines.filter((l) => {
      try {
        return !(JSON.parse(l).step > step);
      } catch {
        return false; // a torn last line from a crash
      }
    });
    writeFileAtomic(path, new TextEncoder().encode(keep.map((l) => l + "\n").join("")));
    return lines.length - keep.length;
  }

  appendMetrics(o: Record<string, unknown>): void {
    Deno.writeTextFileSync(this.file("metrics.jsonl"), JSON.stringify(o) + "\n", { append: true });
  }

  /** Logged lines, for the loss chart of a resumed run. */
  readMetrics(): Record<string, unknown>[] {
    const path = this.file("metrics.jsonl");
    if (!exists(path)) return [];
    return Deno.readTextFileSync(path).split("\n").filter((l) => l.trim()).map((l) =>
      JSON.parse(l)
    );
  }
}

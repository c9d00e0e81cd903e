// Checkpoints are safetensors files written atomically: the bytes go to a temporary file next to
// the target, are fsynced, and only then renamed over it, so a crash at any point leaves either
// the previous checkpoint or the new one, never a torn file.

import {
  decodeSafetensors,
  encodeSafetensors,
  type NamedTensor,
  type Safetensors,
} from "./safetensors.ts";

export interface AtomicWriteOptions {
  /** Writes all of `bytes` to `file`; tests replace it to simulate a crash mid-write. */
  write?: (file: Deno.FsFile, bytes: Uint8Array) => void;
}

function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += file.writeSync(bytes.subarray(done));
}

function parentDir(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

/**
 * Writes `bytes` to `path` atomically (temporary file, fsync, rename). Creates the parent folder.
 * On failure the temporary file is removed and the previous `path`, if any, is untouched.
 */
export function writeFileAtomic(path: string, bytes: Uint8Array, opts: AtomicWriteOptions = {}) {
  const dir = parentDir(path);
  Deno.mkdirSync(dir, { recursive: true });
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const file = Deno.openSync(tmp, { write: true, createNew: true });
  try {
    try {
      (opts.write ?? writeAll)(file, bytes);
      file.syncSync();
    } finally {
      file.close();
    }
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch { /* already gone */ }
    throw e;
  }
  // Make the rename itself durable; not every platform lets a folder be opened, so best effort.
  try {
    const d = Deno.openSync(dir, { read: true });
    try {
      d.syncSync();
    } finally {
      d.close();
    }
  } catch { /* best effort */ }
}

/** Saves tensors and string metadata to `path` as safetensors, atomically. */
export function saveCheckpoint(
  path: string,
  tensors: Record<string, NamedTensor>,
  metadata: Record<string, string> = {},
  opts: AtomicWriteOptions = {},
): void {
  writeFileAtomic(path, encodeSafetensors(tensors, metadata), opts);
}

/** Loads a checkpoint written by saveCheckpoint (or any F32 safetensors file). */
export function loadCheckpoint(path: string): Safetensors {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`flowgpu: checkpoint ${path} not found`);
    throw e;
  }
  return decodeSafetensors(bytes, path);
}

function show(v: unknown): string {
  if (v === undefined) return "(missing)";
  return typeof v === "string" ? v : JSON.stringify(v);
}

/**
 * Throws if any of `keys` differs between the config a checkpoint was saved with and the current
 * one, naming every differing key with both values. Values compare by their text, so a metadata
 * string "128" matches the number 128.
 */
export function checkConfigMatches(
  saved: Record<string, unknown>,
  current: Record<string, unknown>,
  keys: string[],
): void {
  const diffs = keys
    .filter((k) => show(saved[k]) !== show(current[k]))
    .map((k) =>
      `checkpoint was trained with ${k}=${show(saved[k])} but the model has ${k}=${
        show(current[k])
      }`
    );
  if (diffs.length === 1) throw new Error(`flowgpu: ${diffs[0]}`);
  if (diffs.length > 1) {
    throw new Error(`flowgpu: checkpoint does not match the model:\n  ${diffs.join("\n  ")}`);
  }
}

// On-disk caches of generated data sets: a folder of raw files plus manifest.json naming the
// format, every generation parameter, and each file's byte size and SHA-256. Files are written
// atomically and the manifest last, so a crash leaves no manifest that vouches for torn files.
// Loading compares parameters (a difference means "regenerate") and verifies every file (a
// difference there means damage, and is an error naming the file).
import { join } from "node:path";
import { writeFileAtomic } from "../train/checkpoint.ts";

/** Size and checksum of one cached file. */
export interface CachedFile {
  bytes: number;
  sha256: string;
}

/** manifest.json of a cache folder. */
export interface Manifest<P> {
  format: string;
  params: P;
  files: Record<string, CachedFile>;
  /** Anything else the data set records (counts, split, statistics). */
  info: Record<string, unknown>;
}

/** What `readCache` found. */
export type CacheState<P> =
  | { status: "missing" }
  | { status: "stale"; reason: string }
  | { status: "ok"; manifest: Manifest<P>; files: Record<string, Uint8Array> };

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The first parameter whose value differs, as "name: cached A, requested B". */
export function paramDifference(
  cached: Record<string, unknown>,
  wanted: Record<string, unknown>,
): string | undefined {
  const names = new Set([...Object.keys(cached), ...Object.keys(wanted)]);
  for (const k of names) {
    const a = JSON.stringify(cached[k]), b = JSON.stringify(wanted[k]);
    if (a !== b) return `${k}: cached ${a ?? "(none)"}, requested ${b ?? "(none)"}`;
  }
  return undefined;
}

/** Write each file, then the manifest that names their sizes and checksums. */
export async function writeCache<P>(
  dir: string,
  format: string,
  params: P,
  files: Record<string, Uint8Array>,
  info: Record<string, unknown> = {},
): Promise<Manifest<P>> {
  const manifest: Manifest<P> = { format, params, files: {}, info };
  for (const [name, bytes] of Object.entries(files)) {
    writeFileAtomic(join(dir, name), bytes);
    manifest.files[name] = { bytes: bytes.length, sha256: await sha256Hex(bytes) };
  }
  const text = JSON.stringify(manifest, null, 2) + "\n";
  writeFileAtomic(join(dir, "manifest.json"), new TextEncoder().encode(text));
  return manifest;
}

/**
 * Read a cache folder made with `params`: missing (no manifest), stale (another format or other
 * parameters), or ok with every file's bytes. A file that is absent, of the wrong size or whose
 * checksum differs throws `flowgpu: <label> cache <path>: <what>; delete the folder to
 * regenerate`.
 */
export async function readCache<P extends Record<string, unknown>>(
  dir: string,
  label: string,
  format: string,
  params: P,
): Promise<CacheState<P>> {
  const path = join(dir, "manifest.json");
  const fail = (file: string, what: string) =>
    new Error(`flowgpu: ${label} cache ${file}: ${what}; delete the folder to regenerate`);
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { status: "missing" };
    throw e;
  }
  let manifest: Manifest<P>;
  try {
    manifest = JSON.parse(text);
  } catch {
    throw fail(path, "not valid JSON (corrupt?)");
  }
  if (typeof manifest !== "object" || !manifest || typeof manifest.files !== "object") {
    throw fail(path, "not a cache manifest");
  }
  if (manifest.format !== format) {
    return { status: "stale", reason: `format ${manifest.format}, expected ${format}` };
  }
  const diff = paramDifference(manifest.params ?? {}, params);
  if (diff) return { status: "stale", reason: diff };
  const files: Record<string, Uint8Array> = {};
  for (const [name, want] of Object.entries(manifest.files)) {
    const file = join(dir, name);
    let bytes: Uint8Array;
    try {
      const size = Deno.statSync(file).size;
      if (size !== want.bytes) {
        const why = size < want.bytes ? "truncated?" : "corrupt?";
        throw fail(file, `${size} bytes, the manifest says ${want.bytes} (${why})`);
      }
      bytes = Deno.readFileSync(file);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw fail(file, "missing");
      throw e;
    }
    if (await sha256Hex(bytes) !== want.sha256) throw fail(file, "checksum mismatch (corrupt?)");
    files[name] = bytes;
  }
  return { status: "ok", manifest, files };
}

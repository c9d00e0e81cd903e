// WGSL loading and pipeline caching. Every shaders/<file>.wgsl is compiled once with
// shaders/common.wgsl prepended; a pipeline exists once per (file, entry point, override
// constants). `compileAll` validates every file at start-up and throws with the shader file and
// line; pipelines are then built synchronously on first use, and a bad entry point or constant
// surfaces at the next flush through the encoder's error scope, named by the pipeline label.
// Kernel handles (kernel.ts) are declared here and checked against the WGSL text once the
// shaders load, so a TS/WGSL binding mismatch fails at start-up, not at a dispatch.
import { device } from "./device.ts";
import { kernelMismatches, parseWgsl, type SlotDecl, type WgslInfo } from "./kernel_check.ts";

const shaderDir = new URL("../../shaders/", import.meta.url);
const prelude = Deno.readTextFileSync(new URL("common.wgsl", shaderDir));
const preludeLines = prelude.split("\n").length;

const modules = new Map<string, Promise<GPUShaderModule>>();
const pipelines = new Map<string, GPUComputePipeline>();

/** Values for WGSL `override` constants by name; each distinct set compiles its own pipeline. */
export type Constants = Record<string, number>;

function pipelineKey(file: string, entry: string, constants?: Constants): string {
  if (!constants) return `${file}:${entry}`;
  const keys = Object.keys(constants).sort();
  return `${file}:${entry}:${keys.map((k) => `${k}=${constants[k]}`).join(",")}`;
}

/** Compile (once) and validate a shader file; errors name `shaders/<file>:<line>`. */
export function loadModule(file: string): Promise<GPUShaderModule> {
  let m = modules.get(file);
  if (!m) {
    m = compile(file);
    modules.set(file, m);
  }
  return m;
}

/** WGSL given in code rather than in shaders/ (tests); it takes the place of a file `file`. */
export function registerShader(file: string, wgsl: string): void {
  sources.set(file, wgsl);
  parsed.delete(file);
  modules.delete(file);
  checked.delete(file);
}
const sources = new Map<string, string>();

function readShader(file: string): string | undefined {
  try {
    return Deno.readTextFileSync(new URL(file, shaderDir));
  } catch {
    return undefined;
  }
}

function source(file: string): string {
  const s = sources.get(file) ?? readShader(file);
  if (s === undefined) throw new Error(`flowgpu: shader file shaders/${file} not found`);
  return s;
}

async function compile(file: string): Promise<GPUShaderModule> {
  const src = source(file);
  try {
    return await compileWgsl(src, file);
  } catch (e) {
    modules.delete(file);
    throw e;
  }
}

/** Compile WGSL (with the common prelude) and throw its errors as `shaders/<file>:<line>:<col>`. */
export async function compileWgsl(src: string, file: string): Promise<GPUShaderModule> {
  const dev = device();
  dev.pushErrorScope("validation");
  const module = dev.createShaderModule({ code: prelude + "\n" + src, label: file });
  const info = await module.getCompilationInfo();
  const scopeError = await dev.popErrorScope();
  const errors = info.messages.filter((m) => m.type === "error");
  if (errors.length || scopeError) {
    const where = errors.map((m) => {
      const line = m.lineNum - preludeLines;
      const at = line > 0 ? `shaders/${file}:${line}:${m.linePos}` : `shaders/common.wgsl`;
      return `${at}: ${m.message.trim().split("\n")[0]}`;
    });
    throw new Error(
      `flowgpu: WGSL compile error\n${where.join("\n") || scopeError?.message}`,
    );
  }
  return module;
}

export function pipeline(
  file: string,
  entry: string,
  constants?: Constants,
): GPUComputePipeline {
  const key = pipelineKey(file, entry, constants);
  let p = pipelines.get(key);
  if (p) return p;
  const module = checked.get(file) ?? unchecked(file);
  p = device().createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: entry, constants },
    label: key,
  });
  pipelines.set(key, p);
  return p;
}

const checked = new Map<string, GPUShaderModule>();

function unchecked(file: string): GPUShaderModule {
  const module = device().createShaderModule({
    code: prelude + "\n" + source(file),
    label: file,
  });
  checked.set(file, module);
  return module;
}

/** Compile and validate every shader file up front, so a WGSL error is thrown at start-up. */
export async function compileAll(): Promise<void> {
  for (const e of Deno.readDirSync(shaderDir)) {
    if (e.isFile && e.name.endsWith(".wgsl") && e.name !== "common.wgsl") {
      const m = await loadModule(e.name);
      checked.set(e.name, m);
    }
  }
  loaded = true;
  const errors = declared.flatMap((k) => mismatches(k));
  if (errors.length) throw new Error(errors.join("\n"));
}

/** A kernel handle as the checks see it: an entry point and its named bindings. */
export interface KernelDecl {
  file: string;
  entry: string;
  slots: SlotDecl[];
  checked?: boolean;
}

const declared: KernelDecl[] = [];
const parsed = new Map<string, WgslInfo>();
let loaded = false;

/**
 * Register a handle; once shaders have loaded (or for a handle declared after that) it is
 * checked against its WGSL, and a mismatch throws naming the kernel and the binding.
 */
export function declareKernel(k: KernelDecl): void {
  if (loaded) verifyKernel(k);
  declared.push(k);
}

/** Check a handle now (the first dispatch does, for handles whose shaders never loaded). */
export function verifyKernel(k: KernelDecl): void {
  const errors = mismatches(k);
  if (errors.length) throw new Error(errors.join("\n"));
}

function mismatches(k: KernelDecl): string[] {
  if (k.checked) return [];
  let info = parsed.get(k.file);
  if (!info) {
    const src = sources.get(k.file) ?? readShader(k.file);
    if (src === undefined) return [`flowgpu: kernel ${k.file}:${k.entry}: no shaders/${k.file}`];
    info = parseWgsl(prelude + "\n" + src);
    parsed.set(k.file, info);
  }
  const found = kernelMismatches(info, k.entry, k.slots);
  k.checked = found.length === 0;
  return found.map((e) => `flowgpu: kernel ${k.file}:${k.entry}: ${e}`);
}

// Typed kernel handles: one module-level declaration per WGSL entry point names its bindings,
// each written as the WGSL declares it, so the two read side by side:
//
//   const AXPY = kernel("elementwise.wgsl", "axpy", {
//     params: "@0 uniform pf",     // the uniform built from `params`
//     x: "@1 read axpy_x",
//     y: "@2 read_write axpy_y",
//   });
//   AXPY.run({ x, y }, { params: [n, f32(a)], threads: n / 4 });
//
// A misspelled or missing binding is a type error; a name, number or access mode the WGSL does
// not have throws when the shaders load (see declareKernel in kernels.ts).
import { type Bindable, type Dispatch, dispatch, type Param } from "./encoder.ts";
import { declareKernel, type KernelDecl, verifyKernel } from "./kernels.ts";
import type { Access, SlotDecl } from "./kernel_check.ts";

/** `@<binding> <read | read_write | uniform> <WGSL variable>`. */
export type Slot = `@${number} ${Access} ${string}`;

/** Buffers by binding name; `params` is not one (it is built from the launch's params). */
export type Bindings<S> = { readonly [K in Exclude<keyof S, "params">]: Bindable };

/** Everything of a dispatch but the kernel and its buffers; params exactly when declared. */
export type Launch<S> =
  & Omit<Dispatch, "file" | "entry" | "buffers" | "params">
  & ("params" extends keyof S ? { params: Param[] } : { params?: never });

/** A typed handle on one WGSL entry point, made by `kernel()`. */
export interface Kernel<S> {
  /** Shader file under shaders/. */
  readonly file: string;
  /** WGSL entry point. */
  readonly entry: string;
  /** Encode one dispatch with these buffers (by binding name) and launch size/params. */
  run(bindings: Bindings<S>, launch: Launch<S>): void;
}

/**
 * Declare a kernel: `slots` names each binding as the WGSL declares it (`"@1 read x"`); the
 * declaration is checked against the shader when the shaders load, and `run` is typed by it.
 */
export function kernel<const S extends Record<string, Slot>>(
  file: string,
  entry: string,
  slots: S,
): Kernel<S> {
  const where = `flowgpu: kernel ${file}:${entry}`;
  const decls: SlotDecl[] = Object.entries(slots).map(([name, text]) => {
    const m = text.match(/^@(\d+) (read|read_write|uniform) (\w+)$/);
    if (!m) throw new Error(`${where}: binding '${name}' is "${text}", not "@<n> <access> <var>"`);
    return { name, binding: Number(m[1]), access: m[2] as Access, wgsl: m[3] };
  });
  const params = decls.find((d) => d.name === "params");
  if (params && (params.binding !== 0 || params.access !== "uniform")) {
    throw new Error(`${where}: params must be "@0 uniform <var>"`);
  }
  const buffers = decls.filter((d) => d !== params);
  const bad = buffers.find((d) => d.binding === 0);
  if (bad) throw new Error(`${where}: binding '${bad.name}' at @0, which params' uniform takes`);
  const size = Math.max(0, ...buffers.map((d) => d.binding));
  const decl: KernelDecl = { file, entry, slots: decls };
  declareKernel(decl);
  return {
    file,
    entry,
    run(bindings, launch) {
      if (!decl.checked) verifyKernel(decl);
      if (!params !== (launch.params === undefined)) {
        throw new Error(`${where}: ${params ? "needs" : "declares no uniform for"} params`);
      }
      const list: (Bindable | undefined)[] = new Array(size).fill(undefined);
      const named = bindings as Record<string, Bindable | undefined>;
      for (const d of buffers) {
        const b = named[d.name];
        if (!b) throw new Error(`${where}: no buffer for binding '${d.name}'`);
        list[d.binding - 1] = b;
      }
      dispatch({ file, entry, buffers: list, ...launch });
    },
  };
}

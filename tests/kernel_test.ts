// Kernel handles: a handle that disagrees with its WGSL fails when declared (shaders loaded) or
// at initGpu (declared before), naming the kernel and the binding; a correct one runs.
import assert from "node:assert/strict";
import "./setup.ts";
import { f32 } from "../src/gpu/encoder.ts";
import { kernel } from "../src/gpu/kernel.ts";
import { registerShader } from "../src/gpu/kernels.ts";
import { Tensor } from "../src/ops/tensor.ts";

// axpy reaches axpy_x only through a helper; the comment naming t_unused is no use of it.
const SRC = `
struct P { n: u32, a: f32 }
@group(0) @binding(0) var<uniform> pf: P;
@group(0) @binding(1) var<storage, read> axpy_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> axpy_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> t_unused: array<f32>;

fn load_x(i: u32) -> f32 {
  return axpy_x[i];
}

@compute @workgroup_size(WG)
fn axpy(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= pf.n) { return; } // t_unused[i] = 0.0;
  axpy_y[i] += pf.a * load_x(i);
}

@compute @workgroup_size(WG)
fn clear(@builtin(global_invocation_id) gid: vec3u) {
  t_unused[gid.x] = 0.0;
}
`;
const FILE = "test_axpy.wgsl";
registerShader(FILE, SRC);

const where = /^flowgpu: kernel test_axpy\.wgsl:axpy: /;

Deno.test("kernel: a correct handle runs", async () => {
  const AXPY = kernel(FILE, "axpy", {
    params: "@0 uniform pf",
    x: "@1 read axpy_x",
    y: "@2 read_write axpy_y",
  });
  const x = Tensor.from([1, 2, 3, 4, 5], [5]);
  const y = Tensor.from([10, 20, 30, 40, 50], [5]);
  AXPY.run({ x, y }, { params: [5, f32(2)], threads: 5 });
  // @ts-expect-error: a misspelled binding name is a type error
  const _typo = () => AXPY.run({ x, yy: y }, { params: [5, f32(2)], threads: 5 });
  assert.deepEqual([...await y.read()], [12, 24, 36, 48, 60]);
  x.release();
  y.release();
});

Deno.test("kernel: a binding name the WGSL does not declare", () => {
  assert.throws(
    () =>
      kernel(FILE, "axpy", {
        params: "@0 uniform pf",
        x: "@1 read axpy_x",
        y: "@2 read_write axpy_out",
      }),
    (e: Error) => {
      assert.match(e.message, where);
      assert.match(
        e.message,
        /binding 'y' is axpy_out, which the WGSL does not declare; @binding\(2\) of axpy is axpy_y/,
      );
      // axpy_y is then used but named by no binding.
      assert.match(e.message, /axpy uses var<storage, read_write> axpy_y @binding\(2\), which/);
      return true;
    },
  );
});

Deno.test("kernel: a binding number that disagrees", () => {
  assert.throws(
    () =>
      kernel(FILE, "axpy", {
        params: "@0 uniform pf",
        x: "@1 read axpy_x",
        y: "@3 read_write axpy_y",
      }),
    /kernel test_axpy\.wgsl:axpy: binding 'y' is var<storage, read_write> axpy_y @binding\(2\) in WGSL, the handle says @3/,
  );
});

Deno.test("kernel: an access mode that disagrees", () => {
  assert.throws(
    () =>
      kernel(FILE, "axpy", {
        params: "@0 uniform pf",
        x: "@1 read_write axpy_x",
        y: "@2 read_write axpy_y",
      }),
    /kernel test_axpy\.wgsl:axpy: binding 'x' is var<storage, read> axpy_x @binding\(1\) in WGSL, the handle says read_write/,
  );
  assert.throws(
    () =>
      kernel(FILE, "axpy", {
        params: "@0 uniform pf",
        x: "@1 uniform axpy_x",
        y: "@2 read_write axpy_y",
      }),
    /binding 'x' is var<storage, read> axpy_x @binding\(1\) in WGSL, the handle says uniform/,
  );
});

Deno.test("kernel: a binding the entry uses but the handle leaves unnamed", () => {
  assert.throws(
    () => kernel(FILE, "axpy", { params: "@0 uniform pf", y: "@2 read_write axpy_y" }),
    /kernel test_axpy\.wgsl:axpy: axpy uses var<storage, read> axpy_x @binding\(1\), which the handle does not name/,
  );
});

Deno.test("kernel: a binding the entry never uses", () => {
  assert.throws(
    () =>
      kernel(FILE, "axpy", {
        params: "@0 uniform pf",
        x: "@1 read axpy_x",
        y: "@2 read_write axpy_y",
        t: "@3 read_write t_unused",
      }),
    /binding 't': axpy never uses t_unused/,
  );
});

Deno.test("kernel: a missing entry point, and params that are not the @0 uniform", () => {
  assert.throws(
    () => kernel(FILE, "axpyy", { params: "@0 uniform pf" }),
    /kernel test_axpy\.wgsl:axpyy: no @compute entry point axpyy/,
  );
  assert.throws(
    () => kernel(FILE, "clear", { params: "@1 read_write t_unused" }),
    /kernel test_axpy\.wgsl:clear: params must be "@0 uniform <var>"/,
  );
});

Deno.test("kernel: run wants params exactly when the handle declares them", () => {
  const CLEAR = kernel(FILE, "clear", { t: "@3 read_write t_unused" });
  const t = Tensor.from([1], [1]);
  assert.throws(
    // @ts-expect-error: and a type error too
    () => CLEAR.run({ t }, { params: [1], groups: [1] }),
    /kernel test_axpy\.wgsl:clear: declares no uniform for params/,
  );
  t.release();
});

Deno.test("kernel: a handle declared before the shaders load fails at initGpu", async () => {
  const script = `
    import { registerShader } from "./src/gpu/kernels.ts";
    import { kernel } from "./src/gpu/kernel.ts";
    import { initGpu } from "./src/gpu/mod.ts";
    registerShader("late.wgsl", ${JSON.stringify(SRC)});
    kernel("late.wgsl", "axpy", {
      params: "@0 uniform pf", x: "@1 read axpy_x", y: "@2 read axpy_y",
    });
    try { await initGpu(); console.log("no error"); } catch (e) { console.log(String(e)); }
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", script],
    cwd: new URL("..", import.meta.url),
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.match(
    text,
    /kernel late\.wgsl:axpy: binding 'y' is var<storage, read_write> axpy_y @binding\(2\) in WGSL, the handle says read\b/,
  );
});

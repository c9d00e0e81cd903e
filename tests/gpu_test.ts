// The GPU layer's failure modes and its dispatch folding.
import assert from "node:assert/strict";
import "./setup.ts";
import { dispatch, f32, sync } from "../src/gpu/encoder.ts";
import { compileWgsl } from "../src/gpu/kernels.ts";
import { expand } from "../src/ops/reduce.ts";
import { clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";

Deno.test("gpu: a WGSL error is thrown with the shader file and line", async () => {
  const bad = "@compute @workgroup_size(1)\nfn main() {\n  let x: u32 = 1.5;\n}\n";
  await assert.rejects(() => compileWgsl(bad, "bad.wgsl"), /shaders\/bad\.wgsl:3:\d+: .*u32/);
});

Deno.test("gpu: a bad dispatch surfaces at the next sync, naming the kernel", async () => {
  const t = Tensor.persistent([8], "t");
  // fill binds one storage buffer; a second one does not fit its layout.
  dispatch({
    file: "elementwise.wgsl",
    entry: "fill",
    buffers: [t.buffer, t.buffer],
    params: [8, f32(1)],
    threads: 2,
  });
  await assert.rejects(() => sync(), /GPU validation error[\s\S]*elementwise\.wgsl:fill/);
  t.release();
});

Deno.test("gpu: dispatches past 65,535 workgroups are folded into y", async () => {
  const n = 65535 * 64 + 1000; // one more workgroup row than x can hold
  const g = Tensor.from([2.5], [1]);
  const y = await expand(g, 1, 1, n, 1, [n]).read();
  assert.equal(y.length, n);
  assert.equal(y[0], 2.5);
  assert.equal(y[n - 1], 2.5);
  assert.ok(y.every((v) => v === 2.5), "every element written once");
  clearTape();
});

Deno.test("gpu: work after the device is lost fails with the cause", async () => {
  const script = `
    import { device, initGpu } from "./src/gpu/mod.ts";
    import { Tensor } from "./src/ops/tensor.ts";
    await initGpu();
    device().destroy();
    await new Promise((r) => setTimeout(r, 50));
    try { await Tensor.from([1], [1]).read(); console.log("no error"); }
    catch (e) { console.log(String(e)); }
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", script],
    cwd: new URL("..", import.meta.url),
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.match(text, /GPU device was lost \(destroyed/);
});

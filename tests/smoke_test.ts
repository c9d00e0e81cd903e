import assert from "node:assert/strict";
import { initGpu } from "../src/gpu/mod.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { add, exp, mul } from "../src/ops/elementwise.ts";
import { sum } from "../src/ops/reduce.ts";
import { backward, clearTape } from "../src/ops/tape.ts";

await initGpu({ verbose: true });

Deno.test("smoke", async () => {
  const x = Tensor.param([1, 2, 3, 4, 5], [5]);
  const c = Tensor.from([2], [1]);
  const y = sum(mul(exp(x), c));
  const t = add(y, c);
  backward(t);
  const v = await t.item();
  const g = await x.grad!.read();
  console.log(v, g);
  assert.ok(Math.abs(v - (2 * [1, 2, 3, 4, 5].reduce((a, b) => a + Math.exp(b), 0) + 2)) < 1e-3);
  clearTape();
});

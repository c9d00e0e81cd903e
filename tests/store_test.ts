// The parameter store: scoped names, groups by first name component, flat buffers with aligned
// views, fixed tensors and flags, refusal of late or duplicate declarations.
import assert from "node:assert/strict";
import "./setup.ts";
import { Linear } from "../src/nn/layers.ts";
import { constant, ParamStore } from "../src/nn/store.ts";
import { linear } from "../src/ops/matmul.ts";
import { sum } from "../src/ops/reduce.ts";
import { backward } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";

Deno.test("store: scoped names, groups by first component, views into flat aligned buffers", async () => {
  const store = new ParamStore(3);
  const enc = store.scope("encoder");
  const l1 = new Linear(enc.child("block1").child("fc"), 3, 5);
  const l2 = new Linear(store.scope("decoder").child("fc"), 5, 3, { bias: false });
  const mask = enc.fixed("mask", [4], [1, 0, 1, 0]);
  const flag = enc.child("an").flag("initialized");
  assert.deepEqual([...store.tensors.keys()], [
    "encoder.block1.fc.weight",
    "encoder.block1.fc.bias",
    "decoder.fc.weight",
    "encoder.mask",
  ]);
  assert.deepEqual(store.groups().map((g) => g.name), ["encoder", "decoder"]);
  const g = store.group("encoder");
  assert.deepEqual(g.params, [l1.w, l1.b]);
  assert.deepEqual(g.slots.map((s) => s.offset), [0, 64], "each view starts at 64 elements");
  assert.equal(g.size, 128);
  assert.equal(l1.w.base, g.values);
  assert.equal(store.count(), 15 + 5 + 15);
  assert.equal(store.count(["decoder"]), 15);
  assert.ok(!store.params().includes(mask) && !mask.requiresGrad, "fixed: not trainable");
  // Values land in their slots of the flat buffer; padding stays zero.
  const flatVals = await g.values.read();
  assertSlot(flatVals, await l1.w.read(), 0);
  assert.ok(flatVals.subarray(15, 64).every((v) => v === 0), "padding is zero");
  // Gradients go to the group's flat gradient buffer.
  backward(sum(linear(Tensor.from([1, 2, 3], [1, 3]), l1.w, l1.b)));
  assert.equal(l1.w.grad, l1.w.gradSlot);
  const grads = await g.grads.read();
  assert.deepEqual(Array.from(grads.subarray(64, 69)), [1, 1, 1, 1, 1], "bias gradient slot");
  assert.ok(grads.subarray(69, 128).every((v) => v === 0), "gradient padding is zero");
  assert.deepEqual(store.flagState(), { "encoder.an.initialized": false });
  flag.value = true;
  store.loadFlags({ "encoder.an.initialized": false });
  assert.equal(flag.value, false);
  assert.throws(
    () => store.group("disc"),
    /no parameter group 'disc' \(groups: encoder, decoder\)/,
  );
  assert.throws(() => enc.param("late", [2], constant(1)), /declared after the store was laid out/);
  assert.throws(() => enc.fixed("mask", [1], [0]), /parameter encoder.mask defined twice/);
  assert.throws(() => store.scope("a b").param("w", [1], [0]), /must be dot-separated/);
  assert.throws(
    () => new ParamStore().scope("x").param("w", [2], [1]),
    /init gave 1 values for \[2\]/,
  );
  assert.equal(l2.b, undefined);
  store.release();
});

function assertSlot(flat: Float32Array, v: Float32Array, offset: number) {
  assert.deepEqual(Array.from(flat.subarray(offset, offset + v.length)), Array.from(v));
}

// The tape with several losses: gradients only into the named parameters, a retained graph for a
// second backward, detach, frozen groups, and alternating updates of two optimizers that never
// leak into each other.
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, randn } from "./gradcheck.ts";
import { ParamStore } from "../src/nn/store.ts";
import { Adam } from "../src/ops/adam.ts";
import { add, mul, square, sub, tanh } from "../src/ops/elementwise.ts";
import { linear } from "../src/ops/matmul.ts";
import { mean, sum } from "../src/ops/reduce.ts";
import { backward, clearTape, detach, tapeLength } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";

/** A two-group model: g (generator) maps x to y, d (discriminator) scores y. */
function twoGroups(seed = 1) {
  const store = new ParamStore(seed);
  const s = store.scope();
  const gw = s.param("gen.w", [5, 4], randn(20, seed + 1, 0.5));
  const dw = s.param("disc.w", [1, 5], randn(5, seed + 2, 0.5));
  const x = Tensor.constant(randn(3 * 4, seed + 3), [3, 4], "x");
  return { store, gw, dw, x };
}

const read = (t?: Tensor) => t ? t.read() : Promise.resolve(undefined);

Deno.test("tape: backward({ params }) fills only those gradients, and matches a full backward", async () => {
  const { store, gw, dw, x } = twoGroups();
  const loss = () => sum(square(linear(tanh(linear(x, gw)), dw)));
  backward(loss());
  const fullG = await gw.grad!.read(), fullD = await dw.grad!.read();
  for (const g of store.groups()) g.zeroGrad();

  backward(loss(), { params: [dw] });
  assert.equal(gw.grad, undefined, "gen got no gradient");
  assertClose(await dw.grad!.read(), fullD, { label: "disc gradient" });
  for (const g of store.groups()) g.zeroGrad();

  backward(loss(), { params: store.group("gen").params });
  assert.equal(dw.grad, undefined, "disc got no gradient");
  assertClose(await gw.grad!.read(), fullG, { label: "gen gradient" });
  // requiresGrad is restored after a restricted walk.
  assert.ok(dw.requiresGrad && gw.requiresGrad);
  store.release();
  x.release();
});

Deno.test("tape: two losses sharing a subgraph, the first backward retaining it", async () => {
  const { store, gw, dw, x } = twoGroups(5);
  // Reference: each loss alone.
  const h = () => tanh(linear(x, gw));
  backward(sum(square(linear(h(), dw))));
  const g1 = await gw.grad!.read();
  store.group("gen").zeroGrad();
  store.group("disc").zeroGrad();
  backward(mean(h()));
  const g2 = await gw.grad!.read();
  store.group("gen").zeroGrad();

  const shared = h();
  const l1 = sum(square(linear(shared, dw)));
  const l2 = mean(shared);
  backward(l1, { params: [gw], retain: true });
  assert.ok(tapeLength() > 0, "graph kept");
  backward(l2, { params: [gw] });
  assert.equal(tapeLength(), 0, "graph released by the second backward");
  assertClose(await gw.grad!.read(), g1.map((v, i) => v + g2[i]), {
    rtol: 1e-5,
    atol: 1e-6,
    label: "sum of both losses' gradients",
  });
  assert.equal(dw.grad, undefined);
  store.release();
  x.release();
});

Deno.test("tape: a detached branch passes values but no gradient", async () => {
  const { store, gw, x } = twoGroups(9);
  const y = linear(x, gw);
  // loss = sum(y * detach(y)): d/dgw sees only the first factor, i.e. half of d sum(y^2).
  backward(sum(mul(y, detach(y))));
  const half = await gw.grad!.read();
  store.group("gen").zeroGrad();
  backward(sum(square(linear(x, gw))));
  const full = await gw.grad!.read();
  assertClose(half, full.map((v) => v / 2), { rtol: 1e-5, atol: 1e-6, label: "detached" });
  // A loss built only from detached values depends on no parameter.
  const d = detach(linear(x, gw));
  assert.throws(() => backward(sum(d)), /does not depend on any parameter/);
  clearTape();
  store.release();
  x.release();
});

Deno.test("tape: a frozen group is bit-identical after a step and still passes gradients", async () => {
  const { store, gw, dw, x } = twoGroups(13);
  const opt = new Adam(store.groups(), { lr: 0.1 });
  store.group("disc").frozen = true;
  const before = await dw.read();
  const gBefore = await gw.read();
  backward(sum(square(linear(tanh(linear(x, gw)), dw))));
  assert.equal(dw.grad, undefined, "frozen parameter got no gradient");
  assert.ok(gw.grad, "gradient flowed through the frozen layer to gen");
  opt.step();
  assert.deepEqual(await dw.read(), before, "frozen group unchanged");
  assert.notDeepEqual(await gw.read(), gBefore, "gen moved");
  store.group("disc").frozen = false;
  assert.ok(dw.requiresGrad);
  opt.release();
  store.release();
  x.release();
});

Deno.test("tape: alternating adversarial updates leave the other group's parameters unchanged", async () => {
  const { store, gw, dw, x } = twoGroups(17);
  const optG = new Adam([store.group("gen")], { lr: 0.05 });
  const optD = new Adam([store.group("disc")], { lr: 0.05 });
  const score = () => linear(tanh(linear(x, gw)), dw);
  for (let step = 0; step < 3; step++) {
    // Discriminator step: maximise the score (minimise its negative); gen must not move.
    const g0 = await gw.read();
    backward(sub(Tensor.from([0], [1]), sum(score())), { params: optD.params });
    assert.equal(gw.grad, undefined, "no generator gradient from the discriminator's loss");
    optD.step();
    assert.deepEqual(await gw.read(), g0, `step ${step}: gen unchanged by the D update`);
    // Generator step: the opposite; disc must not move.
    const d0 = await dw.read();
    backward(add(sum(score()), Tensor.from([0], [1])), { params: optG.params });
    assert.equal(dw.grad, undefined, "no discriminator gradient from the generator's loss");
    optG.step();
    assert.deepEqual(await dw.read(), d0, `step ${step}: disc unchanged by the G update`);
    assert.notDeepEqual(await gw.read(), g0, "gen moved on its own step");
  }
  assert.ok(!(await read(gw.grad)), "gradients consumed");
  for (const o of [optG, optD]) o.release();
  store.release();
  x.release();
});

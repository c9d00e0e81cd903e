// 200 forward/backward/Adam steps of a small conv net on a parameter store: after the first
// steps the pool's live bytes, its total allocation and the bind-group cache stay flat
// (intermediates return to the pool at each step, and come back as the same buffers).
import assert from "node:assert/strict";
import "./setup.ts";
import { randn } from "./gradcheck.ts";
import { encoderStats } from "../src/gpu/encoder.ts";
import { poolStats } from "../src/gpu/pool.ts";
import { Conv2d } from "../src/nn/layers.ts";
import { normal, ParamStore } from "../src/nn/store.ts";
import { Adam } from "../src/ops/adam.ts";
import { relu, square } from "../src/ops/elementwise.ts";
import { mean } from "../src/ops/reduce.ts";
import { backward } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";

Deno.test("memory: 200 training steps of a conv net do not grow the buffer pool", async () => {
  const store = new ParamStore(1);
  const c1 = new Conv2d(store.scope("net.c1"), 3, 8, 3, { stride: 2, init: normal(0.2) });
  const c2 = new Conv2d(store.scope("net.c2"), 8, 4, 3, { bias: false, init: normal(0.2) });
  const opt = new Adam(store.groups(), { lr: 1e-2, clipNorm: 10 });
  const x = Tensor.constant(randn(4 * 3 * 10 * 10, 3), [4, 3, 10, 10], "x");
  const live: number[] = [], total: number[] = [], groups: number[] = [], losses: number[] = [];
  for (let step = 0; step < 200; step++) {
    const loss = mean(square(c2.apply(relu(c1.apply(x)))));
    backward(loss);
    opt.step();
    if (step % 20 === 0 || step === 199) losses.push(await loss.item());
    loss.release();
    live.push(poolStats.liveBytes);
    total.push(poolStats.totalBytes);
    groups.push(encoderStats().bindGroups);
  }
  assert.ok(losses[losses.length - 1] < losses[0] / 2, `loss fell: ${losses.join(", ")}`);
  for (let s = 5; s < 200; s++) {
    assert.equal(live[s], live[4], `live bytes at step ${s}: ${live[s]} vs ${live[4]}`);
    assert.equal(total[s], total[4], `pool size at step ${s}: ${total[s]} vs ${total[4]}`);
    // Same buffers every step, so every bind group comes from the cache.
    assert.equal(groups[s], groups[4], `bind groups at step ${s}: ${groups[s]} vs ${groups[4]}`);
  }
  opt.release();
  store.release();
  x.release();
});

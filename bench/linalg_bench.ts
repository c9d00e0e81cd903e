// inverseLogdet (W^-1 and log|det W| of the 1x1 convolutions' weights) at the largest channel
// count the presets use, C = 96, one matrix and a batch of 4, forward alone and forward + backward
// through both outputs; the elimination's dispatch count is printed beside each size.
// `deno bench -A --no-check bench/linalg_bench.ts`
import { mul } from "../src/ops/elementwise.ts";
import { eliminationPlan, inverseLogdet } from "../src/ops/linalg.ts";
import { sum } from "../src/ops/reduce.ts";
import { backward, clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";
import { adapterLine, initBench, measure, rateLine } from "./util.ts";

await initBench(["elementwise.wgsl", "linalg.wgsl", "reduce.wgsl"]);

const rng = new Rng(1);
const REPS = 10;

console.log(adapterLine());
for (const [b, c] of [[1, 12], [1, 48], [1, 96], [4, 96]]) {
  // Well conditioned: standard normal plus 3 on the diagonal.
  const w = Tensor.param(
    rng.normalArray(b * c * c, 1).map((v, i) => v + ((i % (c * c)) % (c + 1) === 0 ? 3 : 0)),
    b === 1 ? [c, c] : [b, c, c],
    `w${c}`,
  );
  const once = (grad: boolean) => () => {
    const { inv, logabsdet } = inverseLogdet(w);
    // Both outputs feed the loss, so both backward closures run.
    if (grad) backward(sum(mul(inv, sum(logabsdet))));
    else clearTape();
    w.zeroGrad();
  };
  // In-place Gauss-Jordan: C pivot steps, each a multiply-add on every element of a C x C matrix.
  const flop = b * 2 * c ** 3;
  const shape = `[${w.shape}]`;
  const d = eliminationPlan(c).dispatches;
  const plan = `${d} dispatch${d === 1 ? "" : "es"}`;
  const t = await measure(once(false), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(`inverseLogdet ${shape} fwd (${plan})`, t, { flop }));
  const tb = await measure(once(true), { reps: REPS, trials: 3, warmup: 2 });
  console.log(rateLine(`inverseLogdet ${shape} fwd+bwd`, tb, {}));
  w.release();
}

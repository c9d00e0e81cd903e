import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randn } from "./gradcheck.ts";
import { logAbsDet } from "./flowcheck.ts";
import { inverseLogdet } from "../src/ops/linalg.ts";
import { clearTape } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";

Deno.test("inverseLogdet: W W^-1 = I and log|det| vs f64 LU, batched, odd size", async () => {
  const b = 3, c = 7;
  const w = randn(b * c * c, 21);
  const { inv, logabsdet } = inverseLogdet(Tensor.from(w, [b, c, c]));
  const wi = await inv.read(), ld = await logabsdet.read();
  for (let m = 0; m < b; m++) {
    const prod: number[] = [], eye: number[] = [];
    for (let i = 0; i < c; i++) {
      for (let j = 0; j < c; j++) {
        let s = 0;
        for (let k = 0; k < c; k++) s += w[m * c * c + i * c + k] * wi[m * c * c + k * c + j];
        prod.push(s);
        eye.push(i === j ? 1 : 0);
      }
    }
    assertClose(prod, eye, { atol: 1e-4, rtol: 0, label: `W W^-1 (matrix ${m})` });
    const ref = logAbsDet(Float64Array.from(w.subarray(m * c * c, (m + 1) * c * c)), c);
    assert.ok(Math.abs(ld[m] - ref) < 1e-4, `log|det| ${ld[m]} vs ${ref}`);
  }
  clearTape();
});

Deno.test("inverseLogdet: gradcheck of log|det W| (= W^-T)", async () => {
  const c = 5;
  const w = randn(c * c, 22).map((v, i) => v + (i % (c + 1) === 0 ? 3 : 0)); // well conditioned
  await gradcheck((x) => inverseLogdet(x).logabsdet, [{ data: w, shape: [c, c] }]);
});

Deno.test("inverseLogdet: non-square input is refused", () => {
  assert.throws(() => inverseLogdet(Tensor.from(new Float32Array(6), [2, 3])), /square/);
  clearTape();
});

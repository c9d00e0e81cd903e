import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randu } from "./gradcheck.ts";
import { encoderStats } from "../src/gpu/encoder.ts";
import { add, mul } from "../src/ops/elementwise.ts";
import {
  concatChannels,
  evenOddChannels,
  reshape,
  sliceChannels,
  splitChannels,
} from "../src/ops/shape.ts";
import { clearTape } from "../src/ops/tape.ts";
import { numel, Tensor } from "../src/ops/tensor.ts";

// f64 reference: channels `pick` of x [n, c, inner] (any order, repeats allowed).
function pickChannels(x: ArrayLike<number>, shape: number[], pick: number[]): number[] {
  const [n, c] = shape;
  const inner = numel(shape.slice(2));
  const out: number[] = [];
  for (let s = 0; s < n; s++) {
    for (const k of pick) {
      for (let j = 0; j < inner; j++) out.push(x[(s * c + k) * inner + j]);
    }
  }
  return out;
}

const range = (a: number, b: number, step = 1) =>
  Array.from({ length: Math.ceil((b - a) / step) }, (_, i) => a + i * step);

// [2, 5, 3, 3]: inner 9 (scalar kernel); [3, 6, 2, 2]: inner 4 (vec4 kernel); [1, 7, 5]: N = 1.
const SHAPES = [[2, 5, 3, 3], [3, 6, 2, 2], [1, 7, 5]];

Deno.test("reshape: a view with the same values; -1 resolved", async () => {
  const data = randu(30, 1);
  const x = Tensor.from(data, [2, 3, 5]);
  const y = reshape(x, [-1, 5]);
  assert.deepEqual(y.shape, [6, 5]);
  assert.equal(y.buffer, x.buffer);
  assertClose(await y.read(), data, { rtol: 0, atol: 0 });
  assert.deepEqual(reshape(reshape(y, [30]), [5, -1, 3]).shape, [5, 2, 3]);
  clearTape();
});

Deno.test("reshape: errors name both shapes", () => {
  const x = Tensor.from(new Float32Array(6), [2, 3]);
  assert.throws(() => reshape(x, [4, -1]), /reshape: cannot reshape \[2, 3\] to \[4, -1\]/);
  assert.throws(() => reshape(x, [7]), /\[2, 3\] to \[7\]/);
  assert.throws(() => reshape(x, [-1, -1]), /\[2, 3\] to \[-1, -1\].*once/);
  assert.throws(() => reshape(x, [2.5, 2]), /\[2, 3\] to \[2.5, 2\]/);
  clearTape();
});

Deno.test("reshape: gradcheck, alone and with x used twice (view + accumulate)", async () => {
  const data = randu(30, 2);
  await gradcheck((x) => reshape(x, [5, -1]), [{ data, shape: [2, 3, 5] }], { label: "reshape" });
  await gradcheck(
    (x) => add(reshape(reshape(x, [6, 5]), [2, 3, 5]), mul(x, x)),
    [{ data, shape: [2, 3, 5] }],
    { label: "reshape twice + x*x" },
  );
});

for (const shape of SHAPES) {
  const c = shape[1];
  const data = randu(numel(shape), 3);
  const s = `[${shape.join(", ")}]`;

  Deno.test(`sliceChannels ${s}: forward and gradcheck`, async () => {
    const y = sliceChannels(Tensor.from(data, shape), 1, c - 2);
    assert.deepEqual(y.shape, [shape[0], c - 3, ...shape.slice(2)]);
    assertClose(await y.read(), pickChannels(data, shape, range(1, c - 2)), { rtol: 0, atol: 0 });
    clearTape();
    await gradcheck((x) => sliceChannels(x, 1, c - 2), [{ data, shape }], { label: "slice" });
    await gradcheck((x) => sliceChannels(x, 0, c), [{ data, shape }], { label: "slice all" });
  });

  Deno.test(`splitChannels ${s}: forward and gradcheck (all parts, some parts)`, async () => {
    const sizes = [2, 1, c - 3];
    const parts = splitChannels(Tensor.from(data, shape), sizes);
    let start = 0;
    for (const [i, p] of parts.entries()) {
      assert.deepEqual(p.shape, [shape[0], sizes[i], ...shape.slice(2)]);
      const want = pickChannels(data, shape, range(start, start + sizes[i]));
      assertClose(await p.read(), want, { rtol: 0, atol: 0, label: `part ${i}` });
      start += sizes[i];
    }
    clearTape();
    const inp = [{ data, shape }];
    await gradcheck(
      (x) => {
        const [a, b, d] = splitChannels(x, sizes);
        return concatChannels([d, mul(a, a), b]);
      },
      inp,
      { label: "split, every part used" },
    );
    await gradcheck((x) => splitChannels(x, sizes)[1], inp, { label: "split, middle part" });
    await gradcheck(
      (x) => {
        const [a, , d] = splitChannels(x, sizes);
        return concatChannels([d, a]);
      },
      inp,
      { label: "split, outer parts" },
    );
    // x also used directly: its gradient accumulates from two paths.
    await gradcheck((x) => add(concatChannels(splitChannels(x, sizes)), x), inp, {
      label: "split + x",
    });
  });

  Deno.test(`concatChannels ${s}: three inputs, forward and gradcheck`, async () => {
    const cs = [2, 1, c];
    const shapes = cs.map((k) => [shape[0], k, ...shape.slice(2)]);
    const datas = shapes.map((sh, i) => randu(numel(sh), 10 + i));
    const y = concatChannels(datas.map((d, i) => Tensor.from(d, shapes[i])));
    assert.deepEqual(y.shape, [shape[0], 3 + c, ...shape.slice(2)]);
    // Reference: for each sample, the inputs' sample blocks one after another.
    const want: number[] = [];
    for (let n = 0; n < shape[0]; n++) {
      datas.forEach((d, i) =>
        want.push(
          ...pickChannels(d, shapes[i], range(0, cs[i])).slice(
            n * cs[i] * numel(shape.slice(2)),
            (n + 1) * cs[i] * numel(shape.slice(2)),
          ),
        )
      );
    }
    assertClose(await y.read(), want, { rtol: 0, atol: 0 });
    clearTape();
    const inputs = datas.map((d, i) => ({ data: d, shape: shapes[i] }));
    await gradcheck((a, b, d) => concatChannels([a, b, d]), inputs, { label: "concat" });
    // An input without a gradient, and one input used twice.
    await gradcheck((a, b) => concatChannels([a, b, a]), [
      inputs[0],
      { ...inputs[1], grad: false },
    ], { label: "concat a, b, a" });
  });

  if (c % 2 === 0) {
    Deno.test(`evenOddChannels ${s}: forward and gradcheck`, async () => {
      const [even, odd] = evenOddChannels(Tensor.from(data, shape));
      assertClose(await even.read(), pickChannels(data, shape, range(0, c, 2)), {
        rtol: 0,
        atol: 0,
      });
      assertClose(await odd.read(), pickChannels(data, shape, range(1, c, 2)), {
        rtol: 0,
        atol: 0,
      });
      clearTape();
      const inp = [{ data, shape }];
      await gradcheck(
        (x) => {
          const [e, o] = evenOddChannels(x);
          return add(mul(e, o), o);
        },
        inp,
        { label: "evenOdd, both" },
      );
      await gradcheck((x) => evenOddChannels(x)[0], inp, { label: "evenOdd, even only" });
      await gradcheck((x) => evenOddChannels(x)[1], inp, { label: "evenOdd, odd only" });
    });
  }
}

Deno.test("evenOddChannels: C = 2 (one channel each) and an odd C is an error", async () => {
  const data = randu(2 * 2 * 3, 4);
  const [e, o] = evenOddChannels(Tensor.from(data, [2, 2, 3]));
  assertClose(await e.read(), pickChannels(data, [2, 2, 3], [0]), { rtol: 0, atol: 0 });
  assertClose(await o.read(), pickChannels(data, [2, 2, 3], [1]), { rtol: 0, atol: 0 });
  await gradcheck((x) => evenOddChannels(x)[1], [{ data, shape: [2, 2, 3] }]);
  const x = Tensor.from(new Float32Array(2 * 5 * 3), [2, 5, 3]);
  assert.throws(() => evenOddChannels(x), /evenOddChannels: .*even.*\[2, 5, 3\]/);
  clearTape();
});

Deno.test("concatChannels: ten inputs, one dispatch each; forward and gradcheck", async () => {
  const cs = [1, 2, 3, 1, 2, 3, 1, 2, 3, 1];
  const shapes = cs.map((k) => [2, k, 3]);
  const datas = shapes.map((sh, i) => randu(numel(sh), 20 + i));
  const xs = datas.map((d, i) => Tensor.from(d, shapes[i]));
  const before = encoderStats().dispatches;
  const y = concatChannels(xs);
  assert.equal(encoderStats().dispatches - before, 10);
  const want: number[] = [];
  for (let n = 0; n < 2; n++) {
    for (const [i, d] of datas.entries()) want.push(...d.slice(n * cs[i] * 3, (n + 1) * cs[i] * 3));
  }
  assertClose(await y.read(), want, { rtol: 0, atol: 0 });
  clearTape();
  await gradcheck(
    (...ts) => concatChannels(ts),
    datas.map((d, i) => ({ data: d, shape: shapes[i] })),
    { label: "concat x10", maxElements: 4 },
  );
});

Deno.test("split then concat round-trips exactly; many parts gradcheck", async () => {
  const shape = [2, 11, 3];
  const data = randu(numel(shape), 5);
  const sizes = [1, 2, 0, 3, 1, 4];
  const y = concatChannels(splitChannels(Tensor.from(data, shape), sizes));
  assertClose(await y.read(), data, { rtol: 0, atol: 0 });
  clearTape();
  await gradcheck(
    (x) => {
      const p = splitChannels(x, sizes);
      return concatChannels([p[5], p[3], p[1], p[0]]);
    },
    [{ data, shape }],
    { label: "split into 6, 4 used" },
  );
});

Deno.test("channel ops: errors name the shapes", () => {
  const x = Tensor.from(new Float32Array(2 * 5 * 3), [2, 5, 3]);
  assert.throws(() => sliceChannels(x, 3, 6), /sliceChannels: \[3, 6\) .*\[2, 5, 3\]/);
  assert.throws(() => sliceChannels(x, 3, 2), /sliceChannels: .*\[2, 5, 3\]/);
  assert.throws(() => splitChannels(x, [2, 2]), /splitChannels: sizes \[2, 2\] .*\[2, 5, 3\]/);
  assert.throws(() => splitChannels(x, [6, -1]), /splitChannels: sizes \[6, -1\]/);
  const y = Tensor.from(new Float32Array(2 * 2 * 4), [2, 2, 4]);
  assert.throws(() => concatChannels([x, y]), /concatChannels: shapes \[2, 5, 3\] and \[2, 2, 4\]/);
  const z = Tensor.from(new Float32Array(3 * 5 * 3), [3, 5, 3]);
  assert.throws(() => concatChannels([x, z]), /\[2, 5, 3\] and \[3, 5, 3\]/);
  assert.throws(() => concatChannels([]), /concatChannels: no inputs/);
  const v = Tensor.from(new Float32Array(5), [5]);
  assert.throws(() => sliceChannels(v, 0, 1), /needs a tensor \[N, C, \.\.\.\], got \[5\]/);
  clearTape();
});

// Differentiable inverses (the MI flow's L_i puts a loss on x̂ = f⁻¹(z)): the ops' inverse
// backwards (W⁻¹, the affine coupling's inverse) against f64 references and finite differences;
// each flow layer's `inverse(y, { grad: true })` against the untracked inverse, forward(it) back
// to y, and gradchecks w.r.t. y and every parameter; the same for a tiny Glow's decode.
import assert from "node:assert/strict";
import "./setup.ts";
import { assertClose, gradcheck, randn } from "./gradcheck.ts";
import { Rng } from "../src/util/rng.ts";
import { ActNorm, Coupling, type FlowLayer, FlowStep, InvConv1x1 } from "../src/models/flow.ts";
import { Glow, type GlowConfig } from "../src/models/glow.ts";
import { ParamStore } from "../src/nn/store.ts";
import { affineCouplingInverse } from "../src/ops/coupling.ts";
import { inverseLogdet } from "../src/ops/linalg.ts";
import { sum } from "../src/ops/reduce.ts";
import { add, mul } from "../src/ops/elementwise.ts";
import { backward, clearTape, noGrad, tapeLength } from "../src/ops/tape.ts";
import { type Shape, Tensor } from "../src/ops/tensor.ts";

/** Move every trainable parameter off its (often zero) initialisation; mark actnorms set. */
async function perturb(store: ParamStore, seed: number, std = 0.2) {
  const rng = new Rng(seed);
  for (const t of store.params()) {
    const v = await t.read();
    t.write(v.map((x) => x + std * rng.normal()));
  }
  for (const f of store.flags.values()) f.value = true;
}

const maxAbs = (v: ArrayLike<number>) =>
  Array.from(v).reduce((m, x) => Math.max(m, Math.abs(x)), 0);
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

// ---- W^-1 ----------------------------------------------------------------------------------

/** Inverse of a dense c x c matrix in f64 (Gauss-Jordan, partial pivoting). */
function inverse64(a: ArrayLike<number>, c: number): Float64Array {
  const m = Float64Array.from(a);
  const inv = new Float64Array(c * c);
  for (let i = 0; i < c; i++) inv[i * c + i] = 1;
  for (let k = 0; k < c; k++) {
    let p = k;
    for (let i = k + 1; i < c; i++) if (Math.abs(m[i * c + k]) > Math.abs(m[p * c + k])) p = i;
    for (let j = 0; j < c; j++) {
      [m[k * c + j], m[p * c + j]] = [m[p * c + j], m[k * c + j]];
      [inv[k * c + j], inv[p * c + j]] = [inv[p * c + j], inv[k * c + j]];
    }
    const d = m[k * c + k];
    for (let j = 0; j < c; j++) {
      m[k * c + j] /= d;
      inv[k * c + j] /= d;
    }
    for (let i = 0; i < c; i++) {
      if (i === k) continue;
      const f = m[i * c + k];
      for (let j = 0; j < c; j++) {
        m[i * c + j] -= f * m[k * c + j];
        inv[i * c + j] -= f * inv[k * c + j];
      }
    }
  }
  return inv;
}

/** A batch of well-conditioned matrices: standard normal plus 3 on the diagonal. */
const wellConditioned = (b: number, c: number, seed: number) =>
  randn(b * c * c, seed).map((v, i) => v + ((i % (c * c)) % (c + 1) === 0 ? 3 : 0));

Deno.test("inverseLogdet: W^-1 and its backward -W^-T G W^-T vs f64, batched, odd size", async () => {
  const b = 2, c = 5;
  const w = wellConditioned(b, c, 31);
  const g = randn(b * c * c, 32);
  const W = Tensor.param(w, [b, c, c], "w");
  const G = Tensor.constant(g, [b, c, c], "g");
  const { inv } = inverseLogdet(W);
  const got = await inv.read();
  backward(sum(mul(inv, G)), { keep: [W] });
  const dw = await W.grad!.read();
  for (let m = 0; m < b; m++) {
    const o = m * c * c;
    const a = inverse64(w.subarray(o, o + c * c), c);
    assertClose(got.subarray(o, o + c * c), a, { rtol: 1e-4, atol: 1e-6, label: `W^-1 [${m}]` });
    // dW[i, j] = -sum_{k, l} A[k, i] G[k, l] A[j, l]
    const want = new Float64Array(c * c);
    for (let i = 0; i < c; i++) {
      for (let j = 0; j < c; j++) {
        let s = 0;
        for (let k = 0; k < c; k++) {
          for (let l = 0; l < c; l++) s += a[k * c + i] * g[o + k * c + l] * a[j * c + l];
        }
        want[i * c + j] = -s;
      }
    }
    assertClose(dw.subarray(o, o + c * c), want, { rtol: 1e-4, atol: 1e-6, label: `dW [${m}]` });
  }
  clearTape();
  W.release();
});

Deno.test("inverseLogdet: gradcheck of W^-1, [7, 7] and [3, 3, 3]", async () => {
  await gradcheck(
    (x) => inverseLogdet(x).inv,
    [{ data: wellConditioned(1, 7, 33), shape: [7, 7] }],
    {
      label: "W^-1 [7, 7]",
    },
  );
  await gradcheck((x) => inverseLogdet(x).inv, [{
    data: wellConditioned(3, 3, 34),
    shape: [3, 3, 3],
  }], { label: "W^-1 [3, 3, 3]" });
});

Deno.test("inverseLogdet: W^-1 and log|det W| together in one loss", async () => {
  const c = 5;
  await gradcheck(
    (x) => {
      const { inv, logabsdet } = inverseLogdet(x);
      return mul(inv, logabsdet);
    },
    [{ data: wellConditioned(1, c, 35), shape: [c, c] }],
    { label: "W^-1 log|det W|" },
  );
});

// ---- the affine coupling's inverse ---------------------------------------------------------

const CB = [2, 3, 5, 3]; // y_b; h has 6 channels
const cbSize = 2 * 3 * 5 * 3;
const H = [2, 6, 5, 3];
const sig = (v: number) => 1 / (1 + Math.exp(-v));
/** (t, r) of element i of y_b [2, 3, 5, 3] in h [2, 6, 5, 3]: its even and odd channels. */
const tr = (h: ArrayLike<number>, i: number) => {
  const s = i % 15, nc = Math.floor(i / 15), n = Math.floor(nc / 3), c = nc % 3;
  return [h[(n * 6 + 2 * c) * 15 + s], h[(n * 6 + 2 * c + 1) * 15 + s]];
};

Deno.test("affineCouplingInverse: x_b and -log s vs f64 reference", async () => {
  const yb = randn(cbSize, 41), h = randn(2 * cbSize, 42, 2);
  const { xb, neglogs } = affineCouplingInverse(Tensor.from(yb, CB), Tensor.from(h, H));
  const [x, nl] = await Tensor.readAll([xb, neglogs]);
  const wantX: number[] = [], wantL: number[] = [];
  for (let i = 0; i < cbSize; i++) {
    const [t, r] = tr(h, i);
    wantX.push(yb[i] / sig(r + 2) - t);
    wantL.push(Math.log1p(Math.exp(-(r + 2))));
  }
  assertClose(x, wantX, { rtol: 1e-5, atol: 1e-6, label: "x_b" });
  assertClose(nl, wantL, { rtol: 1e-5, atol: 1e-7, label: "-log s" });
  clearTape();
});

Deno.test("affineCouplingInverse: gradcheck x_b and -log s w.r.t. y_b and h", async () => {
  const inputs = [{ data: randn(cbSize, 43), shape: CB }, {
    data: randn(2 * cbSize, 44),
    shape: H,
  }];
  await gradcheck((y, h) => affineCouplingInverse(y, h).xb, inputs, { label: "coupling⁻¹ x_b" });
  // -log s depends on h alone (y_b gets no gradient from it).
  await gradcheck(
    (y, h) => affineCouplingInverse(y, h).neglogs,
    [{ ...inputs[0], grad: false }, inputs[1]],
    { label: "coupling⁻¹ -log s" },
  );
});

Deno.test("affineCouplingInverse: backward values vs f64, also where s ≈ 1 (1 - s kept precise)", async () => {
  // r + 2 from -6 to 24: sigmoid(-(r + 2)) down to 4e-11, where 1 - s in f32 would be 0.
  const yb = randn(cbSize, 45);
  const h = randn(2 * cbSize, 46).map((v, k) => {
    const odd = Math.floor(k / 15) % 2 === 1;
    return odd ? -8 + (30 * (k % 15)) / 14 : v;
  });
  const Y = Tensor.param(yb, CB, "yb"), Hh = Tensor.param(h, H, "h");
  const wx = randn(cbSize, 47), wl = randn(cbSize, 48);
  const { xb, neglogs } = affineCouplingInverse(Y, Hh);
  // L = sum(wx x_b) + sum(wl (-log s))
  const loss = add(
    sum(mul(xb, Tensor.constant(wx, CB))),
    sum(mul(neglogs, Tensor.constant(wl, CB))),
  );
  backward(loss, { keep: [Y, Hh] });
  const [dy, dh] = await Tensor.readAll([Y.grad!, Hh.grad!]);
  const wantDy: number[] = [], wantDh = new Float64Array(2 * cbSize);
  for (let i = 0; i < cbSize; i++) {
    const [, r] = tr(h, i);
    const s = sig(r + 2), sn = sig(-(r + 2));
    wantDy.push(wx[i] / s);
    const s0 = i % 15, nc = Math.floor(i / 15), n = Math.floor(nc / 3), c = nc % 3;
    const ti = (n * 6 + 2 * c) * 15 + s0;
    wantDh[ti] = -wx[i];
    wantDh[ti + 15] = -wx[i] * (yb[i] / s) * sn - wl[i] * sn;
  }
  assertClose(dy, wantDy, { rtol: 1e-4, atol: 1e-6, label: "dy_b" });
  assertClose(dh, wantDh, { rtol: 1e-4, atol: 1e-12, label: "dh" });
  // The smallest dr is ~1e-10 relative to the others: it must not be rounded to zero.
  const tail = dh[(0 * 6 + 1) * 15 + 14];
  assert.ok(tail !== 0 && Math.abs(tail / wantDh[(0 * 6 + 1) * 15 + 14] - 1) < 1e-4, `dr ${tail}`);
  clearTape();
  Y.release();
  Hh.release();
});

Deno.test("affineCouplingInverse: h without twice y_b's channels is refused", () => {
  assert.throws(
    () =>
      affineCouplingInverse(
        Tensor.from(new Float32Array(cbSize), CB),
        Tensor.from(new Float32Array(cbSize), CB),
      ),
    /^Error: flowgpu: affineCouplingInverse: x_b \[2, 3, 5, 3\] needs h with twice its channels/,
  );
  clearTape();
});

// ---- flow layers ---------------------------------------------------------------------------

const logdetOf = async (r: { logdet?: Tensor }, n: number) => {
  if (!r.logdet) return Array(n).fill(0);
  const v = await r.logdet.read();
  return v.length === 1 ? Array(n).fill(v[0]) : Array.from(v);
};

/**
 * The tracked inverse of a layer: equal to the untracked one (x and log-det), recorded only when
 * asked, forward(x) back to y, a gradcheck of x w.r.t. y and every parameter, and one of the
 * log-det w.r.t. the parameters `ld` names.
 *
 * The log-det is N outputs of size ~5. Where it passes a ReLU of the coupling network (from y
 * and from the network's parameters before its last ReLU), a kink within the step reads as a
 * mismatch: at h = 1e-3 the one-sided differences' rounding (~eps32 |f| / h) hides the change
 * of slope the harness looks for (seen: a scan of one conv1 weight showed the kink), and at
 * 1e-2 several kinks fall inside the step. So the log-det is checked on the parameters it
 * reaches smoothly: the scales of actnorm and the 1x1 conv, and the coupling's output conv (which
 * carries every path of the log-det through h); the network behind it is checked through x.
 */
async function checkInverse(
  name: string,
  make: (s: ParamStore) => FlowLayer,
  shape: Shape,
  seed: number,
  ld?: RegExp,
) {
  const store = new ParamStore(seed);
  const layer = make(store);
  await perturb(store, seed + 1);
  const n = shape[0];
  const y = randn(shape.reduce((a, b) => a * b, 1), seed + 2);
  const Y = Tensor.param(y, shape, "y");

  const plain = layer.inverse(Y);
  assert.equal(tapeLength(), 0, `${name}: the untracked inverse recorded on the tape`);
  assert.ok(!plain.x.requiresGrad, `${name}: the untracked inverse requires a gradient`);
  const tracked = layer.inverse(Y, { grad: true });
  assert.ok(
    tracked.x.requiresGrad && tapeLength() > 0,
    `${name}: the tracked inverse recorded nothing`,
  );
  const [x0, x1] = await Tensor.readAll([plain.x, tracked.x]);
  assertClose(x1, x0, {
    rtol: 1e-5,
    atol: 1e-6 * maxAbs(x0),
    label: `${name}: tracked vs untracked x`,
  });
  assert.ok(maxAbs(x1) > 0.1, `${name}: x is trivially small`);
  const [ld0, ld1] = [await logdetOf(plain, n), await logdetOf(tracked, n)];
  assertClose(ld1, ld0, { rtol: 1e-5, atol: 1e-5, label: `${name}: tracked vs untracked log-det` });
  assert.equal(plain.logdet === undefined, tracked.logdet === undefined);
  // forward(f⁻¹(y)) = y, and its log-det is minus the inverse's.
  const fwd = noGrad(() => layer.forward(tracked.x));
  const back = await fwd.y.read();
  const err = maxDiff(back, y) / maxAbs(y);
  assert.ok(err < 1e-5, `${name}: forward(inverse(y)) relative error ${err}`);
  const ldF = await logdetOf(fwd, n);
  ldF.forEach((v, i) =>
    assert.ok(Math.abs(v + ld1[i]) < 1e-4 * Math.max(1, Math.abs(v)), `${name}: ${v} + ${ld1[i]}`)
  );
  clearTape();
  Y.release();

  const params = store.params();
  await gradcheck((t) => layer.inverse(t, { grad: true }).x, [{ data: y, shape }], {
    params,
    label: `${name} x`,
    maxElements: 12,
    kinks: true,
  });
  if (ld) {
    await gradcheck((t) => layer.inverse(t, { grad: true }).logdet!, [{
      data: y,
      shape,
      grad: false,
    }], {
      params: params.filter((p) => ld.test(p.name)),
      label: `${name} logdet`,
      maxElements: 12,
      kinks: true,
    });
  }
  store.release();
}

const S = [2, 6, 3, 5]; // N, C, H, W: no multiple of 4
Deno.test("tracked inverse: actnorm", () =>
  checkInverse("actnorm", (s) => new ActNorm(s.scope("an"), 6), S, 110, /logscale$/));
Deno.test("tracked inverse: invertible 1x1 conv, LU", () =>
  checkInverse("invconv LU", (s) => new InvConv1x1(s.scope("w"), 6, true), S, 120, /log_s$/));
Deno.test("tracked inverse: invertible 1x1 conv, plain", () =>
  checkInverse("invconv plain", (s) => new InvConv1x1(s.scope("w"), 6, false), S, 130, /weight$/));
Deno.test("tracked inverse: affine coupling", () =>
  checkInverse(
    "affine coupling",
    (s) => new Coupling(s.scope("c"), 6, 5, true),
    S,
    140,
    /conv3\./,
  ));
Deno.test("tracked inverse: additive coupling", () =>
  checkInverse("additive coupling", (s) => new Coupling(s.scope("c"), 6, 5, false), S, 150));
Deno.test("tracked inverse: flow step, affine + LU", () =>
  checkInverse(
    "flow step affine LU",
    (s) => new FlowStep(s.scope("s"), 6, 3, { lu: true, affine: true }),
    S,
    160,
    /conv3\.|actnorm\.logscale$|log_s$/,
  ));
Deno.test("tracked inverse: flow step, additive + plain W", () =>
  checkInverse(
    "flow step additive plain",
    (s) => new FlowStep(s.scope("s"), 6, 3, { lu: false, affine: false }),
    S,
    170,
    /\.actnorm\.logscale$|\.invconv\.weight$/,
  ));

Deno.test("tracked inverse: y with the wrong channel count is refused", () => {
  const store = new ParamStore(1);
  const layers: [FlowLayer, RegExp][] = [
    [new ActNorm(store.scope("an"), 6), /^Error: flowgpu: sub: shapes \[2, 5, 3, 5\] and \[6\]/],
    [
      new InvConv1x1(store.scope("w"), 6, true),
      /^Error: flowgpu: conv2d: channel mismatch: x has 5 channels, w expects 6/,
    ],
    [
      new Coupling(store.scope("c"), 6, 3, true),
      /^Error: flowgpu: affineCouplingInverse: x_b \[2, 2, 3, 5\] needs h with twice/,
    ],
  ];
  for (const [layer, want] of layers) {
    const y = Tensor.from(new Float32Array(2 * 5 * 3 * 5), [2, 5, 3, 5]);
    assert.throws(() => layer.inverse(y, { grad: true }), want);
    clearTape();
  }
  store.release();
});

// ---- Glow decode ---------------------------------------------------------------------------

const tiny: Partial<GlowConfig> = {
  channels: 1,
  height: 4,
  width: 12,
  levels: 2,
  depth: 2,
  hidden: 3,
  seed: 5,
  // Plain splits: decode uses every parameter of the model (split priors only enter log p).
  splitPriors: false,
};

for (const o of [{ affine: true, lu: true }, { affine: false, lu: false }]) {
  const kind = `${o.affine ? "affine" : "additive"}, ${o.lu ? "LU" : "plain W"}`;

  Deno.test(`glow decode with grad (${kind}): equals decode, encodes back, gradcheck w.r.t. latents and every parameter`, async () => {
    const glow = new Glow({ ...tiny, ...o });
    await perturb(glow.store, 9, 0.15);
    const n = 2;
    const zs = glow.latentShapes.map((s, l) => {
      const shape = [n, ...s];
      return { data: randn(shape.reduce((a, b) => a * b, 1), 20 + l), shape };
    });
    const Z = zs.map((z, l) => Tensor.param(z.data, z.shape, `z${l}`));
    const plain = glow.decode(Z);
    assert.equal(tapeLength(), 0, "untracked decode recorded on the tape");
    const tracked = glow.decode(Z, { grad: true });
    assert.ok(tracked.requiresGrad, "tracked decode records nothing");
    const [x0, x1] = await Tensor.readAll([plain, tracked]);
    assertClose(x1, x0, {
      rtol: 1e-5,
      atol: 1e-5 * maxAbs(x0),
      label: "tracked vs untracked decode",
    });
    // encode(decode(z)) = z
    const back = await Tensor.readAll(glow.encode(tracked));
    back.forEach((b, l) => {
      const err = maxDiff(b, zs[l].data) / maxAbs(zs[l].data);
      assert.ok(err < 1e-4, `level ${l}: encode(decode(z)) relative error ${err}`);
    });
    clearTape();
    Z.forEach((z) => z.release());

    const params = glow.store.params();
    assert.ok(params.some((p) => /conv3\.weight$/.test(p.name)), "the zero convs are checked");
    await gradcheck((...z) => glow.decode(z, { grad: true }), zs, {
      params,
      label: `glow decode ${kind}`,
      maxElements: 4,
      kinks: true,
    });
    glow.store.release();
  });
}

Deno.test("glow decode: a loss on x̂ = f⁻¹(z) reaches the latents and every flow parameter", async () => {
  const glow = new Glow({ ...tiny, splitPriors: true });
  await perturb(glow.store, 13, 0.15);
  const Z = glow.latentShapes.map((s, l) =>
    Tensor.param(randn(2 * s[0] * s[1] * s[2], 30 + l), [2, ...s], `z${l}`)
  );
  for (const p of glow.store.params()) p.zeroGrad();
  const x = glow.decode(Z, { grad: true });
  backward(sum(mul(x, x)), { keep: Z });
  const flow = glow.store.params().filter((p) => !p.name.includes(".split."));
  for (const t of [...Z, ...flow]) {
    assert.ok(t.grad, `${t.name}: no gradient`);
    assert.ok(maxAbs(await t.grad.read()) > 0, `${t.name}: zero gradient`);
  }
  // The split priors take no part in decoding.
  for (const p of glow.store.params().filter((p) => p.name.includes(".split."))) {
    assert.ok(!p.grad || maxAbs(await p.grad.read()) === 0, `${p.name}: unexpected gradient`);
  }
  clearTape();
  Z.forEach((z) => z.release());
  glow.store.release();
});

Deno.test("glow decode: latents of the wrong count or shape are refused", () => {
  const glow = new Glow({ ...tiny });
  const [a, b] = glow.latentShapes.map((s) =>
    Tensor.from(new Float32Array(2 * s[0] * s[1] * s[2]), [2, ...s])
  );
  const want =
    /^Error: flowgpu: glow: decode needs 2 latents shaped \[N, 2, 2, 6\], \[N, 8, 1, 3\]/;
  for (const grad of [false, true]) {
    assert.throws(() => glow.decode([b], { grad }), want);
    assert.throws(() => glow.decode([b, a], { grad }), want);
    assert.throws(
      () => glow.decode([a, Tensor.from(new Float32Array(24), [1, 8, 1, 3])], { grad }),
      want,
    );
  }
  clearTape();
  glow.store.release();
});

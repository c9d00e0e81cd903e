// Finite-difference gradient checks and f64 reference comparisons, shared by every op test.
//
// gradcheck(f, inputs): with random weights w, the analytic gradient of L = sum(w * f(x)) from
// the tape is compared, element by element, with central differences (L(x+h) - L(x-h)) / 2h
// computed by the GPU forward. Every perturbed forward is encoded into one command encoder and
// read back once, so a check costs one submit, not two per element.
//
// Tolerance, from f32 and the step: the forward's rounding error in L is about
// K * eps32 * sum|w * f(x)| (K covers a short chain of ops), which the difference quotient divides
// by h; truncation error is O(h^2) relative, covered by rtol.
import assert from "node:assert/strict";
import { copyBuffer, readBuffer } from "../src/gpu/encoder.ts";
import { acquireBuffer, releaseBuffer } from "../src/gpu/pool.ts";
import { mul } from "../src/ops/elementwise.ts";
import { sum } from "../src/ops/reduce.ts";
import { backward, clearTape, noGrad } from "../src/ops/tape.ts";
import { type Shape, Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/data/rng.ts";

export const EPS32 = 2 ** -23;

export interface Input {
  data: ArrayLike<number>;
  shape: Shape;
  /** Check this input's gradient (default true). */
  grad?: boolean;
}

export interface GradcheckOptions {
  h?: number;
  rtol?: number;
  /** Rounding headroom K in the tolerance K * eps32 * sum|w f| / h. */
  k?: number;
  seed?: number;
  /** Check at most this many elements per input (spread evenly). */
  maxElements?: number;
  label?: string;
  /** Existing tensors (e.g. a layer's parameters) whose gradients are checked too. */
  params?: Tensor[];
  /**
   * The function has kinks (ReLU). Any step h crosses some kink of a wide enough net, and a
   * central difference across a kink averages two slopes, so here the analytic value may match
   * the central, the forward or the backward difference (the side without the kink); an element
   * matching none (kinks on both sides) is skipped, at most 10% of them. Default h is 1e-3.
   */
  kinks?: boolean;
}

export async function gradcheck(
  f: (...xs: Tensor[]) => Tensor,
  inputs: Input[],
  opts: GradcheckOptions = {},
): Promise<{ maxErr: number; checked: number }> {
  const h = opts.h ?? (opts.kinks ? 1e-3 : 1e-2);
  const rtol = opts.rtol ?? 2e-3;
  const k = opts.k ?? 4;
  const rng = new Rng(opts.seed ?? 7);
  const label = opts.label ?? f.name ?? "op";

  const made = inputs.map((inp, i) => {
    const t = Tensor.param(inp.data, inp.shape, `input${i}`);
    t.requiresGrad = inp.grad ?? true;
    return t;
  });
  const params = opts.params ?? [];
  const baseData = [
    ...inputs.map((inp) => Float32Array.from(inp.data)),
    ...(await Promise.all(params.map((p) => p.read()))),
  ];
  const xs = [...made, ...params];
  try {
    // Analytic gradient.
    for (const p of params) p.zeroGrad();
    const y0 = f(...made);
    const w = Tensor.from(rng.uniformArray(y0.size, -1, 1), y0.shape);
    const loss = sum(mul(y0, w));
    backward(loss, { keep: [w, y0] });
    const wData = await w.read();
    const yData = await y0.read();
    const scale = wData.reduce((acc, wi, i) => acc + Math.abs(wi * yData[i]), 0);
    const grads = await Promise.all(
      xs.map(async (x) => x.requiresGrad && x.grad ? await x.grad.read() : undefined),
    );
    clearTape();

    // Numerical gradient: every perturbation in one encoder, each L copied into `results`.
    const jobs: { input: number; index: number }[] = [];
    xs.forEach((x, i) => {
      if (!x.requiresGrad) return;
      const n = x.size;
      const m = Math.min(n, opts.maxElements ?? n);
      for (let j = 0; j < m; j++) jobs.push({ input: i, index: Math.floor((j * n) / m) });
    });
    const steps = opts.kinks ? [h, -h, 0] : [h, -h];
    const m = steps.length;
    const resultsBuf = acquireBuffer(jobs.length * m * 4);
    for (let j = 0; j < jobs.length; j++) {
      const { input, index } = jobs[j];
      const base = baseData[input];
      steps.forEach((step, q) => {
        const pert = base.slice();
        pert[index] += step;
        xs[input].write(pert);
        noGrad(() => {
          const ww = Tensor.from(wData, y0.shape);
          const l = sum(mul(f(...made), ww));
          copyBuffer(l.buffer, resultsBuf, 4, 0, (m * j + q) * 4);
        });
        clearTape();
      });
      xs[input].write(base);
    }
    const results = new Float32Array(await readBuffer(resultsBuf, jobs.length * m * 4));
    releaseBuffer(resultsBuf);

    const atol = (k * EPS32 * Math.max(scale, 1e-30)) / h;
    let maxErr = 0;
    let skipped = 0;
    const bad: string[] = [];
    jobs.forEach(({ input, index }, j) => {
      const num = (results[m * j] - results[m * j + 1]) / (2 * h);
      const an = grads[input]?.[index] ?? 0;
      const err = Math.abs(num - an);
      const tol = atol + rtol * Math.max(Math.abs(an), Math.abs(num));
      if (opts.kinks && !(err <= tol)) {
        const fwd = (results[m * j] - results[m * j + 2]) / h;
        const bwd = (results[m * j + 2] - results[m * j + 1]) / h;
        const ok = (d: number) => Math.abs(d - an) <= 2 * atol + rtol * Math.abs(d);
        if (ok(fwd) || ok(bwd)) return;
        skipped++;
        return;
      }
      maxErr = Math.max(maxErr, err / tol);
      if (!(err <= tol) && bad.length < 8) {
        bad.push(
          `${xs[input].name} [${index}]: analytic ${an}, numeric ${num} (tol ${
            tol.toExponential(2)
          })`,
        );
      }
    });
    assert.ok(
      bad.length === 0,
      `gradcheck ${label}: ${bad.length}+ mismatches\n  ${bad.join("\n  ")}`,
    );
    assert.ok(
      skipped * 10 <= jobs.length,
      `gradcheck ${label}: ${skipped} of ${jobs.length} elements sit at kinks; use other inputs`,
    );
    return { maxErr, checked: jobs.length };
  } finally {
    clearTape();
    for (const x of made) x.release();
    for (const p of params) p.zeroGrad();
  }
}

/** Assert |actual - expected| <= atol + rtol |expected| element-wise, naming the first misses. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  opts: { rtol?: number; atol?: number; label?: string } = {},
): void {
  const rtol = opts.rtol ?? 1e-5;
  const atol = opts.atol ?? 1e-6;
  assert.equal(actual.length, expected.length, `${opts.label ?? ""}: length differs`);
  const bad: string[] = [];
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e)) && bad.length < 6) {
      bad.push(`[${i}] got ${a}, want ${e}`);
    }
  }
  assert.ok(bad.length === 0, `${opts.label ?? "values"} differ:\n  ${bad.join("\n  ")}`);
}

export function randn(n: number, seed = 1, std = 1): Float32Array {
  return new Rng(seed).normalArray(n, std);
}

export function randu(n: number, seed = 1, lo = -1, hi = 1): Float32Array {
  return new Rng(seed).uniformArray(n, lo, hi);
}

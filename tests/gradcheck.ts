// Finite-difference gradient checks and f64 reference comparisons, shared by every op test.
//
// gradcheck(f, inputs): with random weights w, the analytic gradient of L = sum(w * f(x)) from
// the tape is compared, element by element, with a central difference of the GPU forward. Every
// perturbed forward f(x +- h e_j) is encoded into one command encoder, its whole output copied
// into one results buffer, and read back once (one submit; split only past 32 MiB of outputs).
// The difference is then taken on the CPU in f64, output by output:
//
//   num_j = sum_i w_i (f_i(x+) - f_i(x-)) / (x+ - x-)
//
// where x+ and x- are the perturbed element's actual f32 values (so the step carries no
// rounding of its own). An input (or `params` tensor) that requires a gradient and has none after
// backward fails, naming it; it is not read as zero.
//
// Tolerance, per element, from f32 and only the outputs that x_j moved. A forward of a few ops
// returns each output with a rounding error of at most about c * eps32 * |f_i| (c: the roundings
// on its path, more with cancellation). Outputs whose two perturbed values are bitwise equal add
// exactly zero to the difference and are left out (they do not depend on x_j, or depend on it
// below f32's resolution). The others add, in the worst case, their errors in absolute value, so
// the difference quotient is off by at most
//
//   round_j = K * eps32 * sum_{i changed} |w_i| (|f_i(x+)| + |f_i(x-)|) / (x+ - x-)
//
// (K, option `k`, default 4, covers c; the analytic gradient's own f32 error, relative to the
// same terms without the 1/h, is far below it). Unlike a bound on L, this does not grow with the
// size of the output: an element that moves 30 of 10 000 outputs is judged on those 30. A change
// too small to move any output is not zero, though: it hides below half an ulp of the outputs it
// lands in, so one ulp of the largest weighted output, eps32 * max_i |w_i f_i| / h, is added
// (it matters only where few outputs carry large values, e.g. a scalar loss). The
// central difference's truncation error is h^2 f'''/6, relative to the gradient O(h^2) for smooth
// ops on O(1) scales; it is covered by a relative term, so an element passes when
//
//   |num_j - an_j| <= round_j + rtol * max(|an_j|, |num_j|)      (rtol default 2e-3).
//
// Kinks (`kinks: true`, ReLU nets): f(x) is evaluated too and the one-sided differences
// fwd = (f(x+) - f(x)) / (x+ - x), bwd = (f(x) - f(x-)) / (x - x-) formed the same way. An element
// that fails the central test is accepted only when fwd and bwd disagree beyond their own
// tolerances (evidence of a kink inside [x-, x+]; their truncation error h f''/2 is within rtol
// for |f''/f'| <= 4 at the kink-mode h = 1e-3) and the analytic value matches one of them; if
// they agree, the analytic value is wrong and the element fails. One whose one-sided differences
// disagree and match neither (kinks on both sides) is skipped, at most 10% of the elements.
//
// With `maxElements`, the indices checked per input always include the first and the last element
// and spread the rest evenly between them.
import assert from "node:assert/strict";
import { copyBuffer, readBuffer } from "../src/gpu/encoder.ts";
import { acquireBuffer, releaseBuffer } from "../src/gpu/pool.ts";
import { mul } from "../src/ops/elementwise.ts";
import { sum } from "../src/ops/reduce.ts";
import { backward, clearTape, noGrad } from "../src/ops/tape.ts";
import { type Shape, Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/util/rng.ts";

export const EPS32 = 2 ** -23;

export interface Input {
  data: ArrayLike<number>;
  shape: Shape;
  /** Check this input's gradient (default true). */
  grad?: boolean;
}

export interface GradcheckOptions {
  /** Step (default 1e-2, or 1e-3 with `kinks`). */
  h?: number;
  /** Relative tolerance, covering the truncation error of the differences (default 2e-3). */
  rtol?: number;
  /** Rounding headroom K in K * eps32 * sum_{changed i} |w_i| (|f_i(x+)| + |f_i(x-)|) / 2h. */
  k?: number;
  seed?: number;
  /** Check at most this many elements per input: the first, the last, the rest spread evenly. */
  maxElements?: number;
  label?: string;
  /** Existing tensors (e.g. a layer's parameters) whose gradients are checked too. */
  params?: Tensor[];
  /**
   * The function has kinks (ReLU). An element failing the central difference is accepted when the
   * one-sided differences disagree (a kink inside [x-h, x+h]) and the analytic value matches one
   * of them. Default h is 1e-3.
   */
  kinks?: boolean;
  /** Return the verdicts instead of throwing on a mismatch (tests of the harness itself). */
  noThrow?: boolean;
}

/** One checked element. */
export interface Checked {
  /** The tensor's name and the element's flat index. */
  name: string;
  index: number;
  analytic: number;
  numeric: number;
  tol: number;
  /** Outputs whose two perturbed values differ. */
  changed: number;
  verdict: "ok" | "kink" | "skipped" | "mismatch";
}

export interface GradcheckResult {
  /** Largest |num - an| / tol over the elements judged by the central difference. */
  maxErr: number;
  checked: number;
  /** Elements accepted at a kink, and skipped (kinks on both sides). */
  kinks: number;
  skipped: number;
  elements: Checked[];
  /** The failure message (with `noThrow`), or undefined when the check passed. */
  failure?: string;
}

/** Flat indices to check among n: all, or m spread evenly including the first and the last. */
export function sampleIndices(n: number, m = n): number[] {
  if (n <= 0) return [];
  if (m >= n) return Array.from({ length: n }, (_, i) => i);
  if (m <= 2) return [0, n - 1];
  const out = new Set<number>();
  for (let j = 0; j < m; j++) out.add(Math.round((j * (n - 1)) / (m - 1)));
  return [...out];
}

/**
 * sum_i w_i (a_i - b_i) / step in f64 over the outputs that differ, its rounding scale, and the
 * largest change that could hide in one output below f32's resolution (one ulp of the largest).
 */
function diff(w: Float32Array, a: Float32Array, b: Float32Array, step: number) {
  let d = 0, mag = 0, changed = 0, peak = 0;
  for (let i = 0; i < w.length; i++) {
    const ai = a[i], bi = b[i];
    const wi = Math.abs(w[i]);
    peak = Math.max(peak, wi * Math.abs(ai), wi * Math.abs(bi));
    if (ai === bi) continue; // NaN !== NaN: a NaN output counts as changed and poisons d
    changed++;
    d += w[i] * (ai - bi);
    mag += wi * (Math.abs(ai) + Math.abs(bi));
  }
  return { slope: d / step, mag: mag / step, changed, unseen: (EPS32 * peak) / step };
}

/** Results buffers are split past this many bytes (one submit each). */
const BATCH_BYTES = 32 << 20;

export async function gradcheck(
  f: (...xs: Tensor[]) => Tensor,
  inputs: Input[],
  opts: GradcheckOptions = {},
): Promise<GradcheckResult> {
  const h = opts.h ?? (opts.kinks ? 1e-3 : 1e-2);
  const rtol = opts.rtol ?? 2e-3;
  const k = opts.k ?? 4;
  const rng = new Rng(opts.seed ?? 7);
  const label = opts.label ?? (f.name || "op");

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
    const ny = y0.size;
    const w = Tensor.from(rng.uniformArray(ny, -1, 1), y0.shape);
    const loss = sum(mul(y0, w));
    backward(loss, { keep: [w] });
    const wData = await w.read();
    const missing = xs.filter((x) => x.requiresGrad && !x.grad).map((x) => `'${x.name}'`);
    assert.ok(
      missing.length === 0,
      `gradcheck ${label}: ${missing.join(", ")} requires a gradient but got none from backward`,
    );
    const grads = await Promise.all(
      xs.map(async (x) => x.requiresGrad ? await x.grad!.read() : undefined),
    );
    clearTape();

    // Perturbed forwards: each output copied whole into a results buffer, one submit per batch.
    const jobs: { input: number; index: number; hi: number; lo: number }[] = [];
    xs.forEach((x, i) => {
      if (!x.requiresGrad) return;
      for (const index of sampleIndices(x.size, opts.maxElements)) {
        const v = baseData[i][index];
        jobs.push({ input: i, index, hi: Math.fround(v + h), lo: Math.fround(v - h) });
      }
    });
    const rowBytes = ny * 4;
    const forward = (buf: GPUBuffer, row: number) => {
      noGrad(() => {
        const y = f(...made);
        copyBuffer(y.buffer, buf, rowBytes, y.offset * 4, row * rowBytes);
      });
      clearTape();
    };
    // With kinks, the first batch starts with f(x) itself (row 0).
    const lead = opts.kinks ? 1 : 0;
    const perBatch = Math.max(1, Math.floor(BATCH_BYTES / (2 * rowBytes)));
    const rows: Float32Array[] = [];
    for (let j0 = 0; j0 < Math.max(jobs.length, lead); j0 += perBatch) {
      const batch = jobs.slice(j0, j0 + perBatch);
      const first = j0 === 0 ? lead : 0;
      const count = first + 2 * batch.length;
      const buf = acquireBuffer(count * rowBytes);
      if (first) forward(buf, 0);
      batch.forEach(({ input, index, hi, lo }, j) => {
        const pert = baseData[input].slice();
        pert[index] = hi;
        xs[input].write(pert);
        forward(buf, first + 2 * j);
        pert[index] = lo;
        xs[input].write(pert);
        forward(buf, first + 2 * j + 1);
        xs[input].write(baseData[input]);
      });
      const all = new Float32Array(await readBuffer(buf, count * rowBytes));
      releaseBuffer(buf);
      for (let r = 0; r < count; r++) rows.push(all.subarray(r * ny, (r + 1) * ny));
    }
    const base = lead ? rows[0] : undefined;

    let maxErr = 0, kinks = 0, skipped = 0;
    const elements: Checked[] = [];
    const bad: string[] = [];
    const tolOf = (d: { slope: number; mag: number; unseen: number }, ref: number) =>
      k * EPS32 * d.mag + d.unseen + rtol * Math.max(Math.abs(ref), Math.abs(d.slope));
    jobs.forEach(({ input, index, hi, lo }, j) => {
      const plus = rows[lead + 2 * j], minus = rows[lead + 2 * j + 1];
      const c = diff(wData, plus, minus, hi - lo);
      const an = grads[input]![index];
      const num = c.slope;
      const err = Math.abs(num - an);
      const tol = tolOf(c, an);
      const name = xs[input].name;
      const e: Checked = {
        name,
        index,
        analytic: an,
        numeric: num,
        tol,
        changed: c.changed,
        verdict: "ok",
      };
      elements.push(e);
      if (err <= tol) {
        maxErr = Math.max(maxErr, err === 0 ? 0 : err / tol);
        return;
      }
      let why = "";
      if (base) {
        const x = baseData[input][index];
        const fw = diff(wData, plus, base, hi - x), bw = diff(wData, base, minus, x - lo);
        const disagree = Math.abs(fw.slope - bw.slope) >
          k * EPS32 * (fw.mag + bw.mag) + fw.unseen + bw.unseen +
            rtol * Math.max(Math.abs(fw.slope), Math.abs(bw.slope));
        if (disagree) {
          const onSide = Math.abs(an - fw.slope) <= tolOf(fw, an) ||
            Math.abs(an - bw.slope) <= tolOf(bw, an);
          e.verdict = onSide ? "kink" : "skipped";
          if (onSide) kinks++;
          else skipped++;
          return;
        }
        why = `; one-sided ${fw.slope}, ${bw.slope} agree: no kink`;
      }
      e.verdict = "mismatch";
      maxErr = Math.max(maxErr, err === 0 ? 0 : err / tol);
      if (bad.length < 8) {
        bad.push(
          `${name} [${index}]: analytic ${an}, numeric ${num} (tol ${
            tol.toExponential(2)
          }, ${c.changed} outputs changed${why})`,
        );
      }
    });
    const mismatches = elements.filter((e) => e.verdict === "mismatch").length;
    let failure: string | undefined;
    if (mismatches > 0) {
      failure = `gradcheck ${label}: ${mismatches} of ${jobs.length} elements mismatch\n  ${
        bad.join("\n  ")
      }`;
    } else if (skipped * 10 > jobs.length) {
      failure = `gradcheck ${label}: ${skipped} of ${jobs.length} elements sit between kinks ` +
        "(one-sided differences disagree, the analytic value matches neither); use other inputs";
    }
    if (failure && !opts.noThrow) assert.fail(failure);
    return { maxErr, checked: jobs.length, kinks, skipped, elements, failure };
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

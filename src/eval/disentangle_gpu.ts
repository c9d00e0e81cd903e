// The MIG estimator's O(N·M) part on the GPU (shaders/disentangle.wgsl): per code dim, the
// logsumexp of Gaussian log-densities of M samples against N codes, over all codes and over each
// factor's same-label codes. At the spec's N = M = 10k that is 10^8 log-densities per dim, and a
// DisUnknown MNIST model has 74 dims: minutes in float64 JavaScript, seconds or less on a GPU.
// The kernel works in f32; the entropies are finished here in f64 from the per-sample log-sums,
// whose f32 rounding (~1e-6 nats) averages out over M samples far below the metric's third
// decimal. Same draws as the CPU `mig` (planMig), so the two agree to that rounding.
import { kernel } from "../gpu/kernel.ts";
import { readBuffer, upload } from "../gpu/encoder.ts";
import { acquireBuffer, releaseBuffer } from "../gpu/pool.ts";
import {
  type IndexedFactor,
  type MigEncoder,
  type MigFactor,
  type MigOptions,
  type MigResult,
  planMig,
  type PosteriorCode,
  type PosteriorEntropies,
  posteriorEntropies,
  scoreMig,
} from "./disentangle.ts";

const LSE = kernel("disentangle.wgsl", "mig_logsumexp", {
  params: "@0 uniform mg",
  codes: "@1 read mig_codes",
  labels: "@2 read mig_labels",
  z: "@3 read mig_z",
  src: "@4 read mig_src",
  out: "@5 read_write mig_out",
});

const MAX_FACTORS = 8, MAX_VALUES = 0x10000, STRIDE = 9;
/**
 * Codes one invocation loops over: Mesa's LLVM backend stops a single invocation's loops after
 * 65,535 passes (see linalg.ts), so more codes than this go to the CPU estimator instead.
 */
export const MAX_GPU_CODES = 60000;
const LOG_2PI = Math.log(2 * Math.PI);
/** The kernel's flag for a subset sum that underflowed in f32. */
const UNDERFLOW = -1e37;

/** σ of every entry of a code, as f64. */
function sds(code: PosteriorCode): Float64Array {
  const len = code.mu.length;
  if (code.sigma) return Float64Array.from(code.sigma);
  if (code.logvar) return Float64Array.from(code.logvar, (l) => Math.exp(0.5 * l));
  return new Float64Array(len).fill(code.noise!);
}

/** Packs up to 8 factors' value indices per row into 4 u32 words (16 bits each). */
function packLabels(factors: IndexedFactor[], rows: ArrayLike<number>): Uint32Array {
  const out = new Uint32Array(rows.length * 4);
  for (let r = 0; r < rows.length; r++) {
    factors.forEach((f, j) => {
      out[r * 4 + (j >> 1)] |= f.index[rows[r]] << (16 * (j & 1));
    });
  }
  return out;
}

/**
 * `posteriorEntropies` on the GPU: the same estimator and inputs, the log-density sums in f32.
 * Factors are taken 8 per pass; each factor may have at most 65,536 values.
 */
export async function posteriorEntropiesGpu(
  code: PosteriorCode,
  factors: IndexedFactor[],
  source: Uint32Array,
  eps: ArrayLike<number>,
): Promise<PosteriorEntropies> {
  const { mu, dim } = code;
  const n = mu.length / dim, m = source.length;
  if (!Number.isInteger(n) || n < 1 || eps.length !== m * dim) {
    throw new Error(
      `flowgpu: posteriorEntropiesGpu: ${mu.length} means, ${eps.length} eps do not fit ${m} samples x ${dim}`,
    );
  }
  if (n > MAX_GPU_CODES) {
    throw new Error(
      `flowgpu: posteriorEntropiesGpu: ${n} codes, more than the ${MAX_GPU_CODES} one invocation ` +
        `may loop over (use the CPU posteriorEntropies)`,
    );
  }
  for (const f of factors) {
    if (f.index.length !== n) {
      throw new Error(`flowgpu: posteriorEntropiesGpu: ${f.index.length} labels for ${n} codes`);
    }
    if (f.counts.length > MAX_VALUES) {
      throw new Error(
        `flowgpu: posteriorEntropiesGpu: a factor of ${f.counts.length} values (at most ${MAX_VALUES})`,
      );
    }
  }
  for (const i of source) {
    if (i >= n) throw new Error(`flowgpu: posteriorEntropiesGpu: sample source ${i} >= ${n}`);
  }
  const sd = sds(code);
  for (let i = 0; i < sd.length; i++) {
    const at = `code ${Math.floor(i / dim)} dim ${i % dim}`;
    if (!(sd[i] > 0) || !Number.isFinite(mu[i])) {
      throw new Error(`flowgpu: posteriorEntropiesGpu: ${at} has μ ${mu[i]}, σ ${sd[i]}`);
    }
    // 1/(2σ²) must stay a finite f32, or the kernel's log-densities turn to NaN.
    if (0.5 / (sd[i] * sd[i]) > 3e38) {
      throw new Error(
        `flowgpu: posteriorEntropiesGpu: ${at} has σ ${sd[i]}, too small for f32 (use the CPU mig)`,
      );
    }
  }
  // (μ, 1/2σ², log-normaliser) per (dim, code), dim-major; the samples z in f64 first.
  const codes = new Float32Array(dim * n * 4);
  const z64 = new Float64Array(dim * m), z = new Float32Array(dim * m);
  for (let k = 0; k < dim; k++) {
    for (let i = 0; i < n; i++) {
      const s = sd[i * dim + k], o = (k * n + i) * 4;
      codes[o] = mu[i * dim + k];
      codes[o + 1] = 0.5 / (s * s);
      codes[o + 2] = -Math.log(s) - 0.5 * LOG_2PI;
    }
    for (let s = 0; s < m; s++) {
      const i = source[s];
      z64[k * m + s] = mu[i * dim + k] + sd[i * dim + k] * eps[s * dim + k];
      z[k * m + s] = z64[k * m + s];
    }
  }
  const hx = new Float64Array(dim);
  const hxGivenL = new Float64Array(factors.length * dim);
  const all = Uint32Array.from({ length: n }, (_, i) => i);
  const bufCodes = acquireBuffer(codes.byteLength), bufZ = acquireBuffer(z.byteLength);
  const outBytes = dim * m * STRIDE * 4;
  const bufOut = acquireBuffer(outBytes);
  const bufLabels = acquireBuffer(n * 16), bufSrc = acquireBuffer(m * 16);
  try {
    upload(bufCodes, codes);
    upload(bufZ, z);
    for (let f0 = 0; f0 < Math.max(1, factors.length); f0 += MAX_FACTORS) {
      const group = factors.slice(f0, f0 + MAX_FACTORS);
      upload(bufLabels, packLabels(group, all));
      upload(bufSrc, packLabels(group, source));
      for (let k = 0; k < dim; k++) {
        LSE.run(
          { codes: bufCodes, labels: bufLabels, z: bufZ, src: bufSrc, out: bufOut },
          {
            params: [n, m, k * n, k * m],
            threads: m,
            constants: { NF: Math.max(1, group.length) },
          },
        );
      }
      const out = new Float32Array(await readBuffer(bufOut, outBytes));
      finish(out, f0, group);
    }
  } finally {
    for (const b of [bufCodes, bufZ, bufOut, bufLabels, bufSrc]) releaseBuffer(b);
  }

  /** Entropies in f64 from the per-sample log-sums of factors f0.. (and H(X) on the first pass). */
  function finish(out: Float32Array, f0: number, group: IndexedFactor[]) {
    const logN = Math.log(n);
    for (let k = 0; k < dim; k++) {
      if (f0 === 0) {
        let h = 0;
        for (let s = 0; s < m; s++) h -= out[(k * m + s) * STRIDE] - logN;
        if (!Number.isFinite(h)) {
          throw new Error(`flowgpu: posteriorEntropiesGpu: non-finite log-density sum in dim ${k}`);
        }
        hx[k] = h / m;
      }
      group.forEach((fac, j) => {
        const sum = new Float64Array(fac.counts.length), cnt = new Int32Array(fac.counts.length);
        for (let s = 0; s < m; s++) {
          const v = fac.index[source[s]];
          let lse = out[(k * m + s) * STRIDE + 1 + j];
          if (!(lse > UNDERFLOW)) lse = subsetLse(k, z64[k * m + s], fac, v);
          sum[v] -= lse - Math.log(fac.counts[v]);
          cnt[v]++;
        }
        let h = 0, w = 0;
        for (let v = 0; v < sum.length; v++) {
          if (cnt[v] === 0) continue;
          h += fac.counts[v] * (sum[v] / cnt[v]);
          w += fac.counts[v];
        }
        hxGivenL[(f0 + j) * dim + k] = h / w;
      });
    }
  }

  /** log Σ over the codes of value v of factor `fac`, in f64 (the underflow fallback). */
  function subsetLse(k: number, zk: number, fac: IndexedFactor, v: number): number {
    let mx = -Infinity;
    const vals: number[] = [];
    for (let i = 0; i < n; i++) {
      if (fac.index[i] !== v) continue;
      const s = sd[i * dim + k];
      const q = -Math.log(s) - 0.5 * LOG_2PI - 0.5 * ((zk - mu[i * dim + k]) / s) ** 2;
      vals.push(q);
      mx = Math.max(mx, q);
    }
    let t = 0;
    for (const q of vals) t += Math.exp(q - mx);
    return mx + Math.log(t);
  }

  const mi = new Float64Array(factors.length * dim);
  for (let f = 0; f < factors.length; f++) {
    for (let k = 0; k < dim; k++) mi[f * dim + k] = hx[k] - hxGivenL[f * dim + k];
  }
  return { hx, hxGivenL, mi };
}

/** `mig` with the estimator on the GPU: same plan (subset, sources, ε), same scoring. */
export async function migGpu(
  encoders: MigEncoder[],
  factors: MigFactor[],
  opts: MigOptions = {},
): Promise<MigResult> {
  const plan = planMig(encoders, factors, opts);
  const entropies: PosteriorEntropies[] = [];
  for (let j = 0; j < plan.codes.length; j++) {
    const code = plan.codes[j], n = code.mu.length / code.dim;
    entropies.push(
      n > MAX_GPU_CODES
        ? posteriorEntropies(code, plan.factors, plan.source, plan.eps[j])
        : await posteriorEntropiesGpu(code, plan.factors, plan.source, plan.eps[j]),
    );
  }
  return scoreMig(plan, entropies);
}

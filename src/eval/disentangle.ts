// Disentanglement metrics of vae-disentangle.md: the posterior-based MIG estimator of §5.1 (β-TCVAE's
// mixture entropy, per code dim) in the weakly-supervised multi-encoder form of §1.9 (MIG_lab and
// MIG_all) and the classic single-code top-two gap; DCI (Eastwood & Williams 2018); SAP (Kumar et
// al. 2018); and the leakage probes of §5.4. Forward only, in float64 on the CPU: this is the
// reference that disentangle_gpu.ts (the O(N·M) log-density sums in f32, for large N·M·dims) is
// tested against, and the regressions are small dense solves.
import { Rng } from "../util/rng.ts";

const LOG_2PI = Math.log(2 * Math.PI);

/**
 * A code of `n` samples x `dim` values with its Gaussian posterior: means, and exactly one of
 * standard deviations (DisUnknown heads), log-variances (ZS/TZ heads) or a fixed `noise` σ for a
 * deterministic code (§1.9: 0.05 for content/unknown codes, 0.02 for class/labelled codes).
 */
export interface PosteriorCode {
  /** Posterior means [n·dim], row-major. */
  mu: ArrayLike<number>;
  /** Code dims per sample. */
  dim: number;
  /** Posterior standard deviations [n·dim]. */
  sigma?: ArrayLike<number>;
  /** Posterior log-variances [n·dim] (σ = exp(½·logvar)). */
  logvar?: ArrayLike<number>;
  /** One σ for every entry of a deterministic code. */
  noise?: number;
}

/** `code`'s sample count, checking its arrays. */
function codeCount(code: PosteriorCode, what: string): number {
  const { mu, dim } = code;
  const n = mu.length / dim;
  if (!Number.isInteger(dim) || dim < 1 || !Number.isInteger(n) || n < 1) {
    throw new Error(`flowgpu: ${what}: ${mu.length} means are not whole rows of ${dim} dims`);
  }
  const given = [code.sigma, code.logvar, code.noise].filter((v) => v !== undefined).length;
  if (given !== 1) {
    throw new Error(
      `flowgpu: ${what}: give exactly one of sigma, logvar or noise (got ${given})`,
    );
  }
  for (const [name, a] of [["sigma", code.sigma], ["logvar", code.logvar]] as const) {
    if (a && a.length !== mu.length) {
      throw new Error(`flowgpu: ${what}: ${a.length} ${name} values for ${mu.length} means`);
    }
  }
  if (code.noise !== undefined && !(code.noise > 0)) {
    throw new Error(`flowgpu: ${what}: noise σ must be > 0, got ${code.noise}`);
  }
  return n;
}

/** σ of entry i (row-major) of a checked code. */
function sdOf(code: PosteriorCode): (i: number) => number {
  if (code.sigma) {
    const s = code.sigma;
    return (i) => s[i];
  }
  if (code.logvar) {
    const l = code.logvar;
    return (i) => Math.exp(0.5 * l[i]);
  }
  const noise = code.noise!;
  return () => noise;
}

/** §1.9's fixed posterior σ for deterministic codes: content/unknown 0.05, class/labelled 0.02. */
export const MIG_NOISE = { unknown: 0.05, labeled: 0.02 } as const;

/**
 * Equal-mass buckets of a continuous factor (§8 D13: 24–32 for MIG): bucket b holds the values
 * ranked in [b·n/B, (b+1)·n/B); ties share the bucket of their first rank, so equal values never
 * split. Returns a bucket id per value.
 */
export function equalMassBuckets(values: ArrayLike<number>, buckets: number): Int32Array {
  const n = values.length;
  if (!(Number.isInteger(buckets) && buckets >= 2 && n >= buckets)) {
    throw new Error(`flowgpu: equalMassBuckets: ${n} values cannot fill ${buckets} buckets`);
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => values[a] - values[b]);
  const out = new Int32Array(n);
  let first = 0;
  for (let r = 0; r < n; r++) {
    if (!Number.isFinite(values[order[r]])) {
      throw new Error(`flowgpu: equalMassBuckets: value ${values[order[r]]} is not finite`);
    }
    if (r > 0 && values[order[r]] !== values[order[r - 1]]) first = r;
    out[order[r]] = Math.floor((first * buckets) / n);
  }
  return out;
}

/** A factor's labels as value indices 0..m−1 (in sorted order of the raw values) and counts. */
export interface IndexedFactor {
  /** Value index per sample. */
  index: Int32Array;
  /** Samples per value index. */
  counts: Int32Array;
  /** Raw label of each value index. */
  values: number[];
  /** Empirical entropy H(L) = −Σ p log p in nats. */
  entropy: number;
}

/**
 * Maps raw labels (integers, or bucket ids of a continuous factor: §8 D13) to value indices.
 * A factor with a single value has H(L) = 0 and no normalised information, so it is an error.
 */
export function indexFactor(labels: ArrayLike<number>, what = "factor"): IndexedFactor {
  const n = labels.length;
  if (n === 0) throw new Error(`flowgpu: ${what}: no labels`);
  const values = [...new Set(Array.from(labels))].sort((a, b) => a - b);
  for (const v of values) {
    if (!Number.isFinite(v)) throw new Error(`flowgpu: ${what}: label ${v} is not finite`);
  }
  if (values.length < 2) {
    throw new Error(
      `flowgpu: ${what}: has a single value (${
        values[0]
      }), so H(L) = 0 and MIG/DCI/SAP are undefined`,
    );
  }
  const at = new Map(values.map((v, i) => [v, i]));
  const index = new Int32Array(n), counts = new Int32Array(values.length);
  for (let i = 0; i < n; i++) {
    const c = at.get(labels[i])!;
    index[i] = c;
    counts[c]++;
  }
  let entropy = 0;
  for (const c of counts) entropy -= (c / n) * Math.log(c / n);
  return { index, counts, values, entropy };
}

/** Output of `posteriorEntropies`: estimates in nats, per code dim. */
export interface PosteriorEntropies {
  /** H(X_k) per dim [dim]. */
  hx: Float64Array;
  /** Σ_v p(v) H(X_k | L_f = v) [factors·dim], factor-major. */
  hxGivenL: Float64Array;
  /** I(L_f; X_k) = H(X_k) − H(X_k | L_f) [factors·dim]. */
  mi: Float64Array;
}

/**
 * The §5.1 estimator on given samples: sample s of dim k is z = μ[i_s,k] + σ[i_s,k]·eps[s,k],
 * H(X_k) ≈ −mean_s log((1/N) Σ_n N(z; μ_nk, σ²_nk)) and, per factor and value v, H(X_k | L=v)
 * from the samples whose source i_s has label v against the mixture over the N_v codes with that
 * label. The conditional entropies are weighted by p(v) = N_v/N, renormalised over the values that
 * drew at least one sample (all of them when every code is drawn, as `mutualInformation` does for
 * M ≥ N). Exported so that tests and a GPU path can check against fixed samples.
 */
export function posteriorEntropies(
  code: PosteriorCode,
  factors: IndexedFactor[],
  source: Uint32Array,
  eps: ArrayLike<number>,
): PosteriorEntropies {
  const n = codeCount(code, "posteriorEntropies");
  const { mu, dim } = code;
  const m = source.length;
  if (eps.length !== m * dim) {
    throw new Error(`flowgpu: posteriorEntropies: ${eps.length} eps for ${m} samples x ${dim}`);
  }
  for (const f of factors) {
    if (f.index.length !== n) {
      throw new Error(`flowgpu: posteriorEntropies: ${f.index.length} labels for ${n} codes`);
    }
  }
  for (const i of source) {
    if (i >= n) throw new Error(`flowgpu: posteriorEntropies: sample source ${i} >= ${n} codes`);
  }
  const sd = sdOf(code);
  const nf = factors.length;
  // Members of each value, so a conditional sum only visits its subset.
  const members = factors.map((f) => {
    const lists = Array.from(f.counts, (c) => new Int32Array(c));
    const fill = new Int32Array(f.counts.length);
    for (let i = 0; i < n; i++) lists[f.index[i]][fill[f.index[i]]++] = i;
    return lists;
  });
  const hx = new Float64Array(dim);
  const hxGivenL = new Float64Array(nf * dim);
  const muK = new Float64Array(n), halfPrec = new Float64Array(n), logNorm = new Float64Array(n);
  const row = new Float64Array(n);
  const logq = (z: number, i: number) => logNorm[i] - halfPrec[i] * (z - muK[i]) ** 2;
  for (let k = 0; k < dim; k++) {
    for (let i = 0; i < n; i++) {
      const s = sd(i * dim + k);
      if (!(s > 0) || !Number.isFinite(mu[i * dim + k])) {
        throw new Error(
          `flowgpu: posteriorEntropies: code ${i} dim ${k} has μ ${mu[i * dim + k]}, σ ${s}`,
        );
      }
      muK[i] = mu[i * dim + k];
      halfPrec[i] = 0.5 / (s * s);
      logNorm[i] = -Math.log(s) - 0.5 * LOG_2PI;
    }
    let hSum = 0;
    const condSum = factors.map((f) => new Float64Array(f.counts.length));
    const condCount = factors.map((f) => new Int32Array(f.counts.length));
    for (let s = 0; s < m; s++) {
      const src = source[s];
      const z = muK[src] + Math.sqrt(0.5 / halfPrec[src]) * eps[s * dim + k];
      let max = -Infinity;
      for (let i = 0; i < n; i++) {
        const v = logq(z, i);
        row[i] = v;
        if (v > max) max = v;
      }
      let total = 0;
      for (let i = 0; i < n; i++) {
        // Math.exp of an argument that underflows takes a slow path (~10x): skip those, and with
        // them nothing above 1e-304 of the largest term.
        const x = row[i] - max;
        const e = x < -700 ? 0 : Math.exp(x);
        row[i] = e;
        total += e;
      }
      hSum -= max + Math.log(total / n);
      for (let f = 0; f < nf; f++) {
        const v = factors[f].index[src];
        const list = members[f][v];
        let sub = 0;
        for (let j = 0; j < list.length; j++) sub += row[list[j]];
        let lse: number;
        if (sub > 1e-250) lse = max + Math.log(sub);
        else {
          // The subset's terms are all ~575+ nats below the global max (σ's spanning hundreds
          // of nats), where skipped and subnormal terms would matter: redo it with its own max.
          let mx = -Infinity;
          for (let j = 0; j < list.length; j++) mx = Math.max(mx, logq(z, list[j]));
          let t = 0;
          for (let j = 0; j < list.length; j++) t += Math.exp(logq(z, list[j]) - mx);
          lse = mx + Math.log(t);
        }
        condSum[f][v] -= lse - Math.log(list.length);
        condCount[f][v]++;
      }
    }
    hx[k] = hSum / m;
    for (let f = 0; f < nf; f++) {
      let h = 0, w = 0;
      const counts = factors[f].counts;
      for (let v = 0; v < counts.length; v++) {
        if (condCount[f][v] === 0) continue;
        h += counts[v] * (condSum[f][v] / condCount[f][v]);
        w += counts[v];
      }
      hxGivenL[f * dim + k] = h / w;
    }
  }
  const mi = new Float64Array(nf * dim);
  for (let f = 0; f < nf; f++) {
    for (let k = 0; k < dim; k++) mi[f * dim + k] = hx[k] - hxGivenL[f * dim + k];
  }
  return { hx, hxGivenL, mi };
}

/** Options of the MIG estimator (§5.1). */
export interface MigOptions {
  /** Samples M per dim (default 10,000). */
  samples?: number;
  /** Cap N on the codes used, as a random subset (default 10,000). */
  maxCodes?: number;
  /** Seed of the subset and sample draws (default 1). */
  seed?: number;
}

/** Per-dim normalised mutual information of one code with each factor. */
export interface MutualInformation extends PosteriorEntropies {
  /** Î(L_f; X_k) = I / H(L_f) [factors·dim], factor-major. */
  info: Float64Array;
  /** H(L_f) in nats, on the codes used [factors]. */
  hl: Float64Array;
  /** Codes N used and samples M drawn. */
  n: number;
  m: number;
}

/** The codes kept under the cap: every index, or a seeded random subset of `cap`, sorted. */
function capIndices(n: number, cap: number, rng: Rng): Uint32Array {
  if (n <= cap) return Uint32Array.from({ length: n }, (_, i) => i);
  return rng.permutation(n).subarray(0, cap).sort();
}

function subsetCode(code: PosteriorCode, keep: Uint32Array): PosteriorCode {
  const { dim } = code;
  const pick = (a: ArrayLike<number>) => {
    const out = new Float64Array(keep.length * dim);
    for (let j = 0; j < keep.length; j++) {
      for (let k = 0; k < dim; k++) out[j * dim + k] = a[keep[j] * dim + k];
    }
    return out;
  };
  return {
    mu: pick(code.mu),
    dim,
    sigma: code.sigma && pick(code.sigma),
    logvar: code.logvar && pick(code.logvar),
    noise: code.noise,
  };
}

/**
 * The sources of M samples over N codes: every code ⌊M/N⌋ times and the remainder as distinct
 * random codes, so that each label value draws about its share M·p(v) (exactly, when N divides M).
 */
function sampleSources(n: number, m: number, rng: Rng): Uint32Array {
  const src = new Uint32Array(m);
  const full = Math.floor(m / n);
  let s = 0;
  for (let r = 0; r < full; r++) for (let i = 0; i < n; i++) src[s++] = i;
  if (s < m) {
    const perm = rng.permutation(n);
    for (let j = 0; s < m; j++) src[s++] = perm[j];
  }
  return src;
}

/** Shared preparation of codes and factors: the capped subset and the samples' draws. */
function prepare(
  codes: PosteriorCode[],
  labels: ArrayLike<number>[],
  opts: MigOptions,
  what: string,
): { codes: PosteriorCode[]; factors: IndexedFactor[]; source: Uint32Array; rng: Rng } {
  if (codes.length === 0) throw new Error(`flowgpu: ${what}: no codes`);
  if (labels.length === 0) throw new Error(`flowgpu: ${what}: no factors`);
  const n = codeCount(codes[0], what);
  for (const c of codes) {
    const ni = codeCount(c, what);
    if (ni !== n) throw new Error(`flowgpu: ${what}: codes of ${ni} and ${n} samples`);
  }
  for (const l of labels) {
    if (l.length !== n) throw new Error(`flowgpu: ${what}: ${l.length} labels for ${n} codes`);
  }
  const m = opts.samples ?? 10_000, cap = opts.maxCodes ?? 10_000;
  if (!(Number.isInteger(m) && m >= 1 && Number.isInteger(cap) && cap >= 1)) {
    throw new Error(`flowgpu: ${what}: samples ${m} and maxCodes ${cap} must be integers >= 1`);
  }
  const rng = new Rng(opts.seed ?? 1);
  const keep = capIndices(n, cap, rng);
  const kept = keep.length === n ? codes : codes.map((c) => subsetCode(c, keep));
  const factors = labels.map((l, f) =>
    indexFactor(keep.length === n ? l : Array.from(keep, (i) => l[i]), `${what}: factor ${f}`)
  );
  return { codes: kept, factors, source: sampleSources(keep.length, m, rng), rng };
}

/** Normalises the estimator's output by each factor's H(L) (§5.1: Î = I / H(L)). */
export function normaliseInfo(
  e: PosteriorEntropies,
  factors: IndexedFactor[],
  dim: number,
  n: number,
  m: number,
): MutualInformation {
  const hl = Float64Array.from(factors, (f) => f.entropy);
  const info = new Float64Array(e.mi.length);
  for (let f = 0; f < factors.length; f++) {
    for (let k = 0; k < dim; k++) info[f * dim + k] = e.mi[f * dim + k] / hl[f];
  }
  return { ...e, info, hl, n, m };
}

function estimate(
  code: PosteriorCode,
  factors: IndexedFactor[],
  source: Uint32Array,
  rng: Rng,
): MutualInformation {
  const eps = Float64Array.from(rng.normalArray(source.length * code.dim));
  const e = posteriorEntropies(code, factors, source, eps);
  return normaliseInfo(e, factors, code.dim, code.mu.length / code.dim, source.length);
}

/**
 * Î(L_f; X_k) for every factor f and dim k of one code, by the §5.1 estimator: N capped at
 * `maxCodes` (random subset), M samples per dim. Labels are integers (bucket continuous factors
 * first, §8 D13).
 */
export function mutualInformation(
  code: PosteriorCode,
  labels: ArrayLike<number>[],
  opts: MigOptions = {},
): MutualInformation {
  const p = prepare([code], labels, opts, "mutualInformation");
  return estimate(p.codes[0], p.factors, p.source, p.rng);
}

/**
 * Classic MIG of one code (β-TCVAE): mean over factors of the gap between the two largest Î over
 * its dims. A one-dim code has no second dim; its gap is Î itself.
 */
export function migGap(code: PosteriorCode, labels: ArrayLike<number>[], opts: MigOptions = {}): {
  mig: number;
  gaps: Float64Array;
  info: MutualInformation;
} {
  const info = mutualInformation(code, labels, opts);
  const { dim } = code;
  const gaps = new Float64Array(labels.length);
  for (let f = 0; f < labels.length; f++) {
    let a = -Infinity, b = -Infinity;
    for (let k = 0; k < dim; k++) {
      const v = info.info[f * dim + k];
      if (v > a) [a, b] = [v, a];
      else if (v > b) b = v;
    }
    gaps[f] = dim > 1 ? a - b : a;
  }
  return { mig: gaps.reduce((s, g) => s + g, 0) / labels.length, gaps, info };
}

/** An encoder's code for the multi-encoder MIG (§1.9): E for the unknown, S_i per labelled i. */
export interface MigEncoder extends PosteriorCode {
  name: string;
}

/** A factor with ground truth, the name of its own encoder, and whether it is labelled. */
export interface MigFactor {
  name: string;
  labels: ArrayLike<number>;
  /** Name of the encoder that should hold this factor (E for the unknown factor). */
  encoder: string;
  /** A labelled factor (counts in MIG_lab); false for the unknown one. Default true. */
  labeled?: boolean;
}

/** One factor's row of the multi-encoder MIG. */
export interface MigFactorScore {
  name: string;
  labeled: boolean;
  /** Î(L_i; X_own) = max over the own encoder's dims, and the dim that reaches it. */
  own: number;
  ownDim: number;
  /** max_{j≠own} Î(L_i; X_j), and that encoder's name ("" with a single encoder). */
  rival: number;
  rivalEncoder: string;
  /** own − rival. */
  gap: number;
}

/** Result of `mig`. */
export interface MigResult {
  /** Mean gap over labelled factors (NaN when there is none). */
  migLab: number;
  /** Mean gap over every factor given (the unknown's own encoder being E). */
  migAll: number;
  factors: MigFactorScore[];
  /** Per encoder (in the order given), Î [factors·dim] and the entropies. */
  encoders: { name: string; info: MutualInformation }[];
  n: number;
  m: number;
}

/**
 * The weakly-supervised multi-encoder MIG of §1.9: Î(L_i; X_j) = max_k Î(L_i; X_j^(k)) per
 * encoder j, the gap Î(L_i; X_own(i)) − max_{j≠own(i)} Î(L_i; X_j) per factor, MIG_lab = mean over
 * labelled factors, MIG_all = mean over all. Every encoder sees the same codes subset and sample
 * sources, so their Î are comparable. With a single encoder the rival term is 0.
 */
export function mig(
  encoders: MigEncoder[],
  factors: MigFactor[],
  opts: MigOptions = {},
): MigResult {
  const plan = planMig(encoders, factors, opts);
  return scoreMig(
    plan,
    plan.codes.map((c, j) => posteriorEntropies(c, plan.factors, plan.source, plan.eps[j])),
  );
}

/** What `mig` estimates: the capped codes, indexed factors, sample sources and noise draws. */
export interface MigPlan {
  encoders: MigEncoder[];
  factorSpecs: MigFactor[];
  /** The encoders' codes on the capped subset, in the order given. */
  codes: PosteriorCode[];
  factors: IndexedFactor[];
  source: Uint32Array;
  /** ε [m·dim] per encoder. */
  eps: Float64Array[];
}

/**
 * Checks `mig`'s inputs and draws its subset and samples (so that another estimator, such as
 * the GPU one, sees the very same draws); `scoreMig` turns the per-encoder entropies into MIG.
 */
export function planMig(
  encoders: MigEncoder[],
  factors: MigFactor[],
  opts: MigOptions = {},
): MigPlan {
  const names = encoders.map((e) => e.name);
  if (new Set(names).size !== names.length) {
    throw new Error(`flowgpu: mig: encoder names repeat (${names.join(", ")})`);
  }
  for (const f of factors) {
    if (!names.includes(f.encoder)) {
      throw new Error(`flowgpu: mig: factor ${f.name}'s encoder ${f.encoder} is not given`);
    }
  }
  const p = prepare(encoders, factors.map((f) => f.labels), opts, "mig");
  const eps = p.codes.map((c) => Float64Array.from(p.rng.normalArray(p.source.length * c.dim)));
  return {
    encoders,
    factorSpecs: factors,
    codes: p.codes,
    factors: p.factors,
    source: p.source,
    eps,
  };
}

/** MIG_lab, MIG_all and the per-factor rows from each encoder's estimator output. */
export function scoreMig(plan: MigPlan, entropies: PosteriorEntropies[]): MigResult {
  const { encoders, factorSpecs: factors } = plan;
  const names = encoders.map((e) => e.name);
  const n = plan.codes[0].mu.length / plan.codes[0].dim, m = plan.source.length;
  const est = entropies.map((e, j) => ({
    name: names[j],
    info: normaliseInfo(e, plan.factors, encoders[j].dim, n, m),
  }));
  const best = (j: number, f: number) => {
    const d = encoders[j].dim, info = est[j].info.info;
    let v = -Infinity, at = 0;
    for (let k = 0; k < d; k++) if (info[f * d + k] > v) [v, at] = [info[f * d + k], k];
    return { v, at };
  };
  const rows = factors.map((fac, f): MigFactorScore => {
    const o = names.indexOf(fac.encoder);
    const own = best(o, f);
    let rival = 0, rivalEncoder = "";
    let first = true;
    for (let j = 0; j < encoders.length; j++) {
      if (j === o) continue;
      const b = best(j, f).v;
      if (first || b > rival) [rival, rivalEncoder, first] = [b, names[j], false];
    }
    return {
      name: fac.name,
      labeled: fac.labeled ?? true,
      own: own.v,
      ownDim: own.at,
      rival,
      rivalEncoder,
      gap: own.v - rival,
    };
  });
  const mean = (rs: MigFactorScore[]) =>
    rs.length ? rs.reduce((s, r) => s + r.gap, 0) / rs.length : NaN;
  return {
    migLab: mean(rows.filter((r) => r.labeled)),
    migAll: mean(rows),
    factors: rows,
    encoders: est,
    n,
    m,
  };
}

/** Rows of `dim` code values: the sample count, checked against every factor's labels. */
function rows(
  codes: ArrayLike<number>,
  dim: number,
  labels: ArrayLike<number>[],
  what: string,
  spread = true,
) {
  const n = codes.length / dim;
  if (!Number.isInteger(dim) || dim < 1 || !Number.isInteger(n) || n < 2) {
    throw new Error(`flowgpu: ${what}: ${codes.length} values are not 2+ rows of ${dim} dims`);
  }
  if (labels.length === 0) throw new Error(`flowgpu: ${what}: no factors`);
  labels.forEach((l, f) => {
    if (l.length !== n) {
      throw new Error(`flowgpu: ${what}: factor ${f} has ${l.length} labels for ${n} codes`);
    }
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < n; i++) [lo, hi] = [Math.min(lo, l[i]), Math.max(hi, l[i])];
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
      throw new Error(`flowgpu: ${what}: factor ${f} has a label that is not finite`);
    }
    if (spread && lo === hi) {
      throw new Error(`flowgpu: ${what}: factor ${f} has a single value (${lo})`);
    }
  });
  return n;
}

/** Column means and standard deviations (population) of the rows `idx` of x [n·dim]. */
function columnStats(x: ArrayLike<number>, dim: number, idx: ArrayLike<number>) {
  const mean = new Float64Array(dim), sd = new Float64Array(dim);
  for (let j = 0; j < idx.length; j++) {
    for (let d = 0; d < dim; d++) mean[d] += x[idx[j] * dim + d];
  }
  for (let d = 0; d < dim; d++) mean[d] /= idx.length;
  for (let j = 0; j < idx.length; j++) {
    for (let d = 0; d < dim; d++) sd[d] += (x[idx[j] * dim + d] - mean[d]) ** 2;
  }
  for (let d = 0; d < dim; d++) sd[d] = Math.sqrt(sd[d] / idx.length);
  return { mean, sd };
}

/** Solves A w = b for symmetric positive definite A [k·k] by Cholesky (A is overwritten). */
function choleskySolve(a: Float64Array, b: Float64Array, k: number): Float64Array {
  for (let j = 0; j < k; j++) {
    let s = a[j * k + j];
    for (let p = 0; p < j; p++) s -= a[j * k + p] ** 2;
    if (!(s > 0)) throw new Error("flowgpu: ridge: normal matrix is not positive definite");
    const l = Math.sqrt(s);
    a[j * k + j] = l;
    for (let i = j + 1; i < k; i++) {
      let t = a[i * k + j];
      for (let p = 0; p < j; p++) t -= a[i * k + p] * a[j * k + p];
      a[i * k + j] = t / l;
    }
  }
  const w = Float64Array.from(b);
  for (let i = 0; i < k; i++) {
    for (let p = 0; p < i; p++) w[i] -= a[i * k + p] * w[p];
    w[i] /= a[i * k + i];
  }
  for (let i = k - 1; i >= 0; i--) {
    for (let p = i + 1; p < k; p++) w[i] -= a[p * k + i] * w[p];
    w[i] /= a[i * k + i];
  }
  return w;
}

/**
 * A ridge regression on standardised inputs and targets, fitted on the rows `train`: the weights
 * are then comparable across dims (DCI's importances) and `lambda` is relative to unit variance.
 * Constant input columns get weight 0.
 */
class Ridge {
  readonly w: Float64Array;
  readonly xs: { mean: Float64Array; sd: Float64Array };
  readonly yMean: number;
  readonly ySd: number;

  constructor(
    x: ArrayLike<number>,
    readonly dim: number,
    y: ArrayLike<number>,
    train: ArrayLike<number>,
    lambda: number,
  ) {
    this.xs = columnStats(x, dim, train);
    const ys = columnStats(y, 1, train);
    [this.yMean, this.ySd] = [ys.mean[0], ys.sd[0] || 1];
    const { mean, sd } = this.xs;
    const a = new Float64Array(dim * dim), b = new Float64Array(dim);
    const row = new Float64Array(dim);
    for (let j = 0; j < train.length; j++) {
      const i = train[j];
      for (let d = 0; d < dim; d++) row[d] = sd[d] > 0 ? (x[i * dim + d] - mean[d]) / sd[d] : 0;
      const t = (y[i] - this.yMean) / this.ySd;
      for (let p = 0; p < dim; p++) {
        b[p] += row[p] * t;
        for (let q = 0; q <= p; q++) a[p * dim + q] += row[p] * row[q];
      }
    }
    const nt = train.length;
    for (let p = 0; p < dim; p++) {
      b[p] /= nt;
      for (let q = 0; q <= p; q++) {
        a[p * dim + q] /= nt;
        a[q * dim + p] = a[p * dim + q];
      }
      a[p * dim + p] += lambda;
    }
    this.w = choleskySolve(a, b, dim);
  }

  /** Prediction for row i of x, in the target's units. */
  predict(x: ArrayLike<number>, i: number): number {
    const { mean, sd } = this.xs;
    let t = 0;
    for (let d = 0; d < this.dim; d++) {
      if (sd[d] > 0) t += this.w[d] * (x[i * this.dim + d] - mean[d]) / sd[d];
    }
    return this.yMean + this.ySd * t;
  }

  /** Coefficient of determination 1 − SSE/SST over the rows `idx` (SST about their own mean). */
  r2(x: ArrayLike<number>, y: ArrayLike<number>, idx: ArrayLike<number>): number {
    let m = 0;
    for (let j = 0; j < idx.length; j++) m += y[idx[j]];
    m /= idx.length;
    let sse = 0, sst = 0;
    for (let j = 0; j < idx.length; j++) {
      sse += (y[idx[j]] - this.predict(x, idx[j])) ** 2;
      sst += (y[idx[j]] - m) ** 2;
    }
    return sst > 0 ? 1 - sse / sst : 0;
  }
}

/** Seeded train/test split of n rows: the first ⌈f·n⌉ of a permutation train, the rest test. */
function split(n: number, fraction: number, seed: number, what: string) {
  if (!(fraction > 0 && fraction < 1)) {
    throw new Error(`flowgpu: ${what}: trainFraction must be in (0, 1), got ${fraction}`);
  }
  const perm = new Rng(seed).permutation(n);
  const nt = Math.ceil(fraction * n);
  if (nt < 2 || n - nt < 2) {
    throw new Error(`flowgpu: ${what}: ${n} rows leave fewer than 2 for train or test`);
  }
  return { train: perm.subarray(0, nt), test: perm.subarray(nt) };
}

/** 1 − entropy of p (non-negative weights, normalised here) in base `base`; 0 for all-zero p. */
function oneMinusEntropy(p: ArrayLike<number>, base: number): number {
  let s = 0;
  for (let i = 0; i < p.length; i++) s += p[i];
  if (!(s > 0)) return 0;
  let h = 0;
  for (let i = 0; i < p.length; i++) if (p[i] > 0) h -= (p[i] / s) * Math.log(p[i] / s);
  return 1 - h / Math.log(base);
}

/** Options of `dci`. */
export interface DciOptions {
  /** Fraction of samples that train the regressors (default 0.8); the rest measure informativeness. */
  trainFraction?: number;
  /** Seed of the split (default 1). */
  seed?: number;
  /** Ridge penalty on standardised inputs (default 1e-3). */
  lambda?: number;
}

/** Result of `dci`. */
export interface DciResult {
  /** Σ_d ρ_d D_d, ρ_d = the dim's share of total importance. */
  disentanglement: number;
  /** Mean over factors of C_f. */
  completeness: number;
  /** Mean over factors of the test R² of the regressor. */
  informativeness: number;
  /** Importance R [dim·factors], dim-major: |standardised ridge weight|. */
  importance: Float64Array;
  /** D_d per dim and C_f per factor. */
  perDim: Float64Array;
  perFactor: Float64Array;
  /** Test and train R² per factor. */
  testR2: Float64Array;
  trainR2: Float64Array;
}

/**
 * DCI (Eastwood & Williams 2018) with a per-factor ridge regression as the regressor: each factor's
 * value (its label, taken as ordinal, or a continuous value) is regressed on the standardised code
 * dims, and the importance of dim d for factor f is |w_df|, the absolute standardised weight. A
 * linear regressor rather than the paper's lasso or random forests, and rather than the gradient
 * boosting of disentanglement_lib, because it is closed-form and deterministic, has no
 * hyper-parameter that changes the ranking of dims, and scores a rotated code as mixed (its
 * weights spread over dims) where a per-dim tree would too. A categorical factor that is not
 * ordinal in its label order is only partly captured by a linear fit; bucket or reorder it.
 * D_d = 1 − H_F(P_d·), C_f = 1 − H_dim(P̃_·f) (entropies in base F and dim), informativeness =
 * test R² (1 is perfect, 0 is no better than the mean, negative is worse).
 */
export function dci(
  codes: ArrayLike<number>,
  dim: number,
  labels: ArrayLike<number>[],
  opts: DciOptions = {},
): DciResult {
  const n = rows(codes, dim, labels, "dci");
  const nf = labels.length;
  if (dim < 2 || nf < 2) {
    throw new Error(
      `flowgpu: dci: needs at least 2 code dims and 2 factors (got ${dim} and ${nf}): the entropies are in those bases`,
    );
  }
  const { train, test } = split(n, opts.trainFraction ?? 0.8, opts.seed ?? 1, "dci");
  const lambda = opts.lambda ?? 1e-3;
  const importance = new Float64Array(dim * nf);
  const testR2 = new Float64Array(nf), trainR2 = new Float64Array(nf);
  labels.forEach((y, f) => {
    const r = new Ridge(codes, dim, y, train, lambda);
    for (let d = 0; d < dim; d++) importance[d * nf + f] = Math.abs(r.w[d]);
    testR2[f] = r.r2(codes, y, test);
    trainR2[f] = r.r2(codes, y, train);
  });
  const scores = dciFromImportance(importance, dim, nf);
  return {
    ...scores,
    informativeness: testR2.reduce((a, v) => a + v, 0) / nf,
    importance,
    testR2,
    trainR2,
  };
}

/**
 * DCI's disentanglement and completeness from an importance matrix R [dim·factors] (dim-major,
 * non-negative): D_d = 1 − H_F(R_d· / Σ R_d·), D = Σ_d ρ_d D_d with ρ_d = Σ R_d· / Σ R;
 * C_f = 1 − H_dim(R_·f / Σ R_·f), C = mean_f C_f. A row or column of zeros scores 0.
 */
export function dciFromImportance(r: ArrayLike<number>, dim: number, nf: number): {
  disentanglement: number;
  completeness: number;
  perDim: Float64Array;
  perFactor: Float64Array;
} {
  if (r.length !== dim * nf || dim < 2 || nf < 2) {
    throw new Error(
      `flowgpu: dciFromImportance: ${r.length} importances are not ${dim} dims x ${nf} factors (both >= 2)`,
    );
  }
  for (let i = 0; i < r.length; i++) {
    if (!(r[i] >= 0)) throw new Error(`flowgpu: dciFromImportance: importance ${r[i]} < 0`);
  }
  const perDim = new Float64Array(dim), perFactor = new Float64Array(nf);
  let total = 0;
  for (let i = 0; i < r.length; i++) total += r[i];
  let disentanglement = 0;
  const row = new Float64Array(nf), col = new Float64Array(dim);
  for (let d = 0; d < dim; d++) {
    let rs = 0;
    for (let f = 0; f < nf; f++) rs += row[f] = r[d * nf + f];
    perDim[d] = oneMinusEntropy(row, nf);
    if (total > 0) disentanglement += (rs / total) * perDim[d];
  }
  for (let f = 0; f < nf; f++) {
    for (let d = 0; d < dim; d++) col[d] = r[d * nf + f];
    perFactor[f] = oneMinusEntropy(col, dim);
  }
  return {
    disentanglement,
    completeness: perFactor.reduce((a, v) => a + v, 0) / nf,
    perDim,
    perFactor,
  };
}

/** Result of `sap`. */
export interface SapResult {
  /** Mean over factors of the gap between the two best dims' scores. */
  score: number;
  /** Score matrix S [dim·factors], dim-major: R² of factor f on dim d alone. */
  matrix: Float64Array;
  /** Gap per factor. */
  gaps: Float64Array;
}

/**
 * SAP (Kumar et al. 2018): S[d,f] = R² of a one-variable linear regression of factor f on code dim
 * d (the squared Pearson correlation; the paper's score for continuous factors, used here for all,
 * labels taken as ordinal), SAP = mean over factors of the difference of the two largest S[·,f].
 * In-sample: a one-variable linear fit cannot overfit. A constant dim scores 0.
 */
export function sap(codes: ArrayLike<number>, dim: number, labels: ArrayLike<number>[]): SapResult {
  const n = rows(codes, dim, labels, "sap");
  if (dim < 2) throw new Error(`flowgpu: sap: needs at least 2 code dims (got ${dim})`);
  const nf = labels.length;
  const all = Uint32Array.from({ length: n }, (_, i) => i);
  const cs = columnStats(codes, dim, all);
  const matrix = new Float64Array(dim * nf), gaps = new Float64Array(nf);
  labels.forEach((y, f) => {
    const ys = columnStats(y, 1, all);
    const cov = new Float64Array(dim);
    for (let i = 0; i < n; i++) {
      const t = y[i] - ys.mean[0];
      for (let d = 0; d < dim; d++) cov[d] += (codes[i * dim + d] - cs.mean[d]) * t;
    }
    let a = -Infinity, b = -Infinity;
    for (let d = 0; d < dim; d++) {
      const r = cs.sd[d] > 0 ? cov[d] / n / (cs.sd[d] * ys.sd[0]) : 0;
      const v = r * r;
      matrix[d * nf + f] = v;
      if (v > a) [a, b] = [v, a];
      else if (v > b) b = v;
    }
    gaps[f] = a - b;
  });
  return { score: gaps.reduce((s, g) => s + g, 0) / nf, matrix, gaps };
}

/** Options of the leakage probes. */
export interface ProbeOptions {
  /** L2 penalty (logistic: on the mean loss; ridge: relative to unit variance). Default 1e-4. */
  l2?: number;
  /** Full-batch gradient steps of the logistic probe (default 300). */
  iterations?: number;
}

/** Result of `logisticProbe`. */
export interface ProbeResult {
  /** Test accuracy. */
  accuracy: number;
  trainAccuracy: number;
  /** Share of the test set's most frequent class: what a probe that learnt nothing scores. */
  chance: number;
  /** Final mean training loss (cross-entropy + penalty) and its gradient's max-norm. */
  loss: number;
  gradMax: number;
}

/**
 * The leakage probe of §5.4: multinomial logistic regression from codes to a class, trained on the
 * train codes and scored on the test codes. Inputs standardised on the train set; full-batch
 * Nesterov gradient descent with step 1/L, L = ½ λ_max(XᵀX/n) + l2 (a bound on the loss's
 * curvature, λ_max by power iteration), from zero, for a fixed number of steps: deterministic,
 * and the penalty makes the optimum unique. Accuracy near `chance` means no leakage.
 */
export function logisticProbe(
  train: { codes: ArrayLike<number>; labels: ArrayLike<number> },
  test: { codes: ArrayLike<number>; labels: ArrayLike<number> },
  dim: number,
  opts: ProbeOptions = {},
): ProbeResult {
  const n = rows(train.codes, dim, [train.labels], "logisticProbe");
  const nt = rows(test.codes, dim, [test.labels], "logisticProbe (test)", false);
  const classes = indexFactor(train.labels, "logisticProbe: train labels");
  const k = classes.values.length, p = dim + 1;
  const all = Uint32Array.from({ length: n }, (_, i) => i);
  const { mean, sd } = columnStats(train.codes, dim, all);
  const design = (x: ArrayLike<number>, m: number) => {
    const out = new Float64Array(m * p);
    for (let i = 0; i < m; i++) {
      for (let d = 0; d < dim; d++) {
        out[i * p + d] = sd[d] > 0 ? (x[i * dim + d] - mean[d]) / sd[d] : 0;
      }
      out[i * p + dim] = 1;
    }
    return out;
  };
  const x = design(train.codes, n), xt = design(test.codes, nt);
  const y = classes.index;
  // λ_max of XᵀX/n by power iteration (20 steps overestimate nothing; a 10 % margin covers it).
  let v = new Float64Array(p).fill(1 / Math.sqrt(p)), lmax = 1;
  for (let it = 0; it < 20; it++) {
    const u = new Float64Array(p);
    for (let i = 0; i < n; i++) {
      let t = 0;
      for (let j = 0; j < p; j++) t += x[i * p + j] * v[j];
      for (let j = 0; j < p; j++) u[j] += x[i * p + j] * t / n;
    }
    lmax = Math.sqrt(u.reduce((s, a) => s + a * a, 0));
    v = u.map((a) => a / lmax);
  }
  const l2 = opts.l2 ?? 1e-4;
  const step = 1 / (0.5 * 1.1 * lmax + l2);
  const logits = new Float64Array(k);
  // Loss and gradient of W [p·k] on the train set.
  const lossGrad = (w: Float64Array, g: Float64Array) => {
    g.fill(0);
    let loss = 0;
    for (let i = 0; i < n; i++) {
      let max = -Infinity;
      for (let c = 0; c < k; c++) {
        let t = 0;
        for (let j = 0; j < p; j++) t += x[i * p + j] * w[j * k + c];
        logits[c] = t;
        max = Math.max(max, t);
      }
      let z = 0;
      for (let c = 0; c < k; c++) z += Math.exp(logits[c] - max);
      loss += max + Math.log(z) - logits[y[i]];
      for (let c = 0; c < k; c++) {
        const r = (Math.exp(logits[c] - max) / z - (c === y[i] ? 1 : 0)) / n;
        for (let j = 0; j < p; j++) g[j * k + c] += r * x[i * p + j];
      }
    }
    loss /= n;
    for (let j = 0; j < p * k; j++) {
      loss += 0.5 * l2 * w[j] * w[j];
      g[j] += l2 * w[j];
    }
    return loss;
  };
  let w = new Float64Array(p * k), prev = new Float64Array(p * k);
  const look = new Float64Array(p * k), g = new Float64Array(p * k);
  const iterations = opts.iterations ?? 300;
  for (let it = 1; it <= iterations; it++) {
    const beta = (it - 1) / (it + 2);
    for (let j = 0; j < p * k; j++) look[j] = w[j] + beta * (w[j] - prev[j]);
    lossGrad(look, g);
    prev = w;
    w = look.map((a, j) => a - step * g[j]);
  }
  const loss = lossGrad(w, g);
  const gradMax = g.reduce((s, a) => Math.max(s, Math.abs(a)), 0);
  const predict = (xx: Float64Array, i: number) => {
    let best = 0, bv = -Infinity;
    for (let c = 0; c < k; c++) {
      let t = 0;
      for (let j = 0; j < p; j++) t += xx[i * p + j] * w[j * k + c];
      if (t > bv) [bv, best] = [t, c];
    }
    return classes.values[best];
  };
  let ok = 0, okTrain = 0;
  for (let i = 0; i < nt; i++) if (predict(xt, i) === test.labels[i]) ok++;
  for (let i = 0; i < n; i++) if (predict(x, i) === train.labels[i]) okTrain++;
  const freq = new Map<number, number>();
  for (let i = 0; i < nt; i++) freq.set(test.labels[i], (freq.get(test.labels[i]) ?? 0) + 1);
  return {
    accuracy: ok / nt,
    trainAccuracy: okTrain / n,
    chance: Math.max(...freq.values()) / nt,
    loss,
    gradMax,
  };
}

/**
 * The linear leakage probe for a continuous target (§2.4: μ1 → colour): ridge regression on the
 * standardised train codes, scored by R² on the test codes (near 0 means no leakage).
 */
export function ridgeProbe(
  train: { codes: ArrayLike<number>; targets: ArrayLike<number> },
  test: { codes: ArrayLike<number>; targets: ArrayLike<number> },
  dim: number,
  opts: { l2?: number } = {},
): { r2: number; trainR2: number } {
  const n = rows(train.codes, dim, [train.targets], "ridgeProbe");
  const nt = rows(test.codes, dim, [test.targets], "ridgeProbe (test)", false);
  const all = Uint32Array.from({ length: n }, (_, i) => i);
  const r = new Ridge(train.codes, dim, train.targets, all, opts.l2 ?? 1e-4);
  const allTest = Uint32Array.from({ length: nt }, (_, i) => i);
  return {
    r2: r.r2(test.codes, test.targets, allTest),
    trainR2: r.r2(train.codes, train.targets, all),
  };
}

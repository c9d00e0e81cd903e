// The Cahn-Hilliard-Cook simulator (glow-funs.md §3.1): the GPU stepper that advances a batch
// of trajectories in parallel (shaders/chc.wgsl), a float64 TypeScript reference of the same
// scheme with the same counter-based noise, and the measurements the tests and the CLI use
// (free energy, characteristic length, quantisation).
import { f32, readBuffer, sync, upload } from "../gpu/encoder.ts";
import { kernel } from "../gpu/kernel.ts";
import { acquireBuffer, releaseBuffer } from "../gpu/pool.ts";
import { Rng } from "../util/rng.ts";

/** The physical and numerical parameters of one simulation. */
export interface ChcPhysics {
  /** Grid side in sites (periodic, Δx = 1); a multiple of 4. */
  size: number;
  gamma: number;
  sigma: number;
  dt: number;
}

const FILE = "chc.wgsl";
const MU = kernel(FILE, "chc_mu", {
  params: "@0 uniform cp",
  u: "@1 read mu_u",
  mu: "@2 read_write mu_out",
  step: "@3 read_write mu_step",
});
const UPDATE = kernel(FILE, "chc_update", {
  params: "@0 uniform cp",
  u: "@1 read_write up_u",
  mu: "@2 read up_mu",
  step: "@3 read up_step",
  seed: "@4 read up_seed",
});

// ---- counter-based noise, shared with the WGSL ----

/** pcg4d of four u32 words (Jarzynski & Olano 2020), as in shaders/chc.wgsl. */
export function pcg4d(
  a: number,
  b: number,
  c: number,
  d: number,
): [number, number, number, number] {
  let x = (Math.imul(a, 1664525) + 1013904223) >>> 0;
  let y = (Math.imul(b, 1664525) + 1013904223) >>> 0;
  let z = (Math.imul(c, 1664525) + 1013904223) >>> 0;
  let w = (Math.imul(d, 1664525) + 1013904223) >>> 0;
  x = (x + Math.imul(y, w)) >>> 0;
  y = (y + Math.imul(z, x)) >>> 0;
  z = (z + Math.imul(x, y)) >>> 0;
  w = (w + Math.imul(y, z)) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  y = (y ^ (y >>> 16)) >>> 0;
  z = (z ^ (z >>> 16)) >>> 0;
  w = (w ^ (w >>> 16)) >>> 0;
  x = (x + Math.imul(y, w)) >>> 0;
  y = (y + Math.imul(z, x)) >>> 0;
  z = (z + Math.imul(x, y)) >>> 0;
  w = (w + Math.imul(y, z)) >>> 0;
  return [x, y, z, w];
}

/** ζ in (−1, 1) from a hash word: an odd multiple of 2^-24, exactly as the WGSL computes it. */
export function zetaOf(h: number): number {
  return ((h >>> 8) * 2 + 1 - 16777216) / 16777216;
}

/** The noise ζ of site `site` (row-major) at step `step` (1-based) of a trajectory. */
export function noiseAt(seed: readonly [number, number], step: number, site: number): number {
  const h = pcg4d(site >>> 2, step, seed[0], seed[1]);
  return zetaOf(h[site & 3]);
}

/**
 * The two seed words of trajectory (ic, run) of a data set seeded with `base`: the spec's
 * seed = hash(IC index, run index), so a trajectory never depends on the batch it runs in.
 */
export function trajectorySeed(base: number, ic: number, run: number): [number, number] {
  const [a, b] = pcg4d(ic, run, base, 0x43484321);
  return [a, b];
}

/**
 * Initial condition u(0) = ū + A·η, η ~ U[−1, 1] per site, from the repo's seeded RNG on the CPU
 * (seeded by hash(base, ic), so an IC is the same whatever the IC count).
 */
export function initialCondition(
  base: number,
  ic: number,
  size: number,
  amplitude: number,
  meanMax: number,
): { u: Float32Array; mean: number } {
  const rng = new Rng(pcg4d(ic, base, 0x49434943, 7)[0]);
  const mean = (2 * rng.next() - 1) * meanMax;
  const u = new Float32Array(size * size);
  for (let i = 0; i < u.length; i++) u[i] = mean + amplitude * (2 * rng.next() - 1);
  return { u, mean };
}

// ---- GPU stepper ----

/**
 * A batch of trajectories on the GPU: `count` planes of size², each with its own seed, advanced
 * together. Steps are encoded without waiting; `read()` flushes and returns the fields.
 */
export class ChcBatch {
  readonly count: number;
  readonly phys: ChcPhysics;
  /** Steps taken so far (the next step's noise uses step + 1). */
  step = 0;
  #u: GPUBuffer;
  #mu: GPUBuffer;
  #step: GPUBuffer;
  #seed: GPUBuffer;
  #params: (number | { f: number })[];
  #constants: Record<string, number>;

  constructor(phys: ChcPhysics, u0: Float32Array, seeds: Uint32Array) {
    const plane = phys.size * phys.size;
    if (phys.size % 4 !== 0 || phys.size < 8) {
      throw new Error(`flowgpu: chc grid size ${phys.size} must be a multiple of 4, at least 8`);
    }
    if (u0.length % plane !== 0 || seeds.length !== 2 * (u0.length / plane)) {
      throw new Error(
        `flowgpu: chc batch: ${u0.length} values and ${seeds.length / 2} seeds for planes of ` +
          `${plane}`,
      );
    }
    this.count = u0.length / plane;
    this.phys = phys;
    this.#u = acquireBuffer(u0.byteLength);
    this.#mu = acquireBuffer(u0.byteLength);
    this.#step = acquireBuffer(16);
    this.#seed = acquireBuffer(seeds.byteLength);
    upload(this.#u, u0);
    upload(this.#step, new Uint32Array(4));
    upload(this.#seed, seeds);
    this.#params = [u0.length / 4, f32(phys.gamma), f32(phys.dt), f32(phys.sigma)];
    this.#constants = { W4: phys.size / 4, H: phys.size };
  }

  /** Encode `n` Euler steps (two dispatches each); nothing is submitted. */
  advance(n: number): void {
    const launch = {
      params: this.#params,
      constants: this.#constants,
      threads: this.#params[0] as number,
    };
    for (let s = 0; s < n; s++) {
      MU.run({ u: this.#u, mu: this.#mu, step: this.#step }, launch);
      UPDATE.run({ u: this.#u, mu: this.#mu, step: this.#step, seed: this.#seed }, launch);
    }
    this.step += n;
  }

  /** Submit the encoded steps and wait for them. */
  async sync(): Promise<void> {
    await sync();
  }

  /** The fields now, [count, size, size] (flushes and waits). */
  async read(): Promise<Float32Array> {
    const bytes = this.count * this.phys.size * this.phys.size * 4;
    return new Float32Array(await readBuffer(this.#u, bytes));
  }

  /** Return the buffers to the pool. */
  release(): void {
    for (const b of [this.#u, this.#mu, this.#step, this.#seed]) releaseBuffer(b);
  }
}

// ---- float64 reference of the same scheme ----

/**
 * `steps` Euler steps of one field in float64, in place, with the GPU's noise; `from` is the
 * number of steps already taken (noise of step n uses n, 1-based).
 */
export function referenceSteps(
  u: Float64Array,
  phys: ChcPhysics,
  seed: readonly [number, number],
  steps: number,
  from = 0,
): void {
  const n = phys.size;
  const mu = new Float64Array(u.length);
  const z = new Float64Array(u.length);
  for (let s = 1; s <= steps; s++) {
    for (let y = 0; y < n; y++) {
      const up = ((y + n - 1) % n) * n, dn = ((y + 1) % n) * n, row = y * n;
      for (let x = 0; x < n; x++) {
        const l = (x + n - 1) % n, r = (x + 1) % n, c = u[row + x];
        const lap = u[row + l] + u[row + r] + u[up + x] + u[dn + x] - 4 * c;
        mu[row + x] = c * c * c - c - phys.gamma * lap;
      }
    }
    if (phys.sigma !== 0) {
      for (let i = 0; i < u.length; i += 4) {
        const h = pcg4d(i >>> 2, from + s, seed[0], seed[1]);
        for (let j = 0; j < 4; j++) z[i + j] = zetaOf(h[j]);
      }
    }
    for (let y = 0; y < n; y++) {
      const up = ((y + n - 1) % n) * n, dn = ((y + 1) % n) * n, row = y * n;
      for (let x = 0; x < n; x++) {
        const l = (x + n - 1) % n, r = (x + 1) % n, c = mu[row + x];
        const lap = mu[row + l] + mu[row + r] + mu[up + x] + mu[dn + x] - 4 * c;
        u[row + x] += phys.dt * (lap + phys.sigma * z[row + x]);
      }
    }
  }
}

// ---- measurements ----

/** F[u] = Σ ¼(u²−1)² + (γ/2)|∇_h u|² with forward differences, of which the scheme is the flow. */
export function freeEnergy(u: ArrayLike<number>, size: number, gamma: number): number {
  let f = 0;
  for (let y = 0; y < size; y++) {
    const row = y * size, dn = ((y + 1) % size) * size;
    for (let x = 0; x < size; x++) {
      const c = u[row + x];
      const dx = u[row + ((x + 1) % size)] - c, dy = u[dn + x] - c;
      f += 0.25 * (c * c - 1) ** 2 + 0.5 * gamma * (dx * dx + dy * dy);
    }
  }
  return f;
}

const twiddles = new Map<number, { cos: Float64Array; sin: Float64Array }>();

/**
 * Characteristic length 2π·ΣS(k) / Σ|k|S(k) of one size² field, S the structure factor (|DFT|²
 * of the field less its mean, k = 0 left out), by a plain separable DFT.
 */
export function characteristicLength(u: ArrayLike<number>, size: number): number {
  const n = size;
  let tw = twiddles.get(n);
  if (!tw) {
    tw = { cos: new Float64Array(n), sin: new Float64Array(n) };
    for (let k = 0; k < n; k++) {
      tw.cos[k] = Math.cos((2 * Math.PI * k) / n);
      tw.sin[k] = -Math.sin((2 * Math.PI * k) / n);
    }
    twiddles.set(n, tw);
  }
  let mean = 0;
  for (let i = 0; i < n * n; i++) mean += u[i];
  mean /= n * n;
  // Rows first: re/im[y][kx].
  const re = new Float64Array(n * n), im = new Float64Array(n * n);
  for (let y = 0; y < n; y++) {
    for (let k = 0; k < n; k++) {
      let a = 0, b = 0;
      for (let x = 0; x < n; x++) {
        const v = u[y * n + x] - mean, t = (k * x) % n;
        a += v * tw.cos[t];
        b += v * tw.sin[t];
      }
      re[y * n + k] = a;
      im[y * n + k] = b;
    }
  }
  let sumS = 0, sumKS = 0;
  for (let kx = 0; kx < n; kx++) {
    for (let ky = 0; ky < n; ky++) {
      if (kx === 0 && ky === 0) continue;
      let a = 0, b = 0;
      for (let y = 0; y < n; y++) {
        const t = (ky * y) % n, c = tw.cos[t], s = tw.sin[t];
        const r = re[y * n + kx], i = im[y * n + kx];
        a += r * c - i * s;
        b += r * s + i * c;
      }
      const S = a * a + b * b;
      const fx = kx < n / 2 ? kx : kx - n, fy = ky < n / 2 ? ky : ky - n;
      sumS += S;
      sumKS += ((2 * Math.PI) / n) * Math.hypot(fx, fy) * S;
    }
  }
  return sumKS > 0 ? (2 * Math.PI * sumS) / sumKS : NaN;
}

/** 8-bit pixels: round(clip((u + 1)/2, 0, 1)·255). */
export function quantize(u: ArrayLike<number>, out: Uint8Array, offset = 0): void {
  for (let i = 0; i < u.length; i++) {
    const v = (u[i] + 1) / 2;
    out[offset + i] = Math.round((v < 0 ? 0 : v > 1 ? 1 : v) * 255);
  }
}

// Random numbers made on the GPU (vae-disentangle.md §7 row 31): a counter-based generator
// (Philox-4x32-10) writes uniforms and standard normals straight into tensors, and
// `reparameterize` draws z = mu + exp(logvar / 2) eps in one op whose eps is a constant. A draw
// is a pure function of (seed, counter); a `GpuRng` keeps both (the counter also on the GPU, so a
// draw needs no upload) and advances the counter by one per draw, so a run that stores
// (seed, counter) in its checkpoint draws the same numbers after a resume.
import { upload } from "../gpu/encoder.ts";
import { kernel } from "../gpu/kernel.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, type Shape, Tensor } from "./tensor.ts";

const FILE = "random.wgsl";
const U = "@0 uniform pr";
const STATE = "@1 read_write rs_state";
const UNIFORM = kernel(FILE, "draw_uniform", {
  params: U,
  state: STATE,
  out: "@2 read_write rd_out",
});
const NORMAL = kernel(FILE, "draw_normal", {
  params: U,
  state: STATE,
  out: "@2 read_write rd_out",
});
const REPARAM_DRAW = kernel(FILE, "reparam_draw", {
  params: U,
  state: STATE,
  mu: "@2 read rp_mu",
  logvar: "@3 read rp_lv",
  z: "@4 read_write rp_z",
  eps: "@5 read_write rp_eps",
});
const REPARAM = kernel(FILE, "reparam", {
  params: U,
  eps: "@1 read re_eps",
  mu: "@2 read rp_mu",
  logvar: "@3 read rp_lv",
  z: "@4 read_write rp_z",
});
const REPARAM_BWD = kernel(FILE, "reparam_bwd", {
  params: U,
  g: "@1 read rb_g",
  logvar: "@2 read rb_lv",
  eps: "@3 read rb_eps",
  dlogvar: "@4 read_write rb_dlv",
});

const TWO32 = 2 ** 32;

function checkU53(what: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new Error(`flowgpu: GpuRng: ${what} ${v} is not an integer in [0, 2^53)`);
  }
}

// reparameterize draws through the generator's private state; this is its one way in.
let takeDraw: (rng: GpuRng) => { state: Tensor; slot: number };

/**
 * A Philox-4x32-10 stream on the GPU: `uniform` and `normal` fill new tensors, each draw with the
 * next counter. Draw k of `new GpuRng(seed, c)` equals the first draw of
 * `new GpuRng(seed, c + k)`, whatever its kind or size; element e of a draw depends only on
 * (seed, counter, e). Holds a small persistent buffer: `release()` it when done.
 */
export class GpuRng {
  /** The 64-bit Philox key, as an integer in [0, 2^53). */
  readonly seed: number;
  #counter: number;
  #state: Tensor;

  static {
    takeDraw = (rng) => {
      const slot = rng.#counter % 2;
      rng.#counter++;
      return { state: rng.#state, slot };
    };
  }

  /** A stream for `seed` whose next draw uses `counter` (both integers in [0, 2^53)). */
  constructor(seed: number, counter = 0) {
    checkU53("seed", seed);
    this.seed = seed;
    this.#counter = 0;
    this.#state = Tensor.persistent([8], "GpuRng state");
    this.seek(counter);
  }

  /** The counter of the next draw (draws so far, plus the starting counter); kept on the CPU. */
  get counter(): number {
    return this.#counter;
  }

  /** Make `counter` the next draw's counter (e.g. on resume from a checkpoint). */
  seek(counter: number): void {
    checkU53("counter", counter);
    this.#counter = counter;
    const s = this.seed;
    const hi = (v: number) => Math.floor(v / TWO32);
    const words = Uint32Array.of(s % TWO32, hi(s), counter % TWO32, hi(counter));
    // The slot the next draw reads: the counter's parity, as takeDraw picks it.
    upload(this.#state.buffer, words, (counter % 2) * 16);
  }

  /** Uniforms in (0, 1): odd multiples of 2^-24 (23 random bits each), mean exactly 1/2. */
  uniform(shape: Shape): Tensor {
    return this.#fill(shape, UNIFORM, "uniform");
  }

  /**
   * Standard normals by Box-Muller on the uniforms (lanes 2k, 2k + 1 of an element group of four
   * share a pair); |value| <= 5.77, the tail beyond that has probability 8e-9.
   */
  normal(shape: Shape): Tensor {
    return this.#fill(shape, NORMAL, "normal");
  }

  #fill(shape: Shape, k: typeof UNIFORM, name: string): Tensor {
    const out = Tensor.empty(shape, name);
    const { state, slot } = takeDraw(this);
    k.run({ state, out }, { params: [out.size, slot], threads: Math.ceil(out.size / 4) });
    return out;
  }

  /** Return the state buffer to the pool. */
  release(): void {
    this.#state.release();
  }
}

/**
 * Reparameterised sample z = mu + exp(logvar / 2) eps of N(mu, e^logvar) per element, as one op
 * whose eps is a constant: the gradients are dmu = g, dlogvar = g exp(logvar / 2) eps / 2. eps is
 * drawn inside the kernel from `noise` (a GpuRng: the same numbers as `noise.normal(mu.shape)`
 * would give, and one draw of its counter), or given as a tensor of mu's shape (e.g. stratified
 * noise, or one draw shared by several samples).
 */
export function reparameterize(mu: Tensor, logvar: Tensor, noise: GpuRng | Tensor): Tensor {
  const op = "reparameterize";
  const checked: [string, Tensor][] = [["logvar", logvar]];
  if (noise instanceof Tensor) checked.push(["eps", noise]);
  for (const [name, t] of checked) {
    if (t.shape.length !== mu.shape.length || t.shape.some((d, i) => d !== mu.shape[i])) {
      throw new Error(
        `flowgpu: ${op}: ${name} ${fmtShape(t.shape)} does not match mu ${fmtShape(mu.shape)}`,
      );
    }
  }
  const n = mu.size;
  const threads = Math.ceil(n / 4);
  const z = Tensor.empty(mu.shape, op);
  let eps: Tensor;
  if (noise instanceof Tensor) {
    eps = noise;
    REPARAM.run({ eps, mu, logvar, z }, { params: [n, 0], threads });
  } else {
    eps = Tensor.empty(mu.shape, `${op} eps`);
    const { state, slot } = takeDraw(noise);
    REPARAM_DRAW.run({ state, mu, logvar, z, eps }, { params: [n, slot], threads });
  }
  const out = record(z, [mu, logvar], (g) => {
    if (logvar.requiresGrad) {
      const dlogvar = Tensor.empty(mu.shape, `${op}' logvar`);
      REPARAM_BWD.run({ g, logvar, eps, dlogvar }, { params: [n, 0], threads });
      accumulate(logvar, dlogvar);
    }
    accumulate(mu, g);
  });
  if (!out.requiresGrad && eps !== noise) eps.release();
  return out;
}

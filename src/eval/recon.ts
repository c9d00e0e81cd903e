// Reconstruction error of vae-disentangle.md §5.2 and the plain score metrics of §5.4: the
// Inception score (§3.7), Stage-I code drift (§1.9) and the retargeting error. Forward only, in
// float64 on the CPU; the caller reads model outputs back once per evaluation batch.

/**
 * Per-pixel mean squared error accumulated over evaluation batches, reported on both scales
 * §5.2 asks for: [0, 1] (the headline, §8 D10) and [−1, 1] (= 4× the former).
 */
export class MseMeter {
  #sum = 0;
  #count = 0;

  /**
   * @param signed inputs are on [−1, 1] (the project's image convention, default) rather than
   * [0, 1].
   */
  constructor(readonly signed = true) {}

  /** Adds a batch: originals `x` and reconstructions `xHat` of the same length. */
  add(x: ArrayLike<number>, xHat: ArrayLike<number>): void {
    if (x.length !== xHat.length || x.length === 0) {
      throw new Error(`flowgpu: reconMse: ${x.length} pixels against ${xHat.length}`);
    }
    let s = 0;
    for (let i = 0; i < x.length; i++) s += (x[i] - xHat[i]) ** 2;
    if (!Number.isFinite(s)) throw new Error("flowgpu: reconMse: a non-finite pixel");
    this.#sum += s;
    this.#count += x.length;
  }

  /** Pixels added so far. */
  get pixels(): number {
    return this.#count;
  }

  /** MSE on [0, 1] and on [−1, 1]. */
  result(): { mse01: number; mseSigned: number; pixels: number } {
    if (this.#count === 0) throw new Error("flowgpu: reconMse: no pixels added");
    const m = this.#sum / this.#count;
    return {
      mse01: this.signed ? m / 4 : m,
      mseSigned: this.signed ? m : 4 * m,
      pixels: this.#count,
    };
  }
}

/** `MseMeter` on one batch. */
export function reconMse(
  x: ArrayLike<number>,
  xHat: ArrayLike<number>,
  opts: { signed?: boolean } = {},
): { mse01: number; mseSigned: number; pixels: number } {
  const m = new MseMeter(opts.signed ?? true);
  m.add(x, xHat);
  return m.result();
}

/**
 * Inception score exp(E_x KL(p(y|x) ‖ p(y))) of class probabilities [n·k] (rows of a frozen
 * classifier's softmax), p(y) the mean row; one split (§5.4). Rows must be probability vectors.
 */
export function inceptionScore(probs: ArrayLike<number>, k: number): number {
  const n = probs.length / k;
  if (!Number.isInteger(k) || k < 2 || !Number.isInteger(n) || n < 1) {
    throw new Error(`flowgpu: inceptionScore: ${probs.length} values are not rows of ${k} classes`);
  }
  const py = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let c = 0; c < k; c++) {
      const p = probs[i * k + c];
      if (!(p >= 0)) throw new Error(`flowgpu: inceptionScore: row ${i} has probability ${p}`);
      s += p;
      py[c] += p / n;
    }
    if (Math.abs(s - 1) > 1e-3) {
      throw new Error(`flowgpu: inceptionScore: row ${i} sums to ${s}, not 1 (pass softmax rows)`);
    }
  }
  let kl = 0;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < k; c++) {
      const p = probs[i * k + c];
      if (p > 0) kl += p * Math.log(p / py[c]);
    }
  }
  return Math.exp(kl / n);
}

/** Stage-I code drift (§1.9): mean over samples of ‖code_t − code_{t−1}‖², codes [n·dim]. */
export function codeDrift(prev: ArrayLike<number>, cur: ArrayLike<number>, dim: number): number {
  const n = cur.length / dim;
  if (prev.length !== cur.length || !Number.isInteger(n) || n < 1) {
    throw new Error(
      `flowgpu: codeDrift: ${prev.length} and ${cur.length} values are not equal rows of ${dim}`,
    );
  }
  let s = 0;
  for (let i = 0; i < cur.length; i++) s += (cur[i] - prev[i]) ** 2;
  return s / n;
}

/** Retargeting error (§5.4, StickMan): MSE and MAE over joint coordinates, in generator units. */
export function retargetError(
  pred: ArrayLike<number>,
  truth: ArrayLike<number>,
): { mse: number; mae: number } {
  if (pred.length !== truth.length || pred.length === 0) {
    throw new Error(`flowgpu: retargetError: ${pred.length} coordinates against ${truth.length}`);
  }
  let se = 0, ae = 0;
  for (let i = 0; i < pred.length; i++) {
    const d = pred[i] - truth[i];
    se += d * d;
    ae += Math.abs(d);
  }
  return { mse: se / pred.length, mae: ae / pred.length };
}

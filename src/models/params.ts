// Named parameters of a model, in one flat map: the optimizer takes its trainable tensors and a
// checkpoint saves all of them by name. Fixed tensors (an LU permutation, masks) live here too,
// so a checkpoint restores them exactly rather than re-deriving them from a seed.
import type { Rng } from "../data/rng.ts";
import { type Shape, Tensor } from "../ops/tensor.ts";

export class Params {
  readonly tensors = new Map<string, Tensor>();
  readonly trainable = new Set<string>();
  /** False until the first forward pass ran the data-dependent (actnorm) initialisation. */
  initialized = false;

  constructor(readonly rng: Rng) {}

  add(name: string, data: ArrayLike<number>, shape: Shape, trainable = true): Tensor {
    if (this.tensors.has(name)) throw new Error(`flowgpu: parameter ${name} defined twice`);
    const t = trainable ? Tensor.param(data, shape, name) : Tensor.constant(data, shape, name);
    this.tensors.set(name, t);
    if (trainable) this.trainable.add(name);
    return t;
  }

  zeros(name: string, shape: Shape): Tensor {
    return this.add(name, new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
  }

  normal(name: string, shape: Shape, std: number): Tensor {
    return this.add(name, this.rng.normalArray(shape.reduce((a, b) => a * b, 1), std), shape);
  }

  /** The trainable tensors, in definition order. */
  list(): Tensor[] {
    return [...this.tensors].filter(([k]) => this.trainable.has(k)).map(([, t]) => t);
  }

  count(): number {
    return this.list().reduce((a, t) => a + t.size, 0);
  }

  release(): void {
    for (const t of this.tensors.values()) t.release();
    this.tensors.clear();
  }
}

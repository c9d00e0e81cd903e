// A Tensor is a pooled f32 GPU buffer with a shape (row-major, NCHW for images), an optional
// gradient, and a flag saying whether it wants one. Values reach the CPU only through `read()`.
import { readBuffer, readBuffers, upload } from "../gpu/encoder.ts";
import { acquireBuffer, releaseBuffer } from "../gpu/pool.ts";

/** Dimensions, outermost first (row-major; images are [N, C, H, W]). */
export type Shape = readonly number[];

// tape.ts sets this (it owns the fill kernel); a cycle-free way for zeroGrad to clear a slot.
let zeroSlot: (t: Tensor) => void = () => {
  throw new Error("flowgpu: tape not loaded");
};
export function setSlotZeroer(f: (t: Tensor) => void): void {
  zeroSlot = f;
}

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

const ceil16 = (bytes: number) => Math.ceil(bytes / 16) * 16;

export function fmtShape(shape: Shape): string {
  return `[${shape.join(", ")}]`;
}

function checkShape(shape: Shape): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new Error(
        `flowgpu: invalid shape ${fmtShape(shape)} (dimensions must be integers >= 0)`,
      );
    }
  }
}

// Every tensor made by an op is owned by the tape until it is cleared (see tape.ts).
export const owned = new Set<Tensor>();
export function own(t: Tensor): Tensor {
  owned.add(t);
  return t;
}

/**
 * An f32 GPU buffer (from the pool, or a view into another tensor's) with a shape and, after
 * `backward`, a gradient. Op results belong to the tape and are released when it is cleared
 * unless kept; parameters and optimizer state are persistent.
 */
export class Tensor {
  /** Dimensions, row-major. */
  readonly shape: Shape;
  /** Number of elements (the product of `shape`). */
  readonly size: number;
  /** Whether `backward` computes a gradient for this tensor (and ops record their inputs). */
  requiresGrad: boolean;
  /** The gradient of the last `backward`, same shape; undefined until then or after zeroGrad. */
  grad?: Tensor;
  /** Name for error messages: the op that made it, or the parameter name. */
  name: string;
  /** Long-lived tensors (parameters, optimizer state) are never released by the tape. */
  readonly persistent: boolean;
  /**
   * Where this tensor's gradient lives when it is a slice of a parameter group's flat gradient
   * buffer (see src/nn/store.ts): backward adds into it instead of allocating.
   */
  gradSlot?: Tensor;
  #base?: Tensor;
  #offset: number;
  #buffer: GPUBuffer | undefined;
  /** Parameters declared before their group's flat buffer exists bind to it on first use. */
  #pending?: () => void;

  private constructor(
    shape: Shape,
    requiresGrad: boolean,
    name: string,
    persistent: boolean,
    base?: Tensor | "deferred",
    offset = 0,
  ) {
    checkShape(shape);
    this.shape = [...shape];
    this.size = numel(shape);
    this.requiresGrad = requiresGrad;
    this.name = name;
    this.persistent = persistent;
    this.#offset = 0;
    if (base instanceof Tensor) this.#bindTo(base, offset);
    else if (!base) this.#buffer = acquireBuffer(Math.max(4, this.size * 4));
  }

  #bindTo(base: Tensor, offset: number): void {
    if ((offset + this.size) * 4 > base.buffer.size) {
      throw new Error(
        `flowgpu: view '${this.name}' ${fmtShape(this.shape)} at element ${offset} overruns ` +
          "its buffer",
      );
    }
    this.#base = base;
    this.#offset = offset;
    this.#buffer = base.buffer;
  }

  /** Set for views: they share the base's buffer and never release it. */
  get base(): Tensor | undefined {
    this.#pending?.();
    return this.#base;
  }

  /** First element in the base's buffer (views only; a multiple of 64, see `binding`). */
  get offset(): number {
    this.#pending?.();
    return this.#offset;
  }

  /**
   * A persistent tensor with no buffer yet: `resolve` (called on first use) must `place()` it.
   * Parameter stores use it so that layers can hold their parameters before the flat group
   * buffers are laid out.
   */
  static deferred(shape: Shape, name: string, resolve: () => void): Tensor {
    const t = new Tensor(shape, true, name, true, "deferred");
    t.#pending = resolve;
    return t;
  }

  /** Make a deferred tensor a view of `base` at element `offset` (parameter stores only). */
  place(base: Tensor, offset: number): void {
    if (!this.#pending) throw new Error(`flowgpu: tensor '${this.name}' is already placed`);
    this.#pending = undefined;
    this.#bindTo(base.base ?? base, base.offset + offset);
  }

  /** Uninitialised tensor, owned by the tape (released when it is cleared). */
  static empty(shape: Shape, name = "empty"): Tensor {
    return own(new Tensor(shape, false, name, false)) as Tensor;
  }

  /** A tensor from CPU data, owned by the tape. */
  static from(
    data: ArrayLike<number>,
    shape: Shape,
    opts: { requiresGrad?: boolean } = {},
  ): Tensor {
    const t = own(new Tensor(shape, opts.requiresGrad ?? false, "input", false));
    t.write(data);
    return t;
  }

  /** A long-lived tensor (a parameter or persistent state): never released by the tape. */
  static param(data: ArrayLike<number>, shape: Shape, name = "param"): Tensor {
    const t = new Tensor(shape, true, name, true);
    t.write(data);
    return t;
  }

  /** A long-lived tensor from CPU data that needs no gradient (fixed operands, buffers). */
  static constant(data: ArrayLike<number>, shape: Shape, name = "constant"): Tensor {
    const t = new Tensor(shape, false, name, true);
    t.write(data);
    return t;
  }

  /** A long-lived tensor without gradient (optimizer state, buffers), uninitialised. */
  static persistent(shape: Shape, name = "state"): Tensor {
    return new Tensor(shape, false, name, true);
  }

  /**
   * A tensor sharing `base`'s buffer under another shape, starting `offset` elements into it
   * (owned by the tape unless `persistent`). Offsets must be multiples of 64 elements: WebGPU
   * binds a buffer range only at 256-byte boundaries.
   */
  static view(base: Tensor, shape: Shape, name: string, offset = 0, persistent = false): Tensor {
    const start = base.offset + offset;
    if (start % 64 !== 0) {
      throw new Error(
        `flowgpu: view '${name}' starts at element ${start}; views start at multiples of 64`,
      );
    }
    const t = new Tensor(shape, false, name, persistent, base.base ?? base, start);
    return persistent ? t : own(t);
  }

  /**
   * The buffer range a kernel binds: the whole buffer for a tensor that starts it, else the
   * view's elements rounded up to whole vec4s (kernels load 16 bytes at a time).
   */
  get binding(): GPUBufferBinding {
    const buffer = this.buffer;
    if (this.offset === 0) return { buffer };
    const start = this.offset * 4;
    return { buffer, offset: start, size: Math.min(buffer.size - start, ceil16(this.size * 4)) };
  }

  /** The underlying GPU buffer (a view's is its base's); throws once the tensor was released. */
  get buffer(): GPUBuffer {
    this.#pending?.();
    if (!this.#buffer || this.#base?.released) {
      throw new Error(
        `flowgpu: tensor '${this.name}' ${fmtShape(this.shape)} was released; ` +
          "it cannot be used after the tape was cleared or release() was called (keep() it)",
      );
    }
    return this.#buffer;
  }

  /** Whether the buffer went back to the pool (or the view's base did). */
  get released(): boolean {
    if (this.#pending) return false;
    return this.#buffer === undefined || (this.#base?.released ?? false);
  }

  /** Upload `size` values, in order with the dispatches already encoded; returns this tensor. */
  write(data: ArrayLike<number>): this {
    if (data.length !== this.size) {
      throw new Error(
        `flowgpu: ${data.length} values do not fill tensor '${this.name}' ${
          fmtShape(this.shape)
        } ` +
          `(${this.size} elements)`,
      );
    }
    const f = data instanceof Float32Array ? data : Float32Array.from(data);
    upload(this.buffer, f, this.offset * 4);
    return this;
  }

  /** Copy the values to the CPU: flushes pending work and waits for the GPU. */
  async read(): Promise<Float32Array> {
    return new Float32Array(await readBuffer(this.buffer, this.size * 4, this.offset * 4));
  }

  /** Values of many tensors with one GPU round trip. */
  static async readAll(ts: Tensor[]): Promise<Float32Array[]> {
    const raw = await readBuffers(
      ts.map((t) => ({ buffer: t.buffer, bytes: t.size * 4, offset: t.offset * 4 })),
    );
    return raw.map((b) => new Float32Array(b));
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) {
      throw new Error(
        `flowgpu: item() needs one element, '${this.name}' has ${fmtShape(this.shape)}`,
      );
    }
    return (await this.read())[0];
  }

  /** Give the buffer back to the pool (views only drop their reference) and the gradient too. */
  release(): void {
    this.#pending = undefined;
    if (this.#buffer && !this.#base) releaseBuffer(this.#buffer);
    this.#buffer = undefined;
    owned.delete(this);
    if (this.grad && this.grad !== this.gradSlot) this.grad.release();
    this.grad = undefined;
  }

  /**
   * Drop the gradient: its buffer returns to the pool, or, for a parameter of a flat group, its
   * slot is zeroed (a group's optimizer zeroes the whole group with one dispatch instead).
   */
  zeroGrad(): void {
    if (this.grad && this.grad === this.gradSlot) zeroSlot(this.grad);
    else this.grad?.release();
    this.grad = undefined;
  }
}

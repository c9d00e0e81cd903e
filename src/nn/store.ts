// The parameter store: every named tensor of a model, in one place.
//
// Layers declare parameters inside a scope (`encoder.block1.conv.weight`) with an init; nothing
// is allocated until first use, when each *group* is laid out as one flat GPU buffer of values
// and one of gradients, every parameter a view into them (aligned to 64 elements, the 256-byte
// binding alignment of WebGPU). So zeroing the gradients, the gradient norm and Adam cost one
// dispatch per group instead of one per tensor.
//
// A parameter's group is the first component of its name: `flow.level0...` is in `flow`,
// `disc.conv1.weight` in `disc`. A frozen group passes gradients to its inputs but receives
// none. Fixed tensors (an LU permutation, masks) and state buffers (running statistics) are
// stored and checkpointed by name but never trained; flags (actnorm's data-init) are CPU state
// that a checkpoint also carries.
import { type Shape, Tensor } from "../ops/tensor.ts";
import { fill } from "../ops/tape.ts";
import { Rng } from "../util/rng.ts";

/** Initial values: an array, or a function of the element count and the store's RNG. */
export type Init = ArrayLike<number> | ((n: number, rng: Rng) => ArrayLike<number>);

/** Every value 0. */
export const zeros: Init = (n): Float32Array => new Float32Array(n);
/** N(0, std²) from the store's RNG. */
export const normal = (std: number): Init => (n, rng) => rng.normalArray(n, std);
/** Uniform in [lo, hi) from the store's RNG. */
export const uniform = (lo: number, hi: number): Init => (n, rng) => rng.uniformArray(n, lo, hi);
/** Every value `v`. */
export const constant = (v: number): Init => (n) => new Float32Array(n).fill(v);

const ALIGN = 64;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;
const count = (shape: Shape) => shape.reduce((a, b) => a * b, 1);

/** A data-independent boolean a layer owns (actnorm's "initialised"), saved in checkpoints. */
export interface Flag {
  /** Current state; a checkpoint saves and restores it. */
  value: boolean;
}

/** Where one parameter lives in its group's flat buffers. */
export interface ParamSlot {
  /** Full parameter name (`group.scope.name`). */
  name: string;
  /** The parameter's shape. */
  shape: Shape;
  /** First element in the flat buffers (a multiple of 64). */
  offset: number;
}

/** One group's parameters: values and gradients in one flat buffer each. */
export class Group {
  /** The group's trainable parameters, in declaration order (views into `values`). */
  readonly params: Tensor[] = [];
  /** Each parameter's place in the flat buffers, parallel to `params`. */
  readonly slots: ParamSlot[] = [];
  /** Elements of the flat buffers, padding included. */
  readonly size: number;
  /** Flat buffer of every parameter's values, [size]. */
  readonly values: Tensor;
  /** Flat buffer of every parameter's gradient, [size]; backward adds into it. */
  readonly grads: Tensor;
  #frozen = false;

  /** Lay out `entries` (tensors and their initial values) in flat buffers; the store calls this. */
  constructor(readonly name: string, entries: { t: Tensor; data: ArrayLike<number> }[]) {
    let size = 0;
    for (const { t } of entries) {
      this.slots.push({ name: t.name, shape: t.shape, offset: size });
      size += align(t.size);
    }
    this.size = Math.max(ALIGN, size);
    const init = new Float32Array(this.size);
    entries.forEach(({ data }, i) => init.set(data, this.slots[i].offset));
    this.values = Tensor.constant(init, [this.size], `${name}.values`);
    this.grads = fill(Tensor.persistent([this.size], `${name}.grads`), 0);
    entries.forEach(({ t }, i) => {
      const { offset } = this.slots[i];
      t.place(this.values, offset);
      t.gradSlot = Tensor.view(this.grads, t.shape, `${t.name}.grad`, offset, true);
      this.params.push(t);
    });
  }

  /** A frozen group receives no gradient (its layers still pass gradients to their inputs). */
  get frozen(): boolean {
    return this.#frozen;
  }
  set frozen(f: boolean) {
    this.#frozen = f;
    for (const p of this.params) {
      p.requiresGrad = !f;
      if (f) p.grad = undefined;
    }
  }

  /** Persistent views of a flat tensor of this group's layout, one per parameter, by name. */
  views(flat: Tensor, prefix: string): Map<string, Tensor> {
    return new Map(
      this.slots.map((s) => [
        `${prefix}${s.name}`,
        Tensor.view(flat, s.shape, `${prefix}${s.name}`, s.offset, true),
      ]),
    );
  }

  /** Zero every gradient of the group with one dispatch. */
  zeroGrad(): void {
    fill(this.grads, 0);
    for (const p of this.params) p.grad = undefined;
  }

  /** Number of parameter values, padding excluded. */
  count(): number {
    return this.params.reduce((a, t) => a + t.size, 0);
  }
}

/** A prefix into a store: `scope.child("conv1").param("weight", ...)` is `<prefix>.conv1.weight`. */
export class Scope {
  /** A scope of `store` whose names start with `prefix` ("" for the root). */
  constructor(readonly store: ParamStore, readonly prefix: string) {}

  /** The nested scope `<prefix>.<name>`. */
  child(name: string): Scope {
    return new Scope(this.store, this.#name(name));
  }

  #name(name: string): string {
    return this.prefix ? `${this.prefix}.${name}` : name;
  }

  /** The store's RNG (inits and random layers such as 1x1 rotations draw from it). */
  get rng(): Rng {
    return this.store.rng;
  }

  /** A trainable parameter in its group's flat buffer. */
  param(name: string, shape: Shape, init: Init): Tensor {
    return this.store.param(this.#name(name), shape, init);
  }

  /** A tensor saved by name but never trained (a permutation, a mask, running statistics). */
  fixed(name: string, shape: Shape, init: Init): Tensor {
    return this.store.fixed(this.#name(name), shape, init);
  }

  /** A checkpointed boolean flag under this scope, initially false. */
  flag(name: string): Flag {
    return this.store.flag(this.#name(name));
  }
}

/**
 * Every named tensor of a model: trainable parameters laid out per group in flat buffers on first
 * use, fixed tensors and flags, with one seeded RNG for their inits.
 */
export class ParamStore {
  /** Draws every init; checkpoints save its state. */
  readonly rng: Rng;
  /** Every named tensor: parameters (views into group buffers) and fixed tensors. */
  readonly tensors: Map<string, Tensor> = new Map();
  /** Every flag by full name. */
  readonly flags: Map<string, Flag> = new Map();
  readonly #groups = new Map<string, Group>();
  #pending: { t: Tensor; data: ArrayLike<number> }[] = [];
  #laidOut = false;

  /** A store whose inits draw from `seed` (a number, or an Rng to share). */
  constructor(seed: number | Rng = 1) {
    this.rng = typeof seed === "number" ? new Rng(seed) : seed;
  }

  /** The scope `name` (the root when empty); its first name component is the group. */
  scope(name = ""): Scope {
    return new Scope(this, name);
  }

  #claim(name: string): void {
    if (!/^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$/.test(name)) {
      throw new Error(`flowgpu: parameter name '${name}' must be dot-separated identifiers`);
    }
    if (this.tensors.has(name)) throw new Error(`flowgpu: parameter ${name} defined twice`);
  }

  #values(name: string, shape: Shape, init: Init): ArrayLike<number> {
    const n = count(shape);
    const data = typeof init === "function" ? init(n, this.rng) : init;
    if (data.length !== n) {
      throw new Error(`flowgpu: ${name}: init gave ${data.length} values for [${shape}] (${n})`);
    }
    return data;
  }

  /** Declare trainable parameter `name`; it must come before the first use of any parameter. */
  param(name: string, shape: Shape, init: Init): Tensor {
    this.#claim(name);
    if (this.#laidOut) {
      throw new Error(
        `flowgpu: parameter ${name} declared after the store was laid out; declare every ` +
          "parameter before the first forward pass",
      );
    }
    const data = this.#values(name, shape, init);
    const t = Tensor.deferred(shape, name, () => this.layout());
    this.tensors.set(name, t);
    this.#pending.push({ t, data });
    return t;
  }

  /** Declare a checkpointed tensor that is never trained (a permutation, a mask). */
  fixed(name: string, shape: Shape, init: Init): Tensor {
    this.#claim(name);
    const t = Tensor.constant(this.#values(name, shape, init), shape, name);
    this.tensors.set(name, t);
    return t;
  }

  /** Declare flag `name`, initially false. */
  flag(name: string): Flag {
    if (this.flags.has(name)) throw new Error(`flowgpu: flag ${name} defined twice`);
    const f = { value: false };
    this.flags.set(name, f);
    return f;
  }

  /** Allocate the group buffers (done on first use of any parameter; idempotent). */
  layout(): void {
    if (this.#laidOut) return;
    this.#laidOut = true;
    const byGroup = new Map<string, { t: Tensor; data: ArrayLike<number> }[]>();
    for (const e of this.#pending) {
      const g = e.t.name.split(".")[0];
      if (!byGroup.has(g)) byGroup.set(g, []);
      byGroup.get(g)!.push(e);
    }
    this.#pending = [];
    for (const [name, entries] of byGroup) this.#groups.set(name, new Group(name, entries));
  }

  /** The groups, in declaration order. */
  groups(): Group[] {
    this.layout();
    return [...this.#groups.values()];
  }

  /** The group `name`; throws, listing the groups, when there is none. */
  group(name: string): Group {
    this.layout();
    const g = this.#groups.get(name);
    if (!g) {
      throw new Error(
        `flowgpu: no parameter group '${name}' (groups: ${[...this.#groups.keys()].join(", ")})`,
      );
    }
    return g;
  }

  /** Trainable parameters (of the named groups, or all), in declaration order. */
  params(groups?: string[]): Tensor[] {
    return (groups ? groups.map((g) => this.group(g)) : this.groups()).flatMap((g) => g.params);
  }

  /** Number of trainable values (of the named groups, or all). */
  count(groups?: string[]): number {
    return this.params(groups).reduce((a, t) => a + t.size, 0);
  }

  /** Flags as a JSON object (for checkpoint metadata). */
  flagState(): Record<string, boolean> {
    return Object.fromEntries([...this.flags].map(([k, f]) => [k, f.value]));
  }

  /** Set flags from `flagState()` output; flags it does not name keep their value. */
  loadFlags(state: Record<string, boolean>): void {
    for (const [k, f] of this.flags) f.value = state[k] ?? f.value;
  }

  /** Free every buffer of the store (parameters, gradients, fixed tensors) and forget them. */
  release(): void {
    for (const g of this.#groups.values()) {
      for (const p of g.params) {
        p.gradSlot?.release();
        p.release();
      }
      g.values.release();
      g.grads.release();
    }
    for (const t of this.tensors.values()) t.release();
    this.tensors.clear();
    this.#groups.clear();
  }
}

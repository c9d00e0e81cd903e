// Reverse-mode autodiff. Each differentiable op records a closure that, given the gradient of
// its output, encodes the backward dispatches and hands each input its gradient through
// `accumulate`. `backward(loss)` walks the closures in reverse, then releases every tensor the
// ops made (except what the caller keeps) to the buffer pool, so steps do not grow GPU memory.
//
// Several losses per step: `backward(loss, { params })` sends gradients only into the given
// parameters (the others are treated as constants for that walk, and closures whose outputs
// lead to none of them are skipped), and `retain: true` keeps the graph for another backward.
// `detach(x)` cuts the graph: x's value, no gradient path.
import { copyBuffer, f32 } from "../gpu/encoder.ts";
import { kernel } from "../gpu/kernel.ts";
import { fmtShape, owned, setSlotZeroer, Tensor } from "./tensor.ts";

interface Node {
  out: Tensor;
  inputs: Tensor[];
  backward: (g: Tensor) => void;
}

const nodes: Node[] = [];
let gradEnabled = true;
// A gradient tensor held by exactly one owner may be updated in place; a second owner gets a copy.
const claimed = new WeakSet<Tensor>();

/** Record `backward` for `out` if any input needs a gradient. Returns `out`. */
export function record(out: Tensor, inputs: Tensor[], backward: (g: Tensor) => void): Tensor {
  if (gradEnabled && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    nodes.push({ out, inputs, backward });
  }
  return out;
}

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Run `f` without recording anything (inference, sampling, optimizer updates). */
export function noGrad<T>(f: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return f();
  } finally {
    gradEnabled = prev;
  }
}

/** x's values with no path back to x: gradients stop here (a stop-gradient). */
export function detach(x: Tensor): Tensor {
  return Tensor.view(x, x.shape, `detach(${x.name})`);
}

/**
 * Add `g` into `t.grad`. A parameter of a flat group adds into its slot of the group's gradient
 * buffer; any other tensor takes ownership of `g` when it has no gradient yet.
 */
export function accumulate(t: Tensor, g: Tensor): void {
  if (!t.requiresGrad) return;
  if (g.size !== t.size) {
    throw new Error(
      `flowgpu: gradient ${fmtShape(g.shape)} does not match tensor '${t.name}' ${
        fmtShape(t.shape)
      }`,
    );
  }
  if (t.gradSlot) {
    // The first contribution since the slot was zeroed is copied (a copy, not a dispatch),
    // later ones are added.
    if (t.grad) axpy(t.gradSlot, g, 1);
    else copyBuffer(g.buffer, t.gradSlot.buffer, g.size * 4, g.offset * 4, t.gradSlot.offset * 4);
    t.grad = t.gradSlot;
    return;
  }
  if (!t.grad) {
    let own = g;
    if (claimed.has(g) || g.shape.length !== t.shape.length || g.base) own = copyOf(g, t.shape);
    claimed.add(own);
    // A persistent tensor's gradient outlives the tape (the optimizer consumes it).
    if (t.persistent) owned.delete(own);
    t.grad = own;
    return;
  }
  axpy(t.grad, g, 1);
}

const AXPY = kernel("elementwise.wgsl", "axpy", {
  params: "@0 uniform pf",
  x: "@1 read axpy_x",
  y: "@2 read_write axpy_y",
});
const FILL = kernel("elementwise.wgsl", "fill", {
  params: "@0 uniform pf",
  out: "@1 read_write fill_out",
});

/** y += a * x, in place. */
export function axpy(y: Tensor, x: Tensor, a: number): void {
  AXPY.run({ x, y }, { params: [y.size, f32(a)], threads: Math.ceil(y.size / 4) });
}

export function fill(t: Tensor, value: number): Tensor {
  FILL.run({ out: t }, { params: [t.size, f32(value)], threads: Math.ceil(t.size / 4) });
  return t;
}
setSlotZeroer((t) => fill(t, 0));

function copyOf(g: Tensor, shape: readonly number[]): Tensor {
  const c = Tensor.empty(shape, "grad");
  fill(c, 0);
  axpy(c, g, 1);
  return c;
}

/** Options of `backward`: which tensors get gradients, and what outlives the walk. */
export interface BackwardOptions {
  /**
   * Only these tensors receive gradients (default: every tensor that requires one). Other
   * parameters act as constants for this walk, so an adversary's loss cannot leak into the
   * generator's gradients, and closures that lead only to them are not run.
   */
  params?: Iterable<Tensor>;
  /** Keep the graph (and every intermediate) for another backward; `clearTape()` ends it. */
  retain?: boolean;
  /** Tensors that survive the tape's release (with their gradients). */
  keep?: Tensor[];
}

/**
 * Backpropagate from `loss` (seeded with ones, so a non-scalar loss means the gradient of its
 * sum). Afterwards, unless `retain`, every op-made tensor is released except `loss` and `keep`.
 */
export function backward(loss: Tensor, opts: BackwardOptions = {}): void {
  if (!loss.requiresGrad) {
    throw new Error(`flowgpu: backward(): '${loss.name}' does not depend on any parameter`);
  }
  const restore = opts.params ? restrict(new Set(opts.params)) : [];
  const prev = gradEnabled;
  gradEnabled = false; // backward closures are not themselves recorded
  try {
    if (loss.requiresGrad) {
      accumulate(loss, fill(Tensor.empty(loss.shape, "seed"), 1));
      walk();
    }
  } finally {
    gradEnabled = prev;
    for (const t of restore) t.requiresGrad = true;
  }
  if (!opts.retain) clearTape([loss, ...(opts.keep ?? [])]);
}

/**
 * Mark every tensor that does not lead to `params` as needing no gradient for this walk, so
 * closures skip it; returns what to mark back. A node's output leads to `params` when one of its
 * inputs is in `params` or is itself such an output.
 */
function restrict(params: Set<Tensor>): Tensor[] {
  const leads = new Set<Tensor>();
  const off: Tensor[] = [];
  for (const n of nodes) {
    let any = false;
    for (const x of n.inputs) {
      if (params.has(x) || leads.has(x)) any = true;
      else if (x.requiresGrad) {
        x.requiresGrad = false;
        off.push(x);
      }
    }
    if (any) leads.add(n.out);
    else if (n.out.requiresGrad) {
      n.out.requiresGrad = false;
      off.push(n.out);
    }
  }
  return off;
}

function walk(): void {
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i];
    const g = n.out.grad;
    if (!g || !n.out.requiresGrad) continue;
    // The output's gradient is complete here; it is not retained, so inputs may take it over.
    if (!n.out.persistent) {
      claimed.delete(g);
      n.out.grad = undefined;
    }
    n.backward(g);
  }
}

/** Release every tensor made by ops since the last clear, except `keep` (and their bases). */
export function clearTape(keep: Tensor[] = []): void {
  nodes.length = 0;
  const hold = new Set<Tensor>();
  for (const k of keep) {
    hold.add(k);
    if (k.base) hold.add(k.base);
    if (k.grad) hold.add(k.grad);
  }
  for (const t of [...owned]) {
    if (hold.has(t)) continue;
    if (!t.persistent && t.grad && !t.grad.persistent) t.grad = undefined;
    t.release();
  }
}

/** Number of recorded backward closures (for tests). */
export function tapeLength(): number {
  return nodes.length;
}

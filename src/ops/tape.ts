// Reverse-mode autodiff. Each differentiable op records a closure that, given the gradient of
// its output, encodes the backward dispatches and hands each input its gradient through
// `accumulate`. `backward(loss)` walks the closures in reverse, then releases every tensor the
// ops made (except what the caller keeps) to the buffer pool, so steps do not grow GPU memory.
import { dispatch, f32 } from "../gpu/encoder.ts";
import { fmtShape, owned, Tensor } from "./tensor.ts";

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

/** Add `g` into `t.grad` (taking ownership of `g` when `t` has none yet). */
export function accumulate(t: Tensor, g: Tensor): void {
  if (!t.requiresGrad) return;
  if (g.size !== t.size) {
    throw new Error(
      `flowgpu: gradient ${fmtShape(g.shape)} does not match tensor '${t.name}' ${
        fmtShape(t.shape)
      }`,
    );
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

/** y += a * x, in place. */
export function axpy(y: Tensor, x: Tensor, a: number): void {
  dispatch({
    file: "elementwise.wgsl",
    entry: "axpy",
    buffers: [x, y],
    params: [y.size, f32(a)],
    threads: Math.ceil(y.size / 4),
  });
}

export function fill(t: Tensor, value: number): Tensor {
  dispatch({
    file: "elementwise.wgsl",
    entry: "fill",
    buffers: [t],
    params: [t.size, f32(value)],
    threads: Math.ceil(t.size / 4),
  });
  return t;
}

function copyOf(g: Tensor, shape: readonly number[]): Tensor {
  const c = Tensor.empty(shape, "grad");
  fill(c, 0);
  axpy(c, g, 1);
  return c;
}

/**
 * Backpropagate from `loss` (seeded with ones, so a non-scalar loss means the gradient of its
 * sum). Afterwards every op-made tensor is released except `loss` and those in `keep`.
 */
export function backward(loss: Tensor, opts: { keep?: Tensor[] } = {}): void {
  if (!loss.requiresGrad) {
    throw new Error(`flowgpu: backward(): '${loss.name}' does not depend on any parameter`);
  }
  const seed = fill(Tensor.empty(loss.shape, "seed"), 1);
  accumulate(loss, seed);
  const prev = gradEnabled;
  gradEnabled = false; // backward closures are not themselves recorded
  try {
    walk();
  } finally {
    gradEnabled = prev;
  }
  nodes.length = 0;
  clearTape([loss, ...(opts.keep ?? [])]);
}

function walk(): void {
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i];
    const g = n.out.grad;
    if (!g) continue;
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

// Affine coupling (Glow): y_b = (x_b + t) * sigmoid(r + 2) with (t, r) the even and odd channels
// of h = NN(x_a). Returns y_b and log s per element; the flow sums log s per sample for its
// log-det. The NN and the x_a pass-through live in the model; this is the fused elementwise part.
import { dispatch } from "../gpu/encoder.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, Tensor } from "./tensor.ts";

const FILE = "coupling.wgsl";

function dims(xb: Tensor, h: Tensor, op: string): number[] {
  const [n, c] = xb.shape;
  const ok = xb.shape.length >= 2 && h.shape.length === xb.shape.length && h.shape[0] === n &&
    h.shape[1] === 2 * c && h.shape.slice(2).every((d, i) => d === xb.shape[i + 2]);
  if (!ok) {
    throw new Error(
      `flowgpu: ${op}: x_b ${fmtShape(xb.shape)} needs h with twice its channels, got ${
        fmtShape(h.shape)
      }`,
    );
  }
  return [n, c, xb.size / (n * c)];
}

export function affineCoupling(xb: Tensor, h: Tensor): { yb: Tensor; logs: Tensor } {
  const params = dims(xb, h, "affineCoupling");
  const yb = Tensor.empty(xb.shape, "coupling.y");
  const logs = Tensor.empty(xb.shape, "coupling.logs");
  const threads = xb.size;
  dispatch({
    file: FILE,
    entry: "forward",
    buffers: [xb, h, yb, logs],
    params,
    threads,
  });
  const grad = (entry: string) => (g: Tensor) => {
    const dx = Tensor.empty(xb.shape, "coupling.dx");
    const dh = Tensor.empty(h.shape, "coupling.dh");
    const x = entry === "backward_y" ? xb : undefined;
    dispatch({
      file: FILE,
      entry,
      buffers: [x, h, g, entry === "backward_y" ? dx : undefined, dh],
      params,
      threads,
    });
    if (entry === "backward_y") accumulate(xb, dx);
    else dx.release();
    accumulate(h, dh);
  };
  record(yb, [xb, h], grad("backward_y"));
  record(logs, [h], grad("backward_logs"));
  return { yb, logs };
}

/** x_b = y_b / sigmoid(r + 2) - t and the inverse's -log s per element; records nothing. */
export function affineCouplingInverse(yb: Tensor, h: Tensor): { xb: Tensor; neglogs: Tensor } {
  const params = dims(yb, h, "affineCouplingInverse");
  const xb = Tensor.empty(yb.shape, "coupling.x");
  const neglogs = Tensor.empty(yb.shape, "coupling.neglogs");
  dispatch({
    file: FILE,
    entry: "inverse",
    buffers: [yb, h, xb, neglogs],
    params,
    threads: yb.size,
  });
  return { xb, neglogs };
}

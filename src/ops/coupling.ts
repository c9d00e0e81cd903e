// Affine coupling (Glow): y_b = (x_b + t) * sigmoid(r + 2) with (t, r) the even and odd channels
// of h = NN(x_a). Returns y_b and log s per element; the flow sums log s per sample for its
// log-det. The NN and the x_a pass-through live in the model; this is the fused elementwise part.
// The inverse is differentiable too: losses on decoded images (the MI flow's L_i) backpropagate
// through it into y_b and h.
import { kernel } from "../gpu/kernel.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, Tensor } from "./tensor.ts";

const FILE = "coupling.wgsl";
const FORWARD = kernel(FILE, "forward", {
  params: "@0 uniform cp",
  x: "@1 read f_x",
  h: "@2 read f_h",
  y: "@3 read_write f_y",
  logs: "@4 read_write f_ls",
});
const INVERSE = kernel(FILE, "inverse", {
  params: "@0 uniform cp",
  y: "@1 read f_x",
  h: "@2 read f_h",
  x: "@3 read_write f_y",
  neglogs: "@4 read_write f_ls",
});
const BACKWARD_Y = kernel(FILE, "backward_y", {
  params: "@0 uniform cp",
  x: "@1 read f_x",
  h: "@2 read f_h",
  g: "@3 read b_g",
  dx: "@4 read_write b_dx",
  dh: "@5 read_write b_dh",
});
// log s depends on h alone.
const BACKWARD_LOGS = kernel(FILE, "backward_logs", {
  params: "@0 uniform cp",
  h: "@2 read f_h",
  g: "@3 read b_g",
  dh: "@5 read_write b_dh",
});

const INVERSE_BACKWARD_X = kernel(FILE, "inverse_backward_x", {
  params: "@0 uniform cp",
  y: "@1 read f_x",
  h: "@2 read f_h",
  g: "@3 read b_g",
  dy: "@4 read_write b_dy",
  dh: "@5 read_write b_dh",
});
// -log s depends on h alone.
const INVERSE_BACKWARD_LOGS = kernel(FILE, "inverse_backward_logs", {
  params: "@0 uniform cp",
  h: "@2 read f_h",
  g: "@3 read b_g",
  dh: "@5 read_write b_dh",
});

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

/**
 * y_b = (x_b + t) * sigmoid(r + 2), with t and r the even and odd channels of `h` ([N, 2C, ...]
 * for x_b [N, C, ...]). Returns y_b and log s per element (sum it per sample for the log-det);
 * both are recorded on the tape.
 */
export function affineCoupling(xb: Tensor, h: Tensor): { yb: Tensor; logs: Tensor } {
  const params = dims(xb, h, "affineCoupling");
  const yb = Tensor.empty(xb.shape, "coupling.y");
  const logs = Tensor.empty(xb.shape, "coupling.logs");
  const threads = xb.size;
  FORWARD.run({ x: xb, h, y: yb, logs }, { params, threads });
  record(yb, [xb, h], (g) => {
    const dx = Tensor.empty(xb.shape, "coupling.dx");
    const dh = Tensor.empty(h.shape, "coupling.dh");
    BACKWARD_Y.run({ x: xb, h, g, dx, dh }, { params, threads });
    accumulate(xb, dx);
    accumulate(h, dh);
  });
  record(logs, [h], (g) => {
    const dh = Tensor.empty(h.shape, "coupling.dh");
    BACKWARD_LOGS.run({ h, g, dh }, { params, threads });
    accumulate(h, dh);
  });
  return { yb, logs };
}

/**
 * x_b = y_b / sigmoid(r + 2) - t and the inverse's -log s per element (t, r as in
 * `affineCoupling`); both are recorded on the tape (sampling calls it under `noGrad`).
 */
export function affineCouplingInverse(yb: Tensor, h: Tensor): { xb: Tensor; neglogs: Tensor } {
  const params = dims(yb, h, "affineCouplingInverse");
  const xb = Tensor.empty(yb.shape, "coupling.x");
  const neglogs = Tensor.empty(yb.shape, "coupling.neglogs");
  const threads = yb.size;
  INVERSE.run({ y: yb, h, x: xb, neglogs }, { params, threads });
  record(xb, [yb, h], (g) => {
    const dy = Tensor.empty(yb.shape, "couplingInverse.dy");
    const dh = Tensor.empty(h.shape, "couplingInverse.dh");
    INVERSE_BACKWARD_X.run({ y: yb, h, g, dy, dh }, { params, threads });
    accumulate(yb, dy);
    accumulate(h, dh);
  });
  record(neglogs, [h], (g) => {
    const dh = Tensor.empty(h.shape, "couplingInverse.dh");
    INVERSE_BACKWARD_LOGS.run({ h, g, dh }, { params, threads });
    accumulate(h, dh);
  });
  return { xb, neglogs };
}

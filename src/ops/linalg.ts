// Inverse and log|det| of small square matrices ([C, C] or [B, C, C]) on the GPU, for the
// invertible 1x1 convolution: its plain form needs log|det W| and its gradient W^-T, sampling
// needs W^-1 without a trip to the CPU, and losses on the inverse flow (the MI flow's L_i) need
// the gradient of W^-1 itself.
import { kernel } from "../gpu/kernel.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, Tensor } from "./tensor.ts";

const FILE = "linalg.wgsl";
const INVERSE_LOGDET = kernel(FILE, "inverse_logdet", {
  params: "@0 uniform la",
  w: "@1 read w_in",
  scratch: "@2 read_write scratch",
  inv: "@3 read_write w_inv",
  logabsdet: "@4 read_write logabsdet",
});
const LOGDET_BACKWARD = kernel(FILE, "logdet_backward", {
  params: "@0 uniform la",
  inv: "@1 read g_inv",
  g: "@2 read g_ld",
  dw: "@3 read_write g_dw",
});
const INVERSE_BACKWARD_T = kernel(FILE, "inverse_backward_t", {
  params: "@0 uniform la",
  inv: "@1 read ib_a",
  g: "@2 read ib_g",
  t: "@3 read_write ib_t",
});
const INVERSE_BACKWARD = kernel(FILE, "inverse_backward", {
  params: "@0 uniform la",
  inv: "@1 read ib_a",
  t: "@2 read iw_t",
  dw: "@3 read_write iw_dw",
});

function dims(w: Tensor, op: string): [number, number] {
  const s = w.shape;
  const c = s[s.length - 1];
  if ((s.length !== 2 && s.length !== 3) || s[s.length - 2] !== c) {
    throw new Error(
      `flowgpu: ${op}: needs square matrices [C, C] or [B, C, C], got ${fmtShape(s)}`,
    );
  }
  return [s.length === 3 ? s[0] : 1, c];
}

/**
 * W^-1 and log|det W| ([B] or [1]) of [C, C] or [B, C, C] matrices, both recorded on the tape:
 * d log|det W| / dW = W^-T, and the inverse's backward is dW = -W^-T G W^-T.
 */
export function inverseLogdet(w: Tensor): { inv: Tensor; logabsdet: Tensor } {
  const [b, c] = dims(w, "inverseLogdet");
  const inv = Tensor.empty(w.shape, "inverse");
  const logabsdet = Tensor.empty([b], "logabsdet");
  const scratch = Tensor.empty(w.shape, "scratch");
  INVERSE_LOGDET.run({ w, scratch, inv, logabsdet }, { params: [b, c], groups: [b] });
  scratch.release();
  record(inv, [w], (g) => {
    const t = Tensor.empty(w.shape, "inverse'.t");
    INVERSE_BACKWARD_T.run({ inv, g, t }, { params: [b, c], threads: w.size });
    const dw = Tensor.empty(w.shape, "inverse'");
    INVERSE_BACKWARD.run({ inv, t, dw }, { params: [b, c], threads: w.size });
    t.release();
    accumulate(w, dw);
  });
  record(logabsdet, [w], (g) => {
    const dw = Tensor.empty(w.shape, "logdet'");
    LOGDET_BACKWARD.run({ inv, g, dw }, { params: [b, c], threads: w.size });
    accumulate(w, dw);
  });
  return { inv, logabsdet };
}

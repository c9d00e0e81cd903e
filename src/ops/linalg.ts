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
  elim: "@2 read_write elim",
  inv: "@3 read_write w_inv",
  pivots: "@4 read_write pivots",
  logabsdet: "@5 read_write logabsdet",
});

// Loop iterations one invocation of inverse_logdet may take per dispatch. Mesa's LLVM compiler
// (lavapipe, llvmpipe) silently ends every loop of an invocation once it has counted 65,535
// passes in all, a loop costing its trips plus one (the exit test; measured), while loops of a
// constant trip count are unrolled and cost nothing. This leaves a 16x margin.
const LOOP_BUDGET = 4096;

/**
 * Workgroup size and pivot steps per dispatch of inverse_logdet for C x C matrices: one thread
 * per 4 columns up to 256 threads, and as many steps as keep each thread within LOOP_BUDGET
 * loop passes.
 */
export function eliminationPlan(c: number): { wg: number; steps: number; dispatches: number } {
  const nq = Math.ceil(c / 4); // vec4 columns
  const wg = Math.min(256, Math.max(32, Math.ceil(nq / 32) * 32));
  const cols = Math.ceil(nq / wg); // vec4 columns per thread
  // Passes of the shader's loops: loading W (a row loop per column), writing W^-1 (the column
  // swaps and a row loop per column), the step loop's exit, and per step its own pass, the
  // column loop and a row loop per column.
  const load = cols * (c + 2) + 1;
  const store = cols * (2 * c + 4) + 1;
  const perStep = 2 + cols * (c + 2);
  const steps = Math.max(1, Math.floor((LOOP_BUDGET - 1 - load - store) / perStep));
  return { wg, steps, dispatches: Math.ceil(c / steps) };
}

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
  const elim = Tensor.empty([b, c, 4 * Math.ceil(c / 4)], "W eliminated");
  const pivots = Tensor.empty([b, 3 * c + 2], "pivots");
  // Pivot steps in consecutive dispatches of one encoder: no readback, no extra submit.
  const { wg, steps } = eliminationPlan(c);
  for (let k0 = 0; k0 < c; k0 += steps) {
    INVERSE_LOGDET.run({ w, elim, inv, pivots, logabsdet }, {
      params: [b, c, k0, Math.min(c, k0 + steps)],
      constants: { WG: wg },
      groups: [b],
    });
  }
  elim.release();
  pivots.release();
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

// Batched matrix product and the linear layer. One kernel family (shaders/matmul.wgsl) computes
// C = op(A)·op(B) with op a read-side transpose flag, so the backward passes
// dA = dC·op(B)ᵀ and dB = op(A)ᵀ·dC are the same kernel with other flags, never a copied
// transpose. A 2-D operand beside a batched one is shared across the batch; its gradient sums
// over the batch inside the kernel (the batch joins the K reduction).
import { kernel } from "../gpu/kernel.ts";
import { add } from "./elementwise.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, type Shape, Tensor } from "./tensor.ts";

const FILE = "matmul.wgsl";
const MM_VEC4 = kernel(FILE, "mm_vec4", {
  params: "@0 uniform p",
  a: "@1 read a4",
  b: "@2 read b4",
  c: "@3 read_write c1",
});
const MM_SCALAR = kernel(FILE, "mm_scalar", {
  params: "@0 uniform p",
  a: "@1 read a1",
  b: "@2 read b1",
  c: "@3 read_write c1",
});
const MM_TILED = kernel(FILE, "mm_tiled", {
  params: "@0 uniform p",
  a: "@1 read a1",
  b: "@2 read b1",
  c: "@3 read_write c1",
});
const MM_PACK = kernel(FILE, "mm_pack", {
  params: "@0 uniform pk",
  src: "@1 read pack_src",
  dst: "@2 read_write pack_dst",
});
const MM_PANEL = kernel(FILE, "mm_panel", {
  params: "@0 uniform pp",
  a: "@1 read pa",
  b: "@2 read pb",
  blocks: "@3 read_write pt",
});
const MM_UNPACK = kernel(FILE, "mm_unpack", {
  params: "@0 uniform up",
  blocks: "@1 read up_src",
  c: "@2 read_write up_dst",
});
const MAX_GROUPS = 65535;

/**
 * Which kernel runs: "auto" (packed panels for large products, register blocks otherwise: the
 * fastest on lavapipe), or one of them always: "packed", "blocked", "tiled" (workgroup tiling).
 */
export type MatmulKernel = "auto" | "packed" | "blocked" | "tiled";
let choice: MatmulKernel = "auto";

// "auto" packs panels unless that leaves fewer than this many invocations for a long K loop
// (an invocation of mm_panel covers 32x16 outputs, 4x mm_vec4's): from 64x64 outputs up, and
// for short K loops at any size, packing wins (measured: 1.5-8x from 32³ to 1024³; mm_vec4 is
// 1.3x faster at 48x1024x48, [M, K, N]).
const PACK_MIN_INVOCATIONS = 8;
const PACK_ANY_K = 128;

/** Select the matmul kernel (for benchmarks and for adapters where workgroup tiling wins). */
export function setMatmulKernel(k: MatmulKernel): void {
  choice = k;
}

/** A stored operand: its tensor, whether it is read transposed, and whether it is batched. */
interface Operand {
  t: Tensor;
  trans: boolean;
  batched: boolean;
}

/**
 * Encode op(x)·op(y) -> a new tensor of `shape`, for op(x) [M, K], op(y) [K, N]. With `sum`, the
 * `nb` batches are summed into one [M, N] result; otherwise there are `nb` results (nb >= 1).
 */
function gemm(
  x: Operand,
  y: Operand,
  m: number,
  n: number,
  k: number,
  nb: number,
  sum: boolean,
  shape: Shape,
  name: string,
): Tensor {
  const out = Tensor.empty(shape, name);
  const z = sum ? 1 : nb;
  if (z > MAX_GROUPS) throw new Error(`flowgpu: matmul: batch ${nb} exceeds ${MAX_GROUPS}`);
  const params = [m, n, k, x.batched ? m * k : 0, y.batched ? k * n : 0, m * n, sum ? nb : 1];
  const constants = { TA: x.trans ? 1 : 0, TB: y.trans ? 1 : 0 };
  const buffers = { a: x.t, b: y.t, c: out };
  const invocations = Math.ceil(m / 32) * Math.ceil(n / 16) * z;
  const packed = choice === "packed" ||
    (choice === "auto" &&
      (invocations >= PACK_MIN_INVOCATIONS || k * (sum ? nb : 1) < PACK_ANY_K));
  if (packed) return gemmPacked(x, y, m, n, k, nb, sum, out);
  if (choice === "tiled") {
    const groups: [number, number, number] = [Math.ceil(n / 64), Math.ceil(m / 64), z];
    MM_TILED.run(buffers, { params, constants, groups });
    return out;
  }
  // vec4 loads need every row of a stored operand to start on a 16-byte boundary.
  const vec4 = (x.trans ? m : k) % 4 === 0 && (y.trans ? k : n) % 4 === 0;
  // Each invocation computes 8x8 outputs; a workgroup is 16x4 invocations (shader defaults).
  const groups: [number, number, number] = [Math.ceil(n / 128), Math.ceil(m / 32), z];
  (vec4 ? MM_VEC4 : MM_SCALAR).run(buffers, { params, constants, groups });
  return out;
}

/**
 * Copy op(x)'s rows (or columns) j into zero-padded K-major panels [nz, ceil(J / w), K, w]:
 * K-major means x is stored [K, J], else [J, K].
 */
function packPanels(x: Operand, j: number, k: number, w: number, kmajor: boolean, nz: number) {
  const jb = Math.ceil(j / w);
  const out = Tensor.empty([nz * jb * k * w], "matmul.pack");
  const total4 = nz * jb * k * (w / 4);
  MM_PACK.run({ src: x.t, dst: out }, {
    params: [total4, j, k, x.batched ? j * k : 0, jb, w / 4],
    constants: { KMAJOR: kmajor ? 1 : 0 },
    threads: total4,
  });
  return { t: out, panels: jb };
}

/** gemm through packed panels and 32x16 register blocks (mm_panel). */
function gemmPacked(
  x: Operand,
  y: Operand,
  m: number,
  n: number,
  k: number,
  nb: number,
  sum: boolean,
  out: Tensor,
): Tensor {
  // op(A) is [M, K]: K-major when stored transposed; op(B) is [K, N]: K-major unless transposed.
  const pa = packPanels(x, m, k, 32, x.trans, x.batched ? nb : 1);
  const pb = packPanels(y, n, k, 16, !y.trans, y.batched ? nb : 1);
  // Batch strides in mat4x4fs (16 floats).
  const sa = x.batched ? pa.panels * k * 2 : 0;
  const sb = y.batched ? pb.panels * k : 0;
  const z = sum ? 1 : nb;
  const blocks = Tensor.empty([z * pa.panels * pb.panels * 512], "matmul.blocks");
  MM_PANEL.run({ a: pa.t, b: pb.t, blocks }, {
    params: [k, sa, sb, sum ? nb : 1, pa.panels, pb.panels],
    groups: [Math.ceil(pb.panels / 8), Math.ceil(pa.panels / 4), z],
  });
  pa.t.release();
  pb.t.release();
  const n4 = Math.ceil(n / 4);
  MM_UNPACK.run({ blocks, c: out }, {
    params: [z * m * n4, m, n, n4, pa.panels, pb.panels],
    threads: z * m * n4,
  });
  blocks.release();
  return out;
}

function fail(a: Shape, b: Shape, transA: boolean, transB: boolean, why: string): never {
  const ta = transA ? " (transA)" : "";
  const tb = transB ? " (transB)" : "";
  throw new Error(`flowgpu: matmul: a ${fmtShape(a)}${ta} and b ${fmtShape(b)}${tb}: ${why}`);
}

/**
 * C = op(a)·op(b). a is [M, K] or [B, M, K] ([K, M] / [B, K, M] with transA); b is [K, N] or
 * [B, K, N] ([N, K] / [B, N, K] with transB). A 2-D operand beside a 3-D one is shared across
 * the batch (its gradient is summed over the batch). Output [M, N] or [B, M, N].
 */
export function matmul(
  a: Tensor,
  b: Tensor,
  opts: { transA?: boolean; transB?: boolean } = {},
): Tensor {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const ra = a.shape.length, rb = b.shape.length;
  if ((ra !== 2 && ra !== 3) || (rb !== 2 && rb !== 3)) {
    fail(a.shape, b.shape, transA, transB, "operands must be 2-D or 3-D");
  }
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const m = transA ? ac : ar;
  const k = transA ? ar : ac;
  const kb = transB ? bc : br;
  const n = transB ? br : bc;
  if (k !== kb) fail(a.shape, b.shape, transA, transB, `inner dimensions ${k} and ${kb} differ`);
  if (ra === 3 && rb === 3 && a.shape[0] !== b.shape[0]) {
    fail(a.shape, b.shape, transA, transB, "batch sizes differ");
  }
  const batched = ra === 3 || rb === 3;
  const nb = ra === 3 ? a.shape[0] : rb === 3 ? b.shape[0] : 1;
  const A: Operand = { t: a, trans: transA, batched: ra === 3 };
  const B: Operand = { t: b, trans: transB, batched: rb === 3 };
  const outShape = batched ? [nb, m, n] : [m, n];
  const c = gemm(A, B, m, n, k, nb, false, outShape, "matmul");

  return record(c, [a, b], (g) => {
    const G: Operand = { t: g, trans: false, batched };
    if (a.requiresGrad) {
      // dop(A) = dC·op(B)ᵀ; stored transposed, dA = op(B)·dCᵀ.
      const da = transA
        ? gemm(B, { ...G, trans: true }, k, m, n, nb, !A.batched, a.shape, "matmul'a")
        : gemm(G, { ...B, trans: !B.trans }, m, k, n, nb, !A.batched, a.shape, "matmul'a");
      accumulate(a, da);
    }
    if (b.requiresGrad) {
      // dop(B) = op(A)ᵀ·dC; stored transposed, dB = dCᵀ·op(A).
      const db = transB
        ? gemm({ ...G, trans: true }, A, n, k, m, nb, !B.batched, b.shape, "matmul'b")
        : gemm({ ...A, trans: !A.trans }, G, k, n, m, nb, !B.batched, b.shape, "matmul'b");
      accumulate(b, db);
    }
  });
}

/** Fully connected layer: x [N, In], w [Out, In] -> x·wᵀ + bias, bias [Out] per channel. */
export function linear(x: Tensor, w: Tensor, bias?: Tensor): Tensor {
  const [out, inp] = w.shape;
  const shapes = `x ${fmtShape(x.shape)}, w ${fmtShape(w.shape)}` +
    (bias ? `, bias ${fmtShape(bias.shape)}` : "");
  const ok = x.shape.length === 2 && w.shape.length === 2 && x.shape[1] === inp &&
    (!bias || (bias.shape.length === 1 && bias.shape[0] === out));
  if (!ok) {
    throw new Error(`flowgpu: linear: ${shapes} do not fit x [N, In], w [Out, In], bias [Out]`);
  }
  const y = matmul(x, w, { transB: true });
  return bias ? add(y, bias) : y;
}

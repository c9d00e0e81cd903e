// Indexing (vae-disentangle.md §7 rows 15, 16, 18, 32): batch gather by an index (permutations,
// rolls, derangements), embedding rows by label, where(mask, a, b), and the projection
// discriminator's term <E[y_b], h_b>. Indices and labels come from the CPU (batches are built
// there); each op uploads them once, with the inverse index its backward needs (see gather.wgsl:
// scatter-adds without float atomics, which WGSL lacks).
import { upload } from "../gpu/encoder.ts";
import { kernel } from "../gpu/kernel.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, type Shape, Tensor } from "./tensor.ts";

const FILE = "gather.wgsl";
const GATHER = {
  1: kernel(FILE, "gather_rows", {
    params: "@0 uniform pa",
    x: "@1 read gr_x",
    idx: "@2 read gr_idx",
    y: "@3 read_write gr_y",
  }),
  4: kernel(FILE, "gather_rows4", {
    params: "@0 uniform pa",
    x: "@1 read gr4_x",
    idx: "@2 read gr_idx",
    y: "@3 read_write gr4_y",
  }),
};
const SCATTER = {
  1: kernel(FILE, "scatter_rows", {
    params: "@0 uniform pa",
    g: "@1 read sc_g",
    idx: "@2 read sc_idx",
    dx: "@3 read_write sc_dx",
  }),
  4: kernel(FILE, "scatter_rows4", {
    params: "@0 uniform pa",
    g: "@1 read sc4_g",
    idx: "@2 read sc_idx",
    dx: "@3 read_write sc4_dx",
  }),
};
const WHERE = kernel(FILE, "where_select", {
  params: "@0 uniform pw",
  mask: "@1 read wm_mask",
  a: "@2 read wf_a",
  b: "@3 read wf_b",
  out: "@4 read_write wf_out",
});
const WHERE_BWD = kernel(FILE, "where_bwd", {
  params: "@0 uniform pw",
  mask: "@1 read wm_mask",
  g: "@2 read wb_g",
  out: "@3 read_write wb_out",
});
const PROJ = kernel(FILE, "proj_fwd", {
  params: "@0 uniform pp",
  table: "@1 read pf_table",
  h: "@2 read pf_h",
  idx: "@3 read pf_idx",
  out: "@4 read_write pf_out",
});
const PROJ_DH = kernel(FILE, "proj_dh", {
  params: "@0 uniform pp",
  g: "@1 read ph_g",
  table: "@2 read ph_table",
  idx: "@3 read ph_idx",
  dh: "@4 read_write ph_dh",
});
const PROJ_DTABLE = kernel(FILE, "proj_dtable", {
  params: "@0 uniform pp",
  g: "@1 read pt_g",
  h: "@2 read pt_h",
  idx: "@3 read pt_idx",
  dtable: "@4 read_write pt_dtable",
});

/** Integer row indices from the CPU: a plain array or a typed array. */
export type Index = ArrayLike<number>;

/**
 * Check `index` against `rows` source rows and upload it with its inverse (see gather.wgsl):
 * u32 [index (M), offsets (rows + 1), list (M)], as a tape-owned tensor used as raw storage.
 */
function indexBuffer(index: Index, rows: number, bad: (v: number, i: number) => string): Tensor {
  const m = index.length;
  const words = new Uint32Array(2 * m + rows + 1);
  const count = new Uint32Array(rows + 1);
  for (let i = 0; i < m; i++) {
    const v = index[i];
    if (!Number.isInteger(v) || v < 0 || v >= rows) throw new Error(bad(v, i));
    words[i] = v;
    count[v + 1]++;
  }
  for (let r = 0; r < rows; r++) count[r + 1] += count[r];
  words.set(count, m);
  // Counting sort by source row, stable: each row's list ascends, so sums run in a fixed order.
  const next = count.slice(0, rows);
  for (let i = 0; i < m; i++) words[m + rows + 1 + next[words[i]]++] = i;
  const t = Tensor.empty([words.length], "index");
  upload(t.buffer, words);
  return t;
}

function rowsOf(op: string, name: string, x: Tensor): number {
  if (x.shape.length < 1 || x.shape[0] === 0) {
    throw new Error(
      `flowgpu: ${op}: ${name} must be [N, ...] with N > 0, got ${fmtShape(x.shape)}`,
    );
  }
  return x.shape[0];
}

/** y[m] = x[index[m]] over rows of x [N, ...]: [M, ...]; the backward scatter-adds by index. */
function gatherRows(op: string, x: Tensor, index: Index, idx: Tensor): Tensor {
  const n = x.shape[0];
  const m = index.length;
  const inner = x.size / n;
  const v = inner % 4 === 0 ? 4 : 1;
  const params = [m, inner / v, n];
  const y = Tensor.empty([m, ...x.shape.slice(1)], op);
  GATHER[v].run({ x, idx, y }, { params, threads: (m * inner) / v });
  const out = record(y, [x], (g) => {
    const dx = Tensor.empty(x.shape, `${op}'`);
    SCATTER[v].run({ g, idx, dx }, { params, threads: (n * inner) / v });
    accumulate(x, dx);
  });
  if (!out.requiresGrad) idx.release();
  return out;
}

/**
 * Batch gather y[m] = x[index[m]] for x [N, ...] of any per-sample shape and M = index.length
 * indices in [0, N): a permutation, a roll or a derangement of the batch when M = N, or any
 * selection (repeats allowed). The gradient of x is the scatter-add of y's by index.
 */
export function gatherBatch(x: Tensor, index: Index): Tensor {
  const op = "gatherBatch";
  const n = rowsOf(op, "x", x);
  if (index.length === 0) throw new Error(`flowgpu: ${op}: the index is empty`);
  const idx = indexBuffer(
    index,
    n,
    (v, i) =>
      `flowgpu: ${op}: index ${v} (at position ${i}) is not a row of x ${
        fmtShape(x.shape)
      } (an integer in [0, ${n}))`,
  );
  return gatherRows(op, x, index, idx);
}

/**
 * Embedding lookup: rows of table [V, D] by label, labels.length = B, giving [B, D]. The table's
 * gradient is the scatter-add of the rows' gradients by label (labels may repeat).
 */
export function embedding(table: Tensor, labels: Index): Tensor {
  const op = "embedding";
  if (table.shape.length !== 2 || table.size === 0) {
    throw new Error(
      `flowgpu: ${op}: the table must be [V, D] (non-empty), got ${fmtShape(table.shape)}`,
    );
  }
  if (labels.length === 0) throw new Error(`flowgpu: ${op}: no labels`);
  const v = table.shape[0];
  const idx = indexBuffer(
    labels,
    v,
    (l, i) =>
      `flowgpu: ${op}: label ${l} (at index ${i}) is out of range for a table of V = ${v} rows ` +
      `${fmtShape(table.shape)} (labels are integers in [0, ${v}))`,
  );
  return gatherRows(op, table, labels, idx);
}

const same = (a: Shape, b: Shape) => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * where(mask, a, b) = mask != 0 ? a : b elementwise, for a and b of one shape [N, ...] and a 0/1
 * mask either of that shape or one value per sample ([N] or [N, 1, ...]). The gradient passes
 * to the side that was kept (a where the mask is set, b elsewhere) and is 0 on the other; the
 * mask gets none.
 */
export function where(mask: Tensor, a: Tensor, b: Tensor): Tensor {
  const op = "where";
  if (!same(a.shape, b.shape)) {
    throw new Error(`flowgpu: ${op}: b ${fmtShape(b.shape)} does not match a ${fmtShape(a.shape)}`);
  }
  const n = rowsOf(op, "a", a);
  const full = same(mask.shape, a.shape);
  const perSample = mask.size === n && mask.shape[0] === n;
  if (!full && !perSample) {
    throw new Error(
      `flowgpu: ${op}: mask ${fmtShape(mask.shape)} is neither a's shape ${fmtShape(a.shape)} ` +
        `nor one value per sample ([${n}] or [${n}, 1, ...])`,
    );
  }
  const size = a.size;
  const params = (flip: number) => [size, size / n, full ? 1 : 0, mask.size, flip];
  const threads = Math.ceil(size / 4);
  const out = Tensor.empty(a.shape, op);
  WHERE.run({ mask, a, b, out }, { params: params(0), threads });
  return record(out, [a, b], (g) => {
    [a, b].forEach((t, flip) => {
      if (!t.requiresGrad) return;
      const d = Tensor.empty(a.shape, `${op}'`);
      WHERE_BWD.run({ mask, g, out: d }, { params: params(flip), threads });
      accumulate(t, d);
    });
  });
}

/**
 * The projection discriminator's class term (Miyato & Koyama 2018): out[b] = <table[labels[b]],
 * h[b]> for a class embedding table [C, D] and features h [B, D], as [B, 1] (the shape of the
 * discriminator's linear head, to which it is added). Gradients reach h and the table (rows
 * scatter-added by label), without a gathered [B, D] copy.
 */
export function projectionTerm(table: Tensor, labels: Index, h: Tensor): Tensor {
  const op = "projectionTerm";
  if (table.shape.length !== 2 || h.shape.length !== 2 || table.size === 0 || h.size === 0) {
    throw new Error(
      `flowgpu: ${op}: needs table [C, D] and h [B, D] (non-empty), got table ` +
        `${fmtShape(table.shape)} and h ${fmtShape(h.shape)}`,
    );
  }
  const [c, d] = table.shape;
  const b = h.shape[0];
  if (h.shape[1] !== d) {
    throw new Error(
      `flowgpu: ${op}: h ${fmtShape(h.shape)} needs the embedding size D = ${d} of table ` +
        `${fmtShape(table.shape)}`,
    );
  }
  if (labels.length !== b) {
    throw new Error(
      `flowgpu: ${op}: ${labels.length} labels for h ${fmtShape(h.shape)} (need ${b})`,
    );
  }
  const idx = indexBuffer(
    labels,
    c,
    (l, i) =>
      `flowgpu: ${op}: label ${l} (at index ${i}) is out of range for a table of C = ${c} rows ` +
      `${fmtShape(table.shape)} (labels are integers in [0, ${c}))`,
  );
  const params = [b, d, c];
  const out = Tensor.empty([b, 1], op);
  PROJ.run({ table, h, idx, out }, { params, threads: b });
  const y = record(out, [table, h], (g) => {
    if (h.requiresGrad) {
      const dh = Tensor.empty(h.shape, `${op}' h`);
      PROJ_DH.run({ g, table, idx, dh }, { params, threads: b * d });
      accumulate(h, dh);
    }
    if (table.requiresGrad) {
      const dtable = Tensor.empty(table.shape, `${op}' table`);
      PROJ_DTABLE.run({ g, h, idx, dtable }, { params, threads: c * d });
      accumulate(table, dtable);
    }
  });
  if (!y.requiresGrad) idx.release();
  return y;
}

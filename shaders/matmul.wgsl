// Batched matrix product C[z] = op(A[z]) · op(B[z]), op(X) = X or Xᵀ (override TA, TB).
// Shapes are of the product: op(A) is [M, K], op(B) is [K, N], C is [M, N], all row-major; with
// TA the stored A is [K, M], with TB the stored B is [N, K]. Transposes are only index flags on
// the read side, so the backward passes (dA = dC·Bᵀ, dB = Aᵀ·dC) reuse these kernels as they are.
//
// Batches: z = global_invocation_id.z. Batch strides sa, sb, sc are in elements; a stride of 0
// shares that operand across the batch. With nsum > 1 each invocation also sums over nsum
// consecutive batches (the gradient of a shared operand: the batch joins the reduction).
//
// Register blocking: an invocation computes RM x CN blocks of 4x4 outputs (8x8 by default). A
// 4x4 block is a mat4x4f whose column i is a row of C, and each step of 4 along K updates it with
// one 4x4 matrix product of an op(B) tile and an op(A) tile. Why 8x8: lavapipe runs invocations
// as SIMD lanes and turns every storage load into a loop over the lanes, so its cost is per load
// instruction, nearly independent of width; an 8x8 block makes 16 FMAs per loaded float per
// invocation, and larger blocks lose more to register spills than they save (measured).
//
// Entry points:
//   mm_vec4    barrier-free, vec4 loads of each tile in whichever direction is contiguous in
//              memory; needs the contiguous dim of each stored operand (K or M for A, N or K
//              for B) to be a multiple of 4 (the host checks). Any M, N, K otherwise.
//   mm_scalar  barrier-free, scalar loads, any shape.
//   mm_tiled   classic workgroup-memory tiling (64x64 C tile, 16-deep K slices, 16x16
//              invocations of 4x4 each), any shape: the usual choice on discrete GPUs, but
//              1.2-2.5x slower than mm_vec4 on lavapipe (256³ to 1024³), where a load from
//              workgroup memory costs as much as one from storage and barriers suspend
//              every invocation.
// Rows and columns past the edge are clamped on load (read, never stored) and skipped on store.

override TA: u32 = 0u;
override TB: u32 = 0u;
// Workgroup of the barrier-free kernels: TX by TY invocations.
override TX: u32 = 16u;
override TY: u32 = 4u;
// 4x4 blocks per invocation: RM down, CN across (each at most 2).
override RM: u32 = 2u;
override CN: u32 = 2u;

struct Mm { m: u32, n: u32, k: u32, sa: u32, sb: u32, sc: u32, nsum: u32 }
@group(0) @binding(0) var<uniform> p: Mm;

// Output, written a float at a time: any N, and a store costs little next to the K loop.
@group(0) @binding(3) var<storage, read_write> c1: array<f32>;

fn store_blocks(z: u32, m0: u32, n0: u32, acc: array<mat4x4f, 4>) {
  let oc = z * p.sc;
  for (var r = 0u; r < RM; r++) {
    for (var c = 0u; c < CN; c++) {
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
          let m = m0 + 4u * r + i;
          let n = n0 + 4u * c + j;
          if (m < p.m && n < p.n) { c1[oc + m * p.n + n] = acc[r * CN + c][i][j]; }
        }
      }
    }
  }
}

// ---- mm_vec4 ----
@group(0) @binding(1) var<storage, read> a4: array<vec4f>;
@group(0) @binding(2) var<storage, read> b4: array<vec4f>;

// op(A)[m0..m0+3, k..k+3] transposed: column i holds row m0 + i of op(A). Offsets in vec4s.
fn tile_a4(off: u32, m0: u32, k: u32) -> mat4x4f {
  if (TA == 0u) {
    let stride = p.k / 4u;
    let last = p.m - 1u;
    let base = off + k / 4u;
    return mat4x4f(
      a4[base + min(m0, last) * stride],
      a4[base + min(m0 + 1u, last) * stride],
      a4[base + min(m0 + 2u, last) * stride],
      a4[base + min(m0 + 3u, last) * stride],
    );
  }
  let stride = p.m / 4u;
  let base = off + k * stride + min(m0, p.m - 4u) / 4u;
  return transpose(mat4x4f(
    a4[base],
    a4[base + stride],
    a4[base + 2u * stride],
    a4[base + 3u * stride],
  ));
}

// op(B)[k..k+3, n0..n0+3]: column kk holds row k + kk of op(B).
fn tile_b4(off: u32, n0: u32, k: u32) -> mat4x4f {
  if (TB == 0u) {
    let stride = p.n / 4u;
    let base = off + k * stride + min(n0, p.n - 4u) / 4u;
    return mat4x4f(b4[base], b4[base + stride], b4[base + 2u * stride], b4[base + 3u * stride]);
  }
  let stride = p.k / 4u;
  let last = p.n - 1u;
  let base = off + k / 4u;
  return transpose(mat4x4f(
    b4[base + min(n0, last) * stride],
    b4[base + min(n0 + 1u, last) * stride],
    b4[base + min(n0 + 2u, last) * stride],
    b4[base + min(n0 + 3u, last) * stride],
  ));
}

@compute @workgroup_size(TX, TY)
fn mm_vec4(@builtin(global_invocation_id) gid: vec3u) {
  let n0 = gid.x * (4u * CN);
  let m0 = gid.y * (4u * RM);
  if (n0 >= p.n || m0 >= p.m) { return; }
  // K-contiguous operands need K % 4 == 0; only A stored [K, M] with B stored [K, N] has a tail.
  let kv = select(p.k, p.k & ~3u, TA == 1u && TB == 0u);
  var acc: array<mat4x4f, 4>;
  var bt: array<mat4x4f, 2>;
  for (var s = 0u; s < p.nsum; s++) {
    let z = gid.z * p.nsum + s;
    let oa = z * (p.sa / 4u);
    let ob = z * (p.sb / 4u);
    for (var k = 0u; k < kv; k += 4u) {
      for (var c = 0u; c < CN; c++) { bt[c] = tile_b4(ob, n0 + 4u * c, k); }
      for (var r = 0u; r < RM; r++) {
        let at = tile_a4(oa, m0 + 4u * r, k);
        for (var c = 0u; c < CN; c++) { acc[r * CN + c] += bt[c] * at; }
      }
    }
    for (var k = kv; k < p.k; k++) {
      for (var r = 0u; r < RM; r++) {
        let a = a4[oa + k * (p.m / 4u) + min(m0 + 4u * r, p.m - 4u) / 4u];
        for (var c = 0u; c < CN; c++) {
          let b = b4[ob + k * (p.n / 4u) + min(n0 + 4u * c, p.n - 4u) / 4u];
          acc[r * CN + c] += mat4x4f(b * a.x, b * a.y, b * a.z, b * a.w);
        }
      }
    }
  }
  store_blocks(gid.z, m0, n0, acc);
}

// ---- mm_scalar ----
@group(0) @binding(1) var<storage, read> a1: array<f32>;
@group(0) @binding(2) var<storage, read> b1: array<f32>;

fn load_a(off: u32, i: u32, k: u32) -> f32 {
  let r = min(i, p.m - 1u);
  return a1[off + select(r * p.k + k, k * p.m + r, TA == 1u)];
}

fn load_b(off: u32, k: u32, j: u32) -> f32 {
  let c = min(j, p.n - 1u);
  return b1[off + select(k * p.n + c, c * p.k + k, TB == 1u)];
}

@compute @workgroup_size(TX, TY)
fn mm_scalar(@builtin(global_invocation_id) gid: vec3u) {
  let n0 = gid.x * (4u * CN);
  let m0 = gid.y * (4u * RM);
  if (n0 >= p.n || m0 >= p.m) { return; }
  var acc: array<mat4x4f, 4>;
  var b: array<vec4f, 2>;
  for (var s = 0u; s < p.nsum; s++) {
    let z = gid.z * p.nsum + s;
    let oa = z * p.sa;
    let ob = z * p.sb;
    for (var k = 0u; k < p.k; k++) {
      for (var c = 0u; c < CN; c++) {
        let n = n0 + 4u * c;
        b[c] = vec4f(load_b(ob, k, n), load_b(ob, k, n + 1u), load_b(ob, k, n + 2u),
          load_b(ob, k, n + 3u));
      }
      for (var r = 0u; r < RM; r++) {
        let m = m0 + 4u * r;
        let a = vec4f(load_a(oa, m, k), load_a(oa, m + 1u, k), load_a(oa, m + 2u, k),
          load_a(oa, m + 3u, k));
        for (var c = 0u; c < CN; c++) {
          let bc = b[c];
          acc[r * CN + c] += mat4x4f(bc * a.x, bc * a.y, bc * a.z, bc * a.w);
        }
      }
    }
  }
  store_blocks(gid.z, m0, n0, acc);
}

// ---- mm_tiled ----
const BM = 64u;
const BN = 64u;
const BK = 16u;
// K-major tiles, so an invocation's 4 rows (or 4 columns) at one k are one vec4.
var<workgroup> ta: array<vec4f, 256>; // BK * BM / 4
var<workgroup> tb: array<vec4f, 256>; // BK * BN / 4

@compute @workgroup_size(16, 16)
fn mm_tiled(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(local_invocation_index) li: u32,
) {
  let bm = wid.y * BM;
  let bn = wid.x * BN;
  var acc = mat4x4f();
  for (var s = 0u; s < p.nsum; s++) {
    let z = wid.z * p.nsum + s;
    let oa = z * p.sa;
    let ob = z * p.sb;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
      // 1024 elements of each tile, 4 per invocation; consecutive invocations follow the
      // contiguous direction in memory (coalesced on GPUs).
      for (var e = 0u; e < 4u; e++) {
        let idx = li + e * 256u;
        var m = idx / BK;
        var ka = idx % BK;
        if (TA == 1u) {
          m = idx % BM;
          ka = idx / BM;
        }
        var va = 0.0;
        if (bm + m < p.m && k0 + ka < p.k) { va = load_a(oa, bm + m, k0 + ka); }
        ta[(ka * BM + m) / 4u][m % 4u] = va;
        var n = idx % BN;
        var kb = idx / BN;
        if (TB == 1u) {
          n = idx / BK;
          kb = idx % BK;
        }
        var vb = 0.0;
        if (bn + n < p.n && k0 + kb < p.k) { vb = load_b(ob, k0 + kb, bn + n); }
        tb[(kb * BN + n) / 4u][n % 4u] = vb;
      }
      workgroupBarrier();
      for (var kk = 0u; kk < BK; kk++) {
        let a = ta[kk * (BM / 4u) + lid.y];
        let b = tb[kk * (BN / 4u) + lid.x];
        acc += mat4x4f(b * a.x, b * a.y, b * a.z, b * a.w);
      }
      workgroupBarrier();
    }
  }
  let m0 = bm + lid.y * 4u;
  let n0 = bn + lid.x * 4u;
  let oc = wid.z * p.sc;
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j++) {
      if (m0 + i < p.m && n0 + j < p.n) { c1[oc + (m0 + i) * p.n + n0 + j] = acc[i][j]; }
    }
  }
}

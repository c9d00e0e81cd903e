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
//   mm_pack, mm_panel, mm_unpack  (below) packed K-major panels and 32x16 blocks per
//              invocation, any shape: 2-3x faster than mm_vec4 on lavapipe; three passes.
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

// ---- mm_panel: packed panels, 32x16 outputs per invocation ----
// For large products. mm_pack first copies op(A) and op(B) into K-major panels
// P[z][j / W][k][j % W] (j: a row of op(A), W = 32, or a column of op(B), W = 16; zero past the
// end), so at each k an invocation reads its 32 rows of op(A) and 16 columns of op(B) as three
// mat4x4f loads and makes 512 multiply-adds of them. On lavapipe a load costs per instruction
// (a loop over the SIMD lanes), and one mat4x4f load measured cheaper than its 4 vec4s: 170
// multiply-adds per load against 16 in mm_vec4 (measured 2-3x faster from 256³ to 1024³; 16x16
// blocks, or vec4 loads, are 20-30% slower). Each invocation streams two contiguous panels:
// rows of a plain [K, N] operand lie 4 KB apart at N = 1024, where every k would start a new
// page and the prefetchers give up.

// pack: dst[z][j / W][k][j % W] = src[z * zs + (j * K + k, or k * J + j if KMAJOR)].
override KMAJOR: u32 = 0u;
struct Pk { total4: u32, j: u32, k: u32, zs: u32, jb: u32, w4: u32 }
@group(0) @binding(0) var<uniform> pk: Pk;
@group(0) @binding(1) var<storage, read> pack_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> pack_dst: array<vec4f>;

@compute @workgroup_size(WG)
fn mm_pack(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= pk.total4) { return; }
  let q = i % pk.w4;
  let k = (i / pk.w4) % pk.k;
  let panel = i / (pk.w4 * pk.k);
  let z = panel / pk.jb;
  let j0 = ((panel % pk.jb) * pk.w4 + q) * 4u;
  let off = z * pk.zs;
  var v = vec4f(0.0);
  for (var e = 0u; e < 4u; e++) {
    let j = j0 + e;
    if (j < pk.j) {
      v[e] = pack_src[off + select(j * pk.k + k, k * pk.j + j, KMAJOR == 1u)];
    }
  }
  pack_dst[i] = v;
}

// Batch strides sa, sb in mat4x4fs (0: a shared operand); mb, nb: panels of op(A), op(B).
struct Mp { k: u32, sa: u32, sb: u32, nsum: u32, mb: u32, nb: u32 }
@group(0) @binding(0) var<uniform> pp: Mp;
@group(0) @binding(1) var<storage, read> pa: array<mat4x4f>;
@group(0) @binding(2) var<storage, read> pb: array<mat4x4f>;
// Blocks of C: pt[z][m / 32][n / 16][4x4 block r * 4 + c], unpacked into C by mm_unpack.
@group(0) @binding(3) var<storage, read_write> pt: array<mat4x4f>;

// Column i: row i of a 4x4 block of C, a[i] times the 4 columns b.
fn mm4(a: vec4f, b: vec4f) -> mat4x4f {
  return mat4x4f(b * a.x, b * a.y, b * a.z, b * a.w);
}

// Workgroup: 8 invocations across N (one SIMD group on lavapipe, sharing their A panel) by 4
// down M: a 128 x 128 tile of C.
@compute @workgroup_size(8, 4)
fn mm_panel(@builtin(global_invocation_id) gid: vec3u) {
  let jn = gid.x;
  let jm = gid.y;
  if (jn >= pp.nb || jm >= pp.mb) { return; }
  // c<r>_<c>: the 4x4 block at rows 4r.., columns 4c.. of this invocation's 32 x 16.
  var c0_0 = mat4x4f(); var c0_1 = mat4x4f(); var c0_2 = mat4x4f(); var c0_3 = mat4x4f();
  var c1_0 = mat4x4f(); var c1_1 = mat4x4f(); var c1_2 = mat4x4f(); var c1_3 = mat4x4f();
  var c2_0 = mat4x4f(); var c2_1 = mat4x4f(); var c2_2 = mat4x4f(); var c2_3 = mat4x4f();
  var c3_0 = mat4x4f(); var c3_1 = mat4x4f(); var c3_2 = mat4x4f(); var c3_3 = mat4x4f();
  var c4_0 = mat4x4f(); var c4_1 = mat4x4f(); var c4_2 = mat4x4f(); var c4_3 = mat4x4f();
  var c5_0 = mat4x4f(); var c5_1 = mat4x4f(); var c5_2 = mat4x4f(); var c5_3 = mat4x4f();
  var c6_0 = mat4x4f(); var c6_1 = mat4x4f(); var c6_2 = mat4x4f(); var c6_3 = mat4x4f();
  var c7_0 = mat4x4f(); var c7_1 = mat4x4f(); var c7_2 = mat4x4f(); var c7_3 = mat4x4f();
  for (var s = 0u; s < pp.nsum; s++) {
    let z = gid.z * pp.nsum + s;
    var ia = z * pp.sa + jm * 2u * pp.k;
    var ib = z * pp.sb + jn * pp.k;
    for (var k = 0u; k < pp.k; k++) {
      let a0 = pa[ia];
      let a1 = pa[ia + 1u];
      let b = pb[ib];
      c0_0 += mm4(a0[0], b[0]);
      c0_1 += mm4(a0[0], b[1]);
      c0_2 += mm4(a0[0], b[2]);
      c0_3 += mm4(a0[0], b[3]);
      c1_0 += mm4(a0[1], b[0]);
      c1_1 += mm4(a0[1], b[1]);
      c1_2 += mm4(a0[1], b[2]);
      c1_3 += mm4(a0[1], b[3]);
      c2_0 += mm4(a0[2], b[0]);
      c2_1 += mm4(a0[2], b[1]);
      c2_2 += mm4(a0[2], b[2]);
      c2_3 += mm4(a0[2], b[3]);
      c3_0 += mm4(a0[3], b[0]);
      c3_1 += mm4(a0[3], b[1]);
      c3_2 += mm4(a0[3], b[2]);
      c3_3 += mm4(a0[3], b[3]);
      c4_0 += mm4(a1[0], b[0]);
      c4_1 += mm4(a1[0], b[1]);
      c4_2 += mm4(a1[0], b[2]);
      c4_3 += mm4(a1[0], b[3]);
      c5_0 += mm4(a1[1], b[0]);
      c5_1 += mm4(a1[1], b[1]);
      c5_2 += mm4(a1[1], b[2]);
      c5_3 += mm4(a1[1], b[3]);
      c6_0 += mm4(a1[2], b[0]);
      c6_1 += mm4(a1[2], b[1]);
      c6_2 += mm4(a1[2], b[2]);
      c6_3 += mm4(a1[2], b[3]);
      c7_0 += mm4(a1[3], b[0]);
      c7_1 += mm4(a1[3], b[1]);
      c7_2 += mm4(a1[3], b[2]);
      c7_3 += mm4(a1[3], b[3]);
      ia += 2u;
      ib += 1u;
    }
  }
  // Whole mat4x4fs to a padded buffer: 32 store instructions, where bounds-checked stores into
  // C make 512 (LLVM then takes 30 s to compile the kernel, measured).
  let base = ((gid.z * pp.mb + jm) * pp.nb + jn) * 32u;
  pt[base + 0u] = c0_0;
  pt[base + 1u] = c0_1;
  pt[base + 2u] = c0_2;
  pt[base + 3u] = c0_3;
  pt[base + 4u] = c1_0;
  pt[base + 5u] = c1_1;
  pt[base + 6u] = c1_2;
  pt[base + 7u] = c1_3;
  pt[base + 8u] = c2_0;
  pt[base + 9u] = c2_1;
  pt[base + 10u] = c2_2;
  pt[base + 11u] = c2_3;
  pt[base + 12u] = c3_0;
  pt[base + 13u] = c3_1;
  pt[base + 14u] = c3_2;
  pt[base + 15u] = c3_3;
  pt[base + 16u] = c4_0;
  pt[base + 17u] = c4_1;
  pt[base + 18u] = c4_2;
  pt[base + 19u] = c4_3;
  pt[base + 20u] = c5_0;
  pt[base + 21u] = c5_1;
  pt[base + 22u] = c5_2;
  pt[base + 23u] = c5_3;
  pt[base + 24u] = c6_0;
  pt[base + 25u] = c6_1;
  pt[base + 26u] = c6_2;
  pt[base + 27u] = c6_3;
  pt[base + 28u] = c7_0;
  pt[base + 29u] = c7_1;
  pt[base + 30u] = c7_2;
  pt[base + 31u] = c7_3;
}

// C[z][m][n] from mm_panel's blocks; an invocation moves 4 columns of a row (one vec4 there).
struct Up { total4: u32, m: u32, n: u32, n4: u32, mb: u32, nb: u32 }
@group(0) @binding(0) var<uniform> up: Up;
@group(0) @binding(1) var<storage, read> up_src: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> up_dst: array<f32>;

@compute @workgroup_size(WG)
fn mm_unpack(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= up.total4) { return; }
  let n0 = (i % up.n4) * 4u;
  let zm = i / up.n4;
  let m = zm % up.m;
  let z = zm / up.m;
  let tile = (z * up.mb + m / 32u) * up.nb + n0 / 16u;
  let blk = tile * 32u + (m % 32u) / 4u * 4u + (n0 % 16u) / 4u;
  let v = up_src[blk * 4u + m % 4u];
  let base = zm * up.n + n0;
  for (var j = 0u; j < 4u; j++) {
    if (n0 + j < up.n) { up_dst[base + j] = v[j]; }
  }
}

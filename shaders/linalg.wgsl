// Small dense matrices (the C x C weights of invertible 1x1 convolutions, C <= a few hundred):
// in-place Gauss-Jordan elimination with partial pivoting gives W^-1 and log|det W| (the sum of
// log|pivot|). The backward of W^-1 (dW = -W^-T G W^-T) is two per-element matrix products.
//
// Why the elimination is split the way it is: Mesa's LLVM compiler (lavapipe, llvmpipe) stops
// every loop of an invocation once that invocation has taken 65,535 loop iterations in all (its
// loop limiter), silently. One invocation running the whole elimination (~C^3 iterations)
// returned a wrong inverse from C = 39 on. So one workgroup per matrix eliminates with one
// thread per 4 columns (C + 2 loop iterations per pivot step), and the host splits the C steps
// over as many dispatches as keep every invocation's total to a few thousand (linalg.ts). A
// thread owns its columns for the whole elimination, so the only barrier is one per step; the
// matrix lives in storage, not workgroup memory (16 KiB would cap C).
//
// In place: step k swaps rows k and p_k, divides row k by the pivot and subtracts it from the
// other rows, with column k taken as the unit vector e_k, so that column k becomes column k of
// the inverse. Undoing the row swaps as column swaps, last first, leaves W^-1 (half the work of
// eliminating [W | I]).

struct La { b: u32, c: u32, k0: u32, k1: u32 }
@group(0) @binding(0) var<uniform> la: La;
@group(0) @binding(1) var<storage, read> w_in: array<f32>;
// The matrix being inverted, per matrix C rows of ceil(C / 4) vec4s.
@group(0) @binding(2) var<storage, read_write> elim: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> w_inv: array<f32>;
// Per matrix 3C + 2 words: two slots (pivot steps alternate) of C + 1 words, column k as it is
// before step k then the step's pivot row p_k (bitcast u32), then every p_k (bitcast u32).
@group(0) @binding(4) var<storage, read_write> pivots: array<f32>;
@group(0) @binding(5) var<storage, read_write> logabsdet: array<f32>;

fn row_at(m: u32, i: u32) -> u32 {
  return (m * la.c + i) * ((la.c + 3u) / 4u);
}

fn slot_at(m: u32, k: u32) -> u32 {
  return m * (3u * la.c + 2u) + (k % 2u) * (la.c + 1u);
}

fn swaps_at(m: u32) -> u32 {
  return m * (3u * la.c + 2u) + 2u * (la.c + 1u);
}

fn load_at(m: u32, i: u32, j: u32) -> f32 {
  if (j >= la.c) { return 0.0; }
  return w_in[(m * la.c + i) * la.c + j];
}

fn store_at(m: u32, i: u32, j: u32, dst: u32, v: f32) {
  if (j < la.c) { w_inv[(m * la.c + i) * la.c + dst] = v; }
}

// Steps k0 <= k < k1 of every matrix (one workgroup each): the first dispatch loads W and
// chooses the first pivot, the last writes W^-1. The thread that owns column k + 1 chooses the
// next pivot (the first largest |a[i][k + 1]|, i > k) as it updates that column, and adds
// log|pivot| to the log-det, in pivot order.
@compute @workgroup_size(WG)
fn inverse_logdet(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
  let m = wid.x;
  let c = la.c;
  let nq = (c + 3u) / 4u;
  if (la.k0 == 0u) {
    let s = slot_at(m, 0u);
    var best = -1.0;
    var bp = 0u;
    for (var q = t; q < nq; q += WG) {
      for (var i = 0u; i < c; i++) {
        let j = 4u * q;
        let v = vec4f(load_at(m, i, j), load_at(m, i, j + 1u), load_at(m, i, j + 2u),
          load_at(m, i, j + 3u));
        elim[row_at(m, i) + q] = v;
        if (q == 0u) {
          pivots[s + i] = v.x;
          if (abs(v.x) > best) {
            best = abs(v.x);
            bp = i;
          }
        }
      }
    }
    if (t == 0u) {
      pivots[s + c] = bitcast<f32>(bp);
      pivots[swaps_at(m)] = bitcast<f32>(bp);
      logabsdet[m] = log(best);
    }
  }
  for (var k = la.k0; k < la.k1; k++) {
    // The previous step's columns and this step's pivot, written by other threads.
    storageBarrier();
    let s = slot_at(m, k);
    let p = bitcast<u32>(pivots[s + c]);
    let d = pivots[s + p];
    let s1 = slot_at(m, k + 1u);
    for (var q = t; q < nq; q += WG) {
      // Row i of the swapped matrix is row r of the stored one; column k reads as e_k.
      let has_k = q == k / 4u;
      let next = q == (k + 1u) / 4u && k + 1u < c;
      var piv_row = elim[row_at(m, p) + q];
      if (has_k) { piv_row[k % 4u] = 1.0; }
      let pv = piv_row / d;
      var best = -1.0;
      var bp = k + 1u;
      for (var i = 0u; i < c; i++) {
        if (i != k) {
          let r = select(i, k, i == p);
          var old = elim[row_at(m, r) + q];
          if (has_k) { old[k % 4u] = 0.0; }
          let v = old - pivots[s + r] * pv;
          elim[row_at(m, i) + q] = v;
          if (next) {
            let x = v[(k + 1u) % 4u];
            pivots[s1 + i] = x;
            if (i > k && abs(x) > best) {
              best = abs(x);
              bp = i;
            }
          }
        }
      }
      elim[row_at(m, k) + q] = pv;
      if (next) {
        pivots[s1 + k] = pv[(k + 1u) % 4u];
        pivots[s1 + c] = bitcast<f32>(bp);
        pivots[swaps_at(m) + k + 1u] = bitcast<f32>(bp);
        logabsdet[m] += log(best);
      }
    }
  }
  if (la.k1 == c) {
    // Every p_k is known (the last one was chosen before the last step's barrier). Column j of
    // the eliminated matrix is column dst of W^-1 after swapping columns k and p_k, k = C-1..0.
    for (var q = t; q < nq; q += WG) {
      var dst = vec4u(4u * q) + vec4u(0u, 1u, 2u, 3u);
      for (var k = c; k > 0u; k--) {
        let pk = vec4u(bitcast<u32>(pivots[swaps_at(m) + k - 1u]));
        let kk = vec4u(k - 1u);
        dst = select(select(dst, kk, dst == pk), pk, dst == kk);
      }
      for (var i = 0u; i < c; i++) {
        let v = elim[row_at(m, i) + q];
        store_at(m, i, 4u * q, dst.x, v.x);
        store_at(m, i, 4u * q + 1u, dst.y, v.y);
        store_at(m, i, 4u * q + 2u, dst.z, v.z);
        store_at(m, i, 4u * q + 3u, dst.w, v.w);
      }
    }
  }
}

// d log|det W| / dW = W^-T, times the upstream gradient of each matrix's log-det.
@group(0) @binding(1) var<storage, read> g_inv: array<f32>;
@group(0) @binding(2) var<storage, read> g_ld: array<f32>;
@group(0) @binding(3) var<storage, read_write> g_dw: array<f32>;

@compute @workgroup_size(WG)
fn logdet_backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  let cc = la.c * la.c;
  if (t >= la.b * cc) { return; }
  let m = t / cc;
  let i = (t % cc) / la.c;
  let j = t % la.c;
  g_dw[t] = g_ld[m] * g_inv[m * cc + j * la.c + i];
}

// Backward of A = W^-1: dW = -A^T G A^T, as T = G A^T, then dW = -A^T T. One thread per element
// of a [B, C, C] result; each is a C-term dot product, so no shared memory or barriers.
@group(0) @binding(1) var<storage, read> ib_a: array<f32>;
@group(0) @binding(2) var<storage, read> ib_g: array<f32>;
@group(0) @binding(3) var<storage, read_write> ib_t: array<f32>;

// T[i, j] = sum_k G[i, k] A[j, k]
@compute @workgroup_size(WG)
fn inverse_backward_t(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  let c = la.c;
  let cc = c * c;
  if (t >= la.b * cc) { return; }
  let base = (t / cc) * cc;
  let i = (t % cc) / c;
  let j = t % c;
  var s = 0.0;
  for (var k = 0u; k < c; k++) { s += ib_g[base + i * c + k] * ib_a[base + j * c + k]; }
  ib_t[t] = s;
}

@group(0) @binding(2) var<storage, read> iw_t: array<f32>;
@group(0) @binding(3) var<storage, read_write> iw_dw: array<f32>;

// dW[i, j] = -sum_k A[k, i] T[k, j]
@compute @workgroup_size(WG)
fn inverse_backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  let c = la.c;
  let cc = c * c;
  if (t >= la.b * cc) { return; }
  let base = (t / cc) * cc;
  let i = (t % cc) / c;
  let j = t % c;
  var s = 0.0;
  for (var k = 0u; k < c; k++) { s += ib_a[base + k * c + i] * iw_t[base + k * c + j]; }
  iw_dw[t] = -s;
}

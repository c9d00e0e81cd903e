// Small dense matrices (the C x C weights of invertible 1x1 convolutions, C <= a few hundred):
// Gauss-Jordan elimination with partial pivoting on [W | I] gives W^-1 and log|det W| (the sum
// of log|pivot|). The backward of W^-1 (dW = -W^-T G W^-T) is two per-element matrix products.
//
// Why the elimination is split the way it is: Mesa's LLVM compiler (lavapipe, llvmpipe) stops
// every loop of an invocation once that invocation has taken 65,535 loop iterations in all (its
// loop limiter, LP_MAX_TGSI_LOOP_ITERATIONS), silently. One invocation running the whole
// elimination (~C^3 iterations) returned a wrong inverse from C = 39 on. So one workgroup per
// matrix eliminates with one thread per column of [W | I] (C + 1 iterations per pivot), and the
// host splits the C pivot steps over as many dispatches as keep every invocation's total under a
// few thousand iterations (linalg.ts). A thread owns its columns for the whole elimination, so
// the only barrier is one per pivot step; workgroup memory is not used (16 KiB would cap C).

struct La { b: u32, c: u32, k0: u32, k1: u32 }
@group(0) @binding(0) var<uniform> la: La;
@group(0) @binding(1) var<storage, read> w_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(3) var<storage, read_write> w_inv: array<f32>;
// Per matrix, two slots (pivot steps alternate) of C + 1 words: column k of the eliminated
// matrix before its row swap, then the pivot row index (bitcast u32).
@group(0) @binding(4) var<storage, read_write> pivots: array<f32>;
@group(0) @binding(5) var<storage, read_write> logabsdet: array<f32>;

// Element (i, j) of [W | I] as it is eliminated: W's columns in scratch, I's in w_inv.
fn aug_get(base: u32, i: u32, j: u32) -> f32 {
  if (j < la.c) { return scratch[base + i * la.c + j]; }
  return w_inv[base + i * la.c + j - la.c];
}

fn aug_set(base: u32, i: u32, j: u32, v: f32) {
  if (j < la.c) {
    scratch[base + i * la.c + j] = v;
  } else {
    w_inv[base + i * la.c + j - la.c] = v;
  }
}

// Run by the thread that owns column k, once that column is final for step k: the pivot (first
// largest |a[i][k]| for i >= k, as the single-invocation version chose it), the column's factors
// into the step's slot, and log|pivot| added to the log-det in pivot order.
fn choose_pivot(m: u32, base: u32, k: u32) {
  let c = la.c;
  let s = m * 2u * (c + 1u) + (k % 2u) * (c + 1u);
  var p = k;
  var best = -1.0;
  for (var i = 0u; i < c; i++) {
    let v = scratch[base + i * c + k];
    pivots[s + i] = v;
    if (i >= k && abs(v) > best) {
      best = abs(v);
      p = i;
    }
  }
  pivots[s + c] = bitcast<f32>(p);
  logabsdet[m] = select(logabsdet[m], 0.0, k == 0u) + log(best);
}

// Pivot steps k0 <= k < k1 of every matrix (one workgroup each); step 0 first loads [W | I].
@compute @workgroup_size(WG)
fn inverse_logdet(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) t: u32) {
  let m = wid.x;
  let c = la.c;
  let base = m * c * c;
  if (la.k0 == 0u) {
    for (var j = t; j < 2u * c; j += WG) {
      for (var i = 0u; i < c; i++) {
        if (j < c) {
          scratch[base + i * c + j] = w_in[base + i * c + j];
        } else {
          w_inv[base + i * c + j - c] = select(0.0, 1.0, i == j - c);
        }
      }
    }
    if (t == 0u) { choose_pivot(m, base, 0u); }
  }
  for (var k = la.k0; k < la.k1; k++) {
    // The previous step's columns and this step's pivot slot, written by other threads.
    storageBarrier();
    let s = m * 2u * (c + 1u) + (k % 2u) * (c + 1u);
    let p = bitcast<u32>(pivots[s + c]);
    let d = pivots[s + p];
    for (var j = t; j < 2u * c; j += WG) {
      // Swap rows k and p, divide row k by the pivot, subtract it from every other row: row i
      // of the swapped matrix is row r of the stored one.
      let pv = aug_get(base, p, j) / d;
      for (var i = 0u; i < c; i++) {
        if (i != k) {
          let r = select(i, k, i == p);
          aug_set(base, i, j, aug_get(base, r, j) - pivots[s + r] * pv);
        }
      }
      aug_set(base, k, j, pv);
      if (j == k + 1u && j < c) { choose_pivot(m, base, k + 1u); }
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

// Small dense matrices (the C x C weights of invertible 1x1 convolutions, C <= a few hundred):
// one invocation per matrix runs Gauss-Jordan elimination with partial pivoting, giving W^-1 and
// log|det W|. The work is C^3 flops once per parameter update, so simplicity beats parallelism.
// The backward of W^-1 (dW = -W^-T G W^-T) is two per-element matrix products, C flops each.

struct La { b: u32, c: u32 }
@group(0) @binding(0) var<uniform> la: La;
@group(0) @binding(1) var<storage, read> w_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(3) var<storage, read_write> w_inv: array<f32>;
@group(0) @binding(4) var<storage, read_write> logabsdet: array<f32>;

@compute @workgroup_size(1)
fn inverse_logdet(@builtin(workgroup_id) wid: vec3u) {
  let m = wid.x;
  if (m >= la.b) { return; }
  let c = la.c;
  let base = m * c * c;
  for (var i = 0u; i < c * c; i++) {
    scratch[base + i] = w_in[base + i];
    w_inv[base + i] = select(0.0, 1.0, i / c == i % c);
  }
  var ld = 0.0;
  for (var k = 0u; k < c; k++) {
    var piv = k;
    for (var i = k + 1u; i < c; i++) {
      if (abs(scratch[base + i * c + k]) > abs(scratch[base + piv * c + k])) { piv = i; }
    }
    if (piv != k) {
      for (var j = 0u; j < c; j++) {
        let a = scratch[base + k * c + j];
        scratch[base + k * c + j] = scratch[base + piv * c + j];
        scratch[base + piv * c + j] = a;
        let b = w_inv[base + k * c + j];
        w_inv[base + k * c + j] = w_inv[base + piv * c + j];
        w_inv[base + piv * c + j] = b;
      }
    }
    let d = scratch[base + k * c + k];
    ld += log(abs(d));
    for (var j = 0u; j < c; j++) {
      scratch[base + k * c + j] /= d;
      w_inv[base + k * c + j] /= d;
    }
    for (var i = 0u; i < c; i++) {
      if (i == k) { continue; }
      let f = scratch[base + i * c + k];
      if (f == 0.0) { continue; }
      for (var j = 0u; j < c; j++) {
        scratch[base + i * c + j] -= f * scratch[base + k * c + j];
        w_inv[base + i * c + j] -= f * w_inv[base + k * c + j];
      }
    }
  }
  logabsdet[m] = ld;
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

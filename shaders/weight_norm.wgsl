// Weight reparameterisations, on a weight viewed as [A, B, R] whose rows are the B output units
// (row b: the A*R values w[a, b, r]; A = 1 when the unit is dim 0, e.g. conv2d's [O, C, K, K];
// A = Cin for convTranspose2d's [Cin, Cout, K, K]).
//
// Weight norm (Salimans & Kingma 2016), per row, n = |w_b|, inv = 1 / max(n, eps), u = w inv:
//   what = g_b u,   dg_b = s_b = sum_row dwhat u,   dw = g_b inv (dwhat - [n > eps] u s_b).
// Spectral norm (Miyato et al. 2018), the matrix M[b, j] = w[a, b, r] (j = a R + r), one power
// iteration from the persistent u:
//   vt = M^T u,  v = vt / max(|vt|, eps),  y = M v,  u' = y / max(|y|, eps),  sigma = u'.y,
//   what = w / sigma;  with u', v held constant:  dw = (dwhat - (sum dwhat w / sigma) u' v^T) / sigma.
// Row sums are two barrier-free stages: P partial sums per row (contiguous chunks), then one
// thread per row. The spectral norm's two vector norms are summed by one thread (vectors of at
// most a few thousand). Kernels named ...4 load vec4s along r when R % 4 == 0.

struct Wn { a: u32, b: u32, r: u32, p: u32, eps: f32, gain: u32, flag: u32 }
@group(0) @binding(0) var<uniform> wn: Wn;

// ---- stage 1: part[b P + p] = sum over chunk p of row b of x * y ----
// Each thread walks one contiguous chunk of its row: on lavapipe (one CPU thread runs a SIMD
// group's invocations) that is ~7x faster than threads interleaving element by element (measured
// on a 1.6M-element row: 2 ms against 15 ms); weights are small enough that the loss of
// coalescing on a GPU does not matter.
@group(0) @binding(1) var<storage, read> d_x: array<f32>;
@group(0) @binding(2) var<storage, read> d_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> d_part: array<f32>;

// Chunk p of a row of wn.a * wn.r elements: its first (a, r) and its length.
fn chunk(p: u32) -> vec3u {
  let m = wn.a * wn.r;
  let len = (m + wn.p - 1u) / wn.p;
  let j0 = min(m, p * len);
  return vec3u(j0 / wn.r, j0 % wn.r, min(m, j0 + len) - j0);
}

@compute @workgroup_size(WG)
fn dot_partial(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= wn.b * wn.p) { return; }
  let b = t / wn.p;
  let c = chunk(t % wn.p);
  // (a, r) advance with running counters: no division per element.
  var a = c.x;
  var r = c.y;
  var acc = 0.0;
  for (var k = 0u; k < c.z; k++) {
    let i = (a * wn.b + b) * wn.r + r;
    acc += d_x[i] * d_y[i];
    r += 1u;
    if (r == wn.r) { r = 0u; a += 1u; }
  }
  d_part[t] = acc;
}

// The same with vec4 loads when R % 4 == 0 (wn.r is then R / 4).
@group(0) @binding(1) var<storage, read> d4_x: array<vec4f>;
@group(0) @binding(2) var<storage, read> d4_y: array<vec4f>;

@compute @workgroup_size(WG)
fn dot_partial4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= wn.b * wn.p) { return; }
  let b = t / wn.p;
  let c = chunk(t % wn.p);
  var a = c.x;
  var r = c.y;
  var acc = vec4f(0.0);
  for (var k = 0u; k < c.z; k++) {
    let i = (a * wn.b + b) * wn.r + r;
    acc += d4_x[i] * d4_y[i];
    r += 1u;
    if (r == wn.r) { r = 0u; a += 1u; }
  }
  d_part[t] = acc.x + acc.y + acc.z + acc.w;
}

// ---- weight norm ----
// stats[2b] = inv, stats[2b + 1] = 1 when the norm exceeds eps (the clamp passes no gradient).
@group(0) @binding(1) var<storage, read> s_part: array<f32>;
@group(0) @binding(2) var<storage, read_write> s_stats: array<f32>;

fn row_sum(b: u32) -> f32 {
  var acc = 0.0;
  for (var p = 0u; p < wn.p; p++) { acc += s_part[b * wn.p + p]; }
  return acc;
}

@compute @workgroup_size(WG)
fn wn_stats(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let b = flat(gid, nwg);
  if (b >= wn.b) { return; }
  let n = sqrt(row_sum(b));
  s_stats[2u * b] = 1.0 / max(n, wn.eps);
  s_stats[2u * b + 1u] = select(0.0, 1.0, n > wn.eps);
}

// ds[b] = inv_b * sum_row dwhat w = sum_row dwhat u (binding 2: stats, 3: ds).
@group(0) @binding(2) var<storage, read> g_stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> g_ds: array<f32>;

@compute @workgroup_size(WG)
fn wn_dgain(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let b = flat(gid, nwg);
  if (b >= wn.b) { return; }
  g_ds[b] = g_stats[2u * b] * row_sum(b);
}

// what = w * inv_b * g_b (g_b = 1 without a gain).
@group(0) @binding(1) var<storage, read> a_w: array<f32>;
@group(0) @binding(2) var<storage, read> a_stats: array<f32>;
@group(0) @binding(3) var<storage, read> a_gain: array<f32>;
@group(0) @binding(4) var<storage, read_write> a_out: array<f32>;

fn row_scale(b: u32) -> f32 {
  return a_stats[2u * b] * select(1.0, a_gain[b], wn.gain == 1u);
}

@compute @workgroup_size(WG)
fn wn_apply(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= wn.a * wn.b * wn.r) { return; }
  a_out[i] = a_w[i] * row_scale((i / wn.r) % wn.b);
}

@group(0) @binding(1) var<storage, read> a4_w: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> a4_out: array<vec4f>;

@compute @workgroup_size(WG)
fn wn_apply4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= wn.a * wn.b * wn.r) { return; }
  a4_out[i] = a4_w[i] * row_scale((i / wn.r) % wn.b);
}

// dw = g_b inv_b (dwhat - [n_b > eps] w inv_b ds_b).
@group(0) @binding(1) var<storage, read> b_w: array<f32>;
@group(0) @binding(2) var<storage, read> b_g: array<f32>;
@group(0) @binding(3) var<storage, read> b_stats: array<f32>;
@group(0) @binding(4) var<storage, read> b_gain: array<f32>;
@group(0) @binding(5) var<storage, read> b_ds: array<f32>;
@group(0) @binding(6) var<storage, read_write> b_dw: array<f32>;

// (g inv, inv^2 ds [n > eps]) of row b: dw = c.x dwhat - c.y w, with c.y scaled by g too.
fn bwd_coef(b: u32) -> vec2f {
  let inv = b_stats[2u * b];
  let gi = inv * select(1.0, b_gain[b], wn.gain == 1u);
  return vec2f(gi, gi * inv * b_ds[b] * b_stats[2u * b + 1u]);
}

@compute @workgroup_size(WG)
fn wn_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= wn.a * wn.b * wn.r) { return; }
  let c = bwd_coef((i / wn.r) % wn.b);
  b_dw[i] = c.x * b_g[i] - c.y * b_w[i];
}

@group(0) @binding(1) var<storage, read> b4_w: array<vec4f>;
@group(0) @binding(2) var<storage, read> b4_g: array<vec4f>;
@group(0) @binding(6) var<storage, read_write> b4_dw: array<vec4f>;

@compute @workgroup_size(WG)
fn wn_bwd4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= wn.a * wn.b * wn.r) { return; }
  let c = bwd_coef((i / wn.r) % wn.b);
  b4_dw[i] = c.x * b4_g[i] - c.y * b4_w[i];
}

// ---- spectral norm: one power iteration ----
// vt[j] = sum_b M[b, j] u[b], one thread per column j = a R + r.
@group(0) @binding(1) var<storage, read> t_w: array<f32>;
@group(0) @binding(2) var<storage, read> t_u: array<f32>;
@group(0) @binding(3) var<storage, read_write> t_vt: array<f32>;

@compute @workgroup_size(WG)
fn sn_wtu(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let j = flat(gid, nwg);
  if (j >= wn.a * wn.r) { return; }
  let a = j / wn.r;
  var i = a * wn.b * wn.r + (j - a * wn.r);
  var acc = 0.0;
  for (var b = 0u; b < wn.b; b++) {
    acc += t_w[i] * t_u[b];
    i += wn.r;
  }
  t_vt[j] = acc;
}

// The same over 4 columns per thread when R % 4 == 0 (wn.r is then R / 4).
@group(0) @binding(1) var<storage, read> t4_w: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> t4_vt: array<vec4f>;

@compute @workgroup_size(WG)
fn sn_wtu4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let j = flat(gid, nwg);
  if (j >= wn.a * wn.r) { return; }
  let a = j / wn.r;
  var i = a * wn.b * wn.r + (j - a * wn.r);
  var acc = vec4f(0.0);
  for (var b = 0u; b < wn.b; b++) {
    acc += t4_w[i] * t_u[b];
    i += wn.r;
  }
  t4_vt[j] = acc;
}

// part[b P + p] = sum over the columns j of chunk p of M[b, j] vt[j].
@group(0) @binding(1) var<storage, read> m_w: array<f32>;
@group(0) @binding(2) var<storage, read> m_vt: array<f32>;
@group(0) @binding(3) var<storage, read_write> m_part: array<f32>;

@compute @workgroup_size(WG)
fn sn_wv_partial(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= wn.b * wn.p) { return; }
  let b = t / wn.p;
  let c = chunk(t % wn.p);
  var a = c.x;
  var r = c.y;
  var j = a * wn.r + r;
  var acc = 0.0;
  for (var k = 0u; k < c.z; k++) {
    acc += m_w[(a * wn.b + b) * wn.r + r] * m_vt[j];
    j += 1u;
    r += 1u;
    if (r == wn.r) { r = 0u; a += 1u; }
  }
  m_part[t] = acc;
}

@group(0) @binding(1) var<storage, read> m4_w: array<vec4f>;
@group(0) @binding(2) var<storage, read> m4_vt: array<vec4f>;

@compute @workgroup_size(WG)
fn sn_wv_partial4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= wn.b * wn.p) { return; }
  let b = t / wn.p;
  let c = chunk(t % wn.p);
  var a = c.x;
  var r = c.y;
  var j = a * wn.r + r;
  var acc = vec4f(0.0);
  for (var k = 0u; k < c.z; k++) {
    acc += m4_w[(a * wn.b + b) * wn.r + r] * m4_vt[j];
    j += 1u;
    r += 1u;
    if (r == wn.r) { r = 0u; a += 1u; }
  }
  m_part[t] = acc.x + acc.y + acc.z + acc.w;
}

// y[b] = sum of row b's partials (binding 1: part, 2: y).
@compute @workgroup_size(WG)
fn sn_rows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let b = flat(gid, nwg);
  if (b >= wn.b) { return; }
  s_stats[b] = row_sum(b);
}

// One thread: with y = M vt (so M v = y / nv), stats = [sigma, 1 / nv, scale from y to u'].
@group(0) @binding(1) var<storage, read> q_vt: array<f32>;
@group(0) @binding(2) var<storage, read> q_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> q_stats: array<f32>;

@compute @workgroup_size(1)
fn sn_sigma() {
  var v2 = 0.0;
  for (var j = 0u; j < wn.a * wn.r; j++) { v2 += q_vt[j] * q_vt[j]; }
  var y2 = 0.0;
  for (var b = 0u; b < wn.b; b++) { y2 += q_y[b] * q_y[b]; }
  let nv = max(sqrt(v2), wn.eps);
  let ny = sqrt(y2) / nv; // |M v|
  let den = max(ny, wn.eps);
  q_stats[0] = ny * ny / den; // u'.(M v)
  q_stats[1] = 1.0 / nv;
  q_stats[2] = 1.0 / (nv * den);
}

// v = vt / nv and u' = y scale, kept for the backward; u' also into the persistent u when
// wn.flag == 1.
@group(0) @binding(1) var<storage, read> k_vt: array<f32>;
@group(0) @binding(2) var<storage, read> k_y: array<f32>;
@group(0) @binding(3) var<storage, read> k_stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> k_state: array<f32>;
@group(0) @binding(5) var<storage, read_write> k_u: array<f32>;
@group(0) @binding(6) var<storage, read_write> k_v: array<f32>;

@compute @workgroup_size(WG)
fn sn_update(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < wn.a * wn.r) { k_v[i] = k_vt[i] * k_stats[1]; }
  if (i < wn.b) {
    let u = k_y[i] * k_stats[2];
    k_u[i] = u;
    if (wn.flag == 1u) { k_state[i] = u; }
  }
}

// what = w / sigma (binding 2: stats; 4: out).
@compute @workgroup_size(WG)
fn sn_apply(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= wn.a * wn.b * wn.r) { return; }
  a_out[i] = a_w[i] / a_stats[0];
}

@compute @workgroup_size(WG)
fn sn_apply4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= wn.a * wn.b * wn.r) { return; }
  a4_out[i] = a4_w[i] / a_stats[0];
}

// Backward, one thread: coef = [1 / sigma, (sum dwhat w) / sigma^2] from the P partials of
// sum dwhat w (binding 1: part, 2: stats, 3: coef).
@group(0) @binding(3) var<storage, read_write> c_coef: array<f32>;

@compute @workgroup_size(1)
fn sn_coef() {
  var t = 0.0;
  for (var p = 0u; p < wn.p; p++) { t += s_part[p]; }
  let inv = 1.0 / g_stats[0];
  c_coef[0] = inv;
  c_coef[1] = t * inv * inv;
}

// dw[a, b, r] = dwhat / sigma - (t / sigma^2) u'[b] v[a R + r].
@group(0) @binding(1) var<storage, read> e_g: array<f32>;
@group(0) @binding(2) var<storage, read> e_u: array<f32>;
@group(0) @binding(3) var<storage, read> e_v: array<f32>;
@group(0) @binding(4) var<storage, read> e_coef: array<f32>;
@group(0) @binding(5) var<storage, read_write> e_dw: array<f32>;

@compute @workgroup_size(WG)
fn sn_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= wn.a * wn.b * wn.r) { return; }
  let r = i % wn.r;
  let ab = i / wn.r;
  let b = ab % wn.b;
  let a = ab / wn.b;
  e_dw[i] = e_coef[0] * e_g[i] - e_coef[1] * e_u[b] * e_v[a * wn.r + r];
}

// The same with vec4s along r when R % 4 == 0 (wn.r is then R / 4).
@group(0) @binding(1) var<storage, read> e4_g: array<vec4f>;
@group(0) @binding(3) var<storage, read> e4_v: array<vec4f>;
@group(0) @binding(5) var<storage, read_write> e4_dw: array<vec4f>;

@compute @workgroup_size(WG)
fn sn_bwd4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= wn.a * wn.b * wn.r) { return; }
  let r = i % wn.r;
  let ab = i / wn.r;
  let b = ab % wn.b;
  let a = ab / wn.b;
  e4_dw[i] = e_coef[0] * e4_g[i] - (e_coef[1] * e_u[b]) * e4_v[a * wn.r + r];
}


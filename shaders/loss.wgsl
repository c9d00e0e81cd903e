// Densities and classification losses.
// Gaussian log-density: per-element terms log N(z; mu, exp(ls)^2) (then summed per sample by the
// shared reduction, reduce.wgsl) and their gradients w.r.t. z, mu, ls; vec4 over elements.
// Log-softmax and NLL: one thread per row; rows are short (class counts), and a row per thread
// needs no workgroup barrier.

const HALF_LOG_2PI: f32 = 0.91893853320467274;

struct Gauss { n: u32, d: u32, samples: u32 } // elements, elements per sample, samples
@group(0) @binding(0) var<uniform> pg: Gauss;

// ---- forward terms: -(log(2 pi)/2 + ls + ((z - mu) exp(-ls))^2 / 2) ----
@group(0) @binding(1) var<storage, read> gs_z: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> gs_terms: array<vec4f>;

@compute @workgroup_size(WG)
fn logp_std(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pg.n) { return; }
  let z = gs_z[i];
  gs_terms[i] = -(HALF_LOG_2PI + 0.5 * z * z);
}

@group(0) @binding(1) var<storage, read> gf_z: array<vec4f>;
@group(0) @binding(2) var<storage, read> gf_mu: array<vec4f>;
@group(0) @binding(3) var<storage, read> gf_ls: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> gf_terms: array<vec4f>;

@compute @workgroup_size(WG)
fn logp(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pg.n) { return; }
  let ls = gf_ls[i];
  let u = (gf_z[i] - gf_mu[i]) * exp(-ls);
  gf_terms[i] = -(HALF_LOG_2PI + ls + 0.5 * u * u);
}

// Samples of the four elements of vec4 i: a vec4 may straddle two samples when d is not a
// multiple of 4; lanes past the end clamp to the last sample (their results are padding).
fn samples4(i: u32) -> vec4u {
  let e = vec4u(4u * i) + vec4u(0u, 1u, 2u, 3u);
  return min(e / pg.d, vec4u(pg.samples - 1u));
}

// ---- backward, standard normal: dz = -g z ----
@group(0) @binding(1) var<storage, read> bs_z: array<vec4f>;
@group(0) @binding(2) var<storage, read> bs_g: array<f32>;
@group(0) @binding(3) var<storage, read_write> bs_dz: array<vec4f>;

@compute @workgroup_size(WG)
fn logp_std_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pg.n) { return; }
  let n = samples4(i);
  let g = vec4f(bs_g[n.x], bs_g[n.y], bs_g[n.z], bs_g[n.w]);
  bs_dz[i] = -g * bs_z[i];
}

// ---- backward, full: with v = (z - mu) exp(-2 ls):
//   dz = -g v,  dmu = g v,  dls = g ((z - mu) v - 1)  (glow-funs.md 1.7, sign flipped: log p) ----
@group(0) @binding(1) var<storage, read> bf_z: array<vec4f>;
@group(0) @binding(2) var<storage, read> bf_mu: array<vec4f>;
@group(0) @binding(3) var<storage, read> bf_ls: array<vec4f>;
@group(0) @binding(4) var<storage, read> bf_g: array<f32>;
@group(0) @binding(5) var<storage, read_write> bf_dz: array<vec4f>;
@group(0) @binding(6) var<storage, read_write> bf_dmu: array<vec4f>;
@group(0) @binding(7) var<storage, read_write> bf_dls: array<vec4f>;

@compute @workgroup_size(WG)
fn logp_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pg.n) { return; }
  let n = samples4(i);
  let g = vec4f(bf_g[n.x], bf_g[n.y], bf_g[n.z], bf_g[n.w]);
  let diff = bf_z[i] - bf_mu[i];
  let v = diff * exp(-2.0 * bf_ls[i]);
  bf_dz[i] = -g * v;
  bf_dmu[i] = g * v;
  bf_dls[i] = g * (diff * v - 1.0);
}

// ---- log-softmax over the last dim of [rows, k] ----
struct Rows { rows: u32, k: u32 }
@group(0) @binding(0) var<uniform> pr: Rows;

@group(0) @binding(1) var<storage, read> ls_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> ls_y: array<f32>;

@compute @workgroup_size(WG)
fn log_softmax(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = flat(gid, nwg);
  if (r >= pr.rows) { return; }
  let o = r * pr.k;
  // Shift by the row max so exp never overflows and the largest term is exactly 1.
  var m = ls_x[o];
  for (var j = 1u; j < pr.k; j++) { m = max(m, ls_x[o + j]); }
  var s = 0.0;
  for (var j = 0u; j < pr.k; j++) { s += exp(ls_x[o + j] - m); }
  let lse = m + log(s);
  for (var j = 0u; j < pr.k; j++) { ls_y[o + j] = ls_x[o + j] - lse; }
}

// dx = g - softmax(x) * sum_j g, with softmax(x) = exp(y).
@group(0) @binding(1) var<storage, read> lsb_y: array<f32>;
@group(0) @binding(2) var<storage, read> lsb_g: array<f32>;
@group(0) @binding(3) var<storage, read_write> lsb_dx: array<f32>;

@compute @workgroup_size(WG)
fn log_softmax_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = flat(gid, nwg);
  if (r >= pr.rows) { return; }
  let o = r * pr.k;
  var s = 0.0;
  for (var j = 0u; j < pr.k; j++) { s += lsb_g[o + j]; }
  for (var j = 0u; j < pr.k; j++) { lsb_dx[o + j] = lsb_g[o + j] - exp(lsb_y[o + j]) * s; }
}

// ---- negative log-likelihood: picked[r] = logp[r, label[r]], then summed with scale -1/rows ----
@group(0) @binding(1) var<storage, read> np_logp: array<f32>;
@group(0) @binding(2) var<storage, read> np_labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> np_picked: array<f32>;

@compute @workgroup_size(WG)
fn nll_pick(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = flat(gid, nwg);
  if (r >= pr.rows) { return; }
  np_picked[r] = np_logp[r * pr.k + np_labels[r]];
}

// dlogp[r, j] = -g / rows where j = label[r], else 0; one thread per element so no fill is needed.
@group(0) @binding(1) var<storage, read> nb_labels: array<u32>;
@group(0) @binding(2) var<storage, read> nb_g: array<f32>;
@group(0) @binding(3) var<storage, read_write> nb_dlogp: array<f32>;

@compute @workgroup_size(WG)
fn nll_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= pr.rows * pr.k) { return; }
  let r = i / pr.k;
  let hit = i - r * pr.k == nb_labels[r];
  nb_dlogp[i] = select(0.0, -nb_g[0] / f32(pr.rows), hit);
}

// Classification over the last axis of logits x [rows, k]: logsumexp, softmax, and the per-row
// losses with labels (NLL, and DisUnknown's negative log-unlikelihood, NLU), and cross-entropy
// with a soft target. Row kernels are one thread per row (rows are class counts, short, and a
// row per thread needs no barrier); gradients are one thread per element, from per-row
// statistics the forward kept.
//
// Labels are f32 class indices (exact below 2^24). A label that is not an integer in
// [0, real) on the GPU cannot throw: its row's loss and gradient are NaN, which the trainer's
// NaN guard reports. Arrays of labels are checked on the CPU before they get here.

override OP: u32 = 0u;

// span: the softmax runs over logits [0, span) of each row (k, or the real classes only);
// real: labels must be < real; flags: 1 = per-sample weights, 2 = per-class weights;
// scale: the reduction's 1 / rows, folded into the gradients.
struct Cl { rows: u32, k: u32, real: u32, span: u32, flags: u32, scale: f32 }
@group(0) @binding(0) var<uniform> cl: Cl;

fn nan() -> f32 {
  // Built at run time: a NaN constant is a WGSL compile error.
  return bitcast<f32>(0x7fc00000u | (cl.rows & 0u));
}

// ---- logsumexp and softmax over [0, span) of row r ----
// A row is kept as (m, ls): its max and log sum_j exp(x_j - m), so LSE = m + ls. Probabilities
// are exp((x - m) - ls), never exp(x - LSE): LSE rounded to f32 is off by up to half an ulp of
// |LSE| (4e-6 at 60), which exp would turn into a relative error of every p.
@group(0) @binding(1) var<storage, read> r_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> r_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> r_aux: array<f32>;

fn row_max(o: u32) -> f32 {
  var m = r_x[o];
  for (var j = 1u; j < cl.span; j++) { m = max(m, r_x[o + j]); }
  return m;
}

fn row_sum(o: u32, m: f32) -> f32 {
  var s = 0.0;
  for (var j = 0u; j < cl.span; j++) { s += exp(r_x[o + j] - m); }
  return s;
}

@compute @workgroup_size(WG)
fn lse(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = flat(gid, nwg);
  if (r >= cl.rows) { return; }
  let o = r * cl.k;
  let m = row_max(o);
  let ls = log(row_sum(o, m));
  r_out[r] = m + ls;
  r_aux[2u * r] = m;
  r_aux[2u * r + 1u] = ls;
}

@compute @workgroup_size(WG)
fn softmax(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = flat(gid, nwg);
  if (r >= cl.rows) { return; }
  let o = r * cl.k;
  let m = row_max(o);
  let inv = 1.0 / row_sum(o, m);
  for (var j = 0u; j < cl.span; j++) { r_out[o + j] = exp(r_x[o + j] - m) * inv; }
}

// logsumexp backward: dx = g[r] softmax(x) = g[r] exp((x - m) - ls).
@group(0) @binding(1) var<storage, read> lb_x: array<f32>;
@group(0) @binding(2) var<storage, read> lb_aux: array<f32>;
@group(0) @binding(3) var<storage, read> lb_g: array<f32>;
@group(0) @binding(4) var<storage, read_write> lb_dx: array<f32>;

@compute @workgroup_size(WG)
fn lse_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= cl.rows * cl.k) { return; }
  let r = i / cl.k;
  lb_dx[i] = lb_g[r] * exp((lb_x[i] - lb_aux[2u * r]) - lb_aux[2u * r + 1u]);
}

// softmax backward: dx = y (g - sum_j g_j y_j), one thread per row.
@group(0) @binding(1) var<storage, read> sb_y: array<f32>;
@group(0) @binding(2) var<storage, read> sb_g: array<f32>;
@group(0) @binding(3) var<storage, read_write> sb_dx: array<f32>;

@compute @workgroup_size(WG)
fn softmax_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = flat(gid, nwg);
  if (r >= cl.rows) { return; }
  let o = r * cl.k;
  var d = 0.0;
  for (var j = 0u; j < cl.span; j++) { d += sb_g[o + j] * sb_y[o + j]; }
  for (var j = 0u; j < cl.span; j++) { sb_dx[o + j] = sb_y[o + j] * (sb_g[o + j] - d); }
}

// ---- losses with labels, per row r with label k and weight w (sample weight times class
// weight), over the softmax p of logits [0, span), a row kept as (m, ls) as above:
//   OP 0, NLL:  w (LSE - t_k)                         = -w log p_k
//   OP 1, NLU:  w (LSE - LSE_{j != k})                = -w log(1 - p_k)
// The NLU keeps the other classes as a row of their own, (m2, ls2) over j != k, so
// log(1 - p_k) stays finite and exact as p_k -> 1 (1 - p_k itself would round to 0 once t_k
// leads by ~17). stats[5r ..] = (m, ls, m2, ls2, w).
@group(0) @binding(1) var<storage, read> ll_x: array<f32>;
@group(0) @binding(2) var<storage, read> ll_labels: array<f32>;
@group(0) @binding(3) var<storage, read> ll_sw: array<f32>;
@group(0) @binding(4) var<storage, read> ll_cw: array<f32>;
@group(0) @binding(5) var<storage, read_write> ll_loss: array<f32>;
@group(0) @binding(6) var<storage, read_write> ll_stats: array<f32>;

fn valid_label(v: f32) -> bool {
  return v >= 0.0 && v < f32(cl.real) && fract(v) == 0.0;
}

@compute @workgroup_size(WG)
fn label_loss(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = flat(gid, nwg);
  if (r >= cl.rows) { return; }
  let v = ll_labels[r];
  if (!valid_label(v)) {
    ll_loss[r] = nan();
    for (var j = 0u; j < 5u; j++) { ll_stats[5u * r + j] = nan(); }
    return;
  }
  let k = u32(v);
  let o = r * cl.k;
  var w = 1.0;
  if ((cl.flags & 1u) != 0u) { w *= ll_sw[r]; }
  if ((cl.flags & 2u) != 0u) { w *= ll_cw[k]; }
  var m = ll_x[o];
  for (var j = 1u; j < cl.span; j++) { m = max(m, ll_x[o + j]); }
  var s = 0.0;
  for (var j = 0u; j < cl.span; j++) { s += exp(ll_x[o + j] - m); }
  let ls = log(s);
  var m2 = 0.0;
  var ls2 = 0.0;
  if (OP == 0u) {
    ll_loss[r] = w * ((m - ll_x[o + k]) + ls);
  } else {
    m2 = -3.4e38;
    for (var j = 0u; j < cl.span; j++) { if (j != k) { m2 = max(m2, ll_x[o + j]); } }
    var s2 = 0.0;
    for (var j = 0u; j < cl.span; j++) { if (j != k) { s2 += exp(ll_x[o + j] - m2); } }
    ls2 = log(s2);
    ll_loss[r] = w * ((m - m2) + (ls - ls2));
  }
  let st = 5u * r;
  ll_stats[st] = m;
  ll_stats[st + 1u] = ls;
  ll_stats[st + 2u] = m2;
  ll_stats[st + 3u] = ls2;
  ll_stats[st + 4u] = w;
}

// Gradient per element j of row r, times g scale w (zero past the span):
//   NLL: p_j - [j = k]
//   NLU: p_k at j = k, and p_j - q_j = -p_k q_j elsewhere, q = softmax over j != k (the
//        product form has no cancellation when p_k is small and p_j ~ q_j).
@group(0) @binding(1) var<storage, read> lg_x: array<f32>;
@group(0) @binding(2) var<storage, read> lg_labels: array<f32>;
@group(0) @binding(3) var<storage, read> lg_stats: array<f32>;
@group(0) @binding(4) var<storage, read> lg_g: array<f32>;
@group(0) @binding(5) var<storage, read_write> lg_dx: array<f32>;

@compute @workgroup_size(WG)
fn label_loss_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= cl.rows * cl.k) { return; }
  let r = i / cl.k;
  let j = i - r * cl.k;
  let v = lg_labels[r];
  if (!valid_label(v)) {
    lg_dx[i] = nan();
    return;
  }
  if (j >= cl.span) {
    lg_dx[i] = 0.0;
    return;
  }
  let k = u32(v);
  let st = 5u * r;
  let m = lg_stats[st];
  let ls = lg_stats[st + 1u];
  let c = lg_g[0] * cl.scale * lg_stats[st + 4u];
  let x = lg_x[i];
  var d = 0.0;
  if (OP == 0u) {
    let p = exp((x - m) - ls);
    d = select(p, p - 1.0, j == k);
  } else {
    let pk = exp((lg_x[r * cl.k + k] - m) - ls);
    let q = exp((x - lg_stats[st + 2u]) - lg_stats[st + 3u]);
    d = select(-pk * q, pk, j == k);
  }
  lg_dx[i] = c * d;
}

// ---- cross-entropy with a soft target t (OP 0: a tensor [rows, k]; OP 1: uniform 1 / k):
//   loss_r = w sum_j t_j ((m - x_j) + ls)  (each term >= 0),  stats[4r ..] = (m, ls, sum t, w).
@group(0) @binding(1) var<storage, read> sc_x: array<f32>;
@group(0) @binding(2) var<storage, read> sc_t: array<f32>;
@group(0) @binding(3) var<storage, read> sc_sw: array<f32>;
@group(0) @binding(4) var<storage, read_write> sc_loss: array<f32>;
@group(0) @binding(5) var<storage, read_write> sc_stats: array<f32>;

fn target_at(i: u32) -> f32 {
  if (OP == 1u) { return 1.0 / f32(cl.k); }
  return sc_t[i];
}

@compute @workgroup_size(WG)
fn soft_ce(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = flat(gid, nwg);
  if (r >= cl.rows) { return; }
  let o = r * cl.k;
  var m = sc_x[o];
  for (var j = 1u; j < cl.k; j++) { m = max(m, sc_x[o + j]); }
  var s = 0.0;
  for (var j = 0u; j < cl.k; j++) { s += exp(sc_x[o + j] - m); }
  let ls = log(s);
  var l = 0.0;
  var ts = 0.0;
  for (var j = 0u; j < cl.k; j++) {
    let t = target_at(o + j);
    l += t * ((m - sc_x[o + j]) + ls);
    ts += t;
  }
  var w = 1.0;
  if ((cl.flags & 1u) != 0u) { w = sc_sw[r]; }
  sc_loss[r] = w * l;
  sc_stats[4u * r] = m;
  sc_stats[4u * r + 1u] = ls;
  sc_stats[4u * r + 2u] = ts;
  sc_stats[4u * r + 3u] = w;
}

// dx_j = g scale w (p_j sum t - t_j), dt_j = g scale w ((m - x_j) + ls) = -g scale w log p_j.
@group(0) @binding(1) var<storage, read> sg_x: array<f32>;
@group(0) @binding(2) var<storage, read> sg_t: array<f32>;
@group(0) @binding(3) var<storage, read> sg_stats: array<f32>;
@group(0) @binding(4) var<storage, read> sg_g: array<f32>;
@group(0) @binding(5) var<storage, read_write> sg_dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> sg_dt: array<f32>;

@compute @workgroup_size(WG)
fn soft_ce_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= cl.rows * cl.k) { return; }
  let r = i / cl.k;
  let st = 4u * r;
  let m = sg_stats[st];
  let ls = sg_stats[st + 1u];
  let c = sg_g[0] * cl.scale * sg_stats[st + 3u];
  var t = 1.0 / f32(cl.k);
  if (OP == 0u) { t = sg_t[i]; }
  let x = sg_x[i];
  sg_dx[i] = c * (exp((x - m) - ls) * sg_stats[st + 2u] - t);
  if (OP == 0u) { sg_dt[i] = c * ((m - x) + ls); }
}

// Batch normalisation per channel over x viewed as [N, C, S] (S = H W, or 1 for [N, C]):
//   y = gamma_c xhat + beta_c,  xhat = (x - mean_c) * invstd_c,  invstd = 1 / sqrt(var + eps).
// Training uses the batch's mean and biased variance (m = N S values per channel); eval uses the
// running statistics. Backward, with sums over (n, s):
//   dbeta = sum g,  dgamma = sum g xhat,
//   dx = gamma invstd / m (m g - dbeta - xhat dgamma)   (training),  gamma invstd g   (eval).
// Per-channel sums are two barrier-free stages: P partial sums per channel (contiguous chunks,
// see below), then one thread per channel. Statistics live in stats[2c] = mean,
// stats[2c + 1] = invstd.

struct Bn { n: u32, c: u32, s: u32, p: u32, plane: u32, eps: f32, decay: f32, train: u32 }
@group(0) @binding(0) var<uniform> bn: Bn;

// ---- stage 1 partials: part[2 (c P + p) + k] ----
// stats_partial: (sum (x - K), sum (x - K)^2) with K = the channel's first value, so the variance
// does not cancel catastrophically when |mean| >> std.
// grad_partial: (sum g (x - mean), sum g).
// Layout as reduce.wgsl's stage 1 (see there for why): P = K G threads per channel, thread
// p = k G + l sums lane l of chunk k of the channel's N S values (j = n S + s): j0 + l,
// j0 + l + G, ... A lavapipe SIMD batch then walks memory in order, and on a GPU 8 adjacent
// lanes read whole sectors.
override G: u32 = 8u;

// Lane p % G of chunk p / G of channel c: its range [j, end), the element index
// i = (n C + c) S + s, s, and the per-step strides (i += di, s += ds; on s >= S: s -= S,
// i += (C - 1) S), so no division per element.
struct Walk { j: u32, end: u32, i: u32, s: u32, di: u32, ds: u32 }

fn walk(c: u32, p: u32) -> Walk {
  let m = bn.n * bn.s;
  let kk = bn.p / G;
  let len = (m + kk * G - 1u) / (kk * G) * G;
  let j0 = min(m, (p / G) * len);
  let j = j0 + p % G;
  let s = j % bn.s;
  let ds = G % bn.s;
  let di = (G / bn.s) * bn.c * bn.s + ds;
  return Walk(j, min(m, j0 + len), ((j / bn.s) * bn.c + c) * bn.s + s, s, di, ds);
}

@group(0) @binding(1) var<storage, read> p_x: array<f32>;
@group(0) @binding(2) var<storage, read> p_g: array<f32>;
@group(0) @binding(3) var<storage, read> p_stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> p_part: array<f32>;

@compute @workgroup_size(WG)
fn stats_partial(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= bn.c * bn.p) { return; }
  let c = t / bn.p;
  let k = p_x[c * bn.s];
  var w = walk(c, t % bn.p);
  let wrap = (bn.c - 1u) * bn.s;
  var s0 = 0.0;
  var s1 = 0.0;
  for (var j = w.j; j < w.end; j += G) {
    let d = p_x[w.i] - k;
    s0 += d;
    s1 += d * d;
    w.i += w.di;
    w.s += w.ds;
    if (w.s >= bn.s) { w.s -= bn.s; w.i += wrap; }
  }
  p_part[2u * t] = s0;
  p_part[2u * t + 1u] = s1;
}

@compute @workgroup_size(WG)
fn grad_partial(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= bn.c * bn.p) { return; }
  let c = t / bn.p;
  let mean = p_stats[2u * c];
  var w = walk(c, t % bn.p);
  let wrap = (bn.c - 1u) * bn.s;
  var s0 = 0.0;
  var s1 = 0.0;
  for (var j = w.j; j < w.end; j += G) {
    let g = p_g[w.i];
    s0 += g * (p_x[w.i] - mean);
    s1 += g;
    w.i += w.di;
    w.s += w.ds;
    if (w.s >= bn.s) { w.s -= bn.s; w.i += wrap; }
  }
  p_part[2u * t] = s0;
  p_part[2u * t + 1u] = s1;
}

// The same with vec4 loads when S % 4 == 0 (bn.s is then S / 4).
@group(0) @binding(1) var<storage, read> p4_x: array<vec4f>;
@group(0) @binding(2) var<storage, read> p4_g: array<vec4f>;

@compute @workgroup_size(WG)
fn stats_partial4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= bn.c * bn.p) { return; }
  let c = t / bn.p;
  let k = vec4f(p4_x[c * bn.s].x);
  var w = walk(c, t % bn.p);
  let wrap = (bn.c - 1u) * bn.s;
  var s0 = vec4f(0.0);
  var s1 = vec4f(0.0);
  for (var j = w.j; j < w.end; j += G) {
    let d = p4_x[w.i] - k;
    s0 += d;
    s1 += d * d;
    w.i += w.di;
    w.s += w.ds;
    if (w.s >= bn.s) { w.s -= bn.s; w.i += wrap; }
  }
  p_part[2u * t] = s0.x + s0.y + s0.z + s0.w;
  p_part[2u * t + 1u] = s1.x + s1.y + s1.z + s1.w;
}

@compute @workgroup_size(WG)
fn grad_partial4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= bn.c * bn.p) { return; }
  let c = t / bn.p;
  let mean = p_stats[2u * c];
  var w = walk(c, t % bn.p);
  let wrap = (bn.c - 1u) * bn.s;
  var s0 = vec4f(0.0);
  var s1 = vec4f(0.0);
  for (var j = w.j; j < w.end; j += G) {
    let g = p4_g[w.i];
    s0 += g * (p4_x[w.i] - mean);
    s1 += g;
    w.i += w.di;
    w.s += w.ds;
    if (w.s >= bn.s) { w.s -= bn.s; w.i += wrap; }
  }
  p_part[2u * t] = s0.x + s0.y + s0.z + s0.w;
  p_part[2u * t + 1u] = s1.x + s1.y + s1.z + s1.w;
}

// ---- stage 2, one thread per channel ----
@group(0) @binding(1) var<storage, read> q_part: array<f32>;
@group(0) @binding(2) var<storage, read> q_x: array<f32>;
@group(0) @binding(3) var<storage, read_write> q_stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> q_rmean: array<f32>;
@group(0) @binding(5) var<storage, read_write> q_rvar: array<f32>;

// Batch mean and biased variance of channel c from its partials and shift.
fn batch_stats(c: u32) -> vec2f {
  var s0 = 0.0;
  var s1 = 0.0;
  for (var p = 0u; p < bn.p; p++) {
    s0 += q_part[2u * (c * bn.p + p)];
    s1 += q_part[2u * (c * bn.p + p) + 1u];
  }
  let m = f32(bn.n * bn.plane);
  let d = s0 / m;
  let v = max(s1 / m - d * d, 0.0);
  q_stats[2u * c] = q_x[c * bn.plane] + d;
  q_stats[2u * c + 1u] = inverseSqrt(v + bn.eps);
  return vec2f(q_x[c * bn.plane] + d, v);
}

@compute @workgroup_size(WG)
fn finish_stats(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let c = flat(gid, nwg);
  if (c >= bn.c) { return; }
  batch_stats(c);
}

// Also decays the running statistics towards the batch's: r = d r + (1 - d) batch, with the
// unbiased variance (m / (m - 1) times the biased one) as PyTorch keeps it.
@compute @workgroup_size(WG)
fn finish_stats_running(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
) {
  let c = flat(gid, nwg);
  if (c >= bn.c) { return; }
  let mv = batch_stats(c);
  let m = f32(bn.n * bn.plane);
  q_rmean[c] = bn.decay * q_rmean[c] + (1.0 - bn.decay) * mv.x;
  q_rvar[c] = bn.decay * q_rvar[c] + (1.0 - bn.decay) * mv.y * m / (m - 1.0);
}

@group(0) @binding(1) var<storage, read> e_rmean: array<f32>;
@group(0) @binding(2) var<storage, read> e_rvar: array<f32>;

@compute @workgroup_size(WG)
fn eval_stats(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let c = flat(gid, nwg);
  if (c >= bn.c) { return; }
  q_stats[2u * c] = e_rmean[c];
  q_stats[2u * c + 1u] = inverseSqrt(e_rvar[c] + bn.eps);
}

// dgamma = invstd sum g (x - mean), dbeta = sum g.
@group(0) @binding(3) var<storage, read> f_stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> f_dgamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> f_dbeta: array<f32>;

@compute @workgroup_size(WG)
fn finish_grad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let c = flat(gid, nwg);
  if (c >= bn.c) { return; }
  var s0 = 0.0;
  var s1 = 0.0;
  for (var p = 0u; p < bn.p; p++) {
    s0 += q_part[2u * (c * bn.p + p)];
    s1 += q_part[2u * (c * bn.p + p) + 1u];
  }
  f_dgamma[c] = s0 * f_stats[2u * c + 1u];
  f_dbeta[c] = s1;
}

// ---- elementwise: normalise, and dx (scalar, and vec4 when S % 4 == 0) ----
@group(0) @binding(1) var<storage, read> n_x: array<f32>;
@group(0) @binding(2) var<storage, read> n_stats: array<f32>;
@group(0) @binding(3) var<storage, read> n_gamma: array<f32>;
@group(0) @binding(4) var<storage, read> n_beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> n_y: array<f32>;

@compute @workgroup_size(WG)
fn normalize(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= bn.n * bn.c * bn.s) { return; }
  let c = (i / bn.s) % bn.c;
  let a = n_gamma[c] * n_stats[2u * c + 1u];
  n_y[i] = a * (n_x[i] - n_stats[2u * c]) + n_beta[c];
}

@group(0) @binding(1) var<storage, read> n4_x: array<vec4f>;
@group(0) @binding(5) var<storage, read_write> n4_y: array<vec4f>;

@compute @workgroup_size(WG)
fn normalize4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= bn.n * bn.c * bn.s) { return; }
  let c = (i / bn.s) % bn.c;
  let a = n_gamma[c] * n_stats[2u * c + 1u];
  n4_y[i] = a * (n4_x[i] - n_stats[2u * c]) + n_beta[c];
}

@group(0) @binding(1) var<storage, read> b_x: array<f32>;
@group(0) @binding(2) var<storage, read> b_g: array<f32>;
@group(0) @binding(3) var<storage, read> b_stats: array<f32>;
@group(0) @binding(4) var<storage, read> b_gamma: array<f32>;
@group(0) @binding(5) var<storage, read> b_dgamma: array<f32>;
@group(0) @binding(6) var<storage, read> b_dbeta: array<f32>;
@group(0) @binding(7) var<storage, read_write> b_dx: array<f32>;

// dx = k (g - u - xhat v) with k = gamma invstd, and (u, v) = (dbeta, dgamma) / m in training,
// 0 in eval (the statistics are constants there; dgamma and dbeta are then not even computed, so
// they are selected away rather than multiplied by 0).
fn dx_coefs(c: u32) -> vec4f {
  let invstd = b_stats[2u * c + 1u];
  let m = f32(bn.n * bn.plane);
  let uv = select(vec2f(0.0), vec2f(b_dbeta[c], b_dgamma[c]) / m, bn.train == 1u);
  return vec4f(b_gamma[c] * invstd, uv, invstd);
}

@compute @workgroup_size(WG)
fn backward_x(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= bn.n * bn.c * bn.s) { return; }
  let c = (i / bn.s) % bn.c;
  let k = dx_coefs(c);
  let xhat = (b_x[i] - b_stats[2u * c]) * k.w;
  b_dx[i] = k.x * (b_g[i] - k.y - xhat * k.z);
}

@group(0) @binding(1) var<storage, read> b4_x: array<vec4f>;
@group(0) @binding(2) var<storage, read> b4_g: array<vec4f>;
@group(0) @binding(7) var<storage, read_write> b4_dx: array<vec4f>;

@compute @workgroup_size(WG)
fn backward_x4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= bn.n * bn.c * bn.s) { return; }
  let c = (i / bn.s) % bn.c;
  let k = dx_coefs(c);
  let xhat = (b4_x[i] - b_stats[2u * c]) * k.w;
  b4_dx[i] = k.x * (b4_g[i] - k.y - xhat * k.z);
}

// Affine coupling, Glow reference-code form: t = h[:, 0::2], r = h[:, 1::2], s = sigmoid(r + 2),
// y_b = (x_b + t) * s, log s = -softplus(-(r + 2)) (stable for any r).
// One thread per element of x_b [N, C, S]; h is [N, 2C, S], channel 2c is t and 2c + 1 is r.

struct Cp { n: u32, c: u32, s: u32 }
@group(0) @binding(0) var<uniform> cp: Cp;

fn t_index(i: u32) -> u32 {
  let s = i % cp.s;
  let nc = i / cp.s; // n * C + c
  let n = nc / cp.c;
  let c = nc - n * cp.c;
  return (n * 2u * cp.c + 2u * c) * cp.s + s;
}

fn sig(v: f32) -> f32 {
  let e = exp(-abs(v));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
}

fn log_sig(v: f32) -> f32 {
  return -(max(-v, 0.0) + log(1.0 + exp(-abs(v))));
}

@group(0) @binding(1) var<storage, read> f_x: array<f32>;
@group(0) @binding(2) var<storage, read> f_h: array<f32>;
@group(0) @binding(3) var<storage, read_write> f_y: array<f32>;
@group(0) @binding(4) var<storage, read_write> f_ls: array<f32>;

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= cp.n * cp.c * cp.s) { return; }
  let ti = t_index(i);
  let r = f_h[ti + cp.s] + 2.0;
  f_y[i] = (f_x[i] + f_h[ti]) * sig(r);
  f_ls[i] = log_sig(r);
}

// x_b = y_b / s - t, and the inverse's log-det terms -log s (binding 1 = y_b, 3 = x_b)
@compute @workgroup_size(WG)
fn inverse(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= cp.n * cp.c * cp.s) { return; }
  let ti = t_index(i);
  let r = f_h[ti + cp.s] + 2.0;
  f_y[i] = f_x[i] / sig(r) - f_h[ti];
  f_ls[i] = -log_sig(r);
}

// Backward of y_b (binding 3 = g): dx_b = g s, dt = g s, dr = g y_b (1 - s).
@group(0) @binding(3) var<storage, read> b_g: array<f32>;
@group(0) @binding(4) var<storage, read_write> b_dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> b_dh: array<f32>;

@compute @workgroup_size(WG)
fn backward_y(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= cp.n * cp.c * cp.s) { return; }
  let ti = t_index(i);
  let t = f_h[ti];
  let s = sig(f_h[ti + cp.s] + 2.0);
  let g = b_g[i];
  b_dx[i] = g * s;
  b_dh[ti] = g * s;
  b_dh[ti + cp.s] = g * (f_x[i] + t) * s * (1.0 - s);
}

// Backward of log s (binding 3 = g): dt = 0, dr = g (1 - s).
@compute @workgroup_size(WG)
fn backward_logs(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= cp.n * cp.c * cp.s) { return; }
  let ti = t_index(i);
  let s = sig(f_h[ti + cp.s] + 2.0);
  b_dh[ti] = 0.0;
  b_dh[ti + cp.s] = b_g[i] * (1.0 - s);
}

// Backward of the inverse x_b = y_b / s - t (binding 3 = g): dy_b = g / s, dt = -g,
// dr = -g (y_b / s) (1 - s), since d(1/s)/dr = -(1 - s) / s. 1 - s is taken as sigmoid(-r), so it
// keeps its relative precision where s is close to 1.
@group(0) @binding(4) var<storage, read_write> b_dy: array<f32>;

@compute @workgroup_size(WG)
fn inverse_backward_x(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= cp.n * cp.c * cp.s) { return; }
  let ti = t_index(i);
  let r = f_h[ti + cp.s] + 2.0;
  let s = sig(r);
  let g = b_g[i];
  b_dy[i] = g / s;
  b_dh[ti] = -g;
  b_dh[ti + cp.s] = -g * (f_x[i] / s) * sig(-r);
}

// Backward of -log s = softplus(-r) (binding 3 = g): dt = 0, dr = -g (1 - s).
@compute @workgroup_size(WG)
fn inverse_backward_logs(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= cp.n * cp.c * cp.s) { return; }
  let ti = t_index(i);
  b_dh[ti] = 0.0;
  b_dh[ti + cp.s] = -b_g[i] * sig(-(f_h[ti + cp.s] + 2.0));
}

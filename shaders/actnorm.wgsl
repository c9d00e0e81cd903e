// ActNorm, per channel: y = exp(a_c) x + b_c over x viewed as [N, C, S].
// Backward: dx = exp(a) g; da_c = exp(a_c) sum_{n,s} g x; db_c = sum_{n,s} g.
// The parameter sums share one barrier-free two-stage reduction (contiguous chunks, see stage 1)
// with the data-dependent init, which needs sum x and sum x^2 per channel instead.

struct An { n: u32, c: u32, s: u32, p: u32 }
@group(0) @binding(0) var<uniform> an: An;

@group(0) @binding(1) var<storage, read> f_x: array<f32>;
@group(0) @binding(2) var<storage, read> f_a: array<f32>;
@group(0) @binding(3) var<storage, read> f_b: array<f32>;
@group(0) @binding(4) var<storage, read_write> f_y: array<f32>;

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= an.n * an.c * an.s) { return; }
  let c = (i / an.s) % an.c;
  f_y[i] = exp(f_a[c]) * f_x[i] + f_b[c];
}

@compute @workgroup_size(WG)
fn inverse(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= an.n * an.c * an.s) { return; }
  let c = (i / an.s) % an.c;
  f_y[i] = (f_x[i] - f_b[c]) * exp(-f_a[c]);
}

// dx = exp(a) g   (binding 1 = g)
@compute @workgroup_size(WG)
fn backward_x(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= an.n * an.c * an.s) { return; }
  let c = (i / an.s) % an.c;
  f_y[i] = exp(f_a[c]) * f_x[i];
}

// Stage 1: for channel c and partial p, two sums over (n, s), written to
// part[(c * P + p) * 2 + k]: partial_grad gives (g x, g), partial_stats gives (x, x^2).
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
  let m = an.n * an.s;
  let kk = an.p / G;
  let len = (m + kk * G - 1u) / (kk * G) * G;
  let j0 = min(m, (p / G) * len);
  let j = j0 + p % G;
  let s = j % an.s;
  let ds = G % an.s;
  let di = (G / an.s) * an.c * an.s + ds;
  return Walk(j, min(m, j0 + len), ((j / an.s) * an.c + c) * an.s + s, s, di, ds);
}

@group(0) @binding(1) var<storage, read> p_x: array<f32>;
@group(0) @binding(2) var<storage, read> p_g: array<f32>;
@group(0) @binding(3) var<storage, read_write> p_part: array<f32>;

@compute @workgroup_size(WG)
fn partial_grad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= an.c * an.p) { return; }
  var w = walk(t / an.p, t % an.p);
  let wrap = (an.c - 1u) * an.s;
  var s0 = 0.0;
  var s1 = 0.0;
  for (var j = w.j; j < w.end; j += G) {
    let g = p_g[w.i];
    s0 += g * p_x[w.i];
    s1 += g;
    w.i += w.di;
    w.s += w.ds;
    if (w.s >= an.s) { w.s -= an.s; w.i += wrap; }
  }
  p_part[2u * t] = s0;
  p_part[2u * t + 1u] = s1;
}

@compute @workgroup_size(WG)
fn partial_stats(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= an.c * an.p) { return; }
  var w = walk(t / an.p, t % an.p);
  let wrap = (an.c - 1u) * an.s;
  var s0 = 0.0;
  var s1 = 0.0;
  for (var j = w.j; j < w.end; j += G) {
    let x = p_x[w.i];
    s0 += x;
    s1 += x * x;
    w.i += w.di;
    w.s += w.ds;
    if (w.s >= an.s) { w.s -= an.s; w.i += wrap; }
  }
  p_part[2u * t] = s0;
  p_part[2u * t + 1u] = s1;
}

// Stage 2 of the backward: da, db (binding 2 = a, read; 3 = da; 4 = db).
@group(0) @binding(1) var<storage, read> q_part: array<f32>;
@group(0) @binding(2) var<storage, read> q_a: array<f32>;
@group(0) @binding(3) var<storage, read_write> q_da: array<f32>;
@group(0) @binding(4) var<storage, read_write> q_db: array<f32>;

@compute @workgroup_size(WG)
fn finish_grad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let c = flat(gid, nwg);
  if (c >= an.c) { return; }
  var s0 = 0.0;
  var s1 = 0.0;
  for (var p = 0u; p < an.p; p++) {
    s0 += q_part[2u * (c * an.p + p)];
    s1 += q_part[2u * (c * an.p + p) + 1u];
  }
  q_da[c] = exp(q_a[c]) * s0;
  q_db[c] = s1;
}

// Stage 2 of the data-dependent init: a = -log(std + 1e-6), b = -mean exp(a).
@group(0) @binding(2) var<storage, read_write> i_a: array<f32>;
@group(0) @binding(3) var<storage, read_write> i_b: array<f32>;

@compute @workgroup_size(WG)
fn finish_init(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let c = flat(gid, nwg);
  if (c >= an.c) { return; }
  var s0 = 0.0;
  var s1 = 0.0;
  for (var p = 0u; p < an.p; p++) {
    s0 += q_part[2u * (c * an.p + p)];
    s1 += q_part[2u * (c * an.p + p) + 1u];
  }
  let m = f32(an.n * an.s);
  let mean = s0 / m;
  let sd = sqrt(max(s1 / m - mean * mean, 0.0));
  let a = -log(sd + 1e-6);
  i_a[c] = a;
  i_b[c] = -mean * exp(a);
}

// ---- vec4 variants, used when S % 4 == 0 (an.s is then S / 4, in vec4 units) ----
@group(0) @binding(1) var<storage, read> v_x: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> v_y: array<vec4f>;

@compute @workgroup_size(WG)
fn forward4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= an.n * an.c * an.s) { return; }
  let c = (i / an.s) % an.c;
  v_y[i] = exp(f_a[c]) * v_x[i] + f_b[c];
}

@compute @workgroup_size(WG)
fn backward_x4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= an.n * an.c * an.s) { return; }
  let c = (i / an.s) % an.c;
  v_y[i] = exp(f_a[c]) * v_x[i];
}

@group(0) @binding(2) var<storage, read> v_g: array<vec4f>;

// (g x, g) partial sums with vec4 loads (an.s in vec4 units), laid out as partial_grad.
@compute @workgroup_size(WG)
fn partial_grad4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= an.c * an.p) { return; }
  var w = walk(t / an.p, t % an.p);
  let wrap = (an.c - 1u) * an.s;
  var s0 = vec4f(0.0);
  var s1 = vec4f(0.0);
  for (var j = w.j; j < w.end; j += G) {
    let g = v_g[w.i];
    s0 += g * v_x[w.i];
    s1 += g;
    w.i += w.di;
    w.s += w.ds;
    if (w.s >= an.s) { w.s -= an.s; w.i += wrap; }
  }
  p_part[2u * t] = s0.x + s0.y + s0.z + s0.w;
  p_part[2u * t + 1u] = s1.x + s1.y + s1.z + s1.w;
}

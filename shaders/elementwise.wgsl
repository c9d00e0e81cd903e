// Elementwise ops. Unary ops pick their function with the override OP (pf.a is a parameter, e.g.
// leaky ReLU's slope); binary ops broadcast each operand by a mode: 0 = full, 1 = scalar,
// 2 = per channel (index (i / inner) % C), 3 = per sample (index i % sample, shared over N).

override OP: u32 = 0u;

struct Flat { n: u32, a: f32 }
@group(0) @binding(0) var<uniform> pf: Flat;

// ---- fill / axpy (vec4: lavapipe and real GPUs both prefer 16-byte loads) ----
@group(0) @binding(1) var<storage, read_write> fill_out: array<vec4f>;

@compute @workgroup_size(WG)
fn fill(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pf.n) { return; }
  fill_out[i] = vec4f(pf.a);
}

@group(0) @binding(1) var<storage, read> axpy_x: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> axpy_y: array<vec4f>;

@compute @workgroup_size(WG)
fn axpy(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pf.n) { return; }
  // Lanes past n stay as they were: a view's tail is padding that a flat parameter group's
  // optimizer sweeps, and another buffer's tail may hold anything (even NaN).
  let live = vec4u(i * 4u) + vec4u(0u, 1u, 2u, 3u) < vec4u(pf.n);
  let y = axpy_y[i];
  axpy_y[i] = select(y, y + pf.a * axpy_x[i], live);
}

// ---- scale: y = a * x ----
@compute @workgroup_size(WG)
fn scale(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pf.n) { return; }
  un_y[i] = pf.a * un_x[i];
}

// ---- unary: y = f(x), and dx = g * f'(x, y) ----
@group(0) @binding(1) var<storage, read> un_x: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> un_y: array<vec4f>;

fn sigmoid4(x: vec4f) -> vec4f {
  // exp of a non-positive argument only, so neither branch overflows.
  let e = exp(-abs(x));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= vec4f(0.0));
}

// log1p01 (common.wgsl), not log(1 + e): that rounds to 0 below e = 6e-8, so softplus(-20) was 0.
fn softplus4(x: vec4f) -> vec4f {
  return max(x, vec4f(0.0)) + log1p01(exp(-abs(x)));
}

fn unary_f(x: vec4f) -> vec4f {
  switch OP {
    case 0u: { return -x; }
    case 1u: { return exp(x); }
    case 2u: { return log(x); }
    case 3u: { return sigmoid4(x); }
    case 4u: { return softplus4(x); }
    case 5u: { return tanh(x); }
    case 6u: { return max(x, vec4f(0.0)); }
    case 7u: { return x * x; }
    case 8u: { return sqrt(x); }
    case 9u: { return select(pf.a * x, x, x > vec4f(0.0)); }
    default: { return x; }
  }
}

@compute @workgroup_size(WG)
fn unary(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pf.n) { return; }
  un_y[i] = unary_f(un_x[i]);
}

@group(0) @binding(1) var<storage, read> ub_x: array<vec4f>;
@group(0) @binding(2) var<storage, read> ub_y: array<vec4f>;
@group(0) @binding(3) var<storage, read> ub_g: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> ub_dx: array<vec4f>;

fn unary_df(x: vec4f, y: vec4f) -> vec4f {
  switch OP {
    case 0u: { return vec4f(-1.0); }
    case 1u: { return y; }
    case 2u: { return 1.0 / x; }
    case 3u: { return y * (1.0 - y); }
    case 4u: { return sigmoid4(x); }
    case 5u: { return 1.0 - y * y; }
    case 6u: { return select(vec4f(0.0), vec4f(1.0), x > vec4f(0.0)); }
    case 7u: { return 2.0 * x; }
    case 8u: { return 0.5 / y; }
    case 9u: { return select(vec4f(pf.a), vec4f(1.0), x > vec4f(0.0)); }
    default: { return vec4f(1.0); }
  }
}

@compute @workgroup_size(WG)
fn unary_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pf.n) { return; }
  ub_dx[i] = ub_g[i] * unary_df(ub_x[i], ub_y[i]);
}

// ---- binary with broadcasting ----
struct Bin { n: u32, mode_a: u32, mode_b: u32, c: u32, inner: u32, sample: u32 }
@group(0) @binding(0) var<uniform> pb: Bin;
@group(0) @binding(1) var<storage, read> bin_a: array<f32>;
@group(0) @binding(2) var<storage, read> bin_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> bin_out: array<f32>;

fn bidx(mode: u32, i: u32) -> u32 {
  if (mode == 0u) { return i; }
  if (mode == 1u) { return 0u; }
  if (mode == 3u) { return i % pb.sample; }
  return (i / pb.inner) % pb.c;
}

fn binary_f(a: f32, b: f32) -> f32 {
  switch OP {
    case 0u: { return a + b; }
    case 1u: { return a - b; }
    case 2u: { return a * b; }
    default: { return a / b; }
  }
}

@compute @workgroup_size(WG)
fn binary(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= pb.n) { return; }
  bin_out[i] = binary_f(bin_a[bidx(pb.mode_a, i)], bin_b[bidx(pb.mode_b, i)]);
}

// Four elements per thread when n % 4 == 0, a per-channel operand's inner size is a multiple of 4
// (so all four lanes share a channel) and a per-sample operand's sample size is too (so its four
// values are one aligned vec4): vec4 loads, one index computation per vec4.
@group(0) @binding(1) var<storage, read> bin4_a: array<vec4f>;
@group(0) @binding(2) var<storage, read> bin4_b: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> bin4_out: array<vec4f>;

// Index of the broadcast value for vec4 i (mode 1 or 2), as (vec4 index, lane).
fn lane4(mode: u32, i: u32) -> vec2u {
  var k = 0u;
  if (mode == 2u) { k = (4u * i / pb.inner) % pb.c; }
  return vec2u(k / 4u, k % 4u);
}

fn load4_a(mode: u32, i: u32) -> vec4f {
  if (mode == 0u) { return bin4_a[i]; }
  if (mode == 3u) { return bin4_a[i % (pb.sample / 4u)]; }
  let k = lane4(mode, i);
  return vec4f(bin4_a[k.x][k.y]);
}

fn load4_b(mode: u32, i: u32) -> vec4f {
  if (mode == 0u) { return bin4_b[i]; }
  if (mode == 3u) { return bin4_b[i % (pb.sample / 4u)]; }
  let k = lane4(mode, i);
  return vec4f(bin4_b[k.x][k.y]);
}

@compute @workgroup_size(WG)
fn binary4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (4u * i >= pb.n) { return; }
  let a = load4_a(pb.mode_a, i);
  let b = load4_b(pb.mode_b, i);
  switch OP {
    case 0u: { bin4_out[i] = a + b; }
    case 1u: { bin4_out[i] = a - b; }
    case 2u: { bin4_out[i] = a * b; }
    default: { bin4_out[i] = a / b; }
  }
}

// Gradient of the output w.r.t. one operand, at full size (a broadcast operand is then reduced).
// Entry binary_da gives g * d(out)/da (binding 1 unused), binary_db gives g * d(out)/db.
@group(0) @binding(3) var<storage, read> bg_g: array<f32>;
@group(0) @binding(4) var<storage, read_write> bg_out: array<f32>;

@compute @workgroup_size(WG)
fn binary_da(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= pb.n) { return; }
  let b = bin_b[bidx(pb.mode_b, i)];
  let g = bg_g[i];
  var d = g;
  if (OP == 2u) { d = g * b; }
  if (OP == 3u) { d = g / b; }
  bg_out[i] = d;
}

@compute @workgroup_size(WG)
fn binary_db(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= pb.n) { return; }
  let a = bin_a[bidx(pb.mode_a, i)];
  let b = bin_b[bidx(pb.mode_b, i)];
  let g = bg_g[i];
  var d = g;
  if (OP == 1u) { d = -g; }
  if (OP == 2u) { d = g * a; }
  if (OP == 3u) { d = -g * a / (b * b); }
  bg_out[i] = d;
}

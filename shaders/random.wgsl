// Counter-based random numbers (vae-disentangle.md §7 row 31): Philox-4x32-10 (Salmon, Moraes,
// Dror & Shaw, SC 2011; Random123's known-answer vectors are in tests/random_test.ts). Output
// element e of a draw is lane e % 4 of philox(counter = (e / 4, 0, c_lo, c_hi), key = (s_lo,
// s_hi)) for the 64-bit seed s and draw counter c, so a draw is a pure function of (seed,
// counter, e): any thread count, any adapter, the same numbers.
//
// The (seed, counter) state lives on the GPU in two vec4u slots, (s_lo, s_hi, c_lo, c_hi) each.
// A draw reads slot `slot` and its thread 0 writes the advanced counter into the other one, which
// the next draw reads (the CPU flips `slot` each draw): no race inside a dispatch, no upload per
// draw, and only two uniform buffers per size however many draws a run makes.

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

// The 64-bit product a b as (hi, lo) from 16-bit halves: WGSL has no 64-bit integers.
fn mulhilo(a: u32, b: u32) -> vec2u {
  let al = a & 0xffffu;
  let ah = a >> 16u;
  let bl = b & 0xffffu;
  let bh = b >> 16u;
  let lh = al * bh;
  let hl = ah * bl;
  let mid = ((al * bl) >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return vec2u(ah * bh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u), a * b);
}

fn philox(ctr: vec4u, key: vec2u) -> vec4u {
  var c = ctr;
  var k = key;
  for (var r = 0u; r < 10u; r++) {
    let p0 = mulhilo(PHILOX_M0, c.x);
    let p1 = mulhilo(PHILOX_M1, c.z);
    c = vec4u(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    k += vec2u(PHILOX_W0, PHILOX_W1);
  }
  return c;
}

// Uniforms (k + 1/2) 2^-23 from the top 23 bits k: in (0, 1) (so log never sees 0), exact in f32
// (24 significant bits at most), and symmetric about 1/2.
fn unit4(x: vec4u) -> vec4f {
  return (vec4f(x >> vec4u(9u)) + 0.5) * (1.0 / 8388608.0);
}

// -2 log(u). WGSL allows log an absolute error of 2^-21 near 1, a large relative error of the
// small radii that u near 1 gives (lavapipe: 1e-3 at r = 0.006), so for u > 1/2 it is
// -4 atanh(s), s = (1 - u) / (1 + u) in [0, 1/3), by its series (truncation below 2e-9).
fn neg2log(u: vec2f) -> vec2f {
  let s = (1.0 - u) / (1.0 + u);
  let q = s * s;
  var p = vec2f(1.0 / 15.0);
  for (var k = 13.0; k > 0.0; k -= 2.0) { p = p * q + 1.0 / k; }
  return select(-2.0 * log(u), 4.0 * s * p, u > vec2f(0.5));
}

// Box-Muller on the pairs (x, y) and (z, w): radius from the first, angle from the second, taken
// in (-pi, pi) where sin and cos are most accurate. |normal| <= sqrt(48 ln 2) = 5.77.
fn normal4(x: vec4u) -> vec4f {
  let u = unit4(x);
  let r = sqrt(neg2log(u.xz));
  let t = 6.283185307179586 * (u.yw - 0.5);
  return vec4f(r.x * cos(t.x), r.x * sin(t.x), r.y * cos(t.y), r.y * sin(t.y));
}

struct Rn { n: u32, slot: u32 }
@group(0) @binding(0) var<uniform> pr: Rn;

@group(0) @binding(1) var<storage, read_write> rs_state: array<vec4u>;

// The bits of vec4 i of this draw; thread 0 also advances the 64-bit counter into the other slot.
// Every draw kernel calls this before its bounds check, so even an empty draw advances.
fn draw4(i: u32) -> vec4u {
  let s = rs_state[pr.slot];
  if (i == 0u) {
    let lo = s.z + 1u;
    rs_state[1u - pr.slot] = vec4u(s.xy, lo, s.w + select(0u, 1u, lo == 0u));
  }
  return philox(vec4u(i, 0u, s.z, s.w), s.xy);
}

@group(0) @binding(2) var<storage, read_write> rd_out: array<vec4f>;

@compute @workgroup_size(WG)
fn draw_uniform(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  let bits = draw4(i);
  if (i * 4u >= pr.n) { return; }
  rd_out[i] = unit4(bits);
}

@compute @workgroup_size(WG)
fn draw_normal(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  let bits = draw4(i);
  if (i * 4u >= pr.n) { return; }
  rd_out[i] = normal4(bits);
}

// ---- reparameterised sampling z = mu + exp(lv / 2) eps, eps drawn here (and kept for the
// backward) or given; eps is a constant: dmu = g, dlv = g exp(lv / 2) eps / 2 ----
@group(0) @binding(2) var<storage, read> rp_mu: array<vec4f>;
@group(0) @binding(3) var<storage, read> rp_lv: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> rp_z: array<vec4f>;
@group(0) @binding(5) var<storage, read_write> rp_eps: array<vec4f>;

@compute @workgroup_size(WG)
fn reparam_draw(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  let bits = draw4(i);
  if (i * 4u >= pr.n) { return; }
  let eps = normal4(bits);
  rp_eps[i] = eps;
  rp_z[i] = rp_mu[i] + exp(0.5 * rp_lv[i]) * eps;
}

@group(0) @binding(1) var<storage, read> re_eps: array<vec4f>;

@compute @workgroup_size(WG)
fn reparam(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pr.n) { return; }
  rp_z[i] = rp_mu[i] + exp(0.5 * rp_lv[i]) * re_eps[i];
}

@group(0) @binding(1) var<storage, read> rb_g: array<vec4f>;
@group(0) @binding(2) var<storage, read> rb_lv: array<vec4f>;
@group(0) @binding(3) var<storage, read> rb_eps: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> rb_dlv: array<vec4f>;

@compute @workgroup_size(WG)
fn reparam_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pr.n) { return; }
  rb_dlv[i] = 0.5 * rb_g[i] * exp(0.5 * rb_lv[i]) * rb_eps[i];
}

// Adam (with decoupled weight decay) and global gradient-norm clipping, all on the GPU.
// Per-step scalars live in a small storage buffer `hyper` so the uniforms (sizes only) stay
// constant across steps and no step needs a readback:
//   hyper[0] lr, [1] 1 - beta1^t, [2] 1 - beta2^t, [3] clip max norm (0 = off),
//   [4] gradient scale written by clip_finish, [5] global gradient norm (written by clip_finish).
// A non-finite norm sets the scale to 0 and the update is skipped (the NaN/Inf guard).

struct SumSq { n: u32, p: u32, offset: u32 }
@group(0) @binding(0) var<uniform> ss: SumSq;
@group(0) @binding(1) var<storage, read> ss_g: array<f32>;
@group(0) @binding(2) var<storage, read_write> ss_part: array<f32>;

// Stage 1: P partial sums of g^2 for one parameter group, at ss_part[offset .. offset + P].
// Thread t = k G + l sums lane l of contiguous chunk k (elements j0 + l, j0 + l + G, ... of the
// chunk's [j0, j1)), not the whole buffer at stride P: lavapipe runs 8 invocations as one SIMD
// batch through the whole loop, and a batch walking its chunk in order is several times faster
// there than one jumping P elements per load; on a GPU 8 adjacent lanes still read whole sectors
// (see reduce.wgsl, the same layout).
override G: u32 = 8u;

// [j0, j1) of chunk k of P / G over n elements; lengths are multiples of G.
fn ss_chunk(k: u32) -> vec2u {
  let kk = ss.p / G;
  let len = (ss.n + kk * G - 1u) / (kk * G) * G;
  let j0 = min(ss.n, k * len);
  return vec2u(j0, min(ss.n, j0 + len));
}

@compute @workgroup_size(WG)
fn sumsq(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= ss.p) { return; }
  let span = ss_chunk(t / G);
  var acc = 0.0;
  for (var j = span.x + t % G; j < span.y; j += G) { acc += ss_g[j] * ss_g[j]; }
  ss_part[ss.offset + t] = acc;
}

// The same with vec4 loads when the group's size is a multiple of 4 (ss.n is then size / 4).
@group(0) @binding(1) var<storage, read> ss4_g: array<vec4f>;

@compute @workgroup_size(WG)
fn sumsq4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= ss.p) { return; }
  let span = ss_chunk(t / G);
  var acc = vec4f(0.0);
  for (var j = span.x + t % G; j < span.y; j += G) { acc += ss4_g[j] * ss4_g[j]; }
  ss_part[ss.offset + t] = acc.x + acc.y + acc.z + acc.w;
}

struct Fin { count: u32 }
@group(0) @binding(0) var<uniform> fin: Fin;
@group(0) @binding(1) var<storage, read> fin_part: array<f32>;
@group(0) @binding(2) var<storage, read_write> fin_hyper: array<f32>;
var<workgroup> fin_acc: array<f32, 64>;

// Stage 2: one workgroup adds every partial, then sets the clip scale.
@compute @workgroup_size(64)
fn clip_finish(@builtin(local_invocation_index) l: u32) {
  var acc = 0.0;
  for (var j = l; j < fin.count; j += 64u) { acc += fin_part[j]; }
  fin_acc[l] = acc;
  workgroupBarrier();
  if (l != 0u) { return; }
  var total = 0.0;
  for (var k = 0u; k < 64u; k++) { total += fin_acc[k]; }
  let norm = sqrt(total);
  let maxNorm = fin_hyper[3];
  var scale = 1.0;
  if (maxNorm > 0.0 && norm > maxNorm) { scale = maxNorm / norm; }
  // NaN and Inf fail every comparison below, so the step is skipped.
  if (!(norm < 3.0e38)) { scale = 0.0; }
  fin_hyper[4] = scale;
  fin_hyper[5] = norm;
}

struct AdamP { n: u32, beta1: f32, beta2: f32, eps: f32, wd: f32 }
@group(0) @binding(0) var<uniform> ap: AdamP;
@group(0) @binding(1) var<storage, read> ad_hyper: array<f32>;
@group(0) @binding(2) var<storage, read> ad_g: array<f32>;
@group(0) @binding(3) var<storage, read_write> ad_p: array<f32>;
@group(0) @binding(4) var<storage, read_write> ad_m: array<f32>;
@group(0) @binding(5) var<storage, read_write> ad_v: array<f32>;

@compute @workgroup_size(WG)
fn adam(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= ap.n) { return; }
  let scale = ad_hyper[4];
  if (scale == 0.0) { return; }
  let lr = ad_hyper[0];
  let g = ad_g[i] * scale;
  let m = ap.beta1 * ad_m[i] + (1.0 - ap.beta1) * g;
  let v = ap.beta2 * ad_v[i] + (1.0 - ap.beta2) * g * g;
  ad_m[i] = m;
  ad_v[i] = v;
  let mhat = m / ad_hyper[1];
  let vhat = v / ad_hyper[2];
  ad_p[i] = ad_p[i] - lr * (mhat / (sqrt(vhat) + ap.eps) + ap.wd * ad_p[i]);
}

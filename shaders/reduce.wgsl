// Sum of a tensor viewed as [A, B, C] over A and C, giving [B], in two barrier-free stages:
// stage 1: P threads per b each sum a strided slice (adjacent threads read adjacent elements);
// stage 2: one thread per b adds its P partials and applies the scale (1 for sum, 1/count for
// mean). expand is the backward: dx[a, b, c] = scale * g[b].

struct R { a: u32, b: u32, c: u32, p: u32, scale: f32 }
@group(0) @binding(0) var<uniform> r: R;

@group(0) @binding(1) var<storage, read> s1_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> s1_part: array<f32>;

@compute @workgroup_size(WG)
fn partial(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= r.b * r.p) { return; }
  let b = t / r.p;
  let p = t % r.p;
  // Walk j = p, p + P, ... over the (a, c) plane with running counters: no division per element.
  let da = r.p / r.c;
  let dc = r.p % r.c;
  var a = p / r.c;
  var c = p % r.c;
  var acc = 0.0;
  loop {
    if (a >= r.a) { break; }
    acc += s1_x[(a * r.b + b) * r.c + c];
    a += da;
    c += dc;
    if (c >= r.c) { c -= r.c; a += 1u; }
  }
  s1_part[t] = acc;
}

// The same with vec4 loads when c % 4 == 0 (r.c is then c / 4, in vec4 units).
@group(0) @binding(1) var<storage, read> s4_x: array<vec4f>;

@compute @workgroup_size(WG)
fn partial4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= r.b * r.p) { return; }
  let b = t / r.p;
  let p = t % r.p;
  let da = r.p / r.c;
  let dc = r.p % r.c;
  var a = p / r.c;
  var c = p % r.c;
  var acc = vec4f(0.0);
  loop {
    if (a >= r.a) { break; }
    acc += s4_x[(a * r.b + b) * r.c + c];
    a += da;
    c += dc;
    if (c >= r.c) { c -= r.c; a += 1u; }
  }
  s1_part[t] = acc.x + acc.y + acc.z + acc.w;
}

// c == 1 and b % 4 == 0 (a sum over the rows of an [A, B] matrix, e.g. split-K partials):
// four adjacent outputs per thread with vec4 loads (r.b is then b / 4).
@compute @workgroup_size(WG)
fn partial_rows4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= r.b * r.p) { return; }
  let b4 = t / r.p;
  let p = t % r.p;
  var acc = vec4f(0.0);
  for (var a = p; a < r.a; a += r.p) { acc += s4_x[a * r.b + b4]; }
  for (var k = 0u; k < 4u; k++) { s1_part[(4u * b4 + k) * r.p + p] = acc[k]; }
}

@group(0) @binding(1) var<storage, read> s2_part: array<f32>;
@group(0) @binding(2) var<storage, read_write> s2_out: array<f32>;

@compute @workgroup_size(WG)
fn finish(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let b = flat(gid, nwg);
  if (b >= r.b) { return; }
  var acc = 0.0;
  for (var p = 0u; p < r.p; p++) { acc += s2_part[b * r.p + p]; }
  s2_out[b] = acc * r.scale;
}

@group(0) @binding(1) var<storage, read> ex_g: array<f32>;
@group(0) @binding(2) var<storage, read_write> ex_dx: array<f32>;

@compute @workgroup_size(WG)
fn expand(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= r.a * r.b * r.c) { return; }
  ex_dx[i] = r.scale * ex_g[(i / r.c) % r.b];
}

// Sum of a tensor viewed as [A, B, C] over A and C, giving [B], in two barrier-free stages:
// stage 1: P = K G threads per b each sum a share of one contiguous chunk of b's plane (below);
// stage 2: one thread per b adds its P partials and applies the scale (1 for sum, 1/count for
// mean). expand is the backward: dx[a, b, c] = scale * g[b].

struct R { a: u32, b: u32, c: u32, p: u32, scale: f32 }
@group(0) @binding(0) var<uniform> r: R;

// Stage 1 layout: thread t = b P + k G + l sums lane l of chunk k of output b's plane of A C
// elements (j = a C + c): j0 + l, j0 + l + G, ... for the chunk's [j0, j1). Why not interleave
// the P threads over the whole plane (j = p, p + P, ...)? lavapipe runs a workgroup as SIMD
// batches of 8 invocations (256-bit LLVM vectors), each batch to the end of its loop before the
// next starts; interleaved, a batch jumps P elements (kilobytes) per load, so the CPU's
// prefetchers never engage: 4-7x slower on 4M-element inputs than walking memory in order
// (bench/reduce_bench.ts). Per-thread contiguous chunks (as weight_norm.wgsl) fix lavapipe but
// cost a GPU its coalescing. With G = 8 lanes per chunk both hold: a lavapipe batch walks its
// chunk front to back, 8 adjacent elements (128 B with vec4 loads) per step, and on a GPU each 8
// lanes of a warp read 32 B (f32) or 128 B (vec4) contiguous, whole sectors, so no fetched byte
// is wasted. reduce.ts sets G: 8, or fewer for a plane too small for 8 partials (G = P is the
// old fully interleaved layout).
override G: u32 = 8u;

// [j0, j1) of chunk k of K over m elements; lengths are multiples of G (aligned starts).
fn chunk(k: u32, kk: u32, m: u32) -> vec2u {
  let len = (m + kk * G - 1u) / (kk * G) * G;
  let j0 = min(m, k * len);
  return vec2u(j0, min(m, j0 + len));
}

// Lane q % G of chunk q / G of output b: the chunk's range, first index, and per-step strides
// for i = (a B + b) C + c advanced with running counters (no division per element):
// i += di, c += dc, and on c >= C: c -= C, i += (B - 1) C.
struct Walk { j: u32, end: u32, i: u32, c: u32, di: u32, dc: u32 }

fn walk(b: u32, q: u32) -> Walk {
  let span = chunk(q / G, r.p / G, r.a * r.c);
  let j = span.x + q % G;
  let c = j % r.c;
  let dc = G % r.c;
  return Walk(j, span.y, ((j / r.c) * r.b + b) * r.c + c, c, (G / r.c) * r.b * r.c + dc, dc);
}

@group(0) @binding(1) var<storage, read> s1_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> s1_part: array<f32>;

@compute @workgroup_size(WG)
fn partial(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= r.b * r.p) { return; }
  var w = walk(t / r.p, t % r.p);
  let wrap = (r.b - 1u) * r.c;
  var acc = 0.0;
  for (var j = w.j; j < w.end; j += G) {
    acc += s1_x[w.i];
    w.i += w.di;
    w.c += w.dc;
    if (w.c >= r.c) { w.c -= r.c; w.i += wrap; }
  }
  s1_part[t] = acc;
}

// The same with vec4 loads when c % 4 == 0 (r.c is then c / 4, in vec4 units).
@group(0) @binding(1) var<storage, read> s4_x: array<vec4f>;

@compute @workgroup_size(WG)
fn partial4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= r.b * r.p) { return; }
  var w = walk(t / r.p, t % r.p);
  let wrap = (r.b - 1u) * r.c;
  var acc = vec4f(0.0);
  for (var j = w.j; j < w.end; j += G) {
    acc += s4_x[w.i];
    w.i += w.di;
    w.c += w.dc;
    if (w.c >= r.c) { w.c -= r.c; w.i += wrap; }
  }
  s1_part[t] = acc.x + acc.y + acc.z + acc.w;
}

// c == 1 and b % 4 == 0 (a sum over the rows of an [A, B] matrix, e.g. split-K partials), with
// vec4 loads (r.b is then b / 4, and r.c the threads per block of rows). Each thread sums RW vec4
// columns over one contiguous block of rows (partial p of P): lanes u = 8 g + l of a block take
// columns 8 RW g + l + 8 q (q < RW), so 8 adjacent lanes read 128 contiguous bytes per load (a
// whole line: coalesced on a GPU) and a lavapipe batch of 8 reads 8 RW vec4s = 512 B of each
// row before jumping to the next: 3-4x faster there than one vec4 column per thread (a jump of
// a whole row per 128 B) on rows of 4-64 KiB.
const RW = 4u;

@compute @workgroup_size(WG)
fn partial_rows4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= r.c * r.p) { return; }
  let u = t % r.c;
  let p = t / r.c;
  let len = (r.a + r.p - 1u) / r.p;
  let a1 = min(r.a, (p + 1u) * len);
  let col = (u / 8u) * 8u * RW + u % 8u;
  var acc: array<vec4f, RW>;
  for (var a = min(r.a, p * len); a < a1; a++) {
    let i = a * r.b + col;
    for (var q = 0u; q < RW; q++) {
      if (col + 8u * q < r.b) { acc[q] += s4_x[i + 8u * q]; }
    }
  }
  for (var q = 0u; q < RW; q++) {
    let b4 = col + 8u * q;
    if (b4 >= r.b) { break; }
    for (var k = 0u; k < 4u; k++) { s1_part[(4u * b4 + k) * r.p + p] = acc[q][k]; }
  }
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

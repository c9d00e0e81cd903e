// Resampling of [P, H, W] planes (P = N C), every kernel a gather without barriers:
// - nearest-neighbour upsampling x2 to [P, 2H, 2W]: every input pixel becomes a 2x2 block; the
//   backward sums each 2x2 block of the output gradient. Scalar kernels work on any W; the vec
//   kernels (W even) move two input pixels, i.e. one vec4 of an output row, per thread.
// - the same followed by a crop of every side;
// - a per-sample integer translation with zero fill.
// The last two gather scalars and store vec2s or vec4s.

struct Up { p: u32, h: u32, w: u32 }
@group(0) @binding(0) var<uniform> up: Up;

@group(0) @binding(1) var<storage, read> u_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> u_y: array<f32>;

// One thread per output pixel.
@compute @workgroup_size(WG)
fn upsample(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = flat(gid, nwg);
  let w2 = 2u * up.w;
  if (o >= up.p * 4u * up.h * up.w) { return; }
  let row = o / w2; // p * 2H + oy
  let ox = o - row * w2;
  u_y[o] = u_x[(row / 2u) * up.w + ox / 2u];
}

// One thread per input pixel: dx = sum of its 2x2 block of g (binding 1 = g, 2 = dx).
@compute @workgroup_size(WG)
fn upsample_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= up.p * up.h * up.w) { return; }
  let row = i / up.w; // p * H + iy
  let ix = i - row * up.w;
  let o = 2u * row * 2u * up.w + 2u * ix;
  let w2 = 2u * up.w;
  u_y[i] = (u_x[o] + u_x[o + 1u]) + (u_x[o + w2] + u_x[o + w2 + 1u]);
}

// ---- W even: two input pixels <-> one vec4 of an output row (up.w is then W / 2) ----
@group(0) @binding(1) var<storage, read> v_x: array<vec2f>;
@group(0) @binding(2) var<storage, read_write> v_y: array<vec4f>;

@compute @workgroup_size(WG)
fn upsample2(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = flat(gid, nwg);
  if (o >= up.p * 2u * up.h * up.w) { return; }
  let row = o / up.w; // p * 2H + oy; each output row is W / 2 vec4s
  let x = v_x[(row / 2u) * up.w + (o - row * up.w)];
  v_y[o] = x.xxyy;
}

@group(0) @binding(1) var<storage, read> vb_g: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> vb_dx: array<vec2f>;

@compute @workgroup_size(WG)
fn upsample2_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= up.p * up.h * up.w) { return; }
  let row = i / up.w; // p * H + iy
  let o = 2u * row * up.w + (i - row * up.w);
  let s = vb_g[o] + vb_g[o + up.w];
  vb_dx[i] = vec2f(s.x + s.y, s.z + s.w);
}

// ---- upsample x2 then crop `crop` pixels from every side: [P, H, W] -> [P, 2H - 2c, 2W - 2c],
// y[oy, ox] = x[(oy + c) / 2, (ox + c) / 2]. Backward: dx[iy, ix] sums the outputs of its 2x2
// block that survive the crop. ----
struct Crop { p: u32, h: u32, w: u32, ho: u32, wo: u32, crop: u32 }
@group(0) @binding(0) var<uniform> cr: Crop;

@group(0) @binding(1) var<storage, read> c_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> c_y: array<f32>;

// Output rows are always even (2W - 2c): one thread per pair of outputs, stored as a vec2 (the
// per-thread index arithmetic, not the loads, bounds a scalar gather on lavapipe).
@group(0) @binding(2) var<storage, read_write> c2_y: array<vec2f>;

@compute @workgroup_size(WG)
fn upsample_crop(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = flat(gid, nwg);
  let wq = cr.wo / 2u;
  if (o >= cr.p * cr.ho * wq) { return; }
  let x0 = (o % wq) * 2u + cr.crop;
  let row = o / wq; // p * Ho + oy
  let oy = row % cr.ho;
  let plane = row / cr.ho;
  let base = (plane * cr.h + (oy + cr.crop) / 2u) * cr.w;
  c2_y[o] = vec2f(c_x[base + x0 / 2u], c_x[base + (x0 + 1u) / 2u]);
}

// One thread per input pixel (binding 1 = g, 2 = dx).
@compute @workgroup_size(WG)
fn upsample_crop_bwd(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
) {
  let i = flat(gid, nwg);
  if (i >= cr.p * cr.h * cr.w) { return; }
  let ix = i % cr.w;
  let row = i / cr.w; // p * H + iy
  let iy = row % cr.h;
  let plane = row / cr.h;
  var acc = 0.0;
  for (var dy = 0u; dy < 2u; dy++) {
    let oy = i32(2u * iy + dy) - i32(cr.crop);
    if (oy < 0 || oy >= i32(cr.ho)) { continue; }
    let base = (plane * cr.ho + u32(oy)) * cr.wo;
    for (var dx = 0u; dx < 2u; dx++) {
      let ox = i32(2u * ix + dx) - i32(cr.crop);
      if (ox >= 0 && ox < i32(cr.wo)) { acc += c_x[base + u32(ox)]; }
    }
  }
  c_y[i] = acc;
}

// ---- translate: per sample n, y[n, c, i, j] = x[n, c, i - dy_n, j - dx_n], zero where that
// falls outside; shifts[2n] = dy_n, shifts[2n + 1] = dx_n (integers held as f32). The backward
// is the same gather with the shifts negated (tr.neg = 1). One thread per output pixel. ----
struct Tr { n: u32, c: u32, h: u32, w: u32, neg: u32 }
@group(0) @binding(0) var<uniform> tr: Tr;

@group(0) @binding(1) var<storage, read> t_x: array<f32>;
@group(0) @binding(2) var<storage, read> t_shift: array<f32>;
@group(0) @binding(3) var<storage, read_write> t_y: array<f32>;

@compute @workgroup_size(WG)
fn translate(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = flat(gid, nwg);
  let plane = tr.h * tr.w;
  if (o >= tr.n * tr.c * plane) { return; }
  let n = o / (tr.c * plane);
  let j = o % tr.w;
  let i = (o / tr.w) % tr.h;
  let sign = select(1, -1, tr.neg == 1u);
  let sy = i32(i) - sign * i32(round(t_shift[2u * n]));
  let sx = i32(j) - sign * i32(round(t_shift[2u * n + 1u]));
  var v = 0.0;
  if (sy >= 0 && sy < i32(tr.h) && sx >= 0 && sx < i32(tr.w)) {
    v = t_x[o - i * tr.w - j + u32(sy) * tr.w + u32(sx)];
  }
  t_y[o] = v;
}

// W % 4 == 0: 4 outputs of a row per thread, stored as one vec4 (the source columns start
// anywhere, so the loads stay scalar).
@group(0) @binding(3) var<storage, read_write> t4_y: array<vec4f>;

@compute @workgroup_size(WG)
fn translate4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = flat(gid, nwg);
  let wq = tr.w / 4u;
  if (o >= tr.n * tr.c * tr.h * wq) { return; }
  let row = o / wq; // (n C + c) H + i
  let j0 = (o - row * wq) * 4u;
  let i = row % tr.h;
  let n = row / (tr.h * tr.c);
  let sign = select(1, -1, tr.neg == 1u);
  let sy = i32(i) - sign * i32(round(t_shift[2u * n]));
  let sx = i32(j0) - sign * i32(round(t_shift[2u * n + 1u]));
  var v = vec4f(0.0);
  if (sy >= 0 && sy < i32(tr.h)) {
    let base = (row - i + u32(sy)) * tr.w;
    for (var k = 0; k < 4; k++) {
      let x = sx + k;
      if (x >= 0 && x < i32(tr.w)) { v[k] = t_x[base + u32(x)]; }
    }
  }
  t4_y[o] = v;
}

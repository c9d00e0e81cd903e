// Average pooling 2x2, stride 2, of [P, H, W] planes (P = N C) to [P, Ho, Wo],
// Ho = floor((H + 2 pad - 2) / 2) + 1, with zero padding counted in the divisor (always 4, as
// PyTorch's count_include_pad): y[oy, ox] = (sum of x over rows 2 oy - pad + {0, 1} and columns
// 2 ox - pad + {0, 1} inside the image) / 4. Backward: dx[iy, ix] = g[(iy + pad) / 2,
// (ix + pad) / 2] / 4 when that output exists (a trailing odd row or column feeds none).
// Scalar kernels take any size and padding; the vec kernels (pad 0, W % 4 == 0) move one vec4 of
// two input rows per output vec2, so neither needs a barrier.

struct Pool { p: u32, h: u32, w: u32, ho: u32, wo: u32, pad: u32 }
@group(0) @binding(0) var<uniform> pl: Pool;

@group(0) @binding(1) var<storage, read> p_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> p_y: array<f32>;

// One thread per output pixel.
@compute @workgroup_size(WG)
fn avgpool2(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = flat(gid, nwg);
  if (o >= pl.p * pl.ho * pl.wo) { return; }
  let ox = o % pl.wo;
  let row = o / pl.wo; // plane * Ho + oy
  let oy = row % pl.ho;
  let plane = row / pl.ho;
  let y0 = i32(2u * oy) - i32(pl.pad);
  let x0 = i32(2u * ox) - i32(pl.pad);
  var acc = 0.0;
  for (var dy = 0; dy < 2; dy++) {
    let y = y0 + dy;
    if (y < 0 || y >= i32(pl.h)) { continue; }
    let base = (plane * pl.h + u32(y)) * pl.w;
    for (var dx = 0; dx < 2; dx++) {
      let x = x0 + dx;
      if (x >= 0 && x < i32(pl.w)) { acc += p_x[base + u32(x)]; }
    }
  }
  p_y[o] = 0.25 * acc;
}

// One thread per input pixel (binding 1 = g, 2 = dx).
@compute @workgroup_size(WG)
fn avgpool2_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= pl.p * pl.h * pl.w) { return; }
  let ix = i % pl.w;
  let row = i / pl.w; // plane * H + iy
  let iy = row % pl.h;
  let plane = row / pl.h;
  let oy = (iy + pl.pad) / 2u;
  let ox = (ix + pl.pad) / 2u;
  var v = 0.0;
  if (oy < pl.ho && ox < pl.wo) { v = 0.25 * p_x[(plane * pl.ho + oy) * pl.wo + ox]; }
  p_y[i] = v;
}

// ---- pad 0, W % 4 == 0: pl.w and pl.wo count vec4s of an input row (W / 4 = Wo / 2) ----
@group(0) @binding(1) var<storage, read> v_x: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> v_y: array<vec2f>;

@compute @workgroup_size(WG)
fn avgpool2_4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = flat(gid, nwg);
  if (o >= pl.p * pl.ho * pl.w) { return; }
  let q = o % pl.w;
  let row = o / pl.w; // plane * Ho + oy
  let oy = row % pl.ho;
  let plane = row / pl.ho;
  let i = (plane * pl.h + 2u * oy) * pl.w + q;
  let s = v_x[i] + v_x[i + pl.w]; // the two rows, column by column
  v_y[o] = 0.25 * vec2f(s.x + s.y, s.z + s.w);
}

@group(0) @binding(1) var<storage, read> vb_g: array<vec2f>;
@group(0) @binding(2) var<storage, read_write> vb_dx: array<vec4f>;

@compute @workgroup_size(WG)
fn avgpool2_4_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= pl.p * pl.h * pl.w) { return; }
  let q = i % pl.w;
  let row = i / pl.w; // plane * H + iy
  let iy = row % pl.h;
  let plane = row / pl.h;
  var v = vec4f(0.0);
  if (iy / 2u < pl.ho) {
    let g = 0.25 * vb_g[(plane * pl.ho + iy / 2u) * pl.w + q];
    v = g.xxyy;
  }
  vb_dx[i] = v;
}

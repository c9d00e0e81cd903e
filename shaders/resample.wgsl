// Nearest-neighbour upsampling x2 of [P, H, W] planes (P = N C) to [P, 2H, 2W]: every input pixel
// becomes a 2x2 block. The backward sums each 2x2 block of the output gradient.
// Scalar kernels work on any W; the vec kernels (W even) move two input pixels, i.e. one vec4 of
// an output row, per thread, so neither needs a barrier.

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

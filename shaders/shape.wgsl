// Channel movement: one strided block copy serves slice, concat, split, even/odd and their
// backwards. A block of [N, c, inner] elements goes from src to dst, where channel k of sample n
// sits at  n * row + off + k * stride  (+ j for j < inner) on each side, in elements. Even/odd
// channels are stride 2; a contiguous copy is c = 1 with inner covering the whole run.
// Each thread moves one element (copy) or four (copy4, chosen by the host when every size and
// offset is a multiple of 4): no barriers, adjacent threads touch adjacent addresses.

struct Copy {
  total: u32, // elements (copy) or vec4s (copy4) in the block
  c: u32,
  inner: u32,
  src_row: u32,
  src_off: u32,
  src_stride: u32,
  dst_row: u32,
  dst_off: u32,
  dst_stride: u32,
}
@group(0) @binding(0) var<uniform> p: Copy;

// (src, dst) indices of block element i.
fn locate(i: u32) -> vec2u {
  let per = p.c * p.inner;
  let n = i / per;
  let r = i - n * per;
  let k = r / p.inner;
  let j = r - k * p.inner;
  return vec2u(n * p.src_row + p.src_off + k * p.src_stride + j,
               n * p.dst_row + p.dst_off + k * p.dst_stride + j);
}

@group(0) @binding(1) var<storage, read> c1_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> c1_dst: array<f32>;

@compute @workgroup_size(WG)
fn copy(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= p.total) { return; }
  let at = locate(i);
  c1_dst[at.y] = c1_src[at.x];
}

@group(0) @binding(1) var<storage, read> c4_src: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> c4_dst: array<vec4f>;

@compute @workgroup_size(WG)
fn copy4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= p.total) { return; }
  let at = locate(i);
  c4_dst[at.y] = c4_src[at.x];
}

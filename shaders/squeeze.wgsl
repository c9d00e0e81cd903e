// Space-to-depth by 2 (Glow's squeeze): out[n, 4c + 2i + j, h, w] = in[n, c, 2h + i, 2w + j].
// Both directions are gathers, one thread per output element; each is the other's backward.

struct Sq { n: u32, c: u32, h: u32, w: u32 }  // shape of the un-squeezed side [N, C, H, W]
@group(0) @binding(0) var<uniform> sq: Sq;
@group(0) @binding(1) var<storage, read> sq_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> sq_out: array<f32>;

@compute @workgroup_size(WG)
fn squeeze(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = flat(gid, nwg);
  if (o >= sq.n * sq.c * sq.h * sq.w) { return; }
  let h2 = sq.h / 2u;
  let w2 = sq.w / 2u;
  let w = o % w2;
  let h = (o / w2) % h2;
  let oc = (o / (w2 * h2)) % (4u * sq.c);
  let n = o / (w2 * h2 * 4u * sq.c);
  let c = oc / 4u;
  let i = (oc / 2u) % 2u;
  let j = oc % 2u;
  sq_out[o] = sq_in[((n * sq.c + c) * sq.h + 2u * h + i) * sq.w + 2u * w + j];
}

@compute @workgroup_size(WG)
fn unsqueeze(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = flat(gid, nwg);
  if (o >= sq.n * sq.c * sq.h * sq.w) { return; }
  let x = o % sq.w;
  let y = (o / sq.w) % sq.h;
  let c = (o / (sq.w * sq.h)) % sq.c;
  let n = o / (sq.w * sq.h * sq.c);
  let oc = 4u * c + 2u * (y % 2u) + (x % 2u);
  let h2 = sq.h / 2u;
  let w2 = sq.w / 2u;
  sq_out[o] = sq_in[((n * 4u * sq.c + oc) * h2 + y / 2u) * w2 + x / 2u];
}

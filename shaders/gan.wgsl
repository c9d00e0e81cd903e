// GAN losses on discriminator scores s (any shape, n elements): per-element terms here, then
// the mean by the shared two-stage reduction (reduce.wgsl), and one gradient kernel.
//   OP 0, BCE with logits:  t softplus(-s) + (1 - t) softplus(s)  (gradient sigmoid(s) - t)
//   OP 1, least squares:    (s - t)^2                             (gradient 2 (s - t))
//   OP 2, hinge:            relu(1 - t s), t = +1 real, -1 fake   (gradient -t where t s < 1)
// The target t is one number (tmode 0, in the uniform) or a tensor of s's size (tmode 1).
// vec4 over elements; lanes past n are padding that the reduction never reads.

override OP: u32 = 0u;

struct Gan { n: u32, tmode: u32, t: f32, scale: f32 }
@group(0) @binding(0) var<uniform> gp: Gan;

// log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow, and full relative accuracy for x << 0.
fn softplus4(x: vec4f) -> vec4f {
  return max(x, vec4f(0.0)) + log1p01(exp(-abs(x)));
}

fn sigmoid4(x: vec4f) -> vec4f {
  let e = exp(-abs(x));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= vec4f(0.0));
}

@group(0) @binding(1) var<storage, read> gt_s: array<vec4f>;
@group(0) @binding(2) var<storage, read> gt_t: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> gt_terms: array<vec4f>;

fn target4(i: u32) -> vec4f {
  if (gp.tmode == 1u) { return gt_t[i]; }
  return vec4f(gp.t);
}

@compute @workgroup_size(WG)
fn gan_terms(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= gp.n) { return; }
  let s = gt_s[i];
  let t = target4(i);
  switch OP {
    case 0u: { gt_terms[i] = t * softplus4(-s) + (1.0 - t) * softplus4(s); }
    case 1u: { gt_terms[i] = (s - t) * (s - t); }
    default: { gt_terms[i] = max(1.0 - t * s, vec4f(0.0)); }
  }
}

@group(0) @binding(3) var<storage, read> gb_g: array<f32>;
@group(0) @binding(4) var<storage, read_write> gb_ds: array<vec4f>;

@compute @workgroup_size(WG)
fn gan_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= gp.n) { return; }
  let s = gt_s[i];
  let t = target4(i);
  let c = gb_g[0] * gp.scale;
  switch OP {
    case 0u: { gb_ds[i] = c * (sigmoid4(s) - t); }
    case 1u: { gb_ds[i] = c * 2.0 * (s - t); }
    default: { gb_ds[i] = select(vec4f(0.0), -c * t, t * s < vec4f(1.0)); }
  }
}

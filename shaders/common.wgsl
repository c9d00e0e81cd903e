// Prepended to every kernel file by src/gpu/kernels.ts (line numbers in errors are mapped back).
// 1-D kernels fold dispatches over 65,535 workgroups into y, so the flat index needs num_workgroups.
override WG: u32 = 64u;

fn flat(gid: vec3u, nwg: vec3u) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

// log(1 + e) for e in [0, 1] as 2 atanh(z), z = e / (2 + e) <= 1/3: the series in z^2 to z^14
// is within 1.4e-8 relative, and no 1 + e is ever rounded (log(1 + e) in f32 is 0 below
// e = 6e-8, so softplus(-20) would be 0 instead of 2e-9).
fn log1p01(e: vec4f) -> vec4f {
  let z = e / (2.0 + e);
  let w = z * z;
  var p = vec4f(1.0 / 15.0);
  p = fma(p, w, vec4f(1.0 / 13.0));
  p = fma(p, w, vec4f(1.0 / 11.0));
  p = fma(p, w, vec4f(1.0 / 9.0));
  p = fma(p, w, vec4f(1.0 / 7.0));
  p = fma(p, w, vec4f(1.0 / 5.0));
  p = fma(p, w, vec4f(1.0 / 3.0));
  p = fma(p, w, vec4f(1.0));
  return 2.0 * z * p;
}

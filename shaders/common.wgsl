// Prepended to every kernel file by src/gpu/kernels.ts (line numbers in errors are mapped back).
// 1-D kernels fold dispatches over 65,535 workgroups into y, so the flat index needs num_workgroups.
override WG: u32 = 64u;

fn flat(gid: vec3u, nwg: vec3u) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

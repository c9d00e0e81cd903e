// Cahn-Hilliard-Cook, explicit Euler on a periodic grid (glow-funs.md §3.1):
//   mu = u^3 - u - gamma lap(u);   u <- u + dt (lap(mu) + sigma zeta),   zeta ~ U[-1, 1]
// with the 5-point Laplacian. Every trajectory of a batch is one [H, W] plane of the same
// buffer; each invocation owns four neighbouring sites of a row (one vec4), so a stencil is five
// vec4 loads. The update only reads its own u, so u is updated in place; mu is the one scratch.
//
// Noise is counter-based: pcg4d (Jarzynski & Olano 2020) of (vec4 index in the plane, step,
// trajectory seed) gives the four sites' zeta, so a trajectory draws the same numbers whatever
// batch it runs in. src/data/chc_sim.ts has the same hash in TypeScript.

// Row width in vec4s and rows per plane: constants, so index arithmetic folds to shifts.
override W4: u32 = 16u;
override H: u32 = 64u;

struct ChcParams { n4: u32, gamma: f32, dt: f32, sigma: f32 }
@group(0) @binding(0) var<uniform> cp: ChcParams;

// The four neighbour vec4s of vec4 `i`, wrapping inside its own plane.
struct Stencil { l: u32, r: u32, up: u32, dn: u32, site: u32, plane: u32 }

fn stencil(i: u32) -> Stencil {
  let n = W4 * H;
  let plane = i / n;
  let site = i - plane * n;
  let y = site / W4;
  let x = site - y * W4;
  let row = i - x;
  var s: Stencil;
  s.l = row + select(x - 1u, W4 - 1u, x == 0u);
  s.r = row + select(x + 1u, 0u, x + 1u == W4);
  s.up = i - y * W4 + select(y - 1u, H - 1u, y == 0u) * W4;
  s.dn = i - y * W4 + select(y + 1u, 0u, y + 1u == H) * W4;
  s.site = site;
  s.plane = plane;
  return s;
}

// Left and right neighbours of the four lanes come from the lanes beside them, and at the ends
// from the adjacent vec4s.
fn lap5(c: vec4f, l: vec4f, r: vec4f, up: vec4f, dn: vec4f) -> vec4f {
  return (vec4f(l.w, c.xyz) + vec4f(c.yzw, r.x)) + (up + dn) - 4.0 * c;
}

fn pcg4d(a: vec4u) -> vec4u {
  var v = a * 1664525u + 1013904223u;
  v.x += v.y * v.w;
  v.y += v.z * v.x;
  v.z += v.x * v.y;
  v.w += v.y * v.z;
  v ^= v >> vec4u(16u);
  v.x += v.y * v.w;
  v.y += v.z * v.x;
  v.z += v.x * v.y;
  v.w += v.y * v.z;
  return v;
}

// Odd multiples of 2^-24 in (-1, 1): every value is exact in f32, and the set is symmetric, so
// the mean is exactly 0.
fn zeta(h: vec4u) -> vec4f {
  let k = vec4i(h >> vec4u(8u)) * 2 + vec4i(1 - 16777216);
  return vec4f(k) * (1.0 / 16777216.0);
}

// ---- mu = u^3 - u - gamma lap(u); also advances the step counter that the update reads ----
@group(0) @binding(1) var<storage, read> mu_u: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> mu_out: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> mu_step: array<u32>;

@compute @workgroup_size(WG)
fn chc_mu(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= cp.n4) { return; }
  // The step lives on the GPU so that thousands of steps share one uniform; nothing else in
  // this dispatch touches it, and the update dispatch that reads it comes after.
  if (i == 0u) { mu_step[0] += 1u; }
  let s = stencil(i);
  let c = mu_u[i];
  let lap = lap5(c, mu_u[s.l], mu_u[s.r], mu_u[s.up], mu_u[s.dn]);
  mu_out[i] = c * c * c - c - cp.gamma * lap;
}

// ---- u <- u + dt (lap(mu) + sigma zeta(seed, step, site)) ----
@group(0) @binding(1) var<storage, read_write> up_u: array<vec4f>;
@group(0) @binding(2) var<storage, read> up_mu: array<vec4f>;
@group(0) @binding(3) var<storage, read> up_step: array<u32>;
@group(0) @binding(4) var<storage, read> up_seed: array<vec2u>;

@compute @workgroup_size(WG)
fn chc_update(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= cp.n4) { return; }
  let s = stencil(i);
  let m = up_mu[i];
  let lap = lap5(m, up_mu[s.l], up_mu[s.r], up_mu[s.up], up_mu[s.dn]);
  let seed = up_seed[s.plane];
  let z = zeta(pcg4d(vec4u(s.site, up_step[0], seed.x, seed.y)));
  up_u[i] = up_u[i] + cp.dt * (lap + cp.sigma * z);
}

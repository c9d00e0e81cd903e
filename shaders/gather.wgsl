// Indexing (vae-disentangle.md §7 rows 15, 16, 18, 32): rows gathered by an index (a batch
// permutation, roll or derangement, or embedding rows by label), where(mask, a, b), and the
// projection-discriminator term <E[y_b], h_b>.
//
// Gradients of a gather are scatter-adds, and an index may repeat. WGSL has no atomic float add,
// so the index comes with its inverse, built on the CPU where the index already is: for every
// source row r, the output rows that read it (offsets + list, as in a CSR matrix). One thread per
// gradient element then sums its rows in a fixed order: no atomics, and bitwise deterministic.
// The index buffer holds, as u32: idx[0 .. M) the source row of each output row, then
// off[0 .. N] at M, then the list at M + N + 1 (output rows of source row r: list[off[r] ..
// off[r + 1]), ascending).

struct Ga { rows: u32, inner: u32, src: u32 } // output rows M, elements per row, source rows N
@group(0) @binding(0) var<uniform> pa: Ga;

// ---- y[m, j] = x[idx[m], j]: scalar, and vec4 when a row is whole vec4s (inner in vec4s) ----
@group(0) @binding(1) var<storage, read> gr_x: array<f32>;
@group(0) @binding(2) var<storage, read> gr_idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> gr_y: array<f32>;

@compute @workgroup_size(WG)
fn gather_rows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= pa.rows * pa.inner) { return; }
  let m = t / pa.inner;
  gr_y[t] = gr_x[gr_idx[m] * pa.inner + (t - m * pa.inner)];
}

@group(0) @binding(1) var<storage, read> gr4_x: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> gr4_y: array<vec4f>;

@compute @workgroup_size(WG)
fn gather_rows4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= pa.rows * pa.inner) { return; }
  let m = t / pa.inner;
  gr4_y[t] = gr4_x[gr_idx[m] * pa.inner + (t - m * pa.inner)];
}

// ---- dx[r, j] = sum over output rows m that read r of g[m, j] ----
@group(0) @binding(1) var<storage, read> sc_g: array<f32>;
@group(0) @binding(2) var<storage, read> sc_idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> sc_dx: array<f32>;

@compute @workgroup_size(WG)
fn scatter_rows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= pa.src * pa.inner) { return; }
  let r = t / pa.inner;
  let j = t - r * pa.inner;
  let list = pa.rows + pa.src + 1u;
  var acc = 0.0;
  for (var k = sc_idx[pa.rows + r]; k < sc_idx[pa.rows + r + 1u]; k++) {
    acc += sc_g[sc_idx[list + k] * pa.inner + j];
  }
  sc_dx[t] = acc;
}

@group(0) @binding(1) var<storage, read> sc4_g: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> sc4_dx: array<vec4f>;

@compute @workgroup_size(WG)
fn scatter_rows4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= pa.src * pa.inner) { return; }
  let r = t / pa.inner;
  let j = t - r * pa.inner;
  let list = pa.rows + pa.src + 1u;
  var acc = vec4f(0.0);
  for (var k = sc_idx[pa.rows + r]; k < sc_idx[pa.rows + r + 1u]; k++) {
    acc += sc4_g[sc_idx[list + k] * pa.inner + j];
  }
  sc4_dx[t] = acc;
}

// ---- where: out = mask != 0 ? a : b, the mask full (one value per element) or per sample (one
// per `inner` elements); the backward passes g to the kept side and 0 to the other (flip = 1
// selects b's side). vec4 over a, b and out; the mask is read lane by lane. ----
struct Wh { n: u32, inner: u32, full: u32, masks: u32, flip: u32 }
@group(0) @binding(0) var<uniform> pw: Wh;

@group(0) @binding(1) var<storage, read> wm_mask: array<f32>;

fn keep4(i: u32) -> vec4<bool> {
  let e = vec4u(4u * i) + vec4u(0u, 1u, 2u, 3u);
  let k = min(select(e / pw.inner, e, pw.full == 1u), vec4u(pw.masks - 1u));
  let m = vec4f(wm_mask[k.x], wm_mask[k.y], wm_mask[k.z], wm_mask[k.w]);
  return m != vec4f(0.0);
}

@group(0) @binding(2) var<storage, read> wf_a: array<vec4f>;
@group(0) @binding(3) var<storage, read> wf_b: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> wf_out: array<vec4f>;

@compute @workgroup_size(WG)
fn where_select(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pw.n) { return; }
  wf_out[i] = select(wf_b[i], wf_a[i], keep4(i));
}

@group(0) @binding(2) var<storage, read> wb_g: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> wb_out: array<vec4f>;

@compute @workgroup_size(WG)
fn where_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pw.n) { return; }
  let keep = keep4(i) != vec4<bool>(pw.flip == 1u);
  wb_out[i] = select(vec4f(0.0), wb_g[i], keep);
}

// ---- projection term out[b] = <E[idx[b]], h[b]> for a table E [C, D] and h [B, D]
//   dh[b, d] = g[b] E[idx[b], d];   dE[c, d] = sum over b with idx[b] = c of g[b] h[b, d]
// (the index buffer is laid out as above, with M = B and N = C). ----
struct Pj { b: u32, d: u32, c: u32 }
@group(0) @binding(0) var<uniform> pp: Pj;

@group(0) @binding(1) var<storage, read> pf_table: array<f32>;
@group(0) @binding(2) var<storage, read> pf_h: array<f32>;
@group(0) @binding(3) var<storage, read> pf_idx: array<u32>;
@group(0) @binding(4) var<storage, read_write> pf_out: array<f32>;

@compute @workgroup_size(WG)
fn proj_fwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let b = flat(gid, nwg);
  if (b >= pp.b) { return; }
  let e = pf_idx[b] * pp.d;
  let h = b * pp.d;
  var acc = 0.0;
  for (var d = 0u; d < pp.d; d++) { acc += pf_table[e + d] * pf_h[h + d]; }
  pf_out[b] = acc;
}

@group(0) @binding(1) var<storage, read> ph_g: array<f32>;
@group(0) @binding(2) var<storage, read> ph_table: array<f32>;
@group(0) @binding(3) var<storage, read> ph_idx: array<u32>;
@group(0) @binding(4) var<storage, read_write> ph_dh: array<f32>;

@compute @workgroup_size(WG)
fn proj_dh(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= pp.b * pp.d) { return; }
  let b = t / pp.d;
  ph_dh[t] = ph_g[b] * ph_table[ph_idx[b] * pp.d + (t - b * pp.d)];
}

@group(0) @binding(1) var<storage, read> pt_g: array<f32>;
@group(0) @binding(2) var<storage, read> pt_h: array<f32>;
@group(0) @binding(3) var<storage, read> pt_idx: array<u32>;
@group(0) @binding(4) var<storage, read_write> pt_dtable: array<f32>;

@compute @workgroup_size(WG)
fn proj_dtable(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= pp.c * pp.d) { return; }
  let c = t / pp.d;
  let d = t - c * pp.d;
  let list = pp.b + pp.c + 1u;
  var acc = 0.0;
  for (var k = pt_idx[pp.b + c]; k < pt_idx[pp.b + c + 1u]; k++) {
    let b = pt_idx[list + k];
    acc += pt_g[b] * pt_h[b * pp.d + d];
  }
  pt_dtable[t] = acc;
}

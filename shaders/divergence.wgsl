// Divergences and reconstruction likelihoods of the VAE-family models (vae-disentangle.md §7
// rows 26-28, 30): squared error, the Gaussian NLL with one learned sigma per sample, KL of a
// diagonal Gaussian against N(0, I) or against another diagonal Gaussian, and the Gaussian-mixture
// (GM) logits of Lr-LiVAE.
//
// Elementwise kernels run on vec4s of a tensor viewed as [N, D] (D elements per sample). A vec4
// may straddle two samples when D % 4 != 0, so per-sample values are read lane by lane; lanes past
// the end clamp to the last sample and only fill the padding of the output's buffer. Per-sample
// sums go through the shared two-stage reduction (reduce.wgsl). Every backward reads the upstream
// gradient at @binding(1).

struct El { n: u32, d: u32, samples: u32, gfull: u32, scale: f32, sign: f32 }
@group(0) @binding(0) var<uniform> pe: El;

// The upstream gradient: one value per sample (a reduced output) or per element ("none").
@group(0) @binding(1) var<storage, read> eg: array<f32>;

fn lanes(i: u32) -> vec4u {
  return vec4u(4u * i) + vec4u(0u, 1u, 2u, 3u);
}

fn g4(i: u32) -> vec4f {
  let s = min(lanes(i) / pe.d, vec4u(pe.samples - 1u));
  let k = select(s, lanes(i), pe.gfull == 1u);
  return vec4f(eg[k.x], eg[k.y], eg[k.z], eg[k.w]);
}

// ---- squared error: terms (a - b)^2, and d/da = sign * scale * g * (a - b) ----
// scale carries the 2 of the square and the reduction's 1/count; sign = -1 gives d/db. The
// Gaussian NLL reuses the backward with g = its per-sample coefficient (see nll_sigma_bwd).
@group(0) @binding(1) var<storage, read> se_a: array<vec4f>;
@group(0) @binding(2) var<storage, read> se_b: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> se_out: array<vec4f>;

@compute @workgroup_size(WG)
fn sq_err(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pe.n) { return; }
  let d = se_a[i] - se_b[i];
  se_out[i] = d * d;
}

@group(0) @binding(2) var<storage, read> sb_a: array<vec4f>;
@group(0) @binding(3) var<storage, read> sb_b: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> sb_out: array<vec4f>;

@compute @workgroup_size(WG)
fn sq_err_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pe.n) { return; }
  sb_out[i] = (pe.sign * pe.scale) * g4(i) * (sb_a[i] - sb_b[i]);
}

// ---- Gaussian NLL with a learned scalar sigma per sample, from its error e and ls = log sigma:
//   out = e exp(-2 ls) / 2 + k ls + c     (k = 1 and e a mean over elements, or k = D and e a sum)
// backward: dls = g (k - e exp(-2 ls)); coef = g exp(-2 ls) feeds sq_err_bwd for dxbar, dx. ----
struct Nl { n: u32, k: f32, c: f32 }
@group(0) @binding(0) var<uniform> pn: Nl;

@group(0) @binding(1) var<storage, read> nf_e: array<f32>;
@group(0) @binding(2) var<storage, read> nf_ls: array<f32>;
@group(0) @binding(3) var<storage, read_write> nf_out: array<f32>;

@compute @workgroup_size(WG)
fn nll_sigma(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let b = flat(gid, nwg);
  if (b >= pn.n) { return; }
  let ls = nf_ls[b];
  nf_out[b] = 0.5 * nf_e[b] * exp(-2.0 * ls) + pn.k * ls + pn.c;
}

@group(0) @binding(2) var<storage, read> nb_e: array<f32>;
@group(0) @binding(3) var<storage, read> nb_ls: array<f32>;
@group(0) @binding(4) var<storage, read_write> nb_dls: array<f32>;
@group(0) @binding(5) var<storage, read_write> nb_coef: array<f32>;

@compute @workgroup_size(WG)
fn nll_sigma_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let b = flat(gid, nwg);
  if (b >= pn.n) { return; }
  let p = exp(-2.0 * nb_ls[b]);
  let g = eg[b];
  nb_dls[b] = g * (pn.k - nb_e[b] * p);
  nb_coef[b] = g * p;
}

// ---- KL(N(mu, s) || N(0, 1)) per element, s = logvar (SIGMA = 0) or sigma (SIGMA = 1):
//   logvar: (mu^2 + e^lv - 1 - lv) / 2;        d/dmu = g mu,  d/dlv = g (e^lv - 1) / 2
//   sigma:  (mu^2 + sigma^2 - 1) / 2 - log sigma;  d/dsigma = g (sigma - 1 / sigma) ----
override SIGMA: u32 = 0u;

@group(0) @binding(1) var<storage, read> kf_mu: array<vec4f>;
@group(0) @binding(2) var<storage, read> kf_s: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> kf_out: array<vec4f>;

@compute @workgroup_size(WG)
fn kl_std(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pe.n) { return; }
  let mu = kf_mu[i];
  let s = kf_s[i];
  if (SIGMA == 1u) {
    kf_out[i] = 0.5 * (mu * mu + s * s - 1.0) - log(s);
  } else {
    kf_out[i] = 0.5 * (mu * mu + exp(s) - 1.0 - s);
  }
}

@group(0) @binding(2) var<storage, read> kb_mu: array<vec4f>;
@group(0) @binding(3) var<storage, read> kb_s: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> kb_dmu: array<vec4f>;
@group(0) @binding(5) var<storage, read_write> kb_ds: array<vec4f>;

@compute @workgroup_size(WG)
fn kl_std_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pe.n) { return; }
  let g = g4(i);
  let s = kb_s[i];
  kb_dmu[i] = g * kb_mu[i];
  if (SIGMA == 1u) {
    kb_ds[i] = g * (s - 1.0 / s);
  } else {
    kb_ds[i] = 0.5 * g * (exp(s) - 1.0);
  }
}

// ---- KL(N(mu1, e^lv1) || N(mu2, e^lv2)) per element, with r = lv1 - lv2 and dm = mu1 - mu2:
//   (e^r - 1 - r + dm^2 e^-lv2) / 2
// (e^r rather than e^lv1 e^-lv2: equal Gaussians give exactly 0, and neither factor overflows).
//   d/dmu1 = g dm e^-lv2 = -d/dmu2,  d/dlv1 = g (e^r - 1) / 2,  d/dlv2 = g (1 - e^r - dm^2 e^-lv2) / 2
// The four gradients take two kernels: with g and four inputs, four outputs would need nine
// storage buffers (WebGPU guarantees eight). ----
@group(0) @binding(1) var<storage, read> kq_mu1: array<vec4f>;
@group(0) @binding(2) var<storage, read> kq_lv1: array<vec4f>;
@group(0) @binding(3) var<storage, read> kq_mu2: array<vec4f>;
@group(0) @binding(4) var<storage, read> kq_lv2: array<vec4f>;
@group(0) @binding(5) var<storage, read_write> kq_out: array<vec4f>;

@compute @workgroup_size(WG)
fn kl_diag(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pe.n) { return; }
  let r = kq_lv1[i] - kq_lv2[i];
  let dm = kq_mu1[i] - kq_mu2[i];
  kq_out[i] = 0.5 * (exp(r) - 1.0 - r + dm * dm * exp(-kq_lv2[i]));
}

@group(0) @binding(2) var<storage, read> km_mu1: array<vec4f>;
@group(0) @binding(3) var<storage, read> km_mu2: array<vec4f>;
@group(0) @binding(4) var<storage, read> km_lv2: array<vec4f>;
@group(0) @binding(5) var<storage, read_write> km_dmu1: array<vec4f>;
@group(0) @binding(6) var<storage, read_write> km_dmu2: array<vec4f>;

@compute @workgroup_size(WG)
fn kl_diag_dmu(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pe.n) { return; }
  let d = g4(i) * (km_mu1[i] - km_mu2[i]) * exp(-km_lv2[i]);
  km_dmu1[i] = d;
  km_dmu2[i] = -d;
}

@group(0) @binding(2) var<storage, read> kv_mu1: array<vec4f>;
@group(0) @binding(3) var<storage, read> kv_lv1: array<vec4f>;
@group(0) @binding(4) var<storage, read> kv_mu2: array<vec4f>;
@group(0) @binding(5) var<storage, read> kv_lv2: array<vec4f>;
@group(0) @binding(6) var<storage, read_write> kv_dlv1: array<vec4f>;
@group(0) @binding(7) var<storage, read_write> kv_dlv2: array<vec4f>;

@compute @workgroup_size(WG)
fn kl_diag_dlv(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pe.n) { return; }
  let g = g4(i);
  let er = exp(kv_lv1[i] - kv_lv2[i]);
  let dm = kv_mu1[i] - kv_mu2[i];
  kv_dlv1[i] = 0.5 * g * (er - 1.0);
  kv_dlv2[i] = 0.5 * g * (1.0 - er - dm * dm * exp(-kv_lv2[i]));
}

// ---- GM logits (Lr-LiVAE, vae-disentangle.md §3.1), z [B, D], mu and v = log sigma^2 [C, D]:
//   logits[b, c] = -1/2 sum_d ((z_bd - mu_cd)^2 e^-v_cd + v_cd)
// i.e. log N(z_b; mu_c, diag e^v_c) + (D/2) log 2 pi: the constants shared by every class (that
// and log p(c) = -log C) are left out, so softmax is unchanged and L_lkd = -logits[b, y_b].
// Each thread owns one output and loops over the reduced axis: no [B, C, D] intermediate.
//   dz[b, d]  = sum_c g[b, c] (mu_cd - z_bd) e^-v_cd
//   dmu[c, d] = sum_b g[b, c] (z_bd - mu_cd) e^-v_cd
//   dv[c, d]  = sum_b g[b, c] ((z_bd - mu_cd)^2 e^-v_cd - 1) / 2 ----
struct Gm { b: u32, c: u32, d: u32 }
@group(0) @binding(0) var<uniform> pgm: Gm;

@group(0) @binding(1) var<storage, read> gf_z: array<f32>;
@group(0) @binding(2) var<storage, read> gf_mu: array<f32>;
@group(0) @binding(3) var<storage, read> gf_v: array<f32>;
@group(0) @binding(4) var<storage, read_write> gf_out: array<f32>;

@compute @workgroup_size(WG)
fn gm_logits(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= pgm.b * pgm.c) { return; }
  let zo = (t / pgm.c) * pgm.d;
  let mo = (t % pgm.c) * pgm.d;
  var acc = 0.0;
  for (var d = 0u; d < pgm.d; d++) {
    let v = gf_v[mo + d];
    let u = gf_z[zo + d] - gf_mu[mo + d];
    acc += u * u * exp(-v) + v;
  }
  gf_out[t] = -0.5 * acc;
}

@group(0) @binding(2) var<storage, read> gz_z: array<f32>;
@group(0) @binding(3) var<storage, read> gz_mu: array<f32>;
@group(0) @binding(4) var<storage, read> gz_v: array<f32>;
@group(0) @binding(5) var<storage, read_write> gz_dz: array<f32>;

@compute @workgroup_size(WG)
fn gm_dz(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= pgm.b * pgm.d) { return; }
  let b = t / pgm.d;
  let d = t % pgm.d;
  let z = gz_z[t];
  var acc = 0.0;
  for (var c = 0u; c < pgm.c; c++) {
    let k = c * pgm.d + d;
    acc += eg[b * pgm.c + c] * (gz_mu[k] - z) * exp(-gz_v[k]);
  }
  gz_dz[t] = acc;
}

@group(0) @binding(2) var<storage, read> gp_z: array<f32>;
@group(0) @binding(3) var<storage, read> gp_mu: array<f32>;
@group(0) @binding(4) var<storage, read> gp_v: array<f32>;
@group(0) @binding(5) var<storage, read_write> gp_dmu: array<f32>;
@group(0) @binding(6) var<storage, read_write> gp_dv: array<f32>;

@compute @workgroup_size(WG)
fn gm_dparams(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= pgm.c * pgm.d) { return; }
  let c = t / pgm.d;
  let d = t % pgm.d;
  let mu = gp_mu[t];
  let p = exp(-gp_v[t]);
  var dmu = 0.0;
  var dv = 0.0;
  for (var b = 0u; b < pgm.b; b++) {
    let g = eg[b * pgm.c + c];
    let u = gp_z[b * pgm.d + d] - mu;
    dmu += g * u;
    dv += g * (u * u * p - 1.0);
  }
  gp_dmu[t] = dmu * p;
  gp_dv[t] = 0.5 * dv;
}

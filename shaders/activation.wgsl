// Activations: erf, abs, clamp and pow with a constant exponent (one elementwise kernel pair
// picked by OP), PReLU with a learnable slope per channel, and DisUnknown's self-normalising
// WN-PReLU (spec vae-disentangle.md 1.3): y = (prelu(x + beta; a) - m(a, beta)) / sd(a, beta),
// where m and sd are the mean and standard deviation of prelu(u + beta; a) for u ~ N(0, 1).
// Elementwise kernels take four elements per thread (vec4); a vec4 may straddle two channels,
// so the channel is found per lane. Per-channel sums are two barrier-free stages (as norm.wgsl).

override OP: u32 = 0u;

// ---- erf, from two fits made for this file (least squares on Chebyshev nodes, reweighted
// towards minimax, against mpmath; max errors measured in f32 Horner evaluation):
//   |x| < 1:  erf(x) = x P(x^2), P of degree 6           (|error| <= 1.3e-7, relative 2.1e-7)
//   x >= 1:   erfc(x) = t exp(-x^2 + Q(t)), t = 1 / (1 + x / 2), Q of degree 8 on [1, 9.5]
//             (erf = 1 - erfc within 6.8e-8; erfc relative 1.2e-5 at x = 9, the rounding of
//             -x^2 in f32, far better below x = 4).
// The tail form keeps erfc accurate relative to itself, so the normal tail Phi(-b) of large b
// is not 1 - erf rounded to zero.
fn erf_small(x: vec4f) -> vec4f {
  let s = x * x;
  var p = vec4f(7.889109110692516e-05);
  p = fma(p, s, vec4f(-0.0008020838140510023));
  p = fma(p, s, vec4f(0.005189535208046436));
  p = fma(p, s, vec4f(-0.026854444295167923));
  p = fma(p, s, vec4f(0.11283600330352783));
  p = fma(p, s, vec4f(-0.3761262595653534));
  p = fma(p, s, vec4f(1.1283791065216064));
  return x * p;
}

// erfc(x) for x >= 1 (any x is safe to pass: lanes that will not be selected are clamped).
fn erfc_tail(x0: vec4f) -> vec4f {
  let x = clamp(x0, vec4f(1.0), vec4f(10.0));
  let t = 1.0 / (1.0 + 0.5 * x);
  var q = vec4f(-0.23492680490016937);
  q = fma(q, t, vec4f(0.6254586577415466));
  q = fma(q, t, vec4f(-0.42208367586135864));
  q = fma(q, t, vec4f(-0.08911219984292984));
  q = fma(q, t, vec4f(-0.06110619008541107));
  q = fma(q, t, vec4f(0.06794314086437225));
  q = fma(q, t, vec4f(0.3785356283187866));
  q = fma(q, t, vec4f(0.9996082782745361));
  q = fma(q, t, vec4f(-1.2654948234558105));
  // Past 10, erfc is below f32's smallest normal: zero, not the polynomial extrapolated.
  return select(t * exp(fma(-x, x, q)), vec4f(0.0), x0 > vec4f(10.0));
}

fn erf4(x: vec4f) -> vec4f {
  let ax = abs(x);
  return select(sign(x) * (1.0 - erfc_tail(ax)), erf_small(x), ax < vec4f(1.0));
}

// erfc on the whole line: the tail on either side, 1 - erf in between.
fn erfc4(x: vec4f) -> vec4f {
  let ax = abs(x);
  let tail = erfc_tail(ax);
  return select(select(2.0 - tail, tail, x > vec4f(0.0)), 1.0 - erf_small(x), ax < vec4f(1.0));
}

const TWO_OVER_SQRT_PI: f32 = 1.1283791670955126;
const INV_SQRT_2: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;

// ---- elementwise: y = f(x), dx = g f'(x) for OP 0 erf, 1 abs, 2 clamp, 3 pow ----
// clamp: p0 = lo, p1 = hi. pow: p0 = exponent, kind = 0 any real exponent (x >= 0), 1 an even
// integer, 2 an odd integer (both defined for x < 0 through |x| and the sign).
struct Act { n: u32, p0: f32, p1: f32, kind: u32 }
@group(0) @binding(0) var<uniform> pa: Act;
@group(0) @binding(1) var<storage, read> act_x: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> act_y: array<vec4f>;

// x^n by squaring: exact signs and as accurate as repeated multiplication (pow is
// exp2(n log2 |x|) on most drivers, which misses even x^1 by an ulp).
fn powi4(x: vec4f, n: u32) -> vec4f {
  var r = vec4f(1.0);
  var b = x;
  var k = n;
  loop {
    if ((k & 1u) == 1u) { r *= b; }
    k = k >> 1u;
    if (k == 0u) { break; }
    b *= b;
  }
  return r;
}

// x^e; integer e (kind 1 even, 2 odd) up to 64 by squaring (1 / x^|e| for e < 0); otherwise
// pow, with 0^e set by hand (exp2(e log2 0) is NaN for e = 0) and the sign of odd powers.
fn pow4(x: vec4f, e: f32, kind: u32) -> vec4f {
  if (kind != 0u && abs(e) <= 64.0) {
    let y = powi4(x, u32(abs(e)));
    return select(y, 1.0 / y, e < 0.0);
  }
  let ax = abs(x);
  var y = pow(select(x, ax, kind != 0u), vec4f(e));
  // 1 / 0 at run time (a constant infinity is a WGSL compile error).
  let zero = ax * 0.0;
  let at0 = select(zero, 1.0 / zero, e < 0.0);
  y = select(y, at0, ax == vec4f(0.0));
  if (kind == 2u) { y = select(y, -y, x < vec4f(0.0)); }
  if (e == 0.0) { y = vec4f(1.0); }
  return y;
}

fn act_f(x: vec4f) -> vec4f {
  switch OP {
    case 0u: { return erf4(x); }
    case 1u: { return abs(x); }
    case 2u: { return clamp(x, vec4f(pa.p0), vec4f(pa.p1)); }
    default: { return pow4(x, pa.p0, pa.kind); }
  }
}

@compute @workgroup_size(WG)
fn act(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pa.n) { return; }
  act_y[i] = act_f(act_x[i]);
}

@group(0) @binding(1) var<storage, read> actb_x: array<vec4f>;
@group(0) @binding(2) var<storage, read> actb_g: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> actb_dx: array<vec4f>;

fn act_df(x: vec4f) -> vec4f {
  switch OP {
    case 0u: { return TWO_OVER_SQRT_PI * exp(-x * x); }
    case 1u: { return sign(x); }
    case 2u: {
      // Inside [lo, hi] (ends included, as PyTorch) the slope is 1; outside it is 0.
      let inside = x >= vec4f(pa.p0) & x <= vec4f(pa.p1);
      return select(vec4f(0.0), vec4f(1.0), inside);
    }
    default: {
      // d x^p = p x^(p-1); an integer exponent's parity flips.
      var kind = pa.kind;
      if (kind == 1u) { kind = 2u; } else if (kind == 2u) { kind = 1u; }
      return pa.p0 * pow4(x, pa.p0 - 1.0, kind);
    }
  }
}

@compute @workgroup_size(WG)
fn act_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pa.n) { return; }
  actb_dx[i] = actb_g[i] * act_df(actb_x[i]);
}

// ---- PReLU: y = x (x > 0), a x otherwise; a has one value per channel (ca = C) or one (ca = 1).
// Backward: dx = g (1 or a), and the per-channel terms x g over x < 0 whose sum is da. ----
struct Pr { n: u32, c: u32, inner: u32, ca: u32 }
@group(0) @binding(0) var<uniform> pr: Pr;
@group(0) @binding(1) var<storage, read> pr_x: array<vec4f>;
@group(0) @binding(2) var<storage, read> pr_a: array<f32>;
@group(0) @binding(3) var<storage, read_write> pr_y: array<vec4f>;

// The slopes of the four lanes of vec4 i (lanes past n read a valid slope; their results are
// padding).
fn slope4(i: u32) -> vec4f {
  // A plane of a multiple of 4 keeps each vec4 in one channel: one index, one load.
  if (pr.inner % 4u == 0u) { return vec4f(pr_a[((4u * i / pr.inner) % pr.c) % pr.ca]); }
  let e = vec4u(4u * i) + vec4u(0u, 1u, 2u, 3u);
  let k = ((e / pr.inner) % pr.c) % pr.ca;
  return vec4f(pr_a[k.x], pr_a[k.y], pr_a[k.z], pr_a[k.w]);
}

@compute @workgroup_size(WG)
fn prelu(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pr.n) { return; }
  let x = pr_x[i];
  pr_y[i] = select(slope4(i) * x, x, x > vec4f(0.0));
}

@group(0) @binding(3) var<storage, read> prb_g: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> prb_dx: array<vec4f>;
@group(0) @binding(5) var<storage, read_write> prb_xg: array<vec4f>;

@compute @workgroup_size(WG)
fn prelu_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= pr.n) { return; }
  let x = pr_x[i];
  let g = prb_g[i];
  let pos = x > vec4f(0.0);
  prb_dx[i] = g * select(slope4(i), vec4f(1.0), pos);
  prb_xg[i] = select(x * g, vec4f(0.0), pos);
}

// ---- WN-PReLU moments. With Phi, phi the standard normal cdf and pdf,
//   A = b Phi(-b) - phi(b) = E[v 1(v < 0)],  B = (1 + b^2) Phi(-b) - b phi(b) = E[v^2 1(v < 0)]
// for v = u + b, u ~ N(0, 1):
//   m = b + (a - 1) A,  E2 = 1 + b^2 + (a^2 - 1) B,
//   V = E2 - m^2 = 1 + (a^2 - 1) B - 2 b (a - 1) A - (a - 1)^2 A^2
// (the b^2 of E2 and m^2 cancel by hand, so V keeps its digits for large |b|), sd = sqrt(V).
// Derivatives: dA/db = Phi(-b), dB/db = 2 A, so
//   m_a = A, m_b = 1 + (a - 1) Phi(-b), V_a = 2 a B - 2 m A, V_b = 2 b + 2 (a^2 - 1) A - 2 m m_b,
//   sd_x = V_x / (2 sd).
// Per channel c the table wn[8c ..] holds m, sd, m_a, m_b, sd_a, sd_b, a, b. ----
struct Wn { n: u32, c: u32, s: u32, p: u32 }
@group(0) @binding(0) var<uniform> wn: Wn;
@group(0) @binding(1) var<storage, read> ws_a: array<f32>;
@group(0) @binding(2) var<storage, read> ws_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> ws_table: array<f32>;
@group(0) @binding(4) var<storage, read_write> ws_m: array<f32>;
@group(0) @binding(5) var<storage, read_write> ws_sd: array<f32>;

fn wn_moments_of(c: u32) {
  let a = ws_a[c];
  let b = ws_b[c];
  let cdf = 0.5 * erfc4(vec4f(b * INV_SQRT_2)).x; // Phi(-b)
  let pdf = INV_SQRT_2PI * exp(-0.5 * b * b);
  let A = b * cdf - pdf;
  let B = (1.0 + b * b) * cdf - b * pdf;
  let am1 = a - 1.0;
  let m = b + am1 * A;
  let v = max(1.0 + (a * a - 1.0) * B - 2.0 * b * am1 * A - am1 * am1 * A * A, 1e-12);
  let sd = sqrt(v);
  let mb = 1.0 + am1 * cdf;
  let va = 2.0 * a * B - 2.0 * m * A;
  let vb = 2.0 * b + 2.0 * (a * a - 1.0) * A - 2.0 * m * mb;
  let o = 8u * c;
  ws_table[o] = m;
  ws_table[o + 1u] = sd;
  ws_table[o + 2u] = A;
  ws_table[o + 3u] = mb;
  ws_table[o + 4u] = va / (2.0 * sd);
  ws_table[o + 5u] = vb / (2.0 * sd);
  ws_table[o + 6u] = a;
  ws_table[o + 7u] = b;
}

@compute @workgroup_size(WG)
fn wn_table(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let c = flat(gid, nwg);
  if (c >= wn.c) { return; }
  wn_moments_of(c);
}

// The same, also writing m and sd as tensors of their own (wnPreluMoments).
@compute @workgroup_size(WG)
fn wn_moments(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let c = flat(gid, nwg);
  if (c >= wn.c) { return; }
  wn_moments_of(c);
  ws_m[c] = ws_table[8u * c];
  ws_sd[c] = ws_table[8u * c + 1u];
}

// Backward of m (OP 0) or sd (OP 1): da = g m_a, db = g m_b (or sd's).
@group(0) @binding(1) var<storage, read> wm_table: array<f32>;
@group(0) @binding(2) var<storage, read> wm_g: array<f32>;
@group(0) @binding(3) var<storage, read_write> wm_da: array<f32>;
@group(0) @binding(4) var<storage, read_write> wm_db: array<f32>;

@compute @workgroup_size(WG)
fn wn_moments_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let c = flat(gid, nwg);
  if (c >= wn.c) { return; }
  let o = 8u * c + 2u + 2u * OP;
  wm_da[c] = wm_g[c] * wm_table[o];
  wm_db[c] = wm_g[c] * wm_table[o + 1u];
}

// ---- WN-PReLU applied: y = (prelu(x + b) - m) / sd per channel, x viewed as [N, C, S] ----
@group(0) @binding(1) var<storage, read> wa_x: array<vec4f>;
@group(0) @binding(2) var<storage, read> wa_table: array<f32>;
@group(0) @binding(3) var<storage, read_write> wa_y: array<vec4f>;

fn wn_lane(e: u32) -> u32 {
  return 8u * ((e / wn.s) % wn.c);
}

@compute @workgroup_size(WG)
fn wn_prelu(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i * 4u >= wn.n) { return; }
  let e = 4u * i;
  if (wn.s % 4u == 0u) {
    // The whole vec4 in one channel (as prelu's slope4).
    let o = wn_lane(e);
    let u = wa_x[i] + wa_table[o + 7u];
    let p = select(wa_table[o + 6u] * u, u, u > vec4f(0.0));
    wa_y[i] = (p - wa_table[o]) / wa_table[o + 1u];
    return;
  }
  let o = vec4u(wn_lane(e), wn_lane(e + 1u), wn_lane(e + 2u), wn_lane(e + 3u));
  let m = vec4f(wa_table[o.x], wa_table[o.y], wa_table[o.z], wa_table[o.w]);
  let sd = vec4f(wa_table[o.x + 1u], wa_table[o.y + 1u], wa_table[o.z + 1u], wa_table[o.w + 1u]);
  let a = vec4f(wa_table[o.x + 6u], wa_table[o.y + 6u], wa_table[o.z + 6u], wa_table[o.w + 6u]);
  let b = vec4f(wa_table[o.x + 7u], wa_table[o.y + 7u], wa_table[o.z + 7u], wa_table[o.w + 7u]);
  let u = wa_x[i] + b;
  wa_y[i] = (select(a * u, u, u > vec4f(0.0)) - m) / sd;
}

// ---- WN-PReLU backward, stage 1: P threads per channel each visit a strided slice of the
// channel's (n, s) elements, write dx = g prelu'(u) / sd there, and sum
//   (g, g y, g over u < 0, g u over u < 0)  into part[4 (c P + p) ..]. ----
@group(0) @binding(1) var<storage, read> wp_x: array<f32>;
@group(0) @binding(2) var<storage, read> wp_g: array<f32>;
@group(0) @binding(3) var<storage, read> wp_table: array<f32>;
@group(0) @binding(4) var<storage, read_write> wp_part: array<f32>;
@group(0) @binding(5) var<storage, read_write> wp_dx: array<f32>;

@compute @workgroup_size(WG)
fn wn_prelu_partial(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
) {
  let t = flat(gid, nwg);
  if (t >= wn.c * wn.p) { return; }
  let c = t / wn.p;
  let p = t % wn.p;
  let m = wp_table[8u * c];
  let inv = 1.0 / wp_table[8u * c + 1u];
  let a = wp_table[8u * c + 6u];
  let b = wp_table[8u * c + 7u];
  let batch = wn.n / (wn.c * wn.s);
  // (n, s) advance by P with running counters: no division per element.
  let dn = wn.p / wn.s;
  let ds = wn.p % wn.s;
  var n = p / wn.s;
  var s = p % wn.s;
  var sg = 0.0;
  var sgy = 0.0;
  var sneg = 0.0;
  var snegu = 0.0;
  loop {
    if (n >= batch) { break; }
    let i = (n * wn.c + c) * wn.s + s;
    let g = wp_g[i];
    let u = wp_x[i] + b;
    let neg = u <= 0.0;
    let y = (select(u, a * u, neg) - m) * inv;
    sg += g;
    sgy += g * y;
    sneg += select(0.0, g, neg);
    snegu += select(0.0, g * u, neg);
    wp_dx[i] = g * select(1.0, a, neg) * inv;
    n += dn;
    s += ds;
    if (s >= wn.s) { s -= wn.s; n += 1u; }
  }
  let o = 4u * t;
  wp_part[o] = sg;
  wp_part[o + 1u] = sgy;
  wp_part[o + 2u] = sneg;
  wp_part[o + 3u] = snegu;
}

// Stage 2, one thread per channel:
//   db = (sum g prelu'(u) - m_b sum g - sd_b sum g y) / sd,  sum g prelu'(u) = sum g - (1 - a) sum_neg g
//   da = (sum_neg g u - m_a sum g - sd_a sum g y) / sd
@group(0) @binding(1) var<storage, read> wf_part: array<f32>;
@group(0) @binding(2) var<storage, read> wf_table: array<f32>;
@group(0) @binding(3) var<storage, read_write> wf_da: array<f32>;
@group(0) @binding(4) var<storage, read_write> wf_db: array<f32>;

@compute @workgroup_size(WG)
fn wn_prelu_finish(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let c = flat(gid, nwg);
  if (c >= wn.c) { return; }
  var s = vec4f(0.0);
  for (var p = 0u; p < wn.p; p++) {
    let o = 4u * (c * wn.p + p);
    s += vec4f(wf_part[o], wf_part[o + 1u], wf_part[o + 2u], wf_part[o + 3u]);
  }
  let o = 8u * c;
  let inv = 1.0 / wf_table[o + 1u];
  let a = wf_table[o + 6u];
  wf_da[c] = (s.w - wf_table[o + 2u] * s.x - wf_table[o + 4u] * s.y) * inv;
  wf_db[c] = (s.x - (1.0 - a) * s.z - wf_table[o + 3u] * s.x - wf_table[o + 5u] * s.y) * inv;
}

// 2-D convolution, NCHW, cross-correlation as in every deep-learning framework:
//   y[n, o, oy, ox] = b[o] + sum_{c, ky, kx} x[n, c, oy*S + ky - p, ox*S + kx - p] w[o, c, ky, kx]
//
// Every pass reads zero-padded copies made by `pad`, so inner loops have no bounds checks and
// rows start on vec4 boundaries:
// - conv3x3 / conv1x1 / conv compute a stride-S correlation of a padded source with a packed
//   kernel [I, KH, KW, Jp] (Jp = J rounded up to the channel block). The forward pass is
//   conv(pad(x), pack(w)); the data gradient is, per output phase (dx rows/columns = r mod S),
//   conv(pad(g), flipped sub-kernel of the taps that reach that phase), stored with stride S:
//   a gather, no atomics.
// - wgrad3x3 / wgrad1x1 / wgrad sum g * x over a chunk of output rows per invocation (split-K);
//   the host adds the chunks with reduceABC.
//
// Performance notes. lavapipe (Mesa's CPU Vulkan driver) runs 8 invocations as one SIMD group,
// and loads every storage-buffer value through a per-invocation scalar loop: one loaded float
// costs some 25-40 multiply-adds (measured), whether or not the address is uniform. So each
// invocation owns a large register block (mat4x4f accumulators of 4 channels x 4 columns) and
// reuses every loaded value many times, and the hot shapes (3x3 and 1x1 at stride 1) are unrolled
// by hand: a private array indexed by a loop counter that does not unroll stays in memory. No
// workgroup memory and no barriers. On GPUs the same blocking gives vec4 loads along rows, and
// the kernel (or g) index is uniform across a workgroup.

override KH: u32 = 3u;
override KW: u32 = 3u;
override S: u32 = 1u;

// ---- pad: dst[n, c, yy, xx] = src[n, c, yy - oy, xx - ox], zero outside src or for c >= Cs ----
struct Pad { total4: u32, cs: u32, cd: u32, h: u32, w: u32, hs: u32, ws: u32, oy: u32, ox: u32 }
@group(0) @binding(0) var<uniform> pd: Pad;
@group(0) @binding(1) var<storage, read> pad_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> pad_dst: array<vec4f>;

@compute @workgroup_size(WG)
fn pad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= pd.total4) { return; }
  let e = i * 4u; // ws is a multiple of 4, so the 4 values share a row
  let xx = e % pd.ws;
  let rest = e / pd.ws;
  let yy = rest % pd.hs;
  let plane = rest / pd.hs;
  let c = plane % pd.cd;
  let n = plane / pd.cd;
  // Offsets may be negative (a crop): they arrive as two's-complement u32.
  let sy = i32(yy) - bitcast<i32>(pd.oy);
  let sx0 = i32(xx) - bitcast<i32>(pd.ox);
  let row_ok = c < pd.cs && sy >= 0 && sy < i32(pd.h);
  let base = ((n * pd.cs + c) * pd.h + u32(max(sy, 0))) * pd.w;
  var v = vec4f(0.0);
  for (var j = 0; j < 4; j++) {
    let sx = sx0 + j;
    if (row_ok && sx >= 0 && sx < i32(pd.w)) { v[j] = pad_src[base + u32(sx)]; }
  }
  pad_dst[i] = v;
}

// ---- pack: kp[i, u, v, j] = w[o, c, ay + sy*u, ax + sx*v], (o, c) = (j, i) or (i, j) if trans;
// zero for j >= J. Forward: i = c, j = o, a = 0, s = 1. Data gradient: i = o, j = c and a
// flipped, strided sub-kernel.
struct Pack {
  total: u32, jp: u32, j: u32, khp: u32, kwp: u32, c: u32, kh: u32, kw: u32,
  trans: u32, ay: u32, sy: u32, ax: u32, sx: u32,
}
@group(0) @binding(0) var<uniform> pk: Pack;
@group(0) @binding(1) var<storage, read> pack_w: array<f32>;
@group(0) @binding(2) var<storage, read_write> pack_out: array<f32>;

@compute @workgroup_size(WG)
fn pack(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = flat(gid, nwg);
  if (t >= pk.total) { return; }
  let j = t % pk.jp;
  let r0 = t / pk.jp;
  let v = r0 % pk.kwp;
  let r1 = r0 / pk.kwp;
  let u = r1 % pk.khp;
  let i = r1 / pk.khp;
  var val = 0.0;
  if (j < pk.j) {
    let o = select(j, i, pk.trans == 1u);
    let c = select(i, j, pk.trans == 1u);
    let ky = u32(bitcast<i32>(pk.ay) + bitcast<i32>(pk.sy) * i32(u));
    let kx = u32(bitcast<i32>(pk.ax) + bitcast<i32>(pk.sx) * i32(v));
    val = pack_w[((o * pk.c + c) * pk.kh + ky) * pk.kw + kx];
  }
  pack_out[t] = val;
}

// ---- forward-style correlation: out[n, j, y*so + oy, x*so + ox] = (bias[j] if cv.bias) +
// sum_{i, ky, kx} src[n, i, y*S + ky, x*S + kx] * kp[i, ky, kx, j], for y < ho, x < wo.
struct Conv {
  ci: u32, hs: u32, ws4: u32, jp4: u32, ho: u32, wo: u32, wq: u32, lanes: u32,
  co: u32, hot: u32, wot: u32, so: u32, oy: u32, ox: u32, bias: u32,
}
@group(0) @binding(0) var<uniform> cv: Conv;
@group(0) @binding(1) var<storage, read> cv_src: array<vec4f>;
@group(0) @binding(2) var<storage, read> cv_k: array<vec4f>;
@group(0) @binding(3) var<storage, read> cv_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> cv_out: array<f32>;

// Invocation index: workgroup x is the channel block (neighbouring workgroups share an input tile
// in cache), y and z the blocks of output pixels.
fn lane(wid: vec3u, lid: u32, nwg: vec3u) -> u32 {
  return (wid.y + wid.z * nwg.y) * WG + lid;
}

// Column k: channel k of the block; row j: column j of the 4 x values.
fn outer(w: vec4f, x: vec4f) -> mat4x4f {
  return mat4x4f(x * w.x, x * w.y, x * w.z, x * w.w);
}

// Store a 4-channel x 4-column block at output row y, columns x0..x0+3 (clipped).
fn store4x4(acc: mat4x4f, n: u32, o0: u32, y: u32, x0: u32) {
  if (y >= cv.ho) { return; }
  for (var k = 0u; k < 4u; k++) {
    let o = o0 + k;
    if (o >= cv.co) { return; }
    let b = select(0.0, cv_bias[o], cv.bias == 1u);
    let base = ((n * cv.co + o) * cv.hot + y * cv.so + cv.oy) * cv.wot + cv.ox;
    for (var j = 0u; j < 4u; j++) {
      if (x0 + j < cv.wo) { cv_out[base + (x0 + j) * cv.so] = acc[k][j] + b; }
    }
  }
}

// acc + one kernel row (taps w0, w1, w2) applied at 4 columns starting at a.x, where a, b are 8
// consecutive input values.
fn row3(acc: mat4x4f, w0: vec4f, w1: vec4f, w2: vec4f, a: vec4f, b: vec4f) -> mat4x4f {
  let s1 = vec4f(a.yzw, b.x);
  let s2 = vec4f(a.zw, b.xy);
  return acc + mat4x4f(
    a * w0.x + s1 * w1.x + s2 * w2.x,
    a * w0.y + s1 * w1.y + s2 * w2.y,
    a * w0.z + s1 * w1.z + s2 * w2.z,
    a * w0.w + s1 * w1.w + s2 * w2.w,
  );
}

// One input channel of conv3x3: 4 input rows x 12 values from vec4 index p, against the 3x3
// taps w.. of 4 channels, into the accumulators of 2 rows x 8 columns.
fn step3x3(
  a00: ptr<function, mat4x4f>, a01: ptr<function, mat4x4f>,
  a10: ptr<function, mat4x4f>, a11: ptr<function, mat4x4f>, p0: u32,
  w00: vec4f, w01: vec4f, w02: vec4f, w10: vec4f, w11: vec4f, w12: vec4f,
  w20: vec4f, w21: vec4f, w22: vec4f,
) {
  let ws4 = cv.ws4;
  // Input row y0 feeds output row y0; rows y0+1 and y0+2 feed both; row y0+3 feeds y0+1.
  var p = p0;
  var a = cv_src[p];
  var b = cv_src[p + 1u];
  var c = cv_src[p + 2u];
  *a00 = row3(*a00, w00, w01, w02, a, b);
  *a01 = row3(*a01, w00, w01, w02, b, c);
  p += ws4;
  a = cv_src[p];
  b = cv_src[p + 1u];
  c = cv_src[p + 2u];
  *a00 = row3(*a00, w10, w11, w12, a, b);
  *a01 = row3(*a01, w10, w11, w12, b, c);
  *a10 = row3(*a10, w00, w01, w02, a, b);
  *a11 = row3(*a11, w00, w01, w02, b, c);
  p += ws4;
  a = cv_src[p];
  b = cv_src[p + 1u];
  c = cv_src[p + 2u];
  *a00 = row3(*a00, w20, w21, w22, a, b);
  *a01 = row3(*a01, w20, w21, w22, b, c);
  *a10 = row3(*a10, w10, w11, w12, a, b);
  *a11 = row3(*a11, w10, w11, w12, b, c);
  p += ws4;
  a = cv_src[p];
  b = cv_src[p + 1u];
  c = cv_src[p + 2u];
  *a10 = row3(*a10, w20, w21, w22, a, b);
  *a11 = row3(*a11, w20, w21, w22, b, c);
}

// 3x3, stride 1. One invocation: 4 channels x 2 rows x 8 columns. Per input channel it loads
// 4 rows x 12 values and 9 kernel vec4s for 576 multiply-adds.
@compute @workgroup_size(WG)
fn conv3x3(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_index) lid: u32,
  @builtin(num_workgroups) nwg: vec3u,
) {
  let t = lane(wid, lid, nwg);
  if (t >= cv.lanes) { return; }
  let o0 = wid.x * 4u;
  let hq = (cv.ho + 1u) / 2u;
  let q = t % cv.wq;
  let r = t / cv.wq;
  let y0 = (r % hq) * 2u;
  let n = r / hq;
  var a00 = mat4x4f(); // output row y0, columns 0..3 of the 8
  var a01 = mat4x4f(); // row y0, columns 4..7
  var a10 = mat4x4f(); // row y0 + 1
  var a11 = mat4x4f();
  let ws4 = cv.ws4;
  let jp4 = cv.jp4;
  for (var i = 0u; i < cv.ci; i++) {
    let tb = i * 9u * jp4 + o0 / 4u;
    let p = ((n * cv.ci + i) * cv.hs + y0) * ws4 + q * 2u;
    step3x3(&a00, &a01, &a10, &a11, p, cv_k[tb], cv_k[tb + jp4], cv_k[tb + 2u * jp4],
      cv_k[tb + 3u * jp4], cv_k[tb + 4u * jp4], cv_k[tb + 5u * jp4], cv_k[tb + 6u * jp4],
      cv_k[tb + 7u * jp4], cv_k[tb + 8u * jp4]);
  }
  let x0 = q * 8u;
  store4x4(a00, n, o0, y0, x0);
  store4x4(a01, n, o0, y0, x0 + 4u);
  store4x4(a10, n, o0, y0 + 1u, x0);
  store4x4(a11, n, o0, y0 + 1u, x0 + 4u);
}

// 4 channels (w) x 16 columns (x0..x3) of conv1x1.
fn mac4(
  a0: ptr<function, mat4x4f>, a1: ptr<function, mat4x4f>,
  a2: ptr<function, mat4x4f>, a3: ptr<function, mat4x4f>,
  w: vec4f, x0: vec4f, x1: vec4f, x2: vec4f, x3: vec4f,
) {
  *a0 += outer(w, x0);
  *a1 += outer(w, x1);
  *a2 += outer(w, x2);
  *a3 += outer(w, x3);
}

// 1x1, stride 1 (a batched matrix product). One invocation: 16 channels x 16 columns; per input
// channel 4 kernel vec4s and 4 input vec4s for 256 multiply-adds. Accumulator aK_X: channels
// o0 + 4K.., columns 4X...
@compute @workgroup_size(WG)
fn conv1x1(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_index) lid: u32,
  @builtin(num_workgroups) nwg: vec3u,
) {
  let t = lane(wid, lid, nwg);
  if (t >= cv.lanes) { return; }
  let o0 = wid.x * 16u;
  let q = t % cv.wq;
  let r = t / cv.wq;
  let y = r % cv.ho;
  let n = r / cv.ho;
  var a0_0 = mat4x4f(); var a0_1 = mat4x4f(); var a0_2 = mat4x4f(); var a0_3 = mat4x4f();
  var a1_0 = mat4x4f(); var a1_1 = mat4x4f(); var a1_2 = mat4x4f(); var a1_3 = mat4x4f();
  var a2_0 = mat4x4f(); var a2_1 = mat4x4f(); var a2_2 = mat4x4f(); var a2_3 = mat4x4f();
  var a3_0 = mat4x4f(); var a3_1 = mat4x4f(); var a3_2 = mat4x4f(); var a3_3 = mat4x4f();
  let plane = cv.hs * cv.ws4;
  var p = (n * cv.ci * cv.hs + y) * cv.ws4 + q * 4u;
  var k = o0 / 4u;
  for (var i = 0u; i < cv.ci; i++) {
    let w0 = cv_k[k];
    let w1 = cv_k[k + 1u];
    let w2 = cv_k[k + 2u];
    let w3 = cv_k[k + 3u];
    let x0 = cv_src[p];
    let x1 = cv_src[p + 1u];
    let x2 = cv_src[p + 2u];
    let x3 = cv_src[p + 3u];
    mac4(&a0_0, &a0_1, &a0_2, &a0_3, w0, x0, x1, x2, x3);
    mac4(&a1_0, &a1_1, &a1_2, &a1_3, w1, x0, x1, x2, x3);
    mac4(&a2_0, &a2_1, &a2_2, &a2_3, w2, x0, x1, x2, x3);
    mac4(&a3_0, &a3_1, &a3_2, &a3_3, w3, x0, x1, x2, x3);
    p += plane;
    k += cv.jp4;
  }
  let x0 = q * 16u;
  store4x4(a0_0, n, o0 + 0u, y, x0 + 0u);
  store4x4(a0_1, n, o0 + 0u, y, x0 + 4u);
  store4x4(a0_2, n, o0 + 0u, y, x0 + 8u);
  store4x4(a0_3, n, o0 + 0u, y, x0 + 12u);
  store4x4(a1_0, n, o0 + 4u, y, x0 + 0u);
  store4x4(a1_1, n, o0 + 4u, y, x0 + 4u);
  store4x4(a1_2, n, o0 + 4u, y, x0 + 8u);
  store4x4(a1_3, n, o0 + 4u, y, x0 + 12u);
  store4x4(a2_0, n, o0 + 8u, y, x0 + 0u);
  store4x4(a2_1, n, o0 + 8u, y, x0 + 4u);
  store4x4(a2_2, n, o0 + 8u, y, x0 + 8u);
  store4x4(a2_3, n, o0 + 8u, y, x0 + 12u);
  store4x4(a3_0, n, o0 + 12u, y, x0 + 0u);
  store4x4(a3_1, n, o0 + 12u, y, x0 + 4u);
  store4x4(a3_2, n, o0 + 12u, y, x0 + 8u);
  store4x4(a3_3, n, o0 + 12u, y, x0 + 12u);
}

// Any kernel size and stride (the fallback). One invocation: 4 channels x 8 columns. Taps go in
// chunks of TW <= 4 along a kernel row: the 8 columns read 7*S + TW input values for them
// (loaded once into an array indexed only by constants once the loops over overrides unroll,
// so it can live in registers), against TW kernel vec4s, for 32*TW multiply-adds.
@group(0) @binding(1) var<storage, read> cg_src: array<f32>;

// Taps per chunk, and the input values the 8 columns read for them.
override TW: u32 = min(KW, 4u);
override NE: u32 = 7u * S + TW;

// The 4 values that output columns j0..j0+3 read through tap t of the chunk.
fn taps4(e: ptr<function, array<f32, 18>>, t: u32, j0: u32) -> vec4f {
  let b = t + j0 * S;
  return vec4f((*e)[b], (*e)[b + S], (*e)[b + 2u * S], (*e)[b + 3u * S]);
}

@compute @workgroup_size(WG)
fn conv(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_index) lid: u32,
  @builtin(num_workgroups) nwg: vec3u,
) {
  let t = lane(wid, lid, nwg);
  if (t >= cv.lanes) { return; }
  let o0 = wid.x * 4u;
  let q = t % cv.wq;
  let r = t / cv.wq;
  let y = r % cv.ho;
  let n = r / cv.ho;
  var lo = mat4x4f();
  var hi = mat4x4f();
  let ws = cv.ws4 * 4u;
  for (var i = 0u; i < cv.ci; i++) {
    for (var ky = 0u; ky < KH; ky++) {
      let row = ((n * cv.ci + i) * cv.hs + y * S + ky) * ws + q * 8u * S;
      for (var kx = 0u; kx < KW; kx += TW) {
        var e: array<f32, 18>;
        let p = row + kx;
        if (0u < NE) { e[0] = cg_src[p + 0u]; }
        if (1u < NE) { e[1] = cg_src[p + 1u]; }
        if (2u < NE) { e[2] = cg_src[p + 2u]; }
        if (3u < NE) { e[3] = cg_src[p + 3u]; }
        if (4u < NE) { e[4] = cg_src[p + 4u]; }
        if (5u < NE) { e[5] = cg_src[p + 5u]; }
        if (6u < NE) { e[6] = cg_src[p + 6u]; }
        if (7u < NE) { e[7] = cg_src[p + 7u]; }
        if (8u < NE) { e[8] = cg_src[p + 8u]; }
        if (9u < NE) { e[9] = cg_src[p + 9u]; }
        if (10u < NE) { e[10] = cg_src[p + 10u]; }
        if (11u < NE) { e[11] = cg_src[p + 11u]; }
        if (12u < NE) { e[12] = cg_src[p + 12u]; }
        if (13u < NE) { e[13] = cg_src[p + 13u]; }
        if (14u < NE) { e[14] = cg_src[p + 14u]; }
        if (15u < NE) { e[15] = cg_src[p + 15u]; }
        if (16u < NE) { e[16] = cg_src[p + 16u]; }
        if (17u < NE) { e[17] = cg_src[p + 17u]; }
        // Taps past the kernel row's end get zero weights (their index is clamped in range).
        let k = ((i * KH + ky) * KW + kx) * cv.jp4 + o0 / 4u;
        let last = ((i * KH + ky) * KW + KW - 1u) * cv.jp4 + o0 / 4u;
        var w = cv_k[k];
        lo += outer(w, taps4(&e, 0u, 0u));
        hi += outer(w, taps4(&e, 0u, 4u));
        for (var t = 1u; t < TW; t++) {
          w = select(vec4f(), cv_k[min(k + t * cv.jp4, last)], kx + t < KW);
          lo += outer(w, taps4(&e, t, 0u));
          hi += outer(w, taps4(&e, t, 4u));
        }
      }
    }
  }
  store4x4(lo, n, o0, y, q * 8u);
  store4x4(hi, n, o0, y, q * 8u + 4u);
}

// ---- weight gradient, split-K: part[p, o, c, ky, kx] = sum over output rows r in chunk p
// (workgroup y; r = n*ho + y) and columns x of g[n, o, y, x] * src[n, c, y*S + ky, x*S + kx].
// g is padded to gp channels (a multiple of the channel block) and gw4 vec4s per row (zeros),
// src to cs channels.
struct Wgrad {
  ci: u32, cs: u32, hs: u32, ws4: u32, gp: u32, ho: u32, gw4: u32, wq: u32,
  rows: u32, rpc: u32, lanes: u32, co: u32,
}
@group(0) @binding(0) var<uniform> wg: Wgrad;
@group(0) @binding(1) var<storage, read> wg_src: array<vec4f>;
@group(0) @binding(2) var<storage, read> wg_g: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> wg_part: array<f32>;

// The 4x4 block of g at channels o..o+3 (columns of the matrix), vec4 column index q.
fn gblock(o: u32, n: u32, y: u32, q: u32) -> mat4x4f {
  let plane = wg.ho * wg.gw4;
  let p = ((n * wg.gp + o) * wg.ho + y) * wg.gw4 + q;
  return mat4x4f(wg_g[p], wg_g[p + plane], wg_g[p + 2u * plane], wg_g[p + 3u * plane]);
}

// 4 consecutive channel planes of src (columns of the matrix) at vec4 index s.
fn xblock(s: u32, plane: u32) -> mat4x4f {
  return mat4x4f(wg_src[s], wg_src[s + plane], wg_src[s + 2u * plane], wg_src[s + 3u * plane]);
}

// Store the gradients of 4 channels o0..o0+3 for one (c, tap) from a vec4 over those channels.
fn store_wgrad(v: vec4f, p: u32, o0: u32, c: u32, tap: u32, taps: u32) {
  for (var k = 0u; k < 4u; k++) {
    let o = o0 + k;
    if (o < wg.co && c < wg.ci) { wg_part[((p * wg.co + o) * wg.ci + c) * taps + tap] = v[k]; }
  }
}

// One kernel row of wgrad3x3: src values at s.. (12 of them) against g blocks of channels a
// (ga0: columns 0..3, ga1: 4..7) and b, into the accumulators of taps kx = 0, 1, 2.
fn wgrad_row3(
  a0: ptr<function, vec4f>, a1: ptr<function, vec4f>, a2: ptr<function, vec4f>,
  b0: ptr<function, vec4f>, b1: ptr<function, vec4f>, b2: ptr<function, vec4f>,
  ga0: mat4x4f, ga1: mat4x4f, gb0: mat4x4f, gb1: mat4x4f, s: u32,
) {
  let u = wg_src[s];
  let v = wg_src[s + 1u];
  let w = wg_src[s + 2u];
  // The 8 src values under tap kx: u|v shifted by kx (columns 0..3) and v|w (4..7).
  let l1 = vec4f(u.yzw, v.x);
  let l2 = vec4f(u.zw, v.xy);
  let h1 = vec4f(v.yzw, w.x);
  let h2 = vec4f(v.zw, w.xy);
  *a0 += u * ga0 + v * ga1;
  *a1 += l1 * ga0 + h1 * ga1;
  *a2 += l2 * ga0 + h2 * ga1;
  *b0 += u * gb0 + v * gb1;
  *b1 += l1 * gb0 + h1 * gb1;
  *b2 += l2 * gb0 + h2 * gb1;
}

// 3x3, stride 1. One invocation: 8 channels o x one input channel c x 9 taps, stepping 8 columns:
// per step 16 vec4s of g and 3 rows x 3 vec4s of src for 576 multiply-adds. (x * G, a row vector
// times a g block, gives per channel the dot product of 4 src values with its 4 g values.)
@compute @workgroup_size(WG)
fn wgrad3x3(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x * WG + lid;
  if (t >= wg.lanes) { return; }
  let c = t % wg.ci;
  let o0 = (t / wg.ci) * 8u;
  let p = wid.y;
  // Accumulators: channels o0..o0+3 (a) and o0+4..o0+7 (b), tap ky*3 + kx.
  var a0 = vec4f(); var a1 = vec4f(); var a2 = vec4f(); var a3 = vec4f(); var a4 = vec4f();
  var a5 = vec4f(); var a6 = vec4f(); var a7 = vec4f(); var a8 = vec4f();
  var b0 = vec4f(); var b1 = vec4f(); var b2 = vec4f(); var b3 = vec4f(); var b4 = vec4f();
  var b5 = vec4f(); var b6 = vec4f(); var b7 = vec4f(); var b8 = vec4f();
  let r_end = min(wg.rows, (p + 1u) * wg.rpc);
  for (var r = p * wg.rpc; r < r_end; r++) {
    let n = r / wg.ho;
    let y = r % wg.ho;
    let row = ((n * wg.cs + c) * wg.hs + y) * wg.ws4;
    for (var q = 0u; q < wg.wq; q++) {
      // g: channels (a, b) x columns (0..3, 4..7) of this step.
      let ga0 = gblock(o0, n, y, 2u * q);
      let ga1 = gblock(o0, n, y, 2u * q + 1u);
      let gb0 = gblock(o0 + 4u, n, y, 2u * q);
      let gb1 = gblock(o0 + 4u, n, y, 2u * q + 1u);
      let s = row + 2u * q;
      wgrad_row3(&a0, &a1, &a2, &b0, &b1, &b2, ga0, ga1, gb0, gb1, s);
      wgrad_row3(&a3, &a4, &a5, &b3, &b4, &b5, ga0, ga1, gb0, gb1, s + wg.ws4);
      wgrad_row3(&a6, &a7, &a8, &b6, &b7, &b8, ga0, ga1, gb0, gb1, s + 2u * wg.ws4);
    }
  }
  store_wgrad(a0, p, o0, c, 0u, 9u);
  store_wgrad(a1, p, o0, c, 1u, 9u);
  store_wgrad(a2, p, o0, c, 2u, 9u);
  store_wgrad(a3, p, o0, c, 3u, 9u);
  store_wgrad(a4, p, o0, c, 4u, 9u);
  store_wgrad(a5, p, o0, c, 5u, 9u);
  store_wgrad(a6, p, o0, c, 6u, 9u);
  store_wgrad(a7, p, o0, c, 7u, 9u);
  store_wgrad(a8, p, o0, c, 8u, 9u);
  store_wgrad(b0, p, o0 + 4u, c, 0u, 9u);
  store_wgrad(b1, p, o0 + 4u, c, 1u, 9u);
  store_wgrad(b2, p, o0 + 4u, c, 2u, 9u);
  store_wgrad(b3, p, o0 + 4u, c, 3u, 9u);
  store_wgrad(b4, p, o0 + 4u, c, 4u, 9u);
  store_wgrad(b5, p, o0 + 4u, c, 5u, 9u);
  store_wgrad(b6, p, o0 + 4u, c, 6u, 9u);
  store_wgrad(b7, p, o0 + 4u, c, 7u, 9u);
  store_wgrad(b8, p, o0 + 4u, c, 8u, 9u);
}

// 1x1, stride 1. One invocation: 16 channels o x 16 channels c, stepping 4 columns: per step 16
// vec4s of g and 16 of src for 1024 multiply-adds. A workgroup is 8 x 8 such blocks, so one step
// of it touches 8 + 8 groups of 16 channel planes (the cache holds them). src has cs = c rounded
// up to 16 channels (zeros). Accumulator aK_M: column k holds the gradients of channel
// c0 + 4M + k for channels o0 + 4K...
@compute @workgroup_size(WG)
fn wgrad1x1(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x * WG + lid;
  if (t >= wg.lanes) { return; }
  let c0 = (t % (wg.cs / 16u)) * 16u;
  let o0 = (t / (wg.cs / 16u)) * 16u;
  let p = wid.y;
  var a0_0 = mat4x4f(); var a0_1 = mat4x4f(); var a0_2 = mat4x4f(); var a0_3 = mat4x4f();
  var a1_0 = mat4x4f(); var a1_1 = mat4x4f(); var a1_2 = mat4x4f(); var a1_3 = mat4x4f();
  var a2_0 = mat4x4f(); var a2_1 = mat4x4f(); var a2_2 = mat4x4f(); var a2_3 = mat4x4f();
  var a3_0 = mat4x4f(); var a3_1 = mat4x4f(); var a3_2 = mat4x4f(); var a3_3 = mat4x4f();
  let plane = wg.hs * wg.ws4;
  let r_end = min(wg.rows, (p + 1u) * wg.rpc);
  for (var r = p * wg.rpc; r < r_end; r++) {
    let n = r / wg.ho;
    let y = r % wg.ho;
    let row = ((n * wg.cs + c0) * wg.hs + y) * wg.ws4;
    for (var q = 0u; q < wg.wq; q++) {
      // transpose(g block) * (x block): entry (o, c) = dot over the 4 columns.
      let g0 = transpose(gblock(o0, n, y, q));
      let g1 = transpose(gblock(o0 + 4u, n, y, q));
      let g2 = transpose(gblock(o0 + 8u, n, y, q));
      let g3 = transpose(gblock(o0 + 12u, n, y, q));
      let x0 = xblock(row + q, plane);
      let x1 = xblock(row + q + 4u * plane, plane);
      let x2 = xblock(row + q + 8u * plane, plane);
      let x3 = xblock(row + q + 12u * plane, plane);
      a0_0 += g0 * x0;
      a0_1 += g0 * x1;
      a0_2 += g0 * x2;
      a0_3 += g0 * x3;
      a1_0 += g1 * x0;
      a1_1 += g1 * x1;
      a1_2 += g1 * x2;
      a1_3 += g1 * x3;
      a2_0 += g2 * x0;
      a2_1 += g2 * x1;
      a2_2 += g2 * x2;
      a2_3 += g2 * x3;
      a3_0 += g3 * x0;
      a3_1 += g3 * x1;
      a3_2 += g3 * x2;
      a3_3 += g3 * x3;
    }
  }
  for (var k = 0u; k < 4u; k++) {
    store_wgrad(a0_0[k], p, o0 + 0u, c0 + 0u + k, 0u, 1u);
    store_wgrad(a0_1[k], p, o0 + 0u, c0 + 4u + k, 0u, 1u);
    store_wgrad(a0_2[k], p, o0 + 0u, c0 + 8u + k, 0u, 1u);
    store_wgrad(a0_3[k], p, o0 + 0u, c0 + 12u + k, 0u, 1u);
    store_wgrad(a1_0[k], p, o0 + 4u, c0 + 0u + k, 0u, 1u);
    store_wgrad(a1_1[k], p, o0 + 4u, c0 + 4u + k, 0u, 1u);
    store_wgrad(a1_2[k], p, o0 + 4u, c0 + 8u + k, 0u, 1u);
    store_wgrad(a1_3[k], p, o0 + 4u, c0 + 12u + k, 0u, 1u);
    store_wgrad(a2_0[k], p, o0 + 8u, c0 + 0u + k, 0u, 1u);
    store_wgrad(a2_1[k], p, o0 + 8u, c0 + 4u + k, 0u, 1u);
    store_wgrad(a2_2[k], p, o0 + 8u, c0 + 8u + k, 0u, 1u);
    store_wgrad(a2_3[k], p, o0 + 8u, c0 + 12u + k, 0u, 1u);
    store_wgrad(a3_0[k], p, o0 + 12u, c0 + 0u + k, 0u, 1u);
    store_wgrad(a3_1[k], p, o0 + 12u, c0 + 4u + k, 0u, 1u);
    store_wgrad(a3_2[k], p, o0 + 12u, c0 + 8u + k, 0u, 1u);
    store_wgrad(a3_3[k], p, o0 + 12u, c0 + 12u + k, 0u, 1u);
  }
}

// Any kernel size and stride (the fallback). One invocation: 8 channels o x one (c, ky) x a chunk
// of TW taps kx, stepping 4 columns: 8 vec4s of g and 3*S + TW src values for 32*TW
// multiply-adds. (Arrays here are indexed only by constants once the loops over overrides
// unroll.)
@group(0) @binding(1) var<storage, read> wgs_src: array<f32>;

@compute @workgroup_size(WG)
fn wgrad(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x * WG + lid;
  if (t >= wg.lanes) { return; }
  let chunks = (KW + TW - 1u) / TW;
  let kx0 = (t % chunks) * TW;
  let ky = (t / chunks) % KH;
  let c = (t / (chunks * KH)) % wg.ci;
  let o0 = (t / (chunks * KH * wg.ci)) * 8u;
  let p = wid.y;
  var acc: array<vec4f, 8>; // [tap] for channels o0..o0+3, [4 + tap] for o0+4..o0+7
  let ws = wg.ws4 * 4u;
  let r_end = min(wg.rows, (p + 1u) * wg.rpc);
  for (var r = p * wg.rpc; r < r_end; r++) {
    let n = r / wg.ho;
    let y = r % wg.ho;
    let row = ((n * wg.cs + c) * wg.hs + y * S + ky) * ws + kx0;
    for (var q = 0u; q < wg.wq; q++) {
      let ga = gblock(o0, n, y, q);
      let gb = gblock(o0 + 4u, n, y, q);
      let s = row + q * 4u * S;
      var e: array<f32, 11>;
      for (var k = 0u; k < 3u * S + TW; k++) { e[k] = wgs_src[s + k]; }
      for (var j = 0u; j < TW; j++) {
        let x = vec4f(e[j], e[j + S], e[j + 2u * S], e[j + 3u * S]);
        acc[j] += x * ga;
        acc[4u + j] += x * gb;
      }
    }
  }
  for (var j = 0u; j < TW; j++) {
    if (kx0 + j < KW) {
      store_wgrad(acc[j], p, o0, c, ky * KW + kx0 + j, KH * KW);
      store_wgrad(acc[4u + j], p, o0 + 4u, c, ky * KW + kx0 + j, KH * KW);
    }
  }
}

// ---- Thin convolutions: the packed kernel in a uniform buffer (uniform loads cost lavapipe far
// less than storage loads, and a thin kernel fits 64 KiB), outputs stored as vec4s (rows of a
// multiple of 4 columns, stride 1). Otherwise the same as conv3x3 / conv1x1.
@group(0) @binding(2) var<uniform> cu_k: array<vec4f, 4096>;
@group(0) @binding(4) var<storage, read_write> cu_out: array<vec4f>;

fn store4x4_v4(acc: mat4x4f, n: u32, o0: u32, y: u32, x0: u32) {
  if (y >= cv.ho || x0 >= cv.wo) { return; }
  for (var k = 0u; k < 4u; k++) {
    let o = o0 + k;
    if (o >= cv.co) { return; }
    let b = select(0.0, cv_bias[o], cv.bias == 1u);
    cu_out[(((n * cv.co + o) * cv.ho + y) * cv.wo + x0) / 4u] = acc[k] + b;
  }
}

@compute @workgroup_size(WG)
fn conv3x3_u(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_index) lid: u32,
  @builtin(num_workgroups) nwg: vec3u,
) {
  let t = lane(wid, lid, nwg);
  if (t >= cv.lanes) { return; }
  let o0 = wid.x * 4u;
  let hq = (cv.ho + 1u) / 2u;
  let q = t % cv.wq;
  let r = t / cv.wq;
  let y0 = (r % hq) * 2u;
  let n = r / hq;
  var a00 = mat4x4f();
  var a01 = mat4x4f();
  var a10 = mat4x4f();
  var a11 = mat4x4f();
  let jp4 = cv.jp4;
  for (var i = 0u; i < cv.ci; i++) {
    let tb = i * 9u * jp4 + o0 / 4u;
    let p = ((n * cv.ci + i) * cv.hs + y0) * cv.ws4 + q * 2u;
    step3x3(&a00, &a01, &a10, &a11, p, cu_k[tb], cu_k[tb + jp4], cu_k[tb + 2u * jp4],
      cu_k[tb + 3u * jp4], cu_k[tb + 4u * jp4], cu_k[tb + 5u * jp4], cu_k[tb + 6u * jp4],
      cu_k[tb + 7u * jp4], cu_k[tb + 8u * jp4]);
  }
  let x0 = q * 8u;
  store4x4_v4(a00, n, o0, y0, x0);
  store4x4_v4(a01, n, o0, y0, x0 + 4u);
  store4x4_v4(a10, n, o0, y0 + 1u, x0);
  store4x4_v4(a11, n, o0, y0 + 1u, x0 + 4u);
}

@compute @workgroup_size(WG)
fn conv1x1_u(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_index) lid: u32,
  @builtin(num_workgroups) nwg: vec3u,
) {
  let t = lane(wid, lid, nwg);
  if (t >= cv.lanes) { return; }
  let o0 = wid.x * 16u;
  let q = t % cv.wq;
  let r = t / cv.wq;
  let y = r % cv.ho;
  let n = r / cv.ho;
  var a0_0 = mat4x4f(); var a0_1 = mat4x4f(); var a0_2 = mat4x4f(); var a0_3 = mat4x4f();
  var a1_0 = mat4x4f(); var a1_1 = mat4x4f(); var a1_2 = mat4x4f(); var a1_3 = mat4x4f();
  var a2_0 = mat4x4f(); var a2_1 = mat4x4f(); var a2_2 = mat4x4f(); var a2_3 = mat4x4f();
  var a3_0 = mat4x4f(); var a3_1 = mat4x4f(); var a3_2 = mat4x4f(); var a3_3 = mat4x4f();
  let plane = cv.hs * cv.ws4;
  var p = (n * cv.ci * cv.hs + y) * cv.ws4 + q * 4u;
  var k = o0 / 4u;
  for (var i = 0u; i < cv.ci; i++) {
    let x0 = cv_src[p];
    let x1 = cv_src[p + 1u];
    let x2 = cv_src[p + 2u];
    let x3 = cv_src[p + 3u];
    mac4(&a0_0, &a0_1, &a0_2, &a0_3, cu_k[k], x0, x1, x2, x3);
    mac4(&a1_0, &a1_1, &a1_2, &a1_3, cu_k[k + 1u], x0, x1, x2, x3);
    mac4(&a2_0, &a2_1, &a2_2, &a2_3, cu_k[k + 2u], x0, x1, x2, x3);
    mac4(&a3_0, &a3_1, &a3_2, &a3_3, cu_k[k + 3u], x0, x1, x2, x3);
    p += plane;
    k += cv.jp4;
  }
  let x0 = q * 16u;
  store4x4_v4(a0_0, n, o0 + 0u, y, x0 + 0u);
  store4x4_v4(a0_1, n, o0 + 0u, y, x0 + 4u);
  store4x4_v4(a0_2, n, o0 + 0u, y, x0 + 8u);
  store4x4_v4(a0_3, n, o0 + 0u, y, x0 + 12u);
  store4x4_v4(a1_0, n, o0 + 4u, y, x0 + 0u);
  store4x4_v4(a1_1, n, o0 + 4u, y, x0 + 4u);
  store4x4_v4(a1_2, n, o0 + 4u, y, x0 + 8u);
  store4x4_v4(a1_3, n, o0 + 4u, y, x0 + 12u);
  store4x4_v4(a2_0, n, o0 + 8u, y, x0 + 0u);
  store4x4_v4(a2_1, n, o0 + 8u, y, x0 + 4u);
  store4x4_v4(a2_2, n, o0 + 8u, y, x0 + 8u);
  store4x4_v4(a2_3, n, o0 + 8u, y, x0 + 12u);
  store4x4_v4(a3_0, n, o0 + 12u, y, x0 + 0u);
  store4x4_v4(a3_1, n, o0 + 12u, y, x0 + 4u);
  store4x4_v4(a3_2, n, o0 + 12u, y, x0 + 8u);
  store4x4_v4(a3_3, n, o0 + 12u, y, x0 + 12u);
}

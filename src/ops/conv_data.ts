// The data gradient of conv2d: per phase of dx modulo the stride, a forward correlation of the
// padded output gradient with the flipped sub-kernel of the taps that reach that phase.
import { checkGrad, type Conv2dOptions, convGeometry, roundUp } from "./conv_geometry.ts";
import { convPlan, runConv, thinOk } from "./conv_forward.ts";
import { pack, padded, releaseTemp } from "./conv_pack.ts";
import { expand } from "./reduce.ts";
import { fill, noGrad } from "./tape.ts";
import { type Shape, Tensor } from "./tensor.ts";

/**
 * One axis of the data gradient's phase r (p: the padding before this axis; the padding after it
 * only sets how many outputs there are): taps k0, k0 + S, ... reach dx[a*S + r].
 */
function phase(r: number, p: number, k: number, s: number, size: number) {
  const k0 = (r + p) % s;
  const taps = k0 < k ? Math.ceil((k - k0) / s) : 0;
  const d = (r + p - k0) / s; // dx[a*S + r] reads g[a + d - m] through tap k0 + S*m
  const count = Math.ceil((size - r) / s); // dx rows/columns in this phase
  return { k0, taps, offset: taps - 1 - d, count };
}

/**
 * dx [N, C, H, W]: the gradient of conv2d(x, w) with respect to x, given the output gradient
 * g [N, O, Ho, Wo]. A gather: each dx value sums the outputs and taps that read it. With `bias`
 * [C] (the transposed convolution's), dx[n, c] + bias[c]. Nothing is recorded on the tape.
 */
export function conv2dBackwardData(
  g: Tensor,
  w: Tensor,
  xShape: Shape,
  opts: Conv2dOptions = {},
  bias?: Tensor,
): Tensor {
  const geo = convGeometry(xShape, w.shape, opts);
  checkGrad(g, geo, xShape, w.shape);
  const { s, pt, pl } = geo;
  const phases: [ReturnType<typeof phase>, ReturnType<typeof phase>, number, number][] = [];
  let complete = true;
  for (let ry = 0; ry < s; ry++) {
    for (let rx = 0; rx < s; rx++) {
      const py = phase(ry, pt, geo.kh, s, geo.h);
      const px = phase(rx, pl, geo.kw, s, geo.w);
      if (py.count <= 0 || px.count <= 0) continue;
      if (py.taps === 0 || px.taps === 0) complete = false;
      else phases.push([py, px, ry, rx]);
    }
  }
  // Phases no tap reaches (a 1x1 kernel at stride 2) get no gradient: zero, or the bias alone.
  const [n, c, h, wd] = xShape;
  const dx = complete
    ? Tensor.empty(xShape, "conv2d dx")
    : bias
    ? noGrad(() => expand(bias, n, c, h * wd, 1, xShape))
    : fill(Tensor.empty(xShape, "conv2d dx"), 0);
  for (const [py, px, ry, rx] of phases) {
    const plan = convPlan(geo.n, py.count, px.count, py.taps, px.taps, 1);
    const src = padded(
      g,
      geo.n,
      geo.o,
      geo.o,
      geo.ho,
      geo.wo,
      plan.hs,
      plan.ws,
      py.offset,
      px.offset,
    );
    const jp = roundUp(geo.c, plan.block);
    // Flipped and transposed: entry (o, u, v, c) = w[o, c, k0 + S*(taps-1-u), ...].
    const ay = py.k0 + s * (py.taps - 1);
    const ax = px.k0 + s * (px.taps - 1);
    const thin = s === 1 && thinOk(plan, geo.o, py.taps * px.taps, jp, px.count);
    const kp = pack(w, geo, true, py.taps, px.taps, jp, ay, -s, ax, -s, thin);
    runConv({
      plan,
      src,
      ci: geo.o,
      kp,
      kh: py.taps,
      kw: px.taps,
      s: 1,
      co: geo.c,
      jp,
      bias,
      out: dx,
      n: geo.n,
      ho: py.count,
      wo: px.count,
      hot: geo.h,
      wot: geo.w,
      so: s,
      oy: ry,
      ox: rx,
    });
    releaseTemp(src, g);
    if (kp instanceof Tensor) kp.release();
  }
  return dx;
}

// The zero-padded and packed copies every conv2d pass reads (kernels pad and pack), and the one
// buffer that thin packed kernels go through as a uniform.
import { device } from "../gpu/device.ts";
import { kernel } from "../gpu/kernel.ts";
import { type ConvGeometry, FILE } from "./conv_geometry.ts";
import { Tensor } from "./tensor.ts";

const PAD = kernel(FILE, "pad", {
  params: "@0 uniform pd",
  src: "@1 read pad_src",
  dst: "@2 read_write pad_dst",
});
const PACK = kernel(FILE, "pack", {
  params: "@0 uniform pk",
  w: "@1 read pack_w",
  out: "@2 read_write pack_out",
});

/** Two's complement, for signed uniform words (the shader bitcasts them back). */
const i32 = (v: number) => v >>> 0;

/**
 * src [n, cs, h, w] as a zero-padded [n, cd, hs, ws] with src's (0, 0) at (oy, ox) (negative
 * offsets crop). Returns src itself when that would be an exact copy.
 */
export function padded(
  src: Tensor,
  n: number,
  cs: number,
  cd: number,
  h: number,
  w: number,
  hs: number,
  ws: number,
  oy: number,
  ox: number,
): Tensor {
  if (cs === cd && h === hs && w === ws && oy === 0 && ox === 0) return src;
  const out = Tensor.empty([n, cd, hs, ws], "conv2d pad");
  const total4 = (n * cd * hs * ws) / 4;
  PAD.run({ src, dst: out }, {
    params: [total4, cs, cd, h, w, hs, ws, i32(oy), i32(ox)],
    threads: total4,
  });
  return out;
}

export function releaseTemp(t: Tensor, orig: Tensor): void {
  if (t !== orig) t.release();
}

/**
 * w [O, C, KH, KW] packed as [I, khp, kwp, jp]: entry (i, u, v, j) = w[o, c, ay + sy*u,
 * ax + sx*v] with (o, c) = (j, i), or (i, j) if `trans`; zero for j >= J.
 */
export function pack(
  w: Tensor,
  g: ConvGeometry,
  trans: boolean,
  khp: number,
  kwp: number,
  jp: number,
  ay: number,
  sy: number,
  ax: number,
  sx: number,
  thin: boolean,
): GPUBuffer | Tensor {
  const size = (trans ? g.o : g.c) * khp * kwp * jp;
  const out = thin ? uniformKernel() : Tensor.empty([size], "conv2d pack");
  const params = [size, jp, trans ? g.c : g.o, khp, kwp, g.c, g.kh, g.kw, trans ? 1 : 0];
  PACK.run({ w, out }, {
    params: [...params, i32(ay), i32(sy), i32(ax), i32(sx)],
    threads: size,
  });
  return out;
}

/** Floats of a packed kernel that a uniform binding holds (the kernels declare 4096 vec4s). */
export const UNIFORM_FLOATS = 16384;
let kernelBuffer: GPUBuffer | undefined;

/**
 * The one buffer that thin packed kernels go through: each pack writes it and the next dispatch
 * reads it as a uniform (the encoder keeps them in order), so no copy and no pool buffer.
 */
function uniformKernel(): GPUBuffer {
  kernelBuffer ??= device().createBuffer({
    size: UNIFORM_FLOATS * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM,
    label: "conv2d uniform kernel",
  });
  return kernelBuffer;
}

// Resampling of [N, C, H, W] images: nearest-neighbour upsampling x2 (decoders, FUNS' unsqueeze
// path); its backward sums each 2x2 block.
import { kernel } from "../gpu/kernel.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, Tensor } from "./tensor.ts";

const FILE = "resample.wgsl";
const U = "@0 uniform up";
const UPSAMPLE = {
  1: kernel(FILE, "upsample", { params: U, x: "@1 read u_x", y: "@2 read_write u_y" }),
  2: kernel(FILE, "upsample2", { params: U, x: "@1 read v_x", y: "@2 read_write v_y" }),
};
const UPSAMPLE_BWD = {
  1: kernel(FILE, "upsample_bwd", { params: U, g: "@1 read u_x", dx: "@2 read_write u_y" }),
  2: kernel(FILE, "upsample2_bwd", { params: U, g: "@1 read vb_g", dx: "@2 read_write vb_dx" }),
};

/** Nearest-neighbour upsampling: [N, C, H, W] -> [N, C, 2H, 2W], each pixel a 2x2 block. */
export function upsample2x(x: Tensor): Tensor {
  if (x.shape.length !== 4) {
    throw new Error(`flowgpu: upsample2x: x ${fmtShape(x.shape)} is not [N, C, H, W]`);
  }
  const [n, c, h, w] = x.shape;
  const y = Tensor.empty([n, c, 2 * h, 2 * w], "upsample2x");
  // Even W: one thread per pair of input pixels (a vec4 of an output row).
  const v = w % 2 === 0 ? 2 : 1;
  const params = [n * c, h, w / v];
  UPSAMPLE[v].run({ x, y }, { params, threads: v === 2 ? y.size / 4 : y.size });
  return record(y, [x], (g) => {
    const dx = Tensor.empty(x.shape, "upsample2x'");
    UPSAMPLE_BWD[v].run({ g, dx }, { params, threads: x.size / v });
    accumulate(x, dx);
  });
}

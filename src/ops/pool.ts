// Pooling of [N, C, H, W] images: average pooling 2x2 with stride 2 and zero padding counted in
// the divisor (DisUnknown's ResDown shortcut, PyTorch's AvgPool2d(2, 2, pad, count_include_pad)).
// Kernels: shaders/pool.wgsl.
import { kernel } from "../gpu/kernel.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, Tensor } from "./tensor.ts";

const FILE = "pool.wgsl";
const U = "@0 uniform pl";
const AVG = {
  1: kernel(FILE, "avgpool2", { params: U, x: "@1 read p_x", y: "@2 read_write p_y" }),
  4: kernel(FILE, "avgpool2_4", { params: U, x: "@1 read v_x", y: "@2 read_write v_y" }),
};
const AVG_BWD = {
  1: kernel(FILE, "avgpool2_bwd", { params: U, g: "@1 read p_x", dx: "@2 read_write p_y" }),
  4: kernel(FILE, "avgpool2_4_bwd", { params: U, g: "@1 read vb_g", dx: "@2 read_write vb_dx" }),
};

/** Options of `avgPool2d`. */
export interface AvgPool2dOptions {
  /** Zero padding on every side, 0 or 1 (default 0); padded zeros count in the divisor. */
  padding?: number;
}

/**
 * Average pooling, 2x2 windows at stride 2: [N, C, H, W] -> [N, C, Ho, Wo],
 * Ho = floor((H + 2 padding - 2) / 2) + 1 (Wo likewise). Each output is the sum of its window's
 * pixels inside the image divided by 4, padded zeros included (a trailing odd row or column
 * without padding is dropped). Backward: each input pixel gets its window's gradient / 4.
 */
export function avgPool2d(x: Tensor, opts: AvgPool2dOptions = {}): Tensor {
  if (x.shape.length !== 4) {
    throw new Error(`flowgpu: avgPool2d: x ${fmtShape(x.shape)} is not [N, C, H, W]`);
  }
  const pad = opts.padding ?? 0;
  if (pad !== 0 && pad !== 1) {
    throw new Error(
      `flowgpu: avgPool2d: padding must be 0 or 1 (at most half the window), got ${pad}`,
    );
  }
  const [n, c, h, w] = x.shape;
  const ho = Math.floor((h + 2 * pad - 2) / 2) + 1;
  const wo = Math.floor((w + 2 * pad - 2) / 2) + 1;
  if (ho < 1 || wo < 1) {
    throw new Error(`flowgpu: avgPool2d: x ${fmtShape(x.shape)} is smaller than the 2x2 window`);
  }
  const y = Tensor.empty([n, c, ho, wo], "avgPool2d");
  // Unpadded rows of whole vec4s: one vec4 of each of two input rows per output vec2.
  const v = pad === 0 && w % 4 === 0 ? 4 : 1;
  const params = v === 4 ? [n * c, h, w / 4, ho, w / 4, 0] : [n * c, h, w, ho, wo, pad];
  AVG[v].run({ x, y }, { params, threads: v === 4 ? y.size / 2 : y.size });
  return record(y, [x], (g) => {
    const dx = Tensor.empty(x.shape, "avgPool2d'");
    AVG_BWD[v].run({ g, dx }, { params, threads: x.size / v });
    accumulate(x, dx);
  });
}

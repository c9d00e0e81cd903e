// Resampling of [N, C, H, W] images: nearest-neighbour upsampling x2, optionally cropped
// (decoders, FUNS' unsqueeze path, DisUnknown's ResUp shortcut); tiling a [N, C] vector over
// H x W (label channels of a conditional VAE); per-sample integer translation with zero fill
// (random-offset augmentation). Kernels: shaders/resample.wgsl (tiling is reduce.wgsl's expand).
import { kernel } from "../gpu/kernel.ts";
import { expand } from "./reduce.ts";
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
const CROP = "@0 uniform cr";
const UPSAMPLE_CROP = kernel(FILE, "upsample_crop", {
  params: CROP,
  x: "@1 read c_x",
  y: "@2 read_write c2_y",
});
const UPSAMPLE_CROP_BWD = kernel(FILE, "upsample_crop_bwd", {
  params: CROP,
  g: "@1 read c_x",
  dx: "@2 read_write c_y",
});
const TR = "@0 uniform tr";
const TRANSLATE = {
  1: kernel(FILE, "translate", {
    params: TR,
    x: "@1 read t_x",
    shifts: "@2 read t_shift",
    y: "@3 read_write t_y",
  }),
  4: kernel(FILE, "translate4", {
    params: TR,
    x: "@1 read t_x",
    shifts: "@2 read t_shift",
    y: "@3 read_write t4_y",
  }),
};

function image(x: Tensor, op: string): [number, number, number, number] {
  if (x.shape.length !== 4) {
    throw new Error(`flowgpu: ${op}: x ${fmtShape(x.shape)} is not [N, C, H, W]`);
  }
  const [n, c, h, w] = x.shape;
  return [n, c, h, w];
}

/** Options of `upsample2x`. */
export interface Upsample2xOptions {
  /** Pixels cropped from every side of the upsampled image (default 0). */
  crop?: number;
}

/**
 * Nearest-neighbour upsampling: [N, C, H, W] -> [N, C, 2H, 2W], each pixel a 2x2 block; with
 * `crop` c, then c pixels cut from every side: [N, C, 2H - 2c, 2W - 2c] (DisUnknown's ResUp
 * shortcut: 7 -> 14 -> 12 with c = 1). Backward: each pixel sums its block's surviving gradients.
 */
export function upsample2x(x: Tensor, opts: Upsample2xOptions = {}): Tensor {
  const [n, c, h, w] = image(x, "upsample2x");
  const crop = opts.crop ?? 0;
  if (!Number.isInteger(crop) || crop < 0 || crop >= Math.min(h, w)) {
    throw new Error(
      `flowgpu: upsample2x: crop must be an integer in [0, ${Math.min(h, w)}) for x ${
        fmtShape(x.shape)
      }, got ${crop}`,
    );
  }
  if (crop > 0) return upsampleCrop(x, n, c, h, w, crop);
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

function upsampleCrop(x: Tensor, n: number, c: number, h: number, w: number, crop: number) {
  const ho = 2 * (h - crop), wo = 2 * (w - crop);
  const y = Tensor.empty([n, c, ho, wo], "upsample2x");
  const params = [n * c, h, w, ho, wo, crop];
  UPSAMPLE_CROP.run({ x, y }, { params, threads: y.size / 2 });
  return record(y, [x], (g) => {
    const dx = Tensor.empty(x.shape, "upsample2x'");
    UPSAMPLE_CROP_BWD.run({ g, dx }, { params, threads: x.size });
    accumulate(x, dx);
  });
}

/**
 * Tile a vector over the image plane: v [N, C] -> [N, C, H, W] with y[n, c, i, j] = v[n, c] (e.g.
 * one-hot labels as extra input channels). Backward: the sum over H x W.
 */
export function tile2d(v: Tensor, h: number, w: number): Tensor {
  if (v.shape.length !== 2) {
    throw new Error(`flowgpu: tile2d: v ${fmtShape(v.shape)} is not [N, C]`);
  }
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) {
    throw new Error(`flowgpu: tile2d: H and W must be integers >= 1, got ${h} x ${w}`);
  }
  const [n, c] = v.shape;
  return expand(v, 1, n * c, h * w, 1, [n, c, h, w]);
}

/**
 * Per-sample translation with zero fill: y[n, c, i, j] = x[n, c, i - dy_n, j - dx_n] (content
 * moves down by dy_n, right by dx_n), 0 where that is outside x. `shifts` is [N, 2] of integer
 * (dy, dx) pairs, as a tensor (f32 values, rounded) or as 2N numbers, which are checked. Zero-pad
 * by o and crop at (oy, ox) is the shift (o - oy, o - ox). Backward: the inverse shift.
 */
export function translate2d(x: Tensor, shifts: Tensor | ArrayLike<number>): Tensor {
  const [n, c, h, w] = image(x, "translate2d");
  let s: Tensor;
  if (shifts instanceof Tensor) {
    if (shifts.shape.length !== 2 || shifts.shape[0] !== n || shifts.shape[1] !== 2) {
      throw new Error(
        `flowgpu: translate2d: shifts ${fmtShape(shifts.shape)} must be [${n}, 2] (dy, dx per ` +
          `sample of x ${fmtShape(x.shape)})`,
      );
    }
    s = shifts;
  } else {
    if (shifts.length !== 2 * n) {
      throw new Error(
        `flowgpu: translate2d: ${shifts.length} shifts for x ${fmtShape(x.shape)}; ` +
          `need ${2 * n} (dy, dx per sample)`,
      );
    }
    const bad = Array.from(shifts).findIndex((d) => !Number.isInteger(d));
    if (bad >= 0) {
      throw new Error(`flowgpu: translate2d: shift ${bad} is ${shifts[bad]}, not an integer`);
    }
    s = Tensor.from(shifts, [n, 2]);
  }
  const y = Tensor.empty(x.shape, "translate2d");
  const v = w % 4 === 0 ? 4 : 1;
  TRANSLATE[v].run({ x, shifts: s, y }, { params: [n, c, h, w, 0], threads: x.size / v });
  return record(y, [x], (g) => {
    const dx = Tensor.empty(x.shape, "translate2d'");
    TRANSLATE[v].run({ x: g, shifts: s, y: dx }, { params: [n, c, h, w, 1], threads: x.size / v });
    accumulate(x, dx);
  });
}

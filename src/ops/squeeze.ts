// Glow's squeeze (space-to-depth by 2) and its inverse. A pure permutation: logdet 0, and each
// direction's backward is the other direction.
import { kernel } from "../gpu/kernel.ts";
import { accumulate, record } from "./tape.ts";
import { fmtShape, Tensor } from "./tensor.ts";

const FILE = "squeeze.wgsl";
const SLOTS = {
  params: "@0 uniform sq",
  src: "@1 read sq_in",
  dst: "@2 read_write sq_out",
} as const;
const SQUEEZE = kernel(FILE, "squeeze", SLOTS);
const UNSQUEEZE = kernel(FILE, "unsqueeze", SLOTS);

/** [N, C, H, W] -> [N, 4C, H/2, W/2]. */
export function squeeze(x: Tensor): Tensor {
  if (x.shape.length !== 4) {
    throw new Error(`flowgpu: squeeze: needs [N, C, H, W], got ${fmtShape(x.shape)}`);
  }
  const [n, c, h, w] = x.shape;
  if (h % 2 || w % 2) {
    throw new Error(
      `flowgpu: squeeze: ${fmtShape(x.shape)} cannot be halved (H=${h} and W=${w} must be even); ` +
        "pad the input or use fewer levels",
    );
  }
  const y = Tensor.empty([n, 4 * c, h / 2, w / 2], "squeeze");
  SQUEEZE.run({ src: x, dst: y }, { params: [n, c, h, w], threads: y.size });
  return record(y, [x], (g) => accumulate(x, unsqueeze(g)));
}

/** [N, 4C, H, W] -> [N, C, 2H, 2W]. */
export function unsqueeze(y: Tensor): Tensor {
  if (y.shape.length !== 4 || y.shape[1] % 4) {
    throw new Error(`flowgpu: unsqueeze: needs [N, 4C, H, W], got ${fmtShape(y.shape)}`);
  }
  const [n, c4, h, w] = y.shape;
  const x = Tensor.empty([n, c4 / 4, 2 * h, 2 * w], "unsqueeze");
  UNSQUEEZE.run({ src: y, dst: x }, { params: [...x.shape], threads: x.size });
  return record(x, [y], (g) => accumulate(y, squeeze(g)));
}

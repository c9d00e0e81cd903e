// GAN losses on discriminator scores (logits), each the mean over every score: binary
// cross-entropy with logits (the non-saturating GAN loss, targets in [0, 1] per sample allowed),
// the least-squares (LSGAN) loss against a target value, and the hinge loss. One fused term
// kernel, the shared mean, one gradient kernel; targets are constants (no gradient).
import { f32 } from "../gpu/encoder.ts";
import { kernel } from "../gpu/kernel.ts";
import { reduceABC } from "./reduce.ts";
import { record } from "./tape.ts";
import { accumulate } from "./tape.ts";
import { fmtShape, Tensor } from "./tensor.ts";

const FILE = "gan.wgsl";
const TERMS = kernel(FILE, "gan_terms", {
  params: "@0 uniform gp",
  s: "@1 read gt_s",
  target: "@2 read gt_t",
  terms: "@3 read_write gt_terms",
});
const BWD = kernel(FILE, "gan_bwd", {
  params: "@0 uniform gp",
  s: "@1 read gt_s",
  target: "@2 read gt_t",
  g: "@3 read gb_g",
  ds: "@4 read_write gb_ds",
});

/** A target: one value for every score, or one per score (a tensor or numbers of s's size). */
export type GanTarget = number | Tensor | ArrayLike<number>;

const OPS = { bceWithLogits: 0, lsganLoss: 1, hingeLoss: 2 } as const;

function ganLoss(
  op: keyof typeof OPS,
  s: Tensor,
  target: GanTarget,
  range?: [number, number],
): Tensor {
  if (s.size === 0) throw new Error(`flowgpu: ${op}: scores ${fmtShape(s.shape)} are empty`);
  const n = s.size;
  const inRange = (v: number) => Number.isFinite(v) && (!range || (v >= range[0] && v <= range[1]));
  const want = range ? `in [${range[0]}, ${range[1]}]` : "finite";
  let t: Tensor | undefined;
  let value = 0;
  if (typeof target === "number") {
    if (!inRange(target)) throw new Error(`flowgpu: ${op}: target ${target} is not ${want}`);
    value = target;
  } else if (target instanceof Tensor) {
    if (target.size !== n) {
      throw new Error(
        `flowgpu: ${op}: target ${fmtShape(target.shape)} does not match scores ${
          fmtShape(s.shape)
        }`,
      );
    }
    t = target;
  } else {
    if (target.length !== n) {
      throw new Error(
        `flowgpu: ${op}: ${target.length} targets for scores ${fmtShape(s.shape)} (need ${n})`,
      );
    }
    for (let i = 0; i < n; i++) {
      if (!inRange(target[i])) {
        throw new Error(`flowgpu: ${op}: target[${i}] = ${target[i]} is not ${want}`);
      }
    }
    t = Tensor.from(target instanceof Float32Array ? target : Float32Array.from(target), [n]);
    t.name = `${op} targets`;
  }
  const OP = OPS[op];
  const params = [n, t ? 1 : 0, f32(value), f32(1 / n)];
  const threads = Math.ceil(n / 4);
  // Without a target tensor the scores stand in for the unused binding.
  const tt = t ?? s;
  const terms = Tensor.empty([n], `${op} terms`);
  TERMS.run({ s, target: tt, terms }, { constants: { OP }, params, threads });
  const out = reduceABC(terms, 1, 1, n, 1 / n, [1], op);
  terms.release();
  return record(out, [s], (g) => {
    const ds = Tensor.empty(s.shape, `${op}'`);
    BWD.run({ s, target: tt, g, ds }, { constants: { OP }, params, threads });
    accumulate(s, ds);
  });
}

/**
 * Binary cross-entropy of scores (logits) s against targets t in [0, 1]: mean of
 * t softplus(-s) + (1 - t) softplus(s), a [1] tensor; t = 1 for real (softplus(-s)), 0 for fake
 * (softplus(s)), or per-sample values (label smoothing). Numbers are range-checked, a target
 * tensor is not (it stays on the GPU). Exact for large |s| (softplus is formed with log1p).
 * The gradient is (sigmoid(s) - t) / n.
 */
export function bceWithLogits(s: Tensor, target: GanTarget): Tensor {
  return ganLoss("bceWithLogits", s, target, [0, 1]);
}

/**
 * Least-squares GAN loss: mean (s - c)^2 over the scores, a [1] tensor, for a target value c
 * (DisUnknown: +1 real, -1 fake, 0 for the generator) or one target per score. The gradient is
 * 2 (s - c) / n.
 */
export function lsganLoss(s: Tensor, target: GanTarget): Tensor {
  return ganLoss("lsganLoss", s, target);
}

/**
 * Hinge loss for a discriminator: mean relu(1 - s) over real scores, mean relu(1 + s) over fake
 * ones, a [1] tensor (the generator's hinge loss is -mean(s)). The gradient is -1/n or 1/n
 * inside the margin, 0 outside.
 */
export function hingeLoss(s: Tensor, side: "real" | "fake"): Tensor {
  if (side !== "real" && side !== "fake") {
    throw new Error(`flowgpu: hingeLoss: side '${side}' is not 'real' or 'fake'`);
  }
  return ganLoss("hingeLoss", s, side === "real" ? 1 : -1);
}

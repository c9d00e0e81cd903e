// How far a trained AF encoder is from the one its source-structure loss asks for. On the eval
// pairs of an af run, cross-identity PSNR against the rendered ground truth of: the centroid oracle
// (centroidSwap: E(z_n) = z̄ exactly, the bound for this Glow), the same with the query frame k
// for z̄_Q (what the protocol's single frame allows), the run's learned E, the Glow split (A16) and
// the copied query frame; and L_s of the learned E beside E = I and E = 0 (ℓ(z_n, z̄), ℓ(0, z̄)).
// A Glow-only run (--stage glow) has no trained E: its learned-E figures are left out.
//
//   deno run -A src/eval/af_oracle.ts --run DIR [--clips N]
import { parseArgs } from "node:util";
import { SYNTHLIPS_FRAMES, toFlowInput } from "../data/synthlips.ts";
import { centroidSwap, clipMean, levelError } from "../models/af.ts";
import { add, sub } from "../ops/elementwise.ts";
import { gatherBatch } from "../ops/gather.ts";
import { clearTape, noGrad } from "../ops/tape.ts";
import { Tensor } from "../ops/tensor.ts";
import type { AfModel } from "../train/af_task.ts";
import { openRun } from "../train/cli.ts";
import { modelPsnr } from "./reenact.ts";

/**
 * Mean cross-identity PSNR per route and mean L_s per encoder over `clips` eval pairs; without
 * `learned` (a Glow-only run) the learned-E route and its L_s are skipped.
 */
export async function afOracle(
  m: AfModel,
  clips: number,
  learned = true,
): Promise<Record<string, number>> {
  const N = SYNTHLIPS_FRAMES, d = 3 * m.cfg.size * m.cfg.size;
  const routes = ["oracle_centroid", "oracle_query_frame", "glow_split", "copy_query"];
  if (learned) routes.push("learned");
  const sums: Record<string, number> = {};
  const acc = (k: string, v: number) => (sums[k] = (sums[k] ?? 0) + v / clips);
  for (const p of m.evalPairs(clips)) {
    const out = await noGrad(async () => {
      const glow = m.af.glow;
      const zs = glow.encode(m.clipInput([p.source]));
      const zq = glow.encode(m.clipInput([p.query]));
      const zBar = zs.map((z) => clipMean(z, N));
      const qk = zq.map((z) => gatherBatch(z, new Array(N).fill(p.k)));
      const latents = [
        centroidSwap(zs, zq, N),
        zs.map((z, l) => add(sub(z, zBar[l]), qk[l])),
        m.reenactLatents(zs, zq, p.k, "glow"),
        qk,
        ...(learned ? [m.reenactLatents(zs, zq, p.k, "af")] : []),
      ];
      const zero = zs.map((z) => Tensor.from(new Float32Array(z.size), z.shape));
      return await Tensor.readAll([
        ...latents.map((r) => glow.decode(r)),
        levelError(zs, zBar),
        levelError(zero, zBar),
        ...(learned ? [levelError(m.af.encoder.apply(zs), zBar)] : []),
      ]);
    });
    clearTape();
    const gt = toFlowInput(m.data.renderCross(p.source, p.query, p.k));
    const frame = (a: Float32Array, n: number) => a.subarray(n * d, (n + 1) * d);
    routes.forEach((r, i) => {
      let s = 0;
      for (let n = 0; n < N; n++) s += modelPsnr(frame(out[i], n), frame(gt, n));
      acc(`psnr_${r}`, s / N);
    });
    const ls = out.slice(routes.length).map((a) => a[0]);
    acc("l_s_identity", ls[0]);
    acc("l_s_zero", ls[1]);
    if (learned) acc("l_s_learned", ls[2]);
  }
  return sums;
}

const USAGE = `usage: deno run -A src/eval/af_oracle.ts --run DIR [--clips N]

Cross-identity PSNR of an af run's Glow (a --stage glow run too) under the centroid-oracle
encoder, the Glow split, the copied query frame and the run's learned encoder; L_s of E = I,
E = 0 and the learned E. --clips: evaluation pairs (default 8).`;

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      run: { type: "string" },
      clips: { type: "string", default: "8" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  if (!values.run) {
    throw new Error("flowgpu: af_oracle needs --run DIR (an af run folder; see --help)");
  }
  const clips = Number(values.clips);
  if (!Number.isInteger(clips) || clips < 1) {
    throw new Error(`flowgpu: af_oracle: --clips ${values.clips} is not a positive integer`);
  }
  const { task, session } = await openRun(values.run, [], { lock: false });
  try {
    if (task.name !== "af") {
      throw new Error(`flowgpu: af_oracle: ${values.run} is a '${task.name}' run, not af`);
    }
    const model = session.model as AfModel;
    const r = await afOracle(model, clips, model.cfg.stage !== "glow");
    for (const [k, v] of Object.entries(r)) console.log(`${k.padEnd(26)} ${v.toFixed(3)}`);
  } finally {
    session.release();
  }
}

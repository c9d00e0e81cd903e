// The disentanglement metrics of vae-disentangle.md §5 (forward only): the MIG estimator on the
// CPU (float64) and on the GPU (shaders/disentangle.wgsl) at N = M = 4000 and 10,000, one dim and
// two factors; DCI and SAP on 10,000 codes of 10 dims; MS-SSIM of one 64 px colour pair and the
// intra-class diversity of one 40-image class.
//   deno bench -A --no-check bench/disentangle_bench.ts
import {
  dci,
  mutualInformation,
  planMig,
  posteriorEntropies,
  sap,
} from "../src/eval/disentangle.ts";
import { posteriorEntropiesGpu } from "../src/eval/disentangle_gpu.ts";
import { intraClassDiversity, msSsim } from "../src/eval/ssim.ts";
import { Rng } from "../src/util/rng.ts";
import { initBench } from "./util.ts";

await initBench(["disentangle.wgsl"]);

const rng = new Rng(1);

function migCase(n: number) {
  const a = Int32Array.from({ length: n }, () => rng.int(10));
  const b = Int32Array.from({ length: n }, () => rng.int(4));
  // A VAE-like dim: the factor's signal plus posterior noise of varied width.
  const mu = Float64Array.from(a, (v) => 0.3 * v + rng.normal());
  const sigma = Float64Array.from(a, () => 0.2 + 0.8 * rng.next());
  const plan = planMig(
    [{ name: "E", mu, sigma, dim: 1 }],
    [{ name: "a", labels: a, encoder: "E" }, { name: "b", labels: b, encoder: "E" }],
    { samples: n, maxCodes: n },
  );
  return plan;
}

for (const n of [4000, 10_000]) {
  const p = migCase(n);
  const args = [p.codes[0], p.factors, p.source, p.eps[0]] as const;
  Deno.bench(`MIG estimator CPU f64, N = M = ${n}, 1 dim, 2 factors`, { n: 2, warmup: 0 }, () => {
    posteriorEntropies(...args);
  });
  Deno.bench(`MIG estimator GPU, N = M = ${n}, 1 dim, 2 factors`, { n: 3, warmup: 1 }, async () => {
    await posteriorEntropiesGpu(...args);
  });
}

{
  // 10 dims at N = M = 4000 on the GPU: the per-dim dispatches share one readback.
  const n = 4000, dim = 10;
  const a = Int32Array.from({ length: n }, () => rng.int(10));
  const mu = Float64Array.from(
    { length: n * dim },
    (_, i) => 0.3 * a[Math.floor(i / dim)] + rng.normal(),
  );
  const code = { mu, dim, noise: 0.05 };
  const p = planMig([{ name: "E", ...code }], [{ name: "a", labels: a, encoder: "E" }], {
    samples: n,
  });
  Deno.bench(
    `MIG estimator GPU, N = M = ${n}, 10 dims, 1 factor`,
    { n: 2, warmup: 1 },
    async () => {
      await posteriorEntropiesGpu(p.codes[0], p.factors, p.source, p.eps[0]);
    },
  );
  Deno.bench(`mutualInformation CPU, N = M = 1000, 10 dims`, { n: 2, warmup: 0 }, () => {
    mutualInformation({ mu: mu.subarray(0, 1000 * dim), dim, noise: 0.05 }, [a.subarray(0, 1000)], {
      samples: 1000,
    });
  });
}

{
  const n = 10_000, dim = 10;
  const f = Array.from(
    { length: 5 },
    (_, j) => Int32Array.from({ length: n }, () => rng.int(4 + j)),
  );
  const codes = Float64Array.from({ length: n * dim }, (_, i) => {
    const d = i % dim;
    return (d < 5 ? f[d][Math.floor(i / dim)] : 0) + rng.normal();
  });
  Deno.bench("DCI (ridge), 10,000 codes x 10 dims, 5 factors", { n: 3, warmup: 1 }, () => {
    dci(codes, dim, f);
  });
  Deno.bench("SAP, 10,000 codes x 10 dims, 5 factors", { n: 3, warmup: 1 }, () => {
    sap(codes, dim, f);
  });
}

{
  const x = rng.uniformArray(3 * 64 * 64, 0, 1), y = rng.uniformArray(3 * 64 * 64, 0, 1);
  Deno.bench("MS-SSIM 64x64x3 pair (3 scales)", { n: 10, warmup: 2 }, () => {
    msSsim(x, y, [1, 3, 64, 64]);
  });
  const k = 40, imgs = rng.uniformArray(k * 3 * 32 * 32, 0, 1);
  Deno.bench("intra-class diversity, one class of 40 32x32x3 images (780 pairs)", {
    n: 2,
    warmup: 0,
  }, () => {
    intraClassDiversity(imgs, [k, 3, 32, 32], new Int32Array(k));
  });
}

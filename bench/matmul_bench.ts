// matmul throughput: C = A·B for square sizes, with each kernel variant.
//   deno bench -A --no-check bench/matmul_bench.ts
// A measured iteration encodes R dispatches and waits once (sync), so the ~11 ms submit-and-wait
// of lavapipe is spread over R; the wall-clock time is used as is, nothing subtracted. Besides
// Deno.bench's table, each case logs its GFLOP/s (best and median over the iterations).
import { deviceInfo, initGpu } from "../src/gpu/mod.ts";
import { sync } from "../src/gpu/encoder.ts";
import { matmul, type MatmulKernel, setMatmulKernel } from "../src/ops/matmul.ts";
import { clearTape, noGrad } from "../src/ops/tape.ts";
import { Tensor } from "../src/ops/tensor.ts";
import { Rng } from "../src/data/rng.ts";

await initGpu();
console.log(`adapter: ${deviceInfo().description}`);

// [size, dispatches per iteration, measured iterations]
const SIZES: [number, number, number][] = [[256, 8, 10], [512, 4, 6], [1024, 2, 4]];
const KERNELS: MatmulKernel[] = ["packed", "blocked", "tiled"];

for (const [s, reps, n] of SIZES) {
  const rng = new Rng(s);
  const a = Tensor.persistent([s, s], "a").write(rng.uniformArray(s * s));
  const b = Tensor.persistent([s, s], "b").write(rng.uniformArray(s * s));
  const flops = 2 * s * s * s * reps;
  for (const kernel of KERNELS) {
    const gflops: number[] = [];
    Deno.bench({
      name: `matmul ${s}³ ${kernel} (${reps} per sync)`,
      group: `matmul ${s}`,
      baseline: kernel === "packed",
      warmup: 1,
      n,
      async fn(t) {
        setMatmulKernel(kernel);
        t.start();
        const t0 = performance.now();
        noGrad(() => {
          for (let r = 0; r < reps; r++) matmul(a, b);
        });
        await sync();
        const ms = performance.now() - t0;
        t.end();
        clearTape();
        setMatmulKernel("auto");
        gflops.push(flops / ms / 1e6);
        // The first call is Deno's warm-up (pipeline compile); report once all n are in.
        if (gflops.length === n + 1) {
          const g = gflops.slice(1).sort((x, y) => x - y);
          console.log(
            `matmul ${s}³ ${kernel}: best ${g[g.length - 1].toFixed(2)} GFLOP/s, ` +
              `median ${g[Math.floor(g.length / 2)].toFixed(2)} GFLOP/s ` +
              `(${g.length} x ${reps} dispatches)`,
          );
        }
      },
    });
  }
}

// Loss terms, gradient norms and clip flags summed on the GPU between logged steps (see
// shaders/metrics.wgsl): one tiny dispatch per scalar per step, one readback per logged line.
import { kernel } from "../gpu/kernel.ts";
import { fill } from "../ops/tape.ts";
import { Tensor } from "../ops/tensor.ts";

const MAX_SLOTS = 256;
const ACCUM = kernel("metrics.wgsl", "accum", {
  params: "@0 uniform ac",
  src: "@1 read acc_src",
  stats: "@2 read_write acc_stats",
});

/** One series' statistics since the last `read()`. */
export interface Summary {
  /** Mean over the finite values since the last read (NaN when there were none). */
  mean: number;
  /** Number of finite values added. */
  finite: number;
  /** Number of NaN or infinite values added (left out of `mean`). */
  nonFinite: number;
  /** The last value added, finite or not. */
  last: number;
}

/**
 * Named scalar series summed on the GPU between logged steps: `add` is one tiny dispatch and
 * reads nothing back; `read` is one readback for every series.
 */
export class GpuMetrics {
  readonly #stats = fill(Tensor.persistent([MAX_SLOTS * 4], "metrics"), 0);
  readonly #slots = new Map<string, number>();

  /** Add element `index` of `t` to the series `name` (mode "clipped": count 0 < v < 1). */
  add(name: string, t: Tensor, index = 0, mode: "value" | "clipped" = "value"): void {
    let slot = this.#slots.get(name);
    if (slot === undefined) {
      if (this.#slots.size >= MAX_SLOTS) throw new Error("flowgpu: too many logged metrics");
      slot = this.#slots.size;
      this.#slots.set(name, slot);
    }
    ACCUM.run({ src: t, stats: this.#stats }, {
      params: [slot, index, mode === "clipped" ? 1 : 0],
      groups: [1],
    });
  }

  /** Every series since the last read (a readback), then start over. */
  async read(): Promise<Map<string, Summary>> {
    const s = await this.#stats.read();
    fill(this.#stats, 0);
    const out = new Map<string, Summary>();
    for (const [name, i] of this.#slots) {
      const [sum, finite, nonFinite, last] = s.subarray(4 * i, 4 * i + 4);
      out.set(name, { mean: finite > 0 ? sum / finite : NaN, finite, nonFinite, last });
    }
    return out;
  }

  /** Free the GPU buffer of the sums. */
  release(): void {
    this.#stats.release();
  }
}

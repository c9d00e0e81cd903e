// `deno task reenact --run DIR --source CLIP --identity ID [--out PNG]`: loads a trained af, mi
// or afmi run (its config.json and checkpoint, as `deno task evaluate` does), reenacts a SynthLips
// clip onto another identity (z^i of one frame of that identity, z^r of every source frame) and
// writes a PNG strip: the source clip, the rendered ground truth (the identity with the source's
// mouth), the reenactment; the identity frame heads the last two rows. Prints PSNR and SSIM of the
// reenactment against the ground truth (src/eval/reenact.ts).
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  type SynthLips,
  synthLips,
  SYNTHLIPS_SPLITS,
  type SynthLipsSplit,
} from "../data/synthlips.ts";
import {
  canReenact,
  clipStrip,
  copyReenactor,
  type Query,
  queryFrame,
  reenactmentProtocol,
  type Reenactor,
  scoreFrames,
} from "../eval/reenact.ts";
import { openRun } from "./cli.ts";
import { helpSection, parseFlags } from "./flags.ts";
import { writePng } from "./png.ts";

const flags = {
  run: { default: "", help: "run folder of an af, mi or afmi run (config.json, checkpoint)" },
  source: {
    default: "test:0",
    help: "source clip: [SPLIT:]INDEX (clip index in the split) or [SPLIT:]IDENTITY/WORD",
  },
  identity: {
    default: "test:1",
    help: "identity to reenact onto: [SPLIT:]INDEX (splits train, val, test, ood)",
  },
  word: { default: "", help: "word of the identity's clip (default: the source's word)" },
  k: { default: 0, help: "frame of the identity's clip that gives z^i (0..28)" },
  style: {
    default: "photo",
    choices: ["photo", "painting"],
    help: "render the identity as a photo or in the OOD painting style",
  },
  method: {
    default: "",
    help: "af runs: 'af' (E(z), z - E(z)) or 'glow' (top latent, split-offs); default the run's",
  },
  every: { default: 1, min: 1, help: "show every N-th frame of the 29" },
  out: {
    default: "",
    help:
      "PNG path (default RUN/reenact/SOURCE-on-IDENTITY.png); with --floor the folder of its eval.json",
  },
  floor: {
    default: "",
    choices: ["", "identity", "source"],
    help: "no model: score copying the identity frame or the source clip by the Table I protocol " +
      "into OUT/eval.json (a floor row for deno task table)",
  },
  size: { default: 32, help: "--floor: SynthLips image side (as the runs it is read beside)" },
  vocab: { default: 32, help: "--floor: SynthLips words" },
  dataSeed: { default: 1, help: "--floor: seed of the SynthLips set" },
  evalClips: { default: 8, min: 1, help: "--floor: test clips" },
  evalSeeds: { default: 3, min: 1, help: "--floor: draws of the identity frame k" },
};

const USAGE = `usage: deno task reenact --run DIR --source CLIP --identity ID [--out PNG]

Reenacts SynthLips clip CLIP onto identity ID with the model of run DIR (af, mi or afmi) and
writes a strip: source row, rendered ground-truth row, reenacted row (the identity frame first).
With --floor identity|source (no run) it scores copying the identity frame or the source clip by
the Table I protocol into OUT/eval.json, a floor row for deno task table.
Clip and identity are indices of a split (test when SPLIT is left out): --source test:37,
--source 3/5 (test identity 3 saying word 5), --identity ood:12 --style painting.

${helpSection("options", flags)}
`;

/** "split:rest" or "rest" (split test), the split checked. */
function splitOf(spec: string, what: string): { split: SynthLipsSplit; rest: string } {
  const i = spec.indexOf(":");
  if (i < 0) return { split: "test", rest: spec };
  const split = spec.slice(0, i);
  if (!SYNTHLIPS_SPLITS.includes(split as SynthLipsSplit)) {
    throw new Error(
      `flowgpu: reenact: ${what} '${spec}': unknown split '${split}' (${
        SYNTHLIPS_SPLITS.join(", ")
      })`,
    );
  }
  return { split: split as SynthLipsSplit, rest: spec.slice(i + 1) };
}

function int(v: string, what: string): number {
  if (!/^\d+$/.test(v)) throw new Error(`flowgpu: reenact: ${what} '${v}' is not an index`);
  return Number(v);
}

/** The source clip of a --source spec (errors name the split's range). */
export function parseClip(set: SynthLips, spec: string) {
  const { split, rest } = splitOf(spec, "--source");
  const slash = rest.indexOf("/");
  if (slash < 0) return set.clipAt(split, int(rest, "--source"));
  const id = int(rest.slice(0, slash), "--source identity");
  return set.clip(split, id, int(rest.slice(slash + 1), "--source word"));
}

/** Split and index of an --identity spec, checked against the set. */
export function parseIdentity(set: SynthLips, spec: string): { split: SynthLipsSplit; id: number } {
  const { split, rest } = splitOf(spec, "--identity");
  const id = int(rest, "--identity");
  set.identity(split, id); // throws with the split's range
  return { split, id };
}

/** `deno task reenact ...`: writes the strip and returns its path and scores. */
export async function reenactCommand(
  args: string[],
): Promise<{ out: string; psnr: number; ssim: number } | undefined> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return undefined;
  }
  const { values: v, positionals } = parseFlags(args, [flags], "cpu");
  if (positionals.length) {
    throw new Error(`flowgpu: reenact: unexpected argument '${positionals[0]}' (see --help)`);
  }
  if (v.floor) {
    await floorCommand(v);
    return undefined;
  }
  const run = String(v.run);
  if (!run) throw new Error("flowgpu: reenact needs --run DIR (a run folder; see --help)");
  const { task, cfg, session } = await openRun(run, [], { lock: false });
  try {
    const model = session.model;
    if (!canReenact(model)) {
      throw new Error(
        `flowgpu: reenact: run ${run} is a '${task.name}' model; reenactment needs af, mi or afmi`,
      );
    }
    const method = String(v.method);
    if (method && task.name !== "af") {
      throw new Error(`flowgpu: reenact: --method is for af runs; ${run} is '${task.name}'`);
    }
    if (method && !["af", "glow"].includes(method)) {
      throw new Error(`flowgpu: reenact: --method ${method}: expected af or glow`);
    }
    if (method === "af" && cfg.stage === "glow") {
      throw new Error(`flowgpu: reenact: --method af: ${run} trained the Glow only (--stage glow)`);
    }
    const r: Reenactor = (model.reenactor as (m?: string) => Reenactor)(method || undefined);
    const set = r.set, S = set.size, N = set.frames;
    const src = parseClip(set, String(v.source));
    const { split, id } = parseIdentity(set, String(v.identity));
    const k = Number(v.k);
    if (k >= N) throw new Error(`flowgpu: reenact: --k ${k} is outside 0..${N - 1}`);
    const word = v.word === "" ? src.word : int(String(v.word), "--word");
    const style = v.style as Query["style"];
    const q: Query = { clip: set.clip(split, id, word), k, style };
    const xs = r.input(set.renderClip(src));
    const lead = r.input(queryFrame(set, q));
    const [decoded] = await r.reenact(xs, lead);
    const gt = r.input(set.renderCross(src, q.clip, k, { style }));
    const all = Array.from({ length: N }, (_, n) => n);
    const sc = scoreFrames(decoded, gt, all, S, set.mask());
    const cols = all.filter((n) => n % Number(v.every) === 0);
    const png = await clipStrip(S, [
      { lead: null, clip: xs },
      { lead, clip: gt },
      { lead, clip: decoded },
    ], cols);
    const name = (s: string) => s.replace(/[:/]/g, "_");
    const out = String(v.out) ||
      join(
        run,
        "reenact",
        `${name(String(v.source))}-on-${split}_${id}${style === "painting" ? "-painting" : ""}.png`,
      );
    writePng(out, png);
    console.log(
      `${task.name} (${r.method}) at step ${session.step}: clip ${src.split}:${src.index} ` +
        `(identity ${src.identity}, word ${src.word}) onto ${split} identity ${id} ` +
        `(word ${word}, frame ${k}, ${style}): PSNR ${sc.psnr.toFixed(2)} dB, SSIM ${
          sc.ssim.toFixed(3)
        } against the rendered ground truth`,
    );
    console.log(`wrote ${out}`);
    return { out, psnr: sc.psnr, ssim: sc.ssim };
  } finally {
    session.release();
  }
}

/**
 * `--floor identity|source --out DIR`: the Table I protocol on a copying reenactor, written as
 * DIR/eval.json of model "floor" so that `deno task table` shows it beside the runs.
 */
async function floorCommand(v: Record<string, unknown>): Promise<void> {
  const out = String(v.out);
  if (!out) {
    throw new Error("flowgpu: reenact: --floor needs --out DIR (the folder of its eval.json)");
  }
  // A floor folder holds only a floor's eval.json: never write into a training run's folder.
  for (const f of ["config.json", "checkpoint.safetensors"]) {
    if (existsSync(join(out, f))) {
      throw new Error(`flowgpu: reenact: --out ${out} holds a training run (${f}); choose another`);
    }
  }
  const what = v.floor as "identity" | "source";
  const set = await synthLips({
    seed: Number(v.dataSeed),
    size: Number(v.size),
    vocab: Number(v.vocab),
  });
  const p = await reenactmentProtocol(copyReenactor(set, what), {
    clips: Math.min(Number(v.evalClips), set.clipCount("test")),
    seeds: Number(v.evalSeeds),
  });
  Deno.mkdirSync(join(out, "eval"), { recursive: true });
  const images: string[] = [];
  for (const [name, png] of Object.entries(p.images)) {
    writePng(join(out, "eval", `${name}.png`), png);
    images.push(`eval/${name}.png`);
  }
  const config = { copy: what, size: v.size, vocab: v.vocab, dataSeed: v.dataSeed };
  const doc = { model: "floor", step: 0, metrics: p.metrics, images, config };
  Deno.writeTextFileSync(join(out, "eval.json"), JSON.stringify(doc, null, 2) + "\n");
  console.log(
    `floor copy-${what}: self PSNR ${(p.metrics.self_psnr as number).toFixed(2)}, cross (unseen) ` +
      `PSNR ${(p.metrics.cross_unseen_psnr as number).toFixed(2)}; wrote ${join(out, "eval.json")}`,
  );
}

if (import.meta.main) {
  try {
    await reenactCommand(Deno.args);
    Deno.exit(0);
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    Deno.exit(1);
  }
}

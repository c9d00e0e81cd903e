// The Table I protocol (src/eval/reenact.ts), `deno task reenact` and `deno task table`: PSNR of
// identical images is the cap and of a known pair its hand value; an oracle that returns the
// source scores self-reenactment at the cap and cross-identity as the source against the rendered
// ground truth, recomputed here from the same draws; tiny untrained AF (both routes) and MI models
// give finite values under the same keys, and each route decodes frame k from its own factors;
// training time from metrics.jsonl; the reenact strip of a saved run and its errors; the table of
// fake eval.json files in the paper's row order with its numbers and time ratios.
import { existsSync } from "node:fs";
import assert from "node:assert/strict";
import "./setup.ts";
import { join } from "node:path";
import { synthLips, SYNTHLIPS_FRAMES, toFlowInput } from "../src/data/synthlips.ts";
import {
  copyReenactor,
  CROSS_SETS,
  crossQuery,
  finishedRunSeconds,
  meanStd,
  modelPsnr,
  protocolClips,
  psnr,
  PSNR_CAP,
  reenactmentProtocol,
  type Reenactor,
  runTimes,
  selfFrame,
  toUnit,
  trainSeconds,
} from "../src/eval/reenact.ts";
import { clearTape } from "../src/ops/tape.ts";
import { type AfModel, afTask } from "../src/train/af_task.ts";
import { parseFlags } from "../src/train/flags.ts";
import { type MiModel, miTask } from "../src/train/mi_task.ts";
import { reenactCommand } from "../src/train/reenact_cli.ts";
import { buildTable, type EvalDoc, layouts, table1Row, tableCommand } from "../src/train/table.ts";
import { type AnyConfig, Session } from "../src/train/trainer.ts";
import { trainerTable } from "../src/train/trainer_flags.ts";

const N = SYNTHLIPS_FRAMES;
const near = (a: number, b: number, tol: number, what: string) =>
  assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

Deno.test("psnr: identical images give the cap; a known pair, masks, toUnit and meanStd by hand", () => {
  const a = [0.2, 0.4, 0.6, 0.8], b = [0.1, 0.4, 0.7, 0.8];
  // MSE = (0.1² + 0 + 0.1² + 0) / 4 = 0.005 -> 10 log10(200) dB.
  near(psnr(a, b), 10 * Math.log10(200), 1e-9, "PSNR of the pair");
  near(psnr(a, b), 23.0103, 1e-4, "PSNR of the pair (dB)");
  assert.equal(psnr(a, a), PSNR_CAP);
  assert.equal(PSNR_CAP, 100);
  // A plane [1, 0] repeated: elements 0 and 2 are inside (MSE 0.01 -> 20 dB), 1 and 3 outside.
  near(psnr(a, b, { plane: [1, 0] }), 20, 1e-9, "inside the mask");
  assert.equal(psnr(a, b, { plane: [1, 0], outside: true }), PSNR_CAP);
  assert.throws(() => psnr(a, [1]), /flowgpu: psnr: 4 values against 1/);
  assert.throws(() => psnr(a, b, { plane: [0, 0] }), /flowgpu: psnr: the mask selects no element/);
  const { x, bad } = toUnit(
    Float32Array.from([-0.7, 0.2, NaN, Infinity]),
    Float32Array.from([0, 0, 0.3, -0.3]),
  );
  assert.deepEqual([...x].map((v) => +v.toFixed(6)), [0, 0.7, 0, 1]);
  assert.equal(bad, 2);
  const ref = Float32Array.from([-0.25, 0, 0.25, 0.3]);
  near(modelPsnr(ref.map((v) => v + 0.1), ref), 20, 1e-5, "model-space PSNR of +0.1 everywhere");
  const [m, s] = meanStd([1, 2, 3, 4]);
  assert.equal(m, 2.5);
  near(s, Math.sqrt(1.25), 1e-12, "population std");
  assert.deepEqual(meanStd([7]), [7, 0]);
});

/** A stand-in model that "reenacts" by returning the source frames unchanged. */
async function copier(): Promise<Reenactor> {
  return copyReenactor(await synthLips({ size: 32, vocab: 10, logos: false }), "source");
}

const CONDS = ["self", ...CROSS_SETS.map((c) => `cross_${c}`)];
const KEYS = CONDS.flatMap((c) =>
  ["psnr", "ssim"].flatMap((m) => [`${c}_${m}`, `${c}_${m}_std`, `${c}_${m}_std_clips`])
    .concat([`${c}_psnr_box`, `${c}_psnr_outside`])
).concat(["eval_clips", "eval_seeds", "nonfinite_pixels", "eval_seconds"]);

Deno.test("protocol: a copying oracle scores self at the cap and cross as the source against the rendered truth", async () => {
  const r = await copier(), set = r.set, d = 3 * 32 * 32;
  const { metrics, images } = await reenactmentProtocol(r, { clips: 2, seeds: 2, stripClips: 1 });
  for (const k of KEYS) assert.ok(Number.isFinite(metrics[k] as number), `${k} = ${metrics[k]}`);
  assert.equal(metrics.reenact_method, "copy-source");
  assert.equal(metrics.eval_clips, 2);
  assert.equal(metrics.eval_seeds, 2);
  assert.equal(metrics.nonfinite_pixels, 0);
  // Self: x_n against x_n for n != k.
  assert.equal(metrics.self_psnr, PSNR_CAP);
  near(metrics.self_ssim as number, 1, 1e-9, "self SSIM");
  assert.equal(metrics.self_psnr_std, 0);
  // Cross: the source against GT_{T,n}, recomputed here from the protocol's draws.
  const clips = protocolClips(set, 2);
  assert.notEqual(clips[0].identity, clips[1].identity, "clips spread over identities");
  for (const which of CROSS_SETS) {
    const perSeed = [0, 1].map((s) =>
      clips.map((src, j) => {
        const q = crossQuery(set, src, j, s, which);
        if (which === "ood") assert.equal(q.clip.split, "ood");
        else assert.ok(q.clip.split === "test" && q.clip.identity !== src.identity, which);
        assert.equal(q.style, which === "painting" ? "painting" : "photo");
        const xs = toFlowInput(set.renderClip(src));
        const gt = toFlowInput(set.renderCross(src, q.clip, q.k, { style: q.style }));
        let sum = 0;
        for (let n = 0; n < N; n++) {
          let se = 0;
          for (let i = n * d; i < (n + 1) * d; i++) se += (xs[i] - gt[i]) ** 2;
          sum += 10 * Math.log10(d / se);
        }
        return sum / N;
      })
    );
    const seedMeans = perSeed.map((v) => (v[0] + v[1]) / 2);
    const mean = (seedMeans[0] + seedMeans[1]) / 2;
    near(metrics[`cross_${which}_psnr`] as number, mean, 1e-6, `cross_${which}_psnr`);
    near(
      metrics[`cross_${which}_psnr_std`] as number,
      Math.abs(seedMeans[0] - seedMeans[1]) / 2,
      1e-6,
      `cross_${which}_psnr_std`,
    );
    const clipMeans = [0, 1].map((j) => (perSeed[0][j] + perSeed[1][j]) / 2);
    near(
      metrics[`cross_${which}_psnr_std_clips`] as number,
      Math.abs(clipMeans[0] - clipMeans[1]) / 2,
      1e-6,
      `cross_${which}_psnr_std_clips`,
    );
    const ssim = metrics[`cross_${which}_ssim`] as number;
    assert.ok(ssim > 0 && ssim < 0.99, `cross ${which} SSIM ${ssim}: another face`);
    assert.ok((metrics[`cross_${which}_psnr`] as number) < 30, "another face is far");
  }
  // Frame k is left out of self-reenactment: an oracle that ruins the source frame equal to its
  // identity frame still scores the cap there, and the same on the cross sets.
  const ruin: Reenactor = {
    ...r,
    reenact: (source, identities) => {
      const outs = Array.from({ length: identities.length / d }, (_, j) => {
        const id = identities.subarray(j * d, (j + 1) * d), out = source.slice();
        for (let n = 0; n < N; n++) {
          if (id.every((v, i) => v === source[n * d + i])) out.fill(NaN, n * d, (n + 1) * d);
        }
        return out;
      });
      return Promise.resolve(outs);
    },
  };
  const ruined = (await reenactmentProtocol(ruin, { clips: 2, seeds: 2, stripClips: 0 })).metrics;
  assert.equal(ruined.self_psnr, PSNR_CAP);
  assert.equal(ruined.nonfinite_pixels, 0);
  for (const k of KEYS.filter((k) => k.startsWith("cross_"))) assert.equal(ruined[k], metrics[k]);
  // The draws depend on the clip and seed only (every model sees the same k and queries).
  assert.equal(selfFrame(1, 1), selfFrame(1, 1));
  assert.ok(
    new Set([0, 1, 2, 3, 4].map((s) => selfFrame(0, s))).size > 1,
    "k varies with the seed",
  );
  for (const name of ["reenact_self", ...CROSS_SETS.map((c) => `reenact_${c}`)]) {
    assert.deepEqual([...images[name].subarray(1, 4)], [0x50, 0x4e, 0x47], `${name} is a PNG`);
  }
  await assert.rejects(
    () => reenactmentProtocol(r, { clips: 1, seeds: 0 }),
    /flowgpu: reenact: seeds must be an integer >= 1, got 0/,
  );
  await assert.rejects(
    () => reenactmentProtocol(r, { clips: 5000, seeds: 1 }),
    /flowgpu: reenact: clips must be 1\.\.1000 \(the test split\), got 5000/,
  );
  await assert.rejects(
    // deno-lint-ignore no-explicit-any
    () => reenactmentProtocol(r, { clips: 1, seeds: 1, cross: ["mars" as any] }),
    /flowgpu: reenact: unknown query set 'mars'/,
  );
});

// ---- tiny models -----------------------------------------------------------------------------

const AF_TINY = [
  ...["--levels", "2", "--depth", "1", "--width", "8", "--rnn-hidden", "8", "--identities", "4"],
  ...["--vocab", "10", "--no-logos", "--batch", "4", "--init-batch", "8", "--warmup", "0"],
  ...["--eval-clips", "1", "--eval-frames", "8", "--eval-seeds", "2"],
];
const MI_TINY = [
  ...["--levels", "2", "--depth", "1", "--width", "8", "--batch", "8", "--init-batch", "16"],
  ...["--no-logos", "--vocab", "10", "--train-ids", "20", "--eval-clips", "1", "--eval-seeds", "2"],
];

async function tinySession(task: typeof afTask | typeof miTask, args: string[], out: string) {
  const { values } = parseFlags(
    [...args, "--out", out],
    [trainerTable(task.trainer), task.flags],
    "cpu",
  );
  const cfg = { ...values, model: task.name } as AnyConfig;
  const s = new Session(task, cfg, await task.build(cfg as never, "train"));
  s.model.init?.();
  clearTape();
  return { s, cfg };
}

Deno.test("protocol on tiny untrained AF (af and glow routes) and MI: finite values under the same keys; frame k decodes from its own factors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const af = await tinySession(afTask, AF_TINY, dir);
    const mi = await tinySession(miTask, MI_TINY, dir);
    const am = af.s.model as AfModel, mm = mi.s.model as MiModel;
    const routes = [am.reenactor("af"), am.reenactor("glow"), mm.reenactor()];
    const keySets: string[][] = [];
    for (const r of routes) {
      const { metrics } = await reenactmentProtocol(r, { clips: 1, seeds: 2, stripClips: 0 });
      for (const k of KEYS) {
        assert.ok(Number.isFinite(metrics[k] as number), `${r.method}: ${k} = ${metrics[k]}`);
      }
      for (const c of CONDS) {
        const p = metrics[`${c}_psnr`] as number, s = metrics[`${c}_ssim`] as number;
        assert.ok(p > 0 && p <= PSNR_CAP, `${r.method} ${c} PSNR ${p}`);
        assert.ok(s >= -1 && s <= 1, `${r.method} ${c} SSIM ${s}`);
      }
      assert.equal(metrics.reenact_method, r.method);
      keySets.push(Object.keys(metrics).sort());
      // §8's decode sanity: frame k under its own z^i (and z^r) comes back (> 60 dB).
      const set = r.set, d = 3 * set.size * set.size, k = 5;
      const xs = r.input(set.renderClip(protocolClips(set, 1)[0]));
      const [out] = await r.reenact(xs, xs.slice(k * d, (k + 1) * d));
      const back = modelPsnr(out.subarray(k * d, (k + 1) * d), xs.subarray(k * d, (k + 1) * d));
      assert.ok(back > 60, `${r.method}: frame k round trip ${back} dB`);
    }
    assert.deepEqual(keySets[1], keySets[0], "af and glow routes: same keys");
    assert.deepEqual(keySets[2], keySets[0], "af and mi: same keys");
    assert.deepEqual(routes.map((r) => r.method), ["af", "glow", "mi"]);
    // The tasks' final evaluation carries the protocol, γ and the training time.
    const e = await mi.s.model.evaluate({ final: true });
    for (const k of [...KEYS, "gamma", "test_bpd"]) {
      assert.ok(Number.isFinite(e.metrics[k] as number), `mi final: ${k} = ${e.metrics[k]}`);
    }
    assert.equal(e.metrics.gamma, 0.5);
    assert.ok(Number.isNaN(e.metrics.train_seconds as number), "no metrics.jsonl: no time");
    af.s.release();
    mi.s.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- training time ---------------------------------------------------------------------------

Deno.test("training time: windows of metrics.jsonl; a finished run's eval.json or train_minutes; totals", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = join(dir, "a"), b = join(dir, "b"), c = join(dir, "c");
    for (const p of [a, b, c]) await Deno.mkdir(p);
    const lines = [
      { step: 5, loss: 1, examples_per_s: 10 },
      { step: 10, loss: 1, examples_per_s: 20 },
      { step: 10, test_bpd: 3 }, // an evaluation: no window
      { step: 10, train_minutes: 9, final: true },
    ];
    await Deno.writeTextFile(
      join(a, "metrics.jsonl"),
      lines.map((l) => JSON.stringify(l)).join("\n") + '\n{"torn',
    );
    // 5 steps x 4 examples at 10/s, then 5 x 4 at 20/s.
    assert.equal(trainSeconds(a, 4), 2 + 1);
    assert.ok(Number.isNaN(trainSeconds(c, 4)), "no log: NaN");
    assert.equal(finishedRunSeconds(a), 540, "train_minutes of the final line");
    await Deno.writeTextFile(
      join(b, "eval.json"),
      JSON.stringify({ model: "mi", metrics: { train_seconds_total: 77 } }),
    );
    assert.equal(finishedRunSeconds(b), 77, "eval.json first");
    assert.ok(Number.isNaN(finishedRunSeconds(c)));
    // A prefix of a run (no final line): its progress lines, at its config's batch.
    const d = join(dir, "d");
    await Deno.mkdir(d);
    await Deno.writeTextFile(
      join(d, "metrics.jsonl"),
      lines.slice(0, 2).map((l) => JSON.stringify(l)).join("\n"),
    );
    await Deno.writeTextFile(join(d, "config.json"), JSON.stringify({ batch: 4 }));
    assert.equal(finishedRunSeconds(d), 3, "progress lines when the run has no final line");
    assert.deepEqual(runTimes(a, 4, b), { train_seconds: 3, train_seconds_total: 80 });
    assert.deepEqual(runTimes(a, 4), { train_seconds: 3, train_seconds_total: 3 });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- deno task reenact -----------------------------------------------------------------------

Deno.test("reenact: a strip (source, ground truth, reenactment) from a saved run; clear errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { s, cfg } = await tinySession(afTask, AF_TINY, dir);
    await s.save(join(dir, "checkpoint.safetensors"));
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(cfg));
    s.release();
    const png = join(dir, "strip.png");
    const args = ["--run", dir, "--source", "test:2/3", "--identity", "ood:7", "--out", png];
    const r = await reenactCommand([...args, "--every", "2"]);
    assert.equal(r!.out, png);
    assert.ok(Number.isFinite(r!.psnr) && r!.psnr > 0 && r!.psnr <= PSNR_CAP, `PSNR ${r!.psnr}`);
    const bytes = await Deno.readFile(png);
    const view = new DataView(bytes.buffer);
    // 1 + 15 columns (frames 0, 2, ..., 28) and 3 rows of 32 px with 2-px gaps.
    assert.equal(view.getUint32(16), 16 * 34 + 2, "width");
    assert.equal(view.getUint32(20), 3 * 34 + 2, "height");
    const glow = await reenactCommand([...args, "--method", "glow", "--style", "painting"]);
    assert.notEqual(glow!.psnr, r!.psnr, "another route and style");
    await assert.rejects(
      () => reenactCommand([...args.slice(0, 4), "--identity", "ood:100"]),
      /flowgpu: synthlips: identity 100 is outside 0\.\.99 of the ood split/,
    );
    await assert.rejects(
      () => reenactCommand([...args.slice(0, 2), "--source", "moon:1"]),
      /flowgpu: reenact: --source 'moon:1': unknown split 'moon'/,
    );
    await assert.rejects(
      () => reenactCommand([...args, "--k", "29"]),
      /flowgpu: reenact: --k 29 is outside 0\.\.28/,
    );
    await assert.rejects(
      () => reenactCommand([...args, "--method", "mi"]),
      /flowgpu: reenact: --method mi: expected af or glow/,
    );
    await assert.rejects(() => reenactCommand([]), /flowgpu: reenact needs --run DIR/);
    await assert.rejects(
      () => reenactCommand(["--run", join(dir, "nothing")]),
      /config\.json not found or unreadable: not a run folder/,
    );
    await Deno.remove(join(dir, "checkpoint.safetensors"));
    await assert.rejects(
      () => reenactCommand(args),
      /flowgpu: checkpoint .*checkpoint\.safetensors not found/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- deno task table -------------------------------------------------------------------------

/** An eval.json of a fake run. */
function fakeEval(model: string, config: Record<string, unknown>, psnr: number, secs: number) {
  return {
    model,
    step: 100,
    metrics: {
      self_psnr: psnr,
      self_psnr_std: 0.25,
      self_ssim: 0.9,
      self_ssim_std: 0.01,
      cross_unseen_psnr: psnr - 10,
      cross_unseen_psnr_std: 0.5,
      eval_clips: 8,
      eval_seeds: 3,
      train_seconds_total: secs,
    },
    config: { size: 32, levels: 4, ...config },
  };
}

Deno.test("table: an AF run with the plain MLP encoder is its own row, apart from the residual default", () => {
  const label = (c: Record<string, unknown>) => table1Row("af", { stage: "two", ...c })?.label;
  assert.equal(label({}), "AF flow-2 (E_φ)");
  assert.equal(label({ encoder: "residual" }), "AF flow-2 (E_φ)");
  assert.equal(label({ encoder: "mlp", lossP: false }), "AF flow-2 (E_φ, plain MLP E, w/o L_p)");
});

Deno.test("table: fake eval.json files make Table I rows in the paper's order, its numbers beside, time vs Glow", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const write = async (name: string, doc: object) => {
      await Deno.mkdir(join(dir, name));
      await Deno.writeTextFile(join(dir, name, "eval.json"), JSON.stringify(doc));
      return join(dir, name);
    };
    const af = await write("run-af", fakeEval("af", { stage: "two", lossP: false }, 27, 140));
    const glow = await write("run-glow", fakeEval("af", { stage: "glow", levels: 5 }, 25, 100));
    const vae = await write("other-vae", { model: "vae", step: 1, metrics: {}, config: {} });
    const stem = join(dir, "out", "table1");
    const t = tableCommand(["--runs", `${af},${glow},${vae}`, "--out", `${stem}.md`])!;
    assert.deepEqual(t.rows.map((r) => r.label), ["Glow (γ = 0.0625)", "AF flow-2 (E_φ, w/o L_p)"]);
    assert.deepEqual(t.rows.map((r) => r.run), [glow, af]);
    assert.deepEqual(t.baseline, { run: glow, train_seconds: 100 });
    const [g, a] = t.rows;
    assert.deepEqual(a.values.self_psnr, { mean: 27, std: 0.25 });
    assert.deepEqual(a.values.cross_unseen_psnr, { mean: 17, std: 0.5 });
    assert.equal(a.values.cross_ood_psnr, null, "a metric the run lacks");
    assert.equal(a.values.time!.mean, 1.4);
    assert.equal(g.values.time!.mean, 1);
    assert.deepEqual(a.paper, {
      psnr: { mean: 24.4, std: 0.19 },
      ssim: { mean: 0.886, std: 0.022 },
      time: { mean: 1.32 },
    });
    assert.deepEqual(g.paper!.psnr, { mean: 26.0, std: 0.2 });
    assert.ok(t.notes.some((n) => n.includes("'vae' run has no row in table1")));
    const md = await Deno.readTextFile(`${stem}.md`);
    assert.ok(
      md.includes(
        "| AF flow-2 (E_φ, w/o L_p) | run-af | 100 | 27.00 ±0.25 | 0.900 ±0.010 | 17.00 ±0.50 |",
      ),
      md,
    );
    assert.ok(md.includes("| 2.3 | 1.40× | 24.4 ±0.19 | 0.886 ±0.022 | 1.32× |"), md);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(`${stem}.json`)), t);
    // A glob takes the evaluated folders; --all-paper-rows adds the paper's other rows in order.
    const all = tableCommand(["--runs", join(dir, "run-*"), "--all-paper-rows"])!;
    assert.equal(all.rows.length, layouts.table1.paperRows.length);
    assert.deepEqual(
      all.rows.slice(0, 4).map((r) => [r.label, r.run]),
      [
        ["DAVS (w/o advers) [15]", ""],
        ["DAVS [15]", ""],
        ["Glow (γ = 0.0625)", glow],
        ["Glow (γ = 0.125)", ""],
      ],
    );
    // Runs evaluated differently are flagged; without a Glow run there is no time ratio.
    const docs: EvalDoc[] = [
      { run: "x", ...fakeEval("mi", { wordLoss: true, alpha: 0 }, 26, 50) },
      { run: "y", ...fakeEval("afmi", { beta: 0.8, levels: 3 }, 28, 90) },
    ];
    docs[1].metrics.eval_clips = 16;
    const t2 = buildTable(layouts.table1, docs);
    assert.deepEqual(t2.rows.map((r) => r.label), [
      "MI flow (L_y, w/o L_r)",
      "AF-MI flow (β = 0.8, γ = 0.25)",
    ]);
    assert.equal(t2.rows[1].paper, null, "no paper row at γ = 0.25");
    assert.equal(t2.rows[0].values.time, null);
    assert.ok(t2.notes.includes("the runs differ in eval_clips: 8, 16"));
    assert.throws(
      () => tableCommand(["--runs", join(dir, "missing")]),
      /flowgpu: table: .*missing\/eval\.json not found \(evaluate it first/,
    );
    assert.throws(
      () => tableCommand(["--runs", join(dir, "zzz-*")]),
      /flowgpu: table: no evaluated run matches/,
    );
    assert.throws(() => tableCommand([]), /flowgpu: table needs --runs/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("copyReenactor: 'identity' repeats each identity frame over the clip, 'source' copies the clip", async () => {
  const set = await synthLips({ size: 32, vocab: 10, logos: false }), d = 3 * 32 * 32;
  const source = Float32Array.from({ length: 3 * d }, (_, i) => Math.sin(i));
  const ids = Float32Array.from({ length: 2 * d }, (_, i) => Math.cos(i));
  const rep = await copyReenactor(set, "identity").reenact(source, ids);
  assert.equal(rep.length, 2);
  for (let j = 0; j < 2; j++) {
    for (let n = 0; n < 3; n++) {
      assert.deepEqual(rep[j].subarray(n * d, (n + 1) * d), ids.subarray(j * d, (j + 1) * d));
    }
  }
  const cp = await copyReenactor(set, "source").reenact(source, ids);
  assert.deepEqual(cp.map((x) => x.length), [3 * d, 3 * d]);
  assert.deepEqual(cp[1], source);
  assert.notEqual(cp[1], source, "a copy, not the caller's buffer");
});

Deno.test("reenact --floor refuses a training run's folder", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(dir, "config.json"), "{}");
    await assert.rejects(
      () => reenactCommand(["--floor", "identity", "--out", dir]),
      /holds a training run \(config\.json\)/,
    );
    assert.ok(!existsSync(join(dir, "eval.json")), "nothing written");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// `deno task table --layout shapes`: fake eval.json files of the plain VAE, Lr-LiVAE, DisUnknown
// and CMI-VAE make one row each with the labelled factor, its MIG (mig_lab; the VAE's mig_<f>),
// the leakage under each model's own keys, MSE, budget and training time, and a check against
// the VAE that says yes only when both MIG and normalised leakage beat it (and names what fails
// otherwise); --factor, a DisUnknown run with several labelled factors, a VAE evaluated before
// it had leak_ keys and a table without a VAE run.
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  buildTable,
  type EvalDoc,
  labelledFactors,
  layouts,
  tableCommand,
} from "../src/train/table.ts";

const shapes = layouts.shapes;
const base = { data: "shapes2.5d", size: 0, batch: 32 };

/** Eval docs as the four tasks write them (keys of vae/lrlivae/disunknown/cmivae_task.ts). */
function docs(): Record<string, EvalDoc> {
  return {
    vae: {
      run: "runs/vae",
      model: "vae",
      step: 4000,
      metrics: {
        mig_object_hue: 0.1,
        mig_lab: 0.2,
        mig_wall_hue: 0.3,
        leak_object_hue: 0.8,
        leak_object_hue_chance: 0.1,
        leak_wall_hue: 0.55,
        leak_wall_hue_chance: 0.1,
        probe_all_object_hue: 0.95,
        mse_01: 0.004,
        eval_images: 2000,
      },
      config: { ...base, latents: 10, beta: 1, steps: 4000 },
    },
    lrlivae: {
      run: "runs/lrlivae",
      model: "lrlivae",
      step: 1200,
      metrics: {
        label: "object_hue",
        mig_lab: 0.5,
        mig_object_hue: 0.5,
        leak_acc: 0.2,
        leak_chance: 0.12,
        leak_norm: (0.2 - 0.12) / 0.88,
        mse_01: 0.006,
        eval_images: 2000,
      },
      config: { ...base, label: "object_hue", variant: "lrlivae", zs: 4, zu: 6, steps: 1200 },
    },
    disunknown: {
      run: "runs/du",
      model: "disunknown",
      step: 2100,
      metrics: {
        mig_lab: 0.6,
        leak_object_hue: 0.9,
        leak_object_hue_chance: 0.1,
        mse_01: 0.005,
        eval_images: 2000,
        train_seconds: 1800,
      },
      config: { ...base, labelled: "object_hue", advR: false, match: true, steps: 2100 },
    },
    cmivae: {
      run: "runs/cmi",
      model: "cmivae",
      step: 2300,
      metrics: {
        specified: "object_hue",
        mig_lab: 0.05,
        leak_acc: 0.15,
        leak_chance: 0.1,
        mse_01: 0.007,
        eval_images: 2000,
      },
      config: { ...base, steps: 2300 },
    },
  };
}

Deno.test("table shapes: one row per run with its labelled factor, MIG, leakage, budget and the check against the VAE", () => {
  const d = docs();
  d.vae.trainMinutes = 12.5;
  const t = buildTable(shapes, [d.vae, d.lrlivae, d.disunknown, d.cmivae]);
  assert.deepEqual(t.rows.map((r) => r.label), [
    "VAE (10 latents, object_hue)",
    "Lr-LiVAE (z_s 4 + z_u 6, object_hue)",
    "DisUnknown (non-adversarial R, object_hue)",
    "CMI-VAE (object_hue)",
  ]);
  const [vae, lr, du, cmi] = t.rows;
  const mean = (r: typeof vae, id: string) => r.values[id]?.mean;
  // The VAE: mig_<f> (not its mig_lab, an average over all six factors) and leak_<f>.
  assert.equal(mean(vae, "mig"), 0.1);
  assert.equal(mean(vae, "leak"), 0.8);
  assert.equal(mean(vae, "leak_chance"), 0.1);
  assert.ok(Math.abs(mean(vae, "leak_norm")! - 0.7 / 0.9) < 1e-12);
  assert.deepEqual(vae.text, { factor: "object_hue", check: "reference" });
  // A second plain VAE (its longer default budget, say) is another baseline, not checked.
  const longer = {
    ...d.vae,
    run: "runs/vae-4000",
    metrics: { ...d.vae.metrics, mig_object_hue: 0.2 },
  };
  const t2 = buildTable(shapes, [d.vae, longer, d.lrlivae]);
  assert.deepEqual(t2.rows.map((r) => r.text?.check), [
    "reference",
    "baseline (checks use runs/vae)",
    "yes",
  ]);
  assert.equal(mean(vae, "train_minutes"), 12.5, "from metrics.jsonl");
  assert.deepEqual([mean(vae, "steps"), mean(vae, "batch"), mean(vae, "mse")], [4000, 32, 0.004]);
  // Lr-LiVAE: mig_lab and leak_acc / leak_chance; beats the VAE on both.
  assert.deepEqual([mean(lr, "mig"), mean(lr, "leak"), mean(lr, "leak_chance")], [0.5, 0.2, 0.12]);
  assert.ok(Math.abs(mean(lr, "leak_norm")! - 0.08 / 0.88) < 1e-12);
  assert.equal(lr.text!.check, "yes");
  assert.equal(lr.values.train_minutes, null, "no time anywhere");
  // DisUnknown: leak_<f>; a higher MIG but more leakage than the VAE.
  assert.deepEqual([mean(du, "mig"), mean(du, "leak"), mean(du, "leak_chance")], [0.6, 0.9, 0.1]);
  assert.equal(du.text!.check, "no (leakage)");
  assert.equal(mean(du, "train_minutes"), 30, "train_seconds / 60");
  // CMI-VAE: less leakage but a lower MIG.
  assert.equal(cmi.text!.check, "no (MIG)");
  assert.deepEqual(cmi.text!.factor, "object_hue");
  assert.equal(t.paperColumns.length, 0);
  assert.ok(t.notes.some((n) => n.includes("no Shapes2.5D numbers")));
  assert.ok(!t.notes.some((n) => n.includes("differ")), t.notes.join("\n"));
  // Both fail: a run no better than the VAE on either.
  const worse = {
    ...d.cmivae,
    run: "runs/cmi2",
    metrics: { ...d.cmivae.metrics, mig_lab: 0.1, leak_acc: 0.82 },
  };
  assert.equal(buildTable(shapes, [d.vae, worse]).rows[1].text!.check, "no (MIG, leakage)");
});

Deno.test("table shapes: --factor, several labelled factors, a VAE without leak_ keys, no VAE run", () => {
  const d = docs();
  // DisUnknown with every factor labelled (--labelled empty): its leak_<f>_chance keys name them.
  const du: EvalDoc = {
    ...d.disunknown,
    config: { ...d.disunknown.config, labelled: "", advR: true },
    metrics: {
      mig_lab: 0.9,
      mig_object_hue: 0.05,
      mig_wall_hue: 0.7,
      leak_object_hue: 0.5,
      leak_object_hue_chance: 0.1,
      leak_wall_hue: 0.2,
      leak_wall_hue_chance: 0.1,
      eval_images: 2000,
    },
  };
  assert.deepEqual(labelledFactors(du), ["object_hue", "wall_hue"]);
  const t = buildTable(shapes, [d.vae, du], { factor: "wall_hue" });
  assert.deepEqual(t.rows.map((r) => r.label), [
    "VAE (10 latents, wall_hue)",
    "DisUnknown (wall_hue)",
  ]);
  // Several labelled codes: the row's factor's own gap, not their mean mig_lab.
  assert.equal(t.rows[1].values.mig!.mean, 0.7);
  assert.equal(t.rows[0].values.mig!.mean, 0.3);
  assert.equal(t.rows[1].text!.check, "yes");
  // Without --factor: the first labelled factor.
  assert.equal(buildTable(shapes, [d.vae, du]).rows[1].text!.check, "no (MIG)");
  // A VAE evaluated before it wrote leak_ keys: the check says what is missing.
  const old = { ...d.vae, metrics: { mig_object_hue: 0.1 } };
  assert.equal(
    buildTable(shapes, [old, d.lrlivae]).rows[1].text!.check,
    "? (no VAE: leakage for object_hue)",
  );
  // Runs of different factors; no VAE; a model with no row; a different evaluation size.
  const hue = { ...d.lrlivae, metrics: { ...d.lrlivae.metrics, label: "floor_hue" } };
  const cmi = { ...d.cmivae, metrics: { ...d.cmivae.metrics, eval_images: 500 } };
  const af: EvalDoc = { run: "runs/af", model: "af", step: 1, metrics: {}, config: {} };
  const t2 = buildTable(shapes, [hue, cmi, af]);
  assert.deepEqual(t2.rows.map((r) => [r.text!.factor, r.text!.check]), [
    ["floor_hue", null],
    ["object_hue", null],
  ]);
  for (
    const note of [
      "the runs label different factors (floor_hue, object_hue)",
      "no plain VAE run",
      "'af' run has no row in shapes",
      "the runs differ in eval_images: 2000, 500",
    ]
  ) assert.ok(t2.notes.some((n) => n.includes(note)), `${note}: ${t2.notes.join("\n")}`);
});

Deno.test("table shapes: deno task table --layout shapes writes Markdown and JSON, time from metrics.jsonl", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const d = docs();
    const write = async (name: string, doc: EvalDoc, log?: object[]) => {
      const path = join(dir, name);
      await Deno.mkdir(path);
      const { run: _, ...file } = doc;
      await Deno.writeTextFile(join(path, "eval.json"), JSON.stringify(file));
      if (log) {
        const lines = log.map((l) => JSON.stringify(l)).join("\n");
        await Deno.writeTextFile(join(path, "metrics.jsonl"), lines + '\n{"step":');
      }
      return path;
    };
    const vae = await write("vae", d.vae, [
      { step: 100, loss: 1, examples_per_s: 50 },
      { step: 4000, final: true, train_minutes: 20 },
      { step: 4000, final: true, train_minutes: 21.5 },
    ]);
    const lr = await write("lrlivae", d.lrlivae);
    const stem = join(dir, "out", "shapes");
    const t = tableCommand(["--runs", `${vae},${lr}`, "--layout", "shapes", "--out", stem])!;
    assert.equal(t.rows[0].values.train_minutes!.mean, 21.5, "the last final line");
    const md = await Deno.readTextFile(`${stem}.md`);
    assert.ok(
      md.includes(
        "| VAE (10 latents, object_hue) | vae | 4000 | object_hue | 0.100 | 0.800 | 0.100 | " +
          "0.778 | 0.0040 | 4000 | 32 | 21.5 | reference |",
      ),
      md,
    );
    assert.ok(md.includes("| 0.0060 | 1200 | 32 | – | yes |"), md);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(`${stem}.json`)), t);
    assert.throws(
      () => tableCommand(["--runs", vae, "--layout", "nope"]),
      /nope/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

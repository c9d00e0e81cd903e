// `deno task table --layout disunknown-t2`: DisUnknown MNIST runs become the supplement's Table 2
// rows by their Stage-II switches (standard, non-adversarial R, no unknown-code condition), beside
// the paper's MSE and MIG; runs on other data or of other models are left out with a note.
import assert from "node:assert/strict";
import { buildTable, type EvalDoc, layouts, table2Row } from "../src/train/table.ts";

const t2 = layouts["disunknown-t2"];

const run = (
  name: string,
  config: Record<string, unknown>,
  metrics: Record<string, number>,
): EvalDoc => ({
  run: `runs/${name}`,
  model: "disunknown",
  step: 400,
  metrics: { eval_images: 2000, ...metrics },
  config: { data: "mnist", width: 8, steps: 400, ...config },
});

Deno.test("table2Row: the Stage-II switches name the row; other data and models have none", () => {
  assert.equal(table2Row("disunknown", {})?.label, "Standard");
  assert.equal(table2Row("disunknown", { advR: true, match: true })?.label, "Standard");
  assert.equal(table2Row("disunknown", { advR: false })?.label, "Non-adversarial R");
  assert.equal(table2Row("disunknown", { match: false })?.label, "No unknown-code condition");
  assert.equal(
    table2Row("disunknown", { advR: false, match: false })?.label,
    "Non-adversarial R, No unknown-code condition",
  );
  assert.notEqual(
    table2Row("disunknown", { adversary: "nll" })?.key,
    table2Row("disunknown", {})?.key,
  );
  assert.equal(table2Row("disunknown", { data: "shapes2.5d" }), null);
  assert.equal(table2Row("vae", {}), null);
});

Deno.test("disunknown-t2: rows in the paper's order with its MSE and MIG beside ours", () => {
  const docs = [
    run("nomatch", { match: false }, {
      mse_01: 0.03,
      mig_lab: 0.4,
      swap_acc: 0.5,
      leak_digit: 0.2,
    }),
    run("std", {}, { mse_01: 0.02, mig_lab: 0.3, swap_acc: 0.6, leak_digit: 0.8 }),
    run("noadv", { advR: false }, { mse_01: 0.025, mig_lab: 0.35, swap_acc: 0.4, leak_digit: 0.5 }),
    { ...run("shapes", { data: "shapes2.5d" }, { mse_01: 0.01 }) },
  ];
  const t = buildTable(t2, docs);
  assert.deepEqual(t.rows.map((r) => r.label), [
    "Standard",
    "Non-adversarial R",
    "No unknown-code condition",
  ]);
  assert.deepEqual(t.rows.map((r) => r.run), ["runs/std", "runs/noadv", "runs/nomatch"]);
  assert.deepEqual(t.rows.map((r) => r.values.mig?.mean), [0.3, 0.35, 0.4]);
  assert.deepEqual(t.rows.map((r) => r.values.mse?.mean), [0.02, 0.025, 0.03]);
  assert.deepEqual(t.rows.map((r) => r.values.leak?.mean), [0.8, 0.5, 0.2]);
  assert.deepEqual(t.rows.map((r) => r.paper?.mig.mean), [0.978, 0.916, 0.930]);
  assert.deepEqual(t.rows.map((r) => r.paper?.mse.mean), [0.0086, 0.0103, 0.0402]);
  assert.ok(t.notes.some((n) => n.startsWith("runs/shapes:")), t.notes.join("\n"));
});

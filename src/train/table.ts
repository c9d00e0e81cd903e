// `deno task table --runs DIR,DIR,... [--layout table1] [--out FILE]` gathers the eval.json of
// several runs into one results table, Markdown and JSON, in the shape of a paper's table, with
// the paper's own numbers beside ours where the spec gives them. A layout (the `layouts`
// registry) says which runs make which row, which columns to show, and the paper's rows; another
// paper's table is one more entry. Implemented: Table I of Chien & Huang (af-mi-flow.md §6.3).
import { dirname, join } from "node:path";
import { helpSection, parseFlags } from "./flags.ts";

/** One run's eval.json (as trainer.ts's writeEval writes it) and where it came from. */
export interface EvalDoc {
  /** The run folder. */
  run: string;
  model: string;
  step: number;
  metrics: Record<string, number | string | null>;
  config: Record<string, unknown>;
}

/** A value with an optional ± (both NaN-free when present). */
export interface Cell {
  mean: number;
  std?: number;
}

/** A column of our figures: a metric of the run, or one computed from all rows (`time`). */
export interface Column {
  id: string;
  header: string;
  /** Decimals in the Markdown (of the ± too, unless `stdDigits`). */
  digits: number;
  stdDigits?: number;
  /** The cell of a run; `ctx` has what is shared by all rows (the baseline's time). */
  value(doc: EvalDoc, ctx: TableContext): Cell | undefined;
  /** Printed after the number (e.g. "×"). */
  suffix?: string;
}

/** A row of the paper's table: its label, the config its row key is computed from, its numbers. */
export interface PaperRow {
  label: string;
  /** The model and flags of the row (missing flags take the task defaults), or null (no model of ours). */
  run: { model: string; config: Record<string, unknown> } | null;
  values: Record<string, Cell>;
}

/** What all rows of a table share. */
export interface TableContext {
  /** Training seconds of the time baseline (NaN when there is none). */
  baselineSeconds: number;
}

/** A table layout: how runs become rows, our columns, the paper's columns and rows. */
export interface Layout {
  name: string;
  title: string;
  /** A run's row key and label, or null when the run has no place in this table. */
  row(model: string, config: Record<string, unknown>): { key: string; label: string } | null;
  columns: Column[];
  paperColumns: Omit<Column, "value">[];
  paperRows: PaperRow[];
  /** The run whose time is 1× (among the table's runs), if the layout has one. */
  baseline?(rows: { key: string; doc: EvalDoc }[]): EvalDoc | undefined;
  /** Lines printed under the table. */
  notes: string[];
}

/** One row of a built table. */
export interface TableRow {
  label: string;
  key: string;
  /** The run folder ("" for a paper-only row). */
  run: string;
  step: number | null;
  values: Record<string, Cell | null>;
  paper: Record<string, Cell> | null;
}

/** A built table: rows in the paper's order, then runs the paper has no row for. */
export interface Table {
  layout: string;
  title: string;
  columns: { id: string; header: string }[];
  paperColumns: { id: string; header: string }[];
  baseline: { run: string; train_seconds: number } | null;
  rows: TableRow[];
  notes: string[];
}

// ---- Table I (af-mi-flow.md §6.3) -----------------------------------------------------------

const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);

/** Metric `m` of a run with `m_std` as its ± (undefined when missing). */
function metric(m: string, withStd = true): (doc: EvalDoc) => Cell | undefined {
  return (doc) => {
    const mean = num(doc.metrics[m]);
    if (mean === undefined) return undefined;
    const std = withStd ? num(doc.metrics[`${m}_std`]) : undefined;
    return std === undefined ? { mean } : { mean, std };
  };
}

/** γ = 2^-(L-1) as the paper writes it (0.0625, 0.125, 0.25). */
const gammaOf = (levels: unknown) => String(2 ** -(Number(levels ?? 4) - 1));

/**
 * Table I's row of a run (see `Layout.row`): Glow (an af run of --stage glow), AF flow-1/-2 with
 * its encoders and dropped losses, MI flow with L_y and its ablations, AF-MI with β; γ in the
 * label where the paper puts it (Glow, the plain MI rows) or where it is not the paper's 0.125.
 */
export function table1Row(
  model: string,
  c: Record<string, unknown>,
): { key: string; label: string } | null {
  const g = gammaOf(c.levels), gNote = g === "0.125" ? [] : [`γ = ${g}`];
  const extra = c.coupling === "additive" ? ["additive"] : [];
  const make = (name: string, parts: string[]) => ({
    key: `${name}|${parts.join("|")}|γ=${g}`,
    label: `${name} (${parts.join(", ")})`,
  });
  const off = (pairs: [string, string][]) =>
    pairs.filter(([k]) => c[k] === false).map(([, n]) => `w/o ${n}`);
  if (model === "floor") {
    const what = c.copy === "source" ? "the source clip" : "the identity frame";
    return { key: `floor|${c.copy}`, label: `No model: copy ${what}` };
  }
  if (model === "af") {
    if (c.stage === "glow") return make("Glow", [`γ = ${g}`, ...extra]);
    const enc = Number(c.encoders ?? 1) === 2 ? "E_φr, E_φi" : "E_φ";
    const dropped = off([["lossS", "L_s"], ["lossT", "L_t"], ["lossP", "L_p"], ["lossY", "L_y"]]);
    const name = c.stage === "joint" ? "AF flow-1" : "AF flow-2";
    return make(name, [enc, ...dropped, ...gNote, ...extra]);
  }
  if (model === "mi") {
    const dropped = off([["ld", "L_d"], ["li", "L_i"]]);
    if (Number(c.alpha ?? 0.1) === 0) dropped.push("w/o L_r");
    const word = c.wordLoss === true ? ["L_y"] : [];
    // The paper names γ on the plain rows only (its ablations are all at γ = 0.125).
    const gs = dropped.length ? gNote : [`γ = ${g}`];
    return make("MI flow", [...word, ...dropped, ...gs, ...extra]);
  }
  if (model === "afmi") {
    const dropped = off([["afSource", "L_s^H"], ["afTarget", "L_t^H"], ["afPair", "L_p^H"]]);
    if (c.wordLoss === false || c.afWord === false) dropped.push("w/o L_y");
    return make("AF-MI flow", [`β = ${Number(c.beta ?? 0.5)}`, ...dropped, ...gNote, ...extra]);
  }
  return null;
}

const p = (mean: number, std?: number): Cell => (std === undefined ? { mean } : { mean, std });
type Run = PaperRow["run"];
const glow = (levels: number): Run => ({ model: "af", config: { stage: "glow", levels } });
const af = (stage: string, config: Record<string, unknown> = {}): Run => ({
  model: "af",
  config: { stage, ...config },
});
const mi = (config: Record<string, unknown>): Run => ({ model: "mi", config });
const miY = (config: Record<string, unknown>) => mi({ wordLoss: true, ...config });
const afmi = (beta: number): Run => ({ model: "afmi", config: { beta } });

/**
 * Table I verbatim (af-mi-flow.md §6.3): label, run config, PSNR and its ±, SSIM and its ±, time
 * relative to Glow γ = 0.0625 (the DAVS rows have neither ± nor time).
 */
const TABLE1_PAPER: PaperRow[] = ([
  ["DAVS (w/o advers) [15]", null, 25.7, NaN, 0.865, NaN, NaN],
  ["DAVS [15]", null, 26.8, NaN, 0.884, NaN, NaN],
  ["Glow (γ = 0.0625)", glow(5), 26.0, 0.20, 0.892, 0.018, 1],
  ["Glow (γ = 0.125)", glow(4), 25.1, 0.18, 0.897, 0.019, 1.29],
  ["AF flow-1 (E_φ)", af("joint"), 25.6, 0.19, 0.918, 0.018, 1.44],
  ["AF flow-2 (E_φ, w/o L_s)", af("two", { lossS: false }), 26.3, 0.18, 0.928, 0.019, 1.30],
  ["AF flow-2 (E_φ, w/o L_t)", af("two", { lossT: false }), 26.2, 0.22, 0.925, 0.020, 1.32],
  ["AF flow-2 (E_φ, w/o L_p)", af("two", { lossP: false }), 24.4, 0.19, 0.886, 0.022, 1.32],
  ["AF flow-2 (E_φ, w/o L_y)", af("two", { lossY: false }), 25.4, 0.23, 0.912, 0.019, 1.33],
  ["AF flow-2 (E_φr, E_φi)", af("two", { encoders: 2 }), 27.5, 0.20, 0.930, 0.018, 1.43],
  ["AF flow-2 (E_φ)", af("two"), 28.6, 0.19, 0.939, 0.021, 1.40],
  ["MI flow (L_y, w/o L_d)", miY({ ld: false }), 27.0, 0.18, 0.919, 0.019, 1.38],
  ["MI flow (L_y, w/o L_i)", miY({ li: false }), 26.5, 0.17, 0.909, 0.021, 1.39],
  ["MI flow (L_y, w/o L_r)", miY({ alpha: 0 }), 27.2, 0.19, 0.921, 0.024, 1.37],
  ["MI flow (γ = 0.125)", mi({}), 28.4, 0.19, 0.936, 0.012, 1.45],
  ["MI flow (L_y, γ = 0.0625)", miY({ levels: 5 }), 27.9, 0.21, 0.918, 0.019, 1.29],
  ["MI flow (L_y, γ = 0.125)", miY({}), 29.2, 0.20, 0.949, 0.017, 1.48],
  ["MI flow (L_y, γ = 0.25)", miY({ levels: 3 }), 28.1, 0.23, 0.937, 0.020, 1.72],
  ["AF-MI flow (β = 0.1)", afmi(0.1), 29.4, 0.19, 0.953, 0.016, 2.20],
  ["AF-MI flow (β = 0.5)", afmi(0.5), 30.2, 0.19, 0.954, 0.023, 2.19],
  ["AF-MI flow (β = 0.8)", afmi(0.8), 29.8, 0.21, 0.958, 0.020, 2.23],
] as [string, Run, number, number, number, number, number][]).map((
  [label, run, psnr, psnrStd, ssim, ssimStd, time],
) => ({
  label,
  run,
  values: {
    psnr: p(psnr, Number.isNaN(psnrStd) ? undefined : psnrStd),
    ssim: p(ssim, Number.isNaN(ssimStd) ? undefined : ssimStd),
    ...(Number.isNaN(time) ? {} : { time: p(time) }),
  },
}));

/** Training seconds of a run: with the run it started from (train_seconds_total). */
const seconds = (doc: EvalDoc) => num(doc.metrics.train_seconds_total);

const table1: Layout = {
  name: "table1",
  title: "Table I (Chien & Huang): self-reenactment and cross-identity PSNR (dB) / SSIM, " +
    "mean ± std over seeds of k; training time relative to Glow",
  row: table1Row,
  columns: [
    { id: "self_psnr", header: "self PSNR", digits: 2, value: metric("self_psnr") },
    { id: "self_ssim", header: "self SSIM", digits: 3, value: metric("self_ssim") },
    ...(["unseen", "ood", "painting"] as const).flatMap((s) => [
      {
        id: `cross_${s}_psnr`,
        header: `cross PSNR ${s}`,
        digits: 2,
        value: metric(`cross_${s}_psnr`),
      },
      {
        id: `cross_${s}_ssim`,
        header: `cross SSIM ${s}`,
        digits: 3,
        value: metric(`cross_${s}_ssim`),
      },
    ]),
    {
      id: "train_minutes",
      header: "train min (total)",
      digits: 1,
      value: (doc) => {
        const s = seconds(doc);
        return s === undefined ? undefined : { mean: s / 60 };
      },
    },
    {
      id: "time",
      header: "time",
      digits: 2,
      suffix: "×",
      value: (doc, ctx) => {
        const s = seconds(doc);
        const r = s === undefined ? NaN : s / ctx.baselineSeconds;
        return Number.isFinite(r) ? { mean: r } : undefined;
      },
    },
  ],
  paperColumns: [
    { id: "psnr", header: "paper PSNR", digits: 1, stdDigits: 2 },
    { id: "ssim", header: "paper SSIM", digits: 3 },
    { id: "time", header: "paper time", digits: 2, suffix: "×" },
  ],
  paperRows: TABLE1_PAPER,
  // The paper's 1× is Glow at γ = 0.0625: the Glow run of the smallest γ (the most levels).
  baseline(rows) {
    const glows = rows.filter((r) => r.key.startsWith("Glow|") && seconds(r.doc) !== undefined);
    glows.sort((a, b) => Number(b.doc.config.levels ?? 4) - Number(a.doc.config.levels ?? 4));
    return glows[0]?.doc;
  },
  notes: [
    "Ours: SynthLips test clips (src/eval/reenact.ts); ± is the std over seeds of the frame k " +
    "(and of the cross-identity queries); the paper's ± is unstated (A17). Paper: LRW, " +
    "self-reenactment only; DAVS rows quoted there from [15].",
    "Time: each run's train_seconds_total (its own steps plus the run it started from) over the " +
    "time baseline's; the paper's 1× is Glow γ = 0.0625 (20.6 h).",
  ],
};

/** Every table layout by name: another paper's table is one more entry. */
export const layouts: Record<string, Layout> = { table1 };

// ---- building -------------------------------------------------------------------------------

/**
 * The table of `docs` under `layout`: rows in the paper's order (runs of the same row in the
 * given order), then runs without a paper row; with `allPaperRows` also the paper's rows that
 * no run matches. `baseline` (a run folder among the docs) overrides the layout's choice.
 */
export function buildTable(
  layout: Layout,
  docs: EvalDoc[],
  o: { allPaperRows?: boolean; baseline?: string } = {},
): Table {
  const rows: { key: string; label: string; doc: EvalDoc }[] = [];
  const notes = [...layout.notes];
  for (const doc of docs) {
    const r = layout.row(doc.model, doc.config ?? {});
    if (!r) {
      notes.push(`${doc.run}: a '${doc.model}' run has no row in ${layout.name}; left out`);
      continue;
    }
    rows.push({ ...r, doc });
  }
  let base: EvalDoc | undefined;
  if (o.baseline) {
    base = docs.find((d) => d.run === o.baseline);
    if (!base) {
      throw new Error(`flowgpu: table: --baseline ${o.baseline} is not one of the --runs`);
    }
  } else base = layout.baseline?.(rows);
  const baseSeconds = base ? num(base.metrics.train_seconds_total) ?? NaN : NaN;
  const ctx: TableContext = { baselineSeconds: baseSeconds };
  const paperKeys = layout.paperRows.map((pr) =>
    pr.run ? layout.row(pr.run.model, pr.run.config)?.key : undefined
  );
  const entries = rows.map((r, i) => {
    const pi = paperKeys.indexOf(r.key);
    const row: TableRow = {
      label: r.label,
      key: r.key,
      run: r.doc.run,
      step: r.doc.step ?? null,
      values: Object.fromEntries(layout.columns.map((c) => [c.id, c.value(r.doc, ctx) ?? null])),
      paper: pi < 0 ? null : layout.paperRows[pi].values,
    };
    return { order: pi < 0 ? layout.paperRows.length : pi, i, row };
  });
  if (o.allPaperRows) {
    const seen = new Set(rows.map((r) => r.key));
    layout.paperRows.forEach((pr, i) => {
      const key = paperKeys[i] ?? `paper|${pr.label}`;
      if (seen.has(key)) return;
      const values = Object.fromEntries(layout.columns.map((c) => [c.id, null]));
      entries.push({
        order: i,
        i: -1,
        row: { label: pr.label, key, run: "", step: null, values, paper: pr.values },
      });
    });
  }
  const out = entries.sort((a, b) => a.order - b.order || a.i - b.i).map((e) => e.row);
  // Rows compare only under one protocol: say where the runs' evaluations differ.
  for (const k of ["eval_clips", "eval_seeds", "size"]) {
    const vals = new Set(
      rows.map((r) => String(k === "size" ? r.doc.config.size : r.doc.metrics[k])),
    );
    if (vals.size > 1) notes.push(`the runs differ in ${k}: ${[...vals].join(", ")}`);
  }
  if (!base && layout.baseline) notes.push("no time baseline among the runs: time left empty");
  return {
    layout: layout.name,
    title: layout.title,
    columns: layout.columns.map(({ id, header }) => ({ id, header })),
    paperColumns: layout.paperColumns.map(({ id, header }) => ({ id, header })),
    baseline: base ? { run: base.run, train_seconds: baseSeconds } : null,
    rows: out,
    notes,
  };
}

function fmtCell(c: Cell | null | undefined, col: Omit<Column, "value">): string {
  if (!c) return "–";
  const m = `${c.mean.toFixed(col.digits)}${col.suffix ?? ""}`;
  return c.std === undefined ? m : `${m} ±${c.std.toFixed(col.stdDigits ?? col.digits)}`;
}

/** The table as Markdown: a title line, the table, the notes. */
export function toMarkdown(t: Table, layout: Layout = layouts[t.layout]): string {
  const head = ["Model", "run", "step", ...layout.columns.map((c) => c.header)]
    .concat(layout.paperColumns.map((c) => c.header));
  const lines = [
    `**${t.title}**`,
    "",
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
  ];
  for (const r of t.rows) {
    const cells = [
      r.label,
      r.run ? r.run.split("/").filter(Boolean).at(-1)! : "(paper)",
      r.step === null ? "" : String(r.step),
      ...layout.columns.map((c) => fmtCell(r.values[c.id], c)),
      ...layout.paperColumns.map((c) => fmtCell(r.paper?.[c.id], c)),
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  lines.push("");
  if (t.baseline) lines.push(`Time baseline (1×): ${t.baseline.run}.`);
  for (const n of t.notes) lines.push(`- ${n}`);
  return lines.join("\n") + "\n";
}

// ---- the command ----------------------------------------------------------------------------

/** Run folders of a `--runs` list: comma-separated folders (or eval.json files) and globs (* ?). */
export function expandRuns(spec: string): string[] {
  const out: string[] = [];
  for (const item of spec.split(",").map((s) => s.trim()).filter(Boolean)) {
    const path = item.replace(/\/+$/, "");
    const base = path.split("/").at(-1)!;
    if (!/[*?]/.test(base)) {
      out.push(path.endsWith(".json") ? dirname(path) : path);
      continue;
    }
    if (/[*?]/.test(dirname(path))) {
      throw new Error(`flowgpu: table: ${item}: only the last path component may be a glob`);
    }
    const re = new RegExp(
      "^" + base.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") +
        "$",
    );
    const dir = dirname(path);
    let names: string[];
    try {
      names = [...Deno.readDirSync(dir)].filter((e) => e.isDirectory && re.test(e.name))
        .map((e) => e.name).sort();
    } catch {
      throw new Error(`flowgpu: table: ${dir} (of ${item}) is not a readable folder`);
    }
    // A glob takes the folders that have been evaluated.
    const found = names.map((n) => join(dir, n)).filter((d) => exists(join(d, "eval.json")));
    if (!found.length) throw new Error(`flowgpu: table: no evaluated run matches ${item}`);
    out.push(...found);
  }
  if (!out.length) throw new Error("flowgpu: table: --runs names no run");
  return out;
}

function exists(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

/** The eval.json of a run folder. */
export function readEval(run: string): EvalDoc {
  const path = join(run, "eval.json");
  let doc;
  try {
    doc = JSON.parse(Deno.readTextFileSync(path));
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound
      ? `not found (evaluate it first: deno task evaluate --out ${run})`
      : `unreadable (${e instanceof Error ? e.message : e})`;
    throw new Error(`flowgpu: table: ${path} ${why}`);
  }
  if (typeof doc?.model !== "string" || typeof doc?.metrics !== "object") {
    throw new Error(`flowgpu: table: ${path} is not an eval.json (no model or metrics)`);
  }
  return { run, model: doc.model, step: doc.step, metrics: doc.metrics, config: doc.config ?? {} };
}

const flags = {
  runs: {
    default: "",
    help: "run folders, comma-separated; a glob in the last component (runs/af-*)",
  },
  layout: { default: "table1", choices: Object.keys(layouts), help: "which paper's table" },
  out: { default: "", help: "write FILE.md and FILE.json (an .md or .json ending is dropped)" },
  baseline: { default: "", help: "the run whose training time is 1× (default: the layout's)" },
  allPaperRows: { default: false, help: "also list the paper's rows that no run matches" },
};

const USAGE = `usage: deno task table --runs DIR[,DIR...] [--layout table1] [--out FILE]

Gathers the eval.json of runs (deno task evaluate --out DIR writes one) into a table in the shape
of a paper's (rows: models and ablations; our columns, then the paper's numbers where it has that
row), printed as Markdown and, with --out, written to FILE.md and FILE.json.

${helpSection("options", flags)}
`;

/** `deno task table ...`: returns the built table (and prints / writes it). */
export function tableCommand(args: string[]): Table | undefined {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return undefined;
  }
  const { values, positionals } = parseFlags(args, [flags], "cpu");
  if (positionals.length) {
    throw new Error(`flowgpu: table: unexpected argument '${positionals[0]}' (see --help)`);
  }
  if (!values.runs) throw new Error("flowgpu: table needs --runs DIR[,DIR...] (see --help)");
  const layout = layouts[values.layout as string];
  const docs = expandRuns(values.runs as string).map(readEval);
  const t = buildTable(layout, docs, {
    allPaperRows: values.allPaperRows as boolean,
    baseline: (values.baseline as string).replace(/\/+$/, "") || undefined,
  });
  const md = toMarkdown(t, layout);
  console.log(md);
  if (values.out) {
    const stem = (values.out as string).replace(/\.(md|json)$/, "");
    Deno.mkdirSync(dirname(stem), { recursive: true });
    Deno.writeTextFileSync(`${stem}.md`, md);
    Deno.writeTextFileSync(`${stem}.json`, JSON.stringify(t, null, 2) + "\n");
    console.log(`wrote ${stem}.md and ${stem}.json`);
  }
  return t;
}

if (import.meta.main) {
  try {
    tableCommand(Deno.args);
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    Deno.exit(1);
  }
}

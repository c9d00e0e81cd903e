// `deno task table --runs DIR,DIR,... [--layout table1] [--out FILE]` gathers the eval.json of
// several runs into one results table, Markdown and JSON, in the shape of a paper's table, with
// the paper's own numbers beside ours where the spec gives them. A layout (the `layouts`
// registry) says which runs make which row, which columns to show, and the paper's rows; another
// paper's table is one more entry. Implemented: Table I of Chien & Huang (af-mi-flow.md §6.3),
// `shapes`: the disentangling VAEs against the plain VAE on Shapes2.5D (issue 10), and
// `disunknown-t2`: the DisUnknown supplement's Table 2 (Stage-II ablations on MNIST).
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
  /** The final metrics.jsonl line's train_minutes, when the run folder has one (readEval). */
  trainMinutes?: number;
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
  /** A text column's cell (a name, a verdict), shown instead of `value`'s number. */
  text?(doc: EvalDoc, ctx: TableContext): string | undefined;
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

/** What a layout works out from all its runs before it makes rows (`Layout.context`). */
export interface SharedContext {
  /** The factor the table compares on (shapes: --factor, else the labelled runs' factor). */
  factor?: string;
  /** The run the other rows are checked against (shapes: the plain VAE). */
  reference?: EvalDoc;
}

/** What all rows of a table share. */
export interface TableContext extends SharedContext {
  /** Training seconds of the time baseline (NaN when there is none). */
  baselineSeconds: number;
}

/** A table layout: how runs become rows, our columns, the paper's columns and rows. */
export interface Layout {
  name: string;
  title: string;
  /**
   * A run's row key and label, or null when the run has no place in this table; `doc` and
   * `shared` are there for a run's own row (a paper row's key is computed without them).
   */
  row(
    model: string,
    config: Record<string, unknown>,
    doc?: EvalDoc,
    shared?: SharedContext,
  ): { key: string; label: string } | null;
  columns: Column[];
  paperColumns: Omit<Column, "value">[];
  paperRows: PaperRow[];
  /** The run whose time is 1× (among the table's runs), if the layout has one. */
  baseline?(rows: { key: string; doc: EvalDoc }[]): EvalDoc | undefined;
  /** What its rows share beyond the time baseline, from all the runs, with notes about it. */
  context?(docs: EvalDoc[], o: { factor?: string }): SharedContext & { notes: string[] };
  /** What the runs must agree on to compare (a note names each that differs). */
  protocol?: { name: string; of(doc: EvalDoc): unknown }[];
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
  /** Cells of the text columns (only in layouts that have any). */
  text?: Record<string, string | null>;
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
    const form = c.encoder === "mlp" ? ["plain MLP E"] : [];
    return make(name, [enc, ...form, ...dropped, ...gNote, ...extra]);
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

// ---- Shapes2.5D: the disentangling VAEs against the plain VAE (issue 10) --------------------

/** The factor Lr-LiVAE and the plain VAE default to, and the comparison factor. */
const SHAPES_FACTOR = "object_hue";

const nonEmpty = (v: unknown) => (typeof v === "string" && v ? v : undefined);

/**
 * The labelled factors of a disentangler's run: Lr-LiVAE's label, CMI-VAE's specified factor,
 * DisUnknown's --labelled list (when empty, every factor not --unknown: its leak_<f>_chance keys
 * name them); [] for other models (the plain VAE has none).
 */
export function labelledFactors(doc: EvalDoc): string[] {
  const m = doc.metrics, c = doc.config;
  const first = (...vs: unknown[]) => vs.map(nonEmpty).filter((v) => v !== undefined).slice(0, 1);
  if (doc.model === "lrlivae") return first(m.label, c.label) as string[];
  if (doc.model === "cmivae") return first(m.specified, c.label, c.specified) as string[];
  if (doc.model === "disunknown") {
    const given = String(c.labelled ?? "").split(",").map((s) => s.trim()).filter(Boolean);
    if (given.length) return given;
    return Object.keys(m).flatMap((k) => /^leak_(.+)_chance$/.exec(k)?.[1] ?? []);
  }
  return [];
}

/** The factor a run's row is about: the compared one for the VAE, else its (first) label. */
function rowFactor(doc: EvalDoc, shared: SharedContext): string | undefined {
  if (doc.model === "vae") return shared.factor;
  const labels = labelledFactors(doc);
  return shared.factor && labels.includes(shared.factor) ? shared.factor : labels[0];
}

/** A run's figures for factor `f`: MIG of the labelled factor, leakage accuracy and chance. */
export function shapesFigures(
  doc: EvalDoc,
  f: string | undefined,
): { mig?: number; leak?: number; chance?: number } {
  if (f === undefined) return {};
  const m = doc.metrics;
  // One labelled code: MIG_lab is its factor's gap; with several, that factor's own gap.
  const mig = doc.model === "vae" || labelledFactors(doc).length > 1 ? m[`mig_${f}`] : m.mig_lab;
  const [leak, chance] = doc.model === "lrlivae" || doc.model === "cmivae"
    ? [m.leak_acc, m.leak_chance]
    : [m[`leak_${f}`], m[`leak_${f}_chance`]];
  return { mig: num(mig), leak: num(leak), chance: num(chance) };
}

/** (accuracy − chance) / (1 − chance), as leakageProbe normalises it. */
const leakNorm = (leak?: number, chance?: number) =>
  leak === undefined || chance === undefined
    ? undefined
    : chance < 1
    ? (leak - chance) / (1 - chance)
    : 0;

/**
 * The shapes check of a run: "yes" when its MIG is higher and its normalised leakage lower than
 * the reference VAE's for the run's factor, else "no (...)" naming what fails; "reference" on the
 * VAE's own row, "baseline (...)" on any other VAE's; a "?" saying which figure is missing;
 * undefined without a reference or factor.
 */
export function shapesCheck(doc: EvalDoc, shared: SharedContext): string | undefined {
  const ref = shared.reference, f = rowFactor(doc, shared);
  if (!ref || f === undefined) return undefined;
  if (doc === ref) return "reference";
  // Another plain VAE (a longer budget, say) is a second baseline, not a disentangler to check.
  if (doc.model === "vae") return `baseline (checks use ${ref.run})`;
  const a = shapesFigures(doc, f), b = shapesFigures(ref, f);
  const na = leakNorm(a.leak, a.chance), nb = leakNorm(b.leak, b.chance);
  const missing = (who: string, fig: { mig?: number }, norm?: number) =>
    [fig.mig === undefined ? "MIG" : "", norm === undefined ? "leakage" : ""].filter(Boolean)
      .map((w) => `${who} ${w}`);
  const lacks = [...missing("VAE:", b, nb), ...missing("run:", a, na)];
  if (lacks.length) return `? (no ${lacks.join(", ")} for ${f})`;
  const fails = [a.mig! > b.mig! ? "" : "MIG", na! < nb! ? "" : "leakage"].filter(Boolean);
  return fails.length ? `no (${fails.join(", ")})` : "yes";
}

/** The shapes layout's row: model name, its variant, and the factor. */
export function shapesRow(
  model: string,
  c: Record<string, unknown>,
  doc?: EvalDoc,
  shared: SharedContext = {},
): { key: string; label: string } | null {
  const f = doc ? rowFactor(doc, shared) : undefined;
  const make = (name: string, parts: string[]) => {
    const all = [...parts, ...(f === undefined ? [] : [f])];
    const label = all.length ? `${name} (${all.join(", ")})` : name;
    return { key: `${model}|${label}`, label };
  };
  if (model === "vae") {
    const beta = Number(c.beta ?? 1);
    const parts = [`${Number(c.latents ?? 10)} latents`];
    return beta === 1 ? make("VAE", parts) : make("β-VAE", [`β = ${beta}`, ...parts]);
  }
  if (model === "lrlivae") {
    if (c.variant === "cvaegan") return make("cVAE-GAN", []);
    const gan = c.gan === false ? ["no GAN"] : [];
    return make("Lr-LiVAE", [`z_s ${Number(c.zs ?? 4)} + z_u ${Number(c.zu ?? 6)}`, ...gan]);
  }
  if (model === "disunknown") {
    const off = [
      ...(c.advR === false ? ["non-adversarial R"] : []),
      ...(c.match === false ? ["no unknown-code condition"] : []),
    ];
    return make("DisUnknown", off);
  }
  if (model === "cmivae") return make("CMI-VAE", []);
  return null;
}

/** Training minutes of a run: eval.json's train_seconds(_total), else metrics.jsonl's. */
function trainMinutes(doc: EvalDoc): number | undefined {
  const s = num(doc.metrics.train_seconds_total) ?? num(doc.metrics.train_seconds);
  return s === undefined ? doc.trainMinutes : s / 60;
}

const cell = (
  v: number | undefined,
): Cell | undefined => (v === undefined ? undefined : { mean: v });
const figure = (k: "mig" | "leak" | "chance") => (doc: EvalDoc, ctx: TableContext) =>
  cell(shapesFigures(doc, rowFactor(doc, ctx))[k]);

const shapes: Layout = {
  name: "shapes",
  title: "Shapes2.5D: the labelled factor's MIG and its leakage, each disentangler against the " +
    "plain VAE of the same size and budget",
  row: shapesRow,
  columns: [
    {
      id: "factor",
      header: "labelled factor",
      digits: 0,
      value: () => undefined,
      text: (doc, ctx) => rowFactor(doc, ctx),
    },
    { id: "mig", header: "MIG", digits: 3, value: figure("mig") },
    { id: "leak", header: "leak acc", digits: 3, value: figure("leak") },
    { id: "leak_chance", header: "chance", digits: 3, value: figure("chance") },
    {
      id: "leak_norm",
      header: "leak norm",
      digits: 3,
      value: (doc, ctx) => {
        const f = shapesFigures(doc, rowFactor(doc, ctx));
        return cell(leakNorm(f.leak, f.chance));
      },
    },
    { id: "mse", header: "MSE [0,1]", digits: 4, value: metric("mse_01", false) },
    { id: "steps", header: "steps", digits: 0, value: (doc) => cell(num(doc.config.steps)) },
    { id: "batch", header: "batch", digits: 0, value: (doc) => cell(num(doc.config.batch)) },
    {
      id: "train_minutes",
      header: "train min",
      digits: 1,
      value: (doc) => cell(trainMinutes(doc)),
    },
    {
      id: "check",
      header: "beats VAE",
      digits: 0,
      value: () => undefined,
      text: (doc, ctx) => shapesCheck(doc, ctx),
    },
  ],
  paperColumns: [],
  paperRows: [],
  context(docs, o) {
    const notes: string[] = [];
    let factor = o.factor;
    if (!factor) {
      const firsts = [
        ...new Set(
          docs.filter((d) => d.model !== "vae").flatMap((d) => labelledFactors(d).slice(0, 1)),
        ),
      ];
      factor = firsts[0] ?? SHAPES_FACTOR;
      if (!firsts.length) {
        notes.push(`no run with a labelled factor: the VAE row shows ${factor} (--factor F)`);
      }
      if (firsts.length > 1) {
        notes.push(
          `the runs label different factors (${firsts.join(", ")}): the VAE row shows ${factor}; ` +
            "each check compares with the VAE's figures for that run's factor",
        );
      }
    }
    const vaes = docs.filter((d) => d.model === "vae");
    if (!vaes.length) notes.push("no plain VAE run (--model vae): the check column is empty");
    if (vaes.length > 1) {
      notes.push(
        `${vaes.length} plain VAE runs: every check compares with the first, ${vaes[0].run}`,
      );
    }
    return { factor, reference: vaes[0], notes };
  },
  protocol: [
    { name: "data", of: (d) => d.config.data },
    { name: "size", of: (d) => d.config.size },
    { name: "eval_images", of: (d) => d.metrics.eval_images },
  ],
  notes: [
    "Ours only: the papers report no Shapes2.5D numbers, so there are no paper columns.",
    "MIG: DisUnknown, Lr-LiVAE and CMI-VAE: mig_lab, the §1.9 gap of the labelled code (a run " +
    "with several labelled factors: mig_<f> of the row's); the plain VAE: mig_<f>, the classic " +
    "per-dim gap, for the factor compared (--factor, default the labelled runs' factor).",
    "Leakage: a logistic probe's test accuracy reading the factor from the label-irrelevant code " +
    "(Lr-LiVAE z_u, CMI-VAE z1, DisUnknown's unknown code: leak_acc or leak_<f>); the plain VAE " +
    "has none, so its leak_<f> reads the factor from its code without the dim its MIG gives the " +
    "factor. Every model fits the probe on 2,000 training images' codes (--probe-limit, cmivae's " +
    "--probe-train) and scores it on the evaluation codes. leak norm = (acc − chance) / " +
    "(1 − chance).",
    "beats VAE: yes when the run's MIG is higher and its leak norm lower than the plain VAE's " +
    "for the run's factor; otherwise what fails.",
    "MSE on [0, 1] pixels (mse_01); steps and batch as configured (an Lr-LiVAE step is one " +
    "end-to-end update and n_gm GM updates; DisUnknown's steps cover Stages I, C and II); train " +
    "min: eval.json's train_seconds(_total), else the final metrics.jsonl line's train_minutes " +
    "(the last session's wall time, final evaluation included).",
  ],
};

// ---- DisUnknown supplement Table 2: Stage-II configurations on MNIST (vae-disentangle.md §6) --

/** A DisUnknown MNIST run's Table 2 row: the standard Stage II or which part it drops. */
export function table2Row(
  model: string,
  c: Record<string, unknown>,
): { key: string; label: string } | null {
  if (model !== "disunknown" || (c.data ?? "mnist") !== "mnist") return null;
  const off = [
    ...(c.advR === false ? ["non-adversarial R"] : []),
    ...(c.match === false ? ["no unknown-code condition"] : []),
    ...(c.adversary === "nll" ? ["NLL adversary"] : []),
    ...(c.nestedDropout === false ? ["no nested dropout"] : []),
  ];
  const label = off.length
    ? off.map((o) => o[0].toUpperCase() + o.slice(1)).join(", ")
    : "Standard";
  return { key: `disunknown|${off.join("|")}`, label };
}

const du = (config: Record<string, unknown>): Run => ({ model: "disunknown", config });

const table2: Layout = {
  name: "disunknown-t2",
  title:
    "DisUnknown supplement Table 2: Stage-II configurations on MNIST, reconstruction MSE and " +
    "MIG of the labelled (digit) code",
  row: table2Row,
  columns: [
    { id: "mse", header: "MSE [0,1]", digits: 4, value: metric("mse_01", false) },
    { id: "mig", header: "MIG_lab", digits: 3, value: metric("mig_lab", false) },
    { id: "swap", header: "swap acc", digits: 3, value: metric("swap_acc", false) },
    { id: "leak", header: "leak digit", digits: 3, value: metric("leak_digit", false) },
    { id: "steps", header: "steps", digits: 0, value: (doc) => cell(num(doc.config.steps)) },
    {
      id: "train_minutes",
      header: "train min",
      digits: 1,
      value: (doc) => cell(trainMinutes(doc)),
    },
  ],
  paperColumns: [
    { id: "mse", header: "paper MSE", digits: 4 },
    { id: "mig", header: "paper MIG", digits: 3 },
  ],
  paperRows: [
    { label: "Standard", run: du({}), values: { mse: p(0.0086), mig: p(0.978) } },
    {
      label: "Non-adversarial R",
      run: du({ advR: false }),
      values: { mse: p(0.0103), mig: p(0.916) },
    },
    {
      label: "No unknown-code condition",
      run: du({ match: false }),
      values: { mse: p(0.0402), mig: p(0.930) },
    },
  ],
  protocol: [
    { name: "eval_images", of: (d) => d.metrics.eval_images },
    { name: "width", of: (d) => d.config.width },
  ],
  notes: [
    "Paper: the supplement's Table 2 (real MNIST, released code's budget of 200k Stage-I and " +
    "120k Stage-II steps at width 32). Ours: real MNIST test images at the run's budget " +
    "(steps: the run's own; a --stage two run starts from its --init-from run's Stage I and C).",
    "MSE on [0, 1] pixels from posterior means; MIG_lab: the §1.9 gap of the digit code; swap " +
    "acc: the in-project classifier on digit swaps; leak digit: a logistic probe reading the " +
    "digit from the unknown code (chance about 0.11).",
  ],
};

/** Every table layout by name: another paper's table is one more entry. */
export const layouts: Record<string, Layout> = { table1, shapes, "disunknown-t2": table2 };

// ---- building -------------------------------------------------------------------------------

/** The default protocol: the reenactment evaluation's clips and seeds, and the image side. */
const PROTOCOL: NonNullable<Layout["protocol"]> = [
  { name: "eval_clips", of: (d) => d.metrics.eval_clips },
  { name: "eval_seeds", of: (d) => d.metrics.eval_seeds },
  { name: "size", of: (d) => d.config.size },
];

/**
 * The table of `docs` under `layout`: rows in the paper's order (runs of the same row in the
 * given order), then runs without a paper row; with `allPaperRows` also the paper's rows that
 * no run matches. `baseline` (a run folder among the docs) overrides the layout's choice.
 */
export function buildTable(
  layout: Layout,
  docs: EvalDoc[],
  o: { allPaperRows?: boolean; baseline?: string; factor?: string } = {},
): Table {
  const rows: { key: string; label: string; doc: EvalDoc }[] = [];
  const notes = [...layout.notes];
  let shared: SharedContext = {};
  if (layout.context) {
    const { notes: more, ...rest } = layout.context(docs, { factor: o.factor });
    shared = rest;
    notes.push(...more);
  } else if (o.factor) notes.push(`--factor ${o.factor}: ${layout.name} has no use for it`);
  for (const doc of docs) {
    const r = layout.row(doc.model, doc.config ?? {}, doc, shared);
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
  const ctx: TableContext = { ...shared, baselineSeconds: baseSeconds };
  const texts = layout.columns.filter((c) => c.text);
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
      ...(texts.length
        ? { text: Object.fromEntries(texts.map((c) => [c.id, c.text!(r.doc, ctx) ?? null])) }
        : {}),
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
      const text = texts.length ? { text: Object.fromEntries(texts.map((c) => [c.id, null])) } : {};
      entries.push({
        order: i,
        i: -1,
        row: { label: pr.label, key, run: "", step: null, values, ...text, paper: pr.values },
      });
    });
  }
  const out = entries.sort((a, b) => a.order - b.order || a.i - b.i).map((e) => e.row);
  // Rows compare only under one protocol: say where the runs' evaluations differ.
  for (const p of layout.protocol ?? PROTOCOL) {
    const vals = new Set(rows.map((r) => String(p.of(r.doc))));
    if (vals.size > 1) notes.push(`the runs differ in ${p.name}: ${[...vals].join(", ")}`);
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
      ...layout.columns.map((c) => (c.text ? r.text?.[c.id] ?? "–" : fmtCell(r.values[c.id], c))),
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
  const minutes = finalTrainMinutes(run);
  return {
    run,
    model: doc.model,
    step: doc.step,
    metrics: doc.metrics,
    config: doc.config ?? {},
    ...(minutes === undefined ? {} : { trainMinutes: minutes }),
  };
}

/** train_minutes of the last final line of a run folder's metrics.jsonl (undefined: none). */
function finalTrainMinutes(run: string): number | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(join(run, "metrics.jsonl"));
  } catch {
    return undefined;
  }
  let out: number | undefined;
  for (const line of text.split("\n")) {
    if (!line.includes('"train_minutes"')) continue;
    try {
      const o = JSON.parse(line);
      if (o?.final === true && typeof o.train_minutes === "number") out = o.train_minutes;
    } catch { /* a torn last line */ }
  }
  return out;
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
  factor: {
    default: "",
    help: "shapes: the factor the plain VAE row is compared on (default: the labelled runs')",
  },
};

const USAGE = `usage: deno task table --runs DIR[,DIR...] [--layout ${
  Object.keys(layouts).join("|")
}] [--out FILE]

Gathers the eval.json of runs (deno task evaluate --out DIR writes one) into a table in the shape
of a paper's (rows: models and ablations; our columns, then the paper's numbers where it has that
row), printed as Markdown and, with --out, written to FILE.md and FILE.json. --layout shapes: the
disentangling VAEs (disunknown, lrlivae, cmivae) against the plain VAE (vae) on Shapes2.5D, MIG of
the labelled factor and leakage, with a check of each against the VAE. --layout disunknown-t2:
DisUnknown MNIST runs (standard, --no-adv-r, --no-match) beside the supplement's Table 2.

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
    factor: (values.factor as string) || undefined,
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

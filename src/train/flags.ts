// Command-line flags, declared once per table: name, default (and a `gpu` preset default), help.
// Parsing (Deno's node:util parseArgs; JSR's @std/cli is unreachable here), validation, the
// help text and the typed config all come from the same table.
import { parseArgs } from "node:util";

/** The value of a flag: integers and reals are numbers. */
export type Value = number | string | boolean;

/** One command-line flag: default, help and validation. */
export interface Flag<V extends Value = Value> {
  /** Default value; its type is the flag's type. */
  default: V;
  /** Default under `--preset gpu`, where it differs. */
  gpu?: V;
  /** One line for `--help`. */
  help: string;
  /** Numbers: integers only (default) or any real. */
  real?: boolean;
  /** Numbers: the smallest accepted value (default 0). */
  min?: number;
  /** Strings: the accepted values. */
  choices?: readonly string[];
  /** Fixes the model's shapes: a checkpoint must agree on it. */
  shape?: boolean;
  /** Spelled differently on the command line (default: the key in kebab-case). */
  cli?: string;
}

/** Flags by their camelCase key. */
export type FlagTable = Record<string, Flag>;

/** A default's literal type widened to its flag's type (`"cpu"` -> string, `25` -> number). */
export type Widen<V> = V extends number ? number : V extends string ? string : boolean;
/** The parsed values of a flag table, typed from its defaults. */
export type Values<T extends FlagTable> = { [K in keyof T]: Widen<T[K]["default"]> };

const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
export const cliName = (key: string, f: Flag) => f.cli ?? kebab(key);

function parseValue(key: string, f: Flag, raw: string | boolean): Value {
  const name = `--${cliName(key, f)}`;
  if (typeof f.default === "boolean") return raw as boolean;
  if (typeof f.default === "string") {
    const v = String(raw);
    if (f.choices && !f.choices.includes(v)) {
      throw new Error(`flowgpu: ${name} ${v}: expected one of ${f.choices.join(", ")}`);
    }
    return v;
  }
  const x = Number(raw);
  const min = f.min ?? 0;
  if (raw === "" || !Number.isFinite(x) || x < min || (!f.real && !Number.isInteger(x))) {
    throw new Error(
      `flowgpu: ${name} ${raw}: expected ${f.real ? "a number" : "an integer"} >= ${min}`,
    );
  }
  return x;
}

/** Defaults of a table under a preset. */
export function defaults(table: FlagTable, preset: string): Record<string, Value> {
  return Object.fromEntries(
    Object.entries(table).map((
      [k, f],
    ) => [k, preset === "gpu" && f.gpu !== undefined ? f.gpu : f.default]),
  );
}

/**
 * Parse `args` against several tables (later tables may not reuse a key). Unknown flags and bad
 * values throw an error naming the flag. Booleans also take `--no-NAME`.
 */
export function parseFlags(
  args: string[],
  tables: FlagTable[],
  preset: string,
): { values: Record<string, Value>; positionals: string[]; given: Set<string> } {
  const all: FlagTable = {};
  for (const t of tables) {
    for (const k of Object.keys(t)) {
      if (k in all) throw new Error(`flowgpu: flag ${k} declared twice`);
      all[k] = t[k];
    }
  }
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const [k, f] of Object.entries(all)) {
    const name = cliName(k, f);
    options[name] = { type: typeof f.default === "boolean" ? "boolean" : "string" };
    if (typeof f.default === "boolean") options[`no-${name}`] = { type: "boolean" };
  }
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new Error(`flowgpu: ${msg.split("\n")[0]} (see --help)`);
  }
  const values = defaults(all, preset);
  const given = new Set<string>();
  for (const [k, f] of Object.entries(all)) {
    const name = cliName(k, f);
    const raw = (parsed.values as Record<string, string | boolean | undefined>)[name];
    const neg = (parsed.values as Record<string, boolean | undefined>)[`no-${name}`];
    if (raw !== undefined) {
      values[k] = parseValue(k, f, raw);
      given.add(k);
    }
    if (neg) {
      values[k] = false;
      given.add(k);
    }
  }
  return { values, positionals: parsed.positionals, given };
}

/** One help section: `--name VALUE  help [default; gpu: default]`. */
export function helpSection(title: string, table: FlagTable): string {
  const rows = Object.entries(table).map(([k, f]) => {
    const name = cliName(k, f);
    const arg = typeof f.default === "boolean"
      ? (f.default ? `--no-${name}` : `--${name}`)
      : `--${name} ${f.choices ? f.choices.join("|") : typeof f.default === "string" ? "S" : "N"}`;
    const def = typeof f.default === "boolean"
      ? ""
      : ` [${f.default}${f.gpu !== undefined && f.gpu !== f.default ? `; gpu: ${f.gpu}` : ""}]`;
    return `  ${arg.padEnd(28)} ${f.help}${def}`;
  });
  return `${title}:\n${rows.join("\n")}`;
}

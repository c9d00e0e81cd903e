// Checks a kernel handle's named bindings against WGSL source, by a textual scan: module-scope
// `@group @binding var<...>` declarations, and the variables an entry point reaches through its
// body and the functions it calls (WGSL's own "statically accessed" rule, which is also what
// layout "auto" puts in the bind group layout). Pure: no device, no files.

/** How a binding is declared in WGSL: `var<storage, read>`, `var<storage, read_write>` or `var<uniform>`. */
export type Access = "read" | "read_write" | "uniform";

/** One named binding of a handle: TS name -> WGSL variable at @group(0) @binding(n). */
export interface SlotDecl {
  name: string;
  binding: number;
  access: Access;
  wgsl: string;
}

interface WgslVar {
  group: number;
  binding: number;
  access: string;
}

interface WgslFn {
  compute: boolean;
  body: string;
  /** Parameters and locals: they shadow module-scope names. */
  locals: Set<string>;
}

export interface WgslInfo {
  vars: Map<string, WgslVar>;
  fns: Map<string, WgslFn>;
}

const stripComments = (src: string) =>
  src.replace(/\/\*[\s\S]*?\*\//g, " ").replace(/\/\/[^\n]*/g, "");

/** Index of the bracket closing the one at `open`. */
function closing(src: string, open: number, l: string, r: string): number {
  let depth = 0;
  for (let i = open; i < src.length; i++) {
    if (src[i] === l) depth++;
    else if (src[i] === r && --depth === 0) return i;
  }
  return src.length;
}

export function parseWgsl(source: string): WgslInfo {
  const src = stripComments(source);
  const vars = new Map<string, WgslVar>();
  for (const m of src.matchAll(/((?:@\w+\s*\([^)]*\)\s*)+)var\s*<([^>]*)>\s*(\w+)/g)) {
    const attr = (a: string) => Number(m[1].match(new RegExp(`@${a}\\s*\\(\\s*(\\d+)`))?.[1]);
    const space = m[2].replace(/\s/g, "");
    const access = space === "uniform" ? "uniform" : space === "storage" ? "read" : space;
    vars.set(m[3], {
      group: attr("group"),
      binding: attr("binding"),
      access: access.replace(/^storage,/, ""),
    });
  }
  const fns = new Map<string, WgslFn>();
  for (const m of src.matchAll(/((?:@\w+(?:\s*\([^)]*\))?\s*)*)\bfn\s+(\w+)\s*\(/g)) {
    const open = m.index! + m[0].length - 1;
    const close = closing(src, open, "(", ")");
    const start = src.indexOf("{", close);
    const body = src.slice(start, closing(src, start, "{", "}") + 1);
    const params = src.slice(open + 1, close).replace(/@\w+\s*\([^)]*\)/g, "");
    const locals = new Set<string>();
    for (const p of params.matchAll(/(\w+)\s*:/g)) locals.add(p[1]);
    for (const l of body.matchAll(/\b(?:let|var|const)\s+(\w+)/g)) locals.add(l[1]);
    fns.set(m[2], { compute: /@compute\b/.test(m[1]), body, locals });
  }
  return { vars, fns };
}

/** Module-scope variables that `entry` reaches, through the functions it calls. */
export function usedVars(info: WgslInfo, entry: string): Set<string> {
  const used = new Set<string>();
  const seen = new Set<string>();
  const visit = (name: string) => {
    const fn = info.fns.get(name);
    if (!fn || seen.has(name)) return;
    seen.add(name);
    for (const m of fn.body.matchAll(/(?<![\w.])[A-Za-z_]\w*/g)) {
      const id = m[0];
      if (fn.locals.has(id)) continue;
      if (info.vars.has(id)) used.add(id);
      else visit(id);
    }
  };
  visit(entry);
  return used;
}

const wgslDecl = (name: string, v: WgslVar) =>
  `var<${
    v.access === "uniform" ? "uniform" : `storage, ${v.access}`
  }> ${name} @binding(${v.binding})`;

/**
 * Every way the handle disagrees with the WGSL, one line each (empty when it agrees): the entry
 * point exists and is @compute; each slot names a variable declared at its @group(0) @binding
 * with its access; the entry uses every slot's variable (layout "auto" drops unused ones, and
 * binding them fails) and every binding it uses has a slot.
 */
export function kernelMismatches(info: WgslInfo, entry: string, slots: SlotDecl[]): string[] {
  const fn = info.fns.get(entry);
  if (!fn?.compute) return [`no @compute entry point ${entry}`];
  const used = usedVars(info, entry);
  const atBinding = (b: number) =>
    [...used].filter((u) => info.vars.get(u)!.binding === b && info.vars.get(u)!.group === 0);
  const out: string[] = [];
  const taken = new Map<number, string>();
  for (const s of slots) {
    const v = info.vars.get(s.wgsl);
    const other = taken.get(s.binding);
    if (other) out.push(`bindings '${other}' and '${s.name}' are both @binding(${s.binding})`);
    taken.set(s.binding, s.name);
    if (!v) {
      const there = atBinding(s.binding);
      const hint = there.length ? `; @binding(${s.binding}) of ${entry} is ${there[0]}` : "";
      out.push(`binding '${s.name}' is ${s.wgsl}, which the WGSL does not declare${hint}`);
      continue;
    }
    if (v.group !== 0) {
      out.push(`binding '${s.name}' is ${s.wgsl} in @group(${v.group}); handles bind @group(0)`);
    }
    if (v.binding !== s.binding) {
      out.push(
        `binding '${s.name}' is ${wgslDecl(s.wgsl, v)} in WGSL, the handle says @${s.binding}`,
      );
    }
    if (v.access !== s.access) {
      out.push(
        `binding '${s.name}' is ${wgslDecl(s.wgsl, v)} in WGSL, the handle says ${s.access}`,
      );
    }
    if (!used.has(s.wgsl)) {
      out.push(`binding '${s.name}': ${entry} never uses ${s.wgsl}, so it cannot be bound`);
    }
  }
  const named = new Set(slots.map((s) => s.wgsl));
  for (const u of used) {
    if (!named.has(u)) {
      out.push(`${entry} uses ${wgslDecl(u, info.vars.get(u)!)}, which the handle does not name`);
    }
  }
  return out;
}

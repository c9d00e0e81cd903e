// The safetensors file format (F32 only): an 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}} padded with
// spaces so the data starts 8-byte aligned, then the raw little-endian tensor bytes. Offsets are
// relative to the start of the data section.

export interface NamedTensor {
  shape: number[];
  data: Float32Array;
}

export interface Safetensors {
  tensors: Record<string, NamedTensor>;
  metadata: Record<string, string>;
}

const METADATA = "__metadata__";
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function fail(file: string, problem: string): never {
  throw new Error(`flowgpu: safetensors: ${file}: ${problem}`);
}

function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Reverses each 4-byte word in place: f32 host order <-> little-endian on big-endian hosts. */
function swap32(b: Uint8Array): void {
  for (let i = 0; i < b.length; i += 4) {
    [b[i], b[i + 1], b[i + 2], b[i + 3]] = [b[i + 3], b[i + 2], b[i + 1], b[i]];
  }
}

/** Encodes F32 tensors (in sorted name order) and string metadata as a safetensors file. */
export function encodeSafetensors(
  tensors: Record<string, NamedTensor>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  const meta = Object.entries(metadata);
  if (meta.length > 0) {
    for (const [k, v] of meta) {
      if (typeof v !== "string") {
        throw new Error(`flowgpu: safetensors: metadata "${k}" must be a string, got ${typeof v}`);
      }
    }
    header[METADATA] = metadata;
  }
  const names = Object.keys(tensors).sort();
  let offset = 0;
  for (const name of names) {
    const { shape, data } = tensors[name];
    if (name === METADATA) throw new Error(`flowgpu: safetensors: "${METADATA}" is reserved`);
    if (!shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new Error(`flowgpu: safetensors: tensor "${name}" has a bad shape [${shape}]`);
    }
    if (size(shape) !== data.length) {
      throw new Error(
        `flowgpu: safetensors: tensor "${name}" has shape [${shape}] (${size(shape)} values) ` +
          `but ${data.length} values`,
      );
    }
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + 4 * data.length] };
    offset += 4 * data.length;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  for (const name of names) {
    const begin = 8 + json.length + (header[name] as { data_offsets: number[] }).data_offsets[0];
    const { data } = tensors[name];
    const dst = out.subarray(begin, begin + data.byteLength);
    dst.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    if (!LITTLE_ENDIAN) swap32(dst);
  }
  return out;
}

/** Decodes a safetensors file of F32 tensors; `file` names it in error messages. */
export function decodeSafetensors(bytes: Uint8Array, file: string): Safetensors {
  if (bytes.length < 8) {
    fail(file, `too short (${bytes.length} bytes) for the 8-byte header length`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getBigUint64(0, true);
  if (headerLength > BigInt(bytes.length - 8)) {
    fail(
      file,
      `header length ${headerLength} runs past the end of the file (${bytes.length} bytes)`,
    );
  }
  const dataStart = 8 + Number(headerLength);
  let header: unknown;
  try {
    header = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, dataStart)),
    );
  } catch (e) {
    fail(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail(file, "header is not a JSON object");
  }
  const dataLength = bytes.length - dataStart;
  const tensors: Record<string, NamedTensor> = {};
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === METADATA) {
      metadata = checkMetadata(entry, file);
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== "object" || e === null) fail(file, `tensor "${name}": entry is not an object`);
    if (e.dtype !== "F32") {
      fail(file, `tensor "${name}" has dtype ${JSON.stringify(e.dtype)}; only F32 is supported`);
    }
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      fail(file, `tensor "${name}" has a bad shape ${JSON.stringify(shape)}`);
    }
    const offsets = e.data_offsets;
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => Number.isInteger(o) && o >= 0)
    ) {
      fail(file, `tensor "${name}" has bad data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataLength) {
      fail(
        file,
        `tensor "${name}" data_offsets [${begin}, ${end}] are out of range (the data section ` +
          `is ${dataLength} bytes)`,
      );
    }
    const n = size(shape);
    if (end - begin !== 4 * n) {
      fail(
        file,
        `tensor "${name}" has shape [${shape}] (${4 * n} bytes of F32) but data_offsets ` +
          `[${begin}, ${end}] span ${end - begin} bytes`,
      );
    }
    // slice() copies into a fresh, aligned buffer, so the view is valid whatever the offset.
    const raw = bytes.slice(dataStart + begin, dataStart + end);
    if (!LITTLE_ENDIAN) swap32(raw);
    tensors[name] = { shape: shape as number[], data: new Float32Array(raw.buffer, 0, n) };
  }
  return { tensors, metadata };
}

function checkMetadata(entry: unknown, file: string): Record<string, string> {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
    fail(file, `${METADATA} is not an object`);
  }
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v !== "string") fail(file, `${METADATA} "${k}" is not a string`);
  }
  return entry as Record<string, string>;
}

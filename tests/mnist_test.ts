import assert from "node:assert/strict";
import { loadMnist, parseIdxImages, parseIdxLabels } from "../src/data/mnist.ts";

function idxImages(count: number, rows: number, cols: number, magic = 2051): Uint8Array {
  const bytes = new Uint8Array(16 + count * rows * cols);
  const view = new DataView(bytes.buffer);
  [magic, count, rows, cols].forEach((v, i) => view.setUint32(4 * i, v, false));
  for (let i = 16; i < bytes.length; i++) bytes[i] = (i * 37) & 255;
  return bytes;
}

function idxLabels(labels: number[], magic = 2049): Uint8Array {
  const bytes = new Uint8Array(8 + labels.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, magic, false);
  view.setUint32(4, labels.length, false);
  bytes.set(labels, 8);
  return bytes;
}

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes.slice()]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function histogram(labels: Uint8Array): number[] {
  const h = new Array(10).fill(0);
  for (const l of labels) h[l]++;
  return h;
}

function checkPadding(images: Uint8Array, count: number): void {
  for (let n = 0; n < count; n++) {
    for (let y = 0; y < 32; y++) {
      for (let x = 0; x < 32; x++) {
        if (y < 2 || y >= 30 || x < 2 || x >= 30) {
          assert.equal(images[(n * 32 + y) * 32 + x], 0, `border pixel (${n},${y},${x})`);
        }
      }
    }
  }
}

Deno.test("mnist: real train split loads, padded to 32x32", async () => {
  const m = await loadMnist("train");
  assert.equal(m.count, 60000);
  assert.equal(m.height, 32);
  assert.equal(m.width, 32);
  assert.equal(m.images.length, 60000 * 32 * 32);
  assert.equal(m.labels.length, 60000);
  // The well-known class counts of the MNIST training set.
  assert.deepEqual(
    histogram(m.labels),
    [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
  );
  assert.deepEqual(Array.from(m.labels.subarray(0, 10)), [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
  let min = 255, max = 0, sum = 0;
  for (const v of m.images) {
    min = Math.min(min, v);
    max = Math.max(max, v);
    sum += v;
  }
  assert.equal(min, 0);
  assert.equal(max, 255);
  // Mean pixel of MNIST is 0.1307*255 over 28x28; over 32x32 with zero padding it is 784/1024 of that.
  const mean = sum / m.images.length / 255;
  assert.ok(Math.abs(mean - 0.1307 * 784 / 1024) < 1e-3, `mean ${mean}`);
  checkPadding(m.images, 200);
  checkPadding(m.images.subarray(59800 * 1024), 200);
});

Deno.test("mnist: real test split loads; limit keeps the first examples", async () => {
  const m = await loadMnist("test");
  assert.equal(m.count, 10000);
  assert.deepEqual(histogram(m.labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
  const few = await loadMnist("test", { limit: 7 });
  assert.equal(few.count, 7);
  assert.deepEqual(Array.from(few.labels), [7, 2, 1, 0, 4, 1, 4]);
  assert.deepEqual(few.images, m.images.subarray(0, 7 * 1024));
  checkPadding(few.images, 7);
  assert.equal((await loadMnist("test", { limit: 20000 })).count, 10000);
  await assert.rejects(() => loadMnist("test", { limit: -1 }), /limit must be a non-negative/);
});

Deno.test("mnist: parse synthetic files", () => {
  const img = parseIdxImages(idxImages(3, 5, 4), "imgs");
  assert.deepEqual([img.count, img.rows, img.cols, img.pixels.length], [3, 5, 4, 60]);
  assert.equal(img.pixels[0], (16 * 37) & 255);
  assert.deepEqual(Array.from(parseIdxLabels(idxLabels([0, 9, 3]), "labs")), [0, 9, 3]);
});

Deno.test("mnist: corrupt files give clear errors", () => {
  assert.throws(
    () => parseIdxImages(idxImages(2, 28, 28, 2049), "train-images-idx3-ubyte"),
    /^Error: flowgpu: mnist: train-images-idx3-ubyte: bad magic number 2049 \(expected 2051/,
  );
  assert.throws(
    () => parseIdxLabels(idxLabels([1, 2], 2051), "train-labels-idx1-ubyte"),
    /train-labels-idx1-ubyte: bad magic number 2051 \(expected 2049/,
  );
  const truncated = new Uint8Array(1234);
  const head = idxImages(0, 28, 28);
  new DataView(head.buffer).setUint32(4, 60000, false);
  truncated.set(head);
  assert.throws(
    () => parseIdxImages(truncated, "train-images-idx3-ubyte"),
    {
      message: "flowgpu: mnist: train-images-idx3-ubyte: truncated: header says 60000 images of " +
        "28x28 (47040016 bytes) but the file has 1234 bytes",
    },
  );
  const trailing = new Uint8Array(idxImages(2, 3, 3).length + 5);
  trailing.set(idxImages(2, 3, 3));
  assert.throws(
    () => parseIdxImages(trailing, "x"),
    /x: trailing bytes: header says 2 images of 3x3 \(34 bytes\) but the file has 39 bytes/,
  );
  assert.throws(
    () => parseIdxLabels(idxLabels([1, 2, 3]).subarray(0, 10), "labels"),
    /labels: truncated: header says 3 labels \(11 bytes\) but the file has 10 bytes/,
  );
  assert.throws(
    () => parseIdxLabels(new Uint8Array(5), "tiny"),
    /tiny: too short for an IDX label header/,
  );
  assert.throws(
    () => parseIdxLabels(idxLabels([3, 1, 10, 4]), "t10k-labels-idx1-ubyte"),
    /t10k-labels-idx1-ubyte: label 10 at index 2 is outside 0\.\.9/,
  );
});

Deno.test("mnist: loadMnist checks counts agree and reads gzip files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/t10k-images-idx3-ubyte`, idxImages(4, 28, 28));
    await Deno.writeFile(`${dir}/t10k-labels-idx1-ubyte`, idxLabels([1, 2, 3]));
    await assert.rejects(
      () => loadMnist("test", { dir }),
      (e: Error) => {
        assert.match(e.message, /^flowgpu: mnist: mislabelled: /);
        assert.match(
          e.message,
          /t10k-images-idx3-ubyte has 4 images but .*t10k-labels-idx1-ubyte has 3 labels/,
        );
        return true;
      },
    );
    // Gzip-compressed files (as distributed on the original MNIST site) read the same.
    await Deno.remove(`${dir}/t10k-labels-idx1-ubyte`);
    await Deno.writeFile(`${dir}/t10k-labels-idx1-ubyte.gz`, await gzip(idxLabels([1, 2, 3, 4])));
    const m = await loadMnist("test", { dir });
    assert.equal(m.count, 4);
    assert.deepEqual(Array.from(m.labels), [1, 2, 3, 4]);
    const src = idxImages(4, 28, 28).subarray(16);
    // Pixel (row 5, col 7) of image 3 lands at (7, 9) of its padded frame.
    assert.equal(m.images[(3 * 32 + 7) * 32 + 9], src[3 * 784 + 5 * 28 + 7]);
    checkPadding(m.images, 4);
    await Deno.writeFile(`${dir}/t10k-images-idx3-ubyte`, idxImages(4, 20, 20));
    await assert.rejects(() => loadMnist("test", { dir }), /images are 20x20, expected 28x28/);
    await Deno.remove(`${dir}/t10k-images-idx3-ubyte`);
    await assert.rejects(() => loadMnist("test", { dir }), /t10k-images-idx3-ubyte not found/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

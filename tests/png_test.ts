import assert from "node:assert/strict";
import { decode, Image } from "imagescript";
import { imageGrid, lineChartPng, niceTicks, writePng } from "../src/train/png.ts";

async function load(bytes: Uint8Array): Promise<Image> {
  assert.deepEqual(Array.from(bytes.subarray(0, 8)), [
    0x89,
    0x50,
    0x4e,
    0x47,
    0x0d,
    0x0a,
    0x1a,
    0x0a,
  ]);
  const img = await decode(bytes);
  assert.ok(img instanceof Image);
  return img;
}

/** [r, g, b, a] at 0-based (x, y). */
function rgba(img: Image, x: number, y: number): number[] {
  const p = 4 * (y * img.width + x);
  return Array.from(img.bitmap.subarray(p, p + 4));
}

Deno.test("png: grey image grid lays images out row by row", async () => {
  // 5 images of 3x4 (h x w), value = 10*image + pixel index; 2 columns, pad 1 -> 3 rows.
  const n = 5, h = 3, w = 4;
  const data = new Uint8Array(n * h * w).map((_, i) => 10 * Math.floor(i / 12) + (i % 12));
  const img = await load(await imageGrid(data, n, 1, h, w, 2, { pad: 1, background: 200 }));
  assert.equal(img.width, 2 * w + 3);
  assert.equal(img.height, 3 * h + 4);
  assert.deepEqual(rgba(img, 0, 0), [200, 200, 200, 255]);
  assert.deepEqual(rgba(img, 1, 1), [0, 0, 0, 255]); // image 0, pixel (0, 0)
  assert.deepEqual(rgba(img, 1 + 3, 1 + 2), [11, 11, 11, 255]); // image 0, pixel (2, 3)
  assert.deepEqual(rgba(img, 1 + w + 1, 1), [10, 10, 10, 255]); // image 1 is to the right
  assert.deepEqual(rgba(img, 1 + 1, 1 + 2 * (h + 1) + 2), [49, 49, 49, 255]); // image 4, pixel (2, 1)
  assert.deepEqual(rgba(img, 1 + w + 1, 1 + 2 * (h + 1)), [200, 200, 200, 255]); // empty cell
});

Deno.test("png: RGB float grid maps range, clamps, and shows NaN red", async () => {
  // 2 images of 3 channels, 2x2, NCHW; values in [-1, 1].
  const data = new Float32Array(2 * 3 * 4);
  data.set([-1, 0, 1, 2], 0); // image 0, red plane
  data.set([1, 1, 1, 1], 4); // image 0, green plane
  data.set([-1, -1, -1, NaN], 8); // image 0, blue plane
  data.fill(0.5, 12); // image 1, all channels
  const img = await load(await imageGrid(data, 2, 3, 2, 2, 1, { range: [-1, 1], pad: 0 }));
  assert.equal(img.width, 2);
  assert.equal(img.height, 4);
  assert.deepEqual(rgba(img, 0, 0), [0, 255, 0, 255]);
  assert.deepEqual(rgba(img, 1, 0), [128, 255, 0, 255]); // 127.5 rounds to even 128
  assert.deepEqual(rgba(img, 0, 1), [255, 255, 0, 255]); // 2 clamps to 255
  assert.deepEqual(rgba(img, 1, 1), [255, 0, 0, 255]); // a NaN in any channel -> red
  assert.deepEqual(rgba(img, 1, 3), [191, 191, 191, 255]); // image 1 below image 0
  await assert.rejects(
    () => imageGrid(data, 3, 3, 2, 2, 1),
    /24 values but 3 images of \[3, 2, 2\] need 36/,
  );
  await assert.rejects(() => imageGrid(data, 2, 2, 2, 3, 1), /channels must be 1 or 3/);
});

Deno.test("png: writePng writes atomically into a new folder", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bytes = await imageGrid(new Uint8Array([0, 255, 7, 9]), 1, 1, 2, 2, 1, { pad: 0 });
    const path = `${dir}/samples/step-000100.png`;
    writePng(path, bytes);
    assert.deepEqual([...Deno.readDirSync(`${dir}/samples`)].map((e) => e.name), [
      "step-000100.png",
    ]);
    const img = await load(Deno.readFileSync(path));
    assert.deepEqual(rgba(img, 1, 0), [255, 255, 255, 255]);
    assert.deepEqual(rgba(img, 0, 1), [7, 7, 7, 255]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("png: niceTicks picks round steps", () => {
  assert.deepEqual(niceTicks(0, 10, 5), [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(niceTicks(0.93, 1.61, 4), [1, 1.2, 1.4, 1.6]);
  assert.deepEqual(niceTicks(-3, 7, 2), [0, 5]);
});

Deno.test("png: line chart draws axes and each series where its values are", async () => {
  const width = 320, height = 200;
  const flatHigh = { name: "train", values: [[0, 3], [100, 3]] as [number, number][] };
  const flatLow = {
    name: "test",
    values: [[0, 1], [40, 1], [50, NaN], [60, 1], [100, 1]] as [number, number][],
  };
  const img = await load(await lineChartPng([flatHigh, flatLow], { width, height, title: "bpd" }));
  assert.equal(img.width, width);
  assert.equal(img.height, height);
  assert.deepEqual(rgba(img, width - 1, height - 1), [255, 255, 255, 255]);
  const isRgb = (x: number, y: number, rgb: number) =>
    rgba(img, x, y).join() === [rgb >> 16, (rgb >> 8) & 255, rgb & 255, 255].join();
  // Column x = 100: top to bottom, the first series (blue) lies above the second (orange).
  const col = (rgb: number, x: number) =>
    Array.from({ length: height }, (_, y) => y).filter((y) => isRgb(x, y, rgb));
  const blue = col(0x1f77b4, 100), orange = col(0xff7f0e, 100);
  assert.equal(blue.length, 1);
  assert.equal(orange.length, 1);
  assert.ok(blue[0] < orange[0]);
  // The NaN at x = 50 breaks the orange line: its row has a gap.
  const mid = Array.from({ length: width }, (_, x) => x).filter((x) =>
    isRgb(x, orange[0], 0xff7f0e)
  );
  assert.ok(mid.length > width / 2 && mid.length < width - 20, `${mid.length}`);
  // y axis: a vertical black run taller than half the image; x axis: a long horizontal one.
  const axisX = Array.from({ length: width }, (_, x) => x).find((x) =>
    Array.from({ length: height }, (_, y) => y).filter((y) => isRgb(x, y, 0)).length > height / 2
  );
  assert.ok(axisX !== undefined && axisX > 10 && axisX < width / 4, `${axisX}`);
  const axisY = Array.from({ length: height }, (_, y) => y).find((y) =>
    Array.from({ length: width }, (_, x) => x).filter((x) => isRgb(x, y, 0)).length > width / 2
  );
  assert.ok(axisY !== undefined && axisY > height * 3 / 4, `${axisY}`);
  // Tick labels: black pixels left of the y axis.
  let labelPixels = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < axisX! - 4; x++) labelPixels += isRgb(x, y, 0) ? 1 : 0;
  }
  assert.ok(labelPixels > 20);
});

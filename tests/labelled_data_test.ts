import assert from "node:assert/strict";
import {
  factorCounts,
  factorLabels,
  gridValues,
  hsv,
  LABELLED_SETS,
  type LabelledSet,
  labelledSet,
  randomSplit,
  splitBatch,
  toByte,
} from "../src/data/labelled.ts";
import {
  correlatedToFull,
  fullToCorrelated,
  isCorrelatedPair,
  renderShapes25d,
  shapes25d,
  SHAPES25D_CORR_COUNT,
  SHAPES25D_COUNT,
  SHAPES25D_FACTORS,
} from "../src/data/shapes25d.ts";
import { glyph10, glyphStyle, renderGlyph } from "../src/data/glyph10.ts";
import {
  chairCuboids,
  chairModel,
  type Cuboid,
  procChairs,
  PROCCHAIRS_COUNT,
  renderChair,
} from "../src/data/procchairs.ts";
import { estimateColour, hueBin } from "../src/data/cmnist.ts";
import { loadMnist } from "../src/data/mnist.ts";
import { Rng } from "../src/util/rng.ts";

// ---- helpers ----

/** Pixels (x, y) whose value differs in any channel between two CHW images. */
function changed(a: Uint8Array, b: Uint8Array, c: number, s: number): [number, number][] {
  const plane = s * s, out: [number, number][] = [];
  for (let p = 0; p < plane; p++) {
    for (let k = 0; k < c; k++) {
      if (a[k * plane + p] !== b[k * plane + p]) {
        out.push([p % s, Math.floor(p / s)]);
        break;
      }
    }
  }
  return out;
}

function image(set: LabelledSet, i: number): Uint8Array {
  return set.pixels([i]).pixels;
}

function assertThrowsFlowgpu(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: Error) => {
    assert.match(e.message, /^flowgpu: /);
    assert.match(e.message, pattern);
    return true;
  });
}

async function assertRejectsFlowgpu(fn: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(fn, (e: Error) => {
    assert.match(e.message, /^flowgpu: /);
    assert.match(e.message, pattern);
    return true;
  });
}

/** Mutual information of two label columns in nats, from their joint counts. */
function mutualInformation(a: number[], b: number[], na: number, nb: number): number {
  const joint = new Float64Array(na * nb), pa = new Float64Array(na), pb = new Float64Array(nb);
  for (let i = 0; i < a.length; i++) joint[a[i] * nb + b[i]]++, pa[a[i]]++, pb[b[i]]++;
  let mi = 0;
  const n = a.length;
  for (let i = 0; i < na; i++) {
    for (let j = 0; j < nb; j++) {
      const p = joint[i * nb + j] / n;
      if (p > 0) mi += p * Math.log(p / ((pa[i] / n) * (pb[j] / n)));
    }
  }
  return mi;
}

// ---- the registry and the common interface ----

Deno.test("labelled: unknown set, factor, option, index, split and seed give clear errors", async () => {
  await assertRejectsFlowgpu(
    () => labelledSet("mnist3d"),
    /unknown data set 'mnist3d' \(known: cmnist28, cmnist32, shapes2\.5d, shapes2\.5d-corr, glyph10, procchairs\)/,
  );
  // Prototype keys are not set names.
  await assertRejectsFlowgpu(() => labelledSet("toString"), /unknown data set 'toString'/);
  const shapes = await labelledSet("shapes2.5d", { size: 16 });
  assertThrowsFlowgpu(
    () => shapes.factor("colour"),
    /shapes2\.5d: unknown factor 'colour' \(factors: floor_hue, wall_hue, object_hue, scale, shape, orientation\)/,
  );
  assert.equal(shapes.factor("shape"), 4);
  assert.equal(shapes.factor("floor_hue"), 0);
  await assertRejectsFlowgpu(
    () => labelledSet("glyph10", { size: 32 }),
    /glyph10: option 'size' does not apply \(options: seed\)/,
  );
  await assertRejectsFlowgpu(() => labelledSet("glyph10", { seed: -1 }), /seed must be an integer/);
  await assertRejectsFlowgpu(
    () => labelledSet("glyph10", { seed: 1.5 }),
    /seed must be an integer/,
  );
  await assertRejectsFlowgpu(
    () => labelledSet("procchairs", { size: 4 }),
    /procchairs: size must be an integer in 8\.\.256, got 4/,
  );
  await assertRejectsFlowgpu(
    () => labelledSet("procchairs", { ssaa: 9 }),
    /ssaa must be an integer in 1\.\.4/,
  );
  assertThrowsFlowgpu(
    () => shapes.pixels([0, SHAPES25D_COUNT]),
    /shapes2\.5d: index 480000 \(position 1\) is outside 0\.\.479999/,
  );
  assertThrowsFlowgpu(() => shapes.labels([-1]), /index -1/);
  assertThrowsFlowgpu(() => shapes.batch([0.5]), /index 0\.5/);
  assertThrowsFlowgpu(
    // @ts-expect-error: a bad split name at run time
    () => shapes.split("val"),
    /shapes2\.5d: unknown split 'val' \(expected train or test\)/,
  );
  assertThrowsFlowgpu(
    () => shapes.indexOf!([0, 0, 0, 8, 0, 0]),
    /factor scale = 8 is outside 0\.\.7/,
  );
  assertThrowsFlowgpu(() => shapes.indexOf!([0, 0, 0]), /indexOf needs 6 factor values/);
  const corr = await labelledSet("shapes2.5d-corr", { size: 16 });
  assertThrowsFlowgpu(
    () => corr.indexOf!([0, 5, 0, 0, 0, 0]),
    /floor hue 0 and wall hue 5 are not in the correlated subset/,
  );
});

Deno.test("labelled: batch and pixels have the documented shapes and scaling", async () => {
  for (const name of ["shapes2.5d", "shapes2.5d-corr", "glyph10", "procchairs"]) {
    const set = await labelledSet(name, name === "glyph10" ? {} : { size: 16 });
    const idx = [0, 5, set.count - 1];
    const p = set.pixels(idx), b = set.batch(idx);
    const d = set.channels * set.height * set.width;
    assert.equal(p.n, 3);
    assert.equal(p.pixels.length, 3 * d, name);
    assert.equal(b.x.length, 3 * d, name);
    assert.equal(b.factors.length, 3 * set.factors.length, name);
    assert.equal(b.values.length, 3 * set.values.length, name);
    assert.deepEqual(b.factors, p.factors);
    assert.deepEqual(b.factors, set.labels(idx));
    for (let i = 0; i < b.x.length; i++) {
      assert.equal(b.x[i], Math.fround(p.pixels[i] / 127.5 - 1));
    }
    assert.ok(b.x.some((v) => v === -1 || v < -0.5) && b.x.some((v) => v > 0.5), name);
    // Empty batches are allowed (a tail of zero), and give empty arrays.
    assert.equal(set.batch([]).x.length, 0);
  }
  assert.equal((await labelledSet("glyph10")).channels, 1);
  const chairs = procChairs({ size: 32 });
  assert.deepEqual([chairs.channels, chairs.height, chairs.width], [3, 32, 32]);
  assert.equal(shapes25d().height, 64);
});

Deno.test("labelled: random splits are 10 %, disjoint, seeded and cover the set", () => {
  const a = randomSplit(1000, 1), b = randomSplit(1000, 1), c = randomSplit(1000, 2);
  assert.equal(a.test.length, 100);
  assert.equal(a.train.length, 900);
  assert.deepEqual(a.test, b.test);
  assert.notDeepEqual(a.test, c.test);
  const all = new Set([...a.train, ...a.test]);
  assert.equal(all.size, 1000);
  for (let i = 1; i < a.test.length; i++) assert.ok(a.test[i] > a.test[i - 1]);
  const shapes = shapes25d({ size: 16 });
  assert.equal(shapes.split("test").length, 48000);
  assert.equal(shapes.split("train").length, 432000);
  assert.equal(shapes25d({ size: 16, correlated: true }).split("test").length, 14400);
  // The chosen test images of the big set are spread over the factors (not a block of indices).
  const counts = factorCounts(shapes, shapes.split("test"));
  for (const c of counts[4]) assert.ok(Math.abs(c - 12000) < 600, `shape counts ${counts[4]}`);
});

Deno.test("labelled: splitBatch draws epochs of the split only, seeded", () => {
  const set = glyph10();
  const test = new Set(set.split("test"));
  const seen = new Set<number>();
  // 10,000 test images in batches of 64: 156 whole batches per epoch.
  for (let step = 0; step < 156; step++) {
    const { idx, epoch } = splitBatch(set, "test", 64, step, 9);
    assert.equal(epoch, 0);
    assert.equal(idx.length, 64);
    for (const i of idx) assert.ok(test.has(i) && !seen.has(i)), seen.add(i);
  }
  assert.equal(seen.size, 156 * 64);
  assert.equal(splitBatch(set, "test", 64, 156, 9).epoch, 1);
  assert.deepEqual(splitBatch(set, "train", 32, 5, 9).idx, splitBatch(set, "train", 32, 5, 9).idx);
  assert.notDeepEqual(
    splitBatch(set, "train", 32, 5, 9).idx,
    splitBatch(set, "train", 32, 5, 8).idx,
  );
  assert.ok(splitBatch(set, "train", 32, 5, 9).idx.every((i) => i < 60000));
});

// ---- Shapes2.5D ----

Deno.test("shapes2.5d: the index enumerates every factor combination exactly once", () => {
  const set = shapes25d({ size: 16 });
  assert.equal(set.count, 480000);
  assert.deepEqual(set.factors.map((f) => [f.name, f.size]), [
    ["floor_hue", 10],
    ["wall_hue", 10],
    ["object_hue", 10],
    ["scale", 8],
    ["shape", 4],
    ["orientation", 15],
  ]);
  const all = Uint32Array.from({ length: set.count }, (_, i) => i);
  const f = set.labels(all);
  const seen = new Uint8Array(480000);
  for (let i = 0; i < set.count; i++) {
    const v = f.subarray(6 * i, 6 * i + 6);
    let key = 0;
    for (let k = 0; k < 6; k++) {
      assert.ok(v[k] >= 0 && v[k] < SHAPES25D_FACTORS[k].size);
      key = key * SHAPES25D_FACTORS[k].size + v[k];
    }
    seen[key]++;
    if (i % 997 === 0) assert.equal(set.indexOf!(v), i);
  }
  assert.ok(seen.every((n) => n === 1), "some combination is missing or repeated");
  // 3D Shapes' order: orientation fastest, floor hue slowest.
  assert.deepEqual(Array.from(set.labels([1])), [0, 0, 0, 0, 0, 1]);
  assert.deepEqual(Array.from(set.labels([15])), [0, 0, 0, 0, 1, 0]);
  assert.deepEqual(Array.from(set.labels([60])), [0, 0, 0, 1, 0, 0]);
  assert.deepEqual(Array.from(set.labels([479999])), [9, 9, 9, 7, 3, 14]);
  assert.deepEqual(Array.from(set.labels([48000 + 4800 * 3 + 61])), [1, 3, 0, 1, 0, 1]);
  // Balanced: each value of each factor equally often.
  factorCounts(set, all).forEach((c, k) => {
    assert.ok(c.every((n) => n === 480000 / SHAPES25D_FACTORS[k].size));
  });
});

Deno.test("shapes2.5d: the correlated subset holds exactly the pairs (floor − wall) mod 10 ∈ {0,1,9}", () => {
  const corr = shapes25d({ size: 16, correlated: true });
  assert.equal(corr.count, 144000);
  assert.equal(SHAPES25D_CORR_COUNT, 144000);
  const f = corr.labels(Uint32Array.from({ length: corr.count }, (_, j) => j));
  let prev = -1;
  const floors: number[] = [], walls: number[] = [];
  for (let j = 0; j < corr.count; j++) {
    const fl = f[6 * j], wa = f[6 * j + 1];
    assert.ok([0, 1, 9].includes((fl - wa + 10) % 10), `image ${j}: floor ${fl} wall ${wa}`);
    const full = correlatedToFull(j);
    assert.ok(full > prev, "subset indices ascend in the full set");
    prev = full;
    assert.equal(fullToCorrelated(full), j);
    floors.push(fl), walls.push(wa);
  }
  // Every full-set image with a correlated pair is in the subset; the others map to −1.
  let inSubset = 0;
  const g = new Int32Array(6);
  for (let i = 0; i < SHAPES25D_COUNT; i += 7) {
    gridValues(SHAPES25D_FACTORS.map((x) => x.size), i, g);
    const j = fullToCorrelated(i);
    assert.equal(j >= 0, isCorrelatedPair(g[0], g[1]));
    if (j >= 0) inSubset++;
  }
  assert.ok(Math.abs(inSubset / Math.ceil(SHAPES25D_COUNT / 7) - 0.3) < 0.01);
  // Floor and wall hue share log 3 nats of information out of log 10: the source of the
  // 0.8257 MIG ceiling (vae-disentangle.md §5.1).
  const mi = mutualInformation(floors, walls, 10, 10);
  assert.ok(Math.abs(mi - (Math.log(10) - Math.log(3))) < 1e-9, `I(floor; wall) = ${mi}`);
  // The other factors stay balanced and independent of the hues.
  const counts = factorCounts(corr, Uint32Array.from({ length: corr.count }, (_, j) => j));
  assert.ok(counts[0].every((n) => n === 14400));
  assert.ok(counts[1].every((n) => n === 14400));
  assert.ok(counts[5].every((n) => n === 9600));
  // Same image as the full set's.
  const full = shapes25d({ size: 16 });
  assert.deepEqual(image(corr, 12345), image(full, correlatedToFull(12345)));
});

Deno.test("shapes2.5d: colours follow the factors (wall panes, sphere shading)", () => {
  const S = 32, plane = S * S;
  const out = new Uint8Array(3 * plane);
  for (const wall of [0, 3, 7]) {
    for (const orient of [0, 7, 14]) {
      renderShapes25d([5, wall, 2, 4, 2, orient], S, out);
      const c = hsv(wall / 10, 0.9, 0.9);
      // Top-left: the left wall pane, unshaded; top-right: the right pane, 15 % darker.
      assert.deepEqual([out[0], out[plane], out[2 * plane]], c.map(toByte));
      const tr = S - 1;
      assert.deepEqual(
        [out[tr], out[plane + tr], out[2 * plane + tr]],
        c.map((v) => toByte(0.85 * v)),
      );
    }
  }
  // The sphere's centre faces the viewer: shade 0.3 + 0.7 (n·l) with n = (0, 0, 1).
  const l = [-0.5, -0.6, 0.62], lz = 0.62 / Math.hypot(...l);
  for (const hue of [1, 6]) {
    const img = new Uint8Array(3 * 4096);
    renderShapes25d([0, 0, hue, 3, 2, 7], 64, img);
    const scale = SHAPES25D_FACTORS[3].meaning![3] as number;
    const a = 0.22 * 64 * scale, cy = 0.68 * 64 + 0.12 * a;
    // The pixel whose centre is nearest the sphere's centre.
    const x = Math.round(32 - 0.5), y = Math.round(cy - 0.5);
    const d = Math.hypot(x + 0.5 - 32, y + 0.5 - cy) / (0.78 * a);
    const o = hsv(hue / 10, 0.9, 0.9);
    const nz = Math.sqrt(1 - d * d);
    for (let k = 0; k < 3; k++) {
      const got = img[k * 4096 + y * 64 + x];
      // n is within d of (0,0,1), so the shade is within 0.7·d of the centre's.
      const want = 255 * o[k] * (0.3 + 0.7 * lz);
      assert.ok(Math.abs(got - want) <= 255 * o[k] * 0.7 * (1 - nz + d) + 1, `${got} vs ${want}`);
    }
  }
});

Deno.test("shapes2.5d: every factor changes the image, and only where it should", () => {
  for (const S of [64, 32]) {
    const set = shapes25d({ size: S });
    const rng = new Rng(S);
    const plane = S * S, u = S / 64;
    for (let t = 0; t < 8; t++) {
      const base = SHAPES25D_FACTORS.map((f) => rng.int(f.size));
      const a = image(set, set.indexOf!(base));
      // Every other value of every factor, from this base.
      SHAPES25D_FACTORS.flatMap((f, k) =>
        Array.from({ length: f.size }, (_, val) => ({ f, k, val })).filter((c) => c.val !== base[k])
      ).forEach(({ f, k, val }) => {
        const v = base.slice();
        v[k] = val;
        const diff = changed(a, image(set, set.indexOf!(v)), 3, S);
        assert.ok(
          diff.length >= 0.01 * plane,
          `S ${S} ${base}: ${f.name} ${base[k]} -> ${v[k]} changes ${diff.length} pixels`,
        );
        // Where the change may fall: hues of the room stay on their side of the horizon; the
        // object's hue, shape and scale stay in the object's box (the bigger one for scale).
        const horizonLo = 0.55 * S - 2 * u - 1, horizonHi = 0.55 * S + 2 * u + 1;
        const scale = (i: number) => SHAPES25D_FACTORS[3].meaning![i] as number;
        const a0 = 0.22 * S * Math.max(scale(base[3]), scale(v[3]));
        for (const [x, y] of diff) {
          if (f.name === "floor_hue") assert.ok(y >= horizonLo, `floor hue changed row ${y}`);
          if (f.name === "wall_hue") assert.ok(y <= horizonHi, `wall hue changed row ${y}`);
          if (["object_hue", "shape", "scale"].includes(f.name)) {
            assert.ok(
              Math.abs(x + 0.5 - S / 2) <= 1.35 * a0 + 1 &&
                Math.abs(y + 0.5 - 0.68 * S) <= 1.25 * a0 + 1,
              `${f.name} changed (${x}, ${y}) outside the object`,
            );
          }
        }
      });
    }
  }
});

Deno.test("shapes2.5d: deterministic, independent of batch order, and the seed moves only the split", () => {
  const a = shapes25d({ size: 32, seed: 3 }), b = shapes25d({ size: 32, seed: 4 });
  const idx = [7, 123456, 479999, 31];
  const pa = a.pixels(idx).pixels, pb = b.pixels([...idx].reverse()).pixels;
  const d = 3 * 32 * 32;
  for (let i = 0; i < 4; i++) {
    assert.deepEqual(pa.subarray(i * d, (i + 1) * d), pb.subarray((3 - i) * d, (4 - i) * d));
  }
  assert.deepEqual(shapes25d({ size: 32, seed: 3 }).split("test"), a.split("test"));
  assert.notDeepEqual(a.split("test"), b.split("test"));
  // A regression pin on the bytes of one image (the renderer is plain float64 arithmetic, the
  // same on every machine): a change to the drawing must be deliberate.
  let sum = 0;
  for (const v of image(shapes25d({ size: 16 }), 98765)) sum = (sum * 31 + v) >>> 0;
  assert.equal(sum, 3245585331);
});

Deno.test("shapes2.5d: a batch of 64 renders in well under a second", () => {
  const set = shapes25d();
  const idx = Array.from({ length: 64 }, (_, i) => (i * 7499) % set.count);
  set.pixels(idx); // compile
  const t0 = performance.now();
  set.pixels(idx);
  const ms = performance.now() - t0;
  assert.ok(ms < 500, `64 images took ${ms.toFixed(0)} ms`);
});

// ---- Glyph-10 ----

Deno.test("glyph10: classes, split, style ranges, and deterministic per seed", () => {
  const set = glyph10({ seed: 5 });
  assert.equal(set.count, 70000);
  assert.equal(set.split("train").length, 60000);
  assert.equal(set.split("test")[0], 60000);
  assert.deepEqual(
    factorCounts(set, set.split("test"))[0],
    new Array(10).fill(1000),
  );
  const idx = Array.from({ length: 200 }, (_, i) => i * 349);
  const b = set.pixels(idx);
  const nv = set.values.length;
  let filled = 0;
  for (let k = 0; k < idx.length; k++) {
    assert.equal(b.factors[k], idx[k] % 10);
    const [w, rot, shear, scale, tx, ty, wob, fill] = b.values.subarray(k * nv, (k + 1) * nv);
    assert.ok(w >= 1.2 && w <= 3.5 && Math.abs(rot) <= 20 && Math.abs(shear) <= 0.3);
    assert.ok(scale >= 0.7 && scale <= 1 && Math.abs(tx) <= 2 && Math.abs(ty) <= 2);
    assert.ok(wob >= 0 && wob <= 1 && (fill === 0 || fill === 1));
    filled += fill;
  }
  assert.ok(filled > 35 && filled < 85, `${filled} of 200 filled (p = 0.3)`);
  assert.deepEqual(glyph10({ seed: 5 }).pixels(idx).pixels, b.pixels);
  assert.notDeepEqual(glyph10({ seed: 6 }).pixels(idx).pixels, b.pixels);
  // Single images agree with their place in a batch.
  assert.deepEqual(image(set, idx[7]), b.pixels.subarray(7 * 784, 8 * 784));
});

Deno.test("glyph10: a plain square matches its geometry; outline vs filled; class changes the image", () => {
  const plain = {
    cls: 1,
    strokeWidth: 2,
    rotation: 0,
    shear: 0,
    scale: 1,
    tx: 0,
    ty: 0,
    wobble: 0,
    wavelength: 10,
    phaseX: 0,
    phaseY: 0,
    filled: false,
  };
  const out = new Uint8Array(784);
  renderGlyph(plain, out);
  // Edges at 14 ± 8.5 px with half-width 1: ink where |x − 14 ∓ 8.5| ≤ 0.5, none far from them.
  const at = (x: number, y: number) => out[y * 28 + x];
  assert.equal(at(14, 14), 0); // centre of an outline
  assert.equal(at(5, 14), 255); // x + 0.5 = 5.5 on the left edge
  assert.equal(at(22, 14), 255); // 22.5 on the right edge
  assert.equal(at(14, 5), 255);
  assert.equal(at(3, 14), 0); // 3.5: 2 px outside the edge
  assert.equal(at(1, 1), 0);
  renderGlyph({ ...plain, filled: true }, out);
  assert.equal(at(14, 14), 255);
  assert.equal(at(9, 18), 255);
  assert.equal(at(3, 14), 0);
  // The same style with another class draws another shape.
  const base = glyphStyle(1, 3), a = new Uint8Array(784), b = new Uint8Array(784);
  renderGlyph(base, a);
  for (let cls = 0; cls < 10; cls++) {
    if (cls === base.cls) continue;
    renderGlyph({ ...base, cls }, b);
    const diff = changed(a, b, 1, 28).length;
    assert.ok(diff >= 0.05 * 784, `class ${base.cls} -> ${cls}: ${diff} pixels`);
  }
  // The ring's hole stays empty when filled (even-odd fill).
  renderGlyph({ ...plain, cls: 5, filled: true }, out);
  assert.equal(at(14, 14), 0);
  assert.equal(at(14, 22), 255);
});

// ---- ProcChairs ----

Deno.test("procchairs: factors, count, model parameters in range, deterministic per seed", () => {
  const set = procChairs({ size: 16 });
  assert.equal(set.count, 86366);
  assert.equal(PROCCHAIRS_COUNT, 1393 * 62);
  assert.deepEqual(set.factors.map((f) => [f.name, f.size]), [
    ["model", 1393],
    ["elevation", 2],
    ["azimuth", 31],
  ]);
  assert.deepEqual(Array.from(set.labels([0, 30, 31, 62, 86365])), [
    0,
    0,
    0,
    0,
    0,
    30,
    0,
    1,
    0,
    1,
    0,
    0,
    1392,
    1,
    30,
  ]);
  assert.equal(set.indexOf!([700, 1, 17]), 700 * 62 + 31 + 17);
  const azimuths = set.factors[2].meaning as number[];
  assert.equal(new Set(azimuths.map((a) => a % 360)).size, 31);
  assert.ok(Math.abs(azimuths[1] - 360 / 31) < 1e-6);
  const legs = new Set<number>(), backs = new Set<number>();
  let arms = 0;
  for (let id = 0; id < 400; id++) {
    const m = chairModel(1, id);
    assert.ok(m.seatW >= 0.8 && m.seatW <= 1.2 && m.seatD >= 0.8 && m.seatD <= 1.2);
    assert.ok(m.seatT >= 0.08 && m.seatT <= 0.2 && m.seatH >= 0.8 && m.seatH <= 1.1);
    assert.ok(m.legT >= 0.05 && m.legT <= 0.12 && m.backH >= 0.6 && m.backH <= 1.4);
    assert.ok(m.backTilt >= 0 && m.backTilt <= 20 && m.slats >= 2 && m.slats <= 5);
    assert.ok(m.albedo >= 0.35 && m.albedo <= 0.85);
    legs.add(m.legs), backs.add(m.back);
    arms += +m.arms;
  }
  assert.equal(legs.size, 4);
  assert.equal(backs.size, 4);
  assert.ok(arms > 110 && arms < 170, `${arms} of 400 with arms (p = 0.35)`);
  const idx = [5, 999, 86365];
  assert.deepEqual(procChairs({ size: 16 }).pixels(idx).pixels, set.pixels(idx).pixels);
  assert.notDeepEqual(procChairs({ size: 16, seed: 2 }).pixels(idx).pixels, set.pixels(idx).pixels);
});

Deno.test("procchairs: a unit cube head-on is a centred square shaded by the camera light", () => {
  const cube: Cuboid = { c: [0, 0, 0], axes: [[0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]] };
  const S = 64, out = new Uint8Array(3 * S * S);
  renderChair([cube], 0.8, 0, 0, S, out, 0, 2);
  // Only the front face is visible; its normal is the view direction.
  const l = [-0.45, 0.6, 0.65], nl = 0.65 / Math.hypot(...l);
  const grey = toByte(0.8 * (0.35 + 0.65 * nl));
  // Bounding sphere radius √3/2 spans 0.4 S, so the square's half side is 0.4 S / √3 px.
  const half = (0.4 * S) / Math.sqrt(3);
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const dx = Math.abs(x + 0.5 - S / 2), dy = Math.abs(y + 0.5 - S / 2);
      const v = out[y * S + x];
      assert.equal(out[S * S + y * S + x], v); // grey: the three channels agree
      if (dx < half - 0.75 && dy < half - 0.75) assert.equal(v, grey, `(${x}, ${y})`);
      if (dx > half + 0.75 || dy > half + 0.75) assert.equal(v, 255, `(${x}, ${y})`);
    }
  }
});

Deno.test("procchairs: every view fits the same disc (80 % of the frame) and each factor changes the image", () => {
  const S = 32, set = procChairs({ size: S });
  const r = 0.4 * S + 0.75;
  for (const model of [0, 17, 1392]) {
    for (let el = 0; el < 2; el++) {
      for (let az = 0; az < 31; az += 3) {
        const img = image(set, set.indexOf!([model, el, az]));
        let ink = 0;
        for (let y = 0; y < S; y++) {
          for (let x = 0; x < S; x++) {
            const v = img[y * S + x];
            if (v < 255) ink++;
            if (Math.hypot(x + 0.5 - S / 2, y + 0.5 - S / 2) > r) {
              assert.equal(v, 255, `model ${model} view (${el}, ${az}): ink at (${x}, ${y})`);
            }
          }
        }
        assert.ok(ink > 0.05 * S * S, `model ${model} view (${el}, ${az}): ${ink} ink pixels`);
      }
    }
  }
  const rng = new Rng(4);
  for (let t = 0; t < 10; t++) {
    const base = set.factors.map((f) => rng.int(f.size));
    const a = image(set, set.indexOf!(base));
    set.factors.forEach((f, k) => {
      const v = base.slice();
      v[k] = (v[k] + 1) % f.size;
      const diff = changed(a, image(set, set.indexOf!(v)), 3, S).length;
      assert.ok(diff >= 0.01 * S * S, `${base}: ${f.name} -> ${v[k]} changes ${diff} pixels`);
    });
  }
  // The model's cuboids stand on the floor.
  for (let id = 0; id < 50; id++) {
    const parts = chairCuboids(chairModel(1, id));
    const lowest = Math.min(
      ...parts.map((p) =>
        p.c[1] - Math.abs(p.axes[0][1]) - Math.abs(p.axes[1][1]) - Math.abs(p.axes[2][1])
      ),
    );
    assert.ok(Math.abs(lowest) < 1e-9, `model ${id} lowest point ${lowest}`);
  }
});

// ---- CMNIST ----

Deno.test("cmnist28: the real MNIST digits coloured by x = g·c on black, split as MNIST", async () => {
  const set = await labelledSet("cmnist28", { seed: 2 });
  assert.equal(set.count, 70000);
  assert.equal(set.split("train").length, 60000);
  assert.equal(set.split("test").length, 10000);
  const digits = set.labels(Array.from({ length: 10 }, (_, i) => i));
  assert.deepEqual(
    Array.from({ length: 10 }, (_, i) => digits[2 * i]),
    [5, 0, 4, 1, 9, 2, 1, 3, 1, 4],
  );
  const mnistTest = await loadMnist("test", { limit: 3 });
  assert.equal(set.labels([60000])[0], mnistTest.labels[0]);
  const mnist = await loadMnist("train", { limit: 40 });
  const idx = Array.from({ length: 40 }, (_, i) => i);
  const b = set.pixels(idx), nv = set.values.length;
  for (let n = 0; n < 40; n++) {
    const v = b.values.subarray(n * nv, (n + 1) * nv);
    const fg = [v[0], v[1], v[2]];
    const [h, s, val] = [v[3], v[4], v[5]];
    assert.ok(h >= 0 && h < 1 && s >= 0.6 && s <= 1 && val >= 0.6 && val <= 1);
    hsv(h, s, val).forEach((c, k) => assert.ok(Math.abs(c - fg[k]) < 1e-6));
    assert.equal(b.factors[2 * n + 1], hueBin(h));
    assert.deepEqual([v[6], v[7], v[8], v[9], v[10]], [0, 0, 0, 0, 0]);
    // Reference: pixel = round(255 · g · c) with g the MNIST intensity (padding cropped).
    for (let y = 0; y < 28; y++) {
      for (let x = 0; x < 28; x++) {
        const g = mnist.images[n * 1024 + (y + 2) * 32 + x + 2] / 255;
        for (let k = 0; k < 3; k++) {
          const got = b.pixels[n * 2352 + k * 784 + y * 28 + x];
          assert.ok(Math.abs(got - 255 * g * fg[k]) <= 0.5 + 1e-4, `image ${n} (${x},${y},${k})`);
        }
      }
    }
    // The analytic estimate is c·Σg²/Σg: its hue is the foreground's.
    const img = Float32Array.from(b.pixels.subarray(n * 2352, (n + 1) * 2352), (p) => p / 255);
    const est = estimateColour(img, 28, 28);
    const top = fg.indexOf(Math.max(...fg));
    const ratio = est[top] / fg[top];
    est.forEach((e, k) =>
      assert.ok(Math.abs(e - ratio * fg[k]) < 0.01, `estimate ${est} vs ${fg}`)
    );
    assert.ok(ratio > 0.6 && ratio <= 1);
  }
  // Another seed recolours the same digits: pixels change only where the digit has ink.
  const other = await labelledSet("cmnist28", { seed: 3 });
  const p2 = other.pixels([0]).pixels;
  const diff = changed(b.pixels.subarray(0, 2352), p2, 3, 28);
  assert.ok(diff.length > 50);
  for (const [x, y] of diff) assert.ok(mnist.images[(y + 2) * 32 + x + 2] > 0);
  assert.deepEqual(other.labels([0, 1])[0], set.labels([0, 1])[0]);
  // Hue bins are near-uniform over the whole set.
  const hues = factorCounts(set, Uint32Array.from({ length: 70000 }, (_, i) => i))[1];
  for (const c of hues) assert.ok(Math.abs(c - 70000 / 12) < 300, `hue counts ${hues}`);
});

Deno.test("cmnist32: shifted digit, textured random-hue background, limit and bad options", async () => {
  const set = await labelledSet("cmnist32", { limit: 50 });
  assert.equal(set.count, 100);
  assert.equal(set.split("test")[0], 50);
  assert.deepEqual(set.factors.map((f) => f.name), ["digit", "hue", "bg_hue"]);
  const mnist = await loadMnist("train", { limit: 50 });
  const idx = Array.from({ length: 50 }, (_, i) => i);
  const b = set.pixels(idx), nv = set.values.length;
  const shifts = new Set<string>();
  for (let n = 0; n < 50; n++) {
    const v = b.values.subarray(n * nv, (n + 1) * nv);
    const fg = [v[0], v[1], v[2]], bg = [v[6], v[7], v[8]], dx = v[9], dy = v[10];
    assert.ok(
      Number.isInteger(dx) && Math.abs(dx) <= 2 && Number.isInteger(dy) && Math.abs(dy) <= 2,
    );
    shifts.add(`${dx},${dy}`);
    assert.ok(Math.max(...bg) <= 0.45 + 1e-6 && Math.max(...bg) >= 0.15 - 1e-6);
    for (let y = 0; y < 32; y++) {
      for (let x = 0; x < 32; x++) {
        const sx = x - dx, sy = y - dy;
        const g = sx >= 0 && sx < 32 && sy >= 0 && sy < 32
          ? mnist.images[n * 1024 + sy * 32 + sx]
          : 0;
        for (let k = 0; k < 3; k++) {
          const got = b.pixels[n * 3072 + k * 1024 + y * 32 + x];
          if (g === 255) assert.ok(Math.abs(got - 255 * fg[k]) <= 0.5 + 1e-4);
          // Background: its colour plus a texture of amplitude at most 0.15.
          if (g === 0) {
            assert.ok(Math.abs(got - 255 * bg[k]) <= 255 * 0.15 + 0.5, `${got} vs ${bg[k]}`);
          }
        }
      }
    }
  }
  assert.ok(shifts.size >= 10, `only ${shifts.size} distinct shifts`);
  await assertRejectsFlowgpu(
    () => labelledSet("cmnist32", { background: "dark" }),
    /cmnist32: option 'background' does not apply/,
  );
  await assertRejectsFlowgpu(
    // @ts-expect-error: a bad background at run time
    () => labelledSet("cmnist28", { background: "grey", limit: 1 }),
    /background must be 'black' or 'dark'/,
  );
  const dark = await labelledSet("cmnist28", { background: "dark", limit: 5 });
  const d = dark.pixels([0]);
  assert.ok(d.values[6] + d.values[7] + d.values[8] > 0);
  assert.equal(d.pixels[0], toByte(d.values[6])); // corner: pure background
});

Deno.test("labelled: every registered set renders its first and last image", async () => {
  for (const name of LABELLED_SETS) {
    const opts = name.startsWith("cmnist") ? { limit: 2 } : name === "glyph10" ? {} : { size: 16 };
    const set = await labelledSet(name, opts);
    const p = set.pixels([0, set.count - 1]);
    assert.equal(p.pixels.length, 2 * set.channels * set.height * set.width);
    assert.ok(p.pixels.some((v) => v > 0), name);
    p.factors.forEach((v, j) => {
      const f = set.factors[j % set.factors.length];
      assert.ok(v >= 0 && v < f.size, `${name}: ${f.name} = ${v}`);
    });
  }
});

// ---- the data CLI ----

Deno.test("data cli: previews with captions and a manifest; bad flags throw", async () => {
  const { datasets } = await import("../src/data/cli.ts");
  assert.deepEqual(Object.keys(datasets), [
    "chc",
    "cmnist",
    "shapes2.5d",
    "glyph10",
    "procchairs",
    "synthlips",
  ]);
  const dir = await Deno.makeTempDir();
  const log = console.log;
  console.log = () => {};
  try {
    await datasets["shapes2.5d"].run(["--correlated", "--size", "16", "--seed", "4", "--out", dir]);
    await datasets.glyph10.run(["--out", `${dir}/g`]);
  } finally {
    console.log = log;
  }
  const png = await Deno.readFile(`${dir}/preview.png`);
  assert.deepEqual(Array.from(png.subarray(0, 4)), [0x89, 0x50, 0x4e, 0x47]);
  const caption = await Deno.readTextFile(`${dir}/preview.txt`);
  assert.match(
    caption,
    /^shapes2\.5d-corr \(seed 4\): 144000 images of 3x16x16, split 129600\/14400/,
  );
  // The correlated set's floor and wall rows show only the 3 hues allowed with the base's.
  const rows = caption.split("\n").filter((l) => l.startsWith("row "));
  assert.equal(rows.length, 6);
  assert.equal(rows[0].split(",").length, 3);
  assert.equal(rows[5].split(",").length, 15);
  const manifest = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
  assert.equal(manifest.params.name, "shapes2.5d-corr");
  assert.equal(manifest.params.seed, 4);
  assert.equal(manifest.info.count, 144000);
  assert.equal(manifest.files["preview.png"].bytes, png.length);
  const glyphRows = (await Deno.readTextFile(`${dir}/g/preview.txt`)).split("\n")
    .filter((l) => l.startsWith("row "));
  assert.equal(glyphRows.length, 10);
  assert.match(glyphRows[6], /^row 7: class = 6 \(heart\): #6 \| #16 \| #26/);
  await Deno.remove(dir, { recursive: true });
  await assertRejectsFlowgpu(
    () => datasets.cmnist.run(["--variant", "30"]),
    /--variant must be 28 or 32, got '30'/,
  );
  await assertRejectsFlowgpu(
    () => datasets.procchairs.run(["--size", "big"]),
    /--size needs an integer, got 'big'/,
  );
  await assertRejectsFlowgpu(() => datasets.glyph10.run(["extra"]), /unexpected argument 'extra'/);
});

Deno.test("factorLabels: one factor's column of [n, nf] row-major labels", () => {
  const rows = Int32Array.from([0, 5, 9, 1, 6, 8, 2, 7, 7]);
  assert.deepEqual([...factorLabels(rows, 3, 0)], [0, 1, 2]);
  assert.deepEqual([...factorLabels(rows, 3, 1)], [5, 6, 7]);
  assert.deepEqual([...factorLabels(rows, 3, 2)], [9, 8, 7]);
  assert.deepEqual([...factorLabels(rows, 1, 0)], [...rows]);
});

import assert from "node:assert/strict";
import {
  boxMask,
  catmullRom,
  clipState,
  crossStates,
  FACE_PARAMS,
  type FaceTraits,
  type FrameState,
  makeVocabulary,
  PAINT_LEVELS,
  REST_STATE,
  type SynthLips,
  synthLips,
  SYNTHLIPS_BOX,
  SYNTHLIPS_FRAMES,
  SYNTHLIPS_IDENTITIES,
  SYNTHLIPS_SPLITS,
  type SynthLipsWord,
  toFlowInput,
  TRAIN_RANGES,
  twinPairs,
  VISEMES,
} from "../src/data/synthlips.ts";
import { Rng } from "../src/util/rng.ts";

// ---- helpers ----

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

/** Pixels (x, y) whose value differs in any channel between two CHW RGB images of side s. */
function changed(a: Uint8Array, b: Uint8Array, s: number, offA = 0, offB = 0): [number, number][] {
  const plane = s * s, out: [number, number][] = [];
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      if (a[offA + c * plane + p] !== b[offB + c * plane + p]) {
        out.push([p % s, Math.floor(p / s)]);
        break;
      }
    }
  }
  return out;
}

const inBox = (set: SynthLips, [x, y]: [number, number]) =>
  y >= set.box.top && y <= set.box.bottom && x >= set.box.left && x <= set.box.right;

/**
 * Whether the face outline with lower semi-axis b1 and the one with b2 disagree somewhere in
 * output pixel (x, y) (checked on a fine grid of the pixel's canvas area): the only place outside
 * the mouth box where the mouth (through the jaw drop) may change a pixel.
 */
function jawBand(
  f: FaceTraits,
  st: FrameState,
  b1: number,
  b2: number,
  size: number,
  x: number,
  y: number,
): boolean {
  const k = 64 / size, cx = 31.5 + f.faceDx + st.tx, cy = 31 + f.faceDy + st.ty;
  const inside = (X: number, Y: number, b: number) =>
    Y < 0
      ? (X / f.faceA) ** 2 + (Y / f.faceBUp) ** 2 <= 1
      : Math.abs(X / f.faceA) ** f.faceP + Math.abs(Y / b) ** f.faceP <= 1;
  for (let j = 0; j <= 16; j++) {
    for (let i = 0; i <= 16; i++) {
      const X = -0.5 + (x + i / 16) * k - cx, Y = -0.5 + (y + j / 16) * k - cy;
      if (inside(X, Y, b1) !== inside(X, Y, b2)) return true;
    }
  }
  return false;
}

const noiseFree = { logos: false, noise: false } as const;

// ---- vocabulary and trajectories ----

function checkVocabulary(words: readonly SynthLipsWord[], size: number): void {
  assert.equal(words.length, size);
  const seqs = new Set<string>(), multisets = new Map<string, number>();
  words.forEach((w, id) => {
    assert.equal(w.id, id);
    assert.ok(w.visemes.length >= 3 && w.visemes.length <= 5, `word ${w.name} has 3-5 visemes`);
    w.visemes.forEach((v, i) => {
      assert.ok(Number.isInteger(v) && v >= 1 && v <= 7, `viseme ${v} of ${w.name} is in 1..7`);
      if (i > 0) assert.notEqual(v, w.visemes[i - 1], `${w.name}: no immediate repeat`);
    });
    assert.equal(w.name, w.visemes.map((v) => VISEMES[v].letter).join(""));
    seqs.add(w.visemes.join(","));
    const m = [...w.visemes].sort().join(",");
    multisets.set(m, (multisets.get(m) ?? 0) + 1);
  });
  assert.equal(seqs.size, size, "all words are distinct");
  const withTwin = words.filter((w) => multisets.get([...w.visemes].sort().join(","))! >= 2);
  assert.ok(withTwin.length / size >= 0.25, `${withTwin.length}/${size} words have a twin`);
  assert.equal(withTwin.length, 2 * twinPairs(size));
}

Deno.test("synthlips: vocabularies of 32 and 10 words follow the spec's word rules", () => {
  assert.equal(twinPairs(32), 5);
  assert.equal(twinPairs(10), 2);
  for (const size of [32, 10, 2, 200]) {
    for (const seed of [1, 2, 3]) checkVocabulary(makeVocabulary(size, new Rng(seed)), size);
  }
  const a = makeVocabulary(32, new Rng(7)), b = makeVocabulary(32, new Rng(7));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, makeVocabulary(32, new Rng(8)));
  assertThrowsFlowgpu(
    () => makeVocabulary(1, new Rng(1)),
    /vocabulary size must be an integer in 2\.\.200, got 1/,
  );
});

Deno.test("synthlips: catmullRom passes through its knots, flat at the ends, holds outside", () => {
  const t = [2, 5, 7.5, 11], p = [0.05, 0.95, 0.3, 0.05];
  for (let i = 0; i < 3; i++) {
    assert.ok(Math.abs(catmullRom(t, p, i, t[i] + 1e-9) - p[i]) < 1e-7);
    assert.ok(Math.abs(catmullRom(t, p, i, t[i + 1] - 1e-9) - p[i + 1]) < 1e-7);
  }
  // zero slope at the first and last knot; interior slope (p2 - p0)/(t2 - t0) at knot 1
  const h = 1e-5;
  assert.ok(Math.abs((catmullRom(t, p, 0, 2 + h) - p[0]) / h) < 1e-3);
  assert.ok(Math.abs((p[3] - catmullRom(t, p, 2, 11 - h)) / h) < 1e-3);
  const d1 = (catmullRom(t, p, 1, 5 + h) - catmullRom(t, p, 0, 5 - h)) / (2 * h);
  assert.ok(Math.abs(d1 - (0.3 - 0.05) / 5.5) < 1e-4, `slope ${d1}`);
  assert.equal(catmullRom(t, p, 0, 0), 0.05);
  assert.equal(catmullRom(t, p, 2, 20), 0.05);
});

Deno.test("synthlips: clips spell their word's visemes in order, at rest at both ends", async () => {
  const set = await synthLips({ size: 32, ...noiseFree });
  let checked = 0;
  for (const split of SYNTHLIPS_SPLITS) {
    for (let i = 0; i < set.identityCount(split); i += 17) {
      for (let w = 0; w < set.vocab.length; w++) {
        const clip = set.clip(split, i, w, 0), word = set.word(w);
        assert.equal(clip.o.length, SYNTHLIPS_FRAMES);
        assert.equal(clip.viseme.length, 29);
        // Runs of the per-frame viseme labels, rest dropped, give back the word.
        const runs: number[] = [];
        clip.viseme.forEach((v, n) => {
          if (v !== 0 && (n === 0 || clip.viseme[n - 1] !== v)) runs.push(v);
        });
        assert.deepEqual(runs, [...word.visemes], `clip ${split}/${i}/${word.name}`);
        // The word lies inside frames 2..26 and the first and last two frames are at rest.
        const sum = clip.durations.reduce((a, b) => a + b, 0);
        assert.ok(sum <= 24 + 1e-4 && clip.onset >= 1 && clip.onset + sum <= 26 + 1e-4);
        for (const n of [0, 1, 27, 28]) {
          assert.equal(clip.viseme[n], 0);
          assert.ok(clip.o[n] <= 0.05 * clip.amplitude + 0.1 && Math.abs(clip.s[n]) < 0.1);
          assert.equal(clip.press[n], 0);
        }
        // At the frame nearest each viseme's centre the mouth is near its target.
        let start = clip.onset;
        word.visemes.forEach((v, k) => {
          const centre = start + clip.durations[k] / 2, n = Math.round(centre);
          start += clip.durations[k];
          const tgt = VISEMES[v];
          assert.ok(
            Math.abs(clip.s[n] - tgt.s) < 0.5,
            `${word.name}: s ${clip.s[n]} vs ${tgt.s} at ${n}`,
          );
          assert.ok(
            Math.abs(clip.o[n] - Math.min(1, clip.amplitude * tgt.o)) < 0.45,
            `${word.name}: o ${clip.o[n]} vs ${tgt.o} at ${n}`,
          );
        });
        for (let n = 0; n < 29; n++) {
          assert.ok(clip.o[n] >= 0 && clip.o[n] <= 1 && clip.s[n] >= -1 && clip.s[n] <= 1);
          assert.ok(clip.press[n] >= 0 && clip.press[n] <= 1);
        }
        checked++;
      }
    }
  }
  assert.equal(checked, 32 * (24 + 3 + 6 + 6));
});

Deno.test("synthlips: p/b/m presses the lips, ee spreads them, oo rounds them", async () => {
  const set = await synthLips({ size: 32, ...noiseFree });
  const at = { 1: [] as number[][], 3: [] as number[][], 4: [] as number[][] };
  for (let w = 0; w < 32; w++) {
    for (let i = 0; i < 20; i++) {
      const clip = set.clip("train", i, w, 1);
      for (let n = 0; n < 29; n++) {
        const v = clip.viseme[n] as 1 | 3 | 4;
        if (v in at) at[v].push([clip.o[n], clip.s[n], clip.press[n]]);
      }
    }
  }
  const mean = (rows: number[][], c: number) => rows.reduce((a, r) => a + r[c], 0) / rows.length;
  assert.ok(mean(at[1], 2) > 0.6 && mean(at[3], 2) < 0.05, "press on p/b/m frames only");
  assert.ok(mean(at[1], 0) < 0.2, `p/b/m closes the mouth (${mean(at[1], 0)})`);
  assert.ok(mean(at[3], 1) > 0.5, `ee spreads (${mean(at[3], 1)})`);
  assert.ok(mean(at[4], 1) < -0.5, `oo rounds (${mean(at[4], 1)})`);
});

// ---- identities and splits ----

Deno.test("synthlips: splits have the spec's sizes, disjoint identities, OOD traits out of range", async () => {
  const set = await synthLips({ size: 32, ...noiseFree });
  assert.deepEqual(
    SYNTHLIPS_SPLITS.map((s) => set.identityCount(s)),
    [400, 40, 100, 100],
  );
  assert.equal(set.clipCount("train"), 25_600);
  assert.equal(set.frameCount("train"), 742_400);
  assert.equal(set.clipCount("val"), 40 * 32);
  assert.equal(set.clipCount("test"), 3_200);
  assert.equal(set.frameCount("test"), 92_800);
  const seen = new Map<string, string>();
  for (const split of SYNTHLIPS_SPLITS) {
    for (let i = 0; i < SYNTHLIPS_IDENTITIES[split]; i++) {
      const id = set.identity(split, i);
      assert.equal(id.vector.length, FACE_PARAMS.length);
      const key = Array.from(id.vector).join(",");
      assert.equal(seen.get(key), undefined, `${split} ${i} repeats ${seen.get(key)}`);
      seen.set(key, `${split} ${i}`);
      const f = id.face;
      const skinIn = f.skinT >= TRAIN_RANGES.skinT[0] && f.skinT <= TRAIN_RANGES.skinT[1];
      const sizeIn = f.faceA >= TRAIN_RANGES.faceA[0] && f.faceA <= TRAIN_RANGES.faceA[1] &&
        f.faceBUp >= TRAIN_RANGES.faceBUp[0] && f.faceBUp <= TRAIN_RANGES.faceBUp[1] &&
        f.faceBLow >= TRAIN_RANGES.faceBLow[0] && f.faceBLow <= TRAIN_RANGES.faceBLow[1];
      if (split === "ood") {
        assert.notEqual(id.oodKind, "none");
        assert.equal(skinIn, id.oodKind === "size");
        assert.equal(sizeIn, id.oodKind === "skin");
      } else {
        assert.equal(id.oodKind, "none");
        assert.ok(skinIn && sizeIn, `${split} ${i} has training-range traits`);
      }
    }
  }
  const kinds = new Set(Array.from({ length: 100 }, (_, i) => set.identity("ood", i).oodKind));
  assert.deepEqual([...kinds].sort(), ["both", "size", "skin"]);
  // Fewer identities per split keep the others' traits (each is keyed by its split and index).
  const small = await synthLips({ size: 32, ...noiseFree, identities: { train: 5, test: 3 } });
  assert.equal(small.clipCount("train"), 5 * 32 * 2);
  assert.deepEqual(small.identity("test", 2).vector, set.identity("test", 2).vector);
  assert.deepEqual(small.identity("ood", 7).vector, set.identity("ood", 7).vector);
});

Deno.test("synthlips: shirt logos come from MNIST-train for train identities, MNIST-test elsewhere", async () => {
  const set = await synthLips({ size: 64, noise: false });
  const plain = await synthLips({ size: 64, ...noiseFree });
  let logos = 0;
  for (const split of SYNTHLIPS_SPLITS) {
    for (let i = 0; i < 20; i++) {
      const id = set.identity(split, i);
      if (!id.logo) continue;
      logos++;
      assert.equal(id.logo.mnist, split === "train" ? "train" : "test");
      assert.ok(id.logo.digit >= 0 && id.logo.digit <= 9);
      // Logos change the shirt only: the same face without one differs only in rows 54..63.
      const other = plain.identity(split, i);
      assert.equal(other.logo, null);
      const a = set.render(id, REST_STATE), b = plain.render(other, REST_STATE);
      const diff = changed(a, b, 64);
      assert.ok(diff.length > 5, `the logo of ${split} ${i} shows`);
      for (const [x, y] of diff) assert.ok(y >= 55 && y <= 63 && x >= 28 && x <= 36, `${x},${y}`);
    }
  }
  assert.ok(logos > 20 && logos < 60, `${logos} of 80 identities have a logo (p = 0.5)`);
});

// ---- rendering ----

Deno.test("synthlips: clips are 29 frames of 3 x size x size bytes, deterministic per seed", async () => {
  for (const size of [64, 32] as const) {
    const a = await synthLips({ size, logos: false, seed: 5 });
    const b = await synthLips({ size, logos: false, seed: 5 });
    const c = await synthLips({ size, logos: false, seed: 6 });
    // Different call orders give the same bytes (nothing depends on what was rendered before).
    const clipA = a.clip("test", 3, 4), clipB = b.clip("train", 10, 2, 1);
    const pa = a.renderClip(clipA), pb0 = b.renderClip(clipB);
    const pb = b.renderClip(b.clip("test", 3, 4)), pa0 = a.renderClip(a.clip("train", 10, 2, 1));
    assert.equal(pa.length, SYNTHLIPS_FRAMES * 3 * size * size);
    assert.deepEqual(pa, pb);
    assert.deepEqual(pa0, pb0);
    assert.deepEqual(clipA, b.clip("test", 3, 4));
    assert.notDeepEqual(pa, c.renderClip(c.clip("test", 3, 4)));
    assert.notDeepEqual(a.identity("train", 0).vector, c.identity("train", 0).vector);
    // Without noise and nuisances the mouth alone moves: at the centre of every viseme the
    // mouth box differs from the rest frame 0, and a clip of the same word by the same
    // identity with the other utterance differs in timing.
    const d = 3 * size * size;
    const still = await synthLips({ size, logos: false, seed: 5, noise: false, nuisance: false });
    const clip = still.clip("train", 10, 2, 0), px = still.renderClip(clip);
    let start = clip.onset;
    clip.durations.forEach((dur) => {
      const n = Math.round(start + dur / 2);
      start += dur;
      const diff = changed(px, px, size, 0, n * d);
      assert.ok(diff.filter((p) => inBox(still, p)).length >= 3, `frame ${n} moves the mouth`);
    });
    assert.notDeepEqual(px, still.renderClip(still.clip("train", 10, 2, 1)));
    // Pixel values use most of the byte range (a real image, not a constant).
    let lo = 255, hi = 0;
    for (const v of pa) lo = Math.min(lo, v), hi = Math.max(hi, v);
    assert.ok(lo < 40 && hi > 200, `range ${lo}..${hi}`);
  }
});

Deno.test("synthlips: renderFrames returns the clips' frames with their ground truth", async () => {
  const set = await synthLips({ size: 32, logos: false, seed: 3 });
  const refs = [0, 28, 29 * 5 + 13, 29 * 63 + 7, set.frameCount("val") - 1];
  const f = set.renderFrames("val", refs);
  const d = 3 * 32 * 32;
  assert.equal(f.n, 5);
  assert.equal(f.pixels.length, 5 * d);
  refs.forEach((r, b) => {
    const t = r % 29, clip = set.clipAt("val", (r - t) / 29);
    assert.equal(clip.index, (r - t) / 29);
    assert.equal(f.clip[b], clip.index);
    assert.equal(f.frame[b], t);
    assert.equal(f.identity[b], clip.identity);
    assert.equal(f.word[b], clip.word);
    assert.equal(f.viseme[b], clip.viseme[t]);
    assert.equal(f.blink[b], clip.blink[t]);
    assert.deepEqual(Array.from(f.mouth.subarray(3 * b, 3 * b + 3)), [
      clip.o[t],
      clip.s[t],
      clip.press[t],
    ]);
    assert.deepEqual(Array.from(f.pose.subarray(2 * b, 2 * b + 2)), [clip.tx[t], clip.ty[t]]);
    assert.deepEqual(
      f.pixels.subarray(b * d, (b + 1) * d),
      set.renderClip(clip).subarray(t * d, (t + 1) * d),
    );
  });
  // clipAt enumerates (identity, word, utterance) with the utterance fastest.
  const c = set.clipAt("train", (7 * 32 + 5) * 2 + 1);
  assert.deepEqual([c.identity, c.word, c.utterance], [7, 5, 1]);
});

Deno.test("synthlips: nuisances are a bounded head walk, small brightness jitter, 2-frame blinks", async () => {
  const set = await synthLips({ size: 32, ...noiseFree });
  let blinks = 0, clips = 0, maxStep = 0, moved = 0;
  for (let i = 0; i < 60; i++) {
    const clip = set.clip("train", i, i % 32, 0);
    clips++;
    assert.equal(clip.tx[0], 0);
    for (let n = 0; n < 29; n++) {
      assert.ok(Math.abs(clip.tx[n]) <= 1 && Math.abs(clip.ty[n]) <= 1);
      assert.ok(Math.abs(clip.brightness[n] - 1) < 0.06);
      if (n) maxStep = Math.max(maxStep, Math.abs(clip.tx[n] - clip.tx[n - 1]));
      if (Math.abs(clip.tx[n]) > 0.2) moved++;
    }
    const closed = Array.from(clip.blink).map((b, n) => b ? n : -1).filter((n) => n >= 0);
    if (closed.length) {
      blinks++;
      assert.equal(closed.length, 2);
      assert.equal(closed[1], closed[0] + 1);
    }
  }
  assert.ok(blinks > 6 && blinks < 32, `${blinks}/${clips} clips blink (p = 0.3)`);
  assert.ok(maxStep > 0.2 && maxStep < 0.9 && moved > 100, `walk step ${maxStep}, moved ${moved}`);
  const still = await synthLips({ size: 32, ...noiseFree, nuisance: false });
  const clip = still.clip("train", 0, 0, 0);
  assert.deepEqual(Array.from(clip.tx), new Array(29).fill(0));
  assert.deepEqual(Array.from(clip.brightness), new Array(29).fill(1));
  assert.deepEqual(Array.from(clip.blink), new Array(29).fill(0));
  // The mouth trajectory does not depend on the nuisance switch.
  assert.deepEqual(clip.o, set.clip("train", 0, 0, 0).o);
});

Deno.test("synthlips: mouth parameters change only the mouth box and the jaw line", async () => {
  for (const size of [64, 32] as const) {
    const set = await synthLips({ size, ...noiseFree });
    let inside = 0, jaw = 0;
    for (let i = 0; i < 12; i++) {
      const split = SYNTHLIPS_SPLITS[i % 4], id = set.identity(split, i);
      const clip = set.clip(split, i, (5 * i) % 32, 0);
      const base = clipState(clip, 0); // rest, with this clip's head pose
      const rest = set.render(id, base);
      for (let n = 2; n < 27; n += 3) {
        const st = { ...base, o: clip.o[n], s: clip.s[n], press: clip.press[n] };
        const img = set.render(id, st);
        for (const p of changed(rest, img, size)) {
          if (inBox(set, p)) {
            inside++;
            continue;
          }
          const b1 = id.face.faceBLow + 0.3 * 6 * base.o, b2 = id.face.faceBLow + 0.3 * 6 * st.o;
          assert.ok(
            jawBand(id.face, base, b1, b2, size, p[0], p[1]),
            `size ${size} ${split} ${i} frame ${n}: pixel ${p} outside the box and the jaw line`,
          );
          jaw++;
        }
      }
      // Extremes of the mouth parameters stay inside the box too (lip bounds, output pixels).
      for (const o of [0, 1]) {
        for (const s of [-1, 1]) {
          for (const press of [0, 1]) {
            const [x0, y0, x1, y1] = set.lipBounds(id, { ...base, o, s, press });
            assert.ok(x0 >= set.box.left - 0.5 && x1 <= set.box.right + 0.5, `${x0}..${x1}`);
            assert.ok(y0 >= set.box.top - 0.5 && y1 <= set.box.bottom + 1, `${y0}..${y1}`);
          }
        }
      }
    }
    assert.ok(inside > 200 && jaw > 0, `size ${size}: ${inside} box pixels, ${jaw} jaw pixels`);
  }
});

Deno.test("synthlips: lips stay inside the mouth box in every frame of every split", async () => {
  for (const size of [64, 32] as const) {
    const set = await synthLips({ size, ...noiseFree });
    for (const split of SYNTHLIPS_SPLITS) {
      for (let c = 0; c < set.clipCount(split); c += 37) {
        const clip = set.clipAt(split, c), id = set.identity(split, clip.identity);
        for (let n = 0; n < 29; n++) {
          const [x0, y0, x1, y1] = set.lipBounds(id, clipState(clip, n));
          assert.ok(
            x0 >= set.box.left - 0.5 && x1 <= set.box.right + 0.5 &&
              y0 >= set.box.top - 0.5 && y1 <= set.box.bottom + 0.5,
            `${split} clip ${c} frame ${n}: lips ${[x0, y0, x1, y1]} vs box ${
              JSON.stringify(set.box)
            }`,
          );
        }
      }
    }
  }
  assert.deepEqual(SYNTHLIPS_BOX[64], { top: 31, bottom: 46, left: 21, right: 41 });
  assert.deepEqual(SYNTHLIPS_BOX[32], { top: 15, bottom: 23, left: 10, right: 20 });
  const m = boxMask(64, SYNTHLIPS_BOX[64]);
  assert.equal(m.reduce((a, b) => a + b, 0), 16 * 21);
  assert.equal(m[31 * 64 + 21], 1);
  assert.equal(m[30 * 64 + 21], 0);
  assert.equal(m[46 * 64 + 41], 1);
  assert.equal(m[46 * 64 + 42], 0);
  assert.equal(boxMask(32, SYNTHLIPS_BOX[32]).reduce((a, b) => a + b, 0), 9 * 11);
});

Deno.test("synthlips: identity traits change the face, not the mouth or its parameters", async () => {
  const set = await synthLips({ size: 64, ...noiseFree });
  const id = set.identity("train", 3), st = clipState(set.clip("train", 3, 9, 0), 14);
  const img = set.render(id, st);
  // Traits away from the mouth: the box is untouched, the face outside it changes.
  const edits: Partial<FaceTraits>[] = [
    { eyeY: id.face.eyeY + 1.5 },
    { hairStyle: (id.face.hairStyle + 1) % 4, hairline: 10 },
    { browAngle: -id.face.browAngle, browThickness: 2.4 },
    { bgTop: [0.1, 0.8, 0.2] },
  ];
  for (const e of edits) {
    const other = set.render({ ...id.face, ...e }, st);
    const diff = changed(img, other, 64);
    assert.ok(diff.length > 10, `${Object.keys(e)} changes the image`);
    for (const p of diff) assert.ok(!inBox(set, p), `${Object.keys(e)} changed box pixel ${p}`);
    assert.deepEqual(set.lipBounds({ ...id.face, ...e }, st), set.lipBounds(id, st));
  }
  // Skin tone and face shape change pixels both outside and inside the box; lips stay put.
  const darker = set.render({ ...id.face, skin: [0.3, 0.2, 0.15] }, st);
  const d = changed(img, darker, 64);
  assert.ok(d.some((p) => inBox(set, p)) && d.filter((p) => !inBox(set, p)).length > 500);
  // A different identity with the same frame state: the face differs, the state is the state.
  const other = set.identity("test", 0);
  assert.ok(changed(img, set.render(other, st), 64).filter((p) => !inBox(set, p)).length > 500);
  const query = set.clip("test", 0, 1, 0), source = set.clip("train", 3, 9, 0);
  const cs = crossStates(source, query, 4);
  cs.forEach((s, n) => {
    assert.deepEqual([s.o, s.s, s.press], [source.o[n], source.s[n], source.press[n]]);
  });
});

Deno.test("synthlips: cross-identity target = identity A rendered with B's per-frame mouth", async () => {
  for (const size of [32, 64] as const) {
    const set = await synthLips({ size, logos: false });
    const source = set.clip("test", 5, 12, 0), query = set.clip("test", 9, 3, 0), k = 17;
    const gt = set.renderCross(source, query, k);
    const d = 3 * size * size, qid = set.identity("test", 9);
    assert.equal(gt.length, 29 * d);
    for (let n = 0; n < 29; n++) {
      const st: FrameState = {
        o: source.o[n],
        s: source.s[n],
        press: source.press[n],
        tx: query.tx[k],
        ty: query.ty[k],
        blink: query.blink[k] === 1,
        brightness: query.brightness[k],
      };
      assert.deepEqual(gt.subarray(n * d, (n + 1) * d), set.render(qid, st), `frame ${n}`);
    }
    // Frame n of the target has the query's face and the source's mouth: inside the box it
    // differs from the query's own frame k as soon as the mouths differ.
    const own = set.render(qid, clipState(query, k));
    const open = source.o.indexOf(Math.max(...source.o));
    assert.ok(changed(own, gt.subarray(open * d), size).filter((p) => inBox(set, p)).length > 3);
    assert.deepEqual(
      changed(own, gt.subarray(open * d), size).filter((p) => !inBox(set, p) && p[1] < set.box.top),
      [],
    );
    // The painting style carries over to the cross targets.
    const painted = set.renderCross(source, query, k, { style: "painting" });
    assert.deepEqual(
      painted.subarray(0, d),
      set.render(qid, crossStates(source, query, k)[0], { style: "painting" }),
    );
  }
});

Deno.test("synthlips: the painting style posterises to 6 levels with dark outlines", async () => {
  const set = await synthLips({ size: 64, ...noiseFree });
  const levels = new Set<number>();
  for (let q = 0; q < PAINT_LEVELS; q++) {
    levels.add(Math.round((255 * q) / (PAINT_LEVELS - 1)));
    levels.add(Math.round((255 * 0.3 * q) / (PAINT_LEVELS - 1)));
  }
  const id = set.identity("test", 2), st = clipState(set.clip("test", 2, 0, 0), 10);
  const photo = set.render(id, st), paint = set.render(id, st, { style: "painting" });
  for (const v of paint) assert.ok(levels.has(v), `value ${v} is a level or an outline level`);
  const distinct = new Set(photo).size;
  assert.ok(distinct > 40, `photo uses ${distinct} values`);
  assert.ok(changed(photo, paint, 64).length > 2000);
  // Outlines: pixels with a channel at an outline level (0.3 x a level), which no flat region has.
  const outline = new Set([15, 31, 46, 61, 77]);
  let dark = 0;
  for (let p = 0; p < 64 * 64; p++) {
    if (outline.has(paint[p]) || outline.has(paint[p + 4096]) || outline.has(paint[p + 8192])) {
      dark++;
    }
  }
  assert.ok(dark > 100, `${dark} outline pixels`);
  // The colour field belongs to the identity: the same render twice is the same image.
  assert.deepEqual(set.render(id, st, { style: "painting" }), paint);
});

Deno.test("synthlips: pixel noise has σ = 1.5/255 and is the clip's own", async () => {
  const set = await synthLips({ size: 64, logos: false });
  const clip = set.clip("val", 1, 2), pix = set.renderClip(clip);
  const clean = set.render(set.identity("val", 1), clipState(clip, 6));
  const d = 3 * 64 * 64, frame = pix.subarray(6 * d, 7 * d);
  let s2 = 0, maxd = 0;
  for (let i = 0; i < d; i++) {
    const e = frame[i] - clean[i];
    s2 += e * e;
    maxd = Math.max(maxd, Math.abs(e));
  }
  const sd = Math.sqrt(s2 / d);
  assert.ok(sd > 1.3 && sd < 1.9, `noise std ${sd} (σ 1.5 plus rounding)`);
  assert.ok(maxd <= 9);
  // Two frames of one clip carry different noise.
  const st = clipState(clip, 6);
  assert.notDeepEqual(
    set.render(set.identity("val", 1), st, { noise: 1 }),
    set.render(set.identity("val", 1), st, { noise: 2 }),
  );
});

Deno.test("synthlips: the 32x32 variant is the 64x64 face at half resolution", async () => {
  const s64 = await synthLips({ size: 64, ...noiseFree }),
    s32 = await synthLips({ size: 32, ...noiseFree });
  for (let i = 0; i < 4; i++) {
    const st = clipState(s64.clip("train", i, i, 0), 12);
    const a = s64.render(s64.identity("train", i), st),
      b = s32.render(s32.identity("train", i), st);
    let err = 0;
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 32; y++) {
        for (let x = 0; x < 32; x++) {
          const p = (c * 64 + 2 * y) * 64 + 2 * x;
          const avg = (a[p] + a[p + 1] + a[p + 64] + a[p + 65]) / 4;
          err += Math.abs(avg - b[(c * 32 + y) * 32 + x]);
        }
      }
    }
    assert.ok(err / (3 * 32 * 32) < 1.5, `mean |downsampled 64 - 32| = ${err / 3072}`);
  }
});

Deno.test("synthlips: toFlowInput quantises to 5 bits in [-0.5, 0.5)", () => {
  const x = toFlowInput(Uint8Array.from([0, 7, 8, 128, 255]));
  assert.deepEqual(Array.from(x), [-0.5, -0.5, -0.5 + 1 / 32, 0, 31 / 32 - 0.5]);
});

Deno.test("synthlips: bad size, split, identity, word, utterance, frame and options give clear errors", async () => {
  await assertRejectsFlowgpu(
    () => synthLips({ size: 48 }),
    /synthlips: size must be 32 or 64, got 48/,
  );
  await assertRejectsFlowgpu(
    () => synthLips({ seed: -2 }),
    /seed must be an integer in 0\.\.4294967295, got -2/,
  );
  await assertRejectsFlowgpu(
    () => synthLips({ vocab: 1 }),
    /vocabulary size must be an integer in 2\.\.200, got 1/,
  );
  await assertRejectsFlowgpu(() => synthLips({ ssaa: 0 }), /ssaa must be an integer in 1\.\.8/);
  await assertRejectsFlowgpu(
    // @ts-expect-error: an unknown option at run time
    () => synthLips({ colour: true }),
    /unknown option 'colour' \(options: seed, size, vocab, identities/,
  );
  await assertRejectsFlowgpu(
    // @ts-expect-error: an unknown split at run time
    () => synthLips({ identities: { holdout: 3 } }),
    /unknown split 'holdout' \(splits: train, val, test, ood\)/,
  );
  await assertRejectsFlowgpu(
    () => synthLips({ identities: { val: -1 } }),
    /identities\.val must be an integer/,
  );
  const set = await synthLips({ size: 32, vocab: 10, ...noiseFree });
  assertThrowsFlowgpu(
    () => set.identity("test", 100),
    /identity 100 is outside 0\.\.99 of the test split/,
  );
  assertThrowsFlowgpu(
    () => set.identity("train", -1),
    /identity -1 is outside 0\.\.399 of the train split/,
  );
  // @ts-expect-error: an unknown split at run time
  assertThrowsFlowgpu(() => set.identity("dev", 0), /unknown split 'dev'/);
  assertThrowsFlowgpu(
    () => set.clip("train", 0, 10),
    /word 10 is outside 0\.\.9 \(vocabulary of 10\)/,
  );
  assertThrowsFlowgpu(() => set.word(2.5), /word 2\.5 is outside/);
  assertThrowsFlowgpu(
    () => set.clip("test", 0, 0, 1),
    /utterance 1 is outside 0\.\.0 of the test split/,
  );
  assertThrowsFlowgpu(
    () => set.clipAt("val", 400),
    /clip 400 is outside 0\.\.399 of the val split/,
  );
  const clip = set.clip("train", 0, 0);
  assertThrowsFlowgpu(
    () => clipState(clip, 29),
    /frame 29 is outside 0\.\.28 \(clips have 29 frames\)/,
  );
  assertThrowsFlowgpu(() => set.renderCross(clip, clip, -1), /frame -1 is outside 0\.\.28/);
  assertThrowsFlowgpu(
    () => set.renderFrames("val", [0, 29 * 400]),
    /frame ref 11600 \(position 1\) is outside 0\.\.11599 of the val split/,
  );
  assertThrowsFlowgpu(
    // @ts-expect-error: an unknown style at run time
    () => set.render(set.identity("train", 0), REST_STATE, { style: "oil" }),
    /style must be 'photo' or 'painting', got 'oil'/,
  );
  assertThrowsFlowgpu(
    () => set.render(set.identity("train", 0), REST_STATE, {}, new Uint8Array(100)),
    /output holds 100 bytes, the frame needs 3072/,
  );
});

Deno.test("data cli: synthlips writes a clip preview, a cross-identity strip and captions", async () => {
  const { datasets } = await import("../src/data/cli.ts");
  const dir = await Deno.makeTempDir();
  const log = console.log;
  console.log = () => {};
  try {
    await datasets.synthlips.run(["--size", "32", "--clips", "3", "--every", "4", "--out", dir]);
  } finally {
    console.log = log;
  }
  const png = await Deno.readFile(`${dir}/preview.png`);
  assert.deepEqual(Array.from(png.subarray(0, 4)), [0x89, 0x50, 0x4e, 0x47]);
  // 3 rows of frames 0, 4, ..., 28 (8 tiles) of 32 px with 2-px gaps: 8·34+2 x 3·34+2.
  const view = new DataView(png.buffer, png.byteOffset);
  assert.deepEqual([view.getUint32(16), view.getUint32(20)], [8 * 34 + 2, 3 * 34 + 2]);
  const cross = await Deno.readFile(`${dir}/cross.png`);
  assert.deepEqual(
    [new DataView(cross.buffer).getUint32(16), new DataView(cross.buffer).getUint32(20)],
    [8 * 34 + 2, 3 * 34 + 2],
  );
  const lines = (await Deno.readTextFile(`${dir}/preview.txt`)).split("\n");
  assert.match(lines[0], /^synthlips \(seed 1, 32x32, 32 words, 29 frames per clip\)/);
  assert.match(lines[0], /mouth box rows 15-23, cols 10-20/);
  assert.match(lines[1], /^row 1: train identity \d+: word \d+ '[maiuofe]+' = /);
  assert.match(lines[3], /^row 3: train identity/);
  assert.match(lines[4], /^cross\.png row 1 \(source\)/);
  const manifest = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
  assert.equal(manifest.params.size, 32);
  assert.equal(manifest.info.clips.train, 25_600);
  assert.equal(manifest.info.vocabulary.length, 32);
  await Deno.remove(dir, { recursive: true });
  await assertRejectsFlowgpu(
    () => datasets.synthlips.run(["--size", "48"]),
    /synthlips: size must be 32 or 64, got 48/,
  );
  await assertRejectsFlowgpu(
    () => datasets.synthlips.run(["--split", "dev"]),
    /--split must be one of train, val, test, ood, got 'dev'/,
  );
  await assertRejectsFlowgpu(
    () => datasets.synthlips.run(["--style", "oil"]),
    /--style must be photo or painting, got 'oil'/,
  );
});

import assert from "node:assert/strict";
import { Rng } from "../src/data/rng.ts";
import { checkConfigMatches, loadCheckpoint, saveCheckpoint } from "../src/train/checkpoint.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  type NamedTensor,
} from "../src/train/safetensors.ts";

function bits(a: Float32Array): number[] {
  return Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
}

function sampleTensors(seed: number): Record<string, NamedTensor> {
  const rng = new Rng(seed);
  const special = new Float32Array(7);
  new Uint32Array(special.buffer).set([
    0x7fc00123, // NaN with a payload
    0x80000000, // -0
    0x7f800000, // +Infinity
    0xff800000, // -Infinity
    0x00000001, // smallest subnormal
    0x7f7fffff, // largest finite
    0x3eaaaaab, // 1/3
  ]);
  return {
    "flow.0.actnorm.logs": { shape: [3, 5, 1], data: rng.uniformArray(15) },
    "flow.0.conv.weight": { shape: [7, 3, 3, 3], data: rng.uniformArray(189, -3, 3) },
    "scalar": { shape: [], data: new Float32Array([rng.normal()]) },
    "empty": { shape: [0, 3], data: new Float32Array(0) },
    "special": { shape: [7], data: special },
  };
}

function assertSameTensors(a: Record<string, NamedTensor>, b: Record<string, NamedTensor>) {
  assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
  for (const k of Object.keys(a)) {
    assert.deepEqual(a[k].shape, b[k].shape, k);
    assert.deepEqual(bits(a[k].data), bits(b[k].data), k);
  }
}

/** Builds a file by hand, byte by byte, as the format describes (no padding unless given). */
function handMade(header: string, data: number[]): Uint8Array {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

Deno.test("safetensors: round trip is bit-exact, header aligned", () => {
  const tensors = sampleTensors(3);
  const metadata = { step: "1200", config: JSON.stringify({ width: 64, levels: 3 }) };
  const bytes = encodeSafetensors(tensors, metadata);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal((8 + n) % 8, 0);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  assert.deepEqual(header.__metadata__, metadata);
  // Sorted by name, packed back to back.
  assert.deepEqual(header["empty"], { dtype: "F32", shape: [0, 3], data_offsets: [0, 0] });
  assert.deepEqual(header["flow.0.actnorm.logs"].data_offsets, [0, 60]);
  assert.deepEqual(header["flow.0.conv.weight"].data_offsets, [60, 816]);
  assert.equal(bytes.length, 8 + n + 4 * (15 + 189 + 1 + 7));
  const back = decodeSafetensors(bytes, "mem");
  assertSameTensors(tensors, back.tensors);
  assert.deepEqual(back.metadata, metadata);
  // Subarray inputs (non-zero byteOffset) encode only their own values.
  const big = new Float32Array([9, 1, 2, 9]);
  const sub = decodeSafetensors(
    encodeSafetensors({ x: { shape: [2], data: big.subarray(1, 3) } }),
    "m",
  );
  assert.deepEqual(Array.from(sub.tensors.x.data), [1, 2]);
  assert.deepEqual(sub.metadata, {});
});

Deno.test("safetensors: reads a hand-made file with an unaligned data section", () => {
  // 1.5 and -2 as little-endian f32: 0x3fc00000, 0xc0000000.
  const f = handMade(
    '{"w":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},"__metadata__":{"format":"pt"}}',
    [0, 0, 0xc0, 0x3f, 0, 0, 0, 0xc0],
  );
  assert.notEqual((f.length - 8) % 4, 0);
  const { tensors, metadata } = decodeSafetensors(f, "hand.safetensors");
  assert.deepEqual(tensors.w.shape, [1, 2]);
  assert.deepEqual(Array.from(tensors.w.data), [1.5, -2]);
  assert.deepEqual(metadata, { format: "pt" });
});

Deno.test("safetensors: corrupt files give clear errors naming the file", () => {
  const t = (h: string, data: number[], re: RegExp) =>
    assert.throws(() => decodeSafetensors(handMade(h, data), "ck.safetensors"), re);
  const four = [0, 0, 0x80, 0x3f];
  t(
    '{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}',
    four,
    /ck\.safetensors: tensor "w" has dtype "F16"; only F32/,
  );
  t(
    '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}',
    four,
    /^Error: flowgpu: safetensors: ck\.safetensors: tensor "w" data_offsets \[0, 8\] are out of range \(the data section is 4 bytes\)/,
  );
  t(
    '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}',
    four,
    /tensor "w" has shape \[2\] \(8 bytes of F32\) but data_offsets \[0, 4\] span 4 bytes/,
  );
  t(
    '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}',
    [...four, ...four],
    /tensor "w" has shape \[1\] \(4 bytes of F32\) but data_offsets \[0, 8\] span 8 bytes/,
  );
  t(
    '{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}',
    four,
    /tensor "w" has a bad shape \[-1\]/,
  );
  t(
    '{"w":{"dtype":"F32","shape":[1],"data_offsets":[4]}}',
    four,
    /tensor "w" has bad data_offsets \[4\]/,
  );
  t('{"w":', four, /ck\.safetensors: header is not valid JSON/);
  t("[1,2]", four, /header is not a JSON object/);
  t('{"__metadata__":{"step":3}}', [], /__metadata__ "step" is not a string/);
  const long = handMade("{}", []);
  new DataView(long.buffer).setBigUint64(0, 1000n, true);
  assert.throws(
    () => decodeSafetensors(long, "ck.safetensors"),
    /ck\.safetensors: header length 1000 runs past the end of the file \(10 bytes\)/,
  );
  assert.throws(() => decodeSafetensors(new Uint8Array(3), "x"), /x: too short \(3 bytes\)/);
  assert.throws(
    () => encodeSafetensors({ w: { shape: [2, 2], data: new Float32Array(3) } }),
    /tensor "w" has shape \[2,2\] \(4 values\) but 3 values/,
  );
});

Deno.test("checkpoint: save/load round trip, missing and corrupt files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/run/checkpoint.safetensors`; // parent folder is created
    const tensors = sampleTensors(11);
    saveCheckpoint(path, tensors, { step: "7" });
    const back = loadCheckpoint(path);
    assertSameTensors(tensors, back.tensors);
    assert.deepEqual(back.metadata, { step: "7" });
    assert.deepEqual([...Deno.readDirSync(`${dir}/run`)].map((e) => e.name), [
      "checkpoint.safetensors",
    ]);

    assert.throws(() => loadCheckpoint(`${dir}/nope.safetensors`), {
      message: `flowgpu: checkpoint ${dir}/nope.safetensors not found`,
    });
    const bytes = Deno.readFileSync(path);
    Deno.writeFileSync(`${dir}/torn.safetensors`, bytes.subarray(0, bytes.length - 10));
    assert.throws(
      () => loadCheckpoint(`${dir}/torn.safetensors`),
      new RegExp(`${dir}/torn\\.safetensors: tensor ".*" data_offsets .* are out of range`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkpoint: a write that fails halfway leaves the previous checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/checkpoint.safetensors`;
    const v1 = sampleTensors(1);
    saveCheckpoint(path, v1, { step: "100" });
    const halfThenThrow = (file: Deno.FsFile, bytes: Uint8Array) => {
      file.writeSync(bytes.subarray(0, bytes.length >> 1));
      throw new Error("disk full (simulated)");
    };
    assert.throws(
      () => saveCheckpoint(path, sampleTensors(2), { step: "200" }, { write: halfThenThrow }),
      /disk full \(simulated\)/,
    );
    const back = loadCheckpoint(path);
    assert.equal(back.metadata.step, "100");
    assertSameTensors(v1, back.tensors);
    // The temporary file was cleaned up.
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["checkpoint.safetensors"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkpoint: a process killed mid-write leaves the previous checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/checkpoint.safetensors`;
    const v1 = sampleTensors(1);
    saveCheckpoint(path, v1, { step: "100" });
    // A child process writes half of the new checkpoint and dies without any cleanup.
    const module = new URL("../src/train/checkpoint.ts", import.meta.url).href;
    const code = `
      import { saveCheckpoint } from "${module}";
      const w = new Float32Array(4096).fill(2);
      saveCheckpoint(${JSON.stringify(path)}, { w: { shape: [4096], data: w } }, { step: "200" }, {
        write: (f, b) => { f.writeSync(b.subarray(0, b.length >> 1)); Deno.exit(9); },
      });`;
    const child = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--no-check", code],
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(child.code, 9, new TextDecoder().decode(child.stderr));
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.equal(names.length, 2);
    assert.match(names[1], /^checkpoint\.safetensors\.tmp-\d+-[0-9a-f]{8}$/);
    const back = loadCheckpoint(path);
    assert.equal(back.metadata.step, "100");
    assertSameTensors(v1, back.tensors);
    // A later save still succeeds next to the stray temporary file.
    const v3 = sampleTensors(3);
    saveCheckpoint(path, v3, { step: "300" });
    assertSameTensors(v3, loadCheckpoint(path).tensors);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkpoint: checkConfigMatches names every differing key", () => {
  const saved = { width: "128", levels: "3", steps: "32", affine: "true" };
  checkConfigMatches(saved, { width: 128, levels: 3, steps: 32, affine: true, lr: 1e-3 }, [
    "width",
    "levels",
    "steps",
    "affine",
  ]);
  assert.throws(
    () => checkConfigMatches(saved, { width: 64, levels: 3 }, ["width", "levels"]),
    { message: "flowgpu: checkpoint was trained with width=128 but the model has width=64" },
  );
  assert.throws(
    () =>
      checkConfigMatches(saved, { width: 64, levels: 2, steps: 32, lu: true }, [
        "width",
        "levels",
        "steps",
        "lu",
      ]),
    {
      message: "flowgpu: checkpoint does not match the model:\n" +
        "  checkpoint was trained with width=128 but the model has width=64\n" +
        "  checkpoint was trained with levels=3 but the model has levels=2\n" +
        "  checkpoint was trained with lu=(missing) but the model has lu=true",
    },
  );
});

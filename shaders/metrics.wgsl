// Training metrics accumulate on the GPU so that a step never waits on a readback: each logged
// scalar adds into a slot [sum of finite values, finite count, non-finite count, last value],
// and the trainer reads the slots only on the steps it logs.

struct Acc { slot: u32, index: u32, mode: u32 }
@group(0) @binding(0) var<uniform> ac: Acc;
@group(0) @binding(1) var<storage, read> acc_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> acc_stats: array<f32>;

// mode 0: the value itself; mode 1: 1 when 0 < value < 1 (an optimizer's clip scale: clipped).
@compute @workgroup_size(1)
fn accum() {
  var v = acc_src[ac.index];
  if (ac.mode == 1u) { v = select(0.0, 1.0, v > 0.0 && v < 1.0); }
  let b = ac.slot * 4u;
  // An all-ones exponent is Inf or NaN; tested on the bits, which fast-math cannot fold away.
  if ((bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u) {
    acc_stats[b + 2u] += 1.0;
  } else {
    acc_stats[b] += v;
    acc_stats[b + 1u] += 1.0;
  }
  acc_stats[b + 3u] = v;
}

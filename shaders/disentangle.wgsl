// The Gaussian log-density matrix + logsumexp of the MIG estimator (vae-disentangle.md §5.1), one
// code dim per dispatch. Thread s takes sample z_s and walks all N codes once, keeping an online
// logsumexp of log N(z_s; μ_n, σ_n²) over every code and, sharing its running max, over the codes
// whose label equals its source's label, for up to 8 factors. The N×M matrix never exists: the
// whole estimator is O(N) memory. Codes are read in the same order by every thread, so a
// workgroup's loads hit the same cache line. Results are log Σ (not yet divided by N or N_v);
// the caller finishes the entropies in f64 and recomputes on the CPU any sample whose subset sum
// underflowed against the shared max (flagged as NEG_BIG).
//
// mig_codes[base + n] = (μ, 1/(2σ²), −log σ − ½ log 2π, 0) for code n of this dim.
// mig_labels[n] / mig_src[s]: 8 factors' value indices, 16 bits each, factor f in word f/2.
// mig_out[(base_out + s) * 9 + 0] = log Σ_n, [.. + 1 + f] = log Σ_{n: l_f(n) = l_f(src s)}.

struct Mig { n: u32, m: u32, code_base: u32, z_base: u32 }
@group(0) @binding(0) var<uniform> mg: Mig;
@group(0) @binding(1) var<storage, read> mig_codes: array<vec4f>;
@group(0) @binding(2) var<storage, read> mig_labels: array<vec4u>;
@group(0) @binding(3) var<storage, read> mig_z: array<f32>;
@group(0) @binding(4) var<storage, read> mig_src: array<vec4u>;
@group(0) @binding(5) var<storage, read_write> mig_out: array<f32>;

const NEG_BIG = -3.0e38;
// Factors in this pass (1..8): a constant, so the per-code label loop unrolls to what is used.
override NF: u32 = 8u;

@compute @workgroup_size(WG)
fn mig_logsumexp(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let s = flat(gid, nwg);
  if (s >= mg.m) { return; }
  let z = mig_z[mg.z_base + s];
  let own = mig_src[s];
  var mx = NEG_BIG;
  var total = 0.0;
  var sub: array<f32, 8>;
  for (var f = 0u; f < 8u; f++) { sub[f] = 0.0; }
  for (var i = 0u; i < mg.n; i++) {
    let c = mig_codes[mg.code_base + i];
    let d = z - c.x;
    let v = c.z - c.y * d * d;
    var e = 1.0;
    if (v > mx) {
      // A new running max: rescale what was summed so far (rare after the first codes).
      let r = exp(mx - v);
      total *= r;
      for (var f = 0u; f < NF; f++) { sub[f] *= r; }
      mx = v;
    } else {
      e = exp(v - mx);
    }
    total += e;
    // Equal 16-bit halves of (label XOR source label) are the matching factors.
    let x = mig_labels[i] ^ own;
    for (var f = 0u; f < NF; f++) {
      let half = (x[f / 2u] >> (16u * (f % 2u))) & 0xffffu;
      sub[f] += select(0.0, e, half == 0u);
    }
  }
  let o = (mg.z_base + s) * 9u;
  mig_out[o] = mx + log(total);
  // An underflowed subset (its own code ≥ 69 nats below the max) is flagged with NEG_BIG, not
  // log(0), whose value WGSL leaves to the implementation.
  for (var f = 0u; f < NF; f++) {
    mig_out[o + 1u + f] = select(mx + log(sub[f]), NEG_BIG, sub[f] < 1e-30);
  }
}

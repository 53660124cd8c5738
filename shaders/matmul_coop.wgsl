// Matmul on cooperative matrices (tensor cores): y[M, N] = a[M, K] @ b[K, N],
// FP16 inputs, FP32 accumulation, any M, N, K.
//
// Needs EXPERIMENTAL_COOPERATIVE_MATRIX with an F x F x F f16 x f16 -> f32
// configuration (F = 16, or 8 where that is what the adapter offers), SHADER_F16
// and SUBGROUP. The host prepends `enable f16; enable wgpu_cooperative_matrix;`,
// the storage accessors, matmul_common.wgsl and these constants:
//   const F: u32;              edge of one cooperative fragment (8 or 16)
//   const SGM: u32; const SGN: u32;   the workgroup's subgroups, as a grid
//   const FM: u32; const FN: u32;     fragments of y one subgroup owns
//   const BK: u32;             depth of one K slice (a multiple of F)
//   const NT: u32;             invocations per workgroup (SGM * SGN subgroups
//                              of the adapter's widest width)
// and replaces the three `//@` lines with code written out per fragment
// (`c_i_j` accumulators, their loads and multiplies, their stores), so that
// every cooperative matrix lives in registers under its own name.
//
// A workgroup computes a BM x BN block of y; subgroup (sm, sn) owns its
// FM x FN fragments at rows sm * FM * F, columns sn * FN * F of the block.
// Each BK-deep slice of a and b is staged through workgroup memory as f16
// 4-element words, with zeros past every edge: that is what lets M, N, K be
// any size (cooperative loads have no bounds). The slice after the current
// one is fetched into registers while the subgroups multiply the current one
// (software pipelining), so global-memory latency hides behind the multiplies.
// Rows in workgroup memory are padded by two words (8 halves) to spread them
// over the banks; cooperative loads from arrays of words count their offsets
// and strides in words. The result leaves one fragment at a
// time through the subgroup's own F x F staging area, so the guarded store_row
// writes y in any storage. The subgroup's place comes from subgroup_id, never
// from the invocation index, so the grid is right however a driver forms
// subgroups. Where a driver runs narrower subgroups than the adapter's widest
// (NT is sized for those), the subgroups past the grid repeat the last
// subgroup's work (cooperative operations must sit in uniform control flow,
// so they cannot simply skip it) and store the same values to the same places.

const BM: u32 = SGM * FM * F;
const BN: u32 = SGN * FN * F;
// Row strides in workgroup memory, in 4-half words.
const LDSA: u32 = BK / 4u + 2u;
const LDSB: u32 = BN / 4u + 2u;
// Words of a and b one invocation fetches per slice.
const WA: u32 = (BM * BK / 4u + NT - 1u) / NT;
const WB: u32 = (BK * BN / 4u + NT - 1u) / NT;

var<workgroup> sa: array<vec4<f16>, BM * LDSA>; // [BM rows][BK k]
var<workgroup> sb: array<vec4<f16>, BK * LDSB>; // [BK k][BN cols]
var<workgroup> sc: array<f32, SGM * SGN * F * F>; // one F x F fragment per subgroup

// Word e of the a slice at depth t (row e / (BK/4), k (e % (BK/4)) * 4), zeros past the edges.
fn fetch_a(e: u32, row0: u32, t: u32) -> vec4<f16> {
    let row = row0 + e / (BK / 4u);
    let k = t + (e % (BK / 4u)) * 4u;
    var v = vec4<f32>(0.0);
    if (row < p.m && e < BM * BK / 4u) {
        let base = row * p.lda + k;
        if (VEC4) {
            // K is a multiple of 4: the word is wholly in or out.
            if (k < p.k) { v = load4_a(base); }
        } else {
            if (k < p.k) { v.x = load_a(base); }
            if (k + 1u < p.k) { v.y = load_a(base + 1u); }
            if (k + 2u < p.k) { v.z = load_a(base + 2u); }
            if (k + 3u < p.k) { v.w = load_a(base + 3u); }
        }
    }
    return vec4<f16>(v);
}

// Word e of the b slice at depth t (k e / (BN/4), column (e % (BN/4)) * 4), zeros past the edges.
fn fetch_b(e: u32, col0: u32, t: u32) -> vec4<f16> {
    let k = t + e / (BN / 4u);
    var v = vec4<f32>(0.0);
    if (k < p.k && e < BK * BN / 4u) {
        v = vec4<f32>(b_row(k, col0 + (e % (BN / 4u)) * 4u));
    }
    return vec4<f16>(v);
}

// Writes this subgroup's staged fragment (rows r0.., columns c0.. of y).
fn write_fragment(sg: u32, lane: u32, width: u32, r0: u32, c0: u32) {
    for (var e = lane; e < F * F / 4u; e += width) {
        let r = e / (F / 4u);
        let c = (e % (F / 4u)) * 4u;
        let s = sg * F * F + r * F + c;
        store_row(r0 + r, c0 + c, vec4<f32>(sc[s], sc[s + 1u], sc[s + 2u], sc[s + 3u]));
    }
}

@compute @workgroup_size(NT, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
    @builtin(subgroup_id) sgid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) width: u32,
) {
    let sg = min(sgid, SGM * SGN - 1u);
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    // This subgroup's fragments start at row fr, column fc of the block.
    let fr = (sg / SGN) * FM * F;
    let fc = (sg % SGN) * FN * F;
    //@decl
    var pa: array<vec4<f16>, WA>;
    var pb: array<vec4<f16>, WB>;
    for (var i = 0u; i < WA; i++) {
        pa[i] = fetch_a(tid + i * NT, row0, 0u);
    }
    for (var i = 0u; i < WB; i++) {
        pb[i] = fetch_b(tid + i * NT, col0, 0u);
    }
    for (var t = 0u; t < p.k; t += BK) {
        for (var i = 0u; i < WA; i++) {
            let e = tid + i * NT;
            if (e < BM * BK / 4u) {
                sa[(e / (BK / 4u)) * LDSA + e % (BK / 4u)] = pa[i];
            }
        }
        for (var i = 0u; i < WB; i++) {
            let e = tid + i * NT;
            if (e < BK * BN / 4u) {
                sb[(e / (BN / 4u)) * LDSB + e % (BN / 4u)] = pb[i];
            }
        }
        workgroupBarrier();
        // The next slice, in flight while this one is multiplied.
        if (t + BK < p.k) {
            for (var i = 0u; i < WA; i++) {
                pa[i] = fetch_a(tid + i * NT, row0, t + BK);
            }
            for (var i = 0u; i < WB; i++) {
                pb[i] = fetch_b(tid + i * NT, col0, t + BK);
            }
        }
        for (var kk = 0u; kk < BK; kk += F) {
            //@mma
        }
        workgroupBarrier();
    }
    //@store
}

// Matmul on cooperative matrices (tensor cores): y[M, N] = a[M, K] @ b[K, N],
// FP16 inputs, FP32 accumulation, any M, N, K.
//
// Needs EXPERIMENTAL_COOPERATIVE_MATRIX with an F x F x F f16 x f16 -> f32
// configuration (F = 16, or 8 where that is what the adapter offers), SHADER_F16
// and SUBGROUP. The host prepends `enable f16; enable wgpu_cooperative_matrix;`,
// the storage accessors, common.wgsl and these constants:
//   const F: u32;              edge of one cooperative fragment (8 or 16)
//   const SGM: u32; const SGN: u32;   the workgroup's subgroups, as a grid
//   const FM: u32; const FN: u32;     fragments of y one subgroup owns
//   const BK: u32;             depth of one K slice (a multiple of F)
//   const GLOBAL_LOADS: bool;  interior tiles load fragments from a and b
//                              (declared as arrays of f16: no vec4 loads)
// and replaces the three `//@` lines with code written out per fragment
// (`c_i_j` accumulators, their loads and multiplies, their stores), so that
// every cooperative matrix lives in registers under its own name.
//
// A workgroup (WG = SGM * SGN subgroups of the adapter's width) computes a
// BM x BN block of y; subgroup (sm, sn) owns its FM x FN fragments at rows
// sm * FM * F, columns sn * FN * F of the block. Each BK-deep slice of a and b
// is staged through workgroup memory, 4 elements per load where rows are whole
// 4-element words, with zeros past every edge: that is what lets M, N, K be
// any size (cooperative loads have no bounds). Rows in workgroup memory are
// padded by 8 halves (16 bytes) to spread them over the banks. The result
// leaves one fragment at a time through the subgroup's own F x F staging
// area, so the guarded store_row writes y in any storage. The subgroup's
// place comes from subgroup_id, never from the invocation index, so the grid
// is right however a driver forms subgroups. Where a driver runs narrower
// subgroups than the adapter's widest (WG is sized for those), the subgroups
// past the grid repeat the last subgroup's work (cooperative operations must
// sit in uniform control flow, so they cannot simply skip it) and store the
// same values to the same places.

override WG: u32 = 128u;

const BM: u32 = SGM * FM * F;
const BN: u32 = SGN * FN * F;
const LDSA: u32 = BK + 8u;
const LDSB: u32 = BN + 8u;

var<workgroup> sa: array<f16, BM * LDSA>; // [BM rows][BK k], rows padded to LDSA
var<workgroup> sb: array<f16, BK * LDSB>; // [BK k][BN cols], rows padded to LDSB
var<workgroup> sc: array<f32, SGM * SGN * F * F>; // one F x F fragment per subgroup

// Stages a[row0.., t..] (BM x BK) and b[t.., col0..] (BK x BN), zeros past the edges.
fn stage(tid: u32, row0: u32, col0: u32, t: u32) {
    for (var e = tid; e < BM * BK / 4u; e += WG) {
        let r = e / (BK / 4u);
        let kq = (e % (BK / 4u)) * 4u;
        let row = row0 + r;
        let k = t + kq;
        var v = vec4<f32>(0.0);
        if (row < p.m) {
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
        let s = r * LDSA + kq;
        sa[s] = f16(v.x);
        sa[s + 1u] = f16(v.y);
        sa[s + 2u] = f16(v.z);
        sa[s + 3u] = f16(v.w);
    }
    for (var e = tid; e < BK * BN / 4u; e += WG) {
        let kr = e / (BN / 4u);
        let cq = (e % (BN / 4u)) * 4u;
        var v = vec4<f32>(0.0);
        if (t + kr < p.k) {
            v = vec4<f32>(b_row(t + kr, col0 + cq));
        }
        let s = kr * LDSB + cq;
        sb[s] = f16(v.x);
        sb[s + 1u] = f16(v.y);
        sb[s + 2u] = f16(v.z);
        sb[s + 3u] = f16(v.w);
    }
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

@compute @workgroup_size(WG, 1, 1)
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
    // GLOBAL_LOADS: a workgroup whose whole tile lies inside y loads its
    // fragments straight from a and b over every whole K slice (all in
    // bounds, so no staging, no barriers); the K tail, and every slice of an
    // edge tile, go through workgroup memory with zeros past the edges.
    // Whether a tile is inside depends on the workgroup alone, so the
    // cooperative operations stay in uniform control flow.
    // (`&`, not `&&`: naga lowers `&&` through a local variable, which its
    // uniformity analysis cannot see through.)
    let inside = GLOBAL_LOADS & (row0 + BM <= p.m) & (col0 + BN <= p.n);
    let t_staged = select(0u, p.k - p.k % BK, inside);
    if (inside) {
        for (var t = 0u; t < t_staged; t += BK) {
            for (var kk = 0u; kk < BK; kk += F) {
                let k0 = t + kk;
                //@mma_global
            }
        }
    }
    for (var t = t_staged; t < p.k; t += BK) {
        stage(tid, row0, col0, t);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk += F) {
            //@mma
        }
        workgroupBarrier();
    }
    //@store
}

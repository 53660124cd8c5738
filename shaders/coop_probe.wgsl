// Ceiling probe of the cooperative matrices (tensor cores): how many f16 x f16
// -> f32 multiply-adds per second this adapter runs through wgpu's
// cooperative-matrix extension, beside which the coop matmul is read.
//
// The host prepends `enable f16; enable wgpu_cooperative_matrix;` and
//   const F: u32;     edge of one fragment (16, or 8 where that is offered)
//   const NSG: u32;   subgroups per workgroup (WG = NSG x the subgroup width)
// Each subgroup holds 2 A and 4 B fragments and 8 independent accumulators,
// and runs `iters` steps of 8 coopMultiplyAdd. With LDS the six operands are
// loaded again from workgroup memory every step (alternating between two
// copies, so no load can be hoisted), as the matmul's inner loop does; without
// it they stay in registers: the bare multiply-add rate.
//
// The result checks itself: A's elements are in[0] (1/16), B's in[1] (1), so
// every product fragment is F/16 in each element, exact in f32, and each
// subgroup writes the sum of element 0 of its 8 accumulators,
// 8 x iters x F/16, which the host compares.

struct Params {
    iters: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
@group(0) @binding(0) var<storage, read> inp: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

override WG: u32 = 128u;
override LDS: bool = false;

var<workgroup> sa: array<f16, 4u * F * F>; // two copies of A's 2 fragments
var<workgroup> sb: array<f16, 8u * F * F>; // two copies of B's 4 fragments
var<workgroup> sc: array<f32, NSG * F * F>; // one fragment per subgroup

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
    @builtin(subgroup_id) sgid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let sg = min(sgid, NSG - 1u);
    let av = f16(inp[0]);
    let bv = f16(inp[1]);
    for (var i = tid; i < 4u * F * F; i += WG) {
        sa[i] = av;
    }
    for (var i = tid; i < 8u * F * F; i += WG) {
        sb[i] = bv;
    }
    workgroupBarrier();
    var a0 = coopLoadT<coop_mat_a>(&sa[0], F);
    var a1 = coopLoadT<coop_mat_a>(&sa[F * F], F);
    var b0 = coopLoadT<coop_mat_b>(&sb[0], F);
    var b1 = coopLoadT<coop_mat_b>(&sb[F * F], F);
    var b2 = coopLoadT<coop_mat_b>(&sb[2u * F * F], F);
    var b3 = coopLoadT<coop_mat_b>(&sb[3u * F * F], F);
    var c00 = coop_mat_c();
    var c01 = coop_mat_c();
    var c02 = coop_mat_c();
    var c03 = coop_mat_c();
    var c10 = coop_mat_c();
    var c11 = coop_mat_c();
    var c12 = coop_mat_c();
    var c13 = coop_mat_c();
    for (var t = 0u; t < p.iters; t++) {
        if (LDS) {
            let oa = (t & 1u) * 2u * F * F;
            let ob = (t & 1u) * 4u * F * F;
            a0 = coopLoadT<coop_mat_a>(&sa[oa], F);
            a1 = coopLoadT<coop_mat_a>(&sa[oa + F * F], F);
            b0 = coopLoadT<coop_mat_b>(&sb[ob], F);
            b1 = coopLoadT<coop_mat_b>(&sb[ob + F * F], F);
            b2 = coopLoadT<coop_mat_b>(&sb[ob + 2u * F * F], F);
            b3 = coopLoadT<coop_mat_b>(&sb[ob + 3u * F * F], F);
        }
        c00 = coopMultiplyAdd(a0, b0, c00);
        c01 = coopMultiplyAdd(a0, b1, c01);
        c02 = coopMultiplyAdd(a0, b2, c02);
        c03 = coopMultiplyAdd(a0, b3, c03);
        c10 = coopMultiplyAdd(a1, b0, c10);
        c11 = coopMultiplyAdd(a1, b1, c11);
        c12 = coopMultiplyAdd(a1, b2, c12);
        c13 = coopMultiplyAdd(a1, b3, c13);
    }
    // Element 0 of each accumulator, summed, through the subgroup's own slot.
    var total = 0.0;
    let slot = sg * F * F;
    workgroupBarrier();
    coopStoreT(c00, &sc[slot], F);
    workgroupBarrier();
    total += sc[slot];
    workgroupBarrier();
    coopStoreT(c01, &sc[slot], F);
    workgroupBarrier();
    total += sc[slot];
    workgroupBarrier();
    coopStoreT(c02, &sc[slot], F);
    workgroupBarrier();
    total += sc[slot];
    workgroupBarrier();
    coopStoreT(c03, &sc[slot], F);
    workgroupBarrier();
    total += sc[slot];
    workgroupBarrier();
    coopStoreT(c10, &sc[slot], F);
    workgroupBarrier();
    total += sc[slot];
    workgroupBarrier();
    coopStoreT(c11, &sc[slot], F);
    workgroupBarrier();
    total += sc[slot];
    workgroupBarrier();
    coopStoreT(c12, &sc[slot], F);
    workgroupBarrier();
    total += sc[slot];
    workgroupBarrier();
    coopStoreT(c13, &sc[slot], F);
    workgroupBarrier();
    total += sc[slot];
    if (lane == 0u) {
        out[wg.x * NSG + sg] = total;
    }
}

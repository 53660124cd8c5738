// Matmul that shares rows of a across a subgroup: y[M, N] = a[M, K] @ b[K, N].
//
// The host prepends the storage accessors and common.wgsl as for
// tiled.wgsl (needs the SUBGROUP feature; naga takes subgroup built-ins
// without an `enable`). A
// workgroup is one row of WG_X invocations (WG_X is a multiple of the largest
// subgroup), so every invocation of a subgroup owns the same TM rows of y, and
// TN consecutive columns of its own. Instead of every invocation loading the
// same a[r.., k], each lane loads one k of a subgroup-sized slice and the
// subgroup passes the values around with subgroupShuffle: one load of a per
// subgroup-size FMAs instead of one per FMA. Control flow stays uniform (no
// early return; edges are guarded loads and stores) so every shuffle sees
// every lane.

override WG_X: u32 = 64u;

@compute @workgroup_size(WG_X, 1, 1)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    let r = gid.y * TM;
    let c = gid.x * TN;
    var acc: array<vec4<acc_t>, TM * TN / 4u>;
    for (var k0 = 0u; k0 < p.k; k0 += sg) {
        var mine: array<acc_t, TM>;
        for (var i = 0u; i < TM; i++) {
            if (r + i < p.m && k0 + lane < p.k) {
                mine[i] = acc_t(load_a((r + i) * p.lda + k0 + lane));
            }
        }
        let depth = min(sg, p.k - k0);
        for (var kk = 0u; kk < depth; kk++) {
            let k = k0 + kk;
            var a: array<acc_t, TM>;
            for (var i = 0u; i < TM; i++) {
                a[i] = subgroupShuffle(mine[i], kk);
            }
            for (var j = 0u; j < TN / 4u; j++) {
                let b = b_row(k, c + j * 4u);
                for (var i = 0u; i < TM; i++) {
                    let idx = i * (TN / 4u) + j;
                    acc[idx] = fma(vec4<acc_t>(a[i]), b, acc[idx]);
                }
            }
        }
    }
    for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN / 4u; j++) {
            store_row(r + i, c + j * 4u, vec4<f32>(acc[i * (TN / 4u) + j]));
        }
    }
}

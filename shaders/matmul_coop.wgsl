// Matmul on cooperative matrices (tensor cores): y[M, N] = a[M, K] @ b[K, N],
// FP16 inputs, FP32 accumulation, any M, N, K.
//
// Needs EXPERIMENTAL_COOPERATIVE_MATRIX with a 16x16x16 f16 x f16 -> f32
// configuration, and SHADER_F16 (a and b are array<f16>). The host prepends
// `enable f16; enable wgpu_cooperative_matrix;`, the f16 storage accessors and
// matmul_common.wgsl. A workgroup is one subgroup (WG = the adapter's subgroup
// size, a pipeline-overridable constant) and computes a 32x32 block of y as
// 2x2 cooperative 16x16 tiles. Each 16-deep slice of K is staged through
// workgroup memory with zeros past the edges, which is what lets M, N, K be any
// size (cooperative loads themselves have no bounds); the result goes through
// workgroup memory too, so the guarded store_row writes y in any storage.

override WG: u32 = 32u;

var<workgroup> sa: array<f16, 512>; // [32 rows][16 k], row-major
var<workgroup> sb: array<f16, 512>; // [16 k][32 cols], row-major
var<workgroup> sc: array<f32, 1024>; // [32][32], row-major

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let row0 = wg.y * 32u;
    let col0 = wg.x * 32u;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    for (var t = 0u; t < p.k; t += 16u) {
        for (var e = tid; e < 512u; e += WG) {
            let ra = e / 16u;
            let ka = e % 16u;
            var va = 0.0;
            if (row0 + ra < p.m && t + ka < p.k) {
                va = load_a((row0 + ra) * p.lda + t + ka);
            }
            sa[e] = f16(va);
            let kb = e / 32u;
            let cb = e % 32u;
            var vb = 0.0;
            if (t + kb < p.k && col0 + cb < p.n) {
                vb = load_b((t + kb) * p.n + col0 + cb);
            }
            sb[e] = f16(vb);
        }
        workgroupBarrier();
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&sa[0], 16u);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&sa[256], 16u);
        let b0 = coopLoadT<coop_mat16x16<f16, B>>(&sb[0], 32u);
        let b1 = coopLoadT<coop_mat16x16<f16, B>>(&sb[16], 32u);
        c00 = coopMultiplyAdd(a0, b0, c00);
        c01 = coopMultiplyAdd(a0, b1, c01);
        c10 = coopMultiplyAdd(a1, b0, c10);
        c11 = coopMultiplyAdd(a1, b1, c11);
        workgroupBarrier();
    }
    coopStoreT(c00, &sc[0], 32u);
    coopStoreT(c01, &sc[16], 32u);
    coopStoreT(c10, &sc[512], 32u);
    coopStoreT(c11, &sc[528], 32u);
    workgroupBarrier();
    for (var e = tid; e < 256u; e += WG) {
        let r = e / 8u;
        let c = (e % 8u) * 4u;
        let i = r * 32u + c;
        store_row(row0 + r, col0 + c, vec4<f32>(sc[i], sc[i + 1u], sc[i + 2u], sc[i + 3u]));
    }
}

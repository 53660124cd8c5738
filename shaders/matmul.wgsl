// Tiled matmul y[M, N] = a[M, K] @ b[K, N], row-major, any M, N, K.
//
// The host prepends the storage accessors and matmul_common.wgsl (Params, p,
// store_row; see src/backend/gpu/shaders.rs):
//   load_a(i) / load_b(i) -> f32   read element i of a / b, whatever the storage
//   store2_y(i, v, both)           write y[i] (and y[i+1] when `both`); i is even
// so one kernel serves f32, f16 and f16 packed into u32 words. Arithmetic and the
// shared tiles are f32 in every case: FP16 storage, FP32 accumulation.
//
// Blocking: a 16x16 workgroup computes a 64x64 tile of y; each thread owns a 4x4
// block (register blocking), so each value loaded from shared memory feeds 4
// FMAs instead of 1, and a workgroup needs one pair of barriers per 16-deep
// slice of K, not per element. Barriers are what software devices (lavapipe)
// pay most for; shared-memory traffic is what real GPUs pay for.

const BM: u32 = 64u;   // rows of y per workgroup
const BN: u32 = 64u;   // columns of y per workgroup
const BK: u32 = 16u;   // depth of one K slice
const THREADS: u32 = 256u;

// k-major tiles: a thread reads 4 consecutive rows (tile_a) or columns (tile_b) of one k.
var<workgroup> tile_a: array<f32, 1024>; // [BK][BM]
var<workgroup> tile_b: array<f32, 1024>; // [BK][BN]

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    let tid = lid.y * 16u + lid.x;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var t = 0u; t < p.k; t += BK) {
        // Each of the 256 threads loads 4 elements of each tile. Out-of-range
        // elements load as 0, which adds nothing: this is what lets M, N, K be
        // any size.
        for (var i = 0u; i < 4u; i++) {
            let e = tid + i * THREADS;
            // a: consecutive threads read consecutive k of one row.
            let ra = e / BK;
            let ka = e % BK;
            var va = 0.0;
            if (row0 + ra < p.m && t + ka < p.k) {
                va = load_a((row0 + ra) * p.lda + t + ka);
            }
            tile_a[ka * BM + ra] = va;
            // b: consecutive threads read consecutive columns of one k.
            let kb = e / BN;
            let cb = e % BN;
            var vb = 0.0;
            if (t + kb < p.k && col0 + cb < p.n) {
                vb = load_b((t + kb) * p.n + col0 + cb);
            }
            tile_b[kb * BN + cb] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let ia = kk * BM + lid.y * 4u;
            let ib = kk * BN + lid.x * 4u;
            let b = vec4<f32>(tile_b[ib], tile_b[ib + 1u], tile_b[ib + 2u], tile_b[ib + 3u]);
            acc0 = fma(vec4<f32>(tile_a[ia]), b, acc0);
            acc1 = fma(vec4<f32>(tile_a[ia + 1u]), b, acc1);
            acc2 = fma(vec4<f32>(tile_a[ia + 2u]), b, acc2);
            acc3 = fma(vec4<f32>(tile_a[ia + 3u]), b, acc3);
        }
        // The next slice overwrites the tiles: wait until every thread is done reading.
        workgroupBarrier();
    }

    let r = row0 + lid.y * 4u;
    let c = col0 + lid.x * 4u;
    store_row(r, c, acc0);
    store_row(r + 1u, c, acc1);
    store_row(r + 2u, c, acc2);
    store_row(r + 3u, c, acc3);
}

// Tiled matmul y[M, N] = a[M, K] @ b[K, N], row-major, any M, N, K.
//
// The host prepends the storage accessors and common.wgsl (Params, p,
// store_row, the accumulator type acc_t and the register block TM x TN; see
// src/backend/gpu/storage.rs and src/ops/matmul/kernels.rs):
//   load_a(i) / load_b(i) -> f32   read element i of a / b, whatever the storage
//   store2_y(i, v, both)           write y[i] (and y[i+1] when `both`); i is even
// so one kernel serves f32, f16 and f16 packed into u32 words. acc_t is f32
// (FP16 storage, FP32 accumulation) unless the f16-accumulation variant is asked for.
//
// Blocking: a WG_X x WG_Y workgroup computes a BM x BN tile of y (BM = WG_Y * TM,
// BN = WG_X * TN); each thread owns TM rows and TN columns of it (register
// blocking), so each value read from shared memory feeds TM or TN FMAs, and a
// workgroup needs one pair of barriers per BK-deep slice of K. The workgroup
// shape and BK are pipeline-overridable constants: the host sets them per
// configuration (the autotuner tries several), and the tile arrays are sized by them.
// A thread's TN columns are TN/4 vec4 groups spaced WG_X*4 apart, so neighbouring
// threads read neighbouring vec4s of the b tile.

override WG_X: u32 = 16u;
override WG_Y: u32 = 16u;
override BK: u32 = 16u;
override BM: u32 = WG_Y * TM;
override BN: u32 = WG_X * TN;
override A_VEC4S: u32 = BK * BM / 4u;
override B_VEC4S: u32 = BK * BN / 4u;

// k-major tiles of vec4s: [BK][BM/4] and [BK][BN/4].
var<workgroup> tile_a: array<vec4<acc_t>, A_VEC4S>;
var<workgroup> tile_b: array<vec4<acc_t>, B_VEC4S>;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    let threads = WG_X * WG_Y;
    let tid = lid.y * WG_X + lid.x;
    var acc: array<vec4<acc_t>, TM * TN / 4u>;

    for (var t = 0u; t < p.k; t += BK) {
        // Out-of-range elements load as 0, which adds nothing: this is what
        // lets M, N, K be any size.
        if (VEC4) {
            // Whole words (16 bytes in f32, 8 in f16): 4 consecutive k of a row
            // of a, 4 consecutive columns of b. K and N are multiples of 4, so a word is wholly in
            // range or wholly out.
            for (var e = tid; e < BM * BK / 4u; e += threads) {
                let ra = e / (BK / 4u);
                let ka = (e % (BK / 4u)) * 4u;
                var va = vec4<f32>(0.0);
                if (row0 + ra < p.m && t + ka < p.k) {
                    va = load4_a((row0 + ra) * p.lda + t + ka);
                }
                for (var j = 0u; j < 4u; j++) {
                    tile_a[((ka + j) * BM + ra) / 4u][ra % 4u] = acc_t(va[j]);
                }
            }
            for (var e = tid; e < BN * BK / 4u; e += threads) {
                let kb = e / (BN / 4u);
                let cb = (e % (BN / 4u)) * 4u;
                var vb = vec4<f32>(0.0);
                if (t + kb < p.k && col0 + cb < p.n) {
                    vb = load4_b((t + kb) * p.n + col0 + cb);
                }
                tile_b[(kb * BN + cb) / 4u] = vec4<acc_t>(vb);
            }
        } else {
            // a: consecutive threads read consecutive k of one row.
            for (var e = tid; e < BM * BK; e += threads) {
                let ra = e / BK;
                let ka = e % BK;
                var va = 0.0;
                if (row0 + ra < p.m && t + ka < p.k) {
                    va = load_a((row0 + ra) * p.lda + t + ka);
                }
                tile_a[(ka * BM + ra) / 4u][ra % 4u] = acc_t(va);
            }
            // b: consecutive threads read consecutive columns of one k.
            for (var e = tid; e < BN * BK; e += threads) {
                let kb = e / BN;
                let cb = e % BN;
                var vb = 0.0;
                if (t + kb < p.k && col0 + cb < p.n) {
                    vb = load_b((t + kb) * p.n + col0 + cb);
                }
                tile_b[(kb * BN + cb) / 4u][cb % 4u] = acc_t(vb);
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var av: array<vec4<acc_t>, TM / 4u>;
            for (var i = 0u; i < TM / 4u; i++) {
                av[i] = tile_a[(kk * BM + lid.y * TM) / 4u + i];
            }
            for (var j = 0u; j < TN / 4u; j++) {
                let b = tile_b[kk * BN / 4u + j * WG_X + lid.x];
                for (var i = 0u; i < TM; i++) {
                    let idx = i * (TN / 4u) + j;
                    acc[idx] = fma(vec4<acc_t>(av[i / 4u][i % 4u]), b, acc[idx]);
                }
            }
        }
        // The next slice overwrites the tiles: wait until every thread is done reading.
        workgroupBarrier();
    }

    for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN / 4u; j++) {
            store_row(row0 + lid.y * TM + i, col0 + (j * WG_X + lid.x) * 4u, vec4<f32>(acc[i * (TN / 4u) + j]));
        }
    }
}

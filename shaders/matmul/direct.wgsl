// Matmul without workgroup memory: y[M, N] = a[M, K] @ b[K, N], any M, N, K.
//
// The host prepends the same storage accessors and common.wgsl as for
// tiled.wgsl. Each invocation owns a TM x TN block of y (TN consecutive
// columns) and streams its TM rows of a and TN columns of b straight from the
// buffers, relying on the cache instead of shared tiles. No barriers: on
// devices where a barrier is expensive (software rasterisers such as lavapipe,
// which run a workgroup's invocations as loops over SIMD lanes) this avoids
// the cost that dominates the tiled kernel there. The workgroup shape is
// pipeline-overridable.

override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;

// Reads a[row, k], or 0 past the last row (rows past m are never stored).
fn a_at(row: u32, k: u32) -> acc_t {
    if (row < p.m) {
        return acc_t(load_a(row * p.lda + k));
    }
    return acc_t(0.0);
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.y * TM;
    let c = gid.x * TN;
    if (r >= p.m || c >= p.n) {
        return;
    }
    var acc: array<vec4<acc_t>, TM * TN / 4u>;
    for (var k = 0u; k < p.k; k++) {
        for (var j = 0u; j < TN / 4u; j++) {
            let b = b_row(k, c + j * 4u);
            for (var i = 0u; i < TM; i++) {
                let idx = i * (TN / 4u) + j;
                acc[idx] = fma(vec4<acc_t>(a_at(r + i, k)), b, acc[idx]);
            }
        }
    }
    for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN / 4u; j++) {
            store_row(r + i, c + j * 4u, vec4<f32>(acc[i * (TN / 4u) + j]));
        }
    }
}

// Matmul without workgroup memory: y[M, N] = a[M, K] @ b[K, N], any M, N, K.
//
// The host prepends the same storage accessors and matmul_common.wgsl as for
// matmul.wgsl. Each invocation owns a 4x4 block of y and streams its 4 rows of a
// and 4 columns of b straight from the buffers, relying on the cache instead of
// shared tiles. No barriers: on devices where a barrier is expensive (software rasterisers such
// as lavapipe, which run a workgroup's invocations as loops over SIMD lanes)
// this avoids the cost that dominates the tiled kernel there.

// Reads a[row, k], or 0 past the edge (rows past m contribute nothing stored).
fn a_at(row: u32, k: u32) -> f32 {
    if (row < p.m) {
        return load_a(row * p.lda + k);
    }
    return 0.0;
}

// Reads b[k, col..col+4], zero past the last column.
fn b_row(k: u32, col: u32) -> vec4<f32> {
    let base = k * p.n + col;
    var v = vec4<f32>(0.0);
    if (col < p.n) { v.x = load_b(base); }
    if (col + 1u < p.n) { v.y = load_b(base + 1u); }
    if (col + 2u < p.n) { v.z = load_b(base + 2u); }
    if (col + 3u < p.n) { v.w = load_b(base + 3u); }
    return v;
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.y * 4u;
    let c = gid.x * 4u;
    if (r >= p.m || c >= p.n) {
        return;
    }
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let b = b_row(k, c);
        acc0 = fma(vec4<f32>(a_at(r, k)), b, acc0);
        acc1 = fma(vec4<f32>(a_at(r + 1u, k)), b, acc1);
        acc2 = fma(vec4<f32>(a_at(r + 2u, k)), b, acc2);
        acc3 = fma(vec4<f32>(a_at(r + 3u, k)), b, acc3);
    }
    store_row(r, c, acc0);
    store_row(r + 1u, c, acc1);
    store_row(r + 2u, c, acc2);
    store_row(r + 3u, c, acc3);
}

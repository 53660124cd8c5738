// Shared by the matmul kernels (matmul.wgsl, matmul_direct.wgsl): their
// parameters and the guarded store of one 4-wide row segment of y. The host
// prepends it after the storage accessors.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // Row stride of a, in elements (== k, or an even pad when a is packed f16 written by the gather).
    lda: u32,
    // Row stride of y, in elements (== n, or n rounded up to even for packed f16 output).
    ldy: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
@group(0) @binding(3) var<uniform> p: Params;

fn store_row(row: u32, col: u32, v: vec4<f32>) {
    // col is a multiple of 4, so pairs (col, col+1) and (col+2, col+3) never straddle
    // a packed word; the checks keep columns past n unwritten (or in the row's pad).
    if (row >= p.m || col >= p.n) {
        return;
    }
    let base = row * p.ldy + col;
    store2_y(base, v.xy, col + 1u < p.n);
    if (col + 2u < p.n) {
        store2_y(base + 2u, v.zw, col + 3u < p.n);
    }
}

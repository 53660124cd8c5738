// Shared by the matmul kernels (shaders/matmul/*.wgsl): their parameters, the guarded
// load of a 4-wide row segment of b (one column block of the weight: n wide)
// and the guarded store of one of y (at column y_col0 + col). The host
// prepends it after the storage accessors and these compile-time constants:
//   alias acc_t = f32 | f16;   the accumulator (and tile) type
//   const TM: u32; const TN: u32;   rows and columns of y one invocation owns
//   const VEC4: bool;   rows of a and b are whole 4-element words (K, N, lda
//                       multiples of 4): load4_a / load4_b read one word
//   fn epilogue(col, v) -> vec4<f32>   what a column's sums become before they
//                       are stored: themselves, or times the INT8 weight's
//                       per-column scales

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // Row stride of a, in elements (== k, or an even pad when a is packed f16 written by the gather).
    lda: u32,
    // Row stride of y, in elements (>= the whole output's width, rounded up to even for packed f16).
    ldy: u32,
    // First column of y this dispatch writes: the weight is split into column
    // blocks when it does not fit one binding, and n is this block's width.
    // A multiple of 4, so packed-f16 words never straddle two blocks.
    y_col0: u32,
    _pad1: u32,
    _pad2: u32,
}
@group(0) @binding(3) var<uniform> p: Params;

fn store_row(row: u32, col: u32, sums: vec4<f32>) {
    // col is a multiple of 4, so pairs (col, col+1) and (col+2, col+3) never straddle
    // a packed word; the checks keep columns past n unwritten (or in the row's pad).
    if (row >= p.m || col >= p.n) {
        return;
    }
    let v = epilogue(col, sums);
    let base = row * p.ldy + p.y_col0 + col;
    store2_y(base, v.xy, col + 1u < p.n);
    if (col + 2u < p.n) {
        store2_y(base + 2u, v.zw, col + 3u < p.n);
    }
}

// Reads b[k, col..col+4] as accumulator values, zero past the last column.
fn b_row(k: u32, col: u32) -> vec4<acc_t> {
    let base = k * p.n + col;
    if (VEC4) {
        // col is a multiple of 4 and so is n: the word is wholly in or out.
        if (col < p.n) {
            return vec4<acc_t>(load4_b(base));
        }
        return vec4<acc_t>(0.0);
    }
    var v = vec4<f32>(0.0);
    if (col < p.n) { v.x = load_b(base); }
    if (col + 1u < p.n) { v.y = load_b(base + 1u); }
    if (col + 2u < p.n) { v.z = load_b(base + 2u); }
    if (col + 3u < p.n) { v.w = load_b(base + 3u); }
    return vec4<acc_t>(v);
}

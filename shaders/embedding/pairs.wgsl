// Embedding gather: out[t, :] = table[ids[t], :] for every token t of the chunk.
//
// The host prepends the storage accessors (see src/backend/gpu/storage.rs):
//   load_table(i) -> f32 and store2_out(i, v, both), i even,
// so the same kernel serves f32, f16, and f16 packed two to a u32 word.
//
// One thread copies one pair of columns: a pair is the unit a packed f16 word
// holds, so no two threads ever write the same word. The flat index is folded
// into a 2D grid because a large chunk needs more than the 65535 workgroups one
// dimension allows.

struct Params {
    rows: u32,
    dim: u32,
    // Row stride of out, in elements (dim, or dim rounded up to even when packed).
    ldo: u32,
    // Column pairs per row: ceil(dim / 2).
    pairs: u32,
    // Workgroups along x of the folded grid.
    groups_x: u32,
    // The table rows this dispatch's table block holds: ids in
    // [id0, id0 + id_count). A table larger than one binding is split into
    // row blocks, one dispatch each; a token whose id is elsewhere is skipped.
    id0: u32,
    id_count: u32,
    _pad0: u32,
}
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let idx = (wg.y * p.groups_x + wg.x) * 256u + li;
    if (idx >= p.rows * p.pairs) {
        return;
    }
    let row = idx / p.pairs;
    let col = (idx % p.pairs) * 2u;
    let id = ids[row];
    if (id < p.id0 || id - p.id0 >= p.id_count) {
        return;
    }
    let src = (id - p.id0) * p.dim + col;
    let both = col + 1u < p.dim;
    var v = vec2<f32>(load_table(src), 0.0);
    if (both) {
        v.y = load_table(src + 1u);
    }
    store2_out(row * p.ldo + col, v, both);
}

// Embedding gather as a copy of whole words: out[t, :] = table[ids[t], :].
//
// A gather moves bits; it never needs to know the element type. When a row is a
// whole number of 4-byte words (f32 rows, or f16 rows of even length) one
// invocation copies one word, and when it is a whole number of 16-byte words, one
// vec4<u32> — four times fewer invocations and index computations per byte than
// the element-pair kernel (pairs.wgsl), which remains for odd f16 rows.
// `WORD` is replaced by the host with `u32` or `vec4<u32>`.

struct Params {
    rows: u32,
    // Words per row of the table and of the output.
    words: u32,
    // Row stride of out, in words.
    ldo: u32,
    _pad0: u32,
    // Workgroups along x of the folded grid.
    groups_x: u32,
    // The table rows this dispatch's table block holds: ids in
    // [id0, id0 + id_count); a token whose id is elsewhere is skipped.
    id0: u32,
    id_count: u32,
    _pad1: u32,
}
@group(0) @binding(0) var<storage, read> table: array<WORD>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<WORD>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let idx = (wg.y * p.groups_x + wg.x) * 256u + li;
    if (idx >= p.rows * p.words) {
        return;
    }
    let row = idx / p.words;
    let w = idx % p.words;
    let id = ids[row];
    if (id < p.id0 || id - p.id0 >= p.id_count) {
        return;
    }
    out[row * p.ldo + w] = table[(id - p.id0) * p.words + w];
}

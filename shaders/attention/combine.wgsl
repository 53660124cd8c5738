// Merges the context splits of decode.wgsl: one workgroup per query row
// weighs each split's accumulator and sum by exp(m_split - m_max) and writes
// the normalised row.
@group(0) @binding(7) var<storage, read> part: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = wg.y * p.groups_x + wg.x;
    if (row >= p.rows) {
        return;
    }
    let slot = HEAD_DIM + 2u;
    let base = row * p.splits * slot;
    var mx = NONE;
    for (var s = 0u; s < p.splits; s++) {
        mx = max(mx, part[base + s * slot + HEAD_DIM]);
    }
    var l = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        l += exp(part[base + s * slot + HEAD_DIM] - mx) * part[base + s * slot + HEAD_DIM + 1u];
    }
    let inv = 1.0 / l;
    for (var d = 2u * li; d < HEAD_DIM; d += 128u) {
        let both = d + 1u < HEAD_DIM;
        let d1 = min(d + 1u, HEAD_DIM - 1u);
        var a = vec2<f32>(0.0, 0.0);
        for (var s = 0u; s < p.splits; s++) {
            let at = base + s * slot;
            let w = exp(part[at + HEAD_DIM] - mx);
            a += w * vec2<f32>(part[at + d], part[at + d1]);
        }
        store2_out(row * p.ldo + d, a * inv, both);
    }
}

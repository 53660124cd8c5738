// Materialised attention, pass 3: out[b, i, h, :] = sum_j P[bh, i, j] v_j,
// in tiles of 16 queries x 32 elements of the head (two a thread), over the
// keys 16 at a time through workgroup memory; under causal masking the keys
// past the tile's last query are not read (their probabilities are 0).
@group(0) @binding(8) var<storage, read> scores: array<f32>;

var<workgroup> pa: array<f32, 256>;
var<workgroup> va: array<f32, 512>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let ts = (p.seq + 15u) / 16u;
    let td = (HEAD_DIM + 31u) / 32u;
    let flat = wg.y * p.groups_x + wg.x;
    let bh = flat / (ts * td);
    if (bh >= p.batch * p.heads) {
        return;
    }
    let t = flat % (ts * td);
    let i0 = (t / td) * 16u;
    let d0 = (t % td) * 32u;
    let b = bh / p.heads;
    let h = bh % p.heads;
    let g = h / p.group;
    let i = i0 + lid.y;
    let d = d0 + 2u * lid.x;
    let vbase = (b * p.kv_heads + g) * p.context * HEAD_DIM;
    let srow = (bh * p.seq + min(i, p.seq - 1u)) * p.context;
    let keys = seen_by(min(i0 + 15u, p.seq - 1u));
    var acc = vec2<f32>(0.0, 0.0);
    let e = lid.y * 16u + lid.x;
    for (var j0 = 0u; j0 < keys; j0 += 16u) {
        let j = j0 + lid.x;
        pa[e] = select(0.0, scores[srow + min(j, p.context - 1u)], i < p.seq && j < p.context);
        for (var f = e; f < 512u; f += 256u) {
            let key = j0 + f / 32u;
            let dd = d0 + f % 32u;
            let ok = key < p.context && dd < HEAD_DIM;
            va[f] = select(0.0, load_vc(vbase + min(key, p.context - 1u) * HEAD_DIM + min(dd, HEAD_DIM - 1u)), ok);
        }
        workgroupBarrier();
        for (var jj = 0u; jj < 16u; jj++) {
            let pj = pa[lid.y * 16u + jj];
            acc += pj * vec2<f32>(va[jj * 32u + 2u * lid.x], va[jj * 32u + 2u * lid.x + 1u]);
        }
        workgroupBarrier();
    }
    if (i < p.seq && d < HEAD_DIM) {
        store2_out(((b * p.seq + i) * p.heads + h) * p.ldo + d, acc, d + 1u < HEAD_DIM);
    }
}

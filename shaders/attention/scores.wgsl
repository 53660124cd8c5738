// Materialised attention, pass 1: scores[bh, i, j] = q_i . k_j / sqrt(D) for
// every query i and key j of every (sequence, head), masked or not, in 16 x
// 16 tiles through workgroup memory. The S x L scores are what the fused
// kernel never writes.
@group(0) @binding(8) var<storage, read_write> scores: array<f32>;

var<workgroup> qa: array<f32, 256>;
var<workgroup> ka: array<f32, 256>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tl = (p.context + 15u) / 16u;
    let ts = (p.seq + 15u) / 16u;
    let flat = wg.y * p.groups_x + wg.x;
    let bh = flat / (tl * ts);
    if (bh >= p.batch * p.heads) {
        return;
    }
    let t = flat % (tl * ts);
    let i0 = (t / tl) * 16u;
    let j0 = (t % tl) * 16u;
    let b = bh / p.heads;
    let h = bh % p.heads;
    let g = h / p.group;
    let i = i0 + lid.y;
    let j = j0 + lid.x;
    let qi = min(i0 + lid.y, p.seq - 1u);
    let kj = min(j0 + lid.y, p.context - 1u);
    let qrow = ((b * p.seq + qi) * p.heads + h) * HEAD_DIM;
    let krow = ((b * p.kv_heads + g) * p.context + kj) * HEAD_DIM;
    var dot = 0.0;
    for (var d0 = 0u; d0 < HEAD_DIM; d0 += 16u) {
        let d = d0 + lid.x;
        qa[lid.y * 16u + lid.x] = select(0.0, load_q(qrow + min(d, HEAD_DIM - 1u)), d < HEAD_DIM);
        ka[lid.y * 16u + lid.x] = select(0.0, load_kc(krow + min(d, HEAD_DIM - 1u)), d < HEAD_DIM);
        workgroupBarrier();
        for (var dd = 0u; dd < 16u; dd++) {
            dot += qa[lid.y * 16u + dd] * ka[lid.x * 16u + dd];
        }
        workgroupBarrier();
    }
    if (i < p.seq && j < p.context) {
        scores[(bh * p.seq + i) * p.context + j] = dot * p.scale;
    }
}

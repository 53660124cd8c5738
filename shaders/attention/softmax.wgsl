// Materialised attention, pass 2: each score row softmaxed in place (max
// subtracted), one workgroup of 64 per row; masked scores become 0.
@group(0) @binding(8) var<storage, read_write> scores: array<f32>;

var<workgroup> red: array<f32, 64>;

fn reduce_max(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var w = 32u; w > 0u; w >>= 1u) {
        if (li < w) {
            red[li] = max(red[li], red[li + w]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(li: u32, v: f32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var w = 32u; w > 0u; w >>= 1u) {
        if (li < w) {
            red[li] = red[li] + red[li + w];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = wg.y * p.groups_x + wg.x;
    if (row >= p.rows) {
        return;
    }
    // Rows are (b, h, i): i is the query.
    let i = row % p.seq;
    let valid = seen_by(i);
    let base = row * p.context;
    var mx = NONE;
    for (var j = li; j < valid; j += 64u) {
        mx = max(mx, scores[base + j]);
    }
    mx = reduce_max(li, mx);
    var sum = 0.0;
    for (var j = li; j < valid; j += 64u) {
        sum += exp(scores[base + j] - mx);
    }
    sum = reduce_sum(li, sum);
    let inv = 1.0 / sum;
    for (var j = li; j < p.context; j += 64u) {
        scores[base + j] = select(0.0, exp(scores[base + j] - mx) * inv, j < valid);
    }
}

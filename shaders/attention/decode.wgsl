// Split-K attention for few queries (decode, "flash-decoding"): one
// workgroup of 64 threads per (query row, context split). A tile of 64 keys
// at a time, each thread scores one key (its dot product with the query,
// held in workgroup memory); the tile's probabilities go through workgroup
// memory, and each thread accumulates its own elements of the head
// (HEAD_DIM / 64 of them) over the tile's values. The split's partial result
// (accumulator, running max m, sum l) goes to `part`; combine.wgsl merges the
// splits. Splitting the context fills the device at batch 1.
@group(0) @binding(7) var<storage, read_write> part: array<f32>;

const PER_THREAD: u32 = (HEAD_DIM + 63u) / 64u;
var<workgroup> qs: array<f32, HEAD_DIM>;
var<workgroup> ps: array<f32, 64>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let flat = wg.y * p.groups_x + wg.x;
    if (flat >= p.rows * p.splits) {
        return;
    }
    let row = flat / p.splits;
    let sp = flat % p.splits;
    let h = row % p.heads;
    let i = (row / p.heads) % p.seq;
    let b = row / p.heads / p.seq;
    let g = h / p.group;
    for (var d = li; d < HEAD_DIM; d += 64u) {
        qs[d] = load_q(row * HEAD_DIM + d) * p.scale;
    }
    workgroupBarrier();
    let seen = seen_by(i);
    let k0 = min(sp * p.split_len, seen);
    let k1 = min(k0 + p.split_len, seen);
    let kbase = (b * p.kv_heads + g) * p.context;
    var acc: array<f32, PER_THREAD>;
    for (var c = 0u; c < PER_THREAD; c++) {
        acc[c] = 0.0;
    }
    var m = NONE;
    var l = 0.0;
    for (var j0 = k0; j0 < k1; j0 += 64u) {
        let j = j0 + li;
        var s = NONE;
        if (j < k1) {
            var dot = 0.0;
            for (var d = 0u; d < p.dim; d++) {
                dot += qs[d] * load_kc((kbase + j) * HEAD_DIM + d);
            }
            s = dot;
        }
        ps[li] = s;
        workgroupBarrier();
        var mx = m;
        for (var t = 0u; t < 64u; t++) {
            mx = max(mx, ps[t]);
        }
        workgroupBarrier();
        ps[li] = select(0.0, exp(s - mx), j < k1);
        workgroupBarrier();
        let corr = exp(m - mx);
        l *= corr;
        for (var c = 0u; c < PER_THREAD; c++) {
            acc[c] *= corr;
        }
        let n = min(64u, k1 - j0);
        for (var t = 0u; t < n; t++) {
            let pt = ps[t];
            l += pt;
            for (var c = 0u; c < PER_THREAD; c++) {
                let d = li + c * 64u;
                if (d < HEAD_DIM) {
                    acc[c] += pt * load_vc((kbase + j0 + t) * HEAD_DIM + d);
                }
            }
        }
        m = mx;
        workgroupBarrier();
    }
    let base = flat * (HEAD_DIM + 2u);
    for (var c = 0u; c < PER_THREAD; c++) {
        let d = li + c * 64u;
        if (d < HEAD_DIM) {
            part[base + d] = acc[c];
        }
    }
    if (li == 0u) {
        part[base + HEAD_DIM] = m;
        part[base + HEAD_DIM + 1u] = l;
    }
}

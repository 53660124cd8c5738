// Fused attention (prefill): one workgroup holds 64 consecutive queries of
// one head of one sequence, a thread each (its query row and accumulator in
// registers), and streams the keys they see in tiles of KEYS rows of K and V
// through workgroup memory, with an online softmax: the running maximum m,
// the sum l and the accumulator are rescaled by exp(m_old - m_new) once a
// tile. Tiles wholly above the causal diagonal of the workgroup's last query
// are never read; the S x L scores never exist.
var<workgroup> kt: array<f32, KEYS * HEAD_DIM>;
var<workgroup> vt: array<f32, KEYS * HEAD_DIM>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let tiles = (p.seq + 63u) / 64u;
    let flat = wg.y * p.groups_x + wg.x;
    let bh = flat / tiles;
    if (bh >= p.batch * p.heads) {
        return;
    }
    let tile = flat % tiles;
    let b = bh / p.heads;
    let h = bh % p.heads;
    let g = h / p.group;
    let i = tile * 64u + li;
    let live = i < p.seq;
    let qrow = ((b * p.seq + min(i, p.seq - 1u)) * p.heads + h) * HEAD_DIM;
    var q: array<f32, HEAD_DIM>;
    var acc: array<f32, HEAD_DIM>;
    for (var d = 0u; d < p.dim; d++) {
        q[d] = load_q(qrow + d) * p.scale;
        acc[d] = 0.0;
    }
    var m = NONE;
    var l = 0.0;
    let pos = p.prefix + i;
    // Keys the workgroup's last query sees: the tiles past them are skipped.
    let seen = seen_by(min(tile * 64u + 63u, p.seq - 1u));
    let kbase = (b * p.kv_heads + g) * p.context * HEAD_DIM;
    var sc: array<f32, KEYS>;
    for (var j0 = 0u; j0 < seen; j0 += KEYS) {
        workgroupBarrier();
        for (var e = li; e < KEYS * HEAD_DIM; e += 64u) {
            let inside = j0 + e / HEAD_DIM < seen;
            let at = kbase + j0 * HEAD_DIM + e;
            kt[e] = select(0.0, load_kc(min(at, kbase + seen * HEAD_DIM - 1u)), inside);
            vt[e] = select(0.0, load_vc(min(at, kbase + seen * HEAD_DIM - 1u)), inside);
        }
        workgroupBarrier();
        if (live) {
            var mx = m;
            for (var j = 0u; j < min(KEYS, p.context); j++) {
                let key = j0 + j;
                var s = NONE;
                if (key < seen && (p.causal == 0u || key <= pos)) {
                    var dot = 0.0;
                    for (var d = 0u; d < p.dim; d++) {
                        dot += q[d] * kt[j * HEAD_DIM + d];
                    }
                    s = dot;
                }
                sc[j] = s;
                mx = max(mx, s);
            }
            let corr = exp(m - mx);
            l *= corr;
            for (var d = 0u; d < p.dim; d++) {
                acc[d] *= corr;
            }
            for (var j = 0u; j < min(KEYS, p.context); j++) {
                if (sc[j] > -1.0e38) {
                    let e = exp(sc[j] - mx);
                    l += e;
                    for (var d = 0u; d < p.dim; d++) {
                        acc[d] += e * vt[j * HEAD_DIM + d];
                    }
                }
            }
            m = mx;
        }
    }
    if (live) {
        let inv = 1.0 / l;
        let orow = ((b * p.seq + i) * p.heads + h) * p.ldo;
        for (var d = 0u; d < HEAD_DIM; d += 2u) {
            let both = d + 1u < HEAD_DIM;
            store2_out(orow + d, vec2<f32>(acc[d], acc[min(d + 1u, HEAD_DIM - 1u)]) * inv, both);
        }
    }
}

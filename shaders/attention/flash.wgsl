// Fused attention (prefill): one workgroup of 64 threads holds ROWS
// consecutive queries of one head of one sequence and streams the keys they
// see in tiles of KEYS rows of K and V through workgroup memory, with an
// online softmax: per query the running maximum m, the sum l and the
// accumulator (in workgroup memory) are rescaled by exp(m_old - m_new) once
// a tile. Tiles wholly above the causal diagonal of the workgroup's last
// query are never read; the S x L scores never exist, only ROWS x KEYS of
// them at a time. No thread holds a private array: loops over a head's
// elements are bounded by the uniform p.dim, so no driver unrolls them.
var<workgroup> kt: array<f32, KEYS * HEAD_DIM>;
var<workgroup> vt: array<f32, KEYS * HEAD_DIM>;
var<workgroup> acc: array<f32, ROWS * HEAD_DIM>;
var<workgroup> sc: array<f32, ROWS * KEYS>;
var<workgroup> mrow: array<f32, ROWS>;
var<workgroup> lrow: array<f32, ROWS>;
var<workgroup> crow: array<f32, ROWS>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let tiles = (p.seq + ROWS - 1u) / ROWS;
    let flat = wg.y * p.groups_x + wg.x;
    let bh = flat / tiles;
    if (bh >= p.batch * p.heads) {
        return;
    }
    let tile = flat % tiles;
    let b = bh / p.heads;
    let h = bh % p.heads;
    let g = h / p.group;
    let i0 = tile * ROWS;
    let here = min(ROWS, p.seq - i0);
    let dim = p.dim;
    for (var e = li; e < ROWS * dim; e += 64u) {
        acc[(e / dim) * HEAD_DIM + e % dim] = 0.0;
    }
    for (var r = li; r < ROWS; r += 64u) {
        mrow[r] = NONE;
        lrow[r] = 0.0;
    }
    // Keys the workgroup's last query sees: the tiles past them are skipped.
    let seen = seen_by(i0 + here - 1u);
    let kbase = (b * p.kv_heads + g) * p.context * HEAD_DIM;
    let klast = kbase + seen * HEAD_DIM - 1u;
    for (var j0 = 0u; j0 < seen; j0 += KEYS) {
        workgroupBarrier();
        for (var e = li; e < KEYS * dim; e += 64u) {
            let j = e / dim;
            let d = e % dim;
            let inside = j0 + j < seen;
            let at = min(kbase + (j0 + j) * HEAD_DIM + d, klast);
            kt[j * HEAD_DIM + d] = select(0.0, load_kc(at), inside);
            vt[j * HEAD_DIM + d] = select(0.0, load_vc(at), inside);
        }
        workgroupBarrier();
        for (var e = li; e < ROWS * KEYS; e += 64u) {
            let r = e / KEYS;
            let j = e % KEYS;
            let key = j0 + j;
            var s = NONE;
            if (r < here && key < seen && (p.causal == 0u || key <= p.prefix + i0 + r)) {
                let qrow = ((b * p.seq + i0 + r) * p.heads + h) * HEAD_DIM;
                var dot = 0.0;
                for (var d = 0u; d < dim; d++) {
                    dot += load_q(qrow + d) * kt[j * HEAD_DIM + d];
                }
                s = dot * p.scale;
            }
            sc[e] = s;
        }
        workgroupBarrier();
        for (var r = li; r < ROWS; r += 64u) {
            var mx = mrow[r];
            for (var j = 0u; j < KEYS; j++) {
                mx = max(mx, sc[r * KEYS + j]);
            }
            let corr = exp(mrow[r] - mx);
            var l = lrow[r] * corr;
            for (var j = 0u; j < KEYS; j++) {
                let s = sc[r * KEYS + j];
                let e = select(0.0, exp(s - mx), s > -1.0e38);
                sc[r * KEYS + j] = e;
                l += e;
            }
            lrow[r] = l;
            mrow[r] = mx;
            crow[r] = corr;
        }
        workgroupBarrier();
        for (var e = li; e < ROWS * dim; e += 64u) {
            let r = e / dim;
            let d = e % dim;
            var a = acc[r * HEAD_DIM + d] * crow[r];
            for (var j = 0u; j < KEYS; j++) {
                a += sc[r * KEYS + j] * vt[j * HEAD_DIM + d];
            }
            acc[r * HEAD_DIM + d] = a;
        }
    }
    workgroupBarrier();
    let pairs = (dim + 1u) / 2u;
    for (var e = li; e < here * pairs; e += 64u) {
        let r = e / pairs;
        let d = (e % pairs) * 2u;
        let inv = 1.0 / lrow[r];
        let orow = ((b * p.seq + i0 + r) * p.heads + h) * p.ldo;
        let v = vec2<f32>(acc[r * HEAD_DIM + d], acc[r * HEAD_DIM + min(d + 1u, dim - 1u)]);
        store2_out(orow + d, v * inv, d + 1u < dim);
    }
}

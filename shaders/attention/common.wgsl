// Attention's uniform parameters, shared by every attention kernel. The host
// prepends the storage accessors (src/backend/gpu/storage.rs and
// src/ops/attention/kernels.rs): load_q, load_kc, load_vc (the cache widened
// from its format: f32, f16, bf16, int8 with a scale per token and head, FP8
// E4M3 with a scale per head) and store2_out, and the constants HEAD_DIM and
// KEYS. Layouts: Q and out [B, S, H, D] (out rows `ldo` apart), K and V
// [B, G, L, D]. Query i sits at position prefix + i; causal masking lets it
// see keys 0 ..= prefix + i.
struct Params {
    seq: u32,
    context: u32,
    heads: u32,
    kv_heads: u32,
    // Query heads per KV head.
    group: u32,
    // L - S: the cached prefix.
    prefix: u32,
    causal: u32,
    // Row stride of the output, in elements.
    ldo: u32,
    // 1 / sqrt(D).
    scale: f32,
    // Context splits per query row (decode), and the keys of each.
    splits: u32,
    split_len: u32,
    // Workgroups along x of the folded grid.
    groups_x: u32,
    // Query rows of this dispatch's sequences: batch x seq x heads.
    rows: u32,
    // Sequences of this dispatch.
    batch: u32,
    // HEAD_DIM again, as a uniform: loops over a head's elements bounded by
    // it are not unrolled by drivers (an unrolled 128 x 32 loop nest takes
    // a software device's GL compiler most of a minute).
    dim: u32,
    _pad1: u32,
}
@group(0) @binding(4) var<uniform> p: Params;

// Keys query i sees in all: its position + 1 when causal.
fn seen_by(i: u32) -> u32 {
    return select(p.context, p.prefix + i + 1u, p.causal != 0u);
}

// A score no key has: masked, or not yet seen (finite, so that differences
// of two stay finite and exp of them is 0 or 1, never NaN).
const NONE: f32 = -3.0e38;

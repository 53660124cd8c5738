//! Attention's parameters, `out = softmax(Q K^T / sqrt(D) + mask) V` over a
//! KV cache, their validation, and its cost model: FLOPs from the exact count
//! of unmasked (query, key) pairs, the bytes of Q, the cache and the output
//! (and the materialised variant's scores), memory by buffer role.
//!
//! Layouts: Q and the output `[B, S, H, D]` (row `(b, s, h)`), K and V
//! `[B, G, L, D]`. Query `s` sits at position `P + s` of its sequence, where
//! `P = L - S` is the cached prefix; causal masking lets it see keys `0 ..=
//! P + s`.

use serde::{Deserialize, Serialize};

use super::kv::{activation_precision, KvPrecision};
use crate::error::{LabError, Result};
use crate::ops::op::{addressable, Axis, AxisKind, Cost, MemoryModel, Values, BATCH, SEQ};
use crate::precision::Precision;

/// The name on the command line and in records.
pub const NAME: &str = "attention";

/// The widest head the kernels hold (a query row and its accumulator in a
/// GPU thread's registers; a CPU tile).
pub const MAX_HEAD_DIM: u32 = 256;

/// An attention's sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Params {
    /// Sequences per request batch.
    pub batch: u32,
    /// New tokens per sequence (1: a decode step).
    pub seq: u32,
    /// Keys per sequence, the S new tokens included (`>= seq`).
    pub context: u32,
    /// Query heads H.
    pub heads: u32,
    /// KV heads G (`H % G == 0`: MHA G = H, GQA, MQA G = 1).
    pub kv_heads: u32,
    /// Elements per head D.
    pub head_dim: u32,
    /// Causal masking.
    pub causal: bool,
    /// How the KV cache is stored.
    #[serde(default)]
    pub kv_precision: KvPrecision,
    /// The scores materialised in memory (QK^T, softmax, PV as three passes)
    /// instead of the fused online-softmax kernel.
    #[serde(default)]
    pub materialized: bool,
}

/// The context axis.
pub const CONTEXT: Axis = Axis {
    name: "context",
    help: "Keys per sequence, the new tokens included (KV length L >= seq; default: seq)",
    kind: AxisKind::Size { default: None },
    run: true,
};

/// Attention's parameters, in the order a sweep expands them.
pub const AXES: &[Axis] = &[
    SEQ,
    CONTEXT,
    BATCH,
    Axis {
        name: "heads",
        help: "Query heads H",
        kind: AxisKind::Size { default: None },
        run: false,
    },
    Axis {
        name: "kv_heads",
        help: "KV heads G (H % G == 0; G = H is MHA, G = 1 MQA; default: heads)",
        kind: AxisKind::Size { default: None },
        run: false,
    },
    Axis {
        name: "head_dim",
        help: "Elements per attention head D",
        kind: AxisKind::Size { default: None },
        run: false,
    },
    Axis {
        name: "causal",
        help: "Causal masking (off: every query sees the whole context)",
        kind: AxisKind::Flag { default: true },
        run: true,
    },
    Axis {
        name: "kv_precision",
        help: "KV cache storage: same as the precision, int8 (a scale per token and head), fp8 (E4M3, a scale per head)",
        kind: AxisKind::Choice {
            options: KvPrecision::NAMES,
            default: "same",
        },
        run: true,
    },
    Axis {
        name: "materialized",
        help: "Attention with the S x L scores in memory (QK^T, softmax, PV) instead of the fused kernel",
        kind: AxisKind::Flag { default: false },
        run: true,
    },
];

impl Params {
    /// The attention `values` give: batch, seq, heads and head_dim required;
    /// context defaults to seq, kv_heads to heads.
    pub fn from_values(values: &Values) -> Result<Self> {
        values.only(NAME, AXES)?;
        let seq = values.required(NAME, "seq")?;
        let heads = values.required(NAME, "heads")?;
        let kv = values
            .choice("kv_precision", KvPrecision::NAMES)?
            .and_then(|s| KvPrecision::parse(&s))
            .unwrap_or_default();
        Params {
            batch: values.required(NAME, "batch")?,
            seq,
            context: values.size("context")?.unwrap_or(seq),
            heads,
            kv_heads: values.size("kv_heads")?.unwrap_or(heads),
            head_dim: values.required(NAME, "head_dim")?,
            causal: values.flag("causal")?.unwrap_or(true),
            kv_precision: kv,
            materialized: values.flag("materialized")?.unwrap_or(false),
        }
        .validated()
    }

    /// These sizes, if they make an attention and every buffer is
    /// addressable by a kernel.
    pub fn validated(self) -> Result<Self> {
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(LabError::invalid(
                "heads / kv_heads",
                &format!("{} / {}", self.heads, self.kv_heads),
                "heads must be a multiple of kv_heads (MHA: equal; GQA: a multiple; MQA: kv_heads 1)",
            ));
        }
        if self.context < self.seq {
            return Err(LabError::invalid(
                "context",
                &self.context.to_string(),
                &format!(
                    "the context holds the {} new tokens: it must be at least seq {}",
                    self.seq, self.seq
                ),
            ));
        }
        if self.head_dim > MAX_HEAD_DIM {
            return Err(LabError::invalid(
                "head_dim",
                &self.head_dim.to_string(),
                &format!("the attention kernels hold heads of at most {MAX_HEAD_DIM} elements"),
            ));
        }
        let label = self.label();
        let d = self.head_dim as u64;
        addressable("shape", &label, "query", self.query_rows() * d)?;
        addressable("shape", &label, "KV cache", self.cache_rows() * d)?;
        if self.materialized {
            addressable("shape", &label, "scores", self.score_elements())?;
        }
        Ok(self)
    }

    /// Tokens processed: `batch * seq`.
    pub fn tokens(&self) -> u64 {
        self.batch as u64 * self.seq as u64
    }

    /// Rows of Q and of the output: `B * S * H`.
    pub fn query_rows(&self) -> u64 {
        self.tokens() * self.heads as u64
    }

    /// Rows of K (and of V): `B * G * L`.
    pub fn cache_rows(&self) -> u64 {
        self.batch as u64 * self.kv_heads as u64 * self.context as u64
    }

    /// Elements of the materialised scores: `B * H * S * L`.
    pub fn score_elements(&self) -> u64 {
        self.query_rows() * self.context as u64
    }

    /// The cached prefix `P = L - S`.
    pub fn prefix(&self) -> u32 {
        self.context - self.seq
    }

    /// Keys query `s` sees: `P + s + 1` when causal, else `L`.
    pub fn visible(&self, s: u32) -> u32 {
        if self.causal {
            self.prefix() + s + 1
        } else {
            self.context
        }
    }

    /// Unmasked (query, key) pairs of one head of one sequence:
    /// `S x P + S(S+1)/2` when causal, `S x L` when not.
    pub fn pairs_per_head(&self) -> u64 {
        let (s, l) = (self.seq as u64, self.context as u64);
        if self.causal {
            s * (l - s) + s * (s + 1) / 2
        } else {
            s * l
        }
    }

    /// Query heads per KV head.
    pub fn group(&self) -> u32 {
        self.heads / self.kv_heads
    }

    /// The value of parameter `axis`.
    pub fn axis(&self, axis: &str) -> Option<u32> {
        match axis {
            "batch" => Some(self.batch),
            "seq" => Some(self.seq),
            "context" => Some(self.context),
            "heads" => Some(self.heads),
            "kv_heads" => Some(self.kv_heads),
            "head_dim" => Some(self.head_dim),
            _ => None,
        }
    }

    /// `B8 H32 G8 D128 S1 L4096`, with ` full` when not causal, the KV
    /// format when narrower, ` materialized`.
    pub fn label(&self) -> String {
        let mut s = format!(
            "B{} H{} G{} D{} S{} L{}",
            self.batch, self.heads, self.kv_heads, self.head_dim, self.seq, self.context
        );
        if !self.causal {
            s.push_str(" full");
        }
        if self.kv_precision != KvPrecision::Same {
            s.push_str(&format!(" kv-{}", self.kv_precision.name()));
        }
        if self.materialized {
            s.push_str(" materialized");
        }
        s
    }

    /// KV-cache bytes per token of one layer at `precision`: `2 x G x D x`
    /// the element's bytes, plus int8's two scales per head.
    pub fn kv_bytes_per_token(&self, precision: Precision) -> u64 {
        let f = self.kv_precision.format(precision);
        2 * f.bytes(1, self.kv_heads as u64, 1, self.head_dim as u64)
            - if f == super::kv::KvFormat::Fp8 {
                2 * self.kv_heads as u64 * 4
            } else {
                0
            }
    }

    /// FLOPs: `4 x D` per unmasked pair (QK^T and PV, a multiply-add each per
    /// element), whatever the kernel computes; the compulsory bytes (Q, K, V
    /// at their formats, the output; the materialised scores written by
    /// QK^T, read and written by the softmax, read by PV); memory by role.
    pub fn cost(&self, precision: Precision) -> Cost {
        let e = activation_precision(precision).bytes();
        let d = self.head_dim as u64;
        let pairs = self.pairs_per_head() * self.batch as u64 * self.heads as u64;
        let q = self.query_rows() * d * e;
        let f = self.kv_precision.format(precision);
        let cache = 2 * f.bytes(
            self.batch as u64,
            self.kv_heads as u64,
            self.context as u64,
            d,
        );
        let scores = if self.materialized {
            self.score_elements() * 4
        } else {
            0
        };
        let mut roles = vec![("q", q), ("kv-cache", cache), ("output", q)];
        if self.materialized {
            roles.push(("scores", scores));
        }
        Cost {
            flops: 4 * d * pairs,
            bytes_moved: q + cache + q + 4 * scores,
            memory: MemoryModel::of(&roles),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama(batch: u32, seq: u32, context: u32) -> Params {
        Params {
            batch,
            seq,
            context,
            heads: 32,
            kv_heads: 8,
            head_dim: 128,
            causal: true,
            kv_precision: KvPrecision::Same,
            materialized: false,
        }
    }

    #[test]
    fn pairs_count_the_unmasked_scores_exactly() {
        // Decode: one query sees the whole context.
        assert_eq!(llama(1, 1, 4096).pairs_per_head(), 4096);
        // Prefill S = L: the lower triangle with its diagonal.
        assert_eq!(llama(1, 4, 4).pairs_per_head(), 4 + 3 + 2 + 1);
        // Chunked prefill: a prefix of 6 seen by every query, then the triangle.
        assert_eq!(llama(1, 3, 9).pairs_per_head(), 3 * 6 + 6);
        let full = Params {
            causal: false,
            ..llama(1, 3, 9)
        };
        assert_eq!(full.pairs_per_head(), 27);
        assert_eq!((llama(1, 3, 9).visible(0), full.visible(0)), (7, 9));
        let c = llama(2, 3, 9).cost(Precision::F16);
        assert_eq!(c.flops, 4 * 128 * 24 * 2 * 32);
        let q = 2 * 3 * 32 * 128 * 2;
        let kv = 2 * 2 * 8 * 9 * 128 * 2;
        assert_eq!(
            (
                c.memory.get("q"),
                c.memory.get("kv-cache"),
                c.memory.get("output")
            ),
            (q, kv, q)
        );
        assert_eq!(c.bytes_moved, 2 * q + kv);
        let m = Params {
            materialized: true,
            ..llama(2, 3, 9)
        }
        .cost(Precision::F32);
        assert_eq!(m.memory.get("scores"), 2 * 32 * 3 * 9 * 4);
        assert_eq!(m.bytes_moved, 2 * (q * 2) + kv * 2 + 4 * 2 * 32 * 3 * 9 * 4);
    }

    #[test]
    fn kv_bytes_per_token_follow_the_published_arithmetic() {
        // Llama-3-8B: 2 x 8 x 128 x 2 bytes = 4 KiB a layer, 128 KiB over 32.
        let p = llama(1, 1, 1);
        assert_eq!(p.kv_bytes_per_token(Precision::F16) * 32, 128 << 10);
        assert_eq!(p.kv_bytes_per_token(Precision::F32), 8192);
        let int8 = Params {
            kv_precision: KvPrecision::Int8,
            ..p
        };
        assert_eq!(int8.kv_bytes_per_token(Precision::F16), 2 * 8 * (128 + 4));
        let fp8 = Params {
            kv_precision: KvPrecision::Fp8,
            ..p
        };
        assert_eq!(fp8.kv_bytes_per_token(Precision::F16), 2 * 8 * 128);
    }

    #[test]
    fn bad_shapes_name_the_value_and_the_limit() {
        let mut v = Values::default();
        for (k, x) in [("batch", 2), ("seq", 5), ("heads", 32), ("head_dim", 64)] {
            v.set(k, x);
        }
        let p = Params::from_values(&v).unwrap();
        assert_eq!((p.context, p.kv_heads, p.causal), (5, 32, true));
        assert_eq!(p.label(), "B2 H32 G32 D64 S5 L5");
        v.set("kv_heads", 5);
        let err = Params::from_values(&v).unwrap_err().to_string();
        assert!(err.contains("32 / 5") && err.contains("multiple"), "{err}");
        v.set("kv_heads", 8);
        v.set("context", 4);
        let err = Params::from_values(&v).unwrap_err().to_string();
        assert!(
            err.contains("context") && err.contains("at least seq 5"),
            "{err}"
        );
        v.set("context", 4096);
        v.set("head_dim", 257);
        let err = Params::from_values(&v).unwrap_err().to_string();
        assert!(err.contains("257") && err.contains("256"), "{err}");
        v.set("head_dim", 256);
        v.set("kv_precision", "int4");
        let err = Params::from_values(&v).unwrap_err().to_string();
        assert!(err.contains("int4") && err.contains("fp8"), "{err}");
        v.set("kv_precision", "fp8");
        v.set("causal", false);
        let p = Params::from_values(&v).unwrap();
        assert_eq!(p.label(), "B2 H32 G8 D256 S5 L4096 full kv-fp8");
        v.set("vocab", 3);
        assert!(Params::from_values(&v).is_err());
        // Past 2^32 elements of cache.
        let big = Params {
            batch: 1 << 12,
            context: 1 << 16,
            ..llama(1, 1, 1)
        };
        let err = big.validated().unwrap_err().to_string();
        assert!(err.contains("KV cache"), "{err}");
    }
}

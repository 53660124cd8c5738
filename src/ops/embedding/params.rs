//! The embedding lookup's parameters, `out[b, s, :] = table[ids[b, s], :]`
//! with a `[vocab, dim]` table, their validation, and its cost model: no
//! arithmetic, the rows it copies and the table it keeps.

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::ops::op::{addressable, Axis, AxisKind, Cost, MemoryModel, Values, BATCH, DIM, SEQ};
use crate::precision::Precision;

/// The name on the command line and in records.
pub const NAME: &str = "embedding";

/// Default vocabulary: Llama-2's 32000 tokens.
pub const DEFAULT_VOCAB: u32 = 32_000;

/// A lookup's sizes. Records before schema 3 also carry `out_dim` (always
/// `dim` for a lookup), which is not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Params {
    /// Sequences per request batch.
    pub batch: u32,
    /// Tokens per sequence.
    pub seq: u32,
    /// The row width (the model dimension).
    pub dim: u32,
    /// Rows of the table.
    pub vocab: u32,
}

/// The lookup's parameters, in the order a sweep expands them.
pub const AXES: &[Axis] = &[
    SEQ,
    BATCH,
    DIM,
    Axis {
        name: "vocab",
        help: "Vocabulary size (rows of the embedding table)",
        kind: AxisKind::Size {
            default: Some(DEFAULT_VOCAB),
        },
        run: false,
    },
];

impl Params {
    /// The lookup `values` give: batch, seq and dim required, vocab 32000
    /// unless given; the table and output addressable by a kernel.
    pub fn from_values(values: &Values) -> Result<Self> {
        values.only(NAME, AXES)?;
        Params {
            batch: values.required(NAME, "batch")?,
            seq: values.required(NAME, "seq")?,
            dim: values.required(NAME, "dim")?,
            vocab: values.size("vocab")?.unwrap_or(DEFAULT_VOCAB),
        }
        .validated()
    }

    /// These sizes, if the output and the table are addressable by a kernel.
    pub fn validated(self) -> Result<Self> {
        let shape = format!("B{} S{} D{}", self.batch, self.seq, self.dim);
        addressable("shape", &shape, "output", self.tokens() * self.dim as u64)?;
        let (v, d) = (self.vocab, self.dim);
        if v as u64 * d as u64 > u32::MAX as u64 {
            return Err(LabError::invalid(
                "vocab x dim",
                &format!("{v} x {d}"),
                &format!("a {v}x{d} table exceeds the 2^32 elements addressable by a kernel"),
            ));
        }
        Ok(self)
    }

    /// Rows looked up: `batch * seq`.
    pub fn tokens(&self) -> u64 {
        self.batch as u64 * self.seq as u64
    }

    /// The value of parameter `axis`.
    pub fn axis(&self, axis: &str) -> Option<u32> {
        match axis {
            "batch" => Some(self.batch),
            "seq" => Some(self.seq),
            "dim" => Some(self.dim),
            "vocab" => Some(self.vocab),
            _ => None,
        }
    }

    /// `B8 S512 D768`.
    pub fn label(&self) -> String {
        format!("B{} S{} D{}", self.batch, self.seq, self.dim)
    }

    /// No FLOPs; the compulsory bytes (the ids, the rows copied — not the
    /// whole table — and the output written); the memory of the ids, the
    /// table and the output.
    pub fn cost(&self, precision: Precision) -> Cost {
        let (m, k, v) = (self.tokens(), self.dim as u64, self.vocab as u64);
        let e = precision.bytes();
        let memory =
            MemoryModel::of(&[("ids", m * 4), ("table", v * k * e), ("output", m * k * e)]);
        Cost {
            flops: 0,
            bytes_moved: m * 4 + m * k * e + m * k * e,
            memory,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_bytes_and_memory_follow_the_model() {
        let p = Params {
            batch: 2,
            seq: 3,
            dim: 4,
            vocab: 10,
        };
        let (m, k, v, e) = (6u64, 4u64, 10u64, 2u64);
        let c = p.cost(Precision::F16);
        assert_eq!((c.flops, c.arithmetic_intensity()), (0, 0.0));
        let mem = &c.memory;
        assert_eq!(
            (mem.get("ids"), mem.get("table"), mem.get("output")),
            (m * 4, v * k * e, m * k * e)
        );
        assert_eq!(c.bytes_moved, m * 4 + m * k * e + m * k * e);
        assert_eq!(mem.total, m * 4 + v * k * e + m * k * e);
        assert_eq!(p.tokens(), 6);
    }

    #[test]
    fn values_make_validated_params_and_bad_ones_name_the_field() {
        let mut v = Values::default();
        for (k, x) in [("batch", 2), ("seq", 3), ("dim", 4)] {
            v.set(k, x);
        }
        let p = Params::from_values(&v).unwrap();
        assert_eq!(
            (p.vocab, p.label()),
            (DEFAULT_VOCAB, "B2 S3 D4".to_string())
        );
        assert_eq!(
            (p.axis("vocab"), p.axis("out_dim")),
            (Some(DEFAULT_VOCAB), None)
        );
        v.set("out_dim", 5);
        let err = Params::from_values(&v).unwrap_err().to_string();
        assert!(
            err.contains("out_dim") && err.contains("embedding has no such"),
            "{err}"
        );
        let table = Params {
            batch: 1,
            seq: 1,
            dim: 1 << 16,
            vocab: 1 << 16,
        };
        let err = table.validated().unwrap_err().to_string();
        assert!(err.contains("table"), "{err}");
        assert!(Params {
            vocab: (1 << 16) - 1,
            ..table
        }
        .validated()
        .is_ok());
        // 65537 x 65535 = 2^32 - 1 elements: the last a u32 index reaches.
        let edge = Params {
            vocab: 65537,
            dim: 65535,
            ..table
        };
        assert!(edge.validated().is_ok());
        assert!(Params { dim: 65536, ..edge }.validated().is_err());
        let err = Params {
            batch: 1,
            seq: 1 << 16,
            dim: 1 << 16,
            vocab: 1,
        }
        .validated()
        .unwrap_err()
        .to_string();
        assert!(err.contains("output elements"), "{err}");
    }

    /// Records before schema 3 carried an `out_dim` for every op.
    #[test]
    fn records_of_older_schemas_read() {
        let old: Params =
            serde_json::from_str(r#"{"batch":8,"seq":512,"dim":128,"vocab":32000,"out_dim":128}"#)
                .unwrap();
        assert_eq!(old.vocab, 32000);
        assert_eq!(
            serde_json::to_value(old).unwrap(),
            serde_json::json!({"batch":8,"seq":512,"dim":128,"vocab":32000})
        );
    }
}

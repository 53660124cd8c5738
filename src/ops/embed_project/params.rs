//! Embed-project's parameters: an embedding lookup (`[vocab, dim]` table)
//! feeding a projection to `out_dim` columns, both in one submission; their
//! validation and its cost model (the lookup's rows written and read back
//! between the two, since the kernels meet in memory).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ops::embedding::params::{Params as Lookup, DEFAULT_VOCAB};
use crate::ops::matmul::params::Params as Projection;
use crate::ops::matmul::quantize::weight_bytes;
use crate::ops::op::{Axis, AxisKind, Cost, MemoryModel, Values, BATCH, DIM, SEQ};
use crate::precision::Precision;

/// The name on the command line and in records.
pub const NAME: &str = "embed-project";

/// A lookup and the projection it feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "Fields")]
pub struct Params {
    /// Sequences per request batch.
    pub batch: u32,
    /// Tokens per sequence.
    pub seq: u32,
    /// The table's row width, the projection's K.
    pub dim: u32,
    /// Rows of the table.
    pub vocab: u32,
    /// The projection's N.
    pub out_dim: u32,
}

/// [`Params`] as a results file holds them (files from before rectangular
/// projections have no `out_dim`: it is `dim`).
#[derive(Deserialize)]
struct Fields {
    batch: u32,
    seq: u32,
    dim: u32,
    vocab: u32,
    #[serde(default)]
    out_dim: Option<u32>,
}

impl From<Fields> for Params {
    fn from(f: Fields) -> Self {
        Params {
            batch: f.batch,
            seq: f.seq,
            dim: f.dim,
            vocab: f.vocab,
            out_dim: f.out_dim.unwrap_or(f.dim),
        }
    }
}

/// Embed-project's parameters, in the order a sweep expands them.
pub const AXES: &[Axis] = &[
    SEQ,
    BATCH,
    DIM,
    Axis {
        name: "out_dim",
        help: "Output width N of a projection (default: dim)",
        kind: AxisKind::Size { default: None },
        run: false,
    },
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
    /// The point `values` give: the lookup's and the projection's sizes,
    /// each validated as its own op validates them.
    pub fn from_values(values: &Values) -> Result<Self> {
        values.only(NAME, AXES)?;
        let dim = values.required(NAME, "dim")?;
        Params {
            batch: values.required(NAME, "batch")?,
            seq: values.required(NAME, "seq")?,
            dim,
            vocab: values.size("vocab")?.unwrap_or(DEFAULT_VOCAB),
            out_dim: values.size("out_dim")?.unwrap_or(dim),
        }
        .validated()
    }

    /// These sizes, if the lookup's and the projection's buffers are
    /// addressable by a kernel.
    pub fn validated(self) -> Result<Self> {
        self.lookup_part().validated()?;
        self.projection_part().validated()?;
        Ok(self)
    }

    /// The lookup part.
    pub fn lookup_part(&self) -> Lookup {
        Lookup {
            batch: self.batch,
            seq: self.seq,
            dim: self.dim,
            vocab: self.vocab,
        }
    }

    /// The projection part.
    pub fn projection_part(&self) -> Projection {
        Projection {
            batch: self.batch,
            seq: self.seq,
            dim: self.dim,
            out_dim: self.out_dim,
        }
    }

    /// The value of parameter `axis`.
    pub fn axis(&self, axis: &str) -> Option<u32> {
        match axis {
            "vocab" => Some(self.vocab),
            other => self.projection_part().axis(other),
        }
    }

    /// FLOPs of the projection; bytes of the ids, the rows gathered, the
    /// gathered activations written and read back, the weight and the
    /// output; memory of every buffer.
    pub fn cost(&self, precision: Precision) -> Cost {
        let (m, k, n) = self.projection_part().mkn();
        let (v, e) = (self.vocab as u64, precision.bytes());
        let activations = m * k * e;
        let memory = MemoryModel::of(&[
            ("ids", m * 4),
            ("table", v * k * e),
            ("activations", activations),
            ("weights", weight_bytes(precision, k, n)),
            ("output", m * n * e),
        ]);
        let rows_read = m * k * e;
        Cost {
            flops: 2 * m * n * k,
            bytes_moved: m * 4
                + rows_read
                + 2 * activations
                + weight_bytes(precision, k, n)
                + m * n * e,
            memory,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts on a rectangular shape (B2 S3, K 4, N 5, vocab 10) in FP16.
    #[test]
    fn flops_bytes_and_memory_follow_the_model() {
        let p = Params {
            batch: 2,
            seq: 3,
            dim: 4,
            vocab: 10,
            out_dim: 5,
        };
        let (m, k, n, v, e) = (6u64, 4u64, 5u64, 10u64, 2u64);
        let c = p.cost(Precision::F16);
        assert_eq!(c.flops, 2 * m * k * n);
        let mem = &c.memory;
        assert_eq!(
            (
                mem.get("ids"),
                mem.get("table"),
                mem.get("activations"),
                mem.get("weights"),
                mem.get("output")
            ),
            (m * 4, v * k * e, m * k * e, k * n * e, m * n * e)
        );
        assert_eq!(mem.total, m * 4 + (v * k + m * k + k * n + m * n) * e);
        // ids, the gathered rows read, written and read back, weight, output.
        assert_eq!(
            c.bytes_moved,
            m * 4 + m * k * e + 2 * m * k * e + k * n * e + m * n * e
        );
    }

    #[test]
    fn values_are_validated_as_both_parts_validate_them() {
        let mut v = Values::default();
        for (k, x) in [("batch", 1), ("seq", 2), ("dim", 8)] {
            v.set(k, x);
        }
        let p = Params::from_values(&v).unwrap();
        assert_eq!((p.out_dim, p.vocab), (8, DEFAULT_VOCAB));
        assert_eq!(
            (p.axis("vocab"), p.axis("out_dim"), p.axis("x")),
            (Some(DEFAULT_VOCAB), Some(8), None)
        );
        v.set("vocab", 1 << 30);
        let err = Params::from_values(&v).unwrap_err().to_string();
        assert!(err.contains("table"), "{err}");
        let old: Params = serde_json::from_str(r#"{"batch":1,"seq":2,"dim":8,"vocab":9}"#).unwrap();
        assert_eq!(old.out_dim, 8);
    }
}

//! The projection's parameters, `y[M, N] = x[M, K] @ W[K, N]` with M = batch x
//! seq tokens, K = `dim` and N = `out_dim` (= `dim` unless given), their
//! validation, and its cost model: FLOPs, bytes moved and memory by buffer.

use serde::{Deserialize, Serialize};

use super::quantize::weight_bytes;
use crate::error::{LabError, Result};
use crate::ops::op::{addressable, Axis, AxisKind, Cost, MemoryModel, Values, BATCH, DIM, SEQ};
use crate::precision::Precision;

/// The name on the command line and in records.
pub const NAME: &str = "matmul";

/// A projection's sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "Fields")]
pub struct Params {
    /// Sequences per request batch.
    pub batch: u32,
    /// Tokens per sequence (1: a decode step).
    pub seq: u32,
    /// The inner dimension K (the model dimension).
    pub dim: u32,
    /// The output's width N (`dim` for a square projection).
    pub out_dim: u32,
}

/// [`Params`] as a results file holds them: files from before rectangular
/// projections have no `out_dim` and read it as `dim`; files before schema 3
/// carry a `vocab` every op had, which a projection does not read.
#[derive(Deserialize)]
struct Fields {
    batch: u32,
    seq: u32,
    dim: u32,
    #[serde(default)]
    out_dim: Option<u32>,
}

impl From<Fields> for Params {
    fn from(f: Fields) -> Self {
        Params {
            batch: f.batch,
            seq: f.seq,
            dim: f.dim,
            out_dim: f.out_dim.unwrap_or(f.dim),
        }
    }
}

/// The projection's parameters, in the order a sweep expands them.
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
];

impl Params {
    /// The projection `values` give: batch, seq and dim required, out_dim
    /// `dim` unless given; every buffer addressable by a kernel's u32 index.
    pub fn from_values(values: &Values) -> Result<Self> {
        values.only(NAME, AXES)?;
        let batch = values.required(NAME, "batch")?;
        let seq = values.required(NAME, "seq")?;
        let dim = values.required(NAME, "dim")?;
        let out_dim = values.size("out_dim")?.unwrap_or(dim);
        Params {
            batch,
            seq,
            dim,
            out_dim,
        }
        .validated()
    }

    /// These sizes, if every buffer is addressable by a kernel.
    pub fn validated(self) -> Result<Self> {
        let shape = format!(
            "B{} S{} D{} N{}",
            self.batch, self.seq, self.dim, self.out_dim
        );
        let m = self.tokens();
        addressable("shape", &shape, "activation", m * self.dim as u64)?;
        addressable("shape", &shape, "output", m * self.out_dim as u64)?;
        let (k, n) = (self.dim, self.out_dim);
        if k as u64 * n as u64 > u32::MAX as u64 {
            return Err(LabError::invalid(
                "dim x out_dim",
                &format!("{k} x {n}"),
                &format!("a {k}x{n} weight exceeds the 2^32 elements addressable by a kernel"),
            ));
        }
        Ok(self)
    }

    /// Rows of activations: `batch * seq`.
    pub fn tokens(&self) -> u64 {
        self.batch as u64 * self.seq as u64
    }

    /// `M`, `K`, `N`.
    pub fn mkn(&self) -> (u64, u64, u64) {
        (self.tokens(), self.dim as u64, self.out_dim as u64)
    }

    /// The value of parameter `axis`.
    pub fn axis(&self, axis: &str) -> Option<u32> {
        match axis {
            "batch" => Some(self.batch),
            "seq" => Some(self.seq),
            "dim" => Some(self.dim),
            "out_dim" => Some(self.out_dim),
            _ => None,
        }
    }

    /// `B8 S512 D768`, with `N2304` when the output is not square.
    pub fn label(&self) -> String {
        let n = if self.out_dim != self.dim {
            format!(" N{}", self.out_dim)
        } else {
            String::new()
        };
        format!("B{} S{} D{}{n}", self.batch, self.seq, self.dim)
    }

    /// FLOPs (`2*M*N*K`: a multiply and an add), the compulsory bytes (every
    /// input read once, the output written once) and the memory of the
    /// activations, the weight and the output.
    pub fn cost(&self, precision: Precision) -> Cost {
        let (m, k, n) = self.mkn();
        let e = precision.bytes();
        let memory = MemoryModel::of(&[
            ("activations", m * k * e),
            ("weights", weight_bytes(precision, k, n)),
            ("output", m * n * e),
        ]);
        Cost {
            flops: 2 * m * n * k,
            bytes_moved: memory.total,
            memory,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, u32)]) -> Values {
        let mut v = Values::default();
        for &(k, x) in pairs {
            v.set(k, x);
        }
        v
    }

    /// The counts on a rectangular shape (B2 S3, K 4, N 5) in FP16 and INT8.
    #[test]
    fn flops_bytes_and_memory_follow_the_model() {
        let p = Params {
            batch: 2,
            seq: 3,
            dim: 4,
            out_dim: 5,
        };
        let (m, k, n, e) = (6u64, 4u64, 5u64, 2u64);
        let c = p.cost(Precision::F16);
        assert_eq!(c.flops, 2 * m * k * n);
        let mem = &c.memory;
        assert_eq!(
            (
                mem.get("activations"),
                mem.get("weights"),
                mem.get("output")
            ),
            (m * k * e, k * n * e, m * n * e)
        );
        assert_eq!(mem.total, (m * k + k * n + m * n) * e);
        assert_eq!(c.bytes_moved, mem.total);
        assert_eq!(
            c.arithmetic_intensity(),
            (2 * m * k * n) as f64 / mem.total as f64
        );
        let i8 = p.cost(Precision::Int8).memory;
        assert_eq!(i8.get("weights"), k * n + 4 * n);
        assert_eq!(i8.get("activations"), m * k * 2);
        let f32c = Params { out_dim: 4, ..p }.cost(Precision::F32);
        assert_eq!(f32c.flops, 2 * 6 * 4 * 4);
        assert_eq!(f32c.bytes_moved, (6 * 4 + 16 + 6 * 4) * 4);
    }

    #[test]
    fn values_make_validated_params() {
        let p = Params::from_values(&values(&[("batch", 2), ("seq", 3), ("dim", 4)])).unwrap();
        assert_eq!((p.out_dim, p.label()), (4, "B2 S3 D4".to_string()));
        let p = Params::from_values(&values(&[
            ("batch", 2),
            ("seq", 3),
            ("dim", 4),
            ("out_dim", 5),
        ]))
        .unwrap();
        assert_eq!(p.label(), "B2 S3 D4 N5");
        assert_eq!((p.axis("out_dim"), p.axis("vocab")), (Some(5), None));
        for (missing, given) in [
            ("batch", values(&[("seq", 1), ("dim", 1)])),
            ("seq", values(&[("batch", 1), ("dim", 1)])),
            ("dim", values(&[("batch", 1), ("seq", 1)])),
        ] {
            let err = Params::from_values(&given).unwrap_err().to_string();
            assert!(
                err.contains(&format!("matmul needs a value of {missing}")),
                "{err}"
            );
        }
        let err = Params::from_values(&values(&[
            ("batch", 1),
            ("seq", 1),
            ("dim", 1),
            ("vocab", 5),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("vocab") && err.contains("no such parameter"),
            "{err}"
        );
        let err = Params::from_values(&values(&[("batch", 1), ("seq", 1), ("dim", 0)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid dim `0`"), "{err}");
    }

    #[test]
    fn shapes_past_what_a_kernel_addresses_are_refused() {
        let p = |s: u32, d: u32, n: u32| {
            Params {
                batch: 1,
                seq: s,
                dim: d,
                out_dim: n,
            }
            .validated()
        };
        // 2^16 x 2^16 activations: 2^32 elements, one past u32 indexing.
        let err = p(1 << 16, 1 << 16, 1).unwrap_err().to_string();
        assert!(err.contains("activation elements"), "{err}");
        let err = p(1 << 16, 8, 1 << 16).unwrap_err().to_string();
        assert!(err.contains("output elements"), "{err}");
        let err = p(1, 1 << 16, 1 << 16).unwrap_err().to_string();
        assert!(err.contains("weight"), "{err}");
        assert!(p(1, 1 << 16, (1 << 16) - 1).is_ok());
        // Exactly 2^32 - 1 = 65537 * 65535 elements is still addressable.
        for (s, d, n) in [(65537, 65535, 1), (65537, 1, 65535), (1, 65537, 65535)] {
            assert!(p(s, d, n).is_ok(), "S{s} D{d} N{n}");
        }
    }

    /// Records of every schema read: before rectangular projections (no
    /// out_dim), and before schema 3 (every op carried a vocab).
    #[test]
    fn records_of_older_schemas_read() {
        let old: Params =
            serde_json::from_str(r#"{"batch":1,"seq":2,"dim":8,"vocab":32000}"#).unwrap();
        assert_eq!(old.out_dim, 8);
        let rect: Params =
            serde_json::from_str(r#"{"batch":1,"seq":2,"dim":8,"out_dim":24,"vocab":1}"#).unwrap();
        assert_eq!(rect.out_dim, 24);
        let json = serde_json::to_value(rect).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"batch":1,"seq":2,"dim":8,"out_dim":24})
        );
    }
}

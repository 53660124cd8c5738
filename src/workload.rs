//! What is measured: the ops, their shapes and precisions, the cost models
//! (FLOPs, bytes moved, memory per buffer) and the seeded inputs every backend
//! receives.
//!
//! Shapes follow the seed notebooks: activations are `[batch * seq, dim]`, the
//! projection weight is `[dim, dim]`, the embedding table is `[vocab, dim]`.

use std::fmt;
use std::str::FromStr;

use half::f16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::LabError;

/// The operation a point measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// `out[b, s, :] = table[ids[b, s], :]`.
    Embedding,
    /// The seed's `y = x @ W`, `x: [B*S, D]`, `W: [D, D]`.
    Matmul,
    /// An embedding lookup feeding the projection, both in one submission.
    EmbedProject,
}

impl Op {
    /// Every op, in a stable order.
    pub const ALL: [Op; 3] = [Op::Embedding, Op::Matmul, Op::EmbedProject];

    /// The name used on the command line and in records.
    pub fn name(self) -> &'static str {
        match self {
            Op::Embedding => "embedding",
            Op::Matmul => "matmul",
            Op::EmbedProject => "embed-project",
        }
    }

    /// Whether the op reads token ids through an embedding table.
    pub fn uses_table(self) -> bool {
        matches!(self, Op::Embedding | Op::EmbedProject)
    }

    /// Whether the op multiplies by the projection weight.
    pub fn uses_weight(self) -> bool {
        matches!(self, Op::Matmul | Op::EmbedProject)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Op {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Op::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .ok_or_else(|| {
                LabError::invalid("op", s, "expected embedding, matmul or embed-project")
            })
    }
}

/// Storage precision of tables, activations, weights and outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// IEEE binary32 storage, f32 accumulation.
    F32,
    /// IEEE binary16 storage, f32 accumulation.
    F16,
}

impl Precision {
    /// Every precision, in a stable order.
    pub const ALL: [Precision; 2] = [Precision::F32, Precision::F16];

    /// Bytes per stored element.
    pub fn bytes(self) -> u64 {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }

    /// The name used on the command line and in records.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }

    /// Rounds a value to what this precision stores.
    pub fn round(self, v: f32) -> f32 {
        match self {
            Precision::F32 => v,
            Precision::F16 => f16::from_f32(v).to_f32(),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" | "fp32" => Ok(Precision::F32),
            "f16" | "fp16" => Ok(Precision::F16),
            _ => Err(LabError::invalid("precision", s, "expected f32 or f16")),
        }
    }
}

/// Default vocabulary: Llama-2's 32000 tokens.
pub const DEFAULT_VOCAB: u32 = 32_000;

/// The sizes of one point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    /// Sequences per request batch.
    pub batch: u32,
    /// Tokens per sequence.
    pub seq: u32,
    /// Embedding (model) dimension: the row width of the table and the inner
    /// dimension K of the projection.
    pub dim: u32,
    /// Rows of the embedding table.
    pub vocab: u32,
    /// Columns N of the projection's output (`dim` for a square projection).
    pub out_dim: u32,
}

impl Shape {
    /// Validates the sizes of a square projection (`out_dim = dim`) once;
    /// everything downstream trusts them.
    pub fn new(batch: u32, seq: u32, dim: u32, vocab: u32) -> Result<Self, LabError> {
        Self::rect(batch, seq, dim, dim, vocab)
    }

    /// Validates the sizes of a projection from `dim` (K) to `out_dim` (N).
    pub fn rect(
        batch: u32,
        seq: u32,
        dim: u32,
        out_dim: u32,
        vocab: u32,
    ) -> Result<Self, LabError> {
        for (field, v) in [
            ("batch", batch),
            ("seq", seq),
            ("dim", dim),
            ("out_dim", out_dim),
            ("vocab", vocab),
        ] {
            if v == 0 {
                return Err(LabError::invalid(field, "0", "must be at least 1"));
            }
        }
        let shape = Shape {
            batch,
            seq,
            dim,
            vocab,
            out_dim,
        };
        // Element counts index u32 arrays in the shaders and must stay addressable.
        for (what, width) in [("activation", dim), ("output", out_dim)] {
            let elems = shape.tokens() * width as u64;
            if elems > u32::MAX as u64 {
                return Err(LabError::invalid(
                    "shape",
                    &format!("B{batch} S{seq} D{dim} N{out_dim}"),
                    &format!("{elems} {what} elements exceed the 2^32 addressable by a kernel"),
                ));
            }
        }
        if dim as u64 * out_dim as u64 > u32::MAX as u64 {
            return Err(LabError::invalid(
                "out_dim",
                &out_dim.to_string(),
                &format!(
                    "a {dim}x{out_dim} weight exceeds the 2^32 elements addressable by a kernel"
                ),
            ));
        }
        if vocab as u64 * dim as u64 > u32::MAX as u64 {
            return Err(LabError::invalid(
                "vocab",
                &vocab.to_string(),
                &format!("a {vocab}x{dim} table exceeds the 2^32 elements addressable by a kernel"),
            ));
        }
        Ok(shape)
    }

    /// Rows of the activation matrix: `batch * seq`.
    pub fn tokens(&self) -> u64 {
        self.batch as u64 * self.seq as u64
    }
}

/// One measurable configuration (op, precision, sizes), independent of backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Workload {
    /// What is computed.
    pub op: Op,
    /// Storage precision.
    pub precision: Precision,
    /// Sizes.
    pub shape: Shape,
}

/// Modeled bytes of each buffer an op needs, for one precision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryModel {
    /// Token ids, u32 each.
    pub ids: u64,
    /// Embedding table `[vocab, dim]`.
    pub table: u64,
    /// Activations `[B*S, dim]`: the input of `matmul`, the gathered rows of `embed-project`.
    pub activations: u64,
    /// Projection weight `[dim, out_dim]`.
    pub weights: u64,
    /// Output `[B*S, out_dim]` (`[B*S, dim]` for a gather).
    pub output: u64,
    /// The sum of the above.
    pub total: u64,
}

impl Workload {
    /// Rows, inner dimension and columns of the projection (`M`, `K`, `N`); a
    /// gather's output is as wide as its table (`N = K`).
    pub fn mkn(&self) -> (u64, u64, u64) {
        let k = self.shape.dim as u64;
        let n = if self.op.uses_weight() {
            self.shape.out_dim as u64
        } else {
            k
        };
        (self.shape.tokens(), k, n)
    }

    /// Floating-point operations: `2*M*N*K` per projection (a multiply and an add);
    /// a gather computes nothing.
    pub fn flops(&self) -> u64 {
        let (m, k, n) = self.mkn();
        if self.op.uses_weight() {
            2 * m * n * k
        } else {
            0
        }
    }

    /// Bytes that must cross memory at least once (the compulsory-traffic model):
    /// every input read once, every output written once. For `embed-project` the
    /// gathered activations are written and read back, since the two kernels meet
    /// in memory.
    pub fn bytes_moved(&self) -> u64 {
        let mem = self.memory_model();
        let (m, k, _) = self.mkn();
        // A gather reads the rows it copies, not the whole table.
        let rows_read = m * k * self.precision.bytes();
        match self.op {
            Op::Embedding => mem.ids + rows_read + mem.output,
            Op::Matmul => mem.activations + mem.weights + mem.output,
            Op::EmbedProject => {
                mem.ids + rows_read + 2 * mem.activations + mem.weights + mem.output
            }
        }
    }

    /// FLOP per byte moved (0 for a gather).
    pub fn arithmetic_intensity(&self) -> f64 {
        self.flops() as f64 / self.bytes_moved() as f64
    }

    /// Bytes each buffer needs at this precision.
    pub fn memory_model(&self) -> MemoryModel {
        let e = self.precision.bytes();
        let (m, k, n) = self.mkn();
        let v = self.shape.vocab as u64;
        let mut mem = MemoryModel {
            ids: if self.op.uses_table() { m * 4 } else { 0 },
            table: if self.op.uses_table() { v * k * e } else { 0 },
            activations: if self.op == Op::Embedding {
                0
            } else {
                m * k * e
            },
            weights: if self.op.uses_weight() { k * n * e } else { 0 },
            output: m * n * e,
            total: 0,
        };
        mem.total = mem.ids + mem.table + mem.activations + mem.weights + mem.output;
        mem
    }
}

/// Inputs of one workload, generated from a seed. Values are already rounded to
/// the workload's precision, so every backend and the reference see the same numbers.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// Token ids `[B*S]` (ops with a table).
    pub ids: Vec<u32>,
    /// Embedding table `[vocab, dim]` (ops with a table).
    pub table: Vec<f32>,
    /// Activations `[B*S, dim]` (`matmul` only).
    pub x: Vec<f32>,
    /// Projection weight `[dim, out_dim]` (ops with a projection).
    pub w: Vec<f32>,
}

/// The seed used when none is given.
pub const DEFAULT_SEED: u64 = 0x05ee_d1ab;

impl Inputs {
    /// Bytes the generated inputs hold on the host.
    pub fn bytes(&self) -> u64 {
        (self.ids.len() * 4 + (self.table.len() + self.x.len() + self.w.len()) * 4) as u64
    }

    /// Generates the inputs of `work` from `seed`: values uniform in [-1, 1) (the
    /// weight scaled by 1/sqrt(dim), as initialisers do, so outputs stay O(1)),
    /// ids uniform over the vocabulary.
    pub fn generate(work: &Workload, seed: u64) -> Inputs {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (m, k, n) = work.mkn();
        let p = work.precision;
        let mut fill = |count: u64, scale: f32| -> Vec<f32> {
            (0..count)
                .map(|_| p.round(rng.random_range(-1.0f32..1.0) * scale))
                .collect()
        };
        let mut inputs = Inputs::default();
        if work.op.uses_table() {
            inputs.table = fill(work.shape.vocab as u64 * k, 1.0);
        }
        if work.op == Op::Matmul {
            inputs.x = fill(m * k, 1.0);
        }
        if work.op.uses_weight() {
            inputs.w = fill(k * n, 1.0 / (k as f32).sqrt());
        }
        if work.op.uses_table() {
            let vocab = work.shape.vocab;
            inputs.ids = (0..m).map(|_| rng.random_range(0..vocab)).collect();
        }
        inputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(op: Op, p: Precision) -> Workload {
        Workload {
            op,
            precision: p,
            shape: Shape::new(2, 3, 4, 10).unwrap(),
        }
    }

    #[test]
    fn flops_and_bytes_follow_the_model() {
        let w = work(Op::Matmul, Precision::F32);
        assert_eq!(w.flops(), 2 * 6 * 4 * 4);
        assert_eq!(w.bytes_moved(), (6 * 4 + 16 + 6 * 4) * 4);
        let e = work(Op::Embedding, Precision::F16);
        assert_eq!(e.flops(), 0);
        assert_eq!(e.bytes_moved(), 6 * 4 + 2 * 6 * 4 * 2);
        assert_eq!(e.memory_model().table, 10 * 4 * 2);
    }

    #[test]
    fn zero_sizes_are_rejected() {
        let err = Shape::new(0, 1, 1, 1).unwrap_err().to_string();
        assert!(err.contains("batch"), "{err}");
    }

    #[test]
    fn inputs_are_reproducible_and_rounded() {
        let w = work(Op::EmbedProject, Precision::F16);
        let a = Inputs::generate(&w, 7);
        let b = Inputs::generate(&w, 7);
        assert_eq!(a.table, b.table);
        assert_eq!(a.ids, b.ids);
        assert!(a.ids.iter().all(|&i| i < 10));
        assert!(a.table.iter().all(|&v| f16::from_f32(v).to_f32() == v));
    }
}

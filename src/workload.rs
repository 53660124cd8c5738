//! What is measured: the ops, their shapes and precisions, the cost models
//! (FLOPs, bytes moved, memory per buffer) and the seeded inputs every backend
//! receives.
//!
//! Shapes follow the seed notebooks: activations are `[batch * seq, dim]`, the
//! projection weight is `[dim, dim]`, the embedding table is `[vocab, dim]`.

use std::fmt;
use std::str::FromStr;

use half::{bf16, f16};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, StandardNormal};
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
    #[serde(alias = "fp32", alias = "float32")]
    F32,
    /// IEEE binary16 storage (5-bit exponent, 10-bit fraction), f32 accumulation.
    #[serde(alias = "fp16", alias = "half", alias = "float16")]
    F16,
    /// bfloat16 storage (f32's 8-bit exponent, 7-bit fraction: the top 16 bits
    /// of an f32), f32 accumulation.
    #[serde(alias = "bfloat16")]
    Bf16,
    /// Weight-only INT8 (W8A16), as LLM inference engines ship it: projection
    /// weights as int8 with one f32 scale per output column (symmetric,
    /// `max |w| / 127`), dequantised inside the kernel; tables, activations and
    /// outputs in FP16; f32 accumulation.
    #[serde(alias = "w8", alias = "w8a16")]
    Int8,
}

impl Precision {
    /// Every precision, in a stable order.
    pub const ALL: [Precision; 4] = [
        Precision::F32,
        Precision::F16,
        Precision::Bf16,
        Precision::Int8,
    ];

    /// Bytes per stored element of tables, activations and outputs.
    pub fn bytes(self) -> u64 {
        match self {
            Precision::F32 => 4,
            Precision::F16 | Precision::Bf16 | Precision::Int8 => 2,
        }
    }

    /// Bytes of a `k` x `n` projection weight: its elements, plus one f32
    /// scale per column for INT8.
    pub fn weight_bytes(self, k: u64, n: u64) -> u64 {
        match self {
            Precision::Int8 => k * n + 4 * n,
            _ => k * n * self.bytes(),
        }
    }

    /// The name used on the command line and in records.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }

    /// The name in prose: FP32, FP16, BF16.
    pub fn label(self) -> &'static str {
        match self {
            Precision::F32 => "FP32",
            Precision::F16 => "FP16",
            Precision::Bf16 => "BF16",
            Precision::Int8 => "INT8 (W8A16)",
        }
    }

    /// Rounds a table, activation or output value to what this precision
    /// stores (round to nearest, ties to even; past the largest finite value,
    /// to infinity). INT8's weights are quantised by [`quantize_weight`].
    pub fn round(self, v: f32) -> f32 {
        match self {
            Precision::F32 => v,
            Precision::F16 | Precision::Int8 => f16::from_f32(v).to_f32(),
            Precision::Bf16 => bf16::from_f32(v).to_f32(),
        }
    }

    /// A `k` x `n` weight as this precision stores it, widened back to f32:
    /// rounded element by element, or for INT8 quantised per column and
    /// dequantised (`q * scale`).
    pub fn stored_weight(self, w: &[f32], n: usize) -> Vec<f32> {
        match self {
            Precision::Int8 => quantize_weight(w, n).dequantize(),
            _ => w.iter().map(|&v| self.round(v)).collect(),
        }
    }

    /// The unit roundoff of the stored format: 2^-24, 2^-11, 2^-8.
    pub fn unit_roundoff(self) -> f64 {
        match self {
            Precision::F32 => 2f64.powi(-24),
            Precision::F16 | Precision::Int8 => 2f64.powi(-11),
            Precision::Bf16 => 2f64.powi(-8),
        }
    }

    /// The smallest positive normal value of the stored output (2^-14 for
    /// f16, 2^-126 for f32 and bf16). Below it a result is subnormal: rounded
    /// to a fixed absolute spacing, not a relative one, or flushed to zero,
    /// which WGSL allows a GPU to do.
    pub fn min_normal(self) -> f64 {
        match self {
            Precision::F32 | Precision::Bf16 => 2f64.powi(-126),
            Precision::F16 | Precision::Int8 => 2f64.powi(-14),
        }
    }

    /// The smallest magnitude that rounds to infinity when stored: half an
    /// ulp past the largest finite value (65520 for f16).
    pub fn overflow_threshold(self) -> f64 {
        match self {
            Precision::F32 => f32::MAX as f64 * (1.0 + 2f64.powi(-24)),
            Precision::F16 | Precision::Int8 => 65520.0,
            Precision::Bf16 => f32::MAX as f64 * (1.0 + 2f64.powi(-8)),
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
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "f16" | "fp16" | "half" | "float16" => Ok(Precision::F16),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "int8" | "w8" | "w8a16" => Ok(Precision::Int8),
            _ => Err(LabError::invalid(
                "precision",
                s,
                "expected f32 (fp32), f16 (fp16, half), bf16 (bfloat16) or int8 (w8: int8 weights, FP16 activations)",
            )),
        }
    }
}

/// A weight quantised to int8 per output column: `w[k, c] ~ q[k, c] * scales[c]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantizedWeight {
    /// `[k, n]` row-major, in -127..=127.
    pub q: Vec<i8>,
    /// One per column: the column's `max |w| / 127` (1 for an all-zero column).
    pub scales: Vec<f32>,
}

impl QuantizedWeight {
    /// `q * scale`, element by element, in f32.
    pub fn dequantize(&self) -> Vec<f32> {
        let n = self.scales.len();
        self.q
            .iter()
            .enumerate()
            .map(|(i, &q)| q as f32 * self.scales[i % n])
            .collect()
    }
}

/// Symmetric per-output-channel int8 quantisation of a `[k, n]` weight, as
/// weight-only inference engines do it: each column's scale maps its largest
/// magnitude to 127, values round to nearest (ties to even) and clamp to
/// -127..=127. Every backend and the reference quantise through this one
/// function, so they store the same numbers.
pub fn quantize_weight(w: &[f32], n: usize) -> QuantizedWeight {
    let mut max = vec![0.0f32; n];
    for row in w.chunks_exact(n) {
        for (m, &v) in max.iter_mut().zip(row) {
            *m = m.max(v.abs());
        }
    }
    let scales: Vec<f32> = max
        .iter()
        .map(|&m| {
            if m > 0.0 && m.is_finite() {
                m / 127.0
            } else {
                1.0
            }
        })
        .collect();
    let q = w
        .chunks_exact(n)
        .flat_map(|row| {
            row.iter()
                .zip(&scales)
                .map(|(&v, &s)| (v / s).round_ties_even().clamp(-127.0, 127.0) as i8)
        })
        .collect();
    QuantizedWeight { q, scales }
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
                "dim x out_dim",
                &format!("{dim} x {out_dim}"),
                &format!(
                    "a {dim}x{out_dim} weight exceeds the 2^32 elements addressable by a kernel"
                ),
            ));
        }
        if vocab as u64 * dim as u64 > u32::MAX as u64 {
            return Err(LabError::invalid(
                "vocab x dim",
                &format!("{vocab} x {dim}"),
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
    /// The input data's distribution and scale.
    pub data: Data,
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
            weights: if self.op.uses_weight() {
                self.precision.weight_bytes(k, n)
            } else {
                0
            },
            output: m * n * e,
            total: 0,
        };
        mem.total = mem.ids + mem.table + mem.activations + mem.weights + mem.output;
        mem
    }
}

/// Inputs of one workload, generated from a seed, at full precision (f32):
/// every backend rounds them to the workload's precision as it loads them,
/// and the reference computes both the f64 result of the rounded inputs (what
/// the kernel must reproduce) and that of these originals (what the precision
/// costs).
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

/// Share of the activation channels that carry outliers in the `llm`
/// distribution: 6 of 4096. Dettmers et al., "LLM.int8(): 8-bit Matrix
/// Multiplication for Transformers at Scale" (NeurIPS 2022, section 4) find
/// the outliers of a 6.7B model concentrated in about 6 of its 4096 hidden
/// dimensions, in every layer.
const OUTLIER_CHANNEL_SHARE: f64 = 6.0 / 4096.0;
/// How much larger an outlier channel is than the rest: the same paper reports
/// outlier features up to 20x larger than the other dimensions.
const OUTLIER_FACTOR: f32 = 20.0;
/// Spread of the weight's per-output-channel scales in the `llm` distribution:
/// log-normal with this sigma (so one channel in six is 1.6x the median and
/// one in forty 2.7x). Per-channel weight ranges that differ this much are
/// why inference engines quantise weights per output channel (Nagel et al.,
/// "A White Paper on Neural Network Quantization", 2021, section 2.2); the
/// exact sigma is a modelling choice, not a measured constant.
const WEIGHT_CHANNEL_SIGMA: f32 = 0.5;

impl Inputs {
    /// Bytes the generated inputs hold on the host.
    pub fn bytes(&self) -> u64 {
        (self.ids.len() * 4 + (self.table.len() + self.x.len() + self.w.len()) * 4) as u64
    }

    /// Generates the inputs of `work` from `seed`, drawn from `work.data`
    /// (see [`Dist`]): activations and table rows times `data.scale`, the
    /// weight with a standard deviation of `1/sqrt(dim)` (as initialisers and
    /// trained layers have, so outputs stay O(scale)), ids uniform over the
    /// vocabulary. The uniform distribution draws exactly the stream it always
    /// did, so its points stay comparable with older results.
    pub fn generate(work: &Workload, seed: u64) -> Inputs {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (m, k, n) = work.mkn();
        let dist = work.data.dist;
        let scale = work.data.scale.get() as f32;
        // The llm distribution's outlier channels and weight column scales come
        // from a stream of their own, so the values' stream is the same for
        // every distribution's layout.
        let mut layout_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6c6c_6d00);
        let channel_gain: Vec<f32> = match dist {
            Dist::Llm => {
                let outliers = ((k as f64 * OUTLIER_CHANNEL_SHARE).round() as u64).max(1);
                let mut gain = vec![1.0f32; k as usize];
                for _ in 0..outliers {
                    gain[layout_rng.random_range(0..k as usize)] = OUTLIER_FACTOR;
                }
                gain
            }
            _ => Vec::new(),
        };
        let column_gain: Vec<f32> = match dist {
            Dist::Llm if work.op.uses_weight() => {
                let spread = LogNormal::new(0.0f32, WEIGHT_CHANNEL_SIGMA).expect("valid sigma");
                (0..n).map(|_| spread.sample(&mut layout_rng)).collect()
            }
            _ => Vec::new(),
        };
        let draw = |rng: &mut ChaCha8Rng| -> f32 {
            match dist {
                Dist::Uniform => rng.random_range(-1.0f32..1.0),
                Dist::Normal | Dist::Llm => StandardNormal.sample(rng),
            }
        };
        // Activations (rows of width k): scaled, outlier channels amplified.
        let activations = |rng: &mut ChaCha8Rng, count: u64| -> Vec<f32> {
            (0..count)
                .map(|i| {
                    let gain = channel_gain.get((i % k) as usize).copied().unwrap_or(1.0);
                    draw(rng) * scale * gain
                })
                .collect()
        };
        let mut inputs = Inputs::default();
        if work.op.uses_table() {
            inputs.table = activations(&mut rng, work.shape.vocab as u64 * k);
        }
        if work.op == Op::Matmul {
            inputs.x = activations(&mut rng, m * k);
        }
        if work.op.uses_weight() {
            // 1/sqrt(k): the normal weight's standard deviation, and the
            // uniform weight's historical range (+-1/sqrt(k)).
            let std = 1.0 / (k as f32).sqrt();
            inputs.w = (0..k * n)
                .map(|i| {
                    let gain = column_gain.get((i % n) as usize).copied().unwrap_or(1.0);
                    draw(&mut rng) * std * gain
                })
                .collect();
        }
        if work.op.uses_table() {
            let vocab = work.shape.vocab;
            inputs.ids = (0..m).map(|_| rng.random_range(0..vocab)).collect();
        }
        inputs
    }
}

/// How a point's input values are distributed.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Dist {
    /// Uniform in [-1, 1) (the weight in +-1/sqrt(dim)): the lab's historical data.
    #[default]
    Uniform,
    /// Standard normal (the weight with standard deviation 1/sqrt(dim)).
    Normal,
    /// Normal, as a trained LLM's layers see it: a few activation channels
    /// (6 in 4096) 20x larger than the rest, and weight columns whose scales
    /// spread log-normally (see the constants above for the sources).
    Llm,
}

impl Dist {
    /// Every distribution, in a stable order.
    pub const ALL: [Dist; 3] = [Dist::Uniform, Dist::Normal, Dist::Llm];

    /// The name used on the command line and in records.
    pub fn name(self) -> &'static str {
        match self {
            Dist::Uniform => "uniform",
            Dist::Normal => "normal",
            Dist::Llm => "llm",
        }
    }
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dist {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dist::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| LabError::invalid("dist", s, "expected uniform, normal or llm"))
    }
}

/// The factor activations and table rows are multiplied by: 1 for the data as
/// drawn, larger to push values toward a format's largest finite value (FP16's
/// 65504), smaller toward its subnormals. A finite positive number; compared,
/// ordered and hashed by value, so it can name a point.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Scale(f64);

impl Scale {
    /// The data as drawn.
    pub const ONE: Scale = Scale(1.0);

    /// A scale, if `v` is finite and within 1e-30..1e30 (so the scaled f32
    /// inputs stay finite before any rounding).
    pub fn new(v: f64) -> Result<Scale, LabError> {
        if v.is_finite() && (1e-30..=1e30).contains(&v) {
            Ok(Scale(v))
        } else {
            Err(LabError::invalid(
                "scale",
                &v.to_string(),
                "expected a positive number between 1e-30 and 1e30",
            ))
        }
    }

    /// The factor.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for Scale {
    fn default() -> Self {
        Scale::ONE
    }
}

impl TryFrom<f64> for Scale {
    type Error = LabError;
    fn try_from(v: f64) -> Result<Self, Self::Error> {
        Scale::new(v)
    }
}

impl From<Scale> for f64 {
    fn from(s: Scale) -> f64 {
        s.0
    }
}

impl Eq for Scale {}

impl PartialOrd for Scale {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scale {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl std::hash::Hash for Scale {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Scale {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v: f64 = s
            .trim()
            .parse()
            .map_err(|_| LabError::invalid("scale", s, "expected a positive number"))?;
        Scale::new(v)
    }
}

/// What a point's input data looks like: its distribution and scale.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Data {
    /// The distribution values are drawn from.
    pub dist: Dist,
    /// The factor on activations and table rows.
    pub scale: Scale,
}

impl Data {
    /// Whether this is the lab's historical data (uniform, scale 1).
    pub fn is_default(&self) -> bool {
        *self == Data::default()
    }
}

impl fmt::Display for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scale == Scale::ONE {
            write!(f, "{}", self.dist)
        } else {
            write!(f, "{} x{}", self.dist, self.scale)
        }
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
            data: Data::default(),
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

    /// Every op's counts on a rectangular shape (B2 S3, K 4, N 5, vocab 10),
    /// in FP16: FLOP, the buffers of the memory model, the compulsory bytes.
    #[test]
    fn every_op_counts_flops_bytes_and_memory() {
        let shape = Shape::rect(2, 3, 4, 5, 10).unwrap();
        let w = |op| Workload {
            op,
            precision: Precision::F16,
            shape,
            data: Data::default(),
        };
        let (m, k, n, v, e) = (6u64, 4u64, 5u64, 10u64, 2u64);
        let mm = w(Op::Matmul);
        assert_eq!(mm.mkn(), (m, k, n));
        assert_eq!(mm.flops(), 2 * m * k * n);
        let mem = mm.memory_model();
        assert_eq!(
            (mem.ids, mem.table, mem.activations, mem.weights, mem.output),
            (0, 0, m * k * e, k * n * e, m * n * e)
        );
        assert_eq!(mem.total, (m * k + k * n + m * n) * e);
        assert_eq!(mm.bytes_moved(), mem.total);
        let ai = mm.arithmetic_intensity();
        assert_eq!(ai, (2 * m * k * n) as f64 / mem.total as f64);

        let ep = w(Op::EmbedProject);
        assert_eq!(ep.mkn(), (m, k, n));
        assert_eq!(ep.flops(), 2 * m * k * n);
        let mem = ep.memory_model();
        assert_eq!(
            (mem.ids, mem.table, mem.activations, mem.weights, mem.output),
            (m * 4, v * k * e, m * k * e, k * n * e, m * n * e)
        );
        assert_eq!(mem.total, m * 4 + (v * k + m * k + k * n + m * n) * e);
        // ids, the gathered rows read, written and read back, weight, output.
        assert_eq!(
            ep.bytes_moved(),
            m * 4 + m * k * e + 2 * m * k * e + k * n * e + m * n * e
        );

        let emb = w(Op::Embedding);
        assert_eq!(emb.mkn(), (m, k, k));
        assert_eq!(emb.flops(), 0);
        assert_eq!(emb.arithmetic_intensity(), 0.0);
        let mem = emb.memory_model();
        assert_eq!(
            (mem.ids, mem.table, mem.activations, mem.weights, mem.output),
            (m * 4, v * k * e, 0, 0, m * k * e)
        );
        assert_eq!(emb.bytes_moved(), m * 4 + m * k * e + m * k * e);
        assert_eq!(shape.tokens(), 6);
    }

    #[test]
    fn precisions_know_their_sizes_and_limits() {
        let sizes: Vec<_> = Precision::ALL
            .iter()
            .map(|p| (p.bytes(), p.weight_bytes(3, 5), p.name(), p.label()))
            .collect();
        assert_eq!(
            sizes,
            [
                (4, 60, "f32", "FP32"),
                (2, 30, "f16", "FP16"),
                (2, 30, "bf16", "BF16"),
                (2, 15 + 20, "int8", "INT8 (W8A16)"),
            ]
        );
        assert_eq!(
            Precision::ALL.map(|p| p.unit_roundoff()),
            [
                2f64.powi(-24),
                2f64.powi(-11),
                2f64.powi(-8),
                2f64.powi(-11)
            ]
        );
        assert_eq!(Precision::F16.overflow_threshold(), 65520.0);
        assert_eq!(Precision::Int8.overflow_threshold(), 65520.0);
        assert_eq!(
            Precision::F16.min_normal() as f32,
            f16::MIN_POSITIVE.to_f32()
        );
        assert_eq!(Precision::Int8.min_normal(), Precision::F16.min_normal());
        assert_eq!(Precision::F32.min_normal() as f32, f32::MIN_POSITIVE);
        assert_eq!(
            Precision::Bf16.min_normal() as f32,
            bf16::MIN_POSITIVE.to_f32()
        );
        let f32_max = f32::MAX as f64;
        assert_eq!(
            Precision::F32.overflow_threshold(),
            f32_max * (1.0 + 2f64.powi(-24))
        );
        assert_eq!(
            Precision::Bf16.overflow_threshold(),
            f32_max * (1.0 + 2f64.powi(-8))
        );
        assert_eq!(Precision::Int8.round(1.0 + 1.0 / 4096.0), 1.0);
        assert_eq!(Precision::F32.round(1.0 + 1.0 / 4096.0), 1.0 + 1.0 / 4096.0);
        let w = [0.1f32, -0.2, 0.3, 0.4];
        assert_eq!(Precision::F32.stored_weight(&w, 2), w.to_vec());
        assert_eq!(
            Precision::F16.stored_weight(&w, 2),
            w.iter()
                .map(|&v| f16::from_f32(v).to_f32())
                .collect::<Vec<_>>()
        );
        assert_eq!(
            Precision::Int8.stored_weight(&w, 2),
            quantize_weight(&w, 2).dequantize()
        );
        for p in Precision::ALL {
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
        }
        assert!("f64".parse::<Precision>().is_err());
    }

    #[test]
    fn names_round_trip_and_bad_ones_are_refused() {
        for op in Op::ALL {
            assert_eq!(op.to_string().parse::<Op>().unwrap(), op);
        }
        assert_eq!(
            Op::ALL.map(|o| (o.uses_table(), o.uses_weight())),
            [(true, false), (false, true), (true, true)]
        );
        assert!("conv"
            .parse::<Op>()
            .unwrap_err()
            .to_string()
            .contains("embed-project"));
        for d in Dist::ALL {
            assert_eq!(d.to_string().parse::<Dist>().unwrap(), d);
        }
        assert_eq!(" 2.5 ".parse::<Scale>().unwrap().get(), 2.5);
        assert!("-1".parse::<Scale>().is_err() && "1e-31".parse::<Scale>().is_err());
        assert_eq!(Scale::new(1e-30).unwrap().get(), 1e-30);
        assert_eq!(Scale::new(1e30).unwrap().get(), 1e30);
        assert!(Scale::try_from(0.5).unwrap() < Scale::ONE);
        assert_eq!(f64::from(Scale::new(3.0).unwrap()), 3.0);
        let data = Data {
            dist: Dist::Llm,
            scale: Scale::new(64.0).unwrap(),
        };
        assert_eq!(data.to_string(), "llm x64");
        assert_eq!(Data::default().to_string(), "uniform");
        assert!(Data::default().is_default() && !data.is_default());
        use std::collections::HashSet;
        let set: HashSet<Scale> = [1.0, 1.0, 2.0].map(|v| Scale::new(v).unwrap()).into();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn shapes_past_what_a_kernel_addresses_are_refused() {
        // 2^16 x 2^16 activations: 2^32 elements, one past u32 indexing.
        let err = Shape::new(1, 1 << 16, 1 << 16, 1).unwrap_err().to_string();
        assert!(err.contains("activation elements"), "{err}");
        assert!(Shape::rect(1, 1, 1 << 16, (1 << 16) - 1, 1).is_ok());
        let err = Shape::rect(1, 1 << 16, 8, 1 << 16, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("output elements"), "{err}");
        let err = Shape::rect(1, 1, 1 << 16, 1 << 16, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("weight"), "{err}");
        let err = Shape::rect(1, 1, 1 << 16, 1, 1 << 16)
            .unwrap_err()
            .to_string();
        assert!(err.contains("table"), "{err}");
        assert!(Shape::rect(1, 1, 1 << 16, 1, (1 << 16) - 1).is_ok());
        // Exactly 2^32 - 1 = 65537 * 65535 elements is still addressable.
        for (s, d, n, v) in [
            (65537, 65535, 1, 1),
            (65537, 1, 65535, 1),
            (1, 65537, 65535, 1),
            (1, 65537, 1, 65535),
        ] {
            assert!(Shape::rect(1, s, d, n, v).is_ok(), "S{s} D{d} N{n} V{v}");
        }
        for (b, s, d, n, v, field) in [
            (1, 0, 1, 1, 1, "seq"),
            (1, 1, 0, 1, 1, "dim"),
            (1, 1, 1, 0, 1, "out_dim"),
            (1, 1, 1, 1, 0, "vocab"),
        ] {
            let err = Shape::rect(b, s, d, n, v).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn quantisation_clamps_and_keeps_zero_and_infinite_columns_usable() {
        // An infinite value would make the scale infinite: the column keeps 1.
        let w = [f32::INFINITY, 0.5, 2.0, -0.25];
        let qw = quantize_weight(&w, 2);
        assert_eq!(qw.scales, vec![1.0, 0.5 / 127.0]);
        assert_eq!(qw.q, vec![127, 127, 2, -64]);
        assert_eq!(qw.dequantize()[3], -64.0 * 0.5 / 127.0);
    }

    #[test]
    fn input_buffers_have_their_sizes() {
        let mut w = work(Op::EmbedProject, Precision::F32);
        w.shape = Shape::rect(2, 3, 4, 5, 10).unwrap();
        let i = Inputs::generate(&w, 1);
        assert_eq!(
            (i.ids.len(), i.table.len(), i.x.len(), i.w.len()),
            (6, 40, 0, 20)
        );
        assert_eq!(i.bytes(), (6 + 40 + 20) * 4);
        w.op = Op::Matmul;
        let i = Inputs::generate(&w, 1);
        assert_eq!(
            (i.ids.len(), i.table.len(), i.x.len(), i.w.len()),
            (0, 0, 24, 20)
        );
        assert_eq!(i.bytes(), (24 + 20) * 4);
        // The weight's spread is 1/sqrt(K): uniform within +-1/2 at K = 4.
        assert!(i.w.iter().all(|v| v.abs() < 0.5) && i.w.iter().any(|v| v.abs() > 0.25));
        assert!(i.x.iter().any(|v| v.abs() > 0.5));
        w.data.scale = Scale::new(100.0).unwrap();
        let big = Inputs::generate(&w, 1);
        assert_eq!(big.x[0], i.x[0] * 100.0);
        assert_eq!(big.w, i.w);
    }

    /// The streams are part of the results' meaning (a point re-run draws the
    /// same data): these values are pinned, for each distribution.
    #[test]
    fn streams_are_pinned() {
        let mut w = Workload {
            op: Op::Matmul,
            precision: Precision::F32,
            shape: Shape::rect(2, 1, 4096, 8, 1).unwrap(),
            data: Data::default(),
        };
        let mut got = Vec::new();
        for dist in Dist::ALL {
            w.data.dist = dist;
            let i = Inputs::generate(&w, 3);
            let outliers: Vec<usize> = (0..4096)
                .filter(|&c| i.x[c].abs() > 8.0 || i.x[4096 + c].abs() > 8.0)
                .collect();
            got.push((
                dist,
                [i.x[0], i.x[4097], i.w[0], i.w[9], i.w[8 * 4095 + 7]],
                outliers,
            ));
        }
        let want = [
            (
                Dist::Uniform,
                [
                    -0.78329754,
                    -0.4725635,
                    -0.0018172562,
                    0.0024558902,
                    0.012649871,
                ],
                vec![],
            ),
            (
                Dist::Normal,
                [
                    0.4387562,
                    -1.0639191,
                    -0.010198665,
                    0.0112921335,
                    0.008688495,
                ],
                vec![],
            ),
            // The weight's columns scaled log-normally; 6 outlier channels of 4096.
            (
                Dist::Llm,
                [
                    0.4387562,
                    -1.0639191,
                    -0.011872206,
                    0.009605825,
                    0.004100141,
                ],
                vec![724, 1308, 2245, 2467, 2489, 4000],
            ),
        ];
        assert_eq!(got, want);
        // A seed whose low bits meet the layout stream's own constant.
        w.data.dist = Dist::Llm;
        let i = Inputs::generate(&w, 0x100);
        let outliers: Vec<usize> = (0..4096)
            .filter(|&c| i.x[c].abs() > 8.0 || i.x[4096 + c].abs() > 8.0)
            .collect();
        assert_eq!(outliers, [795, 2331, 2548, 2999, 3761]);
        use std::hash::{BuildHasher, RandomState};
        let h = RandomState::new();
        assert_ne!(
            h.hash_one(Scale::new(1.0).unwrap()),
            h.hash_one(Scale::new(2.0).unwrap())
        );
    }

    #[test]
    fn zero_sizes_are_rejected() {
        let err = Shape::new(0, 1, 1, 1).unwrap_err().to_string();
        assert!(err.contains("batch"), "{err}");
    }

    #[test]
    fn inputs_are_reproducible_and_full_precision() {
        let w = work(Op::EmbedProject, Precision::F16);
        let a = Inputs::generate(&w, 7);
        let b = Inputs::generate(&w, 7);
        assert_eq!(a.table, b.table);
        assert_eq!(a.ids, b.ids);
        assert!(a.ids.iter().all(|&i| i < 10));
        // Not rounded to f16: the precision cost needs the originals.
        assert!(a.table.iter().any(|&v| f16::from_f32(v).to_f32() != v));
    }

    #[test]
    fn distributions_have_their_shape() {
        let mut w = Workload {
            op: Op::Matmul,
            precision: Precision::F32,
            shape: Shape::rect(64, 1, 4096, 8, 1).unwrap(),
            data: Data::default(),
        };
        let uniform = Inputs::generate(&w, 3);
        assert!(uniform.x.iter().all(|v| (-1.0..1.0).contains(v)));
        w.data.dist = Dist::Normal;
        let normal = Inputs::generate(&w, 3);
        let var = normal.x.iter().map(|v| (v * v) as f64).sum::<f64>() / normal.x.len() as f64;
        assert!((0.95..1.05).contains(&var), "variance {var}");
        w.data = Data {
            dist: Dist::Llm,
            scale: Scale::new(8.0).unwrap(),
        };
        let llm = Inputs::generate(&w, 3);
        // Channel magnitudes: a few are ~20x the median.
        let mut rms: Vec<f64> = (0..4096)
            .map(|c| {
                let s: f64 = (0..64).map(|r| (llm.x[r * 4096 + c] as f64).powi(2)).sum();
                (s / 64.0).sqrt()
            })
            .collect();
        rms.sort_by(f64::total_cmp);
        let median = rms[2048];
        assert!((6.0..10.0).contains(&median), "median channel rms {median}");
        let big = rms.iter().filter(|&&r| r > 10.0 * median).count();
        assert!((1..=6).contains(&big), "{big} outlier channels");
    }

    #[test]
    fn int8_weights_quantise_per_column_and_count_a_byte_plus_scales() {
        // Column 0 spans +-254 (scale 2; 1.0 is a tie and rounds to even 0,
        // 3.0 to 2), column 1 is all zero (scale 1).
        let w = [254.0, 0.0, -100.0, 0.0, 1.0, 0.0, 3.0, 0.0];
        let qw = quantize_weight(&w, 2);
        assert_eq!(qw.scales, vec![2.0, 1.0]);
        assert_eq!(qw.q, vec![127, 0, -50, 0, 0, 0, 2, 0]);
        assert_eq!(qw.dequantize()[2], -100.0);
        let work = Workload {
            op: Op::Matmul,
            precision: Precision::Int8,
            shape: Shape::rect(2, 3, 4, 5, 1).unwrap(),
            data: Data::default(),
        };
        let mem = work.memory_model();
        assert_eq!(mem.weights, 4 * 5 + 4 * 5);
        assert_eq!(mem.activations, 6 * 4 * 2);
        assert_eq!(mem.output, 6 * 5 * 2);
    }

    #[test]
    fn scale_is_validated_and_ordered() {
        assert!(Scale::new(0.0).is_err());
        assert!(Scale::new(f64::NAN).is_err());
        assert!(Scale::new(1e31).is_err());
        assert!("64".parse::<Scale>().unwrap() > Scale::ONE);
        assert!("x".parse::<Dist>().unwrap_err().to_string().contains("llm"));
    }

    #[test]
    fn precisions_take_the_names_users_type() {
        for (name, p) in [
            ("fp32", Precision::F32),
            ("half", Precision::F16),
            ("FP16", Precision::F16),
            ("bfloat16", Precision::Bf16),
            ("bf16", Precision::Bf16),
            ("w8", Precision::Int8),
            ("INT8", Precision::Int8),
        ] {
            assert_eq!(name.parse::<Precision>().unwrap(), p, "{name}");
        }
        assert_eq!(Precision::Bf16.round(1.0 + 1.0 / 512.0), 1.0);
        assert_eq!(Precision::F16.round(70000.0), f32::INFINITY);
        assert_eq!(Precision::Bf16.round(70000.0), 70144.0);
    }
}

//! The ops the lab measures, and the one registry that lists them.
//!
//! An op is a folder: `src/ops/<op>/` holds everything specific to it — its
//! parameters and their validation, its cost model, its seeded inputs, its
//! f64 reference and error bound, its CPU and GPU kernels — and implements
//! [`op::Operation`]. This file is the only place that names every op: the
//! `registry!` line below makes [`Op`] (which op a point runs) and
//! [`OpParams`] (a point's op with its own parameters, serialised with an
//! `op` tag), and dispatches every question the lab asks to the op's
//! implementation. Adding an op is a folder and a line here
//! (`docs/adding-an-op.md`).

pub mod attention;
pub mod embed_project;
pub mod embedding;
pub mod matmul;
pub mod op;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::backend::gpu::device::GpuDevice;
use crate::data::Data;
use crate::error::{LabError, Result};
use crate::precision::Precision;
use crate::prepared_op::{Accumulation, PreparedOp};
use op::{Axis, Cost, Inputs, Operation, Reference, Roof, Scaling, Values};

/// Makes [`Op`] and [`OpParams`] from the list of ops, and dispatches each
/// [`Operation`] method over them: one exhaustive `match` per question, so
/// an op added to the list is asked everything.
macro_rules! registry {
    ($($variant:ident => $params:ty),* $(,)?) => {
        /// Which op a point runs. Ordered as the registry lists the ops (the
        /// order reports group them in).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Op {
            $(
                #[doc = concat!("See `", stringify!($params), "`.")]
                $variant,
            )*
        }

        /// A point's op and its own parameters. In a results file the op's
        /// name is the `op` field and its parameters are fields beside it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(tag = "op", rename_all = "kebab-case")]
        pub enum OpParams {
            $(
                #[doc = concat!("See `", stringify!($params), "`.")]
                $variant($params),
            )*
        }

        impl Op {
            /// Every op, in the registry's order.
            pub const ALL: &'static [Op] = &[$(Op::$variant),*];

            /// The name used on the command line and in records.
            pub fn name(self) -> &'static str {
                match self {
                    $(Op::$variant => <$params as Operation>::NAME,)*
                }
            }

            /// What it computes, in one line.
            pub fn about(self) -> &'static str {
                match self {
                    $(Op::$variant => <$params as Operation>::ABOUT,)*
                }
            }

            /// Its parameters, in the order a sweep expands them.
            pub fn axes(self) -> &'static [Axis] {
                match self {
                    $(Op::$variant => <$params as Operation>::AXES,)*
                }
            }

            /// Whether a model preset's layer may be this op.
            pub fn model_layer(self) -> bool {
                match self {
                    $(Op::$variant => <$params as Operation>::MODEL_LAYER,)*
                }
            }

            /// The parameters `values` give, validated by the op.
            pub fn params(self, values: &Values) -> Result<OpParams> {
                match self {
                    $(Op::$variant => <$params>::from_values(values).map(OpParams::$variant),)*
                }
            }

            /// The points its kernels are checked on (see [`Operation::examples`]).
            pub fn examples(self) -> Vec<OpParams> {
                match self {
                    $(Op::$variant => <$params as Operation>::examples()
                        .into_iter()
                        .map(OpParams::$variant)
                        .collect(),)*
                }
            }

            /// The memory breakdown's parts: a label and the roles it sums.
            pub fn memory_parts(self) -> &'static [(&'static str, &'static [&'static str])] {
                match self {
                    $(Op::$variant => <$params as Operation>::memory_parts(),)*
                }
            }

            /// What the op's memory is made of, in words.
            pub fn memory_note(self) -> &'static str {
                match self {
                    $(Op::$variant => <$params as Operation>::memory_note(),)*
                }
            }
        }

        impl OpParams {
            /// Which op.
            pub fn op(&self) -> Op {
                match self {
                    $(OpParams::$variant(_) => Op::$variant,)*
                }
            }

            /// The value of parameter `axis`, if the op has it.
            pub fn axis(&self, axis: &str) -> Option<u32> {
                match self {
                    $(OpParams::$variant(p) => p.axis(axis),)*
                }
            }

            /// The point's sizes for a line of text (`B8 S512 D768`).
            pub fn label(&self) -> String {
                match self {
                    $(OpParams::$variant(p) => Operation::label(p),)*
                }
            }

            /// The op's fixed sizes, without batch and sequence.
            pub fn sizes(&self) -> String {
                match self {
                    $(OpParams::$variant(p) => Operation::sizes(p),)*
                }
            }

            /// Tokens one run processes.
            pub fn tokens(&self) -> u64 {
                match self {
                    $(OpParams::$variant(p) => Operation::tokens(p),)*
                }
            }

            /// Rows and columns of the output.
            pub fn output_shape(&self) -> (u64, u64) {
                match self {
                    $(OpParams::$variant(p) => Operation::output_shape(p),)*
                }
            }

            /// FLOPs, compulsory bytes and memory at `precision`.
            pub fn cost(&self, precision: Precision) -> Cost {
                match self {
                    $(OpParams::$variant(p) => Operation::cost(p, precision),)*
                }
            }

            /// Bytes of the generated inputs on the host.
            pub fn host_input_bytes(&self) -> u64 {
                match self {
                    $(OpParams::$variant(p) => Operation::host_input_bytes(p),)*
                }
            }

            /// The point's inputs at full precision, drawn from `seed`.
            pub fn generate(&self, data: Data, seed: u64) -> Inputs {
                match self {
                    $(OpParams::$variant(p) => Operation::generate(p, data, seed),)*
                }
            }

            /// The op's f64 oracle over `inputs`.
            pub fn reference<'a>(
                &self,
                precision: Precision,
                inputs: &'a Inputs,
                accumulation: Accumulation,
            ) -> Box<dyn Reference + 'a> {
                match self {
                    $(OpParams::$variant(p) => Operation::reference(p, precision, inputs, accumulation),)*
                }
            }

            /// The CPU kernel that runs the point.
            pub fn cpu_kernel(&self, precision: Precision) -> String {
                match self {
                    $(OpParams::$variant(p) => Operation::cpu_kernel(p, precision),)*
                }
            }

            /// The CPU kernel, prepared.
            pub fn cpu<'a>(&self, precision: Precision, inputs: &'a Inputs) -> Result<Box<dyn PreparedOp + 'a>> {
                match self {
                    $(OpParams::$variant(p) => Operation::cpu(p, precision, inputs),)*
                }
            }

            /// The GPU kernel that would run the point on `gpu` (never tunes).
            pub fn gpu_kernel(&self, gpu: &GpuDevice, precision: Precision) -> String {
                match self {
                    $(OpParams::$variant(p) => Operation::gpu_kernel(p, gpu, precision),)*
                }
            }

            /// The GPU kernel, planned, built and loaded on `gpu`.
            pub fn gpu<'a>(
                &self,
                gpu: &'a GpuDevice,
                precision: Precision,
                inputs: &'a Inputs,
            ) -> Result<Box<dyn PreparedOp + 'a>> {
                match self {
                    $(OpParams::$variant(p) => Operation::gpu(p, gpu, precision, inputs),)*
                }
            }

            /// The ceiling the point is read against.
            pub fn roof(&self) -> Roof {
                match self {
                    $(OpParams::$variant(p) => Operation::roof(p),)*
                }
            }

            /// How its latency should grow along the op's main axis.
            pub fn scaling(&self) -> Scaling {
                match self {
                    $(OpParams::$variant(p) => Operation::scaling(p),)*
                }
            }

            /// `(K, N)` where the point is a projection.
            pub fn projection(&self) -> Option<(u64, u64)> {
                match self {
                    $(OpParams::$variant(p) => Operation::projection(p),)*
                }
            }
        }
    };
}

registry! {
    Embedding => embedding::Params,
    Matmul => matmul::Params,
    EmbedProject => embed_project::Params,
    Attention => attention::Params,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The ops' names for a message: `a, b or c`.
pub fn names() -> String {
    let names: Vec<&str> = Op::ALL.iter().map(|o| o.name()).collect();
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

impl FromStr for Op {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self> {
        Op::ALL
            .iter()
            .copied()
            .find(|op| op.name() == s)
            .ok_or_else(|| LabError::invalid("op", s, &format!("expected {}", names())))
    }
}

impl Serialize for Op {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Op {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Every parameter of every op, each once (the first op's declaration of a
/// shared one): the spec axes, `--set` axes and `bench` flags ops take.
pub fn all_axes() -> Vec<Axis> {
    let mut all: Vec<Axis> = Vec::new();
    for op in Op::ALL {
        for a in op.axes() {
            if !all.iter().any(|b| b.name == a.name) {
                all.push(*a);
            }
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::op::AxisKind;

    /// Only a projection has a weight: `(K, N)` for matmul and the chained
    /// op, none for a lookup.
    #[test]
    fn only_projections_name_a_weight() {
        let mut v = Values::default();
        for (k, x) in [
            ("batch", 2),
            ("seq", 3),
            ("dim", 5),
            ("out_dim", 7),
            ("vocab", 11),
        ] {
            v.set(k, x);
        }
        let params = |name: &str| {
            let op: Op = name.parse().unwrap();
            let mut own = Values::default();
            for a in op.axes() {
                own.0.insert(a.name.into(), v.0[a.name].clone());
            }
            op.params(&own).unwrap()
        };
        assert_eq!(params("embedding").projection(), None);
        assert_eq!(params("matmul").projection(), Some((5, 7)));
        assert_eq!(params("embed-project").projection(), Some((5, 7)));
    }

    /// Each op's name is its records' `op` tag, parses back, and its
    /// parameters read back from the record they write.
    #[test]
    fn names_tags_and_records_agree() {
        for &op in Op::ALL {
            assert_eq!(op.to_string().parse::<Op>().unwrap(), op);
            assert_eq!(serde_json::to_value(op).unwrap(), op.name());
            let mut v = Values::default();
            for a in op.axes() {
                match a.kind {
                    AxisKind::Size { .. } => v.set(a.name, 3),
                    AxisKind::Flag { default } => v.set(a.name, !default),
                    AxisKind::Choice { options, .. } => v.set(a.name, options[options.len() - 1]),
                }
            }
            let p = op.params(&v).unwrap();
            assert_eq!(p.op(), op);
            let json = serde_json::to_value(p).unwrap();
            assert_eq!(json["op"], op.name(), "{op}");
            assert_eq!(serde_json::from_value::<OpParams>(json).unwrap(), p);
            for a in op.axes() {
                if let AxisKind::Size { .. } = a.kind {
                    assert_eq!(p.axis(a.name), Some(3), "{op} {}", a.name);
                }
            }
            assert!(!op.about().is_empty() && !op.memory_note().is_empty());
            // Examples: valid, a degenerate one, one large enough to chunk.
            let ex = op.examples();
            assert!(ex.iter().all(|p| p.op() == op), "{op}");
            assert!(
                ex.iter().any(|p| p.tokens() == 1),
                "{op}: no degenerate example"
            );
            assert!(
                ex.iter().any(|p| p.tokens() >= 200),
                "{op}: no example to chunk"
            );
        }
        let err = "conv".parse::<Op>().unwrap_err().to_string();
        assert!(
            err.contains("embedding, matmul, embed-project or attention"),
            "{err}"
        );
    }

    /// A shared parameter is listed once.
    #[test]
    fn every_axis_is_listed_once() {
        let all = all_axes();
        for a in &all {
            assert_eq!(all.iter().filter(|b| b.name == a.name).count(), 1);
        }
        for &op in Op::ALL {
            for a in op.axes() {
                assert!(all.iter().any(|b| b.name == a.name));
            }
        }
    }
}

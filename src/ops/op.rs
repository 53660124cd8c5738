//! What an op is to the rest of the lab: the [`Operation`] trait an op's
//! parameters implement (in its own folder, `src/ops/<op>/`), and the types it
//! answers with. The engine, the backends' runners, verification and the
//! reports ask an op these questions; none of them tests which op it is.
//!
//! An op tells:
//! - its **parameters**: the axes a spec sweeps and `bench` takes as flags
//!   ([`Axis`]), built and validated once from named [`Values`];
//! - its **cost model**: FLOPs, bytes moved and memory by named buffer role
//!   ([`Cost`]), and what the reports read it against ([`Roof`], [`Scaling`]);
//! - its **inputs**, drawn from the seeded stream (`crate::data::Draws`), and
//!   its **reference** ([`Reference`]): the f64 result of an output row and
//!   each element's normaliser, and the tolerance a correct kernel meets;
//! - its **kernels**: a CPU one and a GPU one, each a [`PreparedOp`].

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::backend::gpu::device::GpuDevice;
use crate::data::Data;
use crate::error::{LabError, Result};
use crate::precision::Precision;
use crate::prepared_op::{deserialize_roles, serialize_roles, Accumulation, PreparedOp, RoleBytes};

/// An op's parameters, and everything the lab asks of the op they describe.
/// One implementation per op folder; the registry (`src/ops/mod.rs`) lists
/// them.
pub trait Operation:
    Copy + fmt::Debug + Eq + Hash + Ord + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The op's name on the command line, in spec files and in records.
    const NAME: &'static str;
    /// What it computes, in one line (`kernel-lab ops`, docs).
    const ABOUT: &'static str;
    /// Its parameters, in the order a sweep expands them (the outermost
    /// first): each is a spec axis, a `--set` axis and a `bench` flag.
    const AXES: &'static [Axis];
    /// Whether a model preset's layer may be this op (a composite of two
    /// layers is not one).
    const MODEL_LAYER: bool = true;

    /// The parameters `values` give, validated once: every size in range,
    /// every buffer addressable by a kernel. An absent parameter takes its
    /// default, or is an error naming it.
    fn from_values(values: &Values) -> Result<Self>;
    /// The value of parameter `axis` (`batch`, `dim`, ...), if the op has it.
    fn axis(&self, axis: &str) -> Option<u32>;
    /// The point's sizes for a line of text: `B8 S512 D768` (`N2304` for a
    /// rectangular projection).
    fn label(&self) -> String;
    /// The op's fixed sizes, without batch and sequence (a model layer's:
    /// `768 -> 2304`, `50257 x 768`).
    fn sizes(&self) -> String;
    /// Tokens (rows of activations) one run processes: tokens/s divides by it.
    fn tokens(&self) -> u64;
    /// Rows and columns of the output, as a kernel returns it (row-major).
    fn output_shape(&self) -> (u64, u64);
    /// FLOPs, compulsory bytes and memory per buffer at `precision`.
    fn cost(&self, precision: Precision) -> Cost;
    /// Bytes of the inputs as generated (f32 values, u32 ids) on the host.
    fn host_input_bytes(&self) -> u64;
    /// The point's inputs at full precision, drawn from `seed`.
    fn generate(&self, data: Data, seed: u64) -> Inputs;
    /// The f64 oracle of this point's output over `inputs`, for a kernel
    /// that accumulates as `accumulation` says.
    fn reference<'a>(
        &self,
        precision: Precision,
        inputs: &'a Inputs,
        accumulation: Accumulation,
    ) -> Box<dyn Reference + 'a>;

    /// The CPU kernel that runs this point (the record's `kernel`).
    fn cpu_kernel(&self, precision: Precision) -> String;
    /// The CPU kernel prepared: buffers allocated, the model's data loaded.
    fn cpu<'a>(&self, precision: Precision, inputs: &'a Inputs)
        -> Result<Box<dyn PreparedOp + 'a>>;
    /// The GPU kernel that would run this point on `gpu`, as far as it is
    /// known without preparing it: naming a point never tunes or compiles.
    fn gpu_kernel(&self, gpu: &GpuDevice, precision: Precision) -> String;
    /// The GPU kernel planned, built and loaded on `gpu`.
    fn gpu<'a>(
        &self,
        gpu: &'a GpuDevice,
        precision: Precision,
        inputs: &'a Inputs,
    ) -> Result<Box<dyn PreparedOp + 'a>>;

    /// The ceiling the point is read against: the FMA peak where arithmetic
    /// bounds it, the copy bandwidth where bytes do.
    fn roof(&self) -> Roof;
    /// How its latency should grow along the op's main axis, and whether
    /// this point lies on the op's main line along it (a square projection).
    fn scaling(&self) -> Scaling;
    /// The point's weight as `(K, N)` where it is a projection `x @ W`: the
    /// precision study's INT8 weights, top-k agreement and rectangular
    /// comparisons read it.
    fn projection(&self) -> Option<(u64, u64)> {
        None
    }
    /// The points every backend's kernels are checked on against the
    /// reference (`tests/`): sizes that are not tile multiples, a degenerate
    /// one (every size 1), and at least one of 200 rows or more (so that small
    /// bindings split it into row chunks).
    fn examples() -> Vec<Self>;
    /// The memory breakdown's parts: a label and the buffer roles it sums,
    /// in the order a report lists them.
    fn memory_parts() -> &'static [(&'static str, &'static [&'static str])];
    /// What the memory is made of, in words (how each part grows).
    fn memory_note() -> &'static str;
}

/// One parameter of an op: a spec axis, a `--set` axis and a `bench` flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Axis {
    /// Its name in spec files, records and (with `-` for `_`) flags.
    pub name: &'static str,
    /// What it is, for `--help`.
    pub help: &'static str,
    /// What values it takes.
    pub kind: AxisKind,
    /// Whether the run sets it (batch, sequence length, context), not a
    /// model's layer (whose sizes fix the rest).
    pub run: bool,
}

/// Sequences per request batch: an axis of every op that runs token rows.
pub const BATCH: Axis = Axis {
    name: "batch",
    help: "Sequences per request batch",
    kind: AxisKind::Size { default: None },
    run: true,
};

/// Tokens per sequence: an axis of every op that runs token rows.
pub const SEQ: Axis = Axis {
    name: "seq",
    help: "Tokens per sequence (1 for a decode step)",
    kind: AxisKind::Size { default: None },
    run: true,
};

/// The model dimension: a table's row width, a projection's K.
pub const DIM: Axis = Axis {
    name: "dim",
    help: "Model (embedding) dimension: a table's row width, a projection's K",
    kind: AxisKind::Size { default: None },
    run: false,
};

/// The values an [`Axis`] takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AxisKind {
    /// A positive integer; `default` when absent (`None`: required, or
    /// derived from another parameter by the op).
    Size {
        /// The value when none is given.
        default: Option<u32>,
    },
    /// On or off.
    Flag {
        /// The value when none is given.
        default: bool,
    },
    /// One of a few names (a KV cache's format).
    Choice {
        /// The names it takes.
        options: &'static [&'static str],
        /// The value when none is given.
        default: &'static str,
    },
}

impl AxisKind {
    /// The value when none is given, as a record holds it.
    pub fn default_value(self) -> Option<serde_json::Value> {
        match self {
            AxisKind::Size { default } => default.map(serde_json::Value::from),
            AxisKind::Flag { default } => Some(default.into()),
            AxisKind::Choice { default, .. } => Some(default.into()),
        }
    }

    /// Whether `v` is a value of this kind.
    pub fn accepts(self, v: &serde_json::Value) -> bool {
        match self {
            AxisKind::Size { .. } => v.as_u64().is_some_and(|n| n <= u32::MAX as u64),
            AxisKind::Flag { .. } => v.is_boolean(),
            AxisKind::Choice { options, .. } => v.as_str().is_some_and(|s| options.contains(&s)),
        }
    }

    /// What it takes, in words.
    pub fn wants(self) -> String {
        match self {
            AxisKind::Size { .. } => "a positive integer".into(),
            AxisKind::Flag { .. } => "true or false".into(),
            AxisKind::Choice { options, .. } => format!("one of {}", options.join(", ")),
        }
    }
}

/// Named parameter values, as a spec's axes, `--set` and `bench` flags give
/// them, before an op validates them into its parameters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Values(pub BTreeMap<String, serde_json::Value>);

impl Values {
    /// Sets `name` to `value`.
    pub fn set(&mut self, name: &str, value: impl Into<serde_json::Value>) {
        self.0.insert(name.to_string(), value.into());
    }

    /// The positive integer `name` holds, if any.
    pub fn size(&self, name: &str) -> Result<Option<u32>> {
        let Some(v) = self.0.get(name) else {
            return Ok(None);
        };
        match v.as_u64() {
            Some(0) => Err(LabError::invalid(name, "0", "must be at least 1")),
            Some(n) if n <= u32::MAX as u64 => Ok(Some(n as u32)),
            _ => Err(LabError::invalid(
                name,
                &v.to_string(),
                "expected a positive integer below 2^32",
            )),
        }
    }

    /// The positive integer `name` holds, or the error naming `op`'s need of it.
    pub fn required(&self, op: &str, name: &str) -> Result<u32> {
        self.size(name)?.ok_or_else(|| {
            LabError::invalid(name, "none", &format!("{op} needs a value of {name}"))
        })
    }

    /// The flag `name` holds, if any.
    pub fn flag(&self, name: &str) -> Result<Option<bool>> {
        match self.0.get(name) {
            None => Ok(None),
            Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(LabError::invalid(
                name,
                &v.to_string(),
                "expected true or false",
            )),
        }
    }

    /// The name `name` holds, if any, checked against `options`.
    pub fn choice(&self, name: &str, options: &[&str]) -> Result<Option<String>> {
        match self.0.get(name) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) if options.contains(&s.as_str()) => {
                Ok(Some(s.clone()))
            }
            Some(v) => Err(LabError::invalid(
                name,
                &v.to_string(),
                &format!("expected one of {}", options.join(", ")),
            )),
        }
    }

    /// Fails naming the first value that is none of `axes` (another op's
    /// parameter, or a typo).
    pub fn only(&self, op: &str, axes: &[Axis]) -> Result<()> {
        match self.0.keys().find(|k| !axes.iter().any(|a| a.name == *k)) {
            None => Ok(()),
            Some(k) => Err(LabError::invalid(
                k,
                &self.0[k].to_string(),
                &format!(
                    "{op} has no such parameter; its parameters are {}",
                    axes.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }
}

/// Fails when `elems` elements of `what` are more than a kernel's u32
/// indices address (2^32 - 1 is the last).
pub fn addressable(field: &str, value: &str, what: &str, elems: u64) -> Result<()> {
    if elems > u32::MAX as u64 {
        return Err(LabError::invalid(
            field,
            value,
            &format!("{elems} {what} elements exceed the 2^32 addressable by a kernel"),
        ));
    }
    Ok(())
}

/// What one run of a point costs by the op's model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cost {
    /// Floating-point operations (a multiply-add counts 2).
    pub flops: u64,
    /// Bytes that must cross memory at least once: every input read once,
    /// every output written once (and what the op's own passes hand each
    /// other through memory).
    pub bytes_moved: u64,
    /// Bytes of each buffer the op needs.
    pub memory: MemoryModel,
}

impl Cost {
    /// FLOP per byte moved (0 for a copy).
    pub fn arithmetic_intensity(&self) -> f64 {
        self.flops as f64 / self.bytes_moved as f64
    }
}

/// Modeled bytes of each buffer an op needs, for one precision, by role in
/// the op's order. In a results file each role is a field beside `total`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryModel {
    /// Bytes per buffer role.
    pub parts: RoleBytes,
    /// The sum of the parts.
    pub total: u64,
}

impl MemoryModel {
    /// The model of these roles.
    pub fn of(parts: &[(&str, u64)]) -> Self {
        let parts = RoleBytes::of(parts);
        MemoryModel {
            total: parts.sum(),
            parts,
        }
    }

    /// The bytes of `role` (0 when the op has none).
    pub fn get(&self, role: &str) -> u64 {
        self.parts.get(role)
    }
}

impl Serialize for MemoryModel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_roles(s, &self.parts, &[("total", Some(self.total))])
    }
}

impl<'de> Deserialize<'de> for MemoryModel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (parts, [total]) = deserialize_roles(d, ["total"])?;
        Ok(MemoryModel {
            total: total.unwrap_or(parts.sum()),
            parts,
        })
    }
}

/// The ceiling a point is read against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Roof {
    /// The probed FMA peak (GFLOP/s): arithmetic bounds it.
    Compute,
    /// The probed copy bandwidth (GB/s): bytes bound it.
    Memory,
}

/// How a point's latency should grow along its op's main axis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scaling {
    /// The axis (`dim`).
    pub axis: &'static str,
    /// The exponent the cost model predicts along it.
    pub exponent: f64,
    /// The cost model that predicts it, in words.
    pub model: &'static str,
    /// Whether this point lies on the op's main line (a projection whose
    /// output is as wide as its input: the D^2 law is about one dim).
    pub on_line: bool,
}

/// A point's inputs at full precision, as its op generated them: each op
/// keeps its own buffers (ids and a table, activations and a weight, ...);
/// the engine only holds them and counts their bytes.
pub struct Inputs {
    data: Box<dyn Any + Send + Sync>,
    bytes: u64,
}

impl Inputs {
    /// Inputs holding `data`, `bytes` of it on the host.
    pub fn new<T: Any + Send + Sync>(data: T, bytes: u64) -> Self {
        Inputs {
            data: Box::new(data),
            bytes,
        }
    }

    /// Bytes the generated inputs hold on the host.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The op's own buffers. An op is only ever handed the inputs it
    /// generated, so another type is a bug in the lab.
    pub fn get<T: Any>(&self) -> &T {
        self.data.downcast_ref::<T>().unwrap_or_else(|| {
            panic!(
                "inputs of another op where {} were expected",
                std::any::type_name::<T>()
            )
        })
    }
}

impl fmt::Debug for Inputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Inputs({} bytes)", self.bytes)
    }
}

/// An op's f64 oracle over one point's inputs: what the one comparator
/// (`crate::verify`) checks every backend's output against.
///
/// Error is measured per element as `|y - ref| / normaliser`, where the
/// normaliser is the quantity the rounding error of the element is
/// proportional to (`sum_k |x_ik * w_kj|` for a dot product, `|ref|` for a
/// copy); the tolerance bounds it.
pub trait Reference: Sync {
    /// Rows and columns of the output.
    fn shape(&self) -> (u64, usize);
    /// Multiply-adds one row's reference costs (its width for a copy): past
    /// 2^28 for the whole output, a sample of rows is checked.
    fn row_macs(&self) -> u64;
    /// Row `r` of the result in f64 with each element's normaliser: from the
    /// inputs as the point stores them (rounded to its precision) when
    /// `stored`, else from the original data.
    fn row(&self, r: u64, stored: bool, out: &mut [f64], norm: &mut [f64]);
    /// The tolerance on the normalised kernel error (0: exact).
    fn tolerance(&self) -> f64;
    /// The absolute error, past `tol * norm`, that underflow lets a correct
    /// kernel add to an element whose f64 result is `expected` (0 for a copy).
    fn underflow_allowance(&self, tol: f64, expected: f64, norm: f64) -> f64;
    /// Whether an accumulator may overflow on the way to an element of this
    /// normaliser although the result does not (an f16 accumulator).
    fn accumulator_overflows(&self, norm: f64) -> bool {
        let _ = norm;
        false
    }
    /// Whether an output row ranks its columns (a vocabulary's logits): the
    /// precision cost then counts top-1 and top-5 agreement.
    fn ranked(&self) -> bool;
    /// Whether a point in `precision` stores any input rounded (so the
    /// kernel is checked against the rounded inputs and the precision cost
    /// measured against the originals): every precision but FP32, and FP32
    /// where an op stores some input narrower (an int8 KV cache).
    fn inputs_rounded(&self, precision: Precision) -> bool {
        precision != Precision::F32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_and_checked_by_name() {
        let mut v = Values::default();
        v.set("dim", 768);
        v.set("causal", false);
        assert_eq!(v.size("dim").unwrap(), Some(768));
        assert_eq!(v.size("seq").unwrap(), None);
        assert_eq!(v.flag("causal").unwrap(), Some(false));
        let err = v.required("matmul", "seq").unwrap_err().to_string();
        assert!(err.contains("matmul needs a value of seq"), "{err}");
        v.set("batch", 0);
        assert!(v
            .size("batch")
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
        v.set("batch", 1u64 << 32);
        assert!(v.size("batch").unwrap_err().to_string().contains("2^32"));
        v.set("batch", "x");
        assert!(v.size("batch").is_err());
        assert!(v.flag("dim").is_err());
        let axes = [DIM];
        let err = v.only("t", &axes).unwrap_err().to_string();
        assert!(
            err.contains("t has no such parameter") && err.contains("dim"),
            "{err}"
        );
        assert!(addressable("x", "1", "output", u32::MAX as u64).is_ok());
        assert!(addressable("x", "1", "output", 1 << 32).is_err());
    }

    #[test]
    fn memory_models_read_the_files_of_every_schema() {
        // A schema-3 model: the op's own roles; and a file before roles were
        // named, with every op's five buffers.
        let m = MemoryModel::of(&[("activations", 24), ("weights", 16), ("output", 24)]);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"activations":24,"weights":16,"output":24,"total":64}"#
        );
        assert_eq!(serde_json::from_str::<MemoryModel>(&json).unwrap(), m);
        let old: MemoryModel = serde_json::from_str(
            r#"{"ids":0,"table":0,"activations":24,"weights":16,"output":24,"total":64}"#,
        )
        .unwrap();
        assert_eq!(
            (old.get("weights"), old.get("table"), old.total),
            (16, 0, 64)
        );
        assert_eq!(old.get("kv-cache"), 0);
    }

    #[test]
    fn inputs_hand_an_op_its_own_buffers() {
        let i = Inputs::new(vec![1u32, 2], 8);
        assert_eq!(i.bytes(), 8);
        assert_eq!(i.get::<Vec<u32>>(), &vec![1, 2]);
        let wrong = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = i.get::<Vec<f32>>();
        }));
        assert!(wrong.is_err());
    }
}

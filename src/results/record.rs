//! One point's record: its identity ([`PointId`], flat in the file), what it
//! ran, its verification, and either its measurement or why it has none
//! ([`Skip`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::backend::{BackendKind, Ceilings, MemoryUse, TimingMethod};
use crate::data::{Data, Dist, Scale};
use crate::measure::{BatchResult, StopRule};
use crate::ops::op::MemoryModel;
use crate::ops::{Op, OpParams};
use crate::precision::Precision;
use crate::precision_cost::PrecisionCost;
use crate::prepared_op::TimestampFault;
use crate::stats::Summary;
use crate::workload::Workload;

/// What identifies a point in a results file, whatever measured it: a point
/// is measured at most once per file. Serialised flat into its record: the
/// op's name as `op` and its own parameters beside it (files before schema
/// 3 carry every op's `batch`, `seq`, `dim`, `vocab` and `out_dim`; each op
/// reads the ones it has), then the backend, precision and data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PointId {
    /// The op and its parameters.
    #[serde(flatten)]
    pub params: OpParams,
    /// gpu or cpu.
    pub backend: BackendKind,
    /// Storage precision.
    pub precision: Precision,
    /// The input data's distribution (files before it existed: uniform).
    #[serde(default)]
    pub dist: Dist,
    /// The factor on activations and table rows (files before it existed: 1).
    #[serde(default)]
    pub scale: Scale,
}

/// Points are ordered by op, backend and precision, then by the op's own
/// parameters and the data, as files and reports have always listed them.
impl Ord for PointId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (
            self.op(),
            self.backend,
            self.precision,
            self.params,
            self.dist,
            self.scale,
        )
            .cmp(&(
                other.op(),
                other.backend,
                other.precision,
                other.params,
                other.dist,
                other.scale,
            ))
    }
}

impl PartialOrd for PointId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PointId {
    /// The point that runs `work` on `backend`.
    pub fn new(backend: BackendKind, work: &Workload) -> Self {
        PointId {
            params: work.params,
            backend,
            precision: work.precision,
            dist: work.data.dist,
            scale: work.data.scale,
        }
    }

    /// Which op.
    pub fn op(&self) -> Op {
        self.params.op()
    }

    /// The value of the op's parameter `axis` (`batch`, `dim`, ...), if it has one.
    pub fn axis(&self, axis: &str) -> Option<u32> {
        self.params.axis(axis)
    }

    /// The input data it ran on.
    pub fn data(&self) -> Data {
        Data {
            dist: self.dist,
            scale: self.scale,
        }
    }

    /// The workload.
    pub fn work(&self) -> Workload {
        Workload {
            params: self.params,
            precision: self.precision,
            data: self.data(),
        }
    }

    /// Whether `other` runs the same workload (on any backend).
    pub fn same_work(&self, other: &PointId) -> bool {
        (self.params, self.precision, self.data()) == (other.params, other.precision, other.data())
    }

    /// Whether it lies on its op's main line (a gather, a square projection:
    /// the lines along dim the scaling findings fit).
    pub fn is_square(&self) -> bool {
        self.params.scaling().on_line
    }

    /// `B8 S512 D768`, with `N2304` when the output width differs from
    /// `dim` (the op's label), and the data where it is not the default.
    pub fn shape_label(&self) -> String {
        let data = if self.data().is_default() {
            String::new()
        } else {
            format!(" {}", self.data())
        };
        format!("{}{data}", self.params.label())
    }
}

/// Why a point has no measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipKind {
    /// Over the run's time budget (estimated, or its first run measured).
    Cut,
    /// The output did not match the reference.
    VerificationFailed,
    /// The point is a GPU point and there is no usable GPU.
    NoGpu,
    /// Anything else that stopped it: a device limit, an unsupported
    /// configuration, a GPU error.
    Error,
}

impl SkipKind {
    /// The prefix the reason carries in results files.
    fn prefix(self) -> &'static str {
        match self {
            SkipKind::Cut => "cut: ",
            SkipKind::VerificationFailed => "verification failed: ",
            SkipKind::NoGpu => "no GPU: ",
            SkipKind::Error => "",
        }
    }
}

/// Why a point has no measurement: a kind and the detail. In a results file
/// it is one string, the kind's prefix and the detail (`cut: one run
/// estimated at ...`), read back into kind and detail here and nowhere else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    /// What kind of reason.
    pub kind: SkipKind,
    /// The reason in words, with its numbers.
    pub detail: String,
}

impl Skip {
    /// A reason of `kind`.
    pub fn new(kind: SkipKind, detail: impl Into<String>) -> Self {
        Skip {
            kind,
            detail: detail.into(),
        }
    }

    /// Parses the string a results file holds.
    pub fn parse(s: &str) -> Self {
        [SkipKind::Cut, SkipKind::VerificationFailed, SkipKind::NoGpu]
            .into_iter()
            .find_map(|k| s.strip_prefix(k.prefix()).map(|d| Skip::new(k, d)))
            .unwrap_or_else(|| Skip::new(SkipKind::Error, s))
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.kind.prefix(), self.detail)
    }
}

impl Serialize for Skip {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Skip::parse(&String::deserialize(d)?))
    }
}

/// Latency percentiles in milliseconds (the contract's `latency_ms`).
pub type LatencyMs = Summary;

/// Median phases of an end-to-end request, milliseconds. The model's table
/// and weight are loaded once (`model_load`), not per request; files written
/// before that split have no `model_load` and re-uploaded them in `upload`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhasesMs {
    /// Host to device: the request's ids or activations.
    pub upload: f64,
    /// The op, submit to completion.
    pub kernel: f64,
    /// Device to host.
    pub readback: f64,
    /// Requests measured.
    pub runs: u32,
    /// One-time: the table and weight placed on the device when the op (the
    /// model) was loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_load: Option<f64>,
}

impl PhasesMs {
    /// A request end to end: upload, kernel and readback.
    pub fn request(&self) -> f64 {
        self.upload + self.kernel + self.readback
    }
}

/// Memory, modeled and measured, bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryBytes {
    /// What the buffers need by the op's cost model.
    pub model: MemoryModel,
    /// What the backend allocated for them.
    pub measured: MemoryUse,
    /// measured.total / model.total.
    pub measured_over_model: f64,
    /// Peak host heap growth during the point (counting allocator), if installed.
    pub host_peak_alloc: Option<u64>,
    /// The process's peak resident set size after the point, if known (the
    /// whole process: every earlier point, the runtime and the harness too).
    pub process_peak_rss: Option<u64>,
    /// The harness's share of the host memory, apart from the op's: the
    /// generated inputs the point keeps for verification, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs_bytes: Option<u64>,
    /// Peak host heap growth while verifying (the output read back, the f64
    /// reference rows), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_peak_alloc: Option<u64>,
    /// Peak host heap growth during the timed phase alone (sampling, batches,
    /// phases), above the heap live when it began, bytes: the op's own host
    /// footprint while it is timed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timed_peak_alloc: Option<u64>,
}

/// Sustained throughput from back-to-back dispatches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// How it was measured.
    #[serde(flatten)]
    pub batch: BatchResult,
    /// Per-dispatch time, milliseconds.
    pub per_dispatch_ms: f64,
    /// FLOP/s at that rate, in GFLOP/s.
    pub gflops: f64,
    /// Tokens (B*S) per second at that rate.
    pub tokens_per_s: f64,
}

/// The measured part of a record (absent when the point was skipped).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// How `latency_ms` was timed.
    pub timing_method: TimingMethod,
    /// Samples in `latency_ms`.
    pub samples: usize,
    /// Why sampling stopped.
    pub stop_rule: StopRule,
    /// Per-sample latency (device time where timed so).
    pub latency_ms: LatencyMs,
    /// Host submit-to-completion latency of the same samples.
    pub wall_latency_ms: LatencyMs,
    /// Setting the op up: buffers, bind groups and the upload, milliseconds.
    /// Pipeline compilation is `compile_ms` (files without it include it here);
    /// autotuning is never counted.
    pub prepare_ms: f64,
    /// Compiling the op's pipelines while preparing it, milliseconds (0 when
    /// the device had compiled them for an earlier point); absent for the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compile_ms: Option<f64>,
    /// The first execution after preparing, milliseconds (cold start).
    pub first_run_ms: f64,
    /// Warm-up runs before sampling.
    pub warmup_runs: u32,
    /// Whether caches were flushed before each sample.
    pub cold_cache: bool,
    /// End-to-end phases.
    pub phases_ms: Option<PhasesMs>,
    /// Sustained throughput.
    pub throughput: Option<Throughput>,
    /// GFLOP/s at the median latency.
    pub gflops: f64,
    /// GB/s of modeled bytes moved at the median latency.
    pub gbps: f64,
    /// Tokens per second at the median latency.
    pub tokens_per_s: f64,
    /// FLOP per modeled byte.
    pub arithmetic_intensity: f64,
    /// `gbps` as a percentage of the backend's probed copy bandwidth.
    #[serde(default)]
    pub pct_of_copy_bandwidth: Option<f64>,
    /// `gflops` as a percentage of the backend's probed FMA peak (ops with FLOPs).
    #[serde(default)]
    pub pct_of_fma_peak: Option<f64>,
    /// Memory, modeled and measured.
    pub memory_bytes: MemoryBytes,
    /// Raw samples, nanoseconds (the value `latency_ms` summarises).
    pub raw_ns: Vec<u64>,
    /// Raw host wall samples, nanoseconds.
    pub raw_wall_ns: Vec<u64>,
    /// Samples whose device timestamps could not be believed and that use
    /// wall time instead, by reason (absent when there were none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timestamp_fallbacks: BTreeMap<TimestampFault, u32>,
    /// Energy while the op ran back to back (GPUs whose driver has an energy counter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy: Option<crate::energy::Energy>,
    /// The GPU's SM clock between the samples (NVML on NVIDIA; the shader or GT clock from the kernel's files on AMD and Intel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_mhz: Option<crate::sample_clocks::SampleClocks>,
    /// Passes of the sweep whose samples are pooled here (`sampling.rounds`;
    /// absent, 1).
    #[serde(default = "one_round", skip_serializing_if = "is_one_round")]
    pub rounds: u32,
}

fn one_round() -> u32 {
    1
}

fn is_one_round(r: &u32) -> bool {
    *r == 1
}

impl Record {
    /// Fills the percentages of `c` (the backend's ceilings) into the measurement.
    pub fn apply_ceilings(&mut self, c: &Ceilings) {
        if let Some(m) = self.measured.as_mut() {
            m.pct_of_copy_bandwidth = (c.copy_gbps > 0.0).then(|| 100.0 * m.gbps / c.copy_gbps);
            m.pct_of_fma_peak =
                (c.fma_gflops > 0.0 && m.gflops > 0.0).then(|| 100.0 * m.gflops / c.fma_gflops);
        }
    }
}

/// One point's result: the contract's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Which point: op and its parameters, backend, precision, data.
    #[serde(flatten)]
    pub id: PointId,
    /// The model layer it measures (`llama-3-8b/qkv`), when it came from a preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// Adapter or CPU model.
    pub adapter: String,
    /// discrete-gpu, cpu (a software GPU), host-cpu, ...
    pub device_type: String,
    /// True when the timings are a CPU imitating a GPU.
    pub software_device: bool,
    /// Which implementation ran (kernel variant, storage mode).
    pub kernel: String,
    /// Largest absolute error against the f64 reference.
    pub max_abs_err: Option<f64>,
    /// Largest normalised kernel error: `|y - ref| / sum_k |x*w|` against the
    /// f64 result of the inputs as rounded to the precision (see verify.rs;
    /// files before schema 2 call it `max_rel_err`).
    #[serde(alias = "max_rel_err")]
    pub max_norm_err: Option<f64>,
    /// Tolerance applied to the normalised error.
    pub tolerance: Option<f64>,
    /// Rows compared with the reference.
    pub rows_checked: Option<u64>,
    /// Outputs that overflowed the format (Inf or NaN where the exact result is
    /// past its largest finite value): counted, not a verification failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflows: Option<u64>,
    /// What the precision cost against the f64 result of the full-precision
    /// data (absent in files before schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision_cost: Option<PrecisionCost>,
    /// Whether the output matched the reference; timings exist only when true.
    pub verified: bool,
    /// Why the point was not measured, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<Skip>,
    /// Noise, short samples and other caveats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The measurement, when there is one.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<Measured>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_reasons_keep_their_string_form_and_kind() {
        for (text, kind) in [
            ("cut: one run estimated at 3.0 s", SkipKind::Cut),
            (
                "verification failed: max error 1",
                SkipKind::VerificationFailed,
            ),
            ("no GPU: none found", SkipKind::NoGpu),
            ("weight [4 x 4 f32] needs 64 bytes", SkipKind::Error),
        ] {
            let s = Skip::parse(text);
            assert_eq!(s.kind, kind, "{text}");
            assert_eq!(s.to_string(), text);
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, serde_json::to_string(text).unwrap());
            assert_eq!(serde_json::from_str::<Skip>(&json).unwrap(), s);
        }
    }

    /// A point's identity is flat in its record: the op's tag and its own
    /// parameters beside backend, precision and data; every schema's
    /// records read back (files before rectangular projections have no
    /// out_dim: it is dim; before schema 2 no data axis: uniform at scale 1;
    /// before schema 3 every op carried a vocab and an out_dim).
    #[test]
    fn a_point_id_is_flat_in_json_and_every_schema_reads() {
        let old = serde_json::json!({
            "op": "matmul", "backend": "cpu", "precision": "f32",
            "batch": 1, "seq": 2, "dim": 64, "vocab": 100,
        });
        let id: PointId = serde_json::from_value(old).unwrap();
        assert_eq!(id.axis("out_dim"), Some(64));
        assert_eq!(id.axis("vocab"), None);
        assert_eq!(id.data(), Data::default());
        let v = serde_json::to_value(id).unwrap();
        assert_eq!(v["backend"], "cpu");
        assert_eq!(v["op"], "matmul");
        assert_eq!(v["dim"], 64);
        assert_eq!(v["out_dim"], 64);
        assert!(v.get("vocab").is_none());
        assert_eq!(serde_json::from_value::<PointId>(v).unwrap(), id);
        let gather = serde_json::json!({
            "op": "embedding", "backend": "gpu", "precision": "f16",
            "batch": 8, "seq": 512, "dim": 128, "vocab": 32000, "out_dim": 128,
            "dist": "llm", "scale": 4.0,
        });
        let id: PointId = serde_json::from_value(gather).unwrap();
        assert_eq!((id.axis("vocab"), id.axis("out_dim")), (Some(32000), None));
        assert_eq!(id.shape_label(), "B8 S512 D128 llm x4");
        assert!(id.is_square());
    }

    /// Points sort by op (in the registry's order), then backend, precision
    /// and sizes, as files and reports always listed them.
    #[test]
    fn points_sort_by_op_backend_precision_then_sizes() {
        let id = |op: &str, backend: &str, dim: u32| -> PointId {
            serde_json::from_value(serde_json::json!({
                "op": op, "backend": backend, "precision": "f32",
                "batch": 1, "seq": 1, "dim": dim, "vocab": 10,
            }))
            .unwrap()
        };
        let mut ids = [
            id("matmul", "cpu", 8),
            id("embedding", "gpu", 4),
            id("matmul", "cpu", 4),
            id("embedding", "cpu", 16),
        ];
        ids.sort();
        let got: Vec<(String, String, Option<u32>)> = ids
            .iter()
            .map(|i| (i.op().to_string(), i.backend.to_string(), i.axis("dim")))
            .collect();
        assert_eq!(
            got,
            [
                ("embedding".into(), "cpu".into(), Some(16)),
                ("embedding".into(), "gpu".into(), Some(4)),
                ("matmul".into(), "cpu".into(), Some(4)),
                ("matmul".into(), "cpu".into(), Some(8)),
            ]
        );
    }

    #[test]
    fn a_schema_1_record_reads_its_error_under_the_new_name() {
        let old = serde_json::json!({
            "op": "matmul", "backend": "cpu", "precision": "f16",
            "batch": 1, "seq": 2, "dim": 64, "vocab": 100,
            "adapter": "cpu", "device_type": "host-cpu", "software_device": false,
            "kernel": "gemm f16", "max_abs_err": 1e-3, "max_rel_err": 2e-4,
            "tolerance": 5e-4, "rows_checked": 2, "verified": true,
        });
        let r: Record = serde_json::from_value(old).unwrap();
        assert_eq!(r.max_norm_err, Some(2e-4));
        assert_eq!(r.precision_cost, None);
        let v = serde_json::to_value(&r).unwrap();
        assert!(v.get("max_rel_err").is_none() && v["max_norm_err"] == 2e-4);
        assert_eq!(v["dist"], "uniform");
        assert_eq!(v["scale"], 1.0);
    }
}

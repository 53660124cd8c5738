//! The results contract: one [`Record`] per point, and the results file that
//! holds them with the environment they were measured in. Files are written
//! atomically (temporary file, then rename), so a reader never sees half a file.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backend::{Ceilings, DeviceInfo, MemoryUse, TimingMethod};
use crate::error::{LabError, Result};
use crate::measure::{BatchResult, StopRule};
use crate::stats::Summary;
use crate::workload::{MemoryModel, Op, Precision};

/// Version of the results schema; bumped when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// Latency percentiles in milliseconds (the contract's `latency_ms`).
pub type LatencyMs = Summary;

/// Median phases of an end-to-end request, milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhasesMs {
    /// Host to device.
    pub upload: f64,
    /// The op, submit to completion.
    pub kernel: f64,
    /// Device to host.
    pub readback: f64,
    /// Requests measured.
    pub runs: u32,
}

/// Memory, modeled and measured, bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryBytes {
    /// What the buffers need by the model (workload.rs).
    pub model: MemoryModel,
    /// What the backend allocated for them.
    pub measured: MemoryUse,
    /// measured.total / model.total.
    pub measured_over_model: f64,
    /// Peak host heap growth during the point (counting allocator), if installed.
    pub host_peak_alloc: Option<u64>,
    /// The process's peak resident set size after the point, if known.
    pub process_peak_rss: Option<u64>,
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
    /// Pipeline creation and upload, milliseconds.
    pub prepare_ms: f64,
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
    /// The op.
    pub op: Op,
    /// gpu or cpu.
    pub backend: String,
    /// Adapter or CPU model.
    pub adapter: String,
    /// discrete-gpu, cpu (a software GPU), host-cpu, ...
    pub device_type: String,
    /// True when the timings are a CPU imitating a GPU.
    pub software_device: bool,
    /// Storage precision.
    pub precision: Precision,
    /// Batch.
    pub batch: u32,
    /// Sequence length.
    pub seq: u32,
    /// Model dimension.
    pub dim: u32,
    /// Vocabulary (rows of the table).
    pub vocab: u32,
    /// Which implementation ran (kernel variant, storage mode).
    pub kernel: String,
    /// Largest absolute error against the f64 reference.
    pub max_abs_err: Option<f64>,
    /// Largest normalised error (see reference.rs).
    pub max_rel_err: Option<f64>,
    /// Tolerance applied to the normalised error.
    pub tolerance: Option<f64>,
    /// Rows compared with the reference.
    pub rows_checked: Option<u64>,
    /// Whether the output matched the reference; timings exist only when true.
    pub verified: bool,
    /// Why the point was not measured, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Noise, short samples and other caveats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The measurement, when there is one.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<Measured>,
}

/// Where the results were measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// The GPU used, if any.
    pub gpu: Option<DeviceInfo>,
    /// The host CPU.
    pub cpu: DeviceInfo,
    /// Logical cores.
    pub cores: usize,
    /// Operating system and architecture.
    pub os: String,
    /// kernel-lab's version.
    pub crate_version: String,
    /// The git commit the binary was built from, if known.
    pub git_commit: Option<String>,
    /// The wgpu version linked.
    pub wgpu_version: String,
    /// When the run started (seconds since the Unix epoch).
    pub timestamp_unix: u64,
    /// Probed ceilings per backend ("gpu", "cpu"), when the run measured them.
    #[serde(default)]
    pub ceilings: std::collections::BTreeMap<String, Ceilings>,
    /// What the GPU's matmul autotuning measured: per storage mode and shape
    /// class, every verified candidate's median ms and the one chosen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub autotuning: Vec<serde_json::Value>,
}

impl Environment {
    /// Captures the environment for the given devices.
    pub fn capture(gpu: Option<DeviceInfo>, cpu: DeviceInfo) -> Self {
        Environment {
            gpu,
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            crate_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: option_env!("KERNEL_LAB_GIT_COMMIT").map(String::from),
            wgpu_version: "30".into(),
            timestamp_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            ceilings: Default::default(),
            autotuning: Vec::new(),
        }
    }
}

/// A results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultsFile {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The experiment that produced it, as given.
    pub spec: serde_json::Value,
    /// Where it was measured.
    pub environment: Environment,
    /// False while a run is in progress or was interrupted.
    pub complete: bool,
    /// One record per point.
    pub records: Vec<Record>,
    /// A reference library timed on the same points in the same run, if the spec asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchors: Option<crate::anchor::Anchors>,
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let io = |source| LabError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

impl ResultsFile {
    /// Saves to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("results serialise");
        write_atomic(path, &json)
    }

    /// Loads a results file, naming the file in any error.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| LabError::Io {
            path: path.into(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| {
            LabError::invalid("results file", &path.display().to_string(), &e.to_string())
        })
    }
}

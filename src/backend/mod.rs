//! What a backend (GPU through wgpu, or the CPU) offers the measuring loop: a
//! [`Backend`] prepares a [`Kernel`] for a workload; the kernel runs it, one timed
//! execution at a time, and hands back its output for verification.
//!
//! The measuring loop (`measure`) knows nothing of wgpu; backends know nothing of
//! statistics.

pub mod cpu;
mod cpu_ceilings;
pub mod gpu;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::workload::{Inputs, Workload};

/// Which kind of backend runs a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A wgpu adapter (a real GPU, or a software one such as lavapipe).
    Gpu,
    /// The host CPU.
    Cpu,
}

impl BackendKind {
    /// The name used on the command line and in records.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Gpu => "gpu",
            BackendKind::Cpu => "cpu",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gpu" => Ok(BackendKind::Gpu),
            "cpu" => Ok(BackendKind::Cpu),
            _ => Err(LabError::invalid("backend", s, "expected gpu or cpu")),
        }
    }
}

/// How a sample's time was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimingMethod {
    /// GPU timestamp queries written at the start and end of the pass.
    DeviceTimestamp,
    /// The host's monotonic clock around submit-to-completion.
    Wall,
}

/// One timed execution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Host time from submit (or call) to completion, nanoseconds.
    pub wall_ns: u64,
    /// Device time between the pass's timestamps, when the device gave a usable one.
    pub device_ns: Option<u64>,
}

impl Sample {
    /// The time the measurement uses: device time when present, else wall time.
    pub fn best_ns(&self) -> u64 {
        self.device_ns.unwrap_or(self.wall_ns)
    }
}

/// The phases of one end-to-end request, nanoseconds of host time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// Host to device: inputs written into the backend's buffers.
    pub upload_ns: u64,
    /// The op itself (submit to completion).
    pub kernel_ns: u64,
    /// Device to host: the output read back into host memory.
    pub readback_ns: u64,
}

/// Bytes a prepared kernel actually holds, per buffer role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryUse {
    /// Token ids.
    pub ids: u64,
    /// Embedding table.
    pub table: u64,
    /// Activations (input of matmul, or gathered rows).
    pub activations: u64,
    /// Projection weight.
    pub weights: u64,
    /// Output.
    pub output: u64,
    /// Anything else the backend keeps (uniforms, staging, timestamp buffers).
    pub other: u64,
    /// The sum of the above.
    pub total: u64,
    /// Bytes the device's allocator reports in live allocations, where the
    /// backend gives a report (wgpu's `generate_allocator_report`).
    #[serde(default)]
    pub allocator_allocated: Option<u64>,
    /// Bytes the device's allocator holds in memory blocks, used or not.
    #[serde(default)]
    pub allocator_reserved: Option<u64>,
}

impl MemoryUse {
    /// Fills in `total` from the parts.
    pub fn summed(mut self) -> Self {
        self.total =
            self.ids + self.table + self.activations + self.weights + self.output + self.other;
        self
    }
}

/// A description of the device a backend runs on, for records and `devices`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Adapter or CPU model name.
    pub name: String,
    /// wgpu backend (vulkan, metal, dx12, gl) or "native" for the CPU.
    pub api: String,
    /// discrete-gpu, integrated-gpu, virtual-gpu, cpu (a software GPU), other; or host-cpu.
    pub device_type: String,
    /// Driver name and version, where known.
    pub driver: String,
    /// Whether its timings are a CPU imitating a GPU.
    pub software: bool,
    /// Features that matter here (timestamp-query, shader-f16, subgroup, cooperative-matrix).
    pub features: Vec<String>,
    /// Limits that matter here, by wgpu's names.
    pub limits: serde_json::Value,
}

/// The device's own practical peaks, measured by probe kernels: a copy (memory
/// bandwidth) and independent FMA chains (arithmetic). Records report their
/// GB/s and GFLOP/s as a percentage of these.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ceilings {
    /// Copy bandwidth, GB/s (bytes read + written).
    pub copy_gbps: f64,
    /// FP32 FMA throughput, GFLOP/s (an FMA counts 2).
    pub fma_gflops: f64,
    /// How they were measured (kernel, sizes, timing).
    pub method: String,
}

/// A prepared op with its inputs resident, ready to be timed.
pub trait Kernel {
    /// How this kernel's samples are timed.
    fn timing_method(&self) -> TimingMethod;
    /// Runs the op once and times it.
    fn run(&mut self) -> Result<Sample>;
    /// Runs the op `n` times back to back in one submission; the sample covers all `n`.
    fn run_batch(&mut self, n: u32) -> Result<Sample>;
    /// One end-to-end request: upload the inputs, run, read the output back.
    fn run_phases(&mut self) -> Result<Phases>;
    /// The output of the last run as f32, `[B*S, dim]` row-major (outside any timing).
    fn output(&mut self) -> Result<Vec<f32>>;
    /// Bytes this kernel holds, measured from its allocations.
    fn memory(&self) -> MemoryUse;
    /// Evicts the op's data from caches (for cold-cache samples).
    fn flush_caches(&mut self) -> Result<()>;
    /// How the kernel accumulates dot products (sets the verification tolerance).
    fn accumulation(&self) -> crate::reference::Accumulation {
        crate::reference::Accumulation::F32
    }
}

/// Something that can run workloads: the CPU or one GPU adapter.
pub trait Backend {
    /// Which kind it is.
    fn kind(&self) -> BackendKind;
    /// The device it runs on.
    fn device(&self) -> &DeviceInfo;
    /// The implementation that runs `work` here (kernel family and storage).
    fn kernel_name(&self, work: &Workload) -> String;
    /// Measures the device's copy and FMA ceilings (best of several runs).
    fn probe_ceilings(&self) -> Result<Ceilings>;
    /// Uploads inputs and builds pipelines for `work`. Errors name the limit or
    /// feature that stops the point.
    fn prepare<'a>(&'a self, work: &Workload, inputs: &'a Inputs) -> Result<Box<dyn Kernel + 'a>>;
    /// What this backend tuned so far (for the results' environment); none by default.
    fn autotuning(&self) -> Vec<serde_json::Value> {
        Vec::new()
    }
}

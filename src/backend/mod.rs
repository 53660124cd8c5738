//! What a backend (GPU through wgpu, or the CPU) offers the measuring loop: a
//! [`Backend`] prepares a [`PreparedOp`] for a workload; the prepared op runs it,
//! one timed execution at a time, and hands back its output for verification.
//!
//! The measuring loop (`measure`) knows nothing of wgpu; backends know nothing of
//! statistics.

pub mod cpu;
mod cpu_ceilings;
mod cpu_name;
mod cpu_skinny;
pub mod gpu;

pub use crate::prepared_op::{MemoryUse, OneTimeCosts, Phases, PreparedOp, Sample, TimingMethod};

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::workload::{Inputs, Workload};

/// Bytes written to evict the caches between cold samples: larger than any
/// last-level cache this lab expects (nvbench and Triton's do_bench do the same).
pub const CACHE_FLUSH_BYTES: u64 = 256 << 20;

/// Which kind of backend runs a point. Ordered by name (`cpu` before `gpu`),
/// as files and reports have always listed them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A wgpu adapter (a real GPU, or a software one such as lavapipe).
    Gpu,
    /// The host CPU.
    Cpu,
}

impl BackendKind {
    /// Both kinds, GPU first (the order reports use).
    pub const ALL: [BackendKind; 2] = [BackendKind::Gpu, BackendKind::Cpu];

    /// The name used on the command line and in records.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Gpu => "gpu",
            BackendKind::Cpu => "cpu",
        }
    }
}

impl PartialOrd for BackendKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for BackendKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(other.name())
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
    pub limits: DeviceLimits,
    /// The PCI vendor id the graphics API reports (0x10de NVIDIA, 0x1002 AMD,
    /// 0x8086 Intel; Mesa's software devices 0x10005).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<u32>,
    /// The PCI device id the graphics API reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<u32>,
    /// The card's PCI address (`0000:01:00.0`), where the API reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
}

/// The limits of a device that matter here: wgpu's for a GPU (by wgpu's
/// names), the thread count for the CPU. A field the device has no such limit
/// for is absent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceLimits {
    /// Threads the CPU backend runs on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<u64>,
    /// Largest buffer, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_buffer_size: Option<u64>,
    /// Largest storage binding, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_storage_buffer_binding_size: Option<u64>,
    /// Workgroups per dispatch dimension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_compute_workgroups_per_dimension: Option<u32>,
    /// Invocations per workgroup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_compute_invocations_per_workgroup: Option<u32>,
    /// Workgroup memory, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_compute_workgroup_storage_size: Option<u32>,
    /// Narrowest subgroup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_subgroup_size: Option<u32>,
    /// Widest subgroup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_subgroup_size: Option<u32>,
    /// What VK_KHR_cooperative_matrix (or Metal's simdgroup matrices) offer,
    /// as `MxNxK A->C`, whether or not wgpu exposes the feature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooperative_matrix_configs: Option<Vec<String>>,
}

/// What matmul autotuning measured for one storage mode and shape class, as
/// results.json records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TuningRecord {
    /// Storage mode (f32, f16, f16-packed).
    pub storage: String,
    /// Shape class (small, small-deep, large, large-deep, huge-deep).
    pub shape_class: String,
    /// The configuration chosen: the fastest that verified.
    pub chosen: String,
    /// Median ms of every verified candidate on the class's tuning shape.
    pub median_ms: BTreeMap<String, f64>,
    /// Candidates left out, and why.
    #[serde(default)]
    pub rejected: BTreeMap<String, String>,
    /// Whether the choice came from the tuning cache file.
    #[serde(default)]
    pub cached: bool,
    /// Why the choice could not be written to the cache file, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_cached: Option<String>,
    /// Compile milliseconds of each candidate built while tuning.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub compile_ms: BTreeMap<String, f64>,
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
    /// What launching work costs (GPUs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<DispatchCosts>,
    /// Copy bandwidth within the cache, GB/s: the ceiling of work whose bytes
    /// fit there, where the memory copy's reads over 100% (CPU only; absent
    /// in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_copy_gbps: Option<f64>,
    /// The cooperative matrices' multiply-add throughput (GPUs that offer
    /// them to the coop matmul; absent elsewhere and in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coop: Option<CoopCeiling>,
}

/// What a GPU's cooperative matrices (tensor cores) run through wgpu: f16 x
/// f16 -> f32 multiply-adds, GFLOP/s (a multiply-add counts 2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoopCeiling {
    /// Edge of the fragments probed (the coop matmul's: 16, or 8).
    pub fragment: u32,
    /// With the operands in registers: the bare multiply-add rate.
    pub gflops: f64,
    /// With the operands reloaded from workgroup memory every step, as a
    /// matmul's inner loop does.
    pub lds_gflops: f64,
    /// How they were measured.
    pub method: String,
}

/// A GPU's fixed costs of launching work, microseconds: the floor under any
/// small op, and what batching dispatches into one submission saves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DispatchCosts {
    /// One empty dispatch alone in a pass (device time where timestamped).
    pub empty_dispatch_us: f64,
    /// Each of many empty dispatches recorded in one pass.
    pub per_dispatch_in_pass_us: f64,
    /// An empty submission, submit to completion, host wall time.
    pub submit_round_trip_us: f64,
    /// A 4-byte copy submitted and mapped back, host wall time.
    pub readback_round_trip_us: f64,
    /// How they were measured.
    pub method: String,
}

/// Something that can run workloads: the CPU or one GPU adapter.
pub trait Backend {
    /// Which kind it is.
    fn kind(&self) -> BackendKind;
    /// The device it runs on.
    fn device(&self) -> &DeviceInfo;
    /// The implementation that would run `work` here, as far as it is known
    /// without preparing it: naming a point never tunes or compiles anything.
    /// A prepared op's [`PreparedOp::describe`] is the definitive name.
    fn describe(&self, work: &Workload) -> String;
    /// Measures the device's copy and FMA ceilings (best of several runs).
    fn probe_ceilings(&self) -> Result<Ceilings>;
    /// Uploads inputs and builds pipelines for `work`. Errors name the limit or
    /// feature that stops the point.
    fn prepare<'a>(
        &'a self,
        work: &Workload,
        inputs: &'a Inputs,
    ) -> Result<Box<dyn PreparedOp + 'a>>;
    /// What this backend tuned so far (for the results' environment); none by default.
    fn autotuning(&self) -> Vec<TuningRecord> {
        Vec::new()
    }
    /// The driver's monitor of this device (clocks, power, energy), where
    /// the driver offers one; none by default.
    fn monitor(&self) -> Option<&crate::gpu_monitor::GpuMonitor> {
        None
    }
}

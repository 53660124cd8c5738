//! What the lab records about a device: its description and limits
//! ([`DeviceInfo`]), the ceilings probed on it ([`Ceilings`]), and what
//! autotuning measured there ([`TuningRecord`]). Plain data, read by backends,
//! monitors, results and reports alike.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// What autotuning measured for one op, storage mode and shape class, as
/// results.json records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TuningRecord {
    /// The op tuned (files before other ops could tune hold the matmul's
    /// tunings alone, without this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
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

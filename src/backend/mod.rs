//! What a backend (GPU through wgpu, or the CPU) offers the measuring loop: a
//! [`Backend`] prepares a [`PreparedOp`] for a workload — by asking the op,
//! through the registry, for its CPU or GPU kernel — and the prepared op runs
//! it, one timed execution at a time, and hands back its output for
//! verification.
//!
//! The measuring loop (`measure`) knows nothing of wgpu; backends know nothing of
//! statistics, nor of which op they run.

pub mod cpu;
pub mod gpu;
pub mod info;

pub use crate::prepared_op::{
    MemoryUse, OneTimeCosts, Phases, PreparedOp, Sample, TimingMethod, CACHE_FLUSH_BYTES,
};
pub use info::{Ceilings, CoopCeiling, DeviceInfo, DeviceLimits, DispatchCosts, TuningRecord};

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::ops::op::Inputs;
use crate::workload::Workload;

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

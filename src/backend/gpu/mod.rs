//! The GPU backend: any op's kernels on whichever adapter the [`GpuContext`]
//! opened, through wgpu.
//!
//! A point's route is straight: [`GpuBackend::prepare`] asks the point's op
//! (through the registry) for its GPU kernel; the op plans how it runs —
//! storage mode, chunks, kernel configuration (forced, or asked of the
//! [`tune::tuner::Tuner`] once) — and hands the [`runner::GpuRun`] a
//! [`runner::Program`] of buffers and dispatches, which the runner builds,
//! times and reads back. Around it: `context` (the device), `chunks`
//! (splitting points larger than one binding), `storage` (how precisions are
//! stored and read in WGSL), `pipelines` (compiled once per device),
//! `timestamps`, `readback`, and the device's probed `ceilings`.

pub mod capability;
mod ceilings;
pub mod chunks;
pub mod context;
mod coop_probe;
pub mod device;
pub mod options;
pub mod pipelines;
mod probe;
pub mod readback;
pub mod runner;
pub mod storage;
pub mod timestamps;
pub mod tune;

pub use context::{AdapterChoice, GpuContext};
pub use device::GpuDevice;
pub use options::{GpuOptions, ShaderChecks};
pub use storage::StorageMode;

use super::{Backend, BackendKind, Ceilings, DeviceInfo, PreparedOp, TuningRecord};
use crate::error::Result;
use crate::gpu_monitor::GpuMonitor;
use crate::ops::op::Inputs;
use crate::precision::Precision;
use crate::workload::Workload;
use tune::tuner::Tuner;

/// A wgpu adapter as a backend.
pub struct GpuBackend {
    gpu: GpuDevice,
    /// The driver's view of this GPU (NVIDIA, AMD, Intel), for clocks and energy.
    monitor: Option<GpuMonitor>,
}

impl GpuBackend {
    /// Wraps an open device.
    pub fn new(mut ctx: GpuContext, options: GpuOptions) -> Self {
        if let Some(period) = options.timestamp_period_ns {
            ctx.timestamp_period_ns = period;
        }
        let monitor = GpuMonitor::open(&ctx.info);
        GpuBackend {
            gpu: GpuDevice {
                ctx,
                options,
                tuner: Tuner::new(None),
            },
            monitor,
        }
    }

    /// Keeps tuning results in the file `path` (see [`tune::cache`]): a
    /// later backend on the same adapter, code and options reuses them.
    pub fn with_tuning_cache(mut self, path: Option<std::path::PathBuf>) -> Self {
        self.gpu.tuner = Tuner::new(path);
        self
    }

    /// Opens the adapter `choice` names.
    pub fn open(choice: &AdapterChoice, options: GpuOptions) -> Result<Self> {
        Ok(Self::new(GpuContext::open(choice)?, options))
    }

    /// The device this backend runs on.
    pub fn context(&self) -> &GpuContext {
        &self.gpu.ctx
    }

    /// The device as the ops see it (context, options, tuner).
    pub fn gpu(&self) -> &GpuDevice {
        &self.gpu
    }

    /// The largest buffer one binding may cover here.
    pub fn binding_limit(&self) -> u64 {
        self.gpu.binding_limit()
    }

    /// The storage mode `precision` runs in on this device.
    pub fn storage_mode(&self, precision: Precision) -> StorageMode {
        self.gpu.storage_mode(precision)
    }
}

impl Backend for GpuBackend {
    fn monitor(&self) -> Option<&GpuMonitor> {
        self.monitor.as_ref()
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Gpu
    }

    fn device(&self) -> &DeviceInfo {
        &self.gpu.ctx.info
    }

    fn describe(&self, work: &Workload) -> String {
        work.params.gpu_kernel(&self.gpu, work.precision)
    }

    fn autotuning(&self) -> Vec<TuningRecord> {
        self.gpu.tuner.records()
    }

    fn probe_ceilings(&self) -> Result<Ceilings> {
        let ctx = &self.gpu.ctx;
        ctx.scoped("probing the device's ceilings", || {
            ceilings::probe(ctx, self.binding_limit())
        })
    }

    fn prepare<'a>(
        &'a self,
        work: &Workload,
        inputs: &'a Inputs,
    ) -> Result<Box<dyn PreparedOp + 'a>> {
        self.gpu.check_lost()?;
        work.params.gpu(&self.gpu, work.precision, inputs)
    }
}

//! One open GPU as the ops see it: its context (device, queue, limits,
//! pipeline cache), the backend's options and the autotuner's memory, with
//! what every op's GPU plan asks of them: the binding limit, the storage mode
//! of a precision, the tuning cache's key, and building a [`Program`] into a
//! runnable [`GpuRun`].

use super::context::GpuContext;
use super::options::GpuOptions;
use super::runner::{GpuRun, Program};
use super::storage::StorageMode;
use super::tune::cache::CacheKey;
use super::tune::tuner::Tuner;
use crate::error::{LabError, Result};
use crate::precision::Precision;

/// An open GPU, the options its points run with, and what it has tuned.
pub struct GpuDevice {
    /// The device, its queue, features and limits.
    pub ctx: GpuContext,
    /// How points run here.
    pub options: GpuOptions,
    /// What was tuned on this device (and its cache file).
    pub tuner: Tuner,
}

impl GpuDevice {
    /// The largest buffer one binding may cover here, in whole words (so a
    /// chunk's rounded size never crosses it).
    pub fn binding_limit(&self) -> u64 {
        let l = &self.ctx.limits;
        let device = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
        let limit = self
            .options
            .max_binding_bytes
            .map_or(device, |o| o.min(device));
        limit / 4 * 4
    }

    /// Workgroups a dispatch may have along one dimension.
    pub fn max_groups(&self) -> u32 {
        self.ctx.limits.max_compute_workgroups_per_dimension
    }

    /// The storage mode `precision` runs in on this device.
    pub fn storage_mode(&self, precision: Precision) -> StorageMode {
        StorageMode::for_precision(
            precision,
            self.ctx.features.contains(wgpu::Features::SHADER_F16),
            self.options.force_packed_f16,
        )
    }

    /// The key of a tuning in the cache file: this adapter and these
    /// options, and what the op says the tuning depends on.
    pub fn cache_key(
        &self,
        op: &str,
        mode: StorageMode,
        class: &str,
        f16_accumulate: bool,
        checksum: String,
    ) -> CacheKey {
        let i = &self.ctx.info;
        CacheKey {
            op: op.into(),
            adapter: i.name.clone(),
            api: i.api.clone(),
            driver: i.driver.clone(),
            storage: mode.name().into(),
            shape_class: class.into(),
            f16_accumulate,
            shader_checks: self.options.shader_checks.name().into(),
            checksum,
        }
    }

    /// Fails when the device is lost (delivering any pending device-lost
    /// callback first): a lost device runs nothing until it is reopened.
    pub fn check_lost(&self) -> Result<()> {
        let _ = self.ctx.device.poll(wgpu::PollType::Poll);
        match self.ctx.lost_reason() {
            Some(reason) => Err(LabError::DeviceLost(reason)),
            None => Ok(()),
        }
    }

    /// `program` built on this device and loaded, inside an error scope
    /// named `what`: a device error names what was being prepared.
    pub fn build<'a>(&'a self, what: &str, program: Program<'a>) -> Result<GpuRun<'a>> {
        self.ctx.scoped(what, || GpuRun::new(&self.ctx, program))
    }
}

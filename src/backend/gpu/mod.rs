//! The GPU backend: wgpu compute pipelines for the embedding gather and the
//! matmul, on whichever adapter the [`GpuContext`] opened.
//!
//! A point's route is straight: [`GpuBackend::plan`] decides everything about
//! how it runs (storage mode, chunks, gather, matmul configuration — forced,
//! or asked of the [`autotune::Tuner`] once), then [`op::GpuOp`] builds that
//! plan and describes itself from it. Around this facade: `chunks` (splitting
//! points larger than one binding), `support` (what the device can run),
//! `pipelines` (compiled once per device), `shaders` (WGSL assembly),
//! `timestamps` and `readback`.

pub mod autotune;
mod ceilings;
pub mod chunks;
pub mod context;
mod coop_probe;
mod op;
mod options;
pub mod pipelines;
pub mod plan;
pub mod readback;
pub mod shaders;
pub mod support;
pub mod timestamps;

pub use autotune::{ShapeClass, Tuning};
pub use chunks::{buffer_bytes, plan_chunks, ChunkPlan};
pub use context::{AdapterChoice, GpuContext};
pub use options::{GpuOptions, ShaderChecks};
pub use plan::{Chosen, KernelPlan};
pub use shaders::{GatherVariant, MatmulFamily, MatmulVariant, StorageMode};
pub use support::Unsupported;

use autotune::cache::CacheKey;
use autotune::Tuner;

use super::{Backend, BackendKind, DeviceInfo, PreparedOp, TuningRecord};
use crate::error::{LabError, Result};
use crate::workload::{Inputs, Precision, Workload, DEFAULT_SEED};

/// A wgpu adapter as a backend.
pub struct GpuBackend {
    ctx: GpuContext,
    options: GpuOptions,
    tuner: Tuner,
    /// The driver's view of this GPU (NVIDIA, AMD, Intel), for clocks and energy.
    monitor: Option<crate::gpu_monitor::GpuMonitor>,
}

impl GpuBackend {
    /// Wraps an open device.
    pub fn new(mut ctx: GpuContext, options: GpuOptions) -> Self {
        if let Some(period) = options.timestamp_period_ns {
            ctx.timestamp_period_ns = period;
        }
        let monitor = crate::gpu_monitor::GpuMonitor::open(&ctx.info);
        GpuBackend {
            ctx,
            options,
            tuner: Tuner::new(None),
            monitor,
        }
    }

    /// Keeps tuning results in the file `path` (see [`autotune::cache`]): a
    /// later backend on the same adapter, code and options reuses them.
    pub fn with_tuning_cache(mut self, path: Option<std::path::PathBuf>) -> Self {
        self.tuner = Tuner::new(path);
        self
    }

    /// Opens the adapter `choice` names.
    pub fn open(choice: &AdapterChoice, options: GpuOptions) -> Result<Self> {
        Ok(Self::new(GpuContext::open(choice)?, options))
    }

    /// The device this backend runs on.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The largest buffer one binding may cover here.
    pub fn binding_limit(&self) -> u64 {
        let l = &self.ctx.limits;
        let device = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
        // Whole words, so a chunk's rounded size never crosses it.
        let limit = self
            .options
            .max_binding_bytes
            .map_or(device, |o| o.min(device));
        limit / 4 * 4
    }

    /// The storage mode `work` runs in on this device.
    pub fn storage_mode(&self, work: &Workload) -> StorageMode {
        StorageMode::for_precision(
            work.precision,
            self.ctx.features.contains(wgpu::Features::SHADER_F16),
            self.options.force_packed_f16,
        )
    }

    /// `variant` fitted to this adapter: its subgroup width and cooperative fragment.
    pub fn fit(&self, variant: MatmulVariant) -> MatmulVariant {
        support::fit(&self.ctx, variant)
    }

    /// Why the cooperative-matrix kernel cannot run here, or `Ok` when it can.
    pub fn coop_status(&self) -> std::result::Result<(), Unsupported> {
        support::coop_status(&self.ctx)
    }

    /// Why `variant` cannot run in `mode` on this device, or `Ok` when it can.
    pub fn supports(
        &self,
        variant: MatmulVariant,
        mode: StorageMode,
    ) -> std::result::Result<(), Unsupported> {
        support::supports(&self.ctx, variant, mode)
    }

    /// The candidates autotuning tries in `mode` on this device.
    pub fn candidates(&self, mode: StorageMode) -> Vec<MatmulVariant> {
        support::candidates(&self.ctx, mode, self.accumulates_f16(mode))
    }

    /// What autotuning found so far, per storage mode and shape class, in a stable order.
    pub fn tunings(&self) -> Vec<(StorageMode, ShapeClass, Tuning)> {
        self.tuner.tunings()
    }

    /// Whether FP16 matmuls in `mode` accumulate in f16 here.
    fn accumulates_f16(&self, mode: StorageMode) -> bool {
        self.options.f16_accumulate && mode == StorageMode::F16
    }

    /// The chunks `work` is split into in `mode` on this device.
    fn chunks(&self, work: &Workload, mode: StorageMode) -> Result<ChunkPlan> {
        plan_chunks(
            work,
            mode,
            self.binding_limit(),
            self.ctx.limits.max_compute_workgroups_per_dimension,
        )
    }

    /// The forced matmul configuration, fitted to this adapter, if one was asked for.
    fn forced(&self, mode: StorageMode) -> Option<MatmulVariant> {
        self.options.matmul_variant.map(|v| {
            support::fit(&self.ctx, v)
                .with_f16_acc(self.accumulates_f16(mode) && v.family != MatmulFamily::Coop)
        })
    }

    /// The key of the tuning of `mode` and `class` in the cache file.
    fn cache_key(&self, mode: StorageMode, class: ShapeClass) -> CacheKey {
        let i = &self.ctx.info;
        CacheKey {
            adapter: i.name.clone(),
            api: i.api.clone(),
            driver: i.driver.clone(),
            storage: mode.name().into(),
            shape_class: class.name().into(),
            f16_accumulate: self.accumulates_f16(mode),
            shader_checks: self.options.shader_checks.name().into(),
            checksum: autotune::cache::checksum(),
        }
    }

    /// A cached configuration name as a configuration this device runs in `mode`.
    /// A cached entry is trusted only where it names one of the candidates
    /// this point would tune over (so never an f16-accumulating kernel for an
    /// f32-accumulating point): a hand-edited or foreign entry is re-tuned.
    fn resolve(&self, mode: StorageMode, name: &str) -> Option<MatmulVariant> {
        let base = name.strip_suffix("-acc16").unwrap_or(name);
        let v = support::fit(&self.ctx, MatmulVariant::parse(base)?).with_f16_acc(base != name);
        (self.supports(v, mode).is_ok() && self.candidates(mode).contains(&v)).then_some(v)
    }

    /// Decides how `work` runs here, before any buffer exists: storage mode,
    /// chunks, and for ops with a weight the matmul configuration — the forced
    /// one, or the tuner's choice for the output's shape class (tuned at most
    /// once per storage mode and class, then remembered).
    pub fn plan(&self, work: &Workload) -> Result<KernelPlan> {
        let mode = self.storage_mode(work);
        let chunks = self.chunks(work, mode)?;
        let matmul = if work.op.uses_weight() {
            Some(self.choose_matmul(mode, work.precision, work.mkn())?)
        } else {
            None
        };
        Ok(KernelPlan::new(
            *work,
            mode,
            chunks,
            matmul,
            self.options.shader_checks,
        ))
    }

    /// The matmul configuration for an `m` x `k` by `k` x `n` product in `mode`.
    fn choose_matmul(
        &self,
        mode: StorageMode,
        precision: Precision,
        (m, k, n): (u64, u64, u64),
    ) -> Result<(MatmulVariant, Chosen)> {
        if let Some(v) = self.forced(mode) {
            self.supports(v, mode)?;
            return Ok((v, Chosen::Forced));
        }
        let class = ShapeClass::of(m, n, k);
        let choice = self.tuner.choose(
            mode,
            class,
            &self.cache_key(mode, class),
            |name| self.resolve(mode, name),
            || self.tune(mode, precision, class),
        )?;
        Ok((
            choice.variant,
            Chosen::Autotuned {
                cached: choice.cached,
            },
        ))
    }

    /// Times every candidate in `mode` on the tuning shape of `class`.
    fn tune(&self, mode: StorageMode, precision: Precision, class: ShapeClass) -> Result<Tuning> {
        // A tuning shape whose weight fits one binding (halved until it does),
        // so candidates are timed on whole-weight dispatches.
        let work = autotune::tuning_workload(class, self.ctx.info.software, precision, |w| {
            self.chunks(w, mode)
                .is_ok_and(|c| c.weight_block_cols == w.mkn().2)
        })?;
        let chunks = self.chunks(&work, mode)?;
        let inputs = Inputs::generate(&work, DEFAULT_SEED);
        let trusted = self.options.shader_checks;
        autotune::tune(self.candidates(mode), &work, &inputs, |variant| {
            let plan =
                KernelPlan::new(work, mode, chunks, Some((variant, Chosen::Forced)), trusted);
            let what = format!("autotuning {}", variant.name());
            let op = self
                .ctx
                .scoped(&what, || op::GpuOp::new(&self.ctx, plan, &inputs))?;
            Ok(Box::new(op) as Box<dyn PreparedOp + '_>)
        })
    }
}

impl Backend for GpuBackend {
    fn monitor(&self) -> Option<&crate::gpu_monitor::GpuMonitor> {
        self.monitor.as_ref()
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Gpu
    }

    fn device(&self) -> &DeviceInfo {
        &self.ctx.info
    }

    fn describe(&self, work: &Workload) -> String {
        let mode = self.storage_mode(work);
        let matmul = if !work.op.uses_weight() {
            None
        } else if let Some(v) = self.forced(mode) {
            Some((v, Chosen::Forced))
        } else {
            // Only a choice already made (or cached) names the point: no tuning.
            let (m, k, n) = work.mkn();
            let class = ShapeClass::of(m, n, k);
            let key = self.cache_key(mode, class);
            match self
                .tuner
                .known(mode, class, &key, |n| self.resolve(mode, n))
            {
                Some(Ok(c)) => Some((c.variant, Chosen::Autotuned { cached: c.cached })),
                _ => None,
            }
        };
        plan::name(work, mode, matmul, self.options.shader_checks)
    }

    fn autotuning(&self) -> Vec<TuningRecord> {
        self.tuner.records()
    }

    fn probe_ceilings(&self) -> Result<crate::backend::Ceilings> {
        self.ctx.scoped("probing the device's ceilings", || {
            ceilings::probe(&self.ctx, self.binding_limit())
        })
    }

    fn prepare<'a>(
        &'a self,
        work: &Workload,
        inputs: &'a Inputs,
    ) -> Result<Box<dyn PreparedOp + 'a>> {
        // Deliver any pending device-lost callback before trusting the device.
        let _ = self.ctx.device.poll(wgpu::PollType::Poll);
        if let Some(reason) = self.ctx.lost_reason() {
            return Err(LabError::DeviceLost(reason));
        }
        let t = std::time::Instant::now();
        let mut plan = self.plan(work)?;
        plan.bounds_guard = self.options.bounds_guard;
        let planning_ns = t.elapsed().as_nanos() as u64;
        let what = format!("preparing {} {}", work.op, plan.mode.name());
        let mut op = self
            .ctx
            .scoped(&what, || op::GpuOp::new(&self.ctx, plan, inputs))?;
        op.costs.planning_ns = planning_ns;
        Ok(Box::new(op))
    }
}

//! The GPU backend: wgpu compute pipelines for the embedding gather and the tiled
//! matmul, on whichever adapter the [`GpuContext`] opened.
//!
//! Points larger than one storage binding (lavapipe allows 128 MiB) are split
//! into row chunks, each with its own buffers; every chunk is dispatched in the
//! same compute pass, so a sample still covers the whole op.

mod ceilings;
pub mod context;
mod kernel;
pub mod readback;
pub mod shaders;
pub mod timestamps;
pub mod tuning_cache;

pub use context::{AdapterChoice, GpuContext};
pub use shaders::{GatherVariant, MatmulFamily, MatmulVariant, StorageMode};

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Backend, BackendKind, DeviceInfo, Kernel};
use crate::error::{LabError, Result};
use crate::workload::{Inputs, Op, Workload};

/// Knobs of the GPU backend that tests and experts turn.
#[derive(Clone, Copy, Debug, Default)]
pub struct GpuOptions {
    /// Use packed-u32 FP16 storage even where SHADER_F16 exists (to test that path).
    pub force_packed_f16: bool,
    /// Treat the storage-binding limit as this many bytes when smaller than the
    /// device's (to test chunking on small shapes).
    pub max_binding_bytes: Option<u64>,
    /// Use this matmul kernel instead of autotuning.
    pub matmul_variant: Option<MatmulVariant>,
    /// Accumulate FP16 matmuls in f16 (where SHADER_F16 exists): a labelled
    /// choice, verified against its own tolerance.
    pub f16_accumulate: bool,
    /// Build the matmul kernels without wgpu's runtime bounds checks (they bound
    /// every access themselves); the gather stays checked, since its row index
    /// comes from data.
    pub trusted_shaders: bool,
}

/// A wgpu adapter as a backend.
pub struct GpuBackend {
    ctx: GpuContext,
    options: GpuOptions,
    /// The matmul variant autotuning chose per storage mode and shape class, for this adapter.
    tuned: Mutex<HashMap<(StorageMode, ShapeClass), Tuning>>,
    /// Where tuning results persist between runs, if anywhere.
    tuning_cache: Option<std::path::PathBuf>,
}

/// Matmul shapes the autotuner tells apart: the best tile for a few hundred
/// outputs is not the best for millions (too few workgroups to fill the
/// device), and a long inner dimension favours kernels that reuse each load
/// over many FMAs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShapeClass {
    /// Fewer than 2^20 outputs (M x N), K below 512.
    Small,
    /// Fewer than 2^20 outputs, K of 512 or more (decode-like: few rows, wide model).
    SmallDeep,
    /// 2^20 outputs or more, K below 512.
    Large,
    /// 2^20 outputs or more, K of 512 or more.
    LargeDeep,
}

impl ShapeClass {
    /// The class of an M x N output with inner size K.
    pub fn of(m: u64, n: u64, k: u64) -> Self {
        match (m * n < 1 << 20, k < 512) {
            (true, true) => ShapeClass::Small,
            (true, false) => ShapeClass::SmallDeep,
            (false, true) => ShapeClass::Large,
            (false, false) => ShapeClass::LargeDeep,
        }
    }

    /// A short name for records.
    pub fn name(self) -> &'static str {
        match self {
            ShapeClass::Small => "small",
            ShapeClass::SmallDeep => "small-deep",
            ShapeClass::Large => "large",
            ShapeClass::LargeDeep => "large-deep",
        }
    }

    /// The shape (batch, seq, dim) every candidate is timed on: M = batch*seq
    /// rows, K = N = dim, inside the class. A software device gets smaller
    /// shapes, so that tuning takes seconds there too.
    fn tuning_shape(self, software: bool) -> (u32, u32, u32) {
        match (self, software) {
            (ShapeClass::Small, _) => (1, 256, 256),
            (ShapeClass::SmallDeep, true) => (1, 64, 1024),
            (ShapeClass::SmallDeep, false) => (1, 128, 4096),
            (ShapeClass::Large, true) => (1, 4096, 256),
            (ShapeClass::Large, false) => (1, 8192, 256),
            (ShapeClass::LargeDeep, true) => (1, 1024, 1024),
            (ShapeClass::LargeDeep, false) => (1, 2048, 2048),
        }
    }
}

/// What autotuning measured for one storage mode and shape class.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// The fastest verified variant.
    pub chosen: MatmulVariant,
    /// Median milliseconds of each verified variant on the tuning shape.
    pub timings_ms: Vec<(MatmulVariant, f64)>,
    /// Candidates left out, and why (failed to build or run, or to verify).
    pub rejected: Vec<(MatmulVariant, String)>,
    /// Whether this came from the tuning cache file instead of being measured now.
    pub cached: bool,
}

/// A tuning result as results.json and the cache file record it.
fn tuning_json(mode: StorageMode, class: ShapeClass, t: &Tuning) -> serde_json::Value {
    let timings: serde_json::Map<String, serde_json::Value> = t
        .timings_ms
        .iter()
        .map(|(v, ms)| (v.name(), serde_json::json!(ms)))
        .collect();
    let rejected: serde_json::Map<String, serde_json::Value> = t
        .rejected
        .iter()
        .map(|(v, why)| (v.name(), serde_json::json!(why)))
        .collect();
    serde_json::json!({
        "storage": mode.name(),
        "shape_class": class.name(),
        "chosen": t.chosen.name(),
        "median_ms": timings,
        "rejected": rejected,
        "cached": t.cached,
    })
}

/// How the activation rows of a point are split to fit the binding limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkPlan {
    /// Rows in every chunk but possibly the last.
    pub rows_per_chunk: u64,
    /// Number of chunks.
    pub chunks: u64,
}

/// Bytes a buffer of `elems` elements takes in `mode`, rounded up to whole
/// 4-byte words (the copy and binding granularity).
pub fn buffer_bytes(mode: StorageMode, elems: u64) -> u64 {
    let raw = match mode {
        StorageMode::F32 => elems * 4,
        StorageMode::F16 | StorageMode::PackedF16 => elems * 2,
    };
    raw.div_ceil(4) * 4
}

/// Splits the rows of `work` so that every per-chunk buffer fits `limit` bytes
/// and every dispatch fits `max_groups` workgroups per dimension. Buffers that
/// cannot be split (the table, the weight) must fit whole.
pub fn plan_chunks(
    work: &Workload,
    mode: StorageMode,
    limit: u64,
    max_groups: u32,
) -> Result<ChunkPlan> {
    let (m, k, n) = work.mkn();
    let e = buffer_bytes(mode, 2) / 2;
    let ty = mode.name();
    if work.op.uses_table() {
        let needed = buffer_bytes(mode, work.shape.vocab as u64 * k);
        if needed > limit {
            return Err(LabError::Limit {
                what: format!("embedding table [{} x {k} {ty}]", work.shape.vocab),
                needed,
                limit_name: "max_storage_buffer_binding_size",
                limit,
            });
        }
    }
    if work.op.uses_weight() {
        let needed = buffer_bytes(mode, k * n);
        if needed > limit {
            return Err(LabError::Limit {
                what: format!("weight [{k} x {n} {ty}]"),
                needed,
                limit_name: "max_storage_buffer_binding_size",
                limit,
            });
        }
    }
    let stride = mode.padded_stride(n as u32) as u64;
    let mut row_bytes = stride * e;
    if work.op.uses_table() {
        row_bytes = row_bytes.max(4);
    }
    if work.op != Op::Embedding {
        row_bytes = row_bytes.max(mode.padded_stride(k as u32) as u64 * e);
    }
    let mut rows = limit / row_bytes;
    if rows == 0 {
        return Err(LabError::Limit {
            what: format!("one activation row [{k} {ty}]"),
            needed: row_bytes,
            limit_name: "max_storage_buffer_binding_size",
            limit,
        });
    }
    if work.op.uses_weight() {
        // The matmul grid has ceil(rows / tile) workgroups along y; plan for
        // the smallest tile of any variant.
        let tile = MatmulVariant::CANDIDATES
            .iter()
            .map(|v| v.tile().0)
            .min()
            .unwrap_or(1);
        rows = rows.min(tile as u64 * max_groups as u64);
    }
    let chunks = m.div_ceil(rows);
    // Even out the chunks rather than leave a small remainder.
    Ok(ChunkPlan {
        rows_per_chunk: m.div_ceil(chunks),
        chunks,
    })
}

impl GpuBackend {
    /// Wraps an open device.
    pub fn new(ctx: GpuContext, options: GpuOptions) -> Self {
        GpuBackend {
            ctx,
            options,
            tuned: Mutex::new(HashMap::new()),
            tuning_cache: None,
        }
    }

    /// Keeps tuning results in the file `path` (see tuning_cache.rs): a later
    /// backend on the same adapter, code and options reuses them.
    pub fn with_tuning_cache(mut self, path: Option<std::path::PathBuf>) -> Self {
        self.tuning_cache = path;
        self
    }

    /// The cache key of a tuning result in `mode` and `class` with these options.
    fn cache_key(&self, mode: StorageMode, class: ShapeClass) -> String {
        let i = &self.ctx.info;
        tuning_cache::key(
            &i.name,
            &i.api,
            &i.driver,
            &format!(
                "{} {} acc16={} trusted={}",
                mode.name(),
                class.name(),
                self.accumulates_f16(mode),
                self.options.trusted_shaders
            ),
        )
    }

    /// A tuning result from the cache file, if it holds one this build can use.
    fn cached_tuning(&self, mode: StorageMode, class: ShapeClass) -> Option<Tuning> {
        let path = self.tuning_cache.as_ref()?;
        let entry = tuning_cache::get(path, &self.cache_key(mode, class))?;
        let variant = |name: &str| {
            let base = name.strip_suffix("-acc16").unwrap_or(name);
            MatmulVariant::parse(base).map(|v| {
                v.for_adapter(self.subgroup_max())
                    .with_f16_acc(base != name)
            })
        };
        let chosen = variant(entry.get("chosen")?.as_str()?)?;
        self.supports(chosen, mode).ok()?;
        let timings_ms = entry
            .get("median_ms")?
            .as_object()?
            .iter()
            .filter_map(|(n, ms)| Some((variant(n)?, ms.as_f64()?)))
            .collect();
        Some(Tuning {
            chosen,
            timings_ms,
            rejected: Vec::new(),
            cached: true,
        })
    }

    /// The subgroup width the subgroup and coop kernels size their workgroups by.
    fn subgroup_max(&self) -> u32 {
        self.ctx.adapter.get_info().subgroup_max_size.max(1)
    }

    /// Why the cooperative-matrix kernel cannot run here, or `Ok` when it can:
    /// it needs EXPERIMENTAL_COOPERATIVE_MATRIX with a 16x16x16 f16 x f16 -> f32
    /// configuration, and SHADER_F16.
    pub fn coop_status(&self) -> std::result::Result<(), String> {
        if !self
            .ctx
            .features
            .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
        {
            return Err(format!(
                "{} does not offer EXPERIMENTAL_COOPERATIVE_MATRIX",
                self.ctx.info.name
            ));
        }
        if !self.ctx.features.contains(wgpu::Features::SHADER_F16) {
            return Err(format!("{} lacks SHADER_F16", self.ctx.info.name));
        }
        let props = self.ctx.adapter.cooperative_matrix_properties();
        let fits = |p: &wgpu::CooperativeMatrixProperties| {
            (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        };
        if props.iter().any(fits) {
            Ok(())
        } else {
            let offered: Vec<String> = props
                .iter()
                .map(|p| {
                    format!(
                        "{}x{}x{} {:?}->{:?}",
                        p.m_size, p.n_size, p.k_size, p.ab_type, p.cr_type
                    )
                })
                .collect();
            Err(format!(
                "{} offers no 16x16x16 f16->f32 cooperative matrix (offers: {})",
                self.ctx.info.name,
                if offered.is_empty() {
                    "none".to_string()
                } else {
                    offered.join(", ")
                }
            ))
        }
    }

    /// Why `variant` cannot run in `mode` on this device, or `Ok` when it can.
    pub fn supports(
        &self,
        variant: MatmulVariant,
        mode: StorageMode,
    ) -> std::result::Result<(), String> {
        let missing = variant.required_features() - self.ctx.features;
        if !missing.is_empty() {
            return Err(format!(
                "{} needs {:?}, which {} lacks",
                variant.name(),
                missing,
                self.ctx.info.name
            ));
        }
        if variant.family == MatmulFamily::Coop {
            self.coop_status()?;
            if mode != StorageMode::F16 {
                return Err(format!(
                    "{} takes FP16 inputs in f16 storage, not {}",
                    variant.name(),
                    mode.name()
                ));
            }
        }
        let l = &self.ctx.limits;
        let checks = [
            (
                variant.wg_x,
                l.max_compute_workgroup_size_x,
                "max_compute_workgroup_size_x",
            ),
            (
                variant.wg_y,
                l.max_compute_workgroup_size_y,
                "max_compute_workgroup_size_y",
            ),
            (
                variant.invocations(),
                l.max_compute_invocations_per_workgroup,
                "max_compute_invocations_per_workgroup",
            ),
            (
                variant.workgroup_bytes(),
                l.max_compute_workgroup_storage_size,
                "max_compute_workgroup_storage_size",
            ),
        ];
        for (needed, limit, name) in checks {
            if needed > limit {
                return Err(format!(
                    "{} needs {needed}, over the device limit {name} = {limit}",
                    variant.name()
                ));
            }
        }
        Ok(())
    }

    /// Whether FP16 matmuls in `mode` accumulate in f16 here.
    fn accumulates_f16(&self, mode: StorageMode) -> bool {
        self.options.f16_accumulate && mode == StorageMode::F16
    }

    /// The candidates autotuning tries in `mode` on this device.
    pub fn candidates(&self, mode: StorageMode) -> Vec<MatmulVariant> {
        let acc16 = self.accumulates_f16(mode);
        MatmulVariant::CANDIDATES
            .into_iter()
            .map(|v| v.for_adapter(self.subgroup_max()).with_f16_acc(acc16))
            // The coop kernel accumulates in f32 by construction.
            .filter(|v| !(acc16 && v.family == MatmulFamily::Coop))
            .filter(|v| self.supports(*v, mode).is_ok())
            .collect()
    }

    /// The matmul variant for `mode` and an `m` x `k` by `k` x `n` product: the forced one,
    /// the cached choice, or the fastest variant that verifies on the tuning
    /// shape of the output's class (measured once per storage mode and class,
    /// then cached for this adapter).
    pub fn matmul_variant(
        &self,
        mode: StorageMode,
        precision: crate::workload::Precision,
        (m, k, n): (u64, u64, u64),
    ) -> Result<MatmulVariant> {
        if let Some(v) = self.options.matmul_variant {
            let v = v
                .for_adapter(self.subgroup_max())
                .with_f16_acc(self.accumulates_f16(mode) && v.family != MatmulFamily::Coop);
            self.supports(v, mode).map_err(LabError::Unsupported)?;
            return Ok(v);
        }
        let class = ShapeClass::of(m, n, k);
        if let Some(t) = self
            .tuned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(mode, class))
        {
            return Ok(t.chosen);
        }
        if let Some(t) = self.cached_tuning(mode, class) {
            let chosen = t.chosen;
            self.tuned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((mode, class), t);
            return Ok(chosen);
        }
        // The tuning shape, its dim halved until its buffers fit this device's bindings.
        let (b, s, d) = class.tuning_shape(self.ctx.info.software);
        let fitting = |d: u32| -> Result<(Workload, ChunkPlan)> {
            let shape = crate::workload::Shape::new(b, s, d, 1)?;
            let work = Workload {
                op: Op::Matmul,
                precision,
                shape,
            };
            let max_groups = self.ctx.limits.max_compute_workgroups_per_dimension;
            Ok((
                work,
                plan_chunks(&work, mode, self.binding_limit(), max_groups)?,
            ))
        };
        let (work, plan) = std::iter::successors(Some(d), |&d| (d > 8).then_some(d / 2))
            .map(fitting)
            .find(|r| r.is_ok())
            .unwrap_or_else(|| fitting(8))?;
        let inputs = Inputs::generate(&work, crate::workload::DEFAULT_SEED);
        let mut timings: Vec<(MatmulVariant, f64)> = Vec::new();
        let mut rejected = Vec::new();
        for variant in self.candidates(mode) {
            // A candidate that fails to build or run, or computes wrong, is
            // left out with the reason; only a lost device stops the tuning.
            let best = timings.iter().map(|t| t.1).reduce(f64::min);
            match self.time_candidate(variant, work, mode, plan, &inputs, best) {
                Ok(ms) => timings.push((variant, ms)),
                Err(e @ LabError::DeviceLost(_)) => return Err(e),
                Err(e) => rejected.push((variant, e.to_string())),
            }
        }
        let chosen = timings
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|t| t.0)
            .ok_or_else(|| {
                let why: Vec<String> = rejected
                    .iter()
                    .map(|(v, e)| format!("{}: {e}", v.name()))
                    .collect();
                LabError::Gpu(format!(
                    "no matmul variant verified on the tuning shape ({})",
                    why.join("; ")
                ))
            })?;
        let tuning = Tuning {
            chosen,
            timings_ms: timings,
            rejected,
            cached: false,
        };
        if let Some(path) = &self.tuning_cache {
            let entry = tuning_json(mode, class, &tuning);
            if let Err(e) = tuning_cache::put(path, &self.cache_key(mode, class), entry) {
                eprintln!("note: tuning not cached in {}: {e}", path.display());
            }
        }
        self.tuned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((mode, class), tuning);
        Ok(chosen)
    }

    /// Builds `variant` for the tuning point, runs and verifies it, and returns
    /// the median of five timed runs in ms — or its first timed run alone when
    /// that is over twice the `best` median so far (it cannot win; on a slow
    /// device this is most of the tuning time saved).
    fn time_candidate(
        &self,
        variant: MatmulVariant,
        work: Workload,
        mode: StorageMode,
        plan: ChunkPlan,
        inputs: &Inputs,
        best: Option<f64>,
    ) -> Result<f64> {
        let mut k =
            self.build_kernel("autotuning the matmul", work, mode, plan, variant, inputs)?;
        k.run()?;
        let accuracy =
            crate::reference::verify_accumulated(&work, inputs, &k.output()?, k.accumulation());
        if !accuracy.verified {
            return Err(LabError::Gpu(format!(
                "failed verification: {}",
                accuracy.failure.unwrap_or_default()
            )));
        }
        let first = k.run()?.best_ns() as f64 * 1e-6;
        if best.is_some_and(|b| first > 2.0 * b) {
            return Ok(first);
        }
        let mut ms = vec![first];
        for _ in 0..4 {
            ms.push(k.run()?.best_ns() as f64 * 1e-6);
        }
        ms.sort_by(f64::total_cmp);
        Ok(ms[2])
    }

    /// Whether the choice for `mode` and `class` came from the tuning cache file.
    fn tuned_from_cache(&self, mode: StorageMode, class: ShapeClass) -> bool {
        self.tuned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(mode, class))
            .is_some_and(|t| t.cached)
    }

    /// Builds the kernel for `work` with `variant`, GPU errors caught as `what`.
    fn build_kernel<'a>(
        &'a self,
        what: &str,
        work: Workload,
        mode: StorageMode,
        plan: ChunkPlan,
        variant: MatmulVariant,
        inputs: &'a Inputs,
    ) -> Result<kernel::GpuKernel<'a>> {
        self.ctx.scoped(what, || {
            kernel::GpuKernel::new(
                &self.ctx,
                work,
                mode,
                plan,
                variant,
                self.options.trusted_shaders,
                inputs,
            )
        })
    }

    /// What autotuning found so far, per storage mode and shape class, in a stable order.
    pub fn tunings(&self) -> Vec<(StorageMode, ShapeClass, Tuning)> {
        let map = self.tuned.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = map.iter().map(|(k, t)| (k.0, k.1, t.clone())).collect();
        all.sort_by_key(|(m, c, _)| (m.name(), *c));
        all
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
}

impl Backend for GpuBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Gpu
    }

    fn device(&self) -> &DeviceInfo {
        &self.ctx.info
    }

    fn kernel_name(&self, work: &Workload) -> String {
        let mode = self.storage_mode(work);
        let (m, k, n) = work.mkn();
        // The row stride of a is k, or k padded to even (== k when k % 4 == 0).
        let vec4 = |v: MatmulVariant| {
            if v.vec4_loads(k as u32, n as u32, k as u32) {
                " vec4-loads"
            } else {
                ""
            }
        };
        let matmul = || match self.matmul_variant(mode, work.precision, (m, k, n)) {
            Ok(v) if self.options.matmul_variant.is_some() => format!("{}{}", v.name(), vec4(v)),
            Ok(v) => {
                let how = if self.tuned_from_cache(mode, ShapeClass::of(m, n, k)) {
                    "autotuned, cached"
                } else {
                    "autotuned"
                };
                format!("{}{} ({how})", v.name(), vec4(v))
            }
            Err(e) => format!("matmul ({e})"),
        };
        let gather = GatherVariant::for_row(mode, work.shape.dim).name();
        let trusted = if self.options.trusted_shaders {
            " trusted"
        } else {
            ""
        };
        let matmul = || format!("{}{trusted}", matmul());
        let mode = mode.name();
        match work.op {
            Op::Embedding => format!("wgsl-{gather} {mode}"),
            Op::Matmul => format!("wgsl-{} {mode}", matmul()),
            Op::EmbedProject => format!("wgsl-{gather}+{} {mode}", matmul()),
        }
    }

    fn autotuning(&self) -> Vec<serde_json::Value> {
        self.tunings()
            .into_iter()
            .map(|(mode, class, t)| tuning_json(mode, class, &t))
            .collect()
    }

    fn probe_ceilings(&self) -> Result<crate::backend::Ceilings> {
        self.ctx.scoped("probing the device's ceilings", || {
            ceilings::probe(&self.ctx, self.binding_limit())
        })
    }

    fn prepare<'a>(&'a self, work: &Workload, inputs: &'a Inputs) -> Result<Box<dyn Kernel + 'a>> {
        // Deliver any pending device-lost callback before trusting the device.
        let _ = self.ctx.device.poll(wgpu::PollType::Poll);
        if let Some(reason) = self.ctx.lost_reason() {
            return Err(LabError::DeviceLost(reason));
        }
        let mode = self.storage_mode(work);
        // Tuned once per storage mode (normally already by `kernel_name`, before
        // the cold-start timer), so tuning never counts as preparation.
        let variant = if work.op.uses_weight() {
            self.matmul_variant(mode, work.precision, work.mkn())?
        } else {
            MatmulVariant::TILED
        };
        let plan = plan_chunks(
            work,
            mode,
            self.binding_limit(),
            self.ctx.limits.max_compute_workgroups_per_dimension,
        )?;
        let what = format!("preparing {} {}", work.op, mode.name());
        let kernel = self.build_kernel(&what, *work, mode, plan, variant, inputs)?;
        Ok(Box::new(kernel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Precision, Shape};

    fn work(op: Op, b: u32, s: u32, d: u32, v: u32) -> Workload {
        Workload {
            op,
            precision: Precision::F32,
            shape: Shape::new(b, s, d, v).unwrap(),
        }
    }

    #[test]
    fn every_tuning_shape_lies_in_its_class() {
        for class in [
            ShapeClass::Small,
            ShapeClass::SmallDeep,
            ShapeClass::Large,
            ShapeClass::LargeDeep,
        ] {
            for software in [false, true] {
                let (b, s, d) = class.tuning_shape(software);
                let m = b as u64 * s as u64;
                assert_eq!(ShapeClass::of(m, d as u64, d as u64), class, "{software}");
            }
        }
    }

    #[test]
    fn seed_largest_point_splits_under_lavapipe_limit() {
        let w = work(Op::Matmul, 64, 1024, 1024, 1);
        let plan = plan_chunks(&w, StorageMode::F32, 128 << 20, 65535).unwrap();
        assert_eq!(plan.chunks, 2);
        assert_eq!(plan.rows_per_chunk, 32768);
    }

    #[test]
    fn small_points_are_one_chunk() {
        let w = work(Op::EmbedProject, 3, 77, 100, 1000);
        let plan = plan_chunks(&w, StorageMode::PackedF16, 128 << 20, 65535).unwrap();
        assert_eq!(
            plan,
            ChunkPlan {
                rows_per_chunk: 231,
                chunks: 1
            }
        );
    }

    #[test]
    fn a_table_over_the_limit_names_the_numbers() {
        let w = work(Op::Embedding, 1, 1, 1024, 32000);
        let err = plan_chunks(&w, StorageMode::F32, 64 << 20, 65535)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("embedding table")
                && err.contains("131072000")
                && err.contains("67108864"),
            "{err}"
        );
    }
}

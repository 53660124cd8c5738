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

pub use context::{AdapterChoice, GpuContext};
pub use shaders::{GatherVariant, MatmulVariant, StorageMode};

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
    /// Build the matmul kernels without wgpu's runtime bounds checks (they bound
    /// every access themselves); the gather stays checked, since its row index
    /// comes from data.
    pub trusted_shaders: bool,
}

/// A wgpu adapter as a backend.
pub struct GpuBackend {
    ctx: GpuContext,
    options: GpuOptions,
    /// The matmul variant autotuning chose per storage mode, for this adapter.
    tuned: Mutex<HashMap<StorageMode, Tuning>>,
}

/// What autotuning measured for one storage mode.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// The fastest verified variant.
    pub chosen: MatmulVariant,
    /// Median milliseconds of each verified variant on the tuning shape.
    pub timings_ms: Vec<(MatmulVariant, f64)>,
}

/// The shape every variant is timed on (batch, seq, dim): large enough to fill a
/// GPU for a few microseconds, small enough to take well under a second on a
/// software device. The dim shrinks where a binding limit demands it.
const TUNING_SHAPE: (u32, u32, u32) = (1, 512, 256);

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
        let tile = MatmulVariant::ALL
            .iter()
            .map(|v| v.tile())
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
        }
    }

    /// The matmul variant for `mode`: the forced one, the cached choice, or
    /// the fastest variant that verifies on the tuning shape (measured once per
    /// storage mode and backend, then cached).
    pub fn matmul_variant(
        &self,
        mode: StorageMode,
        precision: crate::workload::Precision,
    ) -> Result<MatmulVariant> {
        if let Some(v) = self.options.matmul_variant {
            return Ok(v);
        }
        if let Some(t) = self
            .tuned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&mode)
        {
            return Ok(t.chosen);
        }
        // The tuning shape, its dim halved until its buffers fit this device's bindings.
        let (b, s, d) = TUNING_SHAPE;
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
        let mut timings = Vec::new();
        for variant in MatmulVariant::ALL {
            let mut k = self.ctx.scoped("autotuning the matmul", || {
                kernel::GpuKernel::new(
                    &self.ctx,
                    work,
                    mode,
                    plan,
                    variant,
                    self.options.trusted_shaders,
                    &inputs,
                )
            })?;
            k.run()?;
            if !crate::reference::verify(&work, &inputs, &k.output()?).verified {
                continue; // a variant that computes wrong never wins
            }
            let mut ns: Vec<u64> = (0..5)
                .map(|_| k.run().map(|s| s.best_ns()))
                .collect::<Result<_>>()?;
            ns.sort_unstable();
            timings.push((variant, ns[2] as f64 * 1e-6));
        }
        let chosen = timings
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|t| t.0)
            .ok_or_else(|| {
                LabError::Gpu("no matmul variant verified on the tuning shape".into())
            })?;
        self.tuned.lock().unwrap_or_else(|p| p.into_inner()).insert(
            mode,
            Tuning {
                chosen,
                timings_ms: timings,
            },
        );
        Ok(chosen)
    }

    /// What autotuning found so far, per storage mode.
    pub fn tunings(&self) -> Vec<(StorageMode, Tuning)> {
        let map = self.tuned.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(m, t)| (*m, t.clone())).collect()
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
        let matmul = || match self.matmul_variant(mode, work.precision) {
            Ok(v) if self.options.matmul_variant.is_some() => v.name().to_string(),
            Ok(v) => format!("{} (autotuned)", v.name()),
            Err(_) => "matmul (no variant verified)".to_string(),
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
            self.matmul_variant(mode, work.precision)?
        } else {
            MatmulVariant::Tiled
        };
        let plan = plan_chunks(
            work,
            mode,
            self.binding_limit(),
            self.ctx.limits.max_compute_workgroups_per_dimension,
        )?;
        let kernel = self
            .ctx
            .scoped(&format!("preparing {} {}", work.op, mode.name()), || {
                kernel::GpuKernel::new(
                    &self.ctx,
                    *work,
                    mode,
                    plan,
                    variant,
                    self.options.trusted_shaders,
                    inputs,
                )
            })?;
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

//! The projection on the GPU: every decision about how a point runs — storage
//! mode, row chunks and weight column blocks, the configuration (forced, or
//! the autotuner's choice for the output's shape class), vector loads, row
//! strides — made once, before any buffer exists ([`Plan`]); the program the
//! runner builds from it (the weight's column blocks, each chunk's rows, one
//! dispatch per block and chunk); and the record's `kernel`, which is the
//! plan describing itself, so the label can never drift from what runs.
//! Embed-project reuses the pieces.

use std::cell::OnceCell;
use std::rc::Rc;
use std::time::Instant;

use bytemuck::{Pod, Zeroable};

use super::classes::ShapeClass;
use super::inputs::{self, Tensors};
use super::kernels::{with_bounds_guard, MatmulFamily, MatmulVariant};
use super::params::Params;
use super::quantize::{quantize_weight, QuantizedWeight};
use super::reference::{Activations, Projection};
use super::support;
use crate::backend::gpu::chunks::{block_units, blocks, split_rows, RowChunks};
use crate::backend::gpu::device::GpuDevice;
use crate::backend::gpu::options::ShaderChecks;
use crate::backend::gpu::pipelines::Compiled;
use crate::backend::gpu::runner::{buffer_bytes, Buffer, Dispatch, Fill, OutputRows, Program};
use crate::backend::gpu::storage::{encode, StorageMode};
use crate::backend::gpu::tune::cache::checksum;
use crate::backend::gpu::tune::timing::tune;
use crate::backend::gpu::tune::tuner::{Candidate, TuneKey, Tuning};
use crate::data::{Data, DEFAULT_SEED};
use crate::error::Result;
use crate::ops::op::Inputs;
use crate::precision::Precision;
use crate::prepared_op::{Accumulation, OneTimeCosts, PreparedOp};
use crate::verify::{verify_sampled, TUNING_SAMPLED_ROWS};

pub use super::support::{candidates, fit, supports};

/// The matmul kernels' uniform parameters (`Params` in `shaders/matmul/common.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    /// Row stride of a, elements.
    lda: u32,
    /// Row stride of y, elements.
    ldy: u32,
    /// First column of y this dispatch writes (its weight column block).
    y_col0: u32,
    _pad: [u32; 2],
}

/// How the configuration of a plan was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chosen {
    /// Named by the user (`--matmul-variant`).
    Forced,
    /// The autotuner's choice, measured in this run or read from its cache file.
    Autotuned {
        /// Read from the cache file.
        cached: bool,
    },
}

/// The projection of a plan: its configuration and how it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// The configuration.
    pub variant: MatmulVariant,
    /// How it was chosen.
    pub chosen: Chosen,
    /// Rows of a and b are read as 4-element words.
    pub vec4_loads: bool,
}

impl Kernel {
    /// `variant` reading a `k`-deep input of row stride `lda` into an
    /// `n`-wide output.
    pub fn new(variant: MatmulVariant, chosen: Chosen, k: u64, n: u64, lda: u32) -> Self {
        Kernel {
            variant,
            chosen,
            vec4_loads: variant.vec4_loads(k as u32, n as u32, lda),
        }
    }

    /// `tiled-64x64x16-4x4 vec4-loads (autotuned, cached)`: configuration,
    /// vector loads, how it was chosen.
    pub fn name(&self) -> String {
        let vec4 = if self.vec4_loads { " vec4-loads" } else { "" };
        let how = match self.chosen {
            Chosen::Forced => "",
            Chosen::Autotuned { cached: false } => " (autotuned)",
            Chosen::Autotuned { cached: true } => " (autotuned, cached)",
        };
        format!("{}{vec4}{how}", self.variant.name())
    }

    /// The pipeline, compiled (or from the device's cache), with the bounds
    /// guard's checked loads where `guarded`.
    pub fn pipeline(&self, gpu: &GpuDevice, mode: StorageMode, guarded: bool) -> Result<Compiled> {
        let v = self.variant;
        let mut source = v.source(mode, self.vec4_loads);
        if guarded {
            source = with_bounds_guard(&source, mode);
        }
        gpu.ctx
            .pipeline(&v.name(), source, &v.constants(), gpu.options.shader_checks)
    }

    /// How it accumulates.
    pub fn accumulation(&self) -> Accumulation {
        if self.variant.f16_acc {
            Accumulation::F16
        } else {
            Accumulation::F32
        }
    }
}

/// The name of an unplanned projection: no tuning is run to name a point.
pub const NOT_TUNED: &str = "matmul (not tuned yet)";

/// A projection's kernel label: the configuration's name (or
/// [`NOT_TUNED`]) and the runtime checks it is built with.
pub fn kernel_label(kernel: Option<Kernel>, checks: ShaderChecks) -> String {
    match kernel {
        Some(k) => format!("{}{}", k.name(), checks.label()),
        None => format!("{NOT_TUNED}{}", checks.label()),
    }
}

impl Candidate for MatmulVariant {
    fn name(&self) -> String {
        MatmulVariant::name(*self)
    }
}

/// Everything about how one GPU projection runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// How elements are stored.
    pub mode: StorageMode,
    /// The configuration.
    pub kernel: Kernel,
    /// Row stride (elements) of the output: N padded to whole words.
    pub ldy: u32,
    /// How rows are split across bindings.
    pub rows: RowChunks,
    /// Weight columns in every column block but possibly the last (N when
    /// the weight fits one binding); a multiple of 4 when there are several.
    pub weight_block_cols: u64,
}

/// Weight columns per block of a `k` x `n` weight in `mode` within `limit`:
/// all of them, else whole 4-column groups (so packed words and vec4 loads
/// never straddle blocks, and an INT8 block's values fill whole words).
pub fn weight_block_cols(mode: StorageMode, k: u64, n: u64, limit: u64) -> Result<u64> {
    block_units(
        n,
        mode.weight_bytes(k, n),
        mode.weight_bytes(k, 4),
        4,
        limit,
        || format!("four weight columns [{k} x 4 {}]", mode.name()),
    )
}

/// Rows a projection chunk may hold on `gpu`: the matmul grid has
/// ceil(rows / tile) workgroups along y; planned for the smallest tile of
/// any configuration.
pub fn max_rows(gpu: &GpuDevice) -> u64 {
    let tile = MatmulVariant::CANDIDATES
        .iter()
        .map(|v| v.tile().0)
        .min()
        .unwrap_or(1);
    tile as u64 * gpu.max_groups() as u64
}

/// The row chunks of an `m` x `k` by `k` x `n` projection in `mode`: the
/// activations (`lda` wide) and output rows of a chunk fit one binding.
pub fn row_chunks(
    gpu: &GpuDevice,
    mode: StorageMode,
    (m, k, n): (u64, u64, u64),
    lda: u32,
) -> Result<RowChunks> {
    let e = mode.element_bytes() as u64;
    let row_bytes = (mode.padded_stride(n as u32) as u64 * e).max(lda as u64 * e);
    split_rows(m, row_bytes, gpu.binding_limit(), max_rows(gpu), || {
        format!("one activation row [{k} {}]", mode.name())
    })
}

/// Whether FP16 products in `mode` accumulate in f16 on `gpu`.
fn accumulates_f16(gpu: &GpuDevice, mode: StorageMode) -> bool {
    gpu.options.f16_accumulate && mode == StorageMode::F16
}

/// The forced configuration, fitted to `gpu`, if one was asked for.
fn forced(gpu: &GpuDevice, mode: StorageMode) -> Option<MatmulVariant> {
    gpu.options.matmul_variant.map(|v| {
        support::fit(&gpu.ctx, v)
            .with_f16_acc(accumulates_f16(gpu, mode) && v.family != MatmulFamily::Coop)
    })
}

/// The candidates autotuning tries in `mode` on `gpu` (with f16
/// accumulation where the options ask for it).
pub fn tuning_candidates(gpu: &GpuDevice, mode: StorageMode) -> Vec<MatmulVariant> {
    support::candidates(&gpu.ctx, mode, accumulates_f16(gpu, mode))
}

/// A cached configuration's name as one `gpu` runs in `mode`. A name is
/// trusted only where it is one of the candidates this point would tune over
/// (so never an f16-accumulating kernel for an f32-accumulating point): a
/// hand-edited or foreign cache entry is re-tuned.
fn resolve(gpu: &GpuDevice, mode: StorageMode, name: &str) -> Option<MatmulVariant> {
    let base = name.strip_suffix("-acc16").unwrap_or(name);
    let v = support::fit(&gpu.ctx, MatmulVariant::parse(base)?).with_f16_acc(base != name);
    (support::supports(&gpu.ctx, v, mode).is_ok() && tuning_candidates(gpu, mode).contains(&v))
        .then_some(v)
}

/// The tuner's key of `class` in `mode`.
fn tune_key(mode: StorageMode, class: ShapeClass) -> TuneKey {
    TuneKey {
        op: super::params::NAME,
        storage: mode.name(),
        class: class as u8,
        class_name: class.name(),
    }
}

/// Everything a matmul tuning depends on in this build: the kernels'
/// sources and the candidate list.
fn sources_checksum() -> String {
    checksum(&[
        include_str!("../../../shaders/matmul/tiled.wgsl"),
        include_str!("../../../shaders/matmul/direct.wgsl"),
        include_str!("../../../shaders/matmul/subgroup.wgsl"),
        include_str!("../../../shaders/matmul/coop.wgsl"),
        include_str!("../../../shaders/matmul/common.wgsl"),
        &format!("{:?}", MatmulVariant::CANDIDATES),
    ])
}

/// The key of `class` in `mode` in the tuning cache file.
fn cache_key(
    gpu: &GpuDevice,
    mode: StorageMode,
    class: ShapeClass,
) -> crate::backend::gpu::tune::cache::CacheKey {
    gpu.cache_key(
        super::params::NAME,
        mode,
        class.name(),
        accumulates_f16(gpu, mode),
        sources_checksum(),
    )
}

/// The configuration of an `m` x `k` by `k` x `n` product in `mode` already
/// known on `gpu` (forced, tuned or cached), without tuning.
pub fn known(
    gpu: &GpuDevice,
    mode: StorageMode,
    (m, k, n): (u64, u64, u64),
) -> Option<(MatmulVariant, Chosen)> {
    if let Some(v) = forced(gpu, mode) {
        return Some((v, Chosen::Forced));
    }
    let class = ShapeClass::of(m, n, k);
    match gpu.tuner.known(
        tune_key(mode, class),
        &cache_key(gpu, mode, class),
        |name| resolve(gpu, mode, name),
    ) {
        Some(Ok(c)) => Some((c.variant, Chosen::Autotuned { cached: c.cached })),
        _ => None,
    }
}

/// The configuration for an `m` x `k` by `k` x `n` product in `mode`: the
/// forced one, or the tuner's choice for the output's shape class (tuned at
/// most once per storage mode and class on a device, then remembered).
pub fn choose(
    gpu: &GpuDevice,
    mode: StorageMode,
    precision: Precision,
    (m, k, n): (u64, u64, u64),
) -> Result<(MatmulVariant, Chosen)> {
    if let Some(v) = forced(gpu, mode) {
        support::supports(&gpu.ctx, v, mode)?;
        return Ok((v, Chosen::Forced));
    }
    let class = ShapeClass::of(m, n, k);
    let choice = gpu.tuner.choose(
        tune_key(mode, class),
        &cache_key(gpu, mode, class),
        |name| resolve(gpu, mode, name),
        || tune_class(gpu, mode, precision, class),
    )?;
    Ok((
        choice.variant,
        Chosen::Autotuned {
            cached: choice.cached,
        },
    ))
}

/// The projection `class` is tuned on at `precision`: its tuning shape, the
/// dim halved until `fits` accepts it (a device with small bindings).
pub fn tuning_params(
    class: ShapeClass,
    software: bool,
    fits: impl Fn(&Params) -> bool,
) -> Result<Params> {
    let (batch, seq, mut dim) = class.tuning_shape(software);
    loop {
        let p = Params {
            batch,
            seq,
            dim,
            out_dim: dim,
        }
        .validated()?;
        if fits(&p) || dim <= 8 {
            return Ok(p);
        }
        dim /= 2;
    }
}

/// Times every candidate in `mode` on the tuning shape of `class`, each on
/// a whole-weight dispatch and verified against the reference first.
fn tune_class(
    gpu: &GpuDevice,
    mode: StorageMode,
    precision: Precision,
    class: ShapeClass,
) -> Result<Tuning> {
    let limit = gpu.binding_limit();
    let p = tuning_params(class, gpu.ctx.info.software, |p| {
        let (_, k, n) = p.mkn();
        weight_block_cols(mode, k, n, limit).is_ok_and(|cols| cols == n)
    })?;
    let inputs = inputs::generate(&p, Data::default(), DEFAULT_SEED);
    let t: &Tensors = inputs.get();
    let verify = |out: &[f32], acc: Accumulation| {
        let r = Projection::new(Activations::Rows(&t.x), &t.w, p.mkn(), precision, acc);
        verify_sampled(&r, precision, out, TUNING_SAMPLED_ROWS)
    };
    tune(tuning_candidates(gpu, mode), verify, |variant| {
        let what = format!("autotuning {}", variant.name());
        let plan = plan_with(gpu, &p, mode, (variant, Chosen::Forced))?;
        let program = program(gpu, &p, &plan, &inputs, false)?;
        Ok(Box::new(gpu.build(&what, program)?) as Box<dyn PreparedOp + '_>)
    })
}

/// The plan of `p` in `mode` with this configuration.
fn plan_with(
    gpu: &GpuDevice,
    p: &Params,
    mode: StorageMode,
    (variant, chosen): (MatmulVariant, Chosen),
) -> Result<Plan> {
    let (m, k, n) = p.mkn();
    let lda = k as u32;
    Ok(Plan {
        mode,
        kernel: Kernel::new(variant, chosen, k, n, lda),
        ldy: mode.padded_stride(n as u32),
        rows: row_chunks(gpu, mode, (m, k, n), lda)?,
        weight_block_cols: weight_block_cols(mode, k, n, gpu.binding_limit())?,
    })
}

/// Decides how `p` runs on `gpu` in `precision`, before any buffer exists.
pub fn plan(gpu: &GpuDevice, p: &Params, precision: Precision) -> Result<Plan> {
    let mode = gpu.storage_mode(precision);
    let (m, k, n) = p.mkn();
    // Chunks first: a point that cannot fit fails before anything is tuned.
    weight_block_cols(mode, k, n, gpu.binding_limit())?;
    row_chunks(gpu, mode, (m, k, n), k as u32)?;
    let chosen = choose(gpu, mode, precision, (m, k, n))?;
    plan_with(gpu, p, mode, chosen)
}

/// Bytes of sentinel words after a guarded output: as many rows as the
/// tallest matmul tile could write past the last one.
pub fn guard_tail_bytes(mode: StorageMode, ldy: u32) -> u64 {
    let tallest = MatmulVariant::CANDIDATES
        .iter()
        .map(|v| v.tile().0)
        .max()
        .unwrap_or(1);
    buffer_bytes(mode, tallest as u64 * ldy as u64).max(16)
}

/// The weight's column blocks as model buffers of `program` (quantised once,
/// inside the timed model load, for INT8); returns their indices.
pub fn weight_buffers<'a>(
    program: &mut Program<'a>,
    mode: StorageMode,
    w: &'a [f32],
    (k, n): (u64, u64),
    block_cols: u64,
) -> Vec<usize> {
    let quantized: Rc<OnceCell<QuantizedWeight>> = Rc::new(OnceCell::new());
    let n_us = n as usize;
    blocks(n, block_cols)
        .into_iter()
        .map(|(col0, cols)| {
            let q = quantized.clone();
            let fill = move || {
                // The block's columns of every row of w, packed to its own width.
                let (col0, cols) = (col0 as usize, cols as usize);
                if mode.int8_weight() {
                    let qw = q.get_or_init(|| quantize_weight(w, n_us));
                    return encode_int8_block(qw, n_us, col0, cols);
                }
                if cols == n_us {
                    return encode(mode, w);
                }
                let block: Vec<f32> = w
                    .chunks_exact(n_us)
                    .flat_map(|row| &row[col0..col0 + cols])
                    .copied()
                    .collect();
                encode(mode, &block)
            };
            program.buffers.push(Buffer {
                role: "weights",
                size: mode.weight_bytes(k, cols),
                fill: Fill::Model(Box::new(fill)),
            });
            program.buffers.len() - 1
        })
        .collect()
}

/// Columns `col0..col0 + cols` of an INT8 weight as the kernel reads them:
/// the int8 values row by row, padded to a whole word, then the columns' f32 scales.
fn encode_int8_block(qw: &QuantizedWeight, n: usize, col0: usize, cols: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> =
        qw.q.chunks_exact(n)
            .flat_map(|row| &row[col0..col0 + cols])
            .map(|&v| v as u8)
            .collect();
    bytes.resize(bytes.len().div_ceil(4) * 4, 0);
    bytes.extend_from_slice(bytemuck::cast_slice(&qw.scales[col0..col0 + cols]));
    bytes
}

/// One chunk's projection: a dispatch of `pipeline` per weight block, reading
/// `rows` rows of `x` (stride `lda`) and writing their columns of `y` (stride `ldy`).
#[allow(clippy::too_many_arguments)]
pub fn dispatches(
    pipeline: usize,
    variant: MatmulVariant,
    (x, y): (usize, usize),
    weights: &[usize],
    block_cols: u64,
    n: u64,
    (rows, k): (u32, u32),
    (lda, ldy): (u32, u32),
) -> Vec<Dispatch> {
    let (bm, bn) = variant.tile();
    weights
        .iter()
        .zip(blocks(n, block_cols))
        .map(|(&wb, (col0, cols))| {
            let cols = cols as u32;
            let params = MatmulParams {
                m: rows,
                n: cols,
                k,
                lda,
                ldy,
                y_col0: col0 as u32,
                ..Default::default()
            };
            Dispatch::new(
                pipeline,
                vec![(0, x), (1, wb), (2, y)],
                3,
                params,
                [cols.div_ceil(bn), rows.div_ceil(bm)],
            )
        })
        .collect()
}

/// The runner's program of `p` as `plan` says: the weight's blocks, then per
/// chunk its activations (a request's input) and output.
fn program<'a>(
    gpu: &'a GpuDevice,
    p: &Params,
    plan: &Plan,
    inputs: &'a Inputs,
    guard: bool,
) -> Result<Program<'a>> {
    let (m, k, n) = p.mkn();
    let mode = plan.mode;
    let compiled = plan.kernel.pipeline(gpu, mode, guard)?;
    let t: &'a Tensors = inputs.get();
    let mut program = Program {
        label: super::params::NAME,
        kernel: format!(
            "wgsl-{} {}",
            kernel_label(Some(plan.kernel), gpu.options.shader_checks),
            mode.name()
        ),
        pipelines: vec![compiled.pipeline],
        buffers: Vec::new(),
        dispatches: Vec::new(),
        accumulation: plan.kernel.accumulation(),
        bounds_guard: guard,
        costs: OneTimeCosts {
            planning_ns: 0,
            compile_ns: compiled.compile_ns,
        },
    };
    let weights = weight_buffers(&mut program, mode, &t.w, (k, n), plan.weight_block_cols);
    for (first, rows) in plan.rows.of(m) {
        let (r0, r1) = (first as usize, (first + rows) as usize);
        let (k_us, x) = (k as usize, &t.x);
        program.buffers.push(Buffer {
            role: "activations",
            size: buffer_bytes(mode, rows * k),
            fill: Fill::Request(Box::new(move || encode(mode, &x[r0 * k_us..r1 * k_us]))),
        });
        let xb = program.buffers.len() - 1;
        program.buffers.push(Buffer {
            role: "output",
            size: buffer_bytes(mode, rows * plan.ldy as u64),
            fill: Fill::Output(OutputRows {
                rows: rows as u32,
                cols: n as u32,
                stride: plan.ldy,
                mode,
                guard_tail: guard_tail_bytes(mode, plan.ldy),
            }),
        });
        let yb = program.buffers.len() - 1;
        program.dispatches.extend(dispatches(
            0,
            plan.kernel.variant,
            (xb, yb),
            &weights,
            plan.weight_block_cols,
            n,
            (rows as u32, k as u32),
            (k as u32, plan.ldy),
        ));
    }
    Ok(program)
}

/// The projection `p` planned, built and loaded on `gpu`.
pub fn prepare<'a>(
    gpu: &'a GpuDevice,
    p: &Params,
    precision: Precision,
    inputs: &'a Inputs,
) -> Result<Box<dyn PreparedOp + 'a>> {
    let t = Instant::now();
    let plan = plan(gpu, p, precision)?;
    let planning_ns = t.elapsed().as_nanos() as u64;
    let mut program = program(gpu, p, &plan, inputs, gpu.options.bounds_guard)?;
    program.costs.planning_ns = planning_ns;
    let what = format!("preparing {} {}", super::params::NAME, plan.mode.name());
    Ok(Box::new(gpu.build(&what, program)?))
}

/// The kernel that would run `p` on `gpu`, named without tuning: a point
/// whose class was not tuned yet is `matmul (not tuned yet)`.
pub fn kernel_name(gpu: &GpuDevice, p: &Params, precision: Precision) -> String {
    let mode = gpu.storage_mode(precision);
    let (_, k, n) = p.mkn();
    let kernel = known(gpu, mode, p.mkn()).map(|(v, c)| Kernel::new(v, c, k, n, k as u32));
    format!(
        "wgsl-{} {}",
        kernel_label(kernel, gpu.options.shader_checks),
        mode.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(d: u32, chosen: Chosen) -> Kernel {
        Kernel::new(MatmulVariant::TILED, chosen, d as u64, d as u64, d)
    }

    #[test]
    fn names_say_what_runs_and_how_it_was_chosen() {
        assert_eq!(
            kernel_label(
                Some(kernel(64, Chosen::Autotuned { cached: true })),
                ShaderChecks::Full
            ),
            "tiled-64x64x16-4x4 vec4-loads (autotuned, cached)"
        );
        assert_eq!(
            kernel_label(Some(kernel(63, Chosen::Forced)), ShaderChecks::Full),
            "tiled-64x64x16-4x4"
        );
        assert_eq!(
            kernel_label(
                Some(kernel(64, Chosen::Autotuned { cached: false })),
                ShaderChecks::NoLoopBounding
            ),
            "tiled-64x64x16-4x4 vec4-loads (autotuned) no-loop-bounding"
        );
        assert_eq!(
            kernel_label(None, ShaderChecks::None),
            "matmul (not tuned yet) trusted"
        );
    }

    #[test]
    fn the_label_and_the_kernel_share_one_vec4_decision() {
        let k = kernel(64, Chosen::Forced);
        assert!(k.vec4_loads && k.name().contains("vec4-loads"));
        let k = kernel(62, Chosen::Forced);
        assert!(!k.vec4_loads && !k.name().contains("vec4-loads"));
    }

    #[test]
    fn a_weight_over_the_limit_is_split_into_column_blocks_of_whole_words() {
        // Llama-3's LM head in f16: 4096 x 128256, 1.05 GB.
        let cols = weight_block_cols(StorageMode::F16, 4096, 128256, 128 << 20).unwrap();
        let bs = blocks(128256, cols);
        assert_eq!(bs.len(), 8);
        assert!(bs.iter().all(|b| b.0 % 4 == 0 && b.1 % 4 == 0));
        assert_eq!(bs.iter().map(|b| b.1).sum::<u64>(), 128256);
        for (_, cols) in &bs {
            assert!(buffer_bytes(StorageMode::F16, 4096 * cols) <= 128 << 20);
        }
        assert_eq!(
            weight_block_cols(StorageMode::F32, 64, 64, 128 << 20).unwrap(),
            64
        );
        let err = weight_block_cols(StorageMode::F32, 1 << 20, 64, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("four weight columns"), "{err}");
    }

    #[test]
    fn tuning_shapes_shrink_until_they_fit() {
        let p = tuning_params(ShapeClass::LargeDeep, true, |p| p.dim <= 256).unwrap();
        assert_eq!((p.dim, p.out_dim, p.seq), (256, 256, 1024));
    }

    #[test]
    fn int8_blocks_pack_values_then_scales() {
        let qw = QuantizedWeight {
            q: vec![1, -1, 2, -2, 3, -3],
            scales: vec![0.5, 0.25, 2.0],
        };
        // Columns 1..3 of a 2 x 3 weight: -1, 2, -3... as bytes, padded, then scales.
        let b = encode_int8_block(&qw, 3, 1, 2);
        assert_eq!(&b[..4], &[255u8, 2, 3, 253]);
        assert_eq!(b.len(), 4 + 8);
        assert_eq!(f32::from_le_bytes([b[4], b[5], b[6], b[7]]), 0.25);
    }
}

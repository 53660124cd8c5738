//! Embed-project on the GPU: the lookup's gather writes the activations
//! (rows padded to whole words) that the projection reads, both in one pass;
//! the plan, the program and the record's `kernel` are built from the two
//! ops' own pieces.

use std::time::Instant;

use super::inputs::Tensors;
use super::params::{Params, NAME};
use crate::backend::gpu::chunks::{split_rows, RowChunks};
use crate::backend::gpu::device::GpuDevice;
use crate::backend::gpu::runner::{buffer_bytes, Buffer, Fill, OutputRows, Program};
use crate::backend::gpu::storage::StorageMode;
use crate::error::Result;
use crate::ops::embedding::gpu as lookup;
use crate::ops::embedding::kernels::GatherVariant;
use crate::ops::matmul::gpu::{self as projection, Kernel};
use crate::ops::op::Inputs;
use crate::precision::Precision;
use crate::prepared_op::{OneTimeCosts, PreparedOp};

/// Everything about how one GPU embed-project runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// How elements are stored.
    pub mode: StorageMode,
    /// The copy a row takes.
    pub gather: GatherVariant,
    /// The projection's configuration.
    pub kernel: Kernel,
    /// Row stride (elements) of the gathered activations: K padded to whole words.
    pub lda: u32,
    /// Row stride (elements) of the output: N padded to whole words.
    pub ldy: u32,
    /// How rows are split across bindings.
    pub rows: RowChunks,
    /// Table rows per table block.
    pub table_block_rows: u64,
    /// Weight columns per column block.
    pub weight_block_cols: u64,
}

/// The split of `p`'s buffers in `mode` on `gpu`: table blocks, weight
/// blocks and row chunks (a chunk's ids, gathered rows and output rows each
/// fit one binding; its grid the smallest projection tile's).
fn chunks(gpu: &GpuDevice, p: &Params, mode: StorageMode) -> Result<(u64, u64, RowChunks)> {
    let (m, k, n) = p.projection_part().mkn();
    let limit = gpu.binding_limit();
    let table = lookup::table_block_rows(mode, p.vocab as u64, k, limit)?;
    let weight = projection::weight_block_cols(mode, k, n, limit)?;
    let e = mode.element_bytes() as u64;
    let row_bytes = (mode.padded_stride(n as u32) as u64 * e)
        .max(4)
        .max(mode.padded_stride(k as u32) as u64 * e);
    let rows = split_rows(m, row_bytes, limit, projection::max_rows(gpu), || {
        format!("one activation row [{k} {}]", mode.name())
    })?;
    Ok((table, weight, rows))
}

/// Decides how `p` runs on `gpu` in `precision`, before any buffer exists.
pub fn plan(gpu: &GpuDevice, p: &Params, precision: Precision) -> Result<Plan> {
    let mode = gpu.storage_mode(precision);
    let (m, k, n) = p.projection_part().mkn();
    let (table_block_rows, weight_block_cols, rows) = chunks(gpu, p, mode)?;
    let lda = mode.padded_stride(k as u32);
    let (variant, chosen) = projection::choose(gpu, mode, precision, (m, k, n))?;
    Ok(Plan {
        mode,
        gather: GatherVariant::for_row(mode, k as u32),
        kernel: Kernel::new(variant, chosen, k, n, lda),
        lda,
        ldy: mode.padded_stride(n as u32),
        rows,
        table_block_rows,
        weight_block_cols,
    })
}

/// The record's `kernel`: the gather and the projection.
fn label(
    gpu: &GpuDevice,
    gather: GatherVariant,
    kernel: Option<Kernel>,
    mode: StorageMode,
) -> String {
    format!(
        "wgsl-{}+{} {}",
        gather.name(),
        projection::kernel_label(kernel, gpu.options.shader_checks),
        mode.name()
    )
}

/// The runner's program of `p` as `plan` says: the table's and the weight's
/// blocks, then per chunk its ids (a request's input), gathered rows and
/// output; the gather's dispatches before the projection's.
fn program<'a>(
    gpu: &'a GpuDevice,
    p: &Params,
    plan: &Plan,
    inputs: &'a Inputs,
) -> Result<Program<'a>> {
    let (m, k, n) = p.projection_part().mkn();
    let (mode, vocab) = (plan.mode, p.vocab as u64);
    let guard = gpu.options.bounds_guard;
    let gather = lookup::pipeline(gpu, plan.gather, mode)?;
    let matmul = plan.kernel.pipeline(gpu, mode, guard)?;
    let t: &'a Tensors = inputs.get();
    let mut program = Program {
        label: NAME,
        kernel: label(gpu, plan.gather, Some(plan.kernel), mode),
        pipelines: vec![gather.pipeline, matmul.pipeline],
        buffers: Vec::new(),
        dispatches: Vec::new(),
        accumulation: plan.kernel.accumulation(),
        bounds_guard: guard,
        costs: OneTimeCosts {
            planning_ns: 0,
            compile_ns: gather.compile_ns + matmul.compile_ns,
        },
    };
    let tables = lookup::table_buffers(
        &mut program,
        mode,
        &t.lookup.table,
        (vocab, k),
        plan.table_block_rows,
    );
    let weights =
        projection::weight_buffers(&mut program, mode, &t.w, (k, n), plan.weight_block_cols);
    for (first, rows) in plan.rows.of(m) {
        let ids = lookup::ids_buffer(&mut program, &t.lookup.ids, (first, rows));
        program.buffers.push(Buffer {
            role: "activations",
            size: buffer_bytes(mode, rows * plan.lda as u64),
            fill: Fill::Scratch,
        });
        let x = program.buffers.len() - 1;
        program.buffers.push(Buffer {
            role: "output",
            size: buffer_bytes(mode, rows * plan.ldy as u64),
            fill: Fill::Output(OutputRows {
                rows: rows as u32,
                cols: n as u32,
                stride: plan.ldy,
                mode,
                guard_tail: projection::guard_tail_bytes(mode, plan.ldy),
            }),
        });
        let y = program.buffers.len() - 1;
        let rows = rows as u32;
        program.dispatches.extend(lookup::dispatches(
            0,
            (plan.gather, mode),
            &tables,
            plan.table_block_rows,
            vocab,
            (ids, x),
            (rows, k as u32, plan.lda),
            gpu.max_groups(),
        ));
        program.dispatches.extend(projection::dispatches(
            1,
            plan.kernel.variant,
            (x, y),
            &weights,
            plan.weight_block_cols,
            n,
            (rows, k as u32),
            (plan.lda, plan.ldy),
        ));
    }
    Ok(program)
}

/// `p` planned, built and loaded on `gpu`.
pub fn prepare<'a>(
    gpu: &'a GpuDevice,
    p: &Params,
    precision: Precision,
    inputs: &'a Inputs,
) -> Result<Box<dyn PreparedOp + 'a>> {
    let t = Instant::now();
    let plan = plan(gpu, p, precision)?;
    let planning_ns = t.elapsed().as_nanos() as u64;
    let mut program = program(gpu, p, &plan, inputs)?;
    program.costs.planning_ns = planning_ns;
    let what = format!("preparing {NAME} {}", plan.mode.name());
    Ok(Box::new(gpu.build(&what, program)?))
}

/// The kernel that would run `p` on `gpu`, named without tuning.
pub fn kernel_name(gpu: &GpuDevice, p: &Params, precision: Precision) -> String {
    let mode = gpu.storage_mode(precision);
    let (_, k, n) = p.projection_part().mkn();
    let lda = mode.padded_stride(k as u32);
    let kernel = projection::known(gpu, mode, p.projection_part().mkn())
        .map(|(v, c)| Kernel::new(v, c, k, n, lda));
    label(gpu, GatherVariant::for_row(mode, k as u32), kernel, mode)
}

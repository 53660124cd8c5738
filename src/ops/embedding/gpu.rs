//! The lookup on the GPU: its plan (storage mode, the widest copy a row
//! allows, row chunks, and a table larger than one binding split into row
//! blocks, one dispatch per block, each skipping the ids held elsewhere), the
//! program the runner builds from it, and the record's `kernel`, which is the
//! plan describing itself. Embed-project reuses the pieces.

use std::time::Instant;

use bytemuck::{Pod, Zeroable};

use super::inputs::Lookup;
use super::kernels::{GatherVariant, GATHER_WORKGROUP};
use super::params::{Params, NAME};
use crate::backend::gpu::chunks::{block_units, blocks, split_rows, RowChunks};
use crate::backend::gpu::device::GpuDevice;
use crate::backend::gpu::options::ShaderChecks;
use crate::backend::gpu::pipelines::Compiled;
use crate::backend::gpu::runner::{
    buffer_bytes, fold_grid, Buffer, Dispatch, Fill, OutputRows, Program,
};
use crate::backend::gpu::storage::{encode, StorageMode};
use crate::error::Result;
use crate::ops::op::Inputs;
use crate::precision::Precision;
use crate::prepared_op::{Accumulation, OneTimeCosts, PreparedOp};

/// The gathers' uniform parameters (`Params` in `shaders/embedding/`: the
/// element-pair kernel counts elements, the word kernels words).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct GatherParams {
    rows: u32,
    /// Elements (pairs kernel) or words per row.
    width: u32,
    /// Row stride of the output, in the same unit.
    ldo: u32,
    /// Column pairs per row (pairs kernel only).
    pairs: u32,
    /// Workgroups along x of the folded grid.
    groups_x: u32,
    /// First table row of this dispatch's table block.
    id0: u32,
    /// Rows of this dispatch's table block.
    id_count: u32,
    _pad: u32,
}

/// Everything about how one GPU lookup runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// How elements are stored.
    pub mode: StorageMode,
    /// The copy a row takes.
    pub gather: GatherVariant,
    /// Row stride (elements) of the output: the row padded to whole words.
    pub ldo: u32,
    /// How rows are split across bindings.
    pub rows: RowChunks,
    /// Table rows in every table block but possibly the last (the vocabulary
    /// when the table fits one binding).
    pub table_block_rows: u64,
}

/// Table rows per block of a `[vocab, k]` table in `mode` within `limit`.
pub fn table_block_rows(mode: StorageMode, vocab: u64, k: u64, limit: u64) -> Result<u64> {
    let e = mode.element_bytes() as u64;
    block_units(
        vocab,
        buffer_bytes(mode, vocab * k),
        k * e,
        1,
        limit,
        || format!("one embedding table row [{k} {}]", mode.name()),
    )
}

/// Decides how `p` runs on `gpu` in `precision`, before any buffer exists.
pub fn plan(gpu: &GpuDevice, p: &Params, precision: Precision) -> Result<Plan> {
    let mode = gpu.storage_mode(precision);
    let (m, k) = (p.tokens(), p.dim as u64);
    let limit = gpu.binding_limit();
    let table_block_rows = table_block_rows(mode, p.vocab as u64, k, limit)?;
    let ldo = mode.padded_stride(k as u32);
    // An output row, at least one id's word: the gather's grid is folded, so
    // rows are bounded by the binding alone.
    let row_bytes = (ldo as u64 * mode.element_bytes() as u64).max(4);
    let rows = split_rows(m, row_bytes, limit, u64::MAX, || {
        format!("one activation row [{k} {}]", mode.name())
    })?;
    Ok(Plan {
        mode,
        gather: GatherVariant::for_row(mode, k as u32),
        ldo,
        rows,
        table_block_rows,
    })
}

/// The gather's pipeline (always with every runtime check: its row index
/// comes from data).
pub fn pipeline(gpu: &GpuDevice, gather: GatherVariant, mode: StorageMode) -> Result<Compiled> {
    gpu.ctx
        .pipeline(gather.name(), gather.source(mode), &[], ShaderChecks::Full)
}

/// The table's row blocks as model buffers of `program`; returns their indices.
pub fn table_buffers<'a>(
    program: &mut Program<'a>,
    mode: StorageMode,
    table: &'a [f32],
    (vocab, k): (u64, u64),
    block_rows: u64,
) -> Vec<usize> {
    let k_us = k as usize;
    blocks(vocab, block_rows)
        .into_iter()
        .map(|(first, rows)| {
            let r = first as usize * k_us..(first + rows) as usize * k_us;
            program.buffers.push(Buffer {
                role: "table",
                size: buffer_bytes(mode, rows * k),
                fill: Fill::Model(Box::new(move || encode(mode, &table[r.clone()]))),
            });
            program.buffers.len() - 1
        })
        .collect()
}

/// One chunk's token ids as a request buffer of `program`; returns its index.
pub fn ids_buffer<'a>(
    program: &mut Program<'a>,
    ids: &'a [u32],
    (first, rows): (u64, u64),
) -> usize {
    let r = first as usize..(first + rows) as usize;
    program.buffers.push(Buffer {
        role: "ids",
        size: rows * 4,
        fill: Fill::Request(Box::new(move || {
            bytemuck::cast_slice(&ids[r.clone()]).to_vec()
        })),
    });
    program.buffers.len() - 1
}

/// One chunk's gather: a dispatch of `pipeline` per table block, copying the
/// rows of `ids` held in that block into `out` (stride `ldo` elements).
#[allow(clippy::too_many_arguments)]
pub fn dispatches(
    pipeline: usize,
    (gather, mode): (GatherVariant, StorageMode),
    tables: &[usize],
    block_rows: u64,
    vocab: u64,
    (ids, out): (usize, usize),
    (rows, k, ldo): (u32, u32, u32),
    max_groups: u32,
) -> Vec<Dispatch> {
    // Invocations per row: element pairs, or whole words (whose rows are
    // unpadded: ldo == k whenever a row is whole words).
    let (units, params) = match gather {
        GatherVariant::Pairs => {
            let pairs = k.div_ceil(2);
            let params = GatherParams {
                rows,
                width: k,
                ldo,
                pairs,
                ..Default::default()
            };
            (pairs, params)
        }
        v => {
            let per_word = v.word_bytes() / mode.element_bytes();
            let words = k / per_word;
            let params = GatherParams {
                rows,
                width: words,
                ldo: ldo / per_word,
                ..Default::default()
            };
            (words, params)
        }
    };
    let grid = fold_grid(
        (rows as u64 * units as u64).div_ceil(GATHER_WORKGROUP as u64),
        max_groups,
    );
    tables
        .iter()
        .zip(blocks(vocab, block_rows))
        .map(|(&t, (id0, id_count))| {
            let params = GatherParams {
                groups_x: grid[0],
                id0: id0 as u32,
                id_count: id_count as u32,
                ..params
            };
            Dispatch::new(pipeline, vec![(0, t), (1, ids), (2, out)], 3, params, grid)
        })
        .collect()
}

/// The record's `kernel` of a lookup planned as `plan`.
pub fn kernel_label(gather: GatherVariant, mode: StorageMode) -> String {
    format!("wgsl-{} {}", gather.name(), mode.name())
}

/// The runner's program of `p` as `plan` says: the table's blocks, then per
/// chunk its ids (a request's input) and output.
fn program<'a>(
    gpu: &'a GpuDevice,
    p: &Params,
    plan: &Plan,
    inputs: &'a Inputs,
) -> Result<Program<'a>> {
    let (m, k, vocab) = (p.tokens(), p.dim as u64, p.vocab as u64);
    let mode = plan.mode;
    let compiled = pipeline(gpu, plan.gather, mode)?;
    let lookup: &'a Lookup = inputs.get();
    let mut program = Program {
        label: NAME,
        kernel: kernel_label(plan.gather, mode),
        pipelines: vec![compiled.pipeline],
        buffers: Vec::new(),
        dispatches: Vec::new(),
        accumulation: Accumulation::F32,
        bounds_guard: gpu.options.bounds_guard,
        costs: OneTimeCosts {
            planning_ns: 0,
            compile_ns: compiled.compile_ns,
        },
    };
    let tables = table_buffers(
        &mut program,
        mode,
        &lookup.table,
        (vocab, k),
        plan.table_block_rows,
    );
    for (first, rows) in plan.rows.of(m) {
        let ids = ids_buffer(&mut program, &lookup.ids, (first, rows));
        program.buffers.push(Buffer {
            role: "output",
            size: buffer_bytes(mode, rows * plan.ldo as u64),
            fill: Fill::Output(OutputRows {
                rows: rows as u32,
                cols: k as u32,
                stride: plan.ldo,
                mode,
                guard_tail: buffer_bytes(mode, plan.ldo as u64).max(16),
            }),
        });
        let out = program.buffers.len() - 1;
        program.dispatches.extend(dispatches(
            0,
            (plan.gather, mode),
            &tables,
            plan.table_block_rows,
            vocab,
            (ids, out),
            (rows as u32, k as u32, plan.ldo),
            gpu.max_groups(),
        ));
    }
    Ok(program)
}

/// The lookup `p` planned, built and loaded on `gpu`.
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

/// The kernel that runs `p` on `gpu`.
pub fn kernel_name(gpu: &GpuDevice, p: &Params, precision: Precision) -> String {
    let mode = gpu.storage_mode(precision);
    kernel_label(GatherVariant::for_row(mode, p.dim), mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_over_the_limit_is_split_into_row_blocks() {
        // GPT-2 XL's table in f32: 50257 x 1600, 322 MB, under a 128 MiB binding.
        let rows = table_block_rows(StorageMode::F32, 50257, 1600, 128 << 20).unwrap();
        let bs = blocks(50257, rows);
        assert_eq!(bs.len(), 3);
        assert_eq!(bs[0], (0, 20971));
        assert_eq!(bs.iter().map(|b| b.1).sum::<u64>(), 50257);
        for (_, rows) in &bs {
            assert!(buffer_bytes(StorageMode::F32, rows * 1600) <= 128 << 20);
        }
        assert_eq!(
            table_block_rows(StorageMode::F16, 1000, 100, 128 << 20).unwrap(),
            1000
        );
    }

    #[test]
    fn a_row_that_cannot_fit_names_the_numbers() {
        let err = table_block_rows(StorageMode::F32, 32000, 1024, 1024)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("one embedding table row") && err.contains("4096") && err.contains("1024"),
            "{err}"
        );
    }

    #[test]
    fn word_gathers_count_words_and_every_block_gets_a_dispatch() {
        // 64 f16 elements a row: 8 vec4 words; two table blocks of 5 and 3 rows.
        let d = dispatches(
            0,
            (GatherVariant::Vec4, StorageMode::F16),
            &[0, 1],
            5,
            8,
            (2, 3),
            (10, 64, 64),
            65535,
        );
        assert_eq!(d.len(), 2);
        let p: &GatherParams = bytemuck::from_bytes(&d[1].uniform.1);
        assert_eq!(
            (p.rows, p.width, p.ldo, p.id0, p.id_count),
            (10, 8, 8, 5, 3)
        );
        assert_eq!(d[1].buffers, vec![(0, 1), (1, 2), (2, 3)]);
        // 33 elements (odd f16 rows): element pairs.
        let d = dispatches(
            0,
            (GatherVariant::Pairs, StorageMode::F16),
            &[0],
            8,
            8,
            (1, 2),
            (4, 33, 34),
            65535,
        );
        let p: &GatherParams = bytemuck::from_bytes(&d[0].uniform.1);
        assert_eq!((p.width, p.ldo, p.pairs), (33, 34, 17));
    }
}

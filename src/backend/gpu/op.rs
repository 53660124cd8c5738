//! A prepared GPU op, built from its [`KernelPlan`]: its pipelines (from the
//! device's pipeline cache), buffers (chunked when large), bind groups, and the
//! timed submission of one or many executions.

use std::time::Instant;

use bytemuck::{Pod, Zeroable};
use half::{bf16, f16};

use super::chunks::buffer_bytes;
use super::options::ShaderChecks;
use super::plan::KernelPlan;
use super::readback::map_read_into;
use super::shaders::{
    with_bounds_guard, GatherVariant, MatmulVariant, StorageMode, GATHER_WORKGROUP, GUARD_SENTINEL,
};
use super::timestamps::{submit_timed, TimestampQueries, QUERY_BYTES};
use super::GpuContext;
use crate::backend::{
    MemoryUse, OneTimeCosts, Phases, PreparedOp, Sample, TimingMethod, CACHE_FLUSH_BYTES,
};
use crate::error::{LabError, Result};
use crate::reference::Accumulation;
use crate::workload::{quantize_weight, Inputs, Op, QuantizedWeight};

/// The matmul kernels' uniform parameters (`Params` in matmul_common.wgsl).
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

/// The gathers' uniform parameters (`Params` in embedding.wgsl and
/// gather_words.wgsl: the element-pair kernel counts elements, the word
/// kernels words).
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

/// Largest piece of output copied to the host at once: readback goes through a
/// staging buffer this size, not one as large as the output, so measured memory
/// stays close to the model.
const STAGING_BYTES: u64 = 4 << 20;

/// One slice of rows and the buffers that hold it.
struct Chunk {
    first_row: u64,
    rows: u32,
    ids: Option<wgpu::Buffer>,
    /// The matmul's input, or the gather's output feeding the matmul.
    x: Option<wgpu::Buffer>,
    y: wgpu::Buffer,
    /// One gather dispatch per table block.
    gather: Vec<(wgpu::BindGroup, [u32; 2])>,
    /// One matmul dispatch per weight column block.
    matmul: Vec<(wgpu::BindGroup, [u32; 2])>,
    uniforms: u64,
}

/// The GPU side of one workload.
pub(super) struct GpuOp<'a> {
    ctx: &'a GpuContext,
    /// What runs: workload, storage mode, strides, kernels, chunks and blocks.
    plan: KernelPlan,
    inputs: &'a Inputs,
    /// The embedding table, in row blocks.
    table: Vec<wgpu::Buffer>,
    /// The weight, in column blocks.
    w: Vec<wgpu::Buffer>,
    chunks: Vec<Chunk>,
    gather: Option<wgpu::ComputePipeline>,
    matmul: Option<wgpu::ComputePipeline>,
    /// How the matmul (if any) accumulates.
    accumulation: Accumulation,
    queries: Option<TimestampQueries>,
    staging: wgpu::Buffer,
    flush: Option<wgpu::Buffer>,
    /// Output bytes as the device holds them (padded rows), chunk after chunk.
    host: Vec<u8>,
    /// Planning (set by the backend) and compile time of this op.
    pub(super) costs: OneTimeCosts,
    /// Time the table and weight took to reach the device.
    model_load_ns: u64,
}

/// Encodes `data` as `mode` stores it, padded to whole 4-byte words.
fn encode(mode: StorageMode, data: &[f32]) -> Vec<u8> {
    let mut bytes = match mode.activation() {
        StorageMode::F32 => bytemuck::cast_slice(data).to_vec(),
        StorageMode::F16 | StorageMode::PackedF16 => {
            let halves: Vec<f16> = data.iter().map(|&v| f16::from_f32(v)).collect();
            bytemuck::cast_slice(&halves).to_vec()
        }
        StorageMode::PackedBf16 => {
            let halves: Vec<bf16> = data.iter().map(|&v| bf16::from_f32(v)).collect();
            bytemuck::cast_slice(&halves).to_vec()
        }
        StorageMode::W8F16 | StorageMode::W8PackedF16 => unreachable!("mapped by activation()"),
    };
    bytes.resize(bytes.len().div_ceil(4) * 4, 0);
    bytes
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

fn storage(ctx: &GpuContext, label: &str, size: u64, extra: wgpu::BufferUsages) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: wgpu::BufferUsages::STORAGE | extra,
        mapped_at_creation: false,
    })
}

fn uniform<P: Pod>(ctx: &GpuContext, params: P) -> wgpu::Buffer {
    // Not `create_buffer_init`: it panics when the device is lost; a plain
    // buffer and a queued write fail into the error scope instead.
    let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("params"),
        size: std::mem::size_of::<P>() as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    ctx.queue
        .write_buffer(&buffer, 0, bytemuck::bytes_of(&params));
    buffer
}

fn bind(
    ctx: &GpuContext,
    pipeline: &wgpu::ComputePipeline,
    buffers: [(u32, &wgpu::Buffer); 4],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .map(|&(binding, b)| wgpu::BindGroupEntry {
            binding,
            resource: b.as_entire_binding(),
        })
        .collect();
    ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
}

/// Bytes of sentinel words after a guarded output: as many rows as the
/// tallest matmul tile could write past the last one.
fn guard_tail_bytes(mode: StorageMode, ldy: u32) -> u64 {
    let tallest = MatmulVariant::CANDIDATES
        .iter()
        .map(|v| v.tile().0)
        .max()
        .unwrap_or(1);
    buffer_bytes(mode, tallest as u64 * ldy as u64).max(16)
}

/// Checks the sentinel tail of one guarded output chunk (`tail`, the bytes
/// after its rows): a changed last word is a load past an input (the guarded
/// loads' signal), any other a write past the output.
fn check_guard(tail: &[u8], chunk: usize, rows: u32) -> Result<()> {
    let words: Vec<u32> = tail
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let Some((&last, body)) = words.split_last() else {
        return Ok(());
    };
    let written = body.iter().filter(|&&w| w != GUARD_SENTINEL).count();
    if written > 0 {
        return Err(LabError::Gpu(format!(
            "bounds guard: the kernel wrote {written} of the {} sentinel words after output chunk {chunk} ({rows} rows): a store past its last row",
            body.len()
        )));
    }
    if last != GUARD_SENTINEL {
        return Err(LabError::Gpu(format!(
            "bounds guard: a load read past its input in output chunk {chunk} ({rows} rows)"
        )));
    }
    Ok(())
}

/// Folds `groups` workgroups into an (x, y) grid within `max` per dimension.
fn fold_grid(groups: u64, max: u32) -> [u32; 2] {
    let x = groups.clamp(1, max as u64);
    [x as u32, groups.div_ceil(x).max(1) as u32]
}

impl<'a> GpuOp<'a> {
    /// Builds the op `plan` describes and uploads its inputs.
    pub(super) fn new(ctx: &'a GpuContext, plan: KernelPlan, inputs: &'a Inputs) -> Result<Self> {
        let (work, mode) = (plan.work, plan.mode);
        let (m, k, n) = work.mkn();
        let k32 = k as u32;
        let (lda, ldy) = (plan.lda, plan.ldy);
        let usage = wgpu::BufferUsages::COPY_DST;
        let mut compile_ns = 0;
        let gather = match plan.gather {
            Some(g) => {
                let c = ctx.pipeline(g.name(), g.source(mode), &[], ShaderChecks::Full)?;
                compile_ns += c.compile_ns;
                Some(c.pipeline)
            }
            None => None,
        };
        let matmul = match plan.matmul {
            Some(mp) => {
                let v = mp.variant;
                let mut source = v.source(mode, mp.vec4_loads);
                if plan.bounds_guard {
                    source = with_bounds_guard(&source, mode);
                }
                let c = ctx.pipeline(&v.name(), source, &v.constants(), plan.checks)?;
                compile_ns += c.compile_ns;
                Some(c.pipeline)
            }
            None => None,
        };
        let vocab = work.shape.vocab as u64;
        let table_blocks = plan.chunks.table_blocks(vocab);
        let weight_blocks = plan.chunks.weight_blocks(n);
        // One buffer per block of `k`-element rows (table) or columns (weight),
        // `bytes(len)` each.
        let blocks = |used: bool,
                      label: &str,
                      sizes: &[(u64, u64)],
                      bytes: &dyn Fn(u64) -> u64|
         -> Vec<wgpu::Buffer> {
            if !used {
                return Vec::new();
            }
            sizes
                .iter()
                .map(|&(_, len)| storage(ctx, label, bytes(len), usage))
                .collect()
        };
        let table = blocks(work.op.uses_table(), "table", &table_blocks, &|rows| {
            buffer_bytes(mode, rows * k)
        });
        let w = blocks(work.op.uses_weight(), "weight", &weight_blocks, &|cols| {
            mode.weight_bytes(k, cols)
        });
        let max_groups = ctx.limits.max_compute_workgroups_per_dimension;

        let mut chunks = Vec::with_capacity(plan.chunks.chunks as usize);
        let mut first_row = 0;
        while first_row < m {
            let rows = plan.chunks.rows_per_chunk.min(m - first_row) as u32;
            // A guarded output has a tail of sentinels inside its binding, so a
            // write past the rows lands on it instead of being dropped by robust
            // buffer access.
            let rows_bytes = buffer_bytes(mode, rows as u64 * ldy as u64);
            let (size, usage_y) = if plan.bounds_guard {
                (
                    rows_bytes + guard_tail_bytes(mode, ldy),
                    wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                )
            } else {
                (rows_bytes, wgpu::BufferUsages::COPY_SRC)
            };
            let y = storage(ctx, "output", size, usage_y);
            if plan.bounds_guard {
                let sentinels = GUARD_SENTINEL.to_le_bytes().repeat(size as usize / 4);
                ctx.queue.write_buffer(&y, 0, &sentinels);
            }
            let ids = work
                .op
                .uses_table()
                .then(|| storage(ctx, "ids", rows as u64 * 4, usage));
            // matmul reads x as uploaded (stride k); embed-project's gather writes it with stride lda.
            let x = match work.op {
                Op::Embedding => None,
                Op::Matmul | Op::EmbedProject => Some(storage(
                    ctx,
                    "activations",
                    buffer_bytes(mode, rows as u64 * lda as u64),
                    usage,
                )),
            };
            let mut uniforms = 0;
            let mut gather_binds = Vec::new();
            if let (Some(p), Some(variant), Some(i)) = (&gather, plan.gather, &ids) {
                // The gather writes the output, or the matmul's input.
                let (out, ldo) = match &x {
                    Some(x) => (x, lda),
                    None => (&y, ldy),
                };
                // Invocations per row: element pairs, or whole words (whose
                // rows are unpadded: ldo == k whenever a row is whole words).
                let (units, params) = match variant {
                    GatherVariant::Pairs => {
                        let pairs = k32.div_ceil(2);
                        let params = GatherParams {
                            rows,
                            width: k32,
                            ldo,
                            pairs,
                            ..Default::default()
                        };
                        (pairs, params)
                    }
                    v => {
                        let per_word = v.word_bytes() / mode.element_bytes();
                        let words = k32 / per_word;
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
                for (t, &(id0, id_count)) in table.iter().zip(&table_blocks) {
                    let params = uniform(
                        ctx,
                        GatherParams {
                            groups_x: grid[0],
                            id0: id0 as u32,
                            id_count: id_count as u32,
                            ..params
                        },
                    );
                    uniforms += params.size();
                    gather_binds
                        .push((bind(ctx, p, [(0, t), (1, i), (2, out), (3, &params)]), grid));
                }
            }
            let mut matmul_binds = Vec::new();
            if let (Some(p), Some(mp), Some(xb)) = (&matmul, plan.matmul, &x) {
                let (bm, bn) = mp.variant.tile();
                for (wb, &(col0, cols)) in w.iter().zip(&weight_blocks) {
                    let cols = cols as u32;
                    let grid = [cols.div_ceil(bn), rows.div_ceil(bm)];
                    let params = uniform(
                        ctx,
                        MatmulParams {
                            m: rows,
                            n: cols,
                            k: k32,
                            lda,
                            ldy,
                            y_col0: col0 as u32,
                            ..Default::default()
                        },
                    );
                    uniforms += params.size();
                    matmul_binds.push((
                        bind(ctx, p, [(0, xb), (1, wb), (2, &y), (3, &params)]),
                        grid,
                    ));
                }
            }
            chunks.push(Chunk {
                first_row,
                rows,
                ids,
                x,
                y,
                gather: gather_binds,
                matmul: matmul_binds,
                uniforms,
            });
            first_row += rows as u64;
        }

        let largest_output = chunks.iter().map(|c| c.y.size()).max().unwrap_or(4);
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size: largest_output.min(STAGING_BYTES),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let queries = ctx
            .features
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| TimestampQueries::new(&ctx.device, ctx.timestamp_period_ns));
        let mut op = GpuOp {
            ctx,
            plan,
            inputs,
            table,
            w,
            chunks,
            gather,
            accumulation: if plan.matmul.is_some_and(|mp| mp.variant.f16_acc) {
                Accumulation::F16
            } else {
                Accumulation::F32
            },
            matmul,
            queries,
            staging,
            flush: None,
            host: Vec::new(),
            costs: OneTimeCosts {
                planning_ns: 0,
                compile_ns,
            },
            model_load_ns: 0,
        };
        op.model_load_ns = op.load_model()?;
        op.upload_request()?;
        Ok(op)
    }

    /// Writes the inputs into the device buffers and waits until they are there.
    /// Places the model's data on the device, once: the table and the weight,
    /// as a server does when it loads a model. Returns the nanoseconds it took
    /// (written and waited for).
    fn load_model(&mut self) -> Result<u64> {
        let t = Instant::now();
        let (q, inputs, mode) = (&self.ctx.queue, self.inputs, self.plan.mode);
        let (_, k, n) = self.plan.work.mkn();
        let (k, n) = (k as usize, n as usize);
        let vocab = self.plan.work.shape.vocab as u64;
        for (t, (first, rows)) in self.table.iter().zip(self.plan.chunks.table_blocks(vocab)) {
            let rows = first as usize * k..(first + rows) as usize * k;
            q.write_buffer(t, 0, &encode(mode, &inputs.table[rows]));
        }
        let quantized = mode.int8_weight().then(|| quantize_weight(&inputs.w, n));
        for (w, (col0, cols)) in self.w.iter().zip(self.plan.chunks.weight_blocks(n as u64)) {
            // The block's columns of every row of w, packed to its own width.
            let (col0, cols) = (col0 as usize, cols as usize);
            if let Some(qw) = &quantized {
                q.write_buffer(w, 0, &encode_int8_block(qw, n, col0, cols));
                continue;
            }
            let block: Vec<f32> = if cols == n {
                inputs.w.clone()
            } else {
                inputs
                    .w
                    .chunks_exact(n)
                    .flat_map(|row| &row[col0..col0 + cols])
                    .copied()
                    .collect()
            };
            q.write_buffer(w, 0, &encode(mode, &block));
        }
        q.submit([]);
        self.ctx.wait()?;
        Ok(t.elapsed().as_nanos() as u64)
    }

    /// Writes one request's inputs (ids, or activations) into the device
    /// buffers and waits until they are there.
    fn upload_request(&mut self) -> Result<()> {
        let (q, inputs, mode) = (&self.ctx.queue, self.inputs, self.plan.mode);
        let k = self.plan.work.mkn().1 as usize;
        for c in &self.chunks {
            let rows = c.first_row as usize..c.first_row as usize + c.rows as usize;
            if let Some(ids) = &c.ids {
                q.write_buffer(ids, 0, bytemuck::cast_slice(&inputs.ids[rows.clone()]));
            }
            if let (Op::Matmul, Some(x)) = (self.plan.work.op, &c.x) {
                q.write_buffer(x, 0, &encode(mode, &inputs.x[rows.start * k..rows.end * k]));
            }
        }
        q.submit([]);
        self.ctx.wait()
    }

    /// Records every dispatch of one execution of the op into `pass`.
    fn encode_op(&self, pass: &mut wgpu::ComputePass<'_>) {
        for c in &self.chunks {
            for (pipeline, binds) in [(&self.gather, &c.gather), (&self.matmul, &c.matmul)] {
                // Within a pass wgpu orders dispatches that share a buffer, so the
                // matmul sees the rows the gather just wrote.
                let Some(p) = pipeline else { continue };
                pass.set_pipeline(p);
                for (bg, [x, y]) in binds {
                    pass.set_bind_group(0, bg, &[]);
                    pass.dispatch_workgroups(*x, *y, 1);
                }
            }
        }
    }

    /// Fails with the device's own words if it reported an error or was lost.
    fn check_device(&self, what: &str) -> Result<()> {
        if let Some(lost) = self.ctx.lost_reason() {
            return Err(LabError::DeviceLost(format!("{what}: {lost}")));
        }
        match self.ctx.take_uncaptured() {
            Some(e) => Err(LabError::Gpu(format!("{what}: {e}"))),
            None => Ok(()),
        }
    }

    /// Submits `reps` executions in one pass and times them.
    fn submit_timed(&mut self, reps: u32) -> Result<Sample> {
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(self.plan.work.op.name()),
                timestamp_writes: self.queries.as_ref().map(|q| q.pass_writes()),
            });
            for _ in 0..reps {
                self.encode_op(&mut pass);
            }
        }
        let sample = submit_timed(self.ctx, self.queries.as_ref(), encoder.finish())?;
        self.check_device("running the op")?;
        Ok(sample)
    }

    /// Copies the whole output to `self.host` through the staging buffer.
    fn read_back(&mut self) -> Result<()> {
        let total: u64 = self.chunks.iter().map(|c| c.y.size()).sum();
        self.host.clear();
        self.host.reserve(total as usize);
        let mut piece = Vec::new();
        for c in &self.chunks {
            let mut offset = 0;
            while offset < c.y.size() {
                let size = (c.y.size() - offset).min(self.staging.size());
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                encoder.copy_buffer_to_buffer(&c.y, offset, &self.staging, 0, size);
                self.ctx.queue.submit([encoder.finish()]);
                map_read_into(&self.ctx.device, &self.staging, size, &mut piece)?;
                self.host.extend_from_slice(&piece);
                offset += size;
            }
        }
        self.check_device("reading the output back")
    }
}

impl PreparedOp for GpuOp<'_> {
    fn describe(&self) -> String {
        self.plan.name()
    }

    fn one_time_costs(&self) -> Option<OneTimeCosts> {
        Some(self.costs)
    }

    fn timing_method(&self) -> TimingMethod {
        if self.queries.is_some() {
            TimingMethod::DeviceTimestamp
        } else {
            TimingMethod::Wall
        }
    }

    fn run(&mut self) -> Result<Sample> {
        self.submit_timed(1)
    }

    fn run_batch(&mut self, n: u32) -> Result<Sample> {
        self.submit_timed(n.max(1))
    }

    fn model_load_ns(&self) -> u64 {
        self.model_load_ns
    }

    fn run_phases(&mut self) -> Result<Phases> {
        let t = Instant::now();
        self.upload_request()?;
        let upload_ns = t.elapsed().as_nanos() as u64;
        let kernel_ns = self.submit_timed(1)?.wall_ns;
        let t = Instant::now();
        self.read_back()?;
        let readback_ns = t.elapsed().as_nanos() as u64;
        Ok(Phases {
            upload_ns,
            kernel_ns,
            readback_ns,
        })
    }

    fn output(&mut self) -> Result<Vec<f32>> {
        self.read_back()?;
        let (m, _, n) = self.plan.work.mkn();
        let (n, ldy) = (n as usize, self.plan.ldy as usize);
        let mut out = Vec::with_capacity((m as usize) * n);
        let mut offset = 0;
        for (i, c) in self.chunks.iter().enumerate() {
            let bytes = &self.host[offset..offset + c.y.size() as usize];
            if self.plan.bounds_guard {
                let rows_bytes = buffer_bytes(self.plan.mode, c.rows as u64 * ldy as u64);
                check_guard(&bytes[rows_bytes as usize..], i, c.rows)?;
            }
            for r in 0..c.rows as usize {
                let row = r * ldy;
                match self.plan.mode.activation() {
                    StorageMode::F32 => {
                        let vals: &[u8] = &bytes[row * 4..(row + n) * 4];
                        out.extend(
                            vals.chunks_exact(4)
                                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                        );
                    }
                    StorageMode::F16 | StorageMode::PackedF16 => {
                        let vals: &[u8] = &bytes[row * 2..(row + n) * 2];
                        out.extend(
                            vals.chunks_exact(2)
                                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
                        );
                    }
                    StorageMode::PackedBf16 => {
                        let vals: &[u8] = &bytes[row * 2..(row + n) * 2];
                        out.extend(
                            vals.chunks_exact(2)
                                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()),
                        );
                    }
                    StorageMode::W8F16 | StorageMode::W8PackedF16 => {
                        unreachable!("mapped by activation()")
                    }
                }
            }
            offset += c.y.size() as usize;
        }
        Ok(out)
    }

    fn memory(&self) -> MemoryUse {
        let size = |b: &Option<wgpu::Buffer>| b.as_ref().map_or(0, |b| b.size());
        let total = |bs: &[wgpu::Buffer]| bs.iter().map(|b| b.size()).sum::<u64>();
        let mut mem = MemoryUse {
            table: total(&self.table),
            weights: total(&self.w),
            // Not `flush`: the harness's cache-flush buffer, no part of the op.
            other: self.staging.size() + self.queries.as_ref().map_or(0, |_| QUERY_BYTES),
            ..Default::default()
        };
        if let Some(report) = self.ctx.device.generate_allocator_report() {
            mem.allocator_allocated = Some(report.total_allocated_bytes);
            mem.allocator_reserved = Some(report.total_reserved_bytes);
        }
        for c in &self.chunks {
            mem.ids += size(&c.ids);
            mem.activations += size(&c.x);
            mem.output += c.y.size();
            mem.other += c.uniforms;
        }
        mem.summed()
    }

    fn accumulation(&self) -> Accumulation {
        self.accumulation
    }

    fn flush_caches(&mut self) -> Result<()> {
        let limit = self.ctx.limits.max_buffer_size;
        let flush = self.flush.get_or_insert_with(|| {
            storage(
                self.ctx,
                "cache flush",
                CACHE_FLUSH_BYTES.min(limit) / 4 * 4,
                wgpu::BufferUsages::COPY_DST,
            )
        });
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        encoder.clear_buffer(flush, 0, None);
        self.ctx.queue.submit([encoder.finish()]);
        self.ctx.wait()
    }
}

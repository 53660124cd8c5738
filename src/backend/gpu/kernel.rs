//! A prepared GPU op: its pipelines, buffers (chunked when large), bind groups,
//! and the timed submission of one or many executions.

use std::time::Instant;

use half::f16;

use super::readback::map_read_into;
use super::shaders::{GatherVariant, MatmulVariant, StorageMode, GATHER_WORKGROUP};
use super::timestamps::{TimestampQueries, QUERY_BYTES};
use super::{buffer_bytes, ChunkPlan, GpuContext};
use crate::backend::cpu::CACHE_FLUSH_BYTES;
use crate::backend::{Kernel, MemoryUse, Phases, Sample, TimingMethod};
use crate::error::{LabError, Result};
use crate::reference::Accumulation;
use crate::workload::{Inputs, Op, Workload};

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
    gather: Option<(wgpu::BindGroup, [u32; 2])>,
    matmul: Option<(wgpu::BindGroup, [u32; 2])>,
    uniforms: u64,
}

/// The GPU side of one workload.
pub(super) struct GpuKernel<'a> {
    ctx: &'a GpuContext,
    work: Workload,
    mode: StorageMode,
    inputs: &'a Inputs,
    /// Row stride (elements) of the output and of gathered activations.
    ldy: u32,
    table: Option<wgpu::Buffer>,
    w: Option<wgpu::Buffer>,
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
}

/// Encodes `data` as `mode` stores it, padded to whole 4-byte words.
fn encode(mode: StorageMode, data: &[f32]) -> Vec<u8> {
    let mut bytes = match mode {
        StorageMode::F32 => bytemuck::cast_slice(data).to_vec(),
        StorageMode::F16 | StorageMode::PackedF16 => {
            let halves: Vec<f16> = data.iter().map(|&v| f16::from_f32(v)).collect();
            bytemuck::cast_slice(&halves).to_vec()
        }
    };
    bytes.resize(bytes.len().div_ceil(4) * 4, 0);
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

/// Builds a compute pipeline from WGSL. With `trusted`, the module is built
/// without wgpu's runtime bounds checks; only kernels that bound every access
/// themselves may ask for it (see the SAFETY note where it is used).
fn pipeline(
    ctx: &GpuContext,
    label: &str,
    source: String,
    constants: &[(&str, f64)],
    trusted: bool,
) -> wgpu::ComputePipeline {
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    };
    let module = if trusted {
        // SAFETY: callers pass `trusted` only for the matmul kernels, which guard
        // every load with `row < m && k < K` (a), `k < K && col < n` (b) and
        // every store with `row < m && col < n`, against buffers sized for
        // exactly those bounds and strides (lda >= K, ldy >= n) per chunk; a vec4
        // load starts at a multiple of 4 below K (or n) and K, n and lda are
        // multiples of 4 whenever vec4 loads are compiled in. Their
        // other indices are bounded by construction: the tiled kernel's
        // workgroup tiles are sized by the same override constants (BM, BN, BK)
        // that bound their indices; register arrays are indexed by loops over
        // their compile-time length (TM, TN); the coop kernel's cooperative
        // loads and stores read 16x16 blocks at fixed offsets that end at the
        // last element of its fixed-size workgroup arrays (511 of 512, 1023 of 1024).
        unsafe {
            ctx.device
                .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
        }
    } else {
        ctx.device.create_shader_module(desc)
    };
    ctx.device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(label),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                ..Default::default()
            },
            cache: None,
        })
}

fn uniform(ctx: &GpuContext, words: [u32; 8]) -> wgpu::Buffer {
    // Not `create_buffer_init`: it panics when the device is lost; a plain
    // buffer and a queued write fail into the error scope instead.
    let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("params"),
        size: 32,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    ctx.queue
        .write_buffer(&buffer, 0, bytemuck::cast_slice(&words));
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

/// Folds `groups` workgroups into an (x, y) grid within `max` per dimension.
fn fold_grid(groups: u64, max: u32) -> [u32; 2] {
    let x = groups.clamp(1, max as u64);
    [x as u32, groups.div_ceil(x).max(1) as u32]
}

impl<'a> GpuKernel<'a> {
    pub(super) fn new(
        ctx: &'a GpuContext,
        work: Workload,
        mode: StorageMode,
        plan: ChunkPlan,
        variant: MatmulVariant,
        trusted: bool,
        inputs: &'a Inputs,
    ) -> Result<Self> {
        let (m, k, n) = work.mkn();
        let (k32, n32) = (k as u32, n as u32);
        let ldy = mode.padded_stride(n32);
        let usage = wgpu::BufferUsages::COPY_DST;
        let gather_variant = GatherVariant::for_row(mode, k32);
        // Row stride of the matmul's a: x as uploaded, or as the gather wrote it.
        let lda = if work.op == Op::Matmul { k32 } else { ldy };
        let gather = work.op.uses_table().then(|| {
            pipeline(
                ctx,
                gather_variant.name(),
                gather_variant.source(mode),
                &[],
                false,
            )
        });
        let matmul = work.op.uses_weight().then(|| {
            let name = variant.name();
            let source = variant.source(mode, variant.vec4_loads(k32, n32, lda));
            pipeline(ctx, &name, source, &variant.constants(), trusted)
        });
        let table = work.op.uses_table().then(|| {
            storage(
                ctx,
                "table",
                buffer_bytes(mode, work.shape.vocab as u64 * k),
                usage,
            )
        });
        let w = work
            .op
            .uses_weight()
            .then(|| storage(ctx, "weight", buffer_bytes(mode, k * n), usage));
        let max_groups = ctx.limits.max_compute_workgroups_per_dimension;

        let mut chunks = Vec::with_capacity(plan.chunks as usize);
        let mut first_row = 0;
        while first_row < m {
            let rows = plan.rows_per_chunk.min(m - first_row) as u32;
            let y = storage(
                ctx,
                "output",
                buffer_bytes(mode, rows as u64 * ldy as u64),
                wgpu::BufferUsages::COPY_SRC,
            );
            let ids = work
                .op
                .uses_table()
                .then(|| storage(ctx, "ids", rows as u64 * 4, usage));
            // matmul reads x as uploaded (stride k); embed-project's gather writes it with stride ldy.
            let x = match work.op {
                Op::Embedding => None,
                Op::Matmul => Some(storage(
                    ctx,
                    "activations",
                    buffer_bytes(mode, rows as u64 * k),
                    usage,
                )),
                Op::EmbedProject => Some(storage(
                    ctx,
                    "activations",
                    buffer_bytes(mode, rows as u64 * ldy as u64),
                    usage,
                )),
            };
            let mut uniforms = 0;
            let gather_bind = match (&gather, &table, &ids) {
                (Some(p), Some(t), Some(i)) => {
                    let out = x.as_ref().unwrap_or(&y);
                    // Invocations per row: element pairs, or whole words (whose
                    // rows are unpadded: ldy == k whenever a row is whole words).
                    let (units, params) = match gather_variant {
                        GatherVariant::Pairs => {
                            let pairs = k32.div_ceil(2);
                            (pairs, [rows, k32, ldy, pairs])
                        }
                        v => {
                            let words = k32 * mode.element_bytes() / v.word_bytes();
                            (
                                words,
                                [rows, words, ldy * mode.element_bytes() / v.word_bytes(), 0],
                            )
                        }
                    };
                    let grid = fold_grid(
                        (rows as u64 * units as u64).div_ceil(GATHER_WORKGROUP as u64),
                        max_groups,
                    );
                    let [a, b, c, d] = params;
                    let params = uniform(ctx, [a, b, c, d, grid[0], 0, 0, 0]);
                    uniforms += 32;
                    Some((bind(ctx, p, [(0, t), (1, i), (2, out), (3, &params)]), grid))
                }
                _ => None,
            };
            let matmul_bind = match (&matmul, &w, &x) {
                (Some(p), Some(wb), Some(xb)) => {
                    let (bm, bn) = variant.tile();
                    let grid = [n32.div_ceil(bn), rows.div_ceil(bm)];
                    let params = uniform(ctx, [rows, n32, k32, lda, ldy, 0, 0, 0]);
                    uniforms += 32;
                    Some((
                        bind(ctx, p, [(0, xb), (1, wb), (2, &y), (3, &params)]),
                        grid,
                    ))
                }
                _ => None,
            };
            chunks.push(Chunk {
                first_row,
                rows,
                ids,
                x,
                y,
                gather: gather_bind,
                matmul: matmul_bind,
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
            .then(|| TimestampQueries::new(&ctx.device, &ctx.queue));
        let mut kernel = GpuKernel {
            ctx,
            work,
            mode,
            inputs,
            ldy,
            table,
            w,
            chunks,
            gather,
            accumulation: if work.op.uses_weight() && variant.f16_acc {
                Accumulation::F16
            } else {
                Accumulation::F32
            },
            matmul,
            queries,
            staging,
            flush: None,
            host: Vec::new(),
        };
        kernel.upload()?;
        Ok(kernel)
    }

    /// Writes the inputs into the device buffers and waits until they are there.
    fn upload(&mut self) -> Result<()> {
        let (q, inputs, mode) = (&self.ctx.queue, self.inputs, self.mode);
        let k = self.work.shape.dim as usize;
        if let Some(t) = &self.table {
            q.write_buffer(t, 0, &encode(mode, &inputs.table));
        }
        if let Some(w) = &self.w {
            q.write_buffer(w, 0, &encode(mode, &inputs.w));
        }
        for c in &self.chunks {
            let rows = c.first_row as usize..c.first_row as usize + c.rows as usize;
            if let Some(ids) = &c.ids {
                q.write_buffer(ids, 0, bytemuck::cast_slice(&inputs.ids[rows.clone()]));
            }
            if let (Op::Matmul, Some(x)) = (self.work.op, &c.x) {
                q.write_buffer(x, 0, &encode(mode, &inputs.x[rows.start * k..rows.end * k]));
            }
        }
        q.submit([]);
        self.ctx.wait()
    }

    /// Records every dispatch of one execution of the op into `pass`.
    fn encode_op(&self, pass: &mut wgpu::ComputePass<'_>) {
        for c in &self.chunks {
            if let (Some(p), Some((bg, [x, y]))) = (&self.gather, &c.gather) {
                pass.set_pipeline(p);
                pass.set_bind_group(0, bg, &[]);
                pass.dispatch_workgroups(*x, *y, 1);
            }
            // Within a pass wgpu orders dispatches that share a buffer, so the
            // matmul sees the rows the gather just wrote.
            if let (Some(p), Some((bg, [x, y]))) = (&self.matmul, &c.matmul) {
                pass.set_pipeline(p);
                pass.set_bind_group(0, bg, &[]);
                pass.dispatch_workgroups(*x, *y, 1);
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
                label: Some(self.work.op.name()),
                timestamp_writes: self.queries.as_ref().map(|q| q.pass_writes()),
            });
            for _ in 0..reps {
                self.encode_op(&mut pass);
            }
        }
        if let Some(q) = &self.queries {
            q.resolve(&mut encoder);
        }
        let commands = encoder.finish();
        // Wall time is submit to completion: what a caller waits for.
        let start = Instant::now();
        self.ctx.queue.submit([commands]);
        self.ctx.wait()?;
        let wall_ns = start.elapsed().as_nanos() as u64;
        self.check_device("running the op")?;
        let device_ns = match &self.queries {
            Some(q) => q.read_ns(&self.ctx.device)?,
            None => None,
        };
        Ok(Sample { wall_ns, device_ns })
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

impl Kernel for GpuKernel<'_> {
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

    fn run_phases(&mut self) -> Result<Phases> {
        let t = Instant::now();
        self.upload()?;
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
        let (m, _, n) = self.work.mkn();
        let (n, ldy) = (n as usize, self.ldy as usize);
        let mut out = Vec::with_capacity((m as usize) * n);
        let mut offset = 0;
        for c in &self.chunks {
            let bytes = &self.host[offset..offset + c.y.size() as usize];
            for r in 0..c.rows as usize {
                let row = r * ldy;
                match self.mode {
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
                }
            }
            offset += c.y.size() as usize;
        }
        Ok(out)
    }

    fn memory(&self) -> MemoryUse {
        let size = |b: &Option<wgpu::Buffer>| b.as_ref().map_or(0, |b| b.size());
        let mut mem = MemoryUse {
            table: size(&self.table),
            weights: size(&self.w),
            other: self.staging.size()
                + size(&self.flush)
                + self.queries.as_ref().map_or(0, |_| QUERY_BYTES),
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
                (CACHE_FLUSH_BYTES as u64).min(limit) / 4 * 4,
                wgpu::BufferUsages::COPY_DST,
            )
        });
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        encoder.clear_buffer(flush, 0, None);
        self.ctx.queue.submit([encoder.finish()]);
        self.ctx.wait()
    }
}

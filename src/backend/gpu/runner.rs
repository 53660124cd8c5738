//! The one GPU runner: an op declares a [`Program`] — its buffers (the
//! model's data, a request's inputs, intermediates, output chunks) and the
//! sequence of dispatches that compute it — and [`GpuRun`] builds it on the
//! device and runs it as a [`PreparedOp`]: uploads (the model once, a
//! request before each one), the timed submission with timestamps around
//! every dispatch of one or many executions, readback through a small
//! staging buffer, output rows decoded from the storage mode, the bounds
//! guard's sentinels, cache flushes, and the memory the op holds by buffer
//! role. The runner never knows what an op means.

use std::time::Instant;

use bytemuck::Pod;
use half::{bf16, f16};

use super::context::GpuContext;
use super::readback::map_read_into;
use super::storage::{StorageMode, GUARD_SENTINEL};
use super::timestamps::{submit_timed, TimestampQueries, QUERY_BYTES};
use crate::error::{LabError, Result};
use crate::prepared_op::{
    Accumulation, MemoryUse, OneTimeCosts, Phases, PreparedOp, Sample, TimingMethod,
    CACHE_FLUSH_BYTES,
};

/// Largest piece of output copied to the host at once: readback goes through a
/// staging buffer this size, not one as large as the output, so measured memory
/// stays close to the model.
const STAGING_BYTES: u64 = 4 << 20;

/// What a buffer holds and when it is written.
pub enum Fill<'a> {
    /// The model's data (a table, a weight): written once, when the op is
    /// prepared, as a server loads a model; timed as the model load.
    Model(Box<dyn Fn() -> Vec<u8> + 'a>),
    /// A request's inputs (token ids, activations): written before every
    /// end-to-end request.
    Request(Box<dyn Fn() -> Vec<u8> + 'a>),
    /// Written by the op's own dispatches (an intermediate between passes).
    Scratch,
    /// Output rows, read back in the order the program lists them.
    Output(OutputRows),
}

/// How an output buffer holds its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputRows {
    /// Rows in this buffer.
    pub rows: u32,
    /// Elements of a row the op returns.
    pub cols: u32,
    /// Elements from one row to the next (padded to whole words).
    pub stride: u32,
    /// How the elements are stored.
    pub mode: StorageMode,
    /// Bytes of sentinel words after the rows when the bounds guard is on:
    /// as far past its last row as a kernel's tile could write.
    pub guard_tail: u64,
}

impl OutputRows {
    /// Bytes the rows take, in whole words.
    fn rows_bytes(&self) -> u64 {
        buffer_bytes(self.mode, self.rows as u64 * self.stride as u64)
    }
}

/// Bytes a buffer of `elems` elements takes in `mode`, rounded up to whole
/// 4-byte words (the copy and binding granularity).
pub fn buffer_bytes(mode: StorageMode, elems: u64) -> u64 {
    (elems * mode.element_bytes() as u64).div_ceil(4) * 4
}

/// One buffer of a program.
pub struct Buffer<'a> {
    /// Its role in the op's memory (`table`, `weights`, `ids`,
    /// `activations`, `output`, ...): what `memory` counts it as.
    pub role: &'static str,
    /// Bytes (a multiple of 4).
    pub size: u64,
    /// What it holds.
    pub fill: Fill<'a>,
}

/// One dispatch: a pipeline, its bindings, its uniform parameters and grid.
pub struct Dispatch {
    /// Index into [`Program::pipelines`].
    pub pipeline: usize,
    /// Storage bindings: (binding, index into [`Program::buffers`]).
    pub buffers: Vec<(u32, usize)>,
    /// The uniform parameters' binding and bytes (a `#[repr(C)]` Pod struct
    /// matching the kernel's `Params`).
    pub uniform: (u32, Vec<u8>),
    /// Workgroups along x and y.
    pub grid: [u32; 2],
}

impl Dispatch {
    /// A dispatch of `pipeline` over `grid` with these storage bindings and
    /// uniform parameters `params` at `uniform_binding`.
    pub fn new<P: Pod>(
        pipeline: usize,
        buffers: Vec<(u32, usize)>,
        uniform_binding: u32,
        params: P,
        grid: [u32; 2],
    ) -> Self {
        Dispatch {
            pipeline,
            buffers,
            uniform: (uniform_binding, bytemuck::bytes_of(&params).to_vec()),
            grid,
        }
    }
}

/// Everything an op runs on the GPU, decided before any buffer exists.
pub struct Program<'a> {
    /// The pass's label (the op's name).
    pub label: &'static str,
    /// What runs, for the record's `kernel`.
    pub kernel: String,
    /// Compiled pipelines the dispatches use.
    pub pipelines: Vec<wgpu::ComputePipeline>,
    /// The buffers.
    pub buffers: Vec<Buffer<'a>>,
    /// One execution: every dispatch in order. Within a pass wgpu orders
    /// dispatches that share a buffer, so a later pass sees what an earlier
    /// one wrote.
    pub dispatches: Vec<Dispatch>,
    /// How the op accumulates (its verification tolerance).
    pub accumulation: Accumulation,
    /// Outputs get a guarded tail of sentinel words.
    pub bounds_guard: bool,
    /// Planning and compiling the program took.
    pub costs: OneTimeCosts,
}

/// A program built on the device, with its inputs resident.
pub struct GpuRun<'a> {
    ctx: &'a GpuContext,
    program: Program<'a>,
    buffers: Vec<wgpu::Buffer>,
    binds: Vec<wgpu::BindGroup>,
    uniform_bytes: u64,
    queries: Option<TimestampQueries>,
    staging: wgpu::Buffer,
    flush: Option<wgpu::Buffer>,
    /// Output bytes as the device holds them (padded rows), buffer after buffer.
    host: Vec<u8>,
    /// Time the model's data took to reach the device.
    model_load_ns: u64,
}

fn storage(ctx: &GpuContext, label: &str, size: u64, extra: wgpu::BufferUsages) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: wgpu::BufferUsages::STORAGE | extra,
        mapped_at_creation: false,
    })
}

/// Checks the sentinel tail of one guarded output (`tail`, the bytes after
/// its rows): a changed last word is a load past an input (the guarded loads'
/// signal), any other a write past the output.
fn check_guard(tail: &[u8], output: usize, rows: u32) -> Result<()> {
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
            "bounds guard: the kernel wrote {written} of the {} sentinel words after output chunk {output} ({rows} rows): a store past its last row",
            body.len()
        )));
    }
    if last != GUARD_SENTINEL {
        return Err(LabError::Gpu(format!(
            "bounds guard: a load read past its input in output chunk {output} ({rows} rows)"
        )));
    }
    Ok(())
}

/// Folds `groups` workgroups into an (x, y) grid within `max` per dimension.
pub fn fold_grid(groups: u64, max: u32) -> [u32; 2] {
    let x = groups.clamp(1, max as u64);
    [x as u32, groups.div_ceil(x).max(1) as u32]
}

/// Decodes `n` elements of each of `rows` rows, `stride` apart, stored in
/// `mode`, onto `out`.
fn decode_rows(
    bytes: &[u8],
    rows: u32,
    n: usize,
    stride: usize,
    mode: StorageMode,
    out: &mut Vec<f32>,
) {
    for r in 0..rows as usize {
        let row = r * stride;
        match mode.activation() {
            StorageMode::F32 => out.extend(
                bytes[row * 4..(row + n) * 4]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            StorageMode::PackedBf16 => out.extend(
                bytes[row * 2..(row + n) * 2]
                    .chunks_exact(2)
                    .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
            _ => out.extend(
                bytes[row * 2..(row + n) * 2]
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
        }
    }
}

impl<'a> GpuRun<'a> {
    /// Builds `program` on `ctx`: its buffers (guarded outputs filled with
    /// sentinels), uniforms and bind groups; then loads the model's data and
    /// the first request's inputs.
    pub fn new(ctx: &'a GpuContext, program: Program<'a>) -> Result<Self> {
        let guard = program.bounds_guard;
        let buffers: Vec<wgpu::Buffer> = program
            .buffers
            .iter()
            .map(|b| match &b.fill {
                Fill::Model(_) | Fill::Request(_) | Fill::Scratch => {
                    storage(ctx, b.role, b.size, wgpu::BufferUsages::COPY_DST)
                }
                Fill::Output(rows) => {
                    // A guarded output has a tail of sentinels inside its binding,
                    // so a write past the rows lands on it instead of being dropped
                    // by robust buffer access.
                    if guard {
                        let size = b.size + rows.guard_tail;
                        let y = storage(
                            ctx,
                            b.role,
                            size,
                            wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                        );
                        let sentinels = GUARD_SENTINEL.to_le_bytes().repeat(size as usize / 4);
                        ctx.queue.write_buffer(&y, 0, &sentinels);
                        y
                    } else {
                        storage(ctx, b.role, b.size, wgpu::BufferUsages::COPY_SRC)
                    }
                }
            })
            .collect();
        let mut uniform_bytes = 0;
        let binds = program
            .dispatches
            .iter()
            .map(|d| {
                // Not `create_buffer_init`: it panics when the device is lost; a
                // plain buffer and a queued write fail into the error scope instead.
                let params = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("params"),
                    size: d.uniform.1.len() as u64,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                ctx.queue.write_buffer(&params, 0, &d.uniform.1);
                uniform_bytes += params.size();
                let mut entries: Vec<wgpu::BindGroupEntry> = d
                    .buffers
                    .iter()
                    .map(|&(binding, i)| wgpu::BindGroupEntry {
                        binding,
                        resource: buffers[i].as_entire_binding(),
                    })
                    .collect();
                entries.push(wgpu::BindGroupEntry {
                    binding: d.uniform.0,
                    resource: params.as_entire_binding(),
                });
                ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &program.pipelines[d.pipeline].get_bind_group_layout(0),
                    entries: &entries,
                })
            })
            .collect();
        let largest_output = program
            .buffers
            .iter()
            .zip(&buffers)
            .filter(|(b, _)| matches!(b.fill, Fill::Output(_)))
            .map(|(_, y)| y.size())
            .max()
            .unwrap_or(4);
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
        let mut run = GpuRun {
            ctx,
            program,
            buffers,
            binds,
            uniform_bytes,
            queries,
            staging,
            flush: None,
            host: Vec::new(),
            model_load_ns: 0,
        };
        run.model_load_ns = run.load_model()?;
        run.upload_request()?;
        Ok(run)
    }

    /// Places the model's data on the device, once, as a server does when it
    /// loads a model. Returns the nanoseconds it took (encoded, written and
    /// waited for).
    fn load_model(&mut self) -> Result<u64> {
        let t = Instant::now();
        for (b, buffer) in self.program.buffers.iter().zip(&self.buffers) {
            if let Fill::Model(bytes) = &b.fill {
                self.ctx.queue.write_buffer(buffer, 0, &bytes());
            }
        }
        self.ctx.queue.submit([]);
        self.ctx.wait()?;
        Ok(t.elapsed().as_nanos() as u64)
    }

    /// Writes one request's inputs into the device buffers and waits until
    /// they are there.
    fn upload_request(&mut self) -> Result<()> {
        for (b, buffer) in self.program.buffers.iter().zip(&self.buffers) {
            if let Fill::Request(bytes) = &b.fill {
                self.ctx.queue.write_buffer(buffer, 0, &bytes());
            }
        }
        self.ctx.queue.submit([]);
        self.ctx.wait()
    }

    /// Records every dispatch of one execution into `pass`.
    fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        let mut current = None;
        for (d, bind) in self.program.dispatches.iter().zip(&self.binds) {
            if current != Some(d.pipeline) {
                pass.set_pipeline(&self.program.pipelines[d.pipeline]);
                current = Some(d.pipeline);
            }
            pass.set_bind_group(0, bind, &[]);
            pass.dispatch_workgroups(d.grid[0], d.grid[1], 1);
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
                label: Some(self.program.label),
                timestamp_writes: self.queries.as_ref().map(|q| q.pass_writes()),
            });
            for _ in 0..reps {
                self.encode(&mut pass);
            }
        }
        let sample = submit_timed(self.ctx, self.queries.as_ref(), encoder.finish())?;
        self.check_device("running the op")?;
        Ok(sample)
    }

    /// The output buffers, in row order, with their layouts.
    fn outputs(&self) -> impl Iterator<Item = (&wgpu::Buffer, OutputRows)> {
        self.program
            .buffers
            .iter()
            .zip(&self.buffers)
            .filter_map(|(b, y)| match b.fill {
                Fill::Output(rows) => Some((y, rows)),
                _ => None,
            })
    }

    /// Copies every output buffer to `self.host` through the staging buffer.
    fn read_back(&mut self) -> Result<()> {
        let outputs: Vec<wgpu::Buffer> = self.outputs().map(|(y, _)| y.clone()).collect();
        let total: u64 = outputs.iter().map(|y| y.size()).sum();
        self.host.clear();
        self.host.reserve(total as usize);
        let mut piece = Vec::new();
        for y in &outputs {
            let mut offset = 0;
            while offset < y.size() {
                let size = (y.size() - offset).min(self.staging.size());
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                encoder.copy_buffer_to_buffer(y, offset, &self.staging, 0, size);
                self.ctx.queue.submit([encoder.finish()]);
                map_read_into(&self.ctx.device, &self.staging, size, &mut piece)?;
                self.host.extend_from_slice(&piece);
                offset += size;
            }
        }
        self.check_device("reading the output back")
    }
}

impl PreparedOp for GpuRun<'_> {
    fn describe(&self) -> String {
        self.program.kernel.clone()
    }

    fn one_time_costs(&self) -> Option<OneTimeCosts> {
        Some(self.program.costs)
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
        let guard = self.program.bounds_guard;
        let layouts: Vec<(u64, OutputRows)> = self.outputs().map(|(y, r)| (y.size(), r)).collect();
        let mut out = Vec::new();
        let mut offset = 0;
        for (i, (size, rows)) in layouts.into_iter().enumerate() {
            let bytes = &self.host[offset..offset + size as usize];
            if guard {
                check_guard(&bytes[rows.rows_bytes() as usize..], i, rows.rows)?;
            }
            decode_rows(
                bytes,
                rows.rows,
                rows.cols as usize,
                rows.stride as usize,
                rows.mode,
                &mut out,
            );
            offset += size as usize;
        }
        Ok(out)
    }

    fn memory(&self) -> MemoryUse {
        let mut mem = MemoryUse {
            // Not `flush`: the harness's cache-flush buffer, no part of the op.
            other: self.staging.size()
                + self.queries.as_ref().map_or(0, |_| QUERY_BYTES)
                + self.uniform_bytes,
            ..Default::default()
        };
        for (b, buffer) in self.program.buffers.iter().zip(&self.buffers) {
            mem.parts.add(b.role, buffer.size());
        }
        if let Some(report) = self.ctx.device.generate_allocator_report() {
            mem.allocator_allocated = Some(report.total_allocated_bytes);
            mem.allocator_reserved = Some(report.total_reserved_bytes);
        }
        mem.summed()
    }

    fn accumulation(&self) -> Accumulation {
        self.program.accumulation
    }

    fn output_chunks(&self) -> Vec<u32> {
        self.outputs().map(|(_, rows)| rows.rows).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_tail_tells_a_store_from_a_load() {
        let s = GUARD_SENTINEL.to_le_bytes();
        let tail: Vec<u8> = s.repeat(4);
        assert!(check_guard(&tail, 0, 3).is_ok());
        let mut stored = tail.clone();
        stored[4] = 0;
        let e = check_guard(&stored, 2, 3).unwrap_err().to_string();
        assert!(
            e.contains("a store past its last row") && e.contains("chunk 2"),
            "{e}"
        );
        let mut loaded = tail.clone();
        loaded[12] = 0;
        let e = check_guard(&loaded, 0, 3).unwrap_err().to_string();
        assert!(e.contains("a load read past its input"), "{e}");
    }

    #[test]
    fn grids_fold_within_the_limit_and_rows_decode_from_every_mode() {
        assert_eq!(fold_grid(10, 65535), [10, 1]);
        assert_eq!(fold_grid(65536, 65535), [65535, 2]);
        assert_eq!(fold_grid(0, 65535), [1, 1]);
        let mut out = Vec::new();
        // Two rows of two f16 values, stride 3 (one padding element each).
        let halves: Vec<u8> = [1.0f32, 2.0, 0.0, 3.0, 4.0, 0.0]
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        decode_rows(&halves, 2, 2, 3, StorageMode::PackedF16, &mut out);
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0]);
        out.clear();
        let bf: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect();
        decode_rows(&bf, 1, 2, 2, StorageMode::PackedBf16, &mut out);
        assert_eq!(out, [1.5, -2.0]);
        assert_eq!(buffer_bytes(StorageMode::F16, 3), 8);
        assert_eq!(buffer_bytes(StorageMode::F32, 3), 12);
    }
}

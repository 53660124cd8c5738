//! What the device probes time with: a [`Probe`] (the device, its timestamp
//! queries, a uniform of parameters, the probe kernels' bind layout), how a
//! probe's loop is deepened until a run is long enough to time, and buffers.
//! The ceilings (`ceilings.rs`) and the cooperative-matrix probe
//! (`coop_probe.rs`) share them.

use super::context::GpuContext;
use super::timestamps::{submit_timed, TimestampQueries};
use crate::error::Result;

/// What every probe times with: the device, its timestamp queries, and a
/// 16-byte uniform of parameters at binding 2.
pub(super) struct Probe<'a> {
    pub(super) ctx: &'a GpuContext,
    queries: Option<TimestampQueries>,
    params: wgpu::Buffer,
}

impl<'a> Probe<'a> {
    /// A probe on `ctx`, timed by `queries` where the device has them, with
    /// its parameters in `params` (16 bytes, uniform).
    pub(super) fn new(
        ctx: &'a GpuContext,
        queries: Option<TimestampQueries>,
        params: wgpu::Buffer,
    ) -> Self {
        Probe {
            ctx,
            queries,
            params,
        }
    }

    /// Runs one dispatch and returns its seconds (device time if available).
    pub(super) fn time(
        &self,
        pipeline: &wgpu::ComputePipeline,
        bind: &wgpu::BindGroup,
        groups: u32,
    ) -> Result<f64> {
        self.time_n(pipeline, bind, groups, 1)
    }

    /// Runs `n` dispatches in one pass; seconds for all of them.
    pub(super) fn time_n(
        &self,
        pipeline: &wgpu::ComputePipeline,
        bind: &wgpu::BindGroup,
        groups: u32,
        n: u32,
    ) -> Result<f64> {
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("probe"),
                timestamp_writes: self.queries.as_ref().map(|q| q.pass_writes()),
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, bind, &[]);
            for _ in 0..n {
                pass.dispatch_workgroups(groups, 1, 1);
            }
        }
        let sample = submit_timed(self.ctx, self.queries.as_ref(), encoder.finish())?;
        Ok(sample.best_ns() as f64 * 1e-9)
    }

    pub(super) fn set_params(&self, words: [u32; 4]) {
        self.ctx
            .queue
            .write_buffer(&self.params, 0, bytemuck::cast_slice(&words));
    }

    /// `pipeline`'s bind group: `input` at binding 0, `output` at 1, the
    /// parameters at 2 (every probe kernel's layout).
    pub(super) fn bind(
        &self,
        pipeline: &wgpu::ComputePipeline,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
    ) -> wgpu::BindGroup {
        self.ctx
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: input.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: output.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: self.params.as_entire_binding(),
                    },
                ],
            })
    }

    /// Whether the probes are timed by the device's timestamps.
    pub(super) fn timestamped(&self) -> bool {
        self.queries.is_some()
    }

    /// How the probes are timed, in words.
    pub(super) fn timing(&self) -> &'static str {
        if self.queries.is_some() {
            "pass timestamps"
        } else {
            "wall time"
        }
    }
}

/// Deepens a probe's loop from `iters` steps (at most `max`) until one run,
/// timed by `time` in seconds, takes ~10 ms, so launch costs do not count;
/// then the best of three runs at that depth: the steps and the seconds.
pub(super) fn deepen(
    mut iters: u32,
    max: u32,
    mut time: impl FnMut(u32) -> Result<f64>,
) -> Result<(u32, f64)> {
    let mut best = loop {
        let t = time(iters)?;
        if t >= 0.005 || iters >= max {
            break t;
        }
        iters = (iters as f64 * (0.01 / t.max(1e-7)))
            .min(max as f64)
            .max(iters as f64 * 2.0) as u32;
    };
    for _ in 0..2 {
        best = best.min(time(iters)?);
    }
    Ok((iters, best))
}

pub(super) fn buffer(
    ctx: &GpuContext,
    label: &str,
    size: u64,
    usage: wgpu::BufferUsages,
) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage,
        mapped_at_creation: false,
    })
}

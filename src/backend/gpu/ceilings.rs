//! The GPU's ceilings (`shaders/probes.wgsl`): a vec4 copy of the largest buffer
//! one binding allows (up to 256 MiB), and independent vec4 FMA chains sized to
//! run for at least ~10 ms. Timed with pass timestamps where the device has them.
//! Beside them, what launching work costs ([`DispatchCosts`]): an empty
//! dispatch, many dispatches in one pass, a submission round trip and a
//! readback round trip.

use std::time::Instant;

use super::context::GpuContext;
use super::probe::{buffer, deepen, Probe};
use super::readback::map_read;
use super::timestamps::TimestampQueries;
use crate::backend::info::{Ceilings, DispatchCosts};
use crate::error::{LabError, Result};

/// Largest copy probed; more adds nothing once caches are far exceeded.
const MAX_COPY_BYTES: u64 = 256 << 20;
/// FLOPs per invocation and chain step: 8 chains x vec4 x (mul + add).
const FLOPS_PER_STEP: f64 = 8.0 * 4.0 * 2.0;

/// Probes the device behind `ctx`; buffers stay within `binding_limit`.
pub(super) fn probe(ctx: &GpuContext, binding_limit: u64) -> Result<Ceilings> {
    let bytes = MAX_COPY_BYTES.min(binding_limit) / 16 * 16;
    let words = (bytes / 16) as u32;
    let src = buffer(
        ctx,
        "probe src",
        bytes,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
    );
    let dst = buffer(
        ctx,
        "probe dst",
        bytes,
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    );
    let check = buffer(
        ctx,
        "probe check",
        4096,
        wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
    );
    let params = buffer(
        ctx,
        "probe params",
        16,
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    );
    // A known pattern at the start, to check that the copy really copied.
    let pattern: Vec<f32> = (0..1024).map(|i| i as f32 * 0.5 + 1.0).collect();
    ctx.queue
        .write_buffer(&src, 0, bytemuck::cast_slice(&pattern));

    let module = ctx
        .device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("probes"),
            source: wgpu::ShaderSource::Wgsl(include_str!("../../../shaders/probes.wgsl").into()),
        });
    let pipeline = |entry: &str| {
        ctx.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
    };
    let (copy, fma) = (pipeline("copy"), pipeline("fma_chain"));
    let queries = ctx
        .features
        .contains(wgpu::Features::TIMESTAMP_QUERY)
        .then(|| TimestampQueries::new(&ctx.device, ctx.timestamp_period_ns));
    let probe = Probe::new(ctx, queries, params);
    let timing = probe.timing();
    let (copy_bind, fma_bind) = (probe.bind(&copy, &src, &dst), probe.bind(&fma, &src, &dst));

    // Copy: a grid-stride loop over every word.
    let groups = words
        .div_ceil(256)
        .min(ctx.limits.max_compute_workgroups_per_dimension);
    probe.set_params([words, 0, groups * 256, 0]);
    let mut copy_s = f64::MAX;
    for _ in 0..5 {
        copy_s = copy_s.min(probe.time(&copy, &copy_bind, groups)?);
    }
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(&dst, 0, &check, 0, 4096);
    ctx.queue.submit([encoder.finish()]);
    let copied = map_read(&ctx.device, &check, 4096)?;
    if copied.as_slice() != bytemuck::cast_slice::<f32, u8>(&pattern) {
        return Err(LabError::Gpu(
            "the copy probe did not copy its input".into(),
        ));
    }

    // FMA: at most one invocation per word (each writes its own word); deepen
    // the chains until a run takes ~10 ms, so launch overhead does not count.
    let fma_groups = (words / 256).clamp(1, 4096);
    let (iters, fma_s) = deepen(64, 1 << 22, |iters| {
        probe.set_params([words, iters, 0, 0]);
        probe.time(&fma, &fma_bind, fma_groups)
    })?;
    let flops = fma_groups as f64 * 256.0 * iters as f64 * FLOPS_PER_STEP;
    let dispatch = dispatch_costs(&probe, &fma, &fma_bind, &dst, &check)?;
    // An experimental path: its failure is said, not the ceilings' end.
    let (coop, coop_note) = match super::coop_probe::probe(&probe) {
        Ok(c) => (c, String::new()),
        Err(e) => (None, format!("; the cooperative-matrix probe failed: {e}")),
    };
    Ok(Ceilings {
        dispatch: Some(dispatch),
        cache_copy_gbps: None,
        coop,
        copy_gbps: 2.0 * bytes as f64 / copy_s / 1e9,
        fma_gflops: flops / fma_s / 1e9,
        method: format!(
            "vec4 copy of {} MiB, best of 5; {} invocations x {iters} steps of 8 vec4 FMA chains, best of 3; {timing}{coop_note}",
            bytes >> 20,
            fma_groups * 256
        ),
    })
}

/// Dispatches in the "many dispatches in one pass" probe.
const DISPATCHES_PER_PASS: u32 = 100;
/// Repetitions of each dispatch-cost probe; the median is kept.
const DISPATCH_REPS: usize = 21;

/// What launching work costs on this device: the fixed costs below which a
/// small op cannot go, whatever its size.
fn dispatch_costs(
    probe: &Probe<'_>,
    pipeline: &wgpu::ComputePipeline,
    bind: &wgpu::BindGroup,
    dst: &wgpu::Buffer,
    check: &wgpu::Buffer,
) -> Result<DispatchCosts> {
    let ctx = probe.ctx;
    // An FMA chain of no steps in one workgroup: a dispatch that does nothing.
    probe.set_params([256, 0, 0, 0]);
    let median_us = |f: &mut dyn FnMut() -> Result<f64>| -> Result<f64> {
        let mut v = Vec::with_capacity(DISPATCH_REPS);
        for _ in 0..DISPATCH_REPS {
            v.push(f()? * 1e6);
        }
        v.sort_by(f64::total_cmp);
        Ok(v[v.len() / 2])
    };
    let empty_dispatch_us = median_us(&mut || probe.time(pipeline, bind, 1))?;
    let per_dispatch_in_pass_us = median_us(&mut || {
        probe
            .time_n(pipeline, bind, 1, DISPATCHES_PER_PASS)
            .map(|s| s / DISPATCHES_PER_PASS as f64)
    })?;
    let submit_round_trip_us = median_us(&mut || {
        let start = Instant::now();
        ctx.queue.submit([ctx
            .device
            .create_command_encoder(&Default::default())
            .finish()]);
        ctx.wait()?;
        Ok(start.elapsed().as_secs_f64())
    })?;
    let readback_round_trip_us = median_us(&mut || {
        let start = Instant::now();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(dst, 0, check, 0, 4);
        ctx.queue.submit([encoder.finish()]);
        map_read(&ctx.device, check, 4)?;
        Ok(start.elapsed().as_secs_f64())
    })?;
    Ok(DispatchCosts {
        empty_dispatch_us,
        per_dispatch_in_pass_us,
        submit_round_trip_us,
        readback_round_trip_us,
        method: format!(
            "medians of {DISPATCH_REPS}: one empty dispatch in its own pass ({}); {DISPATCHES_PER_PASS} empty dispatches in one pass, per dispatch; an empty submission to completion (host wall); a 4-byte copy, submit and map (host wall)",
            if probe.timestamped() { "pass timestamps" } else { "host wall" }
        ),
    })
}

//! The cooperative matrices' ceiling (`shaders/coop_probe.wgsl`): f16 x f16 ->
//! f32 multiply-adds per second through wgpu's cooperative-matrix extension,
//! with the operands in registers and with them reloaded from workgroup
//! memory every step. Beside the vendor library's HGEMM it tells how much of
//! the coop matmul's distance is the kernel's and how much the path's (naga's
//! translation, the driver's). Every run checks its own result (exact in f32).

use super::readback::map_read;
use super::support::{coop_fragment, coop_status, subgroup_max};
use super::timestamps::{submit_timed, TimestampQueries};
use super::{GpuContext, ShaderChecks};
use crate::backend::CoopCeiling;
use crate::error::{LabError, Result};

/// Subgroups per workgroup.
const SUBGROUPS: u32 = 4;
/// Workgroups per dispatch: several waves on the largest GPUs.
const GROUPS: u32 = 1024;
/// Independent accumulators per subgroup, each a multiply-add a step.
const ACCUMULATORS: f64 = 8.0;

/// The probe's source for fragments `f` wide.
fn source(f: u32) -> String {
    format!(
        "enable f16;\nenable wgpu_cooperative_matrix;\nconst F: u32 = {f}u;\nconst NSG: u32 = {SUBGROUPS}u;\n{}",
        include_str!("../../../shaders/coop_probe.wgsl")
            .replace("coop_mat_a", &format!("coop_mat{f}x{f}<f16, A>"))
            .replace("coop_mat_b", &format!("coop_mat{f}x{f}<f16, B>"))
            .replace("coop_mat_c()", &format!("coop_mat{f}x{f}<f32, C>()"))
    )
}

/// The value every subgroup writes after `iters` steps with `f`-wide fragments.
pub(super) fn expected(iters: u32, f: u32) -> f32 {
    ACCUMULATORS as f32 * iters as f32 * f as f32 / 16.0
}

/// Probes the cooperative matrices on `ctx`; `Ok(None)` where the adapter
/// offers none the coop matmul could use.
pub(super) fn probe(ctx: &GpuContext) -> Result<Option<CoopCeiling>> {
    if coop_status(ctx).is_err() {
        return Ok(None);
    }
    let Some(f) = coop_fragment(ctx) else {
        return Ok(None);
    };
    let wg = SUBGROUPS * subgroup_max(ctx);
    let usage = |u| wgpu::BufferUsages::STORAGE | u;
    let buffer = |label: &str, size: u64, usage: wgpu::BufferUsages| {
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    let out_bytes = (GROUPS * SUBGROUPS) as u64 * 4;
    let inp = buffer("coop probe in", 16, usage(wgpu::BufferUsages::COPY_DST));
    let out = buffer(
        "coop probe out",
        out_bytes,
        usage(wgpu::BufferUsages::COPY_SRC),
    );
    let check = buffer(
        "coop probe check",
        out_bytes,
        wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
    );
    let params = buffer(
        "coop probe params",
        16,
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    );
    ctx.queue.write_buffer(
        &inp,
        0,
        bytemuck::cast_slice(&[1.0f32 / 16.0, 1.0, 0.0, 0.0]),
    );
    let queries = ctx
        .features
        .contains(wgpu::Features::TIMESTAMP_QUERY)
        .then(|| TimestampQueries::new(&ctx.device, ctx.timestamp_period_ns));

    let mut rates = [0.0; 2];
    let mut steps = [0; 2];
    for (slot, lds) in [false, true].into_iter().enumerate() {
        let constants = [("WG", wg as f64), ("LDS", if lds { 1.0 } else { 0.0 })];
        let name = if lds {
            "coop probe (lds)"
        } else {
            "coop probe"
        };
        let pipeline = ctx
            .pipeline(name, source(f), &constants, ShaderChecks::NoLoopBounding)?
            .pipeline;
        let bind = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: inp.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: out.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: params.as_entire_binding(),
                },
            ],
        });
        let time = |iters: u32| -> Result<f64> {
            ctx.queue
                .write_buffer(&params, 0, bytemuck::cast_slice(&[iters, 0, 0, 0]));
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(name),
                    timestamp_writes: queries.as_ref().map(|q| q.pass_writes()),
                });
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bind, &[]);
                pass.dispatch_workgroups(GROUPS, 1, 1);
            }
            let sample = submit_timed(ctx, queries.as_ref(), encoder.finish())?;
            Ok(sample.best_ns() as f64 * 1e-9)
        };
        let (iters, best) = super::ceilings::deepen(16, 1 << 20, time)?;
        check_result(ctx, &out, &check, iters, f, name)?;
        let flops =
            (GROUPS * SUBGROUPS) as f64 * iters as f64 * ACCUMULATORS * 2.0 * (f as f64).powi(3);
        rates[slot] = flops / best / 1e9;
        steps[slot] = iters;
    }
    Ok(Some(CoopCeiling {
        fragment: f,
        gflops: rates[0],
        lds_gflops: rates[1],
        method: format!(
            "{GROUPS} workgroups of {SUBGROUPS} subgroups, {f}x{f}x{f} f16 x f16 -> f32 fragments, 8 independent accumulators each; {} steps with the operands in registers, {} reloading them from workgroup memory every step; best of 3; results checked; {}",
            steps[0],
            steps[1],
            if queries.is_some() { "pass timestamps" } else { "wall time" }
        ),
    }))
}

/// Reads the probe's output back and checks every subgroup's sum.
fn check_result(
    ctx: &GpuContext,
    out: &wgpu::Buffer,
    check: &wgpu::Buffer,
    iters: u32,
    f: u32,
    name: &str,
) -> Result<()> {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(out, 0, check, 0, out.size());
    ctx.queue.submit([encoder.finish()]);
    let bytes = map_read(&ctx.device, check, out.size())?;
    let want = expected(iters, f);
    let got: &[f32] = bytemuck::cast_slice(&bytes);
    match got.iter().position(|&v| v != want) {
        None => Ok(()),
        Some(i) => Err(LabError::Gpu(format!(
            "the {name} computed {} in subgroup {i}, not {want}: its multiply-adds did not run as written",
            got[i]
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::{expected, source};

    #[test]
    fn the_source_names_whole_cooperative_types() {
        let s = source(8);
        assert!(s.contains("const F: u32 = 8u;") && s.contains("coop_mat8x8<f16, A>"));
        assert!(s.contains("coop_mat8x8<f32, C>()") && !s.contains("coop_mat_"));
    }

    #[test]
    fn the_expected_sum_is_exact() {
        assert_eq!(expected(1000, 16), 8000.0);
        assert_eq!(expected(3, 8), 12.0);
    }
}

//! The cooperative matrices' ceiling (`shaders/coop_probe.wgsl`): f16 x f16 ->
//! f32 multiply-adds per second through wgpu's cooperative-matrix extension,
//! with the operands in registers and with them reloaded from workgroup
//! memory every step. Beside the vendor library's HGEMM it tells how much of
//! the coop matmul's distance is the kernel's and how much the path's (naga's
//! translation, the driver's). Every run checks its own result (exact in f32).

use super::capability::{coop_fragment, coop_status, subgroup_max};
use super::context::GpuContext;
use super::options::ShaderChecks;
use super::probe::{buffer, Probe};
use super::readback::map_read;
use crate::backend::info::CoopCeiling;
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

/// Probes the cooperative matrices on `probe`'s device; `Ok(None)` where the
/// adapter offers none the coop matmul could use.
pub(super) fn probe(probe: &Probe<'_>) -> Result<Option<CoopCeiling>> {
    let ctx = probe.ctx;
    if coop_status(ctx).is_err() {
        return Ok(None);
    }
    let Some(f) = coop_fragment(ctx) else {
        return Ok(None);
    };
    let wg = SUBGROUPS * subgroup_max(ctx);
    let storage = |u| wgpu::BufferUsages::STORAGE | u;
    let out_bytes = (GROUPS * SUBGROUPS) as u64 * 4;
    let inp = buffer(
        ctx,
        "coop probe in",
        16,
        storage(wgpu::BufferUsages::COPY_DST),
    );
    let out = buffer(
        ctx,
        "coop probe out",
        out_bytes,
        storage(wgpu::BufferUsages::COPY_SRC),
    );
    let check = buffer(
        ctx,
        "coop probe check",
        out_bytes,
        wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
    );
    ctx.queue.write_buffer(
        &inp,
        0,
        bytemuck::cast_slice(&[1.0f32 / 16.0, 1.0, 0.0, 0.0]),
    );

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
        let bind = probe.bind(&pipeline, &inp, &out);
        let time = |iters: u32| {
            probe.set_params([iters, 0, 0, 0]);
            probe.time(&pipeline, &bind, GROUPS)
        };
        let (iters, best) = super::probe::deepen(16, 1 << 20, time)?;
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
            probe.timing()
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

//! What a device can run of the matmul's configurations: the features,
//! cooperative-matrix configurations and workgroup limits each needs (the
//! typed reason when one cannot run), each fitted to the adapter, and the
//! candidates autotuning tries.

use super::kernels::{MatmulFamily, MatmulVariant};
use crate::backend::gpu::capability::{coop_fragment, coop_status, subgroup_max, Unsupported};
use crate::backend::gpu::context::GpuContext;
use crate::backend::gpu::storage::StorageMode;

/// Why `variant` cannot run in `mode` on `ctx`, or `Ok` when it can.
pub fn supports(
    ctx: &GpuContext,
    variant: MatmulVariant,
    mode: StorageMode,
) -> Result<(), Unsupported> {
    let missing = variant.required_features() - ctx.features;
    if !missing.is_empty() {
        return Err(Unsupported::MissingFeatures {
            kernel: variant.name(),
            missing,
            adapter: ctx.info.name.clone(),
        });
    }
    if variant.family == MatmulFamily::Coop {
        coop_status(ctx)?;
        if mode != StorageMode::F16 {
            return Err(Unsupported::StorageMode {
                kernel: variant.name(),
                mode,
            });
        }
    }
    let l = &ctx.limits;
    let checks = [
        (
            variant.wg_x,
            l.max_compute_workgroup_size_x,
            "max_compute_workgroup_size_x",
        ),
        (
            variant.wg_y,
            l.max_compute_workgroup_size_y,
            "max_compute_workgroup_size_y",
        ),
        (
            variant.invocations(),
            l.max_compute_invocations_per_workgroup,
            "max_compute_invocations_per_workgroup",
        ),
        (
            variant.workgroup_bytes(),
            l.max_compute_workgroup_storage_size,
            "max_compute_workgroup_storage_size",
        ),
    ];
    for (needed, limit, limit_name) in checks {
        if needed > limit {
            return Err(Unsupported::Limit {
                kernel: variant.name(),
                limit_name,
                needed,
                limit,
            });
        }
    }
    Ok(())
}

/// `variant` fitted to `ctx`: its subgroup width and cooperative fragment.
pub fn fit(ctx: &GpuContext, variant: MatmulVariant) -> MatmulVariant {
    variant.for_adapter(subgroup_max(ctx), coop_fragment(ctx).unwrap_or(16))
}

/// The candidates autotuning tries in `mode` on `ctx`, fitted to its subgroup
/// width, with f16 accumulation when `acc16`.
pub fn candidates(ctx: &GpuContext, mode: StorageMode, acc16: bool) -> Vec<MatmulVariant> {
    MatmulVariant::CANDIDATES
        .into_iter()
        .map(|v| fit(ctx, v).with_f16_acc(acc16))
        // The coop kernel accumulates in f32 by construction.
        .filter(|v| !(acc16 && v.family == MatmulFamily::Coop))
        .filter(|v| supports(ctx, *v, mode).is_ok())
        .collect()
}

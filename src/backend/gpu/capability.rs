//! What a device can run: the typed reason a kernel configuration cannot
//! ([`Unsupported`]), and the device facts kernels are fitted to — its
//! subgroup width and the cooperative matrices it multiplies.

use std::fmt;

use super::context::GpuContext;
use super::storage::StorageMode;
use crate::error::LabError;

/// Why a kernel configuration cannot run on a device.
#[derive(Clone, Debug, PartialEq)]
pub enum Unsupported {
    /// The kernel needs device features the adapter lacks.
    MissingFeatures {
        /// The configuration.
        kernel: String,
        /// The features it lacks.
        missing: wgpu::Features,
        /// The adapter.
        adapter: String,
    },
    /// The adapter does not offer EXPERIMENTAL_COOPERATIVE_MATRIX.
    NoCooperativeMatrix {
        /// The adapter.
        adapter: String,
    },
    /// The cooperative-matrix kernel also needs SHADER_F16.
    NoShaderF16 {
        /// The adapter.
        adapter: String,
    },
    /// No 16x16x16 (or 8x8x8) f16 x f16 -> f32 configuration among the offered ones.
    NoCoopConfiguration {
        /// The adapter.
        adapter: String,
        /// The configurations it offers, as `MxNxK A->C`.
        offered: Vec<String>,
    },
    /// The kernel takes another storage mode.
    StorageMode {
        /// The configuration.
        kernel: String,
        /// The mode asked for.
        mode: StorageMode,
    },
    /// A workgroup needs more than a device limit allows.
    Limit {
        /// The configuration.
        kernel: String,
        /// wgpu's name of the limit.
        limit_name: &'static str,
        /// What the kernel needs.
        needed: u32,
        /// What the device allows.
        limit: u32,
    },
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::MissingFeatures {
                kernel,
                missing,
                adapter,
            } => {
                // Feature names as `devices` prints them, not a debug struct.
                let names = super::context::feature_names(*missing);
                let names = if names.is_empty() {
                    format!("{missing:?}")
                } else {
                    names.join(", ")
                };
                write!(
                    f,
                    "{kernel} needs the feature(s) {names}, which {adapter} lacks"
                )
            }
            Unsupported::NoCooperativeMatrix { adapter } => {
                write!(
                    f,
                    "{adapter} does not offer EXPERIMENTAL_COOPERATIVE_MATRIX"
                )
            }
            Unsupported::NoShaderF16 { adapter } => write!(f, "{adapter} lacks SHADER_F16"),
            Unsupported::NoCoopConfiguration { adapter, offered } => write!(
                f,
                "{adapter} offers no 16x16x16 or 8x8x8 f16->f32 cooperative matrix (offers: {})",
                if offered.is_empty() {
                    "none".to_string()
                } else {
                    offered.join(", ")
                }
            ),
            Unsupported::StorageMode { kernel, mode } => write!(
                f,
                "{kernel} takes FP16 inputs in f16 storage, not {}",
                mode.name()
            ),
            Unsupported::Limit {
                kernel,
                limit_name,
                needed,
                limit,
            } => write!(
                f,
                "{kernel} needs {needed}, over the device limit {limit_name} = {limit}"
            ),
        }
    }
}

impl From<Unsupported> for LabError {
    fn from(u: Unsupported) -> Self {
        LabError::Unsupported(u.to_string())
    }
}

/// The edge of the cooperative fragments kernels use on `ctx`: 16
/// where the adapter offers 16x16x16 f16 x f16 -> f32, else 8 where it offers
/// 8x8x8; `None` where it offers neither.
pub fn coop_fragment(ctx: &GpuContext) -> Option<u32> {
    let offered = ctx.adapter.cooperative_matrix_properties();
    [16, 8].into_iter().find(|&f| {
        offered.iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (f, f, f)
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        })
    })
}

/// Why cooperative-matrix kernels cannot run on `ctx`, or `Ok` when they
/// can: they need EXPERIMENTAL_COOPERATIVE_MATRIX with a 16x16x16 or 8x8x8
/// f16 x f16 -> f32 configuration, and SHADER_F16 (SUBGROUP is checked with
/// the other features each configuration needs).
pub fn coop_status(ctx: &GpuContext) -> Result<(), Unsupported> {
    let adapter = ctx.info.name.clone();
    if !ctx
        .features
        .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
    {
        return Err(Unsupported::NoCooperativeMatrix { adapter });
    }
    if !ctx.features.contains(wgpu::Features::SHADER_F16) {
        return Err(Unsupported::NoShaderF16 { adapter });
    }
    if coop_fragment(ctx).is_some() {
        Ok(())
    } else {
        Err(Unsupported::NoCoopConfiguration {
            adapter,
            offered: super::context::coop_configurations(&ctx.adapter),
        })
    }
}

/// The subgroup width subgroup kernels size their workgroups by.
pub fn subgroup_max(ctx: &GpuContext) -> u32 {
    ctx.adapter.get_info().subgroup_max_size.max(1)
}

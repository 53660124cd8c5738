//! A GPU point's plan: every decision about how it runs — storage mode, gather
//! variant, matmul configuration and how it was chosen, vector loads, row
//! strides, chunks — made once, before any buffer exists. The op is built from
//! the plan, and the record's `kernel` string is the plan describing itself,
//! so the label can never drift from what runs.

use super::chunks::ChunkPlan;
use super::options::ShaderChecks;
use super::shaders::{GatherVariant, MatmulVariant, StorageMode};
use crate::workload::{Op, Workload};

/// How the matmul configuration of a plan was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chosen {
    /// Named by the user (`--matmul-variant`).
    Forced,
    /// The autotuner's choice, measured in this run or read from its cache file.
    Autotuned {
        /// Read from the cache file.
        cached: bool,
    },
}

/// The matmul of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulPlan {
    /// The configuration.
    pub variant: MatmulVariant,
    /// How it was chosen.
    pub chosen: Chosen,
    /// Rows of a and b are read as 4-element words.
    pub vec4_loads: bool,
}

/// Everything about how one GPU point runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelPlan {
    /// The workload.
    pub work: Workload,
    /// How elements are stored.
    pub mode: StorageMode,
    /// The gather, for ops with a table.
    pub gather: Option<GatherVariant>,
    /// The matmul, for ops with a weight.
    pub matmul: Option<MatmulPlan>,
    /// The runtime checks the matmul is built with.
    pub checks: ShaderChecks,
    /// Row stride (elements) of the matmul's input `x`: K as uploaded, or K
    /// padded to whole words as the gather writes it.
    pub lda: u32,
    /// Row stride (elements) of the output: N padded to whole words.
    pub ldy: u32,
    /// How rows are split across bindings.
    pub chunks: ChunkPlan,
    /// Outputs guarded by sentinels and loads checked
    /// ([`super::GpuOptions::bounds_guard`]).
    pub bounds_guard: bool,
}

impl KernelPlan {
    /// The plan for `work` in `mode` with these chunks and, for ops with a
    /// weight, this matmul configuration.
    pub fn new(
        work: Workload,
        mode: StorageMode,
        chunks: ChunkPlan,
        matmul: Option<(MatmulVariant, Chosen)>,
        checks: ShaderChecks,
    ) -> Self {
        let (lda, ldy) = strides(&work, mode);
        KernelPlan {
            work,
            mode,
            gather: gather(&work, mode),
            matmul: matmul_plan(&work, mode, matmul),
            checks,
            lda,
            ldy,
            chunks,
            bounds_guard: false,
        }
    }

    /// The record's `kernel`: gather and matmul configuration, vector loads,
    /// how the matmul was chosen, trusted modules, storage mode; e.g.
    /// `wgsl-tiled-64x64x16-4x4 vec4-loads (autotuned, cached) f32`.
    pub fn name(&self) -> String {
        label(
            self.work.op,
            self.mode,
            self.gather,
            self.matmul,
            self.checks,
        )
    }
}

/// Row strides (elements) of the matmul's input and of the output.
fn strides(work: &Workload, mode: StorageMode) -> (u32, u32) {
    let (_, k, n) = work.mkn();
    let lda = match work.op {
        Op::EmbedProject => mode.padded_stride(k as u32),
        _ => k as u32,
    };
    (lda, mode.padded_stride(n as u32))
}

/// The gather of ops with a table: the widest copy a row allows.
fn gather(work: &Workload, mode: StorageMode) -> Option<GatherVariant> {
    work.op
        .uses_table()
        .then(|| GatherVariant::for_row(mode, work.mkn().1 as u32))
}

/// The matmul of ops with a weight, with its vector-load decision.
fn matmul_plan(
    work: &Workload,
    mode: StorageMode,
    matmul: Option<(MatmulVariant, Chosen)>,
) -> Option<MatmulPlan> {
    let (_, k, n) = work.mkn();
    let (lda, _) = strides(work, mode);
    matmul
        .filter(|_| work.op.uses_weight())
        .map(|(variant, chosen)| MatmulPlan {
            variant,
            chosen,
            vec4_loads: variant.vec4_loads(k as u32, n as u32, lda),
        })
}

/// The name of `work` run in `mode` with this matmul configuration (see
/// [`KernelPlan::name`]); without one, an op with a weight is named
/// `matmul (not tuned yet)`: no tuning is run to name a point.
pub fn name(
    work: &Workload,
    mode: StorageMode,
    matmul: Option<(MatmulVariant, Chosen)>,
    checks: ShaderChecks,
) -> String {
    let matmul = matmul_plan(work, mode, matmul);
    label(work.op, mode, gather(work, mode), matmul, checks)
}

fn label(
    op: Op,
    mode: StorageMode,
    gather: Option<GatherVariant>,
    matmul: Option<MatmulPlan>,
    checks: ShaderChecks,
) -> String {
    let checks = checks.label();
    let gather = gather.map_or("", GatherVariant::name);
    let matmul = match matmul {
        Some(m) => {
            let vec4 = if m.vec4_loads { " vec4-loads" } else { "" };
            let how = match m.chosen {
                Chosen::Forced => "",
                Chosen::Autotuned { cached: false } => " (autotuned)",
                Chosen::Autotuned { cached: true } => " (autotuned, cached)",
            };
            format!("{}{vec4}{how}", m.variant.name())
        }
        None => "matmul (not tuned yet)".to_string(),
    };
    let mode = mode.name();
    match op {
        Op::Embedding => format!("wgsl-{gather} {mode}"),
        Op::Matmul => format!("wgsl-{matmul}{checks} {mode}"),
        Op::EmbedProject => format!("wgsl-{gather}+{matmul}{checks} {mode}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Precision, Shape};

    fn plan(op: Op, d: u32, chosen: Chosen) -> KernelPlan {
        let work = Workload {
            op,
            precision: Precision::F32,
            shape: Shape::new(2, 3, d, 50).unwrap(),
            data: Default::default(),
        };
        let chunks = ChunkPlan::whole(&work);
        KernelPlan::new(
            work,
            StorageMode::F32,
            chunks,
            Some((MatmulVariant::TILED, chosen)),
            ShaderChecks::Full,
        )
    }

    #[test]
    fn names_say_what_runs_and_how_it_was_chosen() {
        assert_eq!(
            plan(Op::Matmul, 64, Chosen::Autotuned { cached: true }).name(),
            "wgsl-tiled-64x64x16-4x4 vec4-loads (autotuned, cached) f32"
        );
        assert_eq!(
            plan(Op::Matmul, 63, Chosen::Forced).name(),
            "wgsl-tiled-64x64x16-4x4 f32"
        );
        assert_eq!(
            plan(Op::EmbedProject, 64, Chosen::Autotuned { cached: false }).name(),
            "wgsl-gather-vec4+tiled-64x64x16-4x4 vec4-loads (autotuned) f32"
        );
        assert_eq!(
            plan(Op::Embedding, 63, Chosen::Forced).name(),
            "wgsl-gather-u32 f32"
        );
    }

    #[test]
    fn an_untuned_point_is_named_without_tuning() {
        let p = plan(Op::EmbedProject, 64, Chosen::Forced);
        assert_eq!(
            name(&p.work, p.mode, None, ShaderChecks::None),
            "wgsl-gather-vec4+matmul (not tuned yet) trusted f32"
        );
        let e = plan(Op::Embedding, 64, Chosen::Forced);
        assert_eq!(
            name(&e.work, e.mode, None, ShaderChecks::Full),
            "wgsl-gather-vec4 f32"
        );
    }

    #[test]
    fn the_label_and_the_kernel_share_one_vec4_decision() {
        let p = plan(Op::Matmul, 64, Chosen::Forced);
        assert!(p.matmul.unwrap().vec4_loads);
        assert!(p.name().contains("vec4-loads"));
        let p = plan(Op::Matmul, 62, Chosen::Forced);
        assert!(!p.matmul.unwrap().vec4_loads);
        assert!(!p.name().contains("vec4-loads"));
    }
}

//! The knobs of the GPU backend that tests and experts turn.

use crate::ops::matmul::kernels::MatmulVariant;

/// Which of wgpu's runtime checks the matmul kernels are built with. The
/// gather always keeps them all, since its row index comes from data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ShaderChecks {
    /// Bounds checks on every access and a counter on every loop (wgpu's
    /// `force_loop_bounding`, which keeps drivers from unrolling loops).
    Full,
    /// The default: bounds checks kept, loops left to the driver. Every loop
    /// in the kernels is bounded by a constant or a uniform, so none can run
    /// forever.
    #[default]
    NoLoopBounding,
    /// Neither: the kernels bound every access themselves (the SAFETY note in
    /// `pipelines.rs`), verified on shapes that are not tile multiples.
    None,
}

impl ShaderChecks {
    /// The name the CLI takes and records show.
    pub fn name(self) -> &'static str {
        match self {
            ShaderChecks::Full => "full",
            ShaderChecks::NoLoopBounding => "no-loop-bounding",
            ShaderChecks::None => "none",
        }
    }

    /// The runtime checks to build a module with; `None` for wgpu's default
    /// (every check), which needs no unsafe.
    pub fn runtime_checks(self) -> Option<wgpu::ShaderRuntimeChecks> {
        match self {
            ShaderChecks::Full => None,
            ShaderChecks::NoLoopBounding => Some(wgpu::ShaderRuntimeChecks {
                force_loop_bounding: false,
                ..wgpu::ShaderRuntimeChecks::checked()
            }),
            ShaderChecks::None => Some(wgpu::ShaderRuntimeChecks::unchecked()),
        }
    }

    /// What a kernel label appends ("" for full checks).
    pub fn label(self) -> &'static str {
        match self {
            ShaderChecks::Full => "",
            ShaderChecks::NoLoopBounding => " no-loop-bounding",
            ShaderChecks::None => " trusted",
        }
    }
}

/// Options of a GPU backend; the default is what a plain run uses. Two are
/// the matmul's (a forced configuration, f16 accumulation), read by its plan.
#[derive(Clone, Copy, Debug, Default)]
pub struct GpuOptions {
    /// Use packed-u32 FP16 storage even where SHADER_F16 exists (to test that path).
    pub force_packed_f16: bool,
    /// Treat the storage-binding limit as this many bytes when smaller than the
    /// device's (to test chunking on small shapes).
    pub max_binding_bytes: Option<u64>,
    /// Use this matmul kernel instead of autotuning.
    pub matmul_variant: Option<MatmulVariant>,
    /// Accumulate FP16 matmuls in f16 (where SHADER_F16 exists): a labelled
    /// choice, verified against its own tolerance.
    pub f16_accumulate: bool,
    /// Which runtime checks the matmul kernels are built with.
    pub shader_checks: ShaderChecks,
    /// Test instrumentation (our own GPU-assisted validation): every output
    /// buffer gets a tail of sentinel words inside its binding, and the
    /// matmul's loads record an index past their input by breaking the last
    /// sentinel. Reading the output fails when a sentinel changed, so a kernel
    /// that writes or reads out of range fails instead of passing on a device
    /// whose robust buffer access hides it. Not for timing.
    pub bounds_guard: bool,
    /// Nanoseconds per timestamp tick in place of the queue's own period
    /// (for a driver known to report a wrong one, and for tests).
    pub timestamp_period_ns: Option<f32>,
}

//! The knobs of the GPU backend that tests and experts turn.

use super::shaders::MatmulVariant;

/// Options of a [`super::GpuBackend`]; the default is what a plain run uses.
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
    /// Build the matmul kernels without wgpu's runtime bounds checks (they bound
    /// every access themselves); the gather stays checked, since its row index
    /// comes from data.
    pub trusted_shaders: bool,
}

//! Compute pipelines, compiled once per device: a cache keyed by (WGSL source,
//! override constants, checked or trusted), so a configuration the autotuner
//! built is not compiled again for every point, and the time spent compiling is
//! known apart from buffer set-up and the cold run.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::options::ShaderChecks;
use crate::error::Result;

/// What a pipeline is compiled from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    source: String,
    /// Override constants, their values as f64 bits.
    constants: Vec<(String, u64)>,
    checks: ShaderChecks,
}

/// The pipelines a device has compiled.
#[derive(Default)]
pub struct PipelineCache {
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
}

/// A pipeline and the nanoseconds it took to compile here (0 when it came
/// from the cache).
pub struct Compiled {
    /// The pipeline.
    pub pipeline: wgpu::ComputePipeline,
    /// Compile time of this request, nanoseconds.
    pub compile_ns: u64,
}

impl PipelineCache {
    /// The pipeline of `source` with `constants` and `checks`: from the
    /// cache, or compiled now by `compile_in` (which runs the compilation it
    /// is handed, inside whatever error scope it sets up) and cached. A module
    /// that fails to compile is not cached.
    pub fn get_or_compile(
        &self,
        device: &wgpu::Device,
        source: String,
        constants: &[(&str, f64)],
        checks: ShaderChecks,
        compile_in: impl FnOnce(&dyn Fn(&str) -> wgpu::ComputePipeline) -> Result<wgpu::ComputePipeline>,
    ) -> Result<Compiled> {
        let key = PipelineKey {
            source,
            constants: constants
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_bits()))
                .collect(),
            checks,
        };
        let cache = &self.pipelines;
        if let Some(p) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(Compiled {
                pipeline: p.clone(),
                compile_ns: 0,
            });
        }
        let t = Instant::now();
        let pipeline = compile_in(&|label| compile(device, label, &key.source, constants, checks))?;
        let compile_ns = t.elapsed().as_nanos() as u64;
        cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, pipeline.clone());
        Ok(Compiled {
            pipeline,
            compile_ns,
        })
    }
}

/// Compiles `source` on `device` with `constants` and `checks`.
fn compile(
    device: &wgpu::Device,
    label: &str,
    source: &str,
    constants: &[(&str, f64)],
    checks: ShaderChecks,
) -> wgpu::ComputePipeline {
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    };
    let module = if let Some(runtime_checks) = checks.runtime_checks() {
        // SAFETY: with `ShaderChecks::NoLoopBounding` wgpu still bounds every
        // access, and every loop in the kernels ends (its bound is an override
        // constant or a uniform, its step a positive constant). With
        // `ShaderChecks::None`: callers ask for it only for the matmul kernels, which guard
        // every load with `row < m && k < K` (a), `k < K && col < n` (b) and
        // every store with `row < m && col < n`, against buffers sized for
        // exactly those bounds and strides (lda >= K, ldy >= n) per chunk; a vec4
        // load starts at a multiple of 4 below K (or n) and K, n and lda are
        // multiples of 4 whenever vec4 loads are compiled in. Their
        // other indices are bounded by construction: the tiled kernel's
        // workgroup tiles are sized by the same override constants (BM, BN, BK)
        // that bound their indices; register arrays are indexed by loops over
        // their compile-time length (TM, TN); the coop kernel's cooperative
        // loads and stores read 16x16 blocks at fixed offsets that end at the
        // last element of its fixed-size workgroup arrays (511 of 512, 1023 of 1024).
        unsafe { device.create_shader_module_trusted(desc, runtime_checks) }
    } else {
        device.create_shader_module(desc)
    };
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants,
            ..Default::default()
        },
        cache: None,
    })
}

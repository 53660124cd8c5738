//! Out-of-range accesses and lost rows: every trusted matmul kernel (built
//! without wgpu's bounds checks) must stay inside its buffers, on shapes whose
//! rows, columns and depth are not tile multiples, and a point split into row
//! chunks must come back whole, its last, shorter chunk included.
//!
//! Out-of-range writes are caught by sentinel words after every output, inside
//! its binding (so robust buffer access cannot drop the write); out-of-range
//! reads by the bounds-guarded loads, which break the last sentinel
//! ([`GpuOptions::bounds_guard`]). Vulkan's validation layers cannot see
//! either on a device with robust buffer access, which wgpu always enables
//! (see `tests/validation_layers.rs` for what they do check).

mod common;

use common::{assert_verified, every_gpu_with, fit, gpu, op, output_chunks, supports, work};
use kernel_lab::backend::gpu::{GpuOptions, ShaderChecks};
use kernel_lab::backend::Backend;
use kernel_lab::ops::matmul::kernels::MatmulVariant;
use kernel_lab::ops::Op;
use kernel_lab::precision::Precision;
use kernel_lab::workload::Workload;

/// (B, S, D, V): 37 rows (under one 64-row tile) with K = N = 33 (scalar
/// loads), 70 rows (past one tile) with K = N = 64 (vector loads).
const SHAPES: [(u32, u32, u32, u32); 2] = [(1, 37, 33, 50), (2, 35, 64, 50)];

#[test]
fn gpu_trusted_kernels_stay_inside_their_buffers() {
    for variant in MatmulVariant::CANDIDATES {
        let options = GpuOptions {
            matmul_variant: Some(variant),
            shader_checks: ShaderChecks::None,
            bounds_guard: true,
            ..Default::default()
        };
        for backend in every_gpu_with(options) {
            let fitted = fit(&backend, variant);
            // Every storage mode's loads and stores; embed-project's padded rows once.
            let points = Precision::ALL
                .iter()
                .flat_map(|&p| SHAPES.map(|(b, s, d, v)| work(op("matmul"), p, b, s, d, v)))
                .chain([work(op("embed-project"), Precision::F16, 1, 37, 33, 50)]);
            for w in points {
                if supports(&backend, fitted, &w).is_ok() {
                    assert_verified(&backend, &w);
                }
            }
        }
    }
}

/// The guard sees what it exists for: the embedding's gather writes the
/// output directly, and a guarded point split into chunks checks every one.
#[test]
fn gpu_guarded_gathers_and_chunks_verify() {
    let Some(backend) = gpu(GpuOptions {
        shader_checks: ShaderChecks::None,
        bounds_guard: true,
        max_binding_bytes: Some(8 << 10),
        ..Default::default()
    }) else {
        return;
    };
    for &op in Op::ALL {
        for p in Precision::ALL {
            // Every example the op can place in 8 KiB bindings (attention
            // splits its cache by sequences, not within one: a sequence's
            // cache past the limit is refused naming it), at least two.
            let mut placed = 0;
            for params in op.examples() {
                let w = Workload::new(params, p);
                let inputs = w.inputs(42);
                if let Err(e) = backend.prepare(&w, &inputs) {
                    assert!(e.to_string().contains("binding limit"), "{op} {p}: {e}");
                    continue;
                }
                placed += 1;
                assert_verified(&backend, &w);
            }
            assert!(placed >= 2, "{op} {p}: {placed} examples placed");
        }
    }
}

/// Rows in chunks whose last is shorter (231 rows in chunks of 20: the last
/// holds 11), which a loop that stops at the last whole chunk would drop.
#[test]
fn gpu_partial_last_chunk_is_verified_whole() {
    let limit = 8 << 10;
    for force_packed_f16 in [false, true] {
        let Some(backend) = gpu(GpuOptions {
            force_packed_f16,
            max_binding_bytes: Some(limit),
            ..Default::default()
        }) else {
            return;
        };
        let mut partial = 0;
        for &op in Op::ALL {
            for p in Precision::ALL {
                // Each op's examples of 200 rows or more take several chunks.
                for params in op.examples().into_iter().filter(|e| e.tokens() >= 200) {
                    let w = Workload::new(params, p);
                    let chunks = output_chunks(&backend, &w);
                    assert!(chunks.len() > 1, "{op} {p}: {chunks:?}");
                    assert_eq!(
                        chunks.iter().map(|&r| r as u64).sum::<u64>(),
                        w.params.output_shape().0
                    );
                    if chunks.last() < chunks.first() {
                        partial += 1;
                    }
                    assert_verified(&backend, &w);
                }
            }
        }
        assert!(partial > 0, "no point here had a partial last chunk");
    }
}

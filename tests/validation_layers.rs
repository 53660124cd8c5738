//! The trusted (unchecked) matmul kernels, the gathers and chunked points
//! under Vulkan's validation layer with GPU-assisted and synchronization
//! validation: any error or warning the layer reports fails the test.
//!
//! What the layer can and cannot see here: wgpu always enables robust buffer
//! access, under which an out-of-range load or store is defined behaviour, so
//! GPU-assisted validation does not check storage-buffer bounds; those are
//! caught by the sentinels and guarded loads of `tests/bounds.rs`. The layer
//! checks the Vulkan usage wgpu generates for our kernels (descriptors,
//! barriers and hazards, the SPIR-V itself).
//!
//! The layer is Debian's `vulkan-validationlayers` (CI installs it and sets
//! `KERNEL_LAB_REQUIRE_VALIDATION=1`); elsewhere the test skips, saying so.
//! Its messages go to a log file through a settings file: wgpu's own debug
//! messenger comes only with `WGPU_DEBUG`, which also embeds the WGSL source
//! in the SPIR-V with a source-language value (WGSL) that this layer's
//! SPIR-V tools reject, so it is turned off.

mod common;

use common::{assert_verified, every_gpu_with, fit, gpu, op, supports, work};
use kernel_lab::backend::gpu::{GpuOptions, ShaderChecks};
use kernel_lab::ops::matmul::kernels::MatmulVariant;
use kernel_lab::ops::Op;
use kernel_lab::precision::Precision;

/// Points the layer reports on as `(SEVERITY / TYPE)` in its log.
fn reported(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("(ERROR /") || l.contains("(WARN /"))
        .collect()
}

#[test]
fn trusted_kernels_pass_gpu_assisted_validation() {
    let dir = std::env::temp_dir().join(format!("kernel-lab-vvl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("validation.log");
    let settings = dir.join("vk_layer_settings.txt");
    std::fs::write(
        &settings,
        format!(
            "khronos_validation.debug_action = VK_DBG_LAYER_ACTION_LOG_MSG\n\
             khronos_validation.log_filename = {}\n\
             khronos_validation.report_flags = error,warn,info\n\
             khronos_validation.enables = VK_VALIDATION_FEATURE_ENABLE_GPU_ASSISTED_EXT,VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION\n",
            log.display()
        ),
    )
    .unwrap();
    // SAFETY: the only test in this binary, and no thread is running yet.
    unsafe {
        std::env::set_var("WGPU_VALIDATION", "1");
        std::env::set_var("WGPU_DEBUG", "0");
        std::env::set_var("WGPU_BACKEND", "vulkan");
        std::env::set_var("VK_LAYER_SETTINGS_PATH", &settings);
    }

    for variant in MatmulVariant::CANDIDATES {
        let options = GpuOptions {
            matmul_variant: Some(variant),
            shader_checks: ShaderChecks::None,
            ..Default::default()
        };
        for backend in every_gpu_with(options) {
            let fitted = fit(&backend, variant);
            for p in [Precision::F32, Precision::F16] {
                let w = work(op("matmul"), p, 1, 37, 33, 1);
                if supports(&backend, fitted, &w).is_ok() {
                    assert_verified(&backend, &w);
                }
            }
        }
    }
    // The gathers, embed-project and row chunks, once each.
    if let Some(chunked) = gpu(GpuOptions {
        shader_checks: ShaderChecks::None,
        max_binding_bytes: Some(8 << 10),
        matmul_variant: Some(MatmulVariant::CANDIDATES[0]),
        ..Default::default()
    }) {
        for &op in Op::ALL {
            // Each op's largest example: split into row chunks at 8 KiB.
            let largest = op.examples().into_iter().max_by_key(|e| e.tokens());
            assert_verified(
                &chunked,
                &kernel_lab::workload::Workload::new(largest.unwrap(), Precision::F16),
            );
        }
    } else {
        return;
    }

    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let active = text.contains("Khronos Validation Layer Active")
        && text.contains("VK_VALIDATION_FEATURE_ENABLE_GPU_ASSISTED_EXT");
    if !active {
        let why = "the Khronos validation layer did not load (Debian: vulkan-validationlayers)";
        assert!(
            std::env::var("KERNEL_LAB_REQUIRE_VALIDATION").as_deref() != Ok("1"),
            "KERNEL_LAB_REQUIRE_VALIDATION=1 but {why}"
        );
        eprintln!("skipping: {why}");
        return;
    }
    let bad = reported(&text);
    assert!(
        bad.is_empty(),
        "the validation layer reported {} problem(s); first: {}\n(log: {})",
        bad.len(),
        bad[0],
        log.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

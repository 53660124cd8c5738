//! Every op x precision x backend against the f64 reference, on shapes that are
//! not tile multiples and on degenerate ones; the packed-FP16 and chunked GPU
//! paths; a bad output failing verification.

mod common;

use common::{
    assert_verified, check, every_gpu, every_gpu_with, fit, gpu, op, output_chunks, sized,
    supports, work, SHAPES,
};
use kernel_lab::backend::cpu::CpuBackend;
use kernel_lab::backend::gpu::capability::coop_status;
use kernel_lab::backend::gpu::{GpuOptions, ShaderChecks, StorageMode};
use kernel_lab::backend::Backend;
use kernel_lab::ops::matmul;
use kernel_lab::ops::matmul::kernels::{MatmulFamily, MatmulVariant};
use kernel_lab::ops::Op;
use kernel_lab::precision::Precision;
use kernel_lab::workload::Workload;

/// The `kernel` a point's record carries: what its prepared op says it runs.
fn prepared_name(backend: &dyn Backend, w: &Workload) -> String {
    let inputs = w.inputs(1);
    let name = backend.prepare(w, &inputs).unwrap().describe();
    name
}

/// Every op's own examples (sizes that are not tile multiples, a degenerate
/// one) in every precision: an op added to the registry is checked here
/// without a line of this file changing.
fn all_cases(backend: &dyn Backend) {
    for &op in Op::ALL {
        for p in Precision::ALL {
            for params in op.examples() {
                assert_verified(backend, &Workload::new(params, p));
            }
        }
    }
}

#[test]
fn cpu_every_op_and_precision_matches_reference() {
    all_cases(&CpuBackend::new());
}

#[test]
fn gpu_every_op_and_precision_matches_reference_on_every_adapter() {
    for backend in every_gpu() {
        eprintln!(
            "checking {} ({})",
            backend.device().name,
            backend.device().api
        );
        all_cases(&backend);
    }
}

#[test]
fn gpu_packed_f16_storage_matches_reference() {
    let Some(backend) = gpu(GpuOptions {
        force_packed_f16: true,
        ..Default::default()
    }) else {
        return;
    };
    assert_eq!(backend.storage_mode(Precision::F16), StorageMode::PackedF16);
    for &op in Op::ALL {
        for params in op.examples() {
            assert_verified(&backend, &Workload::new(params, Precision::F16));
        }
    }
}

#[test]
fn gpu_chunked_path_matches_reference() {
    // 8 KiB bindings: a 2x100x37 activation (29.6 KB in f32, 15.2 KB in f16)
    // needs several chunks while the 50x37 table and 37x37 weight still fit.
    let limit = 8 << 10;
    for force_packed_f16 in [false, true] {
        let Some(backend) = gpu(GpuOptions {
            force_packed_f16,
            max_binding_bytes: Some(limit),
            ..Default::default()
        }) else {
            return;
        };
        for &op in Op::ALL {
            for p in Precision::ALL {
                // Every example of 200 rows or more: its rows take several
                // chunks of 8 KiB.
                let mut chunked = 0;
                for params in op.examples().into_iter().filter(|e| e.tokens() >= 200) {
                    let w = Workload::new(params, p);
                    let chunks = output_chunks(&backend, &w);
                    chunked += usize::from(chunks.len() > 1);
                    assert_verified(&backend, &w);
                }
                assert!(chunked > 0, "{op} {p}: no example was split into chunks");
            }
        }
    }
}

#[test]
fn gpu_point_over_the_limit_is_a_clear_error() {
    let Some(backend) = gpu(GpuOptions {
        max_binding_bytes: Some(1024),
        ..Default::default()
    }) else {
        return;
    };
    // A 64x64 f32 weight is 16 KiB: split into column blocks, it runs.
    assert_verified(&backend, &work(op("matmul"), Precision::F32, 1, 4, 64, 1));
    // Four columns of a 100-row weight (1600 bytes) cannot fit 1 KiB.
    let w = work(op("matmul"), Precision::F32, 1, 4, 100, 1);
    let inputs = w.inputs(1);
    let err = backend
        .prepare(&w, &inputs)
        .err()
        .expect("four weight columns over the limit")
        .to_string();
    assert!(
        err.contains("weight") && err.contains("1600") && err.contains("1024"),
        "{err}"
    );
}

#[test]
fn embedding_ids_pick_the_right_rows_on_every_backend() {
    // Distinct rows make a wrong index visible even though a gather is a copy.
    let w = work(op("embedding"), Precision::F32, 1, 9, 3, 5);
    let mut backends: Vec<Box<dyn Backend>> = vec![Box::new(CpuBackend::new())];
    if let Some(g) = gpu(GpuOptions::default()) {
        backends.push(Box::new(g));
    }
    for b in &backends {
        let acc = check(b.as_ref(), &w);
        assert!(
            acc.verified && acc.max_abs_err == 0.0,
            "{}: {acc:?}",
            b.device().name
        );
    }
}

#[test]
fn gpu_validation_errors_become_one_line_errors_and_the_device_lives_on() {
    let Some(backend) = gpu(GpuOptions::default()) else {
        return;
    };
    let ctx = backend.context();
    let err = ctx
        .scoped("allocating a test buffer", || {
            let _too_big = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("too big"),
                size: ctx.limits.max_buffer_size + 4,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            });
            Ok(())
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("GPU error: allocating a test buffer"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_verified(&backend, &work(op("matmul"), Precision::F32, 1, 3, 5, 1));
}

#[test]
fn ceilings_are_probed_on_every_backend() {
    let mut backends: Vec<Box<dyn Backend>> = vec![Box::new(CpuBackend::new())];
    if let Some(g) = gpu(GpuOptions::default()) {
        backends.push(Box::new(g));
    }
    for b in &backends {
        // The GPU probe also checks that its copy really copied.
        let c = b
            .probe_ceilings()
            .unwrap_or_else(|e| panic!("{}: {e}", b.device().name));
        assert!(
            c.copy_gbps.is_finite() && c.copy_gbps > 0.1,
            "{}: {c:?}",
            b.device().name
        );
        assert!(
            c.fma_gflops.is_finite() && c.fma_gflops > 0.1,
            "{}: {c:?}",
            b.device().name
        );
        assert!(!c.method.is_empty());
    }
}

/// The cooperative matrices' ceiling is probed exactly where the coop matmul
/// could run, checks its own result, and never fails the other ceilings.
/// CI's Mesa 22 lavapipe offers none; `scripts/newer-lavapipe` runs this test
/// where 8x8x8 fragments are offered (planted there: one of the eight
/// multiply-adds dropped from the shader -> "computed 56 ... not 64" -> fails).
#[test]
fn the_coop_ceiling_is_probed_where_cooperative_matrices_are_offered() {
    for backend in every_gpu() {
        let name = backend.device().name.clone();
        let c = backend
            .probe_ceilings()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!c.method.contains("probe failed"), "{name}: {}", c.method);
        match (coop_status(backend.context()), &c.coop) {
            (Ok(()), Some(k)) => {
                assert!(k.gflops > 0.0 && k.lds_gflops > 0.0, "{name}: {k:?}");
                assert!(matches!(k.fragment, 8 | 16), "{name}: {k:?}");
                assert!(k.method.contains("results checked"), "{name}: {k:?}");
            }
            (Err(_), None) => {}
            (status, coop) => panic!("{name}: coop status {status:?} but probe {coop:?}"),
        }
    }
}

/// Every matmul configuration the autotuner may pick (tile sizes, families),
/// on every adapter, checked and trusted, f16 and packed f16, whole and chunked; configurations
/// this adapter cannot run (subgroups without SUBGROUP, cooperative matrices
/// here) must refuse with the reason, never run unverified or faked.
#[test]
fn gpu_every_matmul_variant_checked_and_trusted_matches_reference_whole_and_chunked() {
    for variant in MatmulVariant::CANDIDATES {
        for (force_packed_f16, shader_checks) in [
            (false, ShaderChecks::Full),
            (true, ShaderChecks::Full),
            (false, ShaderChecks::NoLoopBounding),
            (false, ShaderChecks::None),
            (true, ShaderChecks::None),
        ] {
            // Trusted shaders run without wgpu's bounds checks: the kernels' own
            // guards must keep every shape, whole and chunked, correct.
            let options = GpuOptions {
                matmul_variant: Some(variant),
                force_packed_f16,
                shader_checks,
                ..Default::default()
            };
            for backend in every_gpu_with(options) {
                for op in [op("matmul"), op("embed-project")] {
                    for p in Precision::ALL {
                        for (b, s, d, v) in SHAPES {
                            let w = work(op, p, b, s, d, v);
                            let fitted = fit(&backend, variant);
                            match supports(&backend, fitted, &w) {
                                Ok(()) => {
                                    assert_verified(&backend, &w);
                                    // Rows of whole 4-element words take the vector load
                                    // path, but for the coop kernel's loads from memory.
                                    let vec4 = d % 4 == 0 && !fitted.global_loads;
                                    let name = prepared_name(&backend, &w);
                                    assert_eq!(name.contains("vec4-loads"), vec4, "{name}");
                                }
                                Err(why) => {
                                    let inputs = w.inputs(1);
                                    let err =
                                        backend.prepare(&w, &inputs).err().unwrap_or_else(|| {
                                            panic!("{} prepared although: {why}", variant.name())
                                        });
                                    let why = why.to_string();
                                    assert!(err.to_string().contains(&why), "{err} vs {why}");
                                }
                            }
                        }
                    }
                }
            }
            let Some(chunked) = gpu(GpuOptions {
                max_binding_bytes: Some(8 << 10),
                ..options
            }) else {
                return;
            };
            for p in Precision::ALL {
                let w = work(op("matmul"), p, 2, 100, 37, 50);
                let fitted = fit(&chunked, variant);
                if supports(&chunked, fitted, &w).is_ok() {
                    assert_verified(&chunked, &w);
                }
            }
        }
    }
}

/// f16 accumulation is a labelled choice: every configuration that offers it
/// verifies against its own tolerance, records say `-acc16`, and FP32 points
/// (and packed FP16, which has no f16 arithmetic) are untouched by it.
#[test]
fn gpu_f16_accumulation_is_labelled_and_verified_for_every_variant() {
    let Some(probe) = gpu(GpuOptions::default()) else {
        return;
    };
    if !probe
        .context()
        .features
        .contains(wgpu::Features::SHADER_F16)
    {
        eprintln!("skipping: {} lacks SHADER_F16", probe.device().name);
        return;
    }
    for variant in matmul::gpu::tuning_candidates(probe.gpu(), StorageMode::F16) {
        let backend = gpu(GpuOptions {
            matmul_variant: Some(variant),
            f16_accumulate: true,
            ..Default::default()
        })
        .unwrap();
        for (b, s, d, v) in SHAPES {
            let w = work(op("matmul"), Precision::F16, b, s, d, v);
            let name = prepared_name(&backend, &w);
            assert!(name.contains("-acc16"), "{name}");
            let acc = check(&backend, &w);
            assert!(acc.verified, "{name} {:?}: {acc:?}", w.params);
            assert_eq!(
                acc.tolerance,
                matmul::reference::tolerance_f16_accumulation(d as u64)
            );
            let f32_point = work(op("matmul"), Precision::F32, b, s, d, v);
            assert!(!prepared_name(&backend, &f32_point).contains("-acc16"));
        }
    }
}

/// The coop kernel's `-direct` configurations load the fragments of tiles
/// wholly inside y straight from memory and stage the rest: on shapes with
/// interior tiles, edge tiles and a K tail, with the input written by the
/// gather (a padded row stride) and with the weight in column blocks, every
/// element matches the reference. Where coop is not offered, each is refused.
#[test]
fn gpu_coop_direct_loads_match_the_reference_inside_and_at_the_edges() {
    let direct: Vec<MatmulVariant> = MatmulVariant::CANDIDATES
        .into_iter()
        .filter(|v| v.global_loads)
        .collect();
    assert!(!direct.is_empty());
    for variant in direct {
        for max_binding_bytes in [None, Some(64 << 10)] {
            let options = GpuOptions {
                matmul_variant: Some(variant),
                max_binding_bytes,
                ..Default::default()
            };
            for backend in every_gpu_with(options) {
                let fitted = fit(&backend, variant);
                // M = 300 (two whole 128-row tiles and an edge), K = 260 (a
                // 4-deep tail after eight 32-deep slices), N = 270; all inside;
                // odd K and N; one row block; a single row.
                for (op, b, s, d, n) in [
                    ("matmul", 2, 150, 260, 270),
                    ("matmul", 1, 256, 256, 256),
                    ("embed-project", 1, 256, 256, 384),
                    ("matmul", 3, 43, 129, 131),
                    ("matmul", 1, 128, 64, 128),
                    ("matmul", 1, 1, 64, 64),
                ] {
                    let w = sized(
                        op.parse().unwrap(),
                        Precision::F16,
                        &[
                            ("batch", b),
                            ("seq", s),
                            ("dim", d),
                            ("out_dim", n),
                            ("vocab", 300),
                        ],
                    );
                    match supports(&backend, fitted, &w) {
                        Ok(()) => assert_verified(&backend, &w),
                        Err(why) => {
                            assert!(coop_status(backend.context()).is_err(), "{why}");
                        }
                    }
                }
            }
        }
    }
}

/// The cooperative-matrix path runs only where the adapter offers it; elsewhere
/// it is reported unavailable with the reason, in `supports` and as a refusal.
#[test]
fn gpu_cooperative_matrix_runs_where_offered_and_is_reported_unavailable_elsewhere() {
    for backend in every_gpu() {
        let coop = MatmulVariant::parse("coop").unwrap();
        let fitted = fit(&backend, coop);
        let listed = matmul::gpu::tuning_candidates(backend.gpu(), StorageMode::F16)
            .iter()
            .any(|v| v.family == MatmulFamily::Coop);
        let f16 = work(op("matmul"), Precision::F16, 1, 1, 1, 1);
        match coop_status(backend.context()) {
            Ok(()) => {
                assert!(
                    listed,
                    "{}: coop offered but not tuned",
                    backend.device().name
                );
                assert!(supports(&backend, fitted, &f16).is_ok());
            }
            Err(why) => {
                assert!(
                    !listed,
                    "{}: coop tuned although {why}",
                    backend.device().name
                );
                let refusal = supports(&backend, fitted, &f16).unwrap_err().to_string();
                assert!(
                    refusal.contains("COOPERATIVE_MATRIX") || refusal.contains("cooperative"),
                    "{refusal}"
                );
            }
        }
    }
}

#[test]
fn gpu_autotuning_chooses_the_fastest_verified_variant_once_per_shape_class() {
    let Some(backend) = gpu(GpuOptions::default()) else {
        return;
    };
    let small = work(op("matmul"), Precision::F32, 3, 77, 100, 1);
    let tunings = || backend.gpu().tuner.tunings();
    // Naming a point never tunes: a point cut before it runs pays nothing.
    let untuned = backend.describe(&small);
    assert!(untuned.contains("not tuned yet"), "{untuned}");
    assert!(tunings().is_empty(), "describe tuned");
    // Preparing it asks the tuner, once.
    let name = prepared_name(&backend, &small);
    assert!(name.contains("(autotuned)"), "{name}");
    assert_eq!(
        backend.describe(&small),
        name,
        "the plan and the name agree"
    );
    let tuned = tunings();
    assert_eq!(tuned.len(), 1, "one storage mode and class tuned");
    let (key, t) = &tuned[0];
    assert_eq!((key.op, key.class_name), ("matmul", "small"));
    assert_eq!(
        t.timings_ms.len(),
        matmul::gpu::tuning_candidates(backend.gpu(), StorageMode::F32).len(),
        "every candidate verified and timed: {t:?}"
    );
    assert!(t.timings_ms.len() >= 6, "tile configurations tried: {t:?}");
    assert!(t.rejected.is_empty(), "no candidate failed here: {t:?}");
    let fastest = t
        .timings_ms
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
        .0
        .clone();
    assert_eq!(t.chosen, fastest);
    assert!(name.contains(&t.chosen), "{name}");
    assert_verified(&backend, &small);
    assert_eq!(
        prepared_name(&backend, &small),
        name,
        "the choice is cached"
    );
    assert_eq!(tunings().len(), 1);
    // A large output is its own class, tuned once more.
    let large = work(op("matmul"), Precision::F32, 1, 1100, 1000, 1);
    assert!(prepared_name(&backend, &large).contains("(autotuned)"));
    assert_eq!(tunings().len(), 2);
}

/// The timestamp period is the context's (the queue's, or an injected one),
/// and every device read scales by it: with a period a million times too
/// long, each interval exceeds the wall time around it and falls back to it;
/// with one a thousand times too short, it is a thousandth of the true one.
#[test]
fn gpu_timestamp_reads_scale_by_the_injected_period() {
    use kernel_lab::prepared_op::TimestampFault;
    let w = work(op("matmul"), Precision::F32, 1, 64, 256, 1);
    let inputs = w.inputs(1);
    let Some(plain) = gpu(GpuOptions::default()) else {
        return;
    };
    let queue_period = plain.context().timestamp_period_ns;
    assert_eq!(queue_period, plain.context().queue.get_timestamp_period());
    let mut op = plain.prepare(&w, &inputs).unwrap();
    let true_ns: Vec<u64> = (0..5).filter_map(|_| op.run().unwrap().device_ns).collect();
    if true_ns.is_empty() {
        eprintln!("skipping: this adapter gives no device timestamps");
        return;
    }
    let true_min = *true_ns.iter().min().unwrap() as f64;
    for (period, ok) in [(queue_period * 1e6, false), (queue_period * 1e-3, true)] {
        let backend = gpu(GpuOptions {
            timestamp_period_ns: Some(period),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(backend.context().timestamp_period_ns, period);
        let mut op = backend.prepare(&w, &inputs).unwrap();
        for _ in 0..5 {
            let s = op.run().unwrap();
            if ok {
                let ns = s.device_ns.expect("a shorter period still reads") as f64;
                assert!(
                    ns < true_min / 20.0,
                    "{ns} ns with period {period} vs {true_min} ns"
                );
            } else {
                assert_eq!(s.device_ns, None, "period {period}");
                assert_eq!(s.fault, Some(TimestampFault::ExceedsWall));
            }
        }
    }
}

//! Synthetic records for the report's unit tests: measured points with a
//! chosen median, so findings can be checked against numbers worked out by hand.

use crate::backend::{BackendKind, MemoryUse, TimingMethod};
use crate::measure::StopRule;
use crate::results::{Measured, MemoryBytes, PointId, Record};
use crate::stats::{summarize, Samples};
use crate::workload::{Op, Precision, Shape, Workload};

/// A measured record with a given median and tokens/s, for findings tests.
pub fn synthetic(
    op: Op,
    backend: &str,
    precision: Precision,
    b: u32,
    s: u32,
    d: u32,
    p50_ms: f64,
) -> Record {
    let work = Workload {
        op,
        precision,
        shape: Shape::new(b, s, d, 100).unwrap(),
        data: Default::default(),
    };
    let ns = (p50_ms * 1e6) as u64;
    let raw: Vec<u64> = (0..30).map(|i| ns + (i % 3) * ns / 100).collect();
    let lat = summarize(&Samples::new(raw.iter().map(|&v| v as f64)).unwrap()).scaled(1e-6);
    let model = work.memory_model();
    let measured = MemoryUse {
        output: model.total,
        total: model.total,
        ..Default::default()
    };
    let backend: BackendKind = backend.parse().unwrap();
    Record {
        id: PointId::new(backend, &work),
        layer: None,
        adapter: format!("{backend}-device"),
        device_type: "test".into(),
        software_device: false,
        kernel: "test".into(),
        max_abs_err: Some(0.0),
        max_norm_err: Some(if precision == Precision::F16 {
            1e-4
        } else {
            1e-7
        }),
        tolerance: Some(1.0),
        rows_checked: Some(1),
        overflows: None,
        precision_cost: None,
        verified: true,
        skipped: None,
        warnings: vec![],
        measured: Some(Measured {
            timing_method: TimingMethod::Wall,
            samples: raw.len(),
            stop_rule: StopRule::MaxSamples,
            wall_latency_ms: lat.clone(),
            prepare_ms: 0.0,
            compile_ms: None,
            first_run_ms: 0.0,
            warmup_runs: 0,
            cold_cache: false,
            phases_ms: None,
            throughput: None,
            gflops: work.flops() as f64 / (lat.p50 * 1e6),
            gbps: 0.0,
            pct_of_copy_bandwidth: None,
            pct_of_fma_peak: None,
            tokens_per_s: work.shape.tokens() as f64 / (lat.p50 / 1e3),
            arithmetic_intensity: work.arithmetic_intensity(),
            memory_bytes: MemoryBytes {
                model,
                measured,
                measured_over_model: 1.0,
                host_peak_alloc: None,
                process_peak_rss: None,
                inputs_bytes: None,
                verification_peak_alloc: None,
                timed_peak_alloc: None,
            },
            latency_ms: lat,
            raw_ns: raw.clone(),
            raw_wall_ns: raw,
            timestamp_fallbacks: Default::default(),
            energy: None,
            sm_clock_mhz: None,
            rounds: 1,
        }),
    }
}

/// [`synthetic`] for a projection `dim -> out_dim` labelled as a model layer.
pub fn layer(
    label: &str,
    backend: &str,
    (b, s, k, n): (u32, u32, u32, u32),
    p50_ms: f64,
) -> Record {
    let mut r = synthetic(Op::Matmul, backend, Precision::F32, b, s, k, p50_ms);
    let work = Workload {
        op: Op::Matmul,
        precision: Precision::F32,
        shape: Shape::rect(b, s, k, n, r.id.vocab).unwrap(),
        data: Default::default(),
    };
    r.id = PointId::new(r.id.backend, &work);
    r.layer = Some(label.to_string());
    if let Some(m) = r.measured.as_mut() {
        m.arithmetic_intensity = work.arithmetic_intensity();
    }
    r
}

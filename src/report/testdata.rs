//! Synthetic records for the unit tests of the reports and the engine:
//! measured points with a chosen median, so findings can be checked against
//! numbers worked out by hand. Ops are named as a results file names them
//! (`"matmul"`), so the fixtures read like the files they stand for.

use crate::backend::{BackendKind, MemoryUse, TimingMethod};
use crate::measure::StopRule;
use crate::ops::op::Values;
use crate::ops::Op;
use crate::precision::Precision;
use crate::prepared_op::RoleBytes;
use crate::results::{Measured, MemoryBytes, PointId, Record};
use crate::stats::{summarize, Samples};
use crate::workload::Workload;

/// The workload of op `op` (by name) in `precision` with these parameters
/// (the op's defaults for the rest).
pub fn work(op: &str, precision: Precision, sizes: &[(&str, u32)]) -> Workload {
    Workload::named(op, precision, sizes)
}

/// A measured record with a given median and tokens/s, for findings tests:
/// op `op` (by name) at batch `b`, seq `s` and dim `d` (a table of 100 rows).
pub fn synthetic(
    op: &str,
    backend: &str,
    precision: Precision,
    b: u32,
    s: u32,
    d: u32,
    p50_ms: f64,
) -> Record {
    let work = work(
        op,
        precision,
        &[("batch", b), ("seq", s), ("dim", d), ("vocab", 100)],
    );
    let ns = (p50_ms * 1e6) as u64;
    let raw: Vec<u64> = (0..30).map(|i| ns + (i % 3) * ns / 100).collect();
    let lat = summarize(&Samples::new(raw.iter().map(|&v| v as f64)).unwrap()).scaled(1e-6);
    let model = work.memory_model();
    let measured = MemoryUse {
        parts: RoleBytes::of(&[("output", model.total)]),
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
            tokens_per_s: work.tokens() as f64 / (lat.p50 / 1e3),
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
    let mut r = synthetic("matmul", backend, Precision::F32, b, s, k, p50_ms);
    let work = work(
        "matmul",
        Precision::F32,
        &[("batch", b), ("seq", s), ("dim", k), ("out_dim", n)],
    );
    r.id = PointId::new(r.id.backend, &work);
    r.layer = Some(label.to_string());
    if let Some(m) = r.measured.as_mut() {
        m.arithmetic_intensity = work.arithmetic_intensity();
    }
    r
}

/// The op named `name`, as a results file names it.
pub fn op(name: &str) -> Op {
    name.parse().unwrap()
}

/// `r` with these of its op's parameters changed.
pub fn resized(mut r: Record, sizes: &[(&str, u32)]) -> Record {
    let op = r.id.op();
    let mut v = Values::default();
    for a in op.axes() {
        if let Some(x) = r.id.axis(a.name) {
            v.set(a.name, x);
        }
    }
    for &(k, x) in sizes {
        v.set(k, x);
    }
    r.id.params = op.params(&v).unwrap();
    r
}

//! Measures one point end to end: generate inputs, prepare the op (timed as
//! the cold start, less its one-time planning and compiling), run it once and
//! verify the output against the f64 reference, and only then sample it. The
//! result is always a [`Record`]: a point that cannot run, or runs wrong, says
//! why instead of carrying timings.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::backend::{Backend, BackendKind};
use crate::data::DEFAULT_SEED;
use crate::error::{LabError, Result};
use crate::measure::{self, Measurement, Sampling, StopRule};
use crate::memory;
use crate::ops::op::Inputs;
use crate::prepared_op::{PreparedOp, Sample, TimestampFault};
use crate::results::{
    LatencyMs, Measured, MemoryBytes, PhasesMs, PointId, Record, Skip, SkipKind, Throughput,
};
use crate::sample_clocks::{SampleClocks, WARNING_PREFIX as SLOW_CLOCK};
use crate::stats::{self, Samples};
use crate::verify::Accuracy;
use crate::workload::Workload;

/// A coefficient of variation above this earns a "noisy" warning.
const NOISY_CV: f64 = 0.10;

/// The record of `work` on `backend` before anything ran; naming its kernel
/// never tunes or compiles anything.
fn empty_record(backend: &dyn Backend, work: &Workload) -> Record {
    let dev = backend.device();
    Record {
        id: PointId::new(backend.kind(), work),
        layer: None,
        adapter: dev.name.clone(),
        device_type: dev.device_type.clone(),
        software_device: dev.software,
        kernel: backend.describe(work),
        max_abs_err: None,
        max_norm_err: None,
        tolerance: None,
        rows_checked: None,
        overflows: None,
        precision_cost: None,
        verified: false,
        skipped: None,
        warnings: Vec::new(),
        measured: None,
    }
}

/// A record for a point that could not be measured.
pub fn skipped_record(backend: &dyn Backend, work: &Workload, reason: Skip) -> Record {
    Record {
        skipped: Some(reason),
        ..empty_record(backend, work)
    }
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    Samples::new(v).map_or(0.0, |s| s.quantile(0.5))
}

/// Measures `work` on `backend`. Never panics on a device problem: errors
/// become a skipped record naming the cause.
///
/// With `max_run_s`, a point whose first run takes longer is verified but not
/// sampled: its record says it was cut and why (a slow device stays bounded).
pub fn measure_point(
    backend: &dyn Backend,
    work: &Workload,
    sampling: &Sampling,
    max_run_s: Option<f64>,
) -> Record {
    try_measure_point(backend, work, sampling, max_run_s).unwrap_or_else(|e| {
        skipped_record(backend, work, Skip::new(SkipKind::Error, e.to_string()))
    })
}

/// Like [`measure_point`], but a lost device is returned as an error (the
/// backend is unusable until reopened) instead of becoming a skipped record.
pub fn try_measure_point(
    backend: &dyn Backend,
    work: &Workload,
    sampling: &Sampling,
    max_run_s: Option<f64>,
) -> Result<Record> {
    let mut record = empty_record(backend, work);
    // A point the host (or, where its driver says, the GPU) cannot hold is
    // skipped with both numbers, before a byte of it is allocated (a sweep
    // goes on; a resumed sweep does not crash again).
    if let Some(e) = memory_limit(backend, work) {
        record.skipped = Some(Skip::new(SkipKind::Error, e.to_string()));
        return Ok(record);
    }
    let inputs = work.inputs(DEFAULT_SEED);
    match measure_inner(backend, work, &inputs, sampling, max_run_s, &mut record) {
        Ok(()) => Ok(record),
        Err(e @ LabError::DeviceLost(_)) => Err(e),
        Err(e) => Ok(Record {
            skipped: Some(Skip::new(SkipKind::Error, e.to_string())),
            measured: None,
            ..record
        }),
    }
}

/// The memory limit `work` would exceed on `backend`, if any: the host's
/// available memory, and on the GPU the device's free memory where its driver
/// reports it (NVML: the modeled buffers plus 5% and 64 MiB for staging and
/// the runtime).
fn memory_limit(backend: &dyn Backend, work: &Workload) -> Option<LabError> {
    let limit = |needed, limit_name, limit| LabError::Limit {
        what: format!(
            "{} {} {}",
            work.op(),
            work.precision,
            PointId::new(backend.kind(), work).shape_label()
        ),
        needed,
        limit_name,
        limit,
    };
    let needed = memory::host_bytes_needed(work, backend.kind() == BackendKind::Gpu);
    if let Some(available) = memory::available_bytes().filter(|&a| needed > a) {
        return Some(limit(
            needed,
            "the host's available memory (MemAvailable)",
            available,
        ));
    }
    let free = backend.monitor().and_then(|m| m.free_memory())?;
    let model = work.memory_model().total;
    let needed = model + model / 20 + (64 << 20);
    (needed > free).then(|| limit(needed, "the GPU's free memory (NVML)", free))
}

fn measure_inner(
    backend: &dyn Backend,
    work: &Workload,
    inputs: &Inputs,
    sampling: &Sampling,
    max_run_s: Option<f64>,
    record: &mut Record,
) -> Result<()> {
    let heap_before = memory::reset_peak();
    let t = Instant::now();
    let mut kernel = backend.prepare(work, inputs)?;
    let costs = kernel.one_time_costs();
    let one_time = costs.map_or(0, |c| c.planning_ns + c.compile_ns);
    // The model load stays in the cold start: a first request after loading pays it.
    let prepare_ns = (t.elapsed().as_nanos() as u64).saturating_sub(one_time);
    record.kernel = kernel.describe();
    let first = kernel.run()?;

    // Each phase's own heap peak, and the point's overall peak across them.
    let mut overall = memory::peak_bytes();
    let verify_start = memory::reset_peak();
    let accuracy = work.verify(inputs, &kernel.output()?, kernel.accumulation());
    let verification_peak = memory::peak_bytes().map(|p| p.saturating_sub(verify_start));
    overall = overall.max(memory::peak_bytes());
    apply_accuracy(record, &accuracy);
    if !accuracy.verified {
        record.skipped = Some(Skip::new(
            SkipKind::VerificationFailed,
            accuracy
                .failure
                .as_deref()
                .unwrap_or("output differs from the reference"),
        ));
        return Ok(());
    }
    let first_s = first.wall_ns as f64 * 1e-9;
    if let Some(limit) = max_run_s.filter(|&l| first_s > l) {
        record.skipped = Some(Skip::new(
            SkipKind::Cut,
            format!(
                "the first run took {first_s:.1} s on {}, over budget.max_run_seconds = {limit} (verified, not sampled)",
                backend.device().name
            ),
        ));
        return Ok(());
    }

    let timed_start = memory::reset_peak();
    let monitor = backend.monitor();
    let read = || monitor.and_then(|m| m.sm_clock_mhz());
    let clock = measure::Clock {
        read: &read,
        max_mhz: monitor.and_then(|m| m.max_sm_clock_mhz()),
    };
    let m = measure::run_watched(kernel.as_mut(), sampling, clock)?;
    let timed_peak = memory::peak_bytes().map(|p| p.saturating_sub(timed_start));
    overall = overall.max(memory::peak_bytes());
    let host_peak_alloc = overall.map(|p| p.saturating_sub(heap_before));
    let mut measured = summarize(
        work,
        kernel.as_ref(),
        &m,
        prepare_ns,
        first.best_ns(),
        sampling,
        host_peak_alloc,
    );
    measured.compile_ms = costs.map(|c| c.compile_ns as f64 * 1e-6);
    measured.sm_clock_mhz =
        SampleClocks::from_readings(&m.clocks_mhz, clock.max_mhz).map(|c| SampleClocks {
            lifted_ms: m.clock_lift_ms,
            ..c
        });
    let mem = &mut measured.memory_bytes;
    mem.inputs_bytes = Some(inputs.bytes());
    mem.verification_peak_alloc = verification_peak;
    mem.timed_peak_alloc = timed_peak;
    if let Some(monitor) = monitor {
        let per_run_ns = measured.latency_ms.p50 * 1e6;
        measured.energy = crate::energy::measure(kernel.as_mut(), monitor, work, per_run_ns)?;
    }
    record.measured = Some(measured);
    record.warnings = warnings(record.measured.as_ref().expect("just set"), &m);
    Ok(())
}

/// Adds a later pass's measurement of the same point to `record`: the raw
/// samples pooled, the latency summaries, rates and noise warning computed
/// over all of them, the timestamp fallbacks added up, `rounds` counted. A
/// later pass that failed verification or was not measured leaves the samples
/// as they were and says so in a warning (verification runs every pass).
pub fn pool_round(record: &mut Record, later: Record, work: &Workload) {
    let Some(m) = record.measured.as_mut() else {
        return;
    };
    let Some(l) = later.measured else {
        let why = later
            .skipped
            .map_or_else(|| "not measured".to_string(), |s| s.to_string());
        record
            .warnings
            .push(format!("round {} not pooled: {why}", m.rounds + 1));
        return;
    };
    m.raw_ns.extend(l.raw_ns);
    m.raw_wall_ns.extend(l.raw_wall_ns);
    for (fault, n) in l.timestamp_fallbacks {
        *m.timestamp_fallbacks.entry(fault).or_default() += n;
    }
    m.latency_ms = latency_of(&m.raw_ns);
    m.wall_latency_ms = latency_of(&m.raw_wall_ns);
    m.samples = m.raw_ns.len();
    (m.gflops, m.gbps, m.tokens_per_s) = rates(work, m.latency_ms.p50);
    m.rounds += 1;
    m.sm_clock_mhz = match (m.sm_clock_mhz, l.sm_clock_mhz) {
        (Some(a), Some(b)) => Some(a.pooled(b)),
        (a, b) => a.or(b),
    };
    record
        .warnings
        .retain(|w| !w.starts_with("noisy:") && !w.starts_with(SLOW_CLOCK));
    record.warnings.extend(noise_warning(&m.latency_ms));
    record
        .warnings
        .extend(m.sm_clock_mhz.and_then(|c| c.warning()));
}

fn apply_accuracy(record: &mut Record, a: &Accuracy) {
    record.max_abs_err = Some(a.max_abs_err);
    record.max_norm_err = Some(a.max_norm_err);
    record.overflows = (a.overflows > 0).then_some(a.overflows);
    record.precision_cost = Some(a.cost.clone());
    record.tolerance = Some(a.tolerance);
    record.rows_checked = Some(a.rows_checked);
    record.verified = a.verified;
}

/// The "noisy" warning for a latency summary, or `None` when its coefficient
/// of variation is within [`NOISY_CV`]. When the middle half of the samples
/// is tight and a few high outliers make the CV (a GPU's clocks ramping up in
/// the first samples, a preempted one), the warning says so: the median is
/// then sound, and a CV alone would call the point unreliable.
fn noise_warning(l: &stats::Summary) -> Option<String> {
    if l.cv <= NOISY_CV {
        return None;
    }
    let spread = if l.p50 > 0.0 {
        l.iqr / l.p50
    } else {
        f64::INFINITY
    };
    Some(if spread < NOISY_CV / 4.0 && l.outliers_high > 0 {
        format!(
            "noisy: coefficient of variation {:.1}% from {} high outlier(s) up to {:.1}x the median; the middle half spans {:.1}% of the median",
            l.cv * 100.0,
            l.outliers_high,
            l.max / l.p50,
            spread * 100.0
        )
    } else {
        format!("noisy: coefficient of variation {:.1}%", l.cv * 100.0)
    })
}

fn warnings(measured: &Measured, m: &Measurement) -> Vec<String> {
    let mut w = Vec::new();
    w.extend(noise_warning(&measured.latency_ms));
    w.extend(measured.sm_clock_mhz.and_then(|c| c.warning()));
    if m.stop == StopRule::MaxTime && m.samples.len() < 10 {
        w.push(format!(
            "time budget allowed only {} sample(s)",
            m.samples.len()
        ));
    }
    if !measured.timestamp_fallbacks.is_empty() {
        let total: u32 = measured.timestamp_fallbacks.values().sum();
        let reasons: Vec<String> = measured
            .timestamp_fallbacks
            .iter()
            .map(|(f, n)| format!("{n} {}", f.name()))
            .collect();
        w.push(format!(
            "{total} of {} sample(s) had an unbelievable device timestamp interval ({}) and use wall time",
            measured.samples,
            reasons.join(", ")
        ));
    }
    w
}

const MS: f64 = 1e-6;

/// The latency summary of raw samples in nanoseconds, in milliseconds.
fn latency_of(raw_ns: &[u64]) -> LatencyMs {
    // measure::run always returns at least one sample, and pooling only adds.
    let s = Samples::new(raw_ns.iter().map(|&v| v as f64)).expect("at least one sample");
    stats::summarize(&s).scaled(MS)
}

/// GFLOP/s, GB/s and tokens/s of `work` at a median of `p50_ms`.
fn rates(work: &Workload, p50_ms: f64) -> (f64, f64, f64) {
    let seconds = p50_ms / 1e3;
    (
        work.flops() as f64 / seconds / 1e9,
        work.bytes_moved() as f64 / seconds / 1e9,
        work.tokens() as f64 / seconds,
    )
}

fn summarize(
    work: &Workload,
    kernel: &dyn PreparedOp,
    m: &Measurement,
    prepare_ns: u64,
    first_ns: u64,
    sampling: &Sampling,
    host_peak_alloc: Option<u64>,
) -> Measured {
    let raw_ns: Vec<u64> = m.samples.iter().map(|s| s.best_ns()).collect();
    let raw_wall_ns: Vec<u64> = m.samples.iter().map(|s| s.wall_ns).collect();
    let latency = latency_of(&raw_ns);
    let (gflops, gbps, tokens_per_s) = rates(work, latency.p50);
    let flops = work.flops() as f64;
    let tokens = work.tokens() as f64;

    let model = work.memory_model();
    let measured = kernel.memory();
    let phases_ms = (!m.phases.is_empty()).then(|| PhasesMs {
        upload: median(m.phases.iter().map(|p| p.upload_ns as f64)) * MS,
        kernel: median(m.phases.iter().map(|p| p.kernel_ns as f64)) * MS,
        readback: median(m.phases.iter().map(|p| p.readback_ns as f64)) * MS,
        runs: m.phases.len() as u32,
        model_load: Some(kernel.model_load_ns() as f64 * MS),
    });
    let throughput = m.batch.clone().map(|b| {
        let per_s = b.per_dispatch_ns * 1e-9;
        Throughput {
            per_dispatch_ms: b.per_dispatch_ns * MS,
            gflops: flops / per_s / 1e9,
            tokens_per_s: tokens / per_s,
            batch: b,
        }
    });
    Measured {
        timing_method: kernel.timing_method(),
        samples: raw_ns.len(),
        stop_rule: m.stop,
        latency_ms: latency,
        wall_latency_ms: latency_of(&raw_wall_ns),
        prepare_ms: prepare_ns as f64 * MS,
        compile_ms: None,
        first_run_ms: first_ns as f64 * MS,
        warmup_runs: m.warmup_runs,
        cold_cache: sampling.cold_cache,
        phases_ms,
        throughput,
        gflops,
        gbps,
        tokens_per_s,
        arithmetic_intensity: work.arithmetic_intensity(),
        pct_of_copy_bandwidth: None,
        pct_of_fma_peak: None,
        memory_bytes: MemoryBytes {
            measured_over_model: measured.total as f64 / model.total as f64,
            model,
            measured,
            host_peak_alloc,
            process_peak_rss: memory::peak_rss_bytes(),
            inputs_bytes: None,
            verification_peak_alloc: None,
            timed_peak_alloc: None,
        },
        raw_ns,
        raw_wall_ns,
        timestamp_fallbacks: fallbacks_by_reason(&m.samples),
        energy: None,
        sm_clock_mhz: None,
        rounds: 1,
    }
}

/// How many samples fell back to wall time, by reason.
fn fallbacks_by_reason(samples: &[Sample]) -> BTreeMap<TimestampFault, u32> {
    let mut by = BTreeMap::new();
    for f in samples.iter().filter_map(|s| s.fault) {
        *by.entry(f).or_insert(0) += 1;
    }
    by
}

#[cfg(test)]
mod tests {
    use super::{fallbacks_by_reason, noise_warning};
    use crate::stats::{summarize, Samples};

    /// A tight sample with a few slow first runs is noisy by its CV, and the
    /// warning says the outliers made it; a spread sample gets the plain
    /// warning; a quiet one none.
    #[test]
    fn the_noise_warning_tells_outliers_from_spread() {
        let summary = |v: Vec<f64>| summarize(&Samples::new(v).unwrap());
        let mut ramp = vec![3.82; 100];
        ramp[..3].copy_from_slice(&[14.3, 12.0, 9.5]);
        let w = noise_warning(&summary(ramp)).unwrap();
        assert!(
            w.starts_with("noisy: coefficient of variation")
                && w.contains("from 3 high outlier(s) up to 3.7x the median"),
            "{w}"
        );
        let spread: Vec<f64> = (0..100).map(|i| 1.0 + (i % 10) as f64 * 0.1).collect();
        let w = noise_warning(&summary(spread)).unwrap();
        assert!(!w.contains("outlier"), "{w}");
        assert_eq!(noise_warning(&summary(vec![1.0, 1.01, 0.99, 1.0])), None);
    }
    use crate::prepared_op::{Sample, TimestampFault as F};
    use std::collections::BTreeMap;

    #[test]
    fn unbelievable_timestamps_are_counted_by_reason_and_timed_by_the_wall() {
        let s = |device_ns, fault| Sample {
            wall_ns: 1000,
            device_ns,
            fault,
        };
        let samples = [
            s(Some(900), None),
            s(None, Some(F::Zero)),
            s(None, Some(F::Zero)),
            s(None, Some(F::ExceedsWall)),
            s(None, Some(F::Negative)),
            s(None, Some(F::Wrapped)),
            Sample::wall(5),
        ];
        assert_eq!(
            fallbacks_by_reason(&samples),
            BTreeMap::from([
                (F::Zero, 2),
                (F::Negative, 1),
                (F::Wrapped, 1),
                (F::ExceedsWall, 1)
            ])
        );
        assert_eq!(samples[0].best_ns(), 900);
        assert_eq!(
            samples[1].best_ns(),
            1000,
            "a rejected interval falls back to wall time"
        );
        assert!(fallbacks_by_reason(&samples[..1]).is_empty());
    }

    /// Pooling a later round widens the clock span and replaces the slow-clock
    /// warning by one over both rounds. Planted: the later round's clocks
    /// ignored -> its dip is missed -> fails.
    #[test]
    fn pooled_rounds_pool_their_clocks_and_rewarn() {
        use super::pool_round;
        use crate::precision::Precision;
        use crate::report::testdata::synthetic;
        use crate::report::testdata::work;
        use crate::sample_clocks::{SampleClocks, WARNING_PREFIX};
        let point = |clocks: &[u32]| {
            let mut r = synthetic("embedding", "gpu", Precision::F16, 1, 8, 64, 0.1);
            let m = r.measured.as_mut().unwrap();
            m.sm_clock_mhz = SampleClocks::from_readings(clocks, Some(1980));
            r.warnings.extend(m.sm_clock_mhz.and_then(|c| c.warning()));
            r
        };
        let work = work(
            "embedding",
            Precision::F16,
            &[("batch", 1), ("seq", 8), ("dim", 64), ("vocab", 100)],
        );
        let mut first = point(&[1980, 1700]);
        assert!(first.warnings.is_empty());
        pool_round(&mut first, point(&[345, 1980]), &work);
        let c = first.measured.as_ref().unwrap().sm_clock_mhz.unwrap();
        assert_eq!((c.first, c.min, c.last, c.readings), (1980, 345, 1980, 4));
        let slow: Vec<_> = first
            .warnings
            .iter()
            .filter(|w| w.starts_with(WARNING_PREFIX))
            .collect();
        assert_eq!(slow.len(), 1, "{:?}", first.warnings);
        assert!(slow[0].contains("345 MHz"), "{}", slow[0]);
    }
}

//! Runs an experiment's points: orders them so each device is calibrated on
//! cheap points first, cuts points whose estimated run time exceeds the budget
//! (saying so in their record), measures the rest, and saves the results file
//! after every point so an interrupted run keeps what it measured.

use std::collections::HashMap;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::{Backend, BackendKind};
use crate::error::Result;
use crate::experiment::{Point, Spec};
use crate::measure::Sampling;
use crate::point::{measure_point, skipped_record};
use crate::results::{Environment, Record, ResultsFile, SCHEMA_VERSION};
use crate::workload::{Op, Precision, Workload};

/// The backends a sweep may use.
pub struct Backends<'a> {
    /// The GPU, or why there is none.
    pub gpu: std::result::Result<&'a dyn Backend, String>,
    /// The CPU.
    pub cpu: &'a dyn Backend,
}

impl Backends<'_> {
    fn get(&self, kind: BackendKind) -> std::result::Result<&dyn Backend, String> {
        match kind {
            BackendKind::Cpu => Ok(self.cpu),
            BackendKind::Gpu => self.gpu.clone(),
        }
    }
}

/// What a point costs in the unit its time scales with: FLOPs for a projection,
/// bytes for a gather.
fn cost(work: &Workload) -> f64 {
    if work.flops() > 0 {
        work.flops() as f64
    } else {
        work.bytes_moved() as f64
    }
}

type Family = (BackendKind, Op, Precision);

/// Measured seconds per unit of cost, per device family, from earlier points.
#[derive(Default)]
struct Calibration(HashMap<Family, (f64, f64)>);

impl Calibration {
    fn family(p: &Point) -> Family {
        (p.backend, p.work.op, p.work.precision)
    }

    /// Estimated seconds for one run of `p`, scaled from the largest point of
    /// its family measured so far, else from the slowest rate of any family on
    /// the same backend whose cost is counted in the same unit (FLOPs or bytes).
    fn estimate(&self, p: &Point) -> Option<f64> {
        let scale = |&(c, secs): &(f64, f64)| secs * cost(&p.work) / c;
        if let Some(own) = self.0.get(&Self::family(p)) {
            return Some(scale(own));
        }
        let flops = p.work.flops() > 0;
        self.0
            .iter()
            .filter(|((b, op, _), _)| *b == p.backend && op.uses_weight() == flops)
            .map(|(_, v)| scale(v))
            .reduce(f64::max)
    }

    fn learn(&mut self, p: &Point, r: &Record) {
        if let Some(m) = &r.measured {
            let c = cost(&p.work);
            let entry = self
                .0
                .entry(Self::family(p))
                .or_insert((c, m.latency_ms.p50 / 1e3));
            if c >= entry.0 {
                *entry = (c, m.latency_ms.p50 / 1e3);
            }
        }
    }
}

/// The sampling used for a run: the spec's, or a much cheaper one with `--quick`.
pub fn sampling_for(spec: &Spec, quick: bool) -> Sampling {
    if quick {
        let q = Sampling::quick();
        Sampling {
            max_ms: q.max_ms.min(spec.sampling.max_ms),
            ..q
        }
    } else {
        spec.sampling.clone()
    }
}

/// Runs `points` of `spec` and saves `out/results.json` after each one.
pub fn run(
    spec: &Spec,
    points: &[Point],
    backends: &Backends,
    sampling: &Sampling,
    out: &Path,
    env: Environment,
) -> Result<ResultsFile> {
    let mut file = ResultsFile {
        schema_version: SCHEMA_VERSION,
        spec: serde_json::to_value(spec).expect("a spec serialises"),
        environment: env,
        complete: false,
        records: Vec::new(),
    };
    let path = out.join("results.json");
    file.save(&path)?;

    // Cheap points first within each family, so the estimate for an expensive
    // point comes from a measured neighbour.
    let mut order: Vec<&Point> = points.iter().collect();
    order.sort_by(|a, b| {
        (a.backend.name(), a.work.op.name(), a.work.precision.name())
            .cmp(&(b.backend.name(), b.work.op.name(), b.work.precision.name()))
            .then(cost(&a.work).total_cmp(&cost(&b.work)))
    });

    let bar = ProgressBar::new(order.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} points, {elapsed} elapsed, ETA {eta} {msg}",
        )
        .expect("a valid template"),
    );
    let mut calibration = Calibration::default();
    for p in order {
        let w = &p.work;
        bar.set_message(format!(
            "{} {} {} B{} S{} D{}",
            p.backend, w.op, w.precision, w.shape.batch, w.shape.seq, w.shape.dim
        ));
        let record = match backends.get(p.backend) {
            Err(why) => Record {
                backend: p.backend.name().into(),
                adapter: "none".into(),
                device_type: "none".into(),
                software_device: false,
                kernel: String::new(),
                ..skipped_record(backends.cpu, w, format!("no GPU: {why}"))
            },
            Ok(b) => match calibration.estimate(p) {
                Some(est) if est > spec.budget.max_run_seconds => skipped_record(
                    b,
                    w,
                    format!(
                        "cut: one run estimated at {est:.1} s on {} (from a measured smaller point), over budget.max_run_seconds = {}",
                        b.device().name,
                        spec.budget.max_run_seconds
                    ),
                ),
                _ => measure_point(b, w, sampling, Some(spec.budget.max_run_seconds)),
            },
        };
        calibration.learn(p, &record);
        file.records.push(record);
        file.save(&path)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    file.complete = true;
    file.save(&path)?;
    Ok(file)
}

//! Runs an experiment's points: orders them so each device is calibrated on
//! cheap points first, cuts points whose estimated run time exceeds the budget
//! (saying so in their record), measures the rest, and saves the results file
//! after every point so an interrupted run keeps what it measured.
//!
//! A lost GPU device is reopened once and the point retried; if that fails the
//! remaining GPU points are recorded as skipped and the CPU points still run.
//! [`request_stop`] (Ctrl-C) ends the sweep after the current point, leaving a
//! valid results file marked incomplete; a resumed run skips the points it holds.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

use crate::anchor::{AnchorSession, Anchors};
use crate::backend::{Backend, BackendKind};
use crate::error::{LabError, Result};
use crate::experiment::{Point, Spec};
use crate::measure::Sampling;
use crate::point::{skipped_record, try_measure_point};
use crate::results::{Environment, Record, ResultsFile, SCHEMA_VERSION};
use crate::workload::{Op, Precision, Workload};

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks a running sweep to stop after the point it is measuring (signal-safe).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Opens (or reopens) the GPU backend.
pub type GpuOpener = Box<dyn Fn() -> Result<Box<dyn Backend>>>;

/// The backends a sweep may use.
pub struct Backends {
    /// The GPU, or why there is none.
    pub gpu: std::result::Result<Box<dyn Backend>, String>,
    /// The CPU.
    pub cpu: Box<dyn Backend>,
    /// Reopens the GPU after its device is lost (tried once per sweep).
    pub reopen_gpu: Option<GpuOpener>,
    /// The library to time beside each verified CPU point, if the spec asks
    /// for one: its running helper, or why it could not start.
    pub anchor: Option<std::result::Result<AnchorSession, String>>,
}

/// What identifies a point in a results file, whatever measured it.
pub fn point_key(r: &Record) -> (String, Op, Precision, u32, u32, u32, u32) {
    (
        r.backend.clone(),
        r.op,
        r.precision,
        r.batch,
        r.seq,
        r.dim,
        r.vocab,
    )
}

fn key_of(p: &Point) -> (String, Op, Precision, u32, u32, u32, u32) {
    let s = &p.work.shape;
    (
        p.backend.name().into(),
        p.work.op,
        p.work.precision,
        s.batch,
        s.seq,
        s.dim,
        s.vocab,
    )
}

/// A record for a GPU point when there is no usable GPU.
fn no_gpu_record(cpu: &dyn Backend, w: &Workload, why: &str) -> Record {
    Record {
        backend: BackendKind::Gpu.name().into(),
        adapter: "none".into(),
        device_type: "none".into(),
        software_device: false,
        kernel: String::new(),
        ..skipped_record(cpu, w, format!("no GPU: {why}"))
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

/// The outcome of a sweep.
pub struct Outcome {
    /// The results as saved.
    pub results: ResultsFile,
    /// True when a stop request ended the sweep early.
    pub interrupted: bool,
}

/// Runs `points` of `spec` and saves `out/results.json` after each one. With
/// `resume`, its records are kept and the points they cover are not run again.
pub fn run(
    spec: &Spec,
    points: &[Point],
    backends: &mut Backends,
    sampling: &Sampling,
    out: &Path,
    env: Environment,
    resume: Option<ResultsFile>,
) -> Result<Outcome> {
    let mut file = resume.unwrap_or_else(|| ResultsFile {
        schema_version: SCHEMA_VERSION,
        spec: serde_json::to_value(spec).expect("a spec serialises"),
        environment: env,
        complete: false,
        records: Vec::new(),
        anchors: None,
    });
    file.complete = false;
    match (&backends.anchor, spec.anchor) {
        (Some(Ok(session)), Some(kind)) => {
            let a = file.anchors.get_or_insert_with(|| Anchors {
                kind,
                library: session.library.clone(),
                unavailable: None,
                points: Vec::new(),
            });
            a.library = session.library.clone();
            a.unavailable = None;
        }
        (Some(Err(why)), Some(kind)) => {
            file.anchors = Some(Anchors::unavailable(kind, why.clone()));
        }
        _ => {}
    }
    let path = out.join("results.json");
    if spec.probe_ceilings {
        probe_ceilings(&mut file, points, backends);
    }
    file.save(&path)?;
    let done: HashSet<_> = file.records.iter().map(point_key).collect();

    // Cheap points first within each family, so the estimate for an expensive
    // point comes from a measured neighbour.
    let mut order: Vec<&Point> = points
        .iter()
        .filter(|p| !done.contains(&key_of(p)))
        .collect();
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
    for r in &file.records {
        if let Some(p) = points.iter().find(|p| key_of(p) == point_key(r)) {
            calibration.learn(p, r);
        }
    }
    let mut reopened = false;
    let mut interrupted = false;
    for p in order {
        if STOP.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let w = &p.work;
        bar.set_message(format!(
            "{} {} {} B{} S{} D{}",
            p.backend, w.op, w.precision, w.shape.batch, w.shape.seq, w.shape.dim
        ));
        let record = loop {
            let backend = match p.backend {
                BackendKind::Cpu => backends.cpu.as_ref(),
                BackendKind::Gpu => match &backends.gpu {
                    Ok(g) => g.as_ref(),
                    Err(why) => break no_gpu_record(backends.cpu.as_ref(), w, why),
                },
            };
            if let Some(est) = calibration
                .estimate(p)
                .filter(|&e| e > spec.budget.max_run_seconds)
            {
                break skipped_record(
                    backend,
                    w,
                    format!(
                        "cut: one run estimated at {est:.1} s on {} (from a measured smaller point), over budget.max_run_seconds = {}",
                        backend.device().name,
                        spec.budget.max_run_seconds
                    ),
                );
            }
            match try_measure_point(backend, w, sampling, Some(spec.budget.max_run_seconds)) {
                Ok(r) => break r,
                Err(lost) => {
                    // Only the GPU can be lost. Reopen it once and retry the point.
                    let reopen = backends.reopen_gpu.as_ref().filter(|_| !reopened);
                    reopened = true;
                    backends.gpu = match reopen.map(|f| f()) {
                        Some(Ok(g)) => {
                            bar.println(format!("note: {lost}; the device was recreated"));
                            Ok(g)
                        }
                        Some(Err(e)) => Err(format!("{lost}; recreating it failed: {e}")),
                        None => Err(format!("{lost}; not recreated again")),
                    };
                }
            }
        };
        calibration.learn(p, &record);
        let mut record = record;
        if let Some(c) = file.environment.ceilings.get(p.backend.name()) {
            record.apply_ceilings(c);
        }
        anchor(&mut file, backends, &record);
        file.records.push(record);
        if let Ok(g) = &backends.gpu {
            let tuned = g.autotuning();
            if !tuned.is_empty() {
                file.environment.autotuning = tuned;
            }
        }
        file.save(&path)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    file.complete = !interrupted;
    file.save(&path)?;
    Ok(Outcome {
        results: file,
        interrupted,
    })
}

/// Hands a verified CPU point to the anchor's helper, right after the lab
/// measured it, and keeps its answer; a helper that fails is reported once and
/// not asked again.
fn anchor(file: &mut ResultsFile, backends: &mut Backends, record: &Record) {
    let Some(Ok(session)) = backends.anchor.as_mut() else {
        return;
    };
    if record.backend != "cpu" || !record.verified || record.measured.is_none() {
        return;
    }
    let Some(anchors) = file.anchors.as_mut() else {
        return;
    };
    match session.measure(record) {
        Ok(point) => anchors.points.push(point),
        Err(why) => {
            anchors.unavailable = Some(format!(
                "stopped after {} points: {why}",
                anchors.points.len()
            ));
            backends.anchor = Some(Err(why));
        }
    }
}

/// Measures the ceilings of every backend the points use, once per results
/// file (a resumed run keeps the ones it has). A failed probe is reported and
/// leaves the records without percentages; it does not stop the sweep.
fn probe_ceilings(file: &mut ResultsFile, points: &[Point], backends: &Backends) {
    for kind in [BackendKind::Gpu, BackendKind::Cpu] {
        if file.environment.ceilings.contains_key(kind.name())
            || !points.iter().any(|p| p.backend == kind)
        {
            continue;
        }
        let backend = match kind {
            BackendKind::Cpu => backends.cpu.as_ref(),
            BackendKind::Gpu => match &backends.gpu {
                Ok(g) => g.as_ref(),
                Err(_) => continue,
            },
        };
        match backend.probe_ceilings() {
            Ok(c) => {
                file.environment.ceilings.insert(kind.name().into(), c);
            }
            Err(e) => eprintln!("note: {kind} ceilings not probed: {e}"),
        }
    }
}

/// Loads the results of an earlier run to resume it.
pub fn load_for_resume(out: &Path) -> Result<ResultsFile> {
    let path = out.join("results.json");
    if !path.exists() {
        return Err(LabError::invalid(
            "--resume",
            &out.display().to_string(),
            "holds no results.json to resume",
        ));
    }
    ResultsFile::load(&path)
}

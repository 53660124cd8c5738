//! Runs an experiment's points: orders them so each device is calibrated on
//! cheap points first, cuts points whose estimated run time exceeds the budget
//! (saying so in their record), measures the rest, and saves the results file
//! after every point so an interrupted run keeps what it measured.
//!
//! A lost GPU device is reopened once and the point retried; if that fails the
//! remaining GPU points are recorded as skipped and the CPU points still run.
//! `stop::request_stop` (Ctrl-C) ends the sweep after the current point, leaving a
//! valid results file marked incomplete; a resumed run skips the points it holds.
//!
//! The sweep prints nothing: it reports through a [`Progress`], which the CLI
//! draws as a progress bar.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::anchor_helper::AnchorSession;
use crate::backend::{Backend, BackendKind};
use crate::error::{LabError, Result};
use crate::experiment::{Point, Spec};
use crate::machine_state::{self, MachineState};
use crate::measure::Sampling;
use crate::measure_point::{skipped_record, try_measure_point};
use crate::ops::Op;
use crate::precision::Precision;
use crate::results::{
    Anchors, Environment, PointId, Record, ResultsFile, Skip, SkipKind, SCHEMA_VERSION,
};
use crate::stop::stop_requested;
use crate::workload::Workload;

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
}

impl Backends {
    /// The GPU driver's monitor, when there is a GPU and its driver has one.
    fn gpu_monitor(&self) -> Option<&crate::gpu_monitor::GpuMonitor> {
        self.gpu.as_ref().ok().and_then(|g| g.monitor())
    }
}

/// The library to time beside each verified CPU point, when the spec asks for
/// one: its running helper, or why it could not start.
pub type Anchor = Option<std::result::Result<AnchorSession, String>>;

/// How a sweep tells its caller what it is doing; the library never prints.
pub trait Progress {
    /// The sweep will measure `points` points.
    fn start(&mut self, points: usize);
    /// Measuring `point` begins.
    fn point(&mut self, point: &PointId);
    /// A point is done: its record.
    fn advance(&mut self, record: &Record);
    /// Something the user should know (a recreated device, a failed probe).
    fn note(&mut self, message: &str);
    /// The sweep is over.
    fn finish(&mut self);
}

/// A [`Progress`] that keeps the notes and shows nothing (tests, embedding).
#[derive(Debug, Default)]
pub struct Quiet {
    /// Every note, in order.
    pub notes: Vec<String>,
}

impl Progress for Quiet {
    fn start(&mut self, _: usize) {}
    fn point(&mut self, _: &PointId) {}
    fn advance(&mut self, _: &Record) {}
    fn note(&mut self, message: &str) {
        self.notes.push(message.to_string());
    }
    fn finish(&mut self) {}
}

/// A record for a GPU point when there is no usable GPU.
fn no_gpu_record(cpu: &dyn Backend, w: &Workload, why: &str) -> Record {
    let mut r = skipped_record(cpu, w, Skip::new(SkipKind::NoGpu, why));
    r.id.backend = BackendKind::Gpu;
    Record {
        adapter: "none".into(),
        device_type: "none".into(),
        software_device: false,
        kernel: String::new(),
        ..r
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

/// Estimates a point's run time from the measured cost rate of earlier
/// points: seconds per unit of cost, per device family (with whether the
/// family's cost counts FLOPs or bytes).
#[derive(Default)]
struct CostEstimator(HashMap<Family, (f64, f64, bool)>);

impl CostEstimator {
    fn family(p: &Point) -> Family {
        (p.backend, p.work.op(), p.work.precision)
    }

    /// Estimated seconds for one run of `p`, scaled from the largest point of
    /// its family measured so far, else from the slowest rate of any family on
    /// the same backend whose cost is counted in the same unit (FLOPs or bytes).
    fn estimate(&self, p: &Point) -> Option<f64> {
        let scale = |&(c, secs, _): &(f64, f64, bool)| secs * cost(&p.work) / c;
        if let Some(own) = self.0.get(&Self::family(p)) {
            return Some(scale(own));
        }
        let flops = p.work.flops() > 0;
        self.0
            .iter()
            .filter(|((b, _, _), v)| *b == p.backend && v.2 == flops)
            .map(|(_, v)| scale(v))
            .reduce(f64::max)
    }

    fn learn(&mut self, p: &Point, r: &Record) {
        if let Some(m) = &r.measured {
            let c = cost(&p.work);
            let flops = p.work.flops() > 0;
            let entry = self
                .0
                .entry(Self::family(p))
                .or_insert((c, m.latency_ms.p50 / 1e3, flops));
            if c >= entry.0 {
                *entry = (c, m.latency_ms.p50 / 1e3, flops);
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

/// One sweep: which points of which spec, sampled how, saved where.
pub struct Sweep<'a> {
    /// The experiment.
    pub spec: &'a Spec,
    /// Its points to run (after any backend filter).
    pub points: &'a [Point],
    /// How each point is sampled.
    pub sampling: &'a Sampling,
    /// The output folder; results.json is written there after every point.
    pub out: &'a Path,
}

impl Sweep<'_> {
    /// Runs the points and saves `out/results.json` after each one. With
    /// `resume`, its records are kept and the points they cover are not run
    /// again.
    pub fn run(
        &self,
        backends: &mut Backends,
        anchor: &mut Anchor,
        env: Environment,
        resume: Option<ResultsFile>,
        progress: &mut dyn Progress,
    ) -> Result<Outcome> {
        let (spec, points) = (self.spec, self.points);
        let mut file = resume.unwrap_or_else(|| ResultsFile {
            schema_version: SCHEMA_VERSION,
            spec: serde_json::to_value(spec).expect("a spec serialises"),
            environment: env,
            complete: false,
            records: Vec::new(),
            anchors: None,
        });
        file.complete = false;
        match (anchor.as_ref(), spec.anchor) {
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
        let path = self.out.join("results.json");
        file.environment.machine_before = Some(MachineState::capture(backends.gpu_monitor()));
        file.environment.machine_after = None;
        file.environment.machine_warnings.clear();
        if spec.probe_ceilings {
            probe_ceilings(&mut file, points, backends, progress);
        }
        file.save(&path)?;
        let done: HashSet<PointId> = file.records.iter().map(|r| r.id).collect();

        // Cheap points first within each family, so the estimate for an expensive
        // point comes from a measured neighbour.
        let mut sorted: Vec<&Point> = points.iter().collect();
        sorted.sort_by(|a, b| {
            (
                a.backend.name(),
                a.work.op().name(),
                a.work.precision.name(),
            )
                .cmp(&(
                    b.backend.name(),
                    b.work.op().name(),
                    b.work.precision.name(),
                ))
                .then(cost(&a.work).total_cmp(&cost(&b.work)))
        });
        let order: Vec<&Point> = sorted
            .iter()
            .copied()
            .filter(|p| !done.contains(&p.id()))
            .collect();
        let first_round = self.sampling.for_round(true);

        progress.start(order.len());
        let mut estimator = CostEstimator::default();
        for r in &file.records {
            if let Some(p) = points.iter().find(|p| p.id() == r.id) {
                estimator.learn(p, r);
            }
        }
        let mut reopened = false;
        let mut interrupted = false;
        for p in order {
            if stop_requested() {
                interrupted = true;
                break;
            }
            progress.point(&p.id());
            let w = &p.work;
            let record = loop {
                let backend = match p.backend {
                    BackendKind::Cpu => backends.cpu.as_ref(),
                    BackendKind::Gpu => match &backends.gpu {
                        Ok(g) => g.as_ref(),
                        Err(why) => break no_gpu_record(backends.cpu.as_ref(), w, why),
                    },
                };
                if let Some(est) = estimator
                    .estimate(p)
                    .filter(|&e| e > spec.budget.max_run_seconds)
                {
                    break skipped_record(
                        backend,
                        w,
                        Skip::new(
                            SkipKind::Cut,
                            format!(
                                "one run estimated at {est:.1} s on {} (from a measured smaller point), over budget.max_run_seconds = {}",
                                backend.device().name,
                                spec.budget.max_run_seconds
                            ),
                        ),
                    );
                }
                match try_measure_point(backend, w, &first_round, Some(spec.budget.max_run_seconds))
                {
                    Ok(r) => break r,
                    Err(lost) => {
                        // Only the GPU can be lost. Reopen it once and retry the point.
                        let reopen = backends.reopen_gpu.as_ref().filter(|_| !reopened);
                        reopened = true;
                        backends.gpu = match reopen.map(|f| f()) {
                            Some(Ok(g)) => {
                                progress.note(&format!("{lost}; the device was recreated"));
                                Ok(g)
                            }
                            Some(Err(e)) => Err(format!("{lost}; recreating it failed: {e}")),
                            None => Err(format!("{lost}; not recreated again")),
                        };
                    }
                }
            };
            estimator.learn(p, &record);
            let mut record = record;
            record.layer = p.layer.map(|l| l.label());
            if let Some(c) = file.environment.ceilings.get(&p.backend) {
                record.apply_ceilings(c);
            }
            ask_anchor(&mut file, anchor, &record);
            file.records.push(record);
            let record = file.records.last().expect("just pushed");
            if let Ok(g) = &backends.gpu {
                let tuned = g.autotuning();
                if !tuned.is_empty() {
                    file.environment.autotuning = tuned;
                }
            }
            file.save(&path)?;
            progress.advance(record);
        }
        if !interrupted {
            interrupted = self.later_rounds(&sorted, backends, &mut file, &path, progress)?;
        }
        progress.finish();
        let after = MachineState::capture(backends.gpu_monitor());
        let env = &mut file.environment;
        if let Some(before) = &env.machine_before {
            env.machine_warnings = machine_state::warnings(before, &after, env.cores);
            for w in &env.machine_warnings {
                progress.note(w);
            }
        }
        env.machine_after = Some(after);
        file.complete = !interrupted;
        file.save(&path)?;
        Ok(Outcome {
            results: file,
            interrupted,
        })
    }
}

impl Sweep<'_> {
    /// Passes 2.. of `sampling.rounds`: every measured point of `sorted` that
    /// has had fewer passes is measured again (verified again) with its
    /// share of the budgets, every other pass in reverse order so drift that
    /// grows with time weighs on cheap and costly points alike, and its
    /// samples are pooled into its record; the file is saved after each.
    /// Points cut, skipped or failed in the first pass are not run again.
    /// Returns whether a stop request ended it.
    fn later_rounds(
        &self,
        sorted: &[&Point],
        backends: &mut Backends,
        file: &mut ResultsFile,
        path: &Path,
        progress: &mut dyn Progress,
    ) -> Result<bool> {
        let sampling = self.sampling.for_round(false);
        // Later passes add no records, so each point's index holds throughout.
        let index: HashMap<PointId, usize> = file
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id, i))
            .collect();
        for round in 2..=self.sampling.rounds {
            let mut pass: Vec<(&Point, usize)> = sorted
                .iter()
                .filter_map(|p| {
                    let i = *index.get(&p.id())?;
                    let m = file.records[i].measured.as_ref()?;
                    (m.rounds < round).then_some((*p, i))
                })
                .collect();
            if round % 2 == 0 {
                pass.reverse();
            }
            if pass.is_empty() {
                continue;
            }
            progress.note(&format!(
                "round {round} of {}: {} measured point(s), {}",
                self.sampling.rounds,
                pass.len(),
                if round % 2 == 0 {
                    "costliest first"
                } else {
                    "cheapest first"
                }
            ));
            progress.start(pass.len());
            for (p, i) in pass {
                if stop_requested() {
                    return Ok(true);
                }
                progress.point(&p.id());
                let backend = match (p.backend, &backends.gpu) {
                    (BackendKind::Cpu, _) => backends.cpu.as_ref(),
                    (BackendKind::Gpu, Ok(g)) => g.as_ref(),
                    (BackendKind::Gpu, Err(_)) => continue,
                };
                let later = match try_measure_point(backend, &p.work, &sampling, None) {
                    Ok(r) => r,
                    Err(lost) => {
                        progress.note(&format!("{lost}; round {round} skips the GPU's points"));
                        backends.gpu = Err(lost.to_string());
                        continue;
                    }
                };
                let record = &mut file.records[i];
                crate::measure_point::pool_round(record, later, &p.work);
                if let Some(c) = file.environment.ceilings.get(&p.backend) {
                    record.apply_ceilings(c);
                }
                file.save(path)?;
                progress.advance(&file.records[i]);
            }
        }
        Ok(false)
    }
}

/// Hands a verified CPU point to the anchor's helper, right after the lab
/// measured it, and keeps its answer; a helper that fails is reported once and
/// not asked again.
fn ask_anchor(file: &mut ResultsFile, anchor: &mut Anchor, record: &Record) {
    let Some(Ok(session)) = anchor.as_mut() else {
        return;
    };
    if record.id.backend != BackendKind::Cpu || !record.verified || record.measured.is_none() {
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
            *anchor = Some(Err(why));
        }
    }
}

/// Measures the ceilings of every backend the points use, once per results
/// file (a resumed run keeps the ones it has). A failed probe is reported and
/// leaves the records without percentages; it does not stop the sweep.
fn probe_ceilings(
    file: &mut ResultsFile,
    points: &[Point],
    backends: &Backends,
    progress: &mut dyn Progress,
) {
    for kind in BackendKind::ALL {
        if file.environment.ceilings.contains_key(&kind)
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
                file.environment.ceilings.insert(kind, c);
            }
            Err(e) => progress.note(&format!("{kind} ceilings not probed: {e}")),
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

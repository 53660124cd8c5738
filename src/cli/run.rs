//! `kernel-lab run <spec>` (and `kernel-lab` alone, which runs the built-in
//! default experiment): sweep the spec's points, writing results.json after
//! every point, then the charts and report.md.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kernel_lab::anchor_helper::{self, AnchorSession};
use kernel_lab::backend::cpu::CpuBackend;
use kernel_lab::backend::{Backend, BackendKind};
use kernel_lab::error::LabError;
use kernel_lab::experiment::Spec;
use kernel_lab::out_dir::{self, Existing, Intent};
use kernel_lab::report;
use kernel_lab::results::{AnchorKind, Environment, PointId, Record, SkipKind};
use kernel_lab::sweep::{self, Backends, Progress, Sweep};

use super::common::GpuArgs;
use super::output::Format;
use kernel_lab::ops::Op;
use kernel_lab::precision::Precision;

/// The sweep's progress on stderr. On a terminal: an indicatif bar with the
/// point being measured and an ETA, redrawn every second (so a long
/// autotuning still shows time passing). Elsewhere (a log, CI): a line per
/// point as it starts and as it ends (p50, verified), and a line every 30 s
/// while one point takes long.
enum Bar {
    Tty(ProgressBar),
    Lines {
        total: usize,
        done: usize,
        current: Arc<Mutex<Option<(String, Instant)>>>,
    },
}

impl Bar {
    fn new() -> Self {
        if std::io::stderr().is_terminal() {
            return Bar::Tty(ProgressBar::new(0));
        }
        let current: Arc<Mutex<Option<(String, Instant)>>> = Arc::default();
        let watch = Arc::clone(&current);
        // The heartbeat: says which point is still running, every 30 s.
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(30));
            if let Some((label, since)) = watch.lock().ok().and_then(|g| g.clone()) {
                let s = since.elapsed().as_secs();
                if s >= 30 {
                    eprintln!("  still measuring {label}: {s} s so far (sampling, or autotuning a new shape)");
                }
            }
        });
        Bar::Lines {
            total: 0,
            done: 0,
            current,
        }
    }
}

fn label(p: &PointId) -> String {
    format!(
        "{} {} {} {}",
        p.backend,
        p.op(),
        p.precision,
        p.shape_label()
    )
}

impl Progress for Bar {
    fn start(&mut self, points: usize) {
        match self {
            Bar::Tty(bar) => {
                bar.reset();
                bar.set_length(points as u64);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{bar:30} {pos}/{len} points, {elapsed} elapsed, ETA {eta} {msg}",
                    )
                    .expect("a valid template"),
                );
                bar.enable_steady_tick(Duration::from_secs(1));
            }
            Bar::Lines { total, done, .. } => {
                *total = points;
                *done = 0;
            }
        }
    }
    fn point(&mut self, p: &PointId) {
        match self {
            Bar::Tty(bar) => bar.set_message(label(p)),
            Bar::Lines { current, .. } => {
                if let Ok(mut c) = current.lock() {
                    *c = Some((label(p), Instant::now()));
                }
            }
        }
    }
    fn advance(&mut self, r: &Record) {
        match self {
            Bar::Tty(bar) => bar.inc(1),
            Bar::Lines {
                total,
                done,
                current,
            } => {
                *done += 1;
                let took = current
                    .lock()
                    .ok()
                    .and_then(|mut c| c.take())
                    .map_or(0.0, |(_, t)| t.elapsed().as_secs_f64());
                let what = match &r.measured {
                    Some(m) => format!(
                        "p50 {}, {} samples, verified {}",
                        super::output::duration(m.latency_ms.p50),
                        m.samples,
                        r.verified
                    ),
                    None => r
                        .skipped
                        .as_ref()
                        .map_or("not measured".into(), |s| s.to_string()),
                };
                eprintln!("[{done}/{total}] {}: {what} ({took:.1} s)", label(&r.id));
            }
        }
    }
    fn note(&mut self, message: &str) {
        match self {
            Bar::Tty(bar) => bar.println(format!("note: {message}")),
            Bar::Lines { .. } => eprintln!("note: {message}"),
        }
    }
    fn finish(&mut self) {
        match self {
            Bar::Tty(bar) => bar.finish_and_clear(),
            Bar::Lines { current, .. } => {
                if let Ok(mut c) = current.lock() {
                    *c = None;
                }
            }
        }
    }
}

/// The most points a sweep runs without --allow-long.
const MAX_POINTS: usize = 20_000;
/// The longest a sweep's sampling may take without --allow-long, hours.
const MAX_SWEEP_HOURS: f64 = 12.0;

/// The default experiment, built in so `kernel-lab` alone works anywhere.
pub const DEFAULT_SPEC: &str = include_str!("../../experiments/default.toml");

/// Which backends `run` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RunBackend {
    /// Every backend the spec names.
    All,
    /// Only the spec's GPU points.
    Gpu,
    /// Only the spec's CPU points.
    Cpu,
}

/// Arguments of `run`.
#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// The experiment file (experiments/*.toml).
    spec: Option<PathBuf>,
    /// Output folder (default: out/<experiment name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Restrict the run to one backend.
    #[arg(long, value_enum)]
    backend: Option<RunBackend>,
    /// Run only these ops of the spec (comma-separated: matmul,embedding).
    #[arg(long, value_delimiter = ',')]
    op: Vec<Op>,
    /// Run only these precisions of the spec (comma-separated: f32,f16).
    #[arg(long, value_delimiter = ',')]
    precision: Vec<Precision>,
    /// How the summary prints on stdout: an aligned table, JSON records, or CSV.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Much cheaper sampling (a smoke run, not numbers to quote).
    #[arg(long)]
    quick: bool,
    /// Override an axis: --set dim=128,256 (repeatable).
    #[arg(long = "set", value_name = "AXIS=V1,V2")]
    overrides: Vec<String>,
    /// A TOML file whose `[[model]]` tables join the spec's own, so its
    /// `model` axis (or --set model=...) may name them: any shipped experiment
    /// on a model of yours, without editing it.
    #[arg(long, value_name = "FILE")]
    models_from: Option<PathBuf>,
    /// Continue an interrupted run in this folder, skipping the points its
    /// results.json already holds (the spec comes from that file unless given).
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// With --resume: run again the points the file records as skipped (no
    /// GPU then, an error, a budget cut), keeping every measured one.
    #[arg(long)]
    retry_skipped: bool,
    /// Run a sweep over the size limits (more than 20000 points, or sampling
    /// that may take more than 12 hours).
    #[arg(long)]
    allow_long: bool,
    /// Replace the results already in the output folder. Without it, a run
    /// into a folder named by --out that holds results is refused; a run into
    /// the default folder (out/<name>) moves the previous run aside.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    gpu: GpuArgs,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // A resumed folder is locked before it is read, so two resumes cannot
    // both continue it.
    let mut claim = None;
    let resume = match &args.resume {
        Some(dir) => {
            if args.force {
                return Err(LabError::invalid(
                    "--force",
                    "with --resume",
                    "--resume continues the results in the folder; --force would replace them",
                )
                .into());
            }
            if dir.is_file() {
                let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
                return Err(LabError::invalid(
                    "--resume",
                    &dir.display().to_string(),
                    &format!(
                        "is a file; give the run's folder, the one holding results.json{}",
                        parent.map_or(String::new(), |p| format!(" (here {})", p.display()))
                    ),
                )
                .into());
            }
            claim = Some(out_dir::claim(dir, Intent::Resume)?);
            let mut file = sweep::load_for_resume(dir)?;
            if args.retry_skipped {
                // A skip's reason may have gone (an adapter now present, a
                // typo'd --adapter fixed): those points run again.
                let before = file.records.len();
                file.records.retain(|r| r.skipped.is_none());
                eprintln!("retrying {} skipped point(s)", before - file.records.len());
            }
            Some(file)
        }
        None if args.retry_skipped => {
            return Err(LabError::invalid(
                "--retry-skipped",
                "without --resume",
                "it retries the skipped points of a resumed run",
            )
            .into())
        }
        None => None,
    };
    let own = match &args.models_from {
        Some(path) => kernel_lab::models::load_own(path)?,
        None => Vec::new(),
    };
    let spec = match (&args.spec, &resume) {
        (Some(path), _) => Spec::load_with_models(path, &args.overrides, &own)?,
        // A resumed run continues the experiment it recorded.
        (None, Some(r)) => serde_json::from_value::<Spec>(r.spec.clone()).map_err(|e| {
            LabError::invalid(
                "--resume",
                "results.json",
                &format!("its spec does not parse: {e}"),
            )
        })?,
        (None, None) => Spec::parse_with_models(
            DEFAULT_SPEC,
            "experiments/default.toml (built in)",
            &args.overrides,
            &own,
        )?,
    };
    if let Some(r) = &resume {
        // A resumed file holds one experiment: points of another spec must not
        // join it, and flags that would change it must not be dropped silently.
        let dir = args.resume.as_deref().unwrap_or(Path::new("?")).display();
        if args.spec.is_none() && !args.overrides.is_empty() {
            return Err(LabError::invalid(
                "--set",
                &args.overrides.join(" "),
                &format!("a resumed run keeps the spec recorded in {dir}/results.json; start a new run (another --out) to change it"),
            )
            .into());
        }
        if let (None, Some(m)) = (&args.spec, &args.models_from) {
            return Err(LabError::invalid(
                "--models-from",
                &m.display().to_string(),
                &format!("a resumed run keeps the models recorded in {dir}/results.json; start a new run (another --out) to change them"),
            )
            .into());
        }
        if let Some(out) = &args.out {
            return Err(LabError::invalid(
                "--out",
                &out.display().to_string(),
                &format!("--resume writes where it reads ({dir})"),
            )
            .into());
        }
        // (Compared only when a spec file is given: a spec read back from the
        // file is the recorded one, and an older file re-serialises with the
        // fields added since.)
        let given = serde_json::to_value(&spec).map_err(|e| anyhow::anyhow!("{e}"))?;
        if args.spec.is_some() && given != r.spec {
            return Err(LabError::invalid(
                "spec",
                &spec.name,
                &format!("differs from the spec recorded in {dir}/results.json; resume with that spec (or none), or start a new run"),
            )
            .into());
        }
    }
    let mut points = spec.expand()?;
    match args.backend {
        Some(RunBackend::Gpu) => points.retain(|p| p.backend == BackendKind::Gpu),
        Some(RunBackend::Cpu) => points.retain(|p| p.backend == BackendKind::Cpu),
        _ => {}
    }
    if !args.op.is_empty() {
        points.retain(|p| args.op.contains(&p.work.op()));
    }
    if !args.precision.is_empty() {
        points.retain(|p| args.precision.contains(&p.work.precision));
    }
    if points.is_empty() {
        return Err(LabError::invalid(
            "spec",
            &spec.name,
            "expands to no point (every point excluded, or filtered out by --backend, --op or --precision)",
        )
        .into());
    }
    // A sweep nobody meant to start (a typo'd range, a product of long axes)
    // is refused before it takes a folder: its sampling alone may run this long.
    let sampling = sweep::sampling_for(&spec, args.quick);
    let per_point_s = (sampling.warmup_ms + sampling.max_ms) / 1e3;
    let bound_h = points.len() as f64 * per_point_s / 3600.0;
    if !args.allow_long && (bound_h > MAX_SWEEP_HOURS || points.len() > MAX_POINTS) {
        return Err(LabError::invalid(
            "spec",
            &spec.name,
            &format!(
                "expands to {} points, whose sampling alone may take up to {bound_h:.1} h (limits: {MAX_POINTS} points, {MAX_SWEEP_HOURS} h); narrow its axes, or pass --allow-long",
                points.len()
            ),
        )
        .into());
    }
    let out = args
        .resume
        .clone()
        .or_else(|| args.out.clone())
        .unwrap_or_else(|| Path::new("out").join(&spec.name));
    let existing = match (args.force, args.out.is_some()) {
        (true, _) => Existing::Replace,
        (false, true) => Existing::Refuse,
        // The default folder: `kernel-lab` run twice keeps both runs.
        (false, false) => Existing::Archive,
    };
    let claim = match claim {
        Some(c) => c,
        None => out_dir::claim(&out, Intent::Fresh(existing))?,
    };
    if let Some(to) = &claim.archived {
        eprintln!(
            "note: the previous results in {} were moved to {}",
            out.display(),
            to.display()
        );
    }

    let cpu = CpuBackend::new();
    eprintln!("{}", super::common::device_label(&cpu));
    let wants_gpu = points.iter().any(|p| p.backend == BackendKind::Gpu);
    let gpu_args = args.gpu.clone();
    let open_gpu =
        move || -> kernel_lab::Result<Box<dyn Backend>> { Ok(Box::new(gpu_args.open()?)) };
    let gpu = if wants_gpu {
        open_gpu().map_err(|e| e.to_string())
    } else {
        Err("not requested".into())
    };
    let gpu_flags = args.gpu.gpu_only_flags();
    if !wants_gpu && !gpu_flags.is_empty() {
        eprintln!(
            "note: {} apply to GPU points only, and this run has none",
            gpu_flags.join(", ")
        );
    }
    match &gpu {
        Ok(g) => eprintln!("{}", super::common::device_label(g.as_ref())),
        // The user named an adapter: running without it would not be the run asked for.
        Err(e) if wants_gpu && args.gpu.names_adapter() => return Err(anyhow::anyhow!("{e}")),
        Err(e) if wants_gpu => {
            eprintln!("note: {e}; GPU points are recorded as skipped, CPU points run")
        }
        Err(_) => {}
    }
    let done = resume.as_ref().map_or(0, |r| r.records.len());
    eprintln!(
        "{}: {} points ({done} already measured) -> {}",
        spec.name,
        points.len(),
        out.display()
    );
    print_memory_needs(&points);

    // Ctrl-C: finish the current point, save, and stop. A second Ctrl-C kills.
    let mut interrupts = 0;
    let _ = ctrlc::set_handler(move || {
        interrupts += 1;
        if interrupts > 1 {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: stopping after the current point (Ctrl-C again to abort)");
        kernel_lab::stop::request_stop();
    });

    let env = Environment::capture(
        gpu.as_ref().ok().map(|g| g.device().clone()),
        cpu.device().clone(),
    );
    let mut anchor = match spec.anchor {
        Some(AnchorKind::Torch) if points.iter().any(|p| p.backend == BackendKind::Cpu) => {
            let python = anchor_helper::python();
            let session = AnchorSession::start_torch(
                &python,
                &sampling,
                spec.budget.max_run_seconds,
                rayon::current_num_threads(),
            );
            match &session {
                Ok(s) => eprintln!(
                    "anchor: {} ({python}), timed after each CPU point",
                    s.library
                ),
                Err(why) => eprintln!("note: anchor unavailable: {why}"),
            }
            Some(session)
        }
        _ => None,
    };
    let mut backends = Backends {
        gpu,
        cpu: Box::new(cpu),
        reopen_gpu: Some(Box::new(open_gpu)),
    };
    let sweep = Sweep {
        spec: &spec,
        points: &points,
        sampling: &sampling,
        out: &out,
    };
    let mut bar = Bar::new();
    let outcome = sweep.run(&mut backends, &mut anchor, env, resume, &mut bar)?;
    let results = outcome.results;
    let report = report::render(&results, &spec.charts, &out)?;

    super::output::print(&results.records, args.format)?;
    // On stdout with the table; on stderr where stdout is data.
    let say = |line: String| {
        if args.format == Format::Table {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    };
    say(format!("results: {}", out.join("results.json").display()));
    say(format!("report:  {}", report.display()));
    say(format!("         {}", out.join("report.html").display()));
    if outcome.interrupted {
        eprintln!(
            "incomplete: resume with `kernel-lab run --resume {}`",
            out.display()
        );
        return Ok(ExitCode::from(130));
    }
    let failed = results
        .records
        .iter()
        .filter(|r| {
            r.skipped
                .as_ref()
                .is_some_and(|s| s.kind == SkipKind::VerificationFailed)
        })
        .count();
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The memory the largest points need by the model, before anything runs: a
/// point too large for a device is skipped with both numbers when it comes.
fn print_memory_needs(points: &[kernel_lab::experiment::Point]) {
    let mut needs: Vec<(u64, &kernel_lab::experiment::Point)> = points
        .iter()
        .map(|p| (p.work.memory_model().total, p))
        .collect();
    needs.sort_by_key(|n| std::cmp::Reverse(n.0));
    let shown = if needs.len() <= 12 { needs.len() } else { 5 };
    if shown < needs.len() {
        eprintln!(
            "memory needed (model), the {shown} largest of {} points:",
            needs.len()
        );
    } else {
        eprintln!("memory needed (model) per point:");
    }
    for (bytes, p) in &needs[..shown] {
        let id = p.id();
        let layer = p
            .layer
            .map_or(String::new(), |l| format!(" ({})", l.label()));
        eprintln!(
            "  {:>10.1} MiB  {} {} {} {}{layer}",
            *bytes as f64 / 1048576.0,
            id.backend,
            id.op(),
            id.precision,
            id.shape_label()
        );
    }
}

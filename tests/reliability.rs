//! Reliability: a lost GPU device (reopened, or not), an impossible point among
//! good ones, an interrupted sweep resumed to completion, malformed input
//! rejected before anything runs, and a property test of the spec parser.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kernel_lab::backend::cpu::CpuBackend;
use kernel_lab::backend::gpu::{AdapterChoice, GpuBackend, GpuOptions};
use kernel_lab::backend::Backend;
use kernel_lab::backend::BackendKind;
use kernel_lab::experiment::Spec;
use kernel_lab::results::SkipKind;
use kernel_lab::results::{Environment, ResultsFile};
use kernel_lab::sweep::{self, Backends, Sweep};
use proptest::prelude::*;

const SMALL: &str = r#"
name = "small"
[axes]
op = ["matmul", "embedding"]
backend = ["gpu", "cpu"]
precision = ["f32"]
batch = [1, 3]
seq = [4]
dim = [8, 12]
vocab = [20]
[sampling]
warmup_runs = 1
min_samples = 3
max_samples = 5
min_ms = 0
max_ms = 50
phase_runs = 1
"#;

/// A fresh, existing folder for a test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = common::temp_dir(&format!("rel-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sweep_with(gpu: Box<dyn Backend>, reopen: Option<sweep::GpuOpener>, dir: &Path) -> ResultsFile {
    let spec = Spec::parse(SMALL, "small", &[]).unwrap();
    let points = spec.expand().unwrap();
    let cpu = CpuBackend::new();
    let env = Environment::capture(Some(gpu.device().clone()), cpu.device().clone());
    let mut backends = Backends {
        gpu: Ok(gpu),
        cpu: Box::new(cpu),
        reopen_gpu: reopen,
    };
    let sweep = Sweep {
        spec: &spec,
        points: &points,
        sampling: &spec.sampling,
        out: dir,
    };
    let mut progress = sweep::Quiet::default();
    let outcome = sweep
        .run(&mut backends, &mut None, env, None, &mut progress)
        .unwrap();
    assert!(!outcome.interrupted);
    assert_eq!(outcome.results.records.len(), points.len());
    outcome.results
}

fn lost_gpu() -> Option<GpuBackend> {
    let gpu = common::gpu(GpuOptions::default())?;
    gpu.context().device.destroy();
    Some(gpu)
}

#[test]
fn a_lost_device_is_recreated_once_and_the_sweep_goes_on() {
    let Some(gpu) = lost_gpu() else { return };
    let dir = temp_dir("lost-reopen");
    let reopen: sweep::GpuOpener = Box::new(|| {
        Ok(Box::new(GpuBackend::open(
            &AdapterChoice::Best,
            GpuOptions::default(),
        )?) as Box<dyn Backend>)
    });
    let results = sweep_with(Box::new(gpu), Some(reopen), &dir);
    for r in &results.records {
        assert!(r.verified && r.measured.is_some(), "{r:?}");
    }
}

#[test]
fn a_device_that_cannot_be_recreated_skips_gpu_points_and_cpu_points_still_run() {
    let Some(gpu) = lost_gpu() else { return };
    let dir = temp_dir("lost-final");
    let reopen: sweep::GpuOpener =
        Box::new(|| Err(kernel_lab::LabError::NoAdapter("gone for good".into())));
    let results = sweep_with(Box::new(gpu), Some(reopen), &dir);
    for r in &results.records {
        if r.id.backend == BackendKind::Gpu {
            let why = r
                .skipped
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default();
            assert!(
                why.contains("device lost") && why.contains("gone for good"),
                "{why}"
            );
        } else {
            assert!(r.verified && r.measured.is_some(), "{r:?}");
        }
    }
    // What was written is the same valid, complete file.
    let on_disk = ResultsFile::load(&dir.join("results.json")).unwrap();
    for (a, b) in on_disk.records.iter().zip(&results.records) {
        assert_eq!(a, b);
    }
    assert_eq!(on_disk.environment, results.environment);
    assert!(on_disk.complete && on_disk == results);
}

fn kernel_lab() -> Command {
    common::kernel_lab(&[])
}

#[test]
fn impossible_point_and_interruption_then_resume_end_complete() {
    let dir = temp_dir("resume");
    let spec_path = dir.join("spec.toml");
    // Under a 2 KiB binding one 1024-wide f32 table row (4 KiB) and four
    // columns of the 1024x1024 weight (16 KiB) cannot fit, however the table and
    // weight are split: on the GPU those points are impossible; on the CPU they
    // run. More dims make the run long enough to interrupt.
    let spec = SMALL
        .replace("dim = [8, 12]", "dim = [8, 12, 16, 24, 32, 1024]")
        .replace("max_ms = 50", "max_ms = 150");
    std::fs::write(&spec_path, spec).unwrap();
    let out = dir.join("out");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a = vec![
            "run".to_string(),
            spec_path.display().to_string(),
            "--max-binding-bytes".into(),
            "2048".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // A malformed axis value is rejected up front: nothing is written.
    let bad = kernel_lab()
        .args(args(&[
            "--out",
            out.to_str().unwrap(),
            "--set",
            "batch=1,x",
        ]))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("batch"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(
        !out.join("results.json").exists(),
        "a rejected spec must write nothing"
    );

    // Interrupt once a few points are on disk.
    let mut child = kernel_lab()
        .args(args(&["--out", out.to_str().unwrap()]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let n = ResultsFile::load(&out.join("results.json")).map_or(0, |r| r.records.len());
        if n >= 3 || start.elapsed() > Duration::from_secs(120) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    eprintln!("run ended with {status:?} after the interrupt");
    let partial =
        ResultsFile::load(&out.join("results.json")).expect("a valid results file after Ctrl-C");
    let total = Spec::load(&spec_path, &[]).unwrap().expand().unwrap().len();
    if status.code() == Some(130) {
        assert!(!partial.complete);
        assert!(partial.records.len() < total, "interrupted before the end");
        let report = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(report.contains("incomplete"));
    } else {
        // The run finished before the signal landed: nothing to resume, still valid.
        assert!(status.success() && partial.complete);
    }

    let resumed = kernel_lab()
        .args([
            "run",
            "--resume",
            out.to_str().unwrap(),
            "--max-binding-bytes",
            "2048",
        ])
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let done = ResultsFile::load(&out.join("results.json")).unwrap();
    assert!(done.complete);
    assert_eq!(done.records.len(), total, "every point exactly once");
    let mut keys: Vec<_> = done.records.iter().map(|r| r.id).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), total, "no point measured twice");
    for r in &done.records {
        // At dim 1024 neither a table row nor four weight columns fit 2 KiB.
        let impossible = r.id.backend == BackendKind::Gpu && r.id.axis("dim") == Some(1024);
        if r.id.backend == BackendKind::Gpu && done.environment.gpu.is_none() {
            assert_eq!(r.skipped.as_ref().unwrap().kind, SkipKind::NoGpu);
        } else if impossible {
            let why = r
                .skipped
                .as_ref()
                .expect("the impossible point is skipped")
                .to_string();
            let needed = if r.id.op().name() == "embedding" {
                "4096"
            } else {
                "16384"
            };
            assert!(why.contains(needed) && why.contains("2048"), "{why}");
        } else {
            assert!(r.verified && r.measured.is_some(), "{r:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any text: the parser answers Ok or one line, never panics.
    #[test]
    fn spec_parser_never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        if let Err(e) = Spec::parse(&text, "fuzz.toml", &[]) {
            prop_assert_eq!(e.to_string().lines().count(), 1);
        }
    }

    /// A good spec with one line replaced by noise: Ok or one clear line.
    #[test]
    fn spec_parser_survives_mutated_specs(line in 0usize..20, noise in "[a-z0-9_=\\[\\]\", .-]{0,30}") {
        let mut lines: Vec<&str> = SMALL.lines().collect();
        let i = line % lines.len();
        lines[i] = &noise;
        let text = lines.join("\n");
        match Spec::parse(&text, "mutated.toml", &[]) {
            Ok(spec) => { let _ = spec.expand(); }
            Err(e) => {
                let msg = e.to_string();
                prop_assert_eq!(msg.lines().count(), 1);
                prop_assert!(msg.contains("mutated.toml") || msg.contains("axes.") || msg.contains("sampling") || msg.contains("budget"), "{}", msg);
            }
        }
    }
}

/// The tiny spec on the CPU: every op and precision, quick.
fn tiny_cpu_args(out: &Path) -> Vec<String> {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny.toml");
    [
        "run",
        spec.to_str().unwrap(),
        "--backend",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Issue 12, case 2: a second run into a folder a run is writing is refused
/// in one line naming the process, and the first run loses nothing.
#[test]
fn a_second_run_into_a_busy_folder_is_refused_and_the_first_keeps_every_point() {
    let out = temp_dir("busy");
    let mut first = kernel_lab()
        .args(tiny_cpu_args(&out))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = out.join(kernel_lab::out_dir::LOCK_FILE);
    let start = Instant::now();
    while !lock.exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut second_args = tiny_cpu_args(&out);
    second_args.push("--force".into());
    let second = kernel_lab().args(&second_args).output().unwrap();
    let resumed = kernel_lab()
        .args(["run", "--resume", out.to_str().unwrap()])
        .output()
        .unwrap();
    let status = first.wait().unwrap();
    assert!(status.success(), "the first run failed: {status:?}");
    for (what, o) in [("a forced run", &second), ("a resume", &resumed)] {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{what} ran beside a live run");
        assert!(
            err.contains(&format!("in use by kernel-lab process {}", first.id())),
            "{what}: {err}"
        );
    }
    let results = ResultsFile::load(&out.join("results.json")).unwrap();
    let expected = Spec::load(Path::new(&tiny_cpu_args(&out)[1]), &[])
        .unwrap()
        .expand()
        .unwrap()
        .iter()
        .filter(|p| p.backend == BackendKind::Cpu)
        .count();
    assert!(results.complete);
    assert_eq!(results.records.len(), expected);
    assert!(!lock.exists(), "the lock is released at the end");
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let _ = std::fs::remove_dir_all(&out);
}

/// Issue 12, case 3: a plain run never replaces results already in its folder;
/// --force does, and leaves no stale chart of the old run.
#[test]
fn a_plain_run_never_replaces_results_and_force_leaves_nothing_stale() {
    let out = temp_dir("replace");
    let mut args = tiny_cpu_args(&out);
    args.extend(["--set", "op=embedding", "--set", "dim=8"].map(String::from));
    let first = kernel_lab().args(&args).output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let before = std::fs::read(out.join("results.json")).unwrap();
    std::fs::write(out.join("stale-chart.svg"), "<svg/>").unwrap();

    let again = kernel_lab().args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(
        err.contains("already holds a results.json") && err.contains("--resume"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(
        std::fs::read(out.join("results.json")).unwrap(),
        before,
        "untouched"
    );

    args.push("--force".into());
    let forced = kernel_lab().args(&args).output().unwrap();
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert!(
        !out.join("stale-chart.svg").exists(),
        "the old run's charts go with it"
    );
    assert!(
        ResultsFile::load(&out.join("results.json"))
            .unwrap()
            .complete
    );

    let both = kernel_lab()
        .args(["run", "--resume", out.to_str().unwrap(), "--force"])
        .output()
        .unwrap();
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("--force"));
    let _ = std::fs::remove_dir_all(&out);
}

/// Issue 12, case 8: output into a closed pipe (`| head`) ends quietly, not
/// with a panic and exit 101.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let mut child = kernel_lab()
        .args(["models"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before the first line
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Issue 12, cases 12 and 13: a spec's name is a plain folder name, and its
/// numbers are finite (a results file could not hold inf or NaN for resume).
#[test]
fn spec_names_stay_inside_out_and_numbers_are_finite() {
    let dir = temp_dir("hostile-spec");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny.toml");
    let tiny = std::fs::read_to_string(spec).unwrap();
    for (name, edit, expect) in [
        (
            "up",
            tiny.replace("name = \"tiny\"", "name = \"../../escaped\""),
            "name",
        ),
        (
            "abs",
            tiny.replace("name = \"tiny\"", "name = \"/tmp/escaped\""),
            "name",
        ),
        (
            "dots",
            tiny.replace("name = \"tiny\"", "name = \"..\""),
            "name",
        ),
        (
            "inf",
            tiny.replace("max_ms = 100", "max_ms = inf"),
            "sampling.max_ms",
        ),
        (
            "nan",
            tiny.replace("min_ms = 0", "min_ms = nan"),
            "sampling.min_ms",
        ),
    ] {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, edit).unwrap();
        // No --out: the name would choose the folder.
        let o = kernel_lab()
            .current_dir(&dir)
            .args(["run", path.to_str().unwrap(), "--backend", "cpu"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name} ran");
        assert!(err.contains(expect), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: one line: {err}");
    }
    assert!(!dir.join("out").exists(), "nothing was written");
    assert!(!Path::new("/tmp/escaped").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 12, cases 1 and 11: a results file this build cannot fully read is
/// refused by resume, plot and compare, and left byte for byte as it was; a
/// resume cannot mix another spec into the file or drop flags silently.
#[test]
fn unreadable_results_are_refused_untouched_and_resume_keeps_one_spec() {
    let out = temp_dir("strict");
    let mut args = tiny_cpu_args(&out);
    args.extend(["--set", "op=matmul", "--set", "dim=8", "--quick"].map(String::from));
    let first = kernel_lab().args(&args).output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let path = out.join("results.json");
    let good = std::fs::read_to_string(&path).unwrap();

    // Case 11: another spec, --set, or --out with --resume.
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny.toml");
    for (extra, expect) in [
        (vec!["--set", "dim=16"], "--set"),
        (
            vec![spec.to_str().unwrap()],
            "differs from the spec recorded",
        ),
        (
            vec!["--out", "/tmp/elsewhere"],
            "--resume writes where it reads",
        ),
    ] {
        let mut a = vec!["run", "--resume", out.to_str().unwrap()];
        a.extend(extra);
        let o = kernel_lab().args(&a).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{a:?} was accepted");
        assert!(err.contains(expect), "{a:?}: {err}");
    }
    // The results file given for its folder: named, and the folder offered.
    let o = kernel_lab()
        .args(["run", "--resume", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("is a file") && err.contains(&format!("(here {})", out.display())),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), good);

    // Case 1: a record missing one measured field, and a newer schema.
    let mut doc: serde_json::Value = serde_json::from_str(&good).unwrap();
    doc["records"][1]
        .as_object_mut()
        .unwrap()
        .remove("wall_latency_ms");
    let broken = serde_json::to_string_pretty(&doc).unwrap();
    let mut newer: serde_json::Value = serde_json::from_str(&good).unwrap();
    newer["schema_version"] = 99.into();
    let newer = serde_json::to_string_pretty(&newer).unwrap();
    let other = out.join("other.json");
    std::fs::write(&other, &good).unwrap();
    for (text, expect) in [
        (&broken, "record 1 (matmul cpu"),
        (&newer, "schema_version 99 is newer"),
    ] {
        std::fs::write(&path, text).unwrap();
        for a in [
            vec!["run", "--resume", out.to_str().unwrap()],
            vec![
                "plot",
                path.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            vec!["compare", other.to_str().unwrap(), path.to_str().unwrap()],
        ] {
            let o = kernel_lab().args(&a).output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{a:?} accepted a file it cannot read");
            assert!(err.contains(expect), "{a:?}: {err}");
            assert_eq!(
                &std::fs::read_to_string(&path).unwrap(),
                text,
                "{a:?} rewrote it"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// Issue 12, case 9: with too few samples for the test to reach significance
/// at all, a 10x slowdown is "inconclusive" with its own exit code, never
/// "same"; differing machines are warned about; bad thresholds are refused.
#[test]
fn compare_on_few_samples_is_inconclusive_and_says_when_machines_differ() {
    let out = temp_dir("few");
    let mut args = tiny_cpu_args(&out);
    args.extend(["--set", "op=matmul", "--set", "dim=8", "--set", "batch=1"].map(String::from));
    let first = kernel_lab().args(&args).output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let mut a = ResultsFile::load(&out.join("results.json")).unwrap();
    for r in &mut a.records {
        let m = r.measured.as_mut().unwrap();
        m.raw_ns.truncate(3);
    }
    let mut b = a.clone();
    for r in &mut b.records {
        let m = r.measured.as_mut().unwrap();
        m.raw_ns.iter_mut().for_each(|v| *v *= 10);
        m.latency_ms = m.latency_ms.scaled(10.0);
    }
    b.environment.cores += 14;
    let (pa, pb) = (out.join("a.json"), out.join("b.json"));
    a.save(&pa).unwrap();
    b.save(&pb).unwrap();
    let o = kernel_lab()
        .args(["compare", pa.to_str().unwrap(), pb.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(3), "{stdout}{stderr}");
    assert!(stdout.contains("inconclusive (n too small)"), "{stdout}");
    assert!(!stdout.lines().any(|l| l.ends_with(" same")), "{stdout}");
    assert!(stderr.contains("cores"), "{stderr}");
    for bad in [["--alpha", "2"], ["--alpha", "nan"], ["--threshold", "-1"]] {
        let o = kernel_lab()
            .args(["compare", pa.to_str().unwrap(), pb.to_str().unwrap()])
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// Issue 12, case 6 (and "0-point runs exit 0"): a spec whose product has a
/// million points is expanded in linear time and refused with its count unless
/// asked for; a spec that expands to nothing is refused too; neither writes.
#[test]
fn a_runaway_sweep_is_refused_quickly_with_its_count_and_an_empty_one_too() {
    let dir = temp_dir("runaway");
    std::fs::create_dir_all(&dir).unwrap();
    let list = |n: u32| {
        (1..=n)
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let huge = format!(
        "name = \"huge\"\n[axes]\nop = [\"matmul\"]\nbackend = [\"cpu\"]\nbatch = [{}]\nseq = [{}]\ndim = [{}]\nout_dim = [{}]\n",
        list(10),
        list(100),
        list(100),
        list(10)
    );
    let empty = "name = \"empty\"\n[axes]\nop = [\"matmul\"]\nbackend = [\"cpu\"]\nbatch = [1]\nseq = [2]\ndim = [8]\n[[exclude]]\nbatch = 1\n";
    for (name, text, expect) in [
        ("huge", huge.as_str(), "expands to 1000000 points"),
        ("empty", empty, "expands to no point"),
    ] {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = dir.join(name);
        let start = Instant::now();
        let o = kernel_lab()
            .args([
                "run",
                path.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name} ran");
        assert!(err.contains(expect), "{name}: {err}");
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name} took {:?}",
            start.elapsed()
        );
        assert!(!out.exists(), "{name} wrote its folder");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the binary with `args` and kills it after `limit`; None when it hung.
fn run_bounded(args: &[&str], limit: Duration) -> Option<std::process::Output> {
    let mut child = kernel_lab()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Record fields a mutation may hit, as JSON pointers inside a record.
const FIELDS: &[&str] = &[
    "/raw_ns",
    "/raw_wall_ns",
    "/samples",
    "/latency_ms/p50",
    "/latency_ms/p99",
    "/latency_ms/min",
    "/latency_ms/max",
    "/wall_latency_ms",
    "/gflops",
    "/gbps",
    "/tokens_per_s",
    "/memory_bytes/model/total",
    "/throughput",
    "/phases_ms",
    "/dim",
    "/batch",
    "/op",
    "/precision",
    "/backend",
    "/verified",
    "/kernel",
];

/// Replacement values; `None` deletes the field.
fn value(i: usize) -> Option<serde_json::Value> {
    use serde_json::json;
    [
        Some(json!(0)),
        Some(json!(-1)),
        Some(json!(1e308)),
        Some(json!(null)),
        Some(json!([])),
        Some(json!("")),
        Some(json!({})),
        Some(json!([0])),
        Some(json!(0.5)),
        None,
    ][i % 10]
        .clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Issue 12: `plot`, `compare` and `--resume` on arbitrarily mutated
    /// results files never panic, never hang, and never rewrite a file they
    /// could not read.
    #[test]
    fn mutated_results_never_panic_hang_or_get_rewritten(
        which in 0usize..2,
        edits in prop::collection::vec((0usize..64, 0usize..FIELDS.len(), 0usize..10), 1..4),
    ) {
        let source = ["default", "week2-latency-tail"][which];
        let base = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results/epyc-2core-lavapipe")
            .join(source)
            .join("results.json");
        let mut doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&base).unwrap()).unwrap();
        let n = doc["records"].as_array().unwrap().len();
        for &(rec, field, val) in &edits {
            let pointer = format!("/records/{}{}", rec % n, FIELDS[field]);
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            if let Some(obj) = doc.pointer_mut(parent).and_then(|p| p.as_object_mut()) {
                match value(val) {
                    Some(v) => { obj.insert(key.to_string(), v); }
                    None => { obj.remove(key); }
                }
            }
        }
        let dir = temp_dir("mutated");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("results.json");
        let text = serde_json::to_string_pretty(&doc).unwrap();
        std::fs::write(&path, &text).unwrap();
        let limit = Duration::from_secs(60);
        let p = path.to_str().unwrap();
        let plot_out = dir.join("plot");
        let plot = run_bounded(&["plot", p, "--out", plot_out.to_str().unwrap()], limit);
        let compare = run_bounded(&["compare", base.to_str().unwrap(), p], limit);
        for (what, o) in [("plot", &plot), ("compare", &compare)] {
            let o = o.as_ref().unwrap_or_else(|| panic!("{what} hung on {edits:?} of {source}"));
            let err = String::from_utf8_lossy(&o.stderr);
            prop_assert!(o.status.code() != Some(101) && !err.contains("panicked"), "{} panicked on {:?}: {}", what, edits, err);
        }
        let unreadable = String::from_utf8_lossy(&plot.as_ref().unwrap().stderr)
            .contains("invalid results file");
        if unreadable {
            let resume = run_bounded(&["run", "--resume", dir.to_str().unwrap()], limit)
                .unwrap_or_else(|| panic!("resume hung on {edits:?}"));
            prop_assert!(!resume.status.success());
            prop_assert!(!String::from_utf8_lossy(&resume.stderr).contains("panicked"));
        }
        prop_assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "a command rewrote the file");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Issue 12, case 7: a record whose raw samples are gone (`raw_ns: []`) is
/// plotted without them, in bounded time.
#[test]
fn plot_survives_records_without_raw_samples() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("results/epyc-2core-lavapipe/week2-latency-tail/results.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base).unwrap()).unwrap();
    for r in doc["records"].as_array_mut().unwrap() {
        r["raw_ns"] = serde_json::json!([]);
    }
    let dir = temp_dir("no-raw");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("results.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let o = run_bounded(&["plot", path.to_str().unwrap()], Duration::from_secs(60))
        .expect("plot hung on raw_ns: []");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dir.join("report.md").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 12, case 5: a PyTorch helper that never answers, or floods stderr,
/// neither hangs the run nor is left behind: it is timed out and killed, the
/// anchor is recorded as unavailable with the reason, and every point runs.
#[test]
fn a_helper_that_never_answers_is_timed_out_and_the_run_goes_on() {
    let dir = temp_dir("silent-helper");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("python3");
    // Floods stderr (more than a pipe holds), then says nothing on stdout.
    common::write_script(
        &script,
        "#!/bin/sh\nhead -c 1000000 /dev/zero | tr '\\0' 'x' >&2\necho 'still importing' >&2\nexec sleep 600\n",
    );
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/anchored.toml");
    let out = dir.join("out");
    let start = Instant::now();
    let o = kernel_lab()
        .args([
            "run",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .env("KERNEL_LAB_PYTHON", &script)
        .env("KERNEL_LAB_ANCHOR_TIMEOUT_S", "2")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    let results = ResultsFile::load(&out.join("results.json")).unwrap();
    assert_eq!(results.records.len(), 4);
    let why = results
        .anchors
        .and_then(|a| a.unavailable)
        .expect("unavailable");
    assert!(
        why.contains("did not answer within 2 s") && why.contains("still importing"),
        "{why}"
    );
    // No helper left running.
    let ps = Command::new("pgrep")
        .args(["-f", script.to_str().unwrap()])
        .output();
    if let Ok(ps) = ps {
        assert!(
            ps.stdout.is_empty(),
            "a helper survived: {}",
            String::from_utf8_lossy(&ps.stdout)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 12, case 4: a point the host cannot hold is skipped with both numbers
/// before anything is allocated — in `bench`, and in a sweep, whose resume
/// then does not crash on it again.
#[test]
fn a_point_larger_than_memory_is_skipped_with_both_numbers() {
    // The largest shape a kernel can address (every buffer 2^32 elements):
    // about 86 GB for the host, more than a test machine holds.
    let o = kernel_lab()
        .args([
            "bench",
            "--op",
            "matmul",
            "--batch",
            "1",
            "--seq",
            "65535",
            "--dim",
            "65535",
            "--backend",
            "cpu",
            "--json",
        ])
        .output()
        .unwrap();
    // One point asked for and not measured: exit 1, with the record saying why.
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rec: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let why = rec["skipped"].as_str().unwrap_or_default();
    assert!(
        why.contains("needs") && why.contains("MemAvailable"),
        "{rec}"
    );

    let dir = temp_dir("too-big");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("big.toml");
    std::fs::write(
        &spec,
        "name = \"big\"\n[axes]\nop = [\"matmul\"]\nbackend = [\"cpu\"]\nbatch = [1]\nseq = [65535]\ndim = [65535]\n",
    )
    .unwrap();
    let out = dir.join("out");
    for args in [
        vec![
            "run",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quick",
        ],
        vec!["run", "--resume", out.to_str().unwrap()],
    ] {
        let o = kernel_lab().args(&args).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let r = ResultsFile::load(&out.join("results.json")).unwrap();
    assert!(r.complete);
    assert_eq!(r.records.len(), 1);
    assert!(r.records.iter().any(|x| x
        .skipped
        .as_ref()
        .is_some_and(|s| s.to_string().contains("MemAvailable"))));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 12, "Also": flags that cannot apply are said or refused, errors say
/// their cause once and in words.
#[test]
fn flags_that_cannot_apply_are_said_or_refused_and_errors_read_once() {
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny.toml");
    let out = temp_dir("also");
    let o = kernel_lab()
        .args([
            "run",
            spec.to_str().unwrap(),
            "--adapter",
            "99",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "a named adapter that is not there ran: {}",
        text(&o)
    );
    assert!(text(&o).contains("no GPU adapter"), "{}", text(&o));
    assert!(!out.join("results.json").exists());

    let o = kernel_lab()
        .args(["devices"])
        .env("WGPU_BACKEND", "nonsense")
        .output()
        .unwrap();
    assert!(
        text(&o).contains("WGPU_BACKEND=nonsense names no backend"),
        "{}",
        text(&o)
    );

    let o = kernel_lab()
        .args([
            "run",
            spec.to_str().unwrap(),
            "--out",
            "/proc/kernel-lab-nope/x",
            "--backend",
            "cpu",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.matches("os error").count(), 1, "the cause once: {err}");

    let bench = |extra: &[&str]| {
        let mut a = vec![
            "bench", "--op", "matmul", "--batch", "1", "--seq", "8", "--dim", "8",
        ];
        a.extend_from_slice(extra);
        kernel_lab().args(&a).output().unwrap()
    };
    let o = bench(&[
        "--backend",
        "cpu",
        "--accumulate",
        "f16",
        "--matmul-variant",
        "tiled",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("--accumulate f16 applies to FP16 matmuls only"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("apply to the GPU backend only; ignored with --backend cpu"),
        "{}",
        text(&o)
    );
    let o = bench(&[
        "--backend",
        "cpu",
        "--min-samples",
        "50",
        "--max-samples",
        "5",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("more than --max-samples"), "{}", text(&o));
    let o = bench(&[
        "--backend",
        "gpu",
        "--precision",
        "f16",
        "--matmul-variant",
        "coop",
    ]);
    assert!(
        !text(&o).contains("Features {"),
        "a debug struct: {}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// Issue 12, case 14: the memory record keeps the op's footprint apart from
/// the harness's (inputs kept for verification, the verification itself) and
/// says what the timed phase alone allocated.
#[test]
fn the_memory_record_separates_the_op_from_the_harness() {
    let o = kernel_lab()
        .args([
            "bench",
            "--op",
            "embed-project",
            "--batch",
            "8",
            "--seq",
            "64",
            "--dim",
            "256",
            "--vocab",
            "4000",
            "--backend",
            "cpu",
            "--json",
            "--max-time-ms",
            "50",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = &r["memory_bytes"];
    let n = |k: &str| m[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {m}"));
    // Inputs: ids (u32) + table + weight, f32, as generated.
    assert_eq!(
        n("inputs_bytes"),
        8 * 64 * 4 + 4000 * 256 * 4 + 256 * 256 * 4
    );
    // Verification holds at least the output read back.
    assert!(n("verification_peak_alloc") >= 8 * 64 * 256 * 4, "{m}");
    // Timing the op allocates (almost) nothing on the host.
    assert!(
        n("timed_peak_alloc") < m["measured"]["total"].as_u64().unwrap() / 4,
        "{m}"
    );
    let _ = n("process_peak_rss");
}

/// Cold-cache timing writes a 256 MiB buffer between samples: the harness's,
/// not the op's, so it stays out of the op's memory (it once made a 4 MiB
/// layer read as allocating 65x its model, put down to staging buffers).
#[test]
fn cold_cache_timing_leaves_the_flush_buffer_out_of_the_ops_memory() {
    for backend in ["cpu", "gpu"] {
        let o = kernel_lab()
            .args([
                "bench",
                "--op",
                "matmul",
                "--batch",
                "1",
                "--seq",
                "1",
                "--dim",
                "256",
                "--backend",
                backend,
                "--cold-cache",
                "--json",
                "--max-time-ms",
                "50",
            ])
            .output()
            .unwrap();
        let r: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)));
        if r["backend"] != backend || r["cold_cache"] != true {
            // No GPU here (the CPU stood in, or the point was skipped).
            assert!(
                backend == "gpu" && std::env::var_os("KERNEL_LAB_REQUIRE_GPU").is_none(),
                "{r}"
            );
            continue;
        }
        let other = r["memory_bytes"]["measured"]["other"].as_u64().unwrap();
        assert!(other < 16 << 20, "{backend}: other {other} bytes: {r}");
        let ratio = r["memory_bytes"]["measured_over_model"].as_f64().unwrap();
        assert!(ratio < 3.0, "{backend}: {ratio}x the model");
    }
}

/// Issue 12, case 11: points skipped for a reason that may have gone (here no
/// GPU: WGPU_BACKEND named none) run again with `--resume --retry-skipped`,
/// and the measured ones are kept as they were.
#[test]
fn resume_retries_skipped_points_when_asked() {
    let out = temp_dir("retry");
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny.toml");
    let args = [
        "run",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--set",
        "op=matmul",
        "--set",
        "dim=8",
        "--set",
        "batch=1",
        "--quick",
    ];
    let o = kernel_lab()
        .args(args)
        .env("WGPU_BACKEND", "nonsense")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let first = ResultsFile::load(&out.join("results.json")).unwrap();
    let skipped = first.records.iter().filter(|r| r.skipped.is_some()).count();
    assert_eq!(skipped, 2, "the GPU points, without an adapter");
    let o = kernel_lab()
        .args(["run", "--resume", out.to_str().unwrap(), "--retry-skipped"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("retrying 2 skipped point(s)"));
    let second = ResultsFile::load(&out.join("results.json")).unwrap();
    assert_eq!(second.records.len(), first.records.len());
    for r in first.records.iter().filter(|r| r.skipped.is_none()) {
        let again = second.records.iter().find(|s| s.id == r.id).unwrap();
        assert_eq!(again, r, "a measured point is kept as it was");
    }
    let gpu_present = GpuBackend::open(&AdapterChoice::Best, GpuOptions::default()).is_ok();
    if gpu_present {
        assert!(
            second.records.iter().all(|r| r.verified),
            "the GPU points ran this time"
        );
    } else {
        common::no_gpu("no adapter to retry on");
    }
    let o = kernel_lab()
        .args(["run", spec.to_str().unwrap(), "--retry-skipped"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let _ = std::fs::remove_dir_all(&out);
}

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
        let impossible = r.id.backend == BackendKind::Gpu && r.id.dim == 1024;
        if r.id.backend == BackendKind::Gpu && done.environment.gpu.is_none() {
            assert_eq!(r.skipped.as_ref().unwrap().kind, SkipKind::NoGpu);
        } else if impossible {
            let why = r
                .skipped
                .as_ref()
                .expect("the impossible point is skipped")
                .to_string();
            let needed = if r.id.op == kernel_lab::workload::Op::Embedding {
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

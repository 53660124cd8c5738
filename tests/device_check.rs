//! `scripts/device-check`, the one-call real-GPU check, dry-run on whatever
//! device this machine has (lavapipe in CI) so that it cannot rot between the
//! rare sessions with a real GPU: every step runs, every GPU point verifies, the
//! tarball holds what the report needs, and bad arguments get a one-line error.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{temp_dir, test_cache_dir};
use kernel_lab::backend::gpu::{AdapterChoice, GpuBackend, GpuOptions};
use kernel_lab::results::ResultsFile;

fn script(args: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new(root.join("scripts/device-check"))
        .args(args)
        .env("KERNEL_LAB_CACHE_DIR", test_cache_dir())
        .env_remove("OUT")
        .output()
        .expect("the script runs")
}

/// A dry run of the script with the built binary into `out`, and its log.
fn dry_run(out: &Path, budget: &str, extra: &[&str]) -> (Output, String) {
    let bin = env!("CARGO_BIN_EXE_kernel-lab");
    let mut args = vec![
        "--bin",
        bin,
        "--out",
        out.to_str().unwrap(),
        "--dry-run",
        "--budget",
        budget,
    ];
    args.extend_from_slice(extra);
    let o = script(&args);
    let log = text(&o);
    (o, log)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_dry_run_measures_verifies_and_packs_every_step() {
    if let Err(e) = GpuBackend::open(&AdapterChoice::Best, GpuOptions::default()) {
        common::no_gpu(e);
        return;
    }
    let out = temp_dir("device-check");
    let (o, log) = dry_run(&out, "600", &[]);
    assert!(o.status.success(), "{log}");
    for step in [
        "devices",
        "device-square",
        "coop",
        "gather",
        "checks-full",
        "checks-no-loop-bounding",
        "checks-none",
        "device-gpu",
        "precision",
        "device-gpu-cpu",
    ] {
        assert!(
            log.contains(&format!("{step}: done")),
            "{step} did not finish:\n{log}"
        );
    }
    assert!(log.contains("device-report.md written"), "{log}");

    let tarball = out.join("device-check.tgz");
    let unpacked = temp_dir("device-check-unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let tar = Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .expect("tar runs");
    assert!(tar.success(), "{} does not unpack", tarball.display());
    let root: PathBuf = unpacked.join("device-check");
    let devices: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("devices.json")).unwrap())
            .expect("devices.json is JSON");
    let gpu = &devices["ceilings"]["gpu"];
    assert!(gpu["copy_gbps"].as_f64().unwrap() > 0.0, "{devices}");
    for cost in [
        "empty_dispatch_us",
        "per_dispatch_in_pass_us",
        "submit_round_trip_us",
        "readback_round_trip_us",
    ] {
        assert!(
            gpu["dispatch"][cost].as_f64().unwrap() > 0.0,
            "{cost}: {devices}"
        );
    }

    // One line per coop configuration: a verified record, or why it cannot run here.
    let coop = std::fs::read_to_string(root.join("coop.jsonl")).expect("coop.jsonl");
    let lines: Vec<serde_json::Value> = coop
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), coop_names_in_script().len(), "{coop}");
    for l in &lines {
        let why = l["skipped"].as_str().or(l["refused"].as_str());
        assert!(
            l["verified"] == true || why.is_some_and(|r| r.contains("cooperative")),
            "{l}"
        );
    }

    // The gathers beside their same-bytes twins: a verified record each.
    let gathers = std::fs::read_to_string(root.join("gather.jsonl")).expect("gather.jsonl");
    assert_eq!(gathers.lines().count(), 2, "{gathers}");
    for l in gathers.lines() {
        let r: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(r["op"], "embedding", "{r}");
        assert_eq!(r["verified"], true, "{r}");
    }
    // When each gather ran, to lay it beside nvidia-smi's clock log.
    let times = std::fs::read_to_string(root.join("gather.times")).expect("gather.times");
    assert_eq!(times.lines().count(), 2, "{times}");
    assert!(
        times.lines().all(|l| l.contains(" --precision ")),
        "{times}"
    );

    let mut gpu_points = 0;
    for exp in [
        "device-square",
        "shader-checks-full",
        "shader-checks-no-loop-bounding",
        "shader-checks-none",
        "device-gpu",
        "precision",
    ] {
        let f = ResultsFile::load(&root.join("results").join(exp).join("results.json"))
            .unwrap_or_else(|e| panic!("{exp}: {e}"));
        assert!(f.complete, "{exp} did not complete");
        assert!(
            f.environment.machine_before.is_some() && f.environment.machine_after.is_some(),
            "{exp}"
        );
        for r in &f.records {
            assert!(
                r.verified,
                "{exp}: {:?} not verified: {:?}",
                r.id, r.skipped
            );
            if r.id.backend == kernel_lab::backend::BackendKind::Gpu {
                gpu_points += 1;
            }
        }
    }
    assert!(gpu_points >= 20, "only {gpu_points} GPU points");
    // The grid's CPU points were added to the same file by the resumed step.
    let grid = ResultsFile::load(&root.join("results/device-gpu/results.json")).unwrap();
    assert!(grid
        .records
        .iter()
        .any(|r| r.id.backend == kernel_lab::backend::BackendKind::Cpu));
    // Each shader-check run says its setting in the kernel name.
    let none = ResultsFile::load(&root.join("results/shader-checks-none/results.json")).unwrap();
    assert!(
        none.records.iter().all(|r| r.kernel.contains("trusted")),
        "{:?}",
        none.records[0].kernel
    );

    let report = std::fs::read_to_string(root.join("device-report.md")).expect("device-report.md");
    for section in [
        "## Targets",
        "## What wgpu's shader checks cost",
        "## Cooperative-matrix configurations, forced",
        "## Gathers beside same-bytes twins",
        "## Cold start, compile and energy",
    ] {
        assert!(report.contains(section), "{section} missing:\n{report}");
    }
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&unpacked);
}

#[test]
fn bad_arguments_are_refused_in_one_line() {
    let bin = env!("CARGO_BIN_EXE_kernel-lab");
    let o = script(&["--bin", bin, "--budget", "soon"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--budget must be whole seconds, got 'soon'"),
        "{}",
        text(&o)
    );
    let o = script(&["--fast"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("unknown argument '--fast'"),
        "{}",
        text(&o)
    );
    let o = script(&["--bin", "/nonexistent/kernel-lab"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("no kernel-lab binary"), "{}", text(&o));
}

/// The coop configurations the script forces, as it lists them.
fn coop_names_in_script() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("scripts/device-check")).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("COOP_VARIANTS=\""))
        .expect("COOP_VARIANTS in the script");
    line.trim_end_matches('"')
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn the_script_forces_every_coop_candidate() {
    use kernel_lab::ops::matmul::kernels::{MatmulFamily, MatmulVariant};
    let mut want: Vec<String> = MatmulVariant::CANDIDATES
        .iter()
        .filter(|v| v.family == MatmulFamily::Coop)
        .map(|v| v.name())
        .collect();
    let mut listed = coop_names_in_script();
    want.sort();
    listed.sort();
    assert_eq!(listed, want);
}

#[test]
fn skipped_steps_are_logged_and_not_run() {
    let out = temp_dir("device-check-skip");
    let (o, log) = dry_run(
        &out,
        "30",
        &[
            "--skip",
            "devices,device-square,coop,gather,checks,device-gpu,precision,device-gpu-cpu",
        ],
    );
    assert!(o.status.success(), "{log}");
    for step in [
        "devices",
        "device-square",
        "coop",
        "gather",
        "checks-full",
        "checks-none",
        "device-gpu",
        "precision",
        "device-gpu-cpu",
    ] {
        assert!(
            log.contains(&format!("{step}: skipped (--skip)")),
            "{step}:\n{log}"
        );
        assert!(!log.contains(&format!("{step}: start")), "{step}:\n{log}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// Where nvidia-smi is present (here a stand-in on PATH that prints rows in
/// its CSV form), the script logs the card's clocks for the whole check, stops
/// the logger when it ends, and the report lays the log beside each gather.
/// Planted: the logger left running -> its marker is still found -> fails;
/// the report's clock section dropped -> fails.
#[test]
fn the_cards_clock_log_is_kept_and_laid_beside_the_gathers() {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = GpuBackend::open(&AdapterChoice::Best, GpuOptions::default()) {
        common::no_gpu(e);
        return;
    }
    let fake = temp_dir("fake-nvidia-smi");
    std::fs::create_dir_all(&fake).unwrap();
    let smi = fake.join("nvidia-smi");
    // The logger's command line holds the stand-in's path.
    let marker = smi.display().to_string();
    std::fs::write(
        &smi,
        "#!/bin/sh\ncase \"$*\" in\n  *-lms*) echo 'timestamp, pstate, clocks.current.sm [MHz], clocks.current.memory [MHz], power.draw [W], utilization.gpu [%], temperature.gpu, clocks_event_reasons.active'\n    while true; do echo \"$(date '+%Y/%m/%d %H:%M:%S.%3N'), P0, 1980 MHz, 3201 MHz, 431.50 W, 100 %, 47, 0x0000000000000000\"; sleep 0.02; done ;;\n  *-q*) echo 'Fake GPU' ;;\n  *) echo 'name, driver_version'; echo 'Fake GPU, 1.0' ;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = temp_dir("device-check-smi");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = format!(
        "{}:{}",
        fake.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new(root.join("scripts/device-check"))
        .args([
            "--bin",
            env!("CARGO_BIN_EXE_kernel-lab"),
            "--out",
            out.to_str().unwrap(),
            "--dry-run",
            "--budget",
            "120",
            "--skip",
            "devices,device-square,coop,checks,device-gpu,precision,device-gpu-cpu",
        ])
        .env("PATH", path)
        .env("KERNEL_LAB_CACHE_DIR", test_cache_dir())
        .env_remove("OUT")
        .output()
        .expect("the script runs");
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    assert!(log.contains("gather: done"), "{log}");
    // The logger ended with the script.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let left = Command::new("pgrep").args(["-f", &marker]).output();
    if let Ok(left) = left {
        assert!(
            String::from_utf8_lossy(&left.stdout).trim().is_empty(),
            "the clock logger outlived the script"
        );
    }
    let unpacked = temp_dir("device-check-smi-unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let tar = Command::new("tar")
        .arg("xzf")
        .arg(out.join("device-check.tgz"))
        .arg("-C")
        .arg(&unpacked)
        .status()
        .expect("tar runs");
    assert!(tar.success());
    let dir = unpacked.join("device-check");
    let csv = std::fs::read_to_string(dir.join("nvidia-smi-log.csv")).unwrap();
    assert!(
        csv.lines().filter(|l| l.contains("1980 MHz")).count() >= 2,
        "{csv}"
    );
    let report = std::fs::read_to_string(dir.join("device-report.md")).unwrap();
    assert!(
        report.contains("## The card's clock while each gather ran"),
        "{report}"
    );
    let rows = report
        .lines()
        .filter(|l| l.starts_with("| `--precision") && l.contains("1980-1980"))
        .count();
    assert_eq!(rows, 2, "{report}");
    for d in [fake, out, unpacked] {
        let _ = std::fs::remove_dir_all(d);
    }
}

//! `run`, `plot` and `compare` end to end on a tiny sweep: results.json in the
//! contract's shape (round trip), SVG charts that parse, a report with computed
//! findings, re-rendering, regression gating, and bad spec files.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{stderr, temp_dir};
use kernel_lab::backend::BackendKind;
use kernel_lab::results::{ResultsFile, SkipKind};

fn kernel_lab(args: &[&str]) -> Output {
    common::run(args)
}

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .display()
        .to_string()
}

/// Runs the tiny sweep once per test binary into `dir`.
fn run_tiny(dir: &Path, extra: &[&str]) -> ResultsFile {
    let spec = data("tiny.toml");
    let mut args = vec!["run", spec.as_str(), "--out", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = kernel_lab(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("report:"), "{stdout}");
    ResultsFile::load(&dir.join("results.json")).unwrap()
}

#[test]
fn run_writes_results_charts_and_report() {
    let dir = temp_dir("run");
    let results = run_tiny(&dir, &[]);
    // 3 ops x 2 backends x 2 precisions x 4 batches x 3 dims, minus embed-project at batch 4.
    assert_eq!(results.records.len(), 3 * 2 * 2 * 4 * 3 - 2 * 2 * 3);
    assert!(results.complete);
    assert_eq!(results.schema_version, kernel_lab::results::SCHEMA_VERSION);
    assert_eq!(results.spec["name"], "tiny");
    let gpu_there = results.environment.gpu.is_some();
    if !gpu_there {
        common::no_gpu("the sweep found no GPU");
    }
    assert!(results.environment.ceilings.contains_key(&BackendKind::Cpu));
    assert_eq!(
        results.environment.ceilings.contains_key(&BackendKind::Gpu),
        gpu_there
    );
    for r in &results.records {
        if let Some(m) = &r.measured {
            assert!(m.pct_of_copy_bandwidth.is_some_and(|p| p > 0.0), "{r:?}");
            assert_eq!(m.pct_of_fma_peak.is_some(), r.id.op().name() != "embedding");
        }
        if r.id.backend == BackendKind::Gpu && !gpu_there {
            assert_eq!(r.skipped.as_ref().unwrap().kind, SkipKind::NoGpu, "{r:?}");
            continue;
        }
        assert!(r.verified, "{r:?}");
        let m = r.measured.as_ref().expect("measured");
        assert!(m.samples >= 1 && m.latency_ms.p50 > 0.0);
    }

    // The schema round-trips.
    let text = serde_json::to_string(&results).unwrap();
    let back: ResultsFile = serde_json::from_str(&text).unwrap();
    assert!(back == results, "results.json does not round-trip");

    // Charts are real SVG documents with data in them.
    let svgs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "svg"))
        .collect();
    for name in [
        "seed-matmul-cpu-f32.svg",
        "latency-distribution-cpu.svg",
        "batching.svg",
        "precision.svg",
        "roofline.svg",
    ] {
        assert!(
            svgs.iter().any(|p| p.ends_with(name)),
            "{name} missing from {svgs:?}"
        );
    }
    if gpu_there {
        assert!(svgs.iter().any(|p| p.ends_with("gpu-vs-cpu.svg")));
    }
    for svg in &svgs {
        let text = std::fs::read_to_string(svg).unwrap();
        assert!(
            text.starts_with("<svg") && text.trim_end().ends_with("</svg>"),
            "{}",
            svg.display()
        );
        assert!(
            text.contains("<circle") || text.contains("<rect"),
            "{} has no data marks",
            svg.display()
        );
    }

    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("of the probed FMA peak"), "{report}");
    assert!(report.contains("cpu ceilings (probed)"), "{report}");
    assert!(
        report.contains("## Findings") && report.contains("grows as dim^"),
        "{report}"
    );
    assert!(report.contains("![seed-matmul-cpu-f32.svg](seed-matmul-cpu-f32.svg)"));
    assert!(
        report.contains("| matmul | cpu | f32 | 1 | 5 | 8 |"),
        "{report}"
    );

    // plot re-renders the same report elsewhere from the results alone.
    let again = dir.join("replot");
    let out = kernel_lab(&[
        "plot",
        dir.join("results.json").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(again.join("report.md").exists() && again.join("roofline.svg").exists());

    // compare: identical results pass; a deliberately slowed copy fails.
    let a = dir.join("results.json");
    let out = kernel_lab(&["compare", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut slow = results.clone();
    for r in &mut slow.records {
        if let Some(m) = r.measured.as_mut() {
            m.raw_ns.iter_mut().for_each(|v| *v *= 2);
            m.latency_ms = m.latency_ms.scaled(2.0);
        }
    }
    let b = dir.join("slow.json");
    slow.save(&b).unwrap();
    let out = kernel_lab(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(table.contains("SLOWER"));
    // --json: the same verdicts and exit code, as one document. (A point of
    // few, spread samples can stay "same" even at twice the time: the JSON
    // must say what the table says, not more.)
    let out = kernel_lab(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let measured = results
        .records
        .iter()
        .filter(|r| r.measured.is_some())
        .count();
    let slower = table.lines().filter(|l| l.ends_with("SLOWER")).count();
    assert!(slower > 0);
    assert_eq!(doc["matched"], measured);
    assert_eq!(doc["regressions"], slower);
    assert!(doc["warnings"].is_array());
    let points = doc["points"].as_array().unwrap();
    assert_eq!(points.len(), measured);
    let verdicts = |v: &str| points.iter().filter(|p| p["verdict"] == v).count();
    assert_eq!(verdicts("SLOWER"), slower);
    for p in points {
        assert!(
            ["SLOWER", "same", "faster", "inconclusive"].contains(&p["verdict"].as_str().unwrap()),
            "{p}"
        );
        let ratio = p["ratio"].as_f64().unwrap();
        assert!((ratio - 2.0).abs() < 1e-9, "{p}");
        assert!(
            p["op"].is_string() && p["a_p50_ms"].as_f64().unwrap() > 0.0,
            "{p}"
        );
    }
    let out = kernel_lab(&[
        "compare",
        a.to_str().unwrap(),
        a.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["regressions"], 0);
    assert_eq!(doc["slow_gpu_clock"], 0);

    // A point whose samples ran on a slow GPU clock (as NVML would record it)
    // is marked in both forms: its verdict may be the card's state. Planted:
    // compare ignoring sm_clock_mhz -> no mark -> fails.
    let mut clocked = results.clone();
    let first = clocked
        .records
        .iter_mut()
        .find(|r| r.measured.is_some())
        .unwrap();
    first.measured.as_mut().unwrap().sm_clock_mhz =
        kernel_lab::sample_clocks::SampleClocks::from_readings(&[1980, 345, 1980], Some(1980));
    let c = dir.join("clocked.json");
    clocked.save(&c).unwrap();
    let out = kernel_lab(&["compare", a.to_str().unwrap(), c.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.contains("^ sampled on a slow GPU clock in b")
            && table.contains("1 point(s) sampled on a slow GPU clock"),
        "{table}"
    );
    let out = kernel_lab(&[
        "compare",
        c.to_str().unwrap(),
        a.to_str().unwrap(),
        "--json",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["slow_gpu_clock"], 1);
    let marked: Vec<&serde_json::Value> = doc["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["slow_gpu_clock"] != serde_json::json!([]))
        .collect();
    assert_eq!(marked.len(), 1, "{doc}");
    assert_eq!(marked[0]["slow_gpu_clock"], serde_json::json!(["a"]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn set_and_backend_narrow_the_sweep() {
    let dir = temp_dir("set");
    let results = run_tiny(
        &dir,
        &[
            "--backend",
            "cpu",
            "--set",
            "dim=8",
            "--set",
            "op=matmul",
            "--quick",
        ],
    );
    assert_eq!(results.records.len(), 2 * 4);
    assert!(results
        .records
        .iter()
        .all(|r| r.id.backend == BackendKind::Cpu && r.id.axis("dim") == Some(8) && r.verified));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A model defined in the spec itself sweeps like a preset: its records are
/// labelled with its layers, its results file carries it, and the report (and
/// a re-render from the file alone) breaks a forward pass down by its layers.
#[test]
fn a_specs_own_model_is_measured_and_broken_down() {
    let dir = temp_dir("own-model");
    let spec = data("own-model.toml");
    let out = kernel_lab(&["run", &spec, "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let results = ResultsFile::load(&dir.join("results.json")).unwrap();
    let mut labels: Vec<&str> = results
        .records
        .iter()
        .filter_map(|r| r.layer.as_deref())
        .collect();
    labels.sort();
    labels.dedup();
    assert_eq!(labels, ["my-net/down", "my-net/embedding", "my-net/up"]);
    assert!(results.records.iter().all(|r| r.verified));
    assert_eq!(results.models()[0].name, "my-net");
    let breakdown = |dir: &Path| {
        let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
        report
            .lines()
            .filter(|l| l.contains("my-net f32 on cpu") && l.contains("forward pass"))
            .count()
    };
    assert_eq!(breakdown(&dir), 1);
    let svg = std::fs::read_to_string(dir.join("precision.svg")).unwrap();
    assert!(svg.contains("my-net: time by layer, cpu B2 S1"));
    // The results file alone is enough to draw it again.
    let again = temp_dir("own-model-plot");
    let results_json = dir.join("results.json");
    let out = kernel_lab(&[
        "plot",
        results_json.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(breakdown(&again), 1);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&again);
}

/// A shipped experiment runs on a model of another file's with --models-from:
/// the records carry its layers and the results file its definition; a name
/// it shares with the spec's own is refused, and so is a resume that would
/// change the recorded models. Planted: --models-from ignored -> "not a model
/// of this file or a preset" -> fails.
#[test]
fn run_takes_a_model_from_another_file() {
    let dir = temp_dir("models-from");
    let spec = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("experiments/decode-precision.toml")
        .display()
        .to_string();
    let models = data("own-model.toml");
    let out = kernel_lab(&[
        "run",
        &spec,
        "--models-from",
        &models,
        "--set",
        "model=my-net",
        "--set",
        "batch=1",
        "--set",
        "precision=f32",
        "--backend",
        "cpu",
        "--quick",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let results = ResultsFile::load(&dir.join("results.json")).unwrap();
    assert_eq!(results.records.len(), 3, "embedding, up and down");
    assert!(results
        .records
        .iter()
        .all(|r| r.verified && r.layer.as_deref().is_some_and(|l| l.starts_with("my-net/"))));
    assert_eq!(results.models()[0].name, "my-net");

    // The spec that defines my-net, given my-net again.
    let twice = temp_dir("models-from-twice");
    let out = kernel_lab(&[
        "run",
        &models,
        "--models-from",
        &models,
        "--out",
        twice.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("`my-net`")
            && err.contains("two models have this name")
            && err.contains("--models-from"),
        "{err}"
    );
    let out = kernel_lab(&[
        "run",
        "--resume",
        dir.to_str().unwrap(),
        "--models-from",
        &models,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("a resumed run keeps the models"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&twice);
}

/// `sampling.rounds`: every measured point is measured once per pass (each
/// pass with its share of the sample budget), its samples pooled into one
/// record whose median and rates are those of the pool, and the run says
/// which pass it is in.
#[test]
fn rounds_pool_every_pass_into_each_record() {
    let dir = temp_dir("rounds");
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("rounds.toml");
    std::fs::write(
        &spec,
        "name = \"rounds\"\n[axes]\nop = [\"matmul\", \"embedding\"]\nbackend = [\"cpu\"]\n\
         batch = [1, 3]\nseq = [5]\ndim = [17]\nvocab = [50]\n\
         [sampling]\nwarmup_runs = 1\nmin_samples = 6\nmax_samples = 6\nmin_ms = 0\nmax_ms = 5000\n\
         batch_mode = false\nphase_runs = 0\nrounds = 3\n",
    )
    .unwrap();
    let out_dir = dir.join("out");
    let out = kernel_lab(&[
        "run",
        spec.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains("round 2 of 3: 4 measured point(s), costliest first"),
        "{log}"
    );
    assert!(
        log.contains("round 3 of 3: 4 measured point(s), cheapest first"),
        "{log}"
    );
    let results = ResultsFile::load(&out_dir.join("results.json")).unwrap();
    assert_eq!(results.records.len(), 4);
    for r in &results.records {
        let m = r.measured.as_ref().expect("measured");
        // Two samples a pass (6 / 3), three passes.
        assert_eq!(
            (m.rounds, m.samples, m.raw_ns.len()),
            (3, 6, 6),
            "{:?}",
            r.id
        );
        assert_eq!(m.latency_ms.count, 6);
        let mut sorted = m.raw_ns.clone();
        sorted.sort_unstable();
        let p50_ms = (sorted[2] + sorted[3]) as f64 / 2.0 * 1e-6;
        assert!(
            (m.latency_ms.p50 - p50_ms).abs() <= 1e-9 * p50_ms,
            "{:?}",
            r.id
        );
        let rate = r.id.params.tokens() as f64 / (p50_ms * 1e-3);
        assert!((m.tokens_per_s - rate).abs() <= 1e-6 * rate, "{:?}", r.id);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_spec_files_name_the_problem_in_one_line() {
    let dir = temp_dir("bad");
    let malformed = data("malformed.toml");
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["run".into(), malformed.clone()],
            vec!["malformed.toml:4:", "batch = [1]"],
        ),
        (
            vec!["run".into(), "/nonexistent/spec.toml".into()],
            vec!["/nonexistent/spec.toml"],
        ),
        (
            vec![
                "run".into(),
                data("tiny.toml"),
                "--set".into(),
                "dim=0".into(),
            ],
            vec!["--set dim", "positive"],
        ),
        (
            vec![
                "run".into(),
                data("tiny.toml"),
                "--set".into(),
                "width=3".into(),
            ],
            vec!["unknown axis"],
        ),
        (
            vec![
                "run".into(),
                data("tiny.toml"),
                "--out".into(),
                "/proc/kernel-lab/out".into(),
            ],
            vec!["/proc/kernel-lab/out"],
        ),
        (
            vec!["plot".into(), "/nonexistent/results.json".into()],
            vec!["/nonexistent/results.json"],
        ),
        (
            vec!["compare".into(), malformed.clone(), malformed],
            vec!["results file", "malformed.toml"],
        ),
    ];
    for (args, needles) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = kernel_lab(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = stderr(&out);
        let line = err
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("{args:?}: {err}"));
        for n in needles {
            assert!(line.contains(n), "{args:?}: `{n}` not in `{line}`");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!dir.exists());
}

/// Runs tests/data/anchored.toml with `KERNEL_LAB_PYTHON=python`.
fn run_anchored(dir: &Path, python: &str) -> (ResultsFile, String) {
    let spec = data("anchored.toml");
    let out = common::kernel_lab(&["run", spec.as_str(), "--out", dir.to_str().unwrap()])
        .env("KERNEL_LAB_PYTHON", python)
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    (
        ResultsFile::load(&dir.join("results.json")).unwrap(),
        report,
    )
}

#[test]
fn the_anchor_is_parsed_into_results_and_compared_in_the_report() {
    let dir = temp_dir("anchor");
    std::fs::create_dir_all(&dir).unwrap();
    // A stand-in for the Python helper, speaking its protocol: a library line,
    // then one answer per point it is handed on stdin (every point takes the
    // library 3 ms fresh and 2 ms into `out=`; the D16 embedding is over its
    // budget). Lines that are not JSON are skipped.
    let helper = dir.join("fake-python");
    common::write_script(
        &helper,
        r#"#!/bin/sh
echo '{"library": "fakelib 1.0", "blas": "none", "threads": 1}'
while read -r point; do
  echo 'not json: ignored'
  case "$point" in
    *'"op":"embedding"'*) case "$point" in
      *'"dim":16,'*) echo "${point%\}}, \"skipped\": \"over budget\"}"; continue;;
    esac;;
  esac
  echo "${point%\}}, \"fresh_p50_ms\": 3.0, \"fresh_samples\": 5, \"out_p50_ms\": 2.0, \"out_samples\": 5}"
done
"#,
    );
    let (results, report) = run_anchored(&dir.join("out"), helper.to_str().unwrap());
    let anchors = results.anchors.expect("anchors recorded");
    assert_eq!(anchors.library, "fakelib 1.0 (none BLAS, 1 threads)");
    assert_eq!(anchors.unavailable, None);
    assert_eq!(anchors.points.len(), 4, "one answer per CPU point");
    let find = |op: &str, dim: u32| {
        anchors
            .points
            .iter()
            .find(|p| p.params.op().name() == op && p.params.axis("dim") == Some(dim))
            .unwrap_or_else(|| panic!("{op} D{dim} anchored: {anchors:?}"))
    };
    // 2*M*K*N = 2*5*8*8 FLOP in the faster call's 2 ms.
    let want = 2.0 * 5.0 * 8.0 * 8.0 / 2e-3 / 1e9;
    let mm = find("matmul", 8);
    assert!((mm.throughput.unwrap() - want).abs() < 1e-12, "{mm:?}");
    assert_eq!(
        find("embedding", 16).skipped.as_deref(),
        Some("over budget")
    );
    assert!(
        report.contains("## Same-run anchor: fakelib 1.0"),
        "{report}"
    );
    assert!(
        report.contains("CPU matmul f32 against fakelib 1.0") && report.contains("over 2 shapes"),
        "{report}"
    );
    assert!(report.contains("takes 1.50x its `out=` call"), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_anchor_is_reported_and_the_run_still_succeeds() {
    let dir = temp_dir("no-anchor");
    let (results, report) = run_anchored(&dir, "/nonexistent/python3");
    assert_eq!(results.records.len(), 4);
    assert!(results.records.iter().all(|r| r.verified));
    let why = results
        .anchors
        .and_then(|a| a.unavailable)
        .expect("unavailable");
    assert!(
        why.contains("could not start /nonexistent/python3"),
        "{why}"
    );
    assert!(
        report.contains("No same-run anchor: could not start"),
        "{report}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! The command line as people use it: `list`, `--format` on `bench` and
//! `run`, `run`'s filters, `--threads`, `plot --charts`, a line per point
//! when stderr is not a terminal, and no loader noise when XDG_RUNTIME_DIR
//! is unset.

mod common;

use std::path::Path;

use common::{kernel_lab, run, stderr};
use serde_json::Value;

/// A small CPU-only experiment: two ops x two precisions x two dims.
fn tiny_spec(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("tiny.toml");
    std::fs::write(
        &path,
        r#"name = "tiny"
description = "two ops, two precisions, two dims"
[axes]
op = ["matmul", "embedding"]
backend = ["cpu"]
precision = ["f32", "f16"]
batch = [2]
seq = [3]
dim = [40, 72]
[sampling]
warmup_runs = 1
warmup_ms = 5
min_samples = 3
max_samples = 5
min_ms = 5
max_ms = 40
target_rel_noise = 0.05
phase_runs = 1
"#,
    )
    .unwrap();
    path
}

#[test]
fn list_names_every_experiment_with_its_point_count() {
    let o = run(&["list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    for name in ["default", "week1-embedding-dim", "llm-layers"] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
    // The week-1 grid: 2 ops x 2 backends x 2 precisions x 4 batches x 2 seqs x 4 dims.
    let week1 = text
        .lines()
        .find(|l| l.starts_with("week1-embedding-dim"))
        .unwrap();
    assert!(week1.split_whitespace().nth(1) == Some("256"), "{week1}");
    let o = run(&["list", "--format", "json"]);
    let first: Value =
        serde_json::from_str(String::from_utf8(o.stdout).unwrap().lines().next().unwrap()).unwrap();
    assert!(first["points"].as_u64().unwrap() > 0);
}

#[test]
fn bench_prints_csv_and_json_on_request() {
    let args = [
        "bench",
        "--op",
        "matmul",
        "--batch",
        "2",
        "--seq",
        "3",
        "--dim",
        "33",
        "--out-dim",
        "47",
        "--backend",
        "cpu",
        "--quick",
    ];
    let mut csv = args.to_vec();
    csv.extend(["--format", "csv"]);
    let o = run(&csv);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("op,backend,precision,B,S,D,N"));
    assert!(lines[1].starts_with("matmul,cpu,f32,2,3,33,47,"), "{text}");
    assert!(lines[1].ends_with(",true"), "{text}");
    let mut json = args.to_vec();
    json.extend(["--format", "json"]);
    let o = run(&json);
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(text.lines().count(), 1);
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["out_dim"], 47);
}

#[test]
fn run_filters_formats_threads_and_prints_a_line_per_point() {
    let dir = common::temp_dir("habits");
    let spec = tiny_spec(&dir);
    let out = dir.join("out");
    let o = run(&[
        "--threads",
        "1",
        "run",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--op",
        "matmul",
        "--precision",
        "f16",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout.clone()).unwrap();
    let recs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines only"))
        .collect();
    assert_eq!(recs.len(), 2, "{text}");
    for r in &recs {
        assert_eq!(
            (r["op"].as_str(), r["precision"].as_str()),
            (Some("matmul"), Some("f16"))
        );
    }
    assert!(
        recs[0]["dim"].as_u64() < recs[1]["dim"].as_u64(),
        "axis order"
    );
    // Not a terminal: a line per point, with its median and verdict.
    let err = stderr(&o);
    assert!(
        err.contains("[1/2] cpu matmul f16 B2 S3 D") && err.contains("[2/2]"),
        "{err}"
    );
    assert!(err.contains("verified true"), "{err}");
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(
        file["environment"]["threads"], 1,
        "--threads 1 is what the run records"
    );
    assert!(out.join("report.html").is_file());

    // plot --charts draws just those asked for.
    let replot = dir.join("replot");
    let o = run(&[
        "plot",
        out.join("results.json").to_str().unwrap(),
        "--out",
        replot.to_str().unwrap(),
        "--charts",
        "seed",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let svgs: Vec<String> = std::fs::read_dir(&replot)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".svg"))
        .collect();
    assert!(
        !svgs.is_empty() && svgs.iter().all(|n| n.starts_with("seed-")),
        "{svgs:?}"
    );
    let o = run(&[
        "plot",
        out.join("results.json").to_str().unwrap(),
        "--charts",
        "pie",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("unknown chart"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unset_xdg_runtime_dir_makes_no_noise() {
    let o = kernel_lab(&["devices"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(!stderr(&o).contains("XDG_RUNTIME_DIR"), "{}", stderr(&o));
}

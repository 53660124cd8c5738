//! The `kernel-lab` binary end to end: `devices`, `bench --json` records for
//! every op x precision x backend, the fallback when no GPU driver exists, and
//! one clear line for each kind of bad input.

mod common;

use std::process::Command;

use common::{kernel_lab, run, stderr};
use serde_json::Value;

/// Environment that hides every Vulkan driver and the GL backend.
fn without_gpu(c: &mut Command) -> &mut Command {
    c.env("WGPU_BACKEND", "vulkan")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
}

fn gpu_present() -> bool {
    let out = run(&["devices", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("devices --json is JSON");
    let present = !v["adapters"].as_array().unwrap().is_empty();
    if !present {
        common::no_gpu("`kernel-lab devices` lists no adapter");
    }
    present
}

#[test]
fn devices_lists_adapters_with_features_and_the_cpu() {
    let out = run(&["devices"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("[cpu]"), "{text}");
    if gpu_present() {
        assert!(text.contains("timestamp-query:"), "{text}");
        let v: Value = serde_json::from_slice(&run(&["devices", "--json"]).stdout).unwrap();
        let first = &v["adapters"][0];
        assert!(
            first["limits"]["max_storage_buffer_binding_size"]
                .as_u64()
                .unwrap()
                > 0
        );
        if first["device_type"] == "cpu" {
            // A software device (lavapipe) is labelled as such.
            assert_eq!(first["software"], true);
            assert!(text.contains("software device"), "{text}");
            // Whatever card the machine has, a software device is never
            // credited with its driver's clocks or energy.
            assert!(
                text.contains("driver readings: none (a software device)"),
                "{text}"
            );
            assert_eq!(first["vendor_id"], 0x10005, "Mesa's vendor id");
        }
    }
}

#[test]
fn bench_json_prints_one_verified_record_per_op_precision_backend() {
    let mut backends = vec!["cpu"];
    if gpu_present() {
        backends.push("gpu");
    }
    for backend in backends {
        for op in ["embedding", "matmul", "embed-project"] {
            for precision in ["f32", "f16", "bf16", "int8"] {
                let args = [
                    "bench",
                    "--op",
                    op,
                    "--batch",
                    "3",
                    "--seq",
                    "77",
                    "--dim",
                    "100",
                    "--vocab",
                    "1000",
                    "--precision",
                    precision,
                    "--backend",
                    backend,
                    "--json",
                    "--quick",
                ];
                let out = run(&args);
                assert!(out.status.success(), "{args:?}: {}", stderr(&out));
                let stdout = String::from_utf8(out.stdout).unwrap();
                assert_eq!(stdout.lines().count(), 1, "exactly one record: {stdout}");
                let r: Value = serde_json::from_str(&stdout).unwrap();
                assert_eq!(r["op"], op);
                assert_eq!(r["backend"], backend);
                assert_eq!(r["precision"], precision);
                assert_eq!(
                    (r["batch"].as_u64(), r["seq"].as_u64(), r["dim"].as_u64()),
                    (Some(3), Some(77), Some(100))
                );
                assert_eq!(r["verified"], true, "{stdout}");
                let cost = &r["precision_cost"];
                assert!(
                    cost["rel_frobenius_err"].as_f64().unwrap() >= 0.0
                        && cost["elements"].as_u64() == Some(3 * 77 * 100),
                    "{stdout}"
                );
                assert!(
                    r["max_abs_err"].as_f64().unwrap()
                        <= r["max_norm_err"].as_f64().unwrap() * 1e3 + 1e-2
                );
                let expect_method = if backend == "gpu" {
                    ["device-timestamp", "wall"]
                } else {
                    ["wall", "wall"]
                };
                assert!(
                    expect_method.contains(&r["timing_method"].as_str().unwrap()),
                    "{stdout}"
                );
                let lat = &r["latency_ms"];
                for k in ["min", "p50", "p90", "p95", "p99", "max", "mean", "stddev"] {
                    assert!(lat[k].as_f64().unwrap() >= 0.0, "latency_ms.{k}: {stdout}");
                }
                assert!(
                    lat["min"].as_f64() <= lat["p50"].as_f64()
                        && lat["p50"].as_f64() <= lat["max"].as_f64()
                );
                assert_eq!(
                    r["samples"].as_u64().unwrap() as usize,
                    r["raw_ns"].as_array().unwrap().len()
                );
                assert!(r["tokens_per_s"].as_f64().unwrap() > 0.0);
                assert!(
                    r["memory_bytes"]["measured"]["total"].as_u64().unwrap()
                        >= r["memory_bytes"]["model"]["total"].as_u64().unwrap()
                );
            }
        }
    }
}

#[test]
fn without_a_driver_gpu_is_a_clear_error_and_auto_falls_back_to_cpu() {
    let args = [
        "bench", "--op", "matmul", "--batch", "1", "--seq", "4", "--dim", "8", "--json", "--quick",
    ];
    let mut gpu = kernel_lab(&args);
    let out = without_gpu(gpu.args(["--backend", "gpu"]))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("no GPU adapter"), "{err}");

    let out = without_gpu(&mut kernel_lab(&args)).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("falling back to the CPU"),
        "{}",
        stderr(&out)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["backend"], "cpu");
    assert_eq!(r["verified"], true);
}

#[test]
fn bad_values_give_one_clear_line_and_a_non_zero_exit() {
    let base = ["bench", "--quick"];
    // Arguments after `bench --quick`, and what the error line must name.
    let cases: [(&str, &[&str]); 6] = [
        ("--op conv --batch 1 --seq 1 --dim 1", &["conv", "op"]),
        (
            "--op matmul --batch 1 --seq 1 --dim 1 --precision f8",
            &["f8", "precision"],
        ),
        ("--op matmul --batch 1 --seq 1 --dim 0", &["--dim", "0"]),
        (
            "--op embedding --batch 1 --seq 1 --dim 1 --vocab=-3",
            &["--vocab"],
        ),
        (
            "--op embedding --batch 1 --seq 70000 --dim 70000",
            &["shape", "2^32"],
        ),
        (
            "--op matmul --batch 1 --seq 1 --dim 1 --backend tpu",
            &["tpu"],
        ),
    ];
    for (extra, needles) in cases {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(extra.split_whitespace());
        let out = run(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = stderr(&out);
        let first = err.lines().next().unwrap_or("");
        assert!(first.starts_with("error:"), "{args:?}: {err}");
        for n in needles {
            assert!(first.contains(n), "{args:?}: `{n}` not in `{first}`");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn unknown_adapter_names_the_adapters_there_are() {
    if !gpu_present() {
        return;
    }
    let out = run(&[
        "bench",
        "--op",
        "matmul",
        "--batch",
        "1",
        "--seq",
        "1",
        "--dim",
        "4",
        "--backend",
        "gpu",
        "--adapter",
        "no-such-gpu",
        "--quick",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("no-such-gpu") && err.contains("among"),
        "{err}"
    );
}

/// The autotuner's choice persists per adapter: a second process on the same
/// adapter reuses it (and says so), `--no-tuning-cache` tunes afresh, and a
/// broken cache file costs a re-tune, not the run.
#[test]
fn tuning_choices_are_cached_per_adapter_between_runs() {
    if !gpu_present() {
        common::no_gpu("no adapter");
        return;
    }
    let dir = std::env::temp_dir().join(format!("kernel-lab-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bench = |extra: &[&str]| -> Value {
        let mut args = vec![
            "bench",
            "--op",
            "matmul",
            "--batch",
            "1",
            "--seq",
            "40",
            "--dim",
            "24",
            "--backend",
            "gpu",
            "--json",
            "--max-time-ms",
            "5",
            "--phase-runs",
            "0",
            "--no-batch",
        ];
        args.extend_from_slice(extra);
        let out = kernel_lab(&args)
            .env("KERNEL_LAB_CACHE_DIR", &dir)
            .output()
            .expect("the binary runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("one JSON record")
    };
    let kernel = |v: &Value| v["kernel"].as_str().unwrap_or_default().to_string();
    let first = bench(&[]);
    assert!(
        kernel(&first).ends_with("(autotuned) no-loop-bounding f32"),
        "{first}"
    );
    assert!(dir.join("tuning.json").exists());
    let second = bench(&[]);
    assert!(kernel(&second).contains("(autotuned, cached)"), "{second}");
    assert_eq!(second["verified"], true);
    // Issue 12, case 10: an entry naming an f16-accumulating kernel under the
    // f32 key is not trusted: the point re-tunes, and never accumulates in f16.
    let cache_text = std::fs::read_to_string(dir.join("tuning.json")).unwrap();
    let mut cache: Value = serde_json::from_str(&cache_text).unwrap();
    for e in cache["entries"].as_array_mut().unwrap() {
        let chosen = e["chosen"].as_str().unwrap().to_string();
        e["chosen"] = format!("{chosen}-acc16").into();
    }
    std::fs::write(dir.join("tuning.json"), cache.to_string()).unwrap();
    let foreign = bench(&[]);
    assert!(
        kernel(&foreign).ends_with("(autotuned) no-loop-bounding f32")
            && !kernel(&foreign).contains("acc16"),
        "{foreign}"
    );
    assert_eq!(foreign["verified"], true);
    let fresh = bench(&["--no-tuning-cache"]);
    assert!(
        kernel(&fresh).ends_with("(autotuned) no-loop-bounding f32"),
        "{fresh}"
    );
    std::fs::write(dir.join("tuning.json"), "{ broken").unwrap();
    let broken = bench(&[]);
    assert!(
        kernel(&broken).ends_with("(autotuned) no-loop-bounding f32"),
        "{broken}"
    );
    assert_eq!(broken["verified"], true);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ops` lists every op with its own parameters, as text and as JSON; `bench`
/// takes each listed parameter as a flag, and another op's size flag is
/// ignored with a note that names the op's own parameters.
#[test]
fn ops_lists_each_ops_parameters_and_bench_notes_another_ops_flag() {
    let out = run(&["ops", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ops: Value = serde_json::from_slice(&out.stdout).expect("ops --json is JSON");
    let params = |name: &str| -> Vec<String> {
        let op = ops
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["op"] == name)
            .unwrap_or_else(|| panic!("{name} not listed"));
        op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let mut matmul = params("matmul");
    matmul.sort();
    assert_eq!(matmul, ["batch", "dim", "out_dim", "seq"]);
    assert!(params("embedding").contains(&"vocab".to_string()));
    assert!(!params("embedding").contains(&"out_dim".to_string()));
    let text = run(&["ops"]);
    let text = String::from_utf8(text.stdout).unwrap();
    for op in ["embedding", "matmul", "embed-project"] {
        assert!(text.contains(&format!("{op}: ")), "{text}");
    }

    let out = run(&[
        "bench",
        "--op",
        "matmul",
        "--batch",
        "1",
        "--seq",
        "3",
        "--dim",
        "5",
        "--vocab",
        "300",
        "--backend",
        "cpu",
        "--json",
        "--quick",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--vocab ignored: matmul has no such parameter") && err.contains("out_dim"),
        "{err}"
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("one record");
    assert_eq!(r["op"], "matmul");
    assert!(r.get("vocab").is_none(), "{r}");
    assert_eq!(r["out_dim"], 5);
}

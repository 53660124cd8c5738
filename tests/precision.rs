//! The precision study end to end: the precision cost a record states agrees
//! with an independent computation of the same quantity, BF16 costs what its
//! format says relative to FP16, overflow of the format is counted (not a
//! kernel failure), and every precision prints a verified record with its cost
//! on every backend here, for every op and a rectangular shape.

mod common;

use common::{op, run, sized, stderr};
use half::{bf16, f16};
use kernel_lab::data::{Data, Dist, Scale, DEFAULT_SEED};
use kernel_lab::ops::matmul::inputs::Tensors;
use kernel_lab::precision::Precision;
use kernel_lab::workload::Workload;
use serde_json::Value;

fn gpu_present() -> bool {
    let out = run(&["devices", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("devices --json is JSON");
    v["adapters"].as_array().is_some_and(|a| !a.is_empty())
}

fn backends() -> Vec<&'static str> {
    let mut b = vec!["cpu"];
    if gpu_present() {
        b.push("gpu");
    }
    b
}

/// `bench --json` for one point; the record.
fn bench(args: &[&str]) -> Value {
    let mut all = vec![
        "bench",
        "--json",
        "--quick",
        "--no-batch",
        "--phase-runs",
        "0",
    ];
    all.extend_from_slice(args);
    let out = run(&all);
    assert!(out.status.success(), "{all:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("one JSON record")
}

/// The relative Frobenius error of a K x N projection in `precision`,
/// computed here from the same seeded inputs without the library's reference:
/// inputs rounded with `half`, products summed in f64, the output rounded once,
/// against the f64 product of the unrounded inputs.
fn independent_rel_err(work: &Workload, round: impl Fn(f32) -> f32) -> f64 {
    let generated = work.inputs(DEFAULT_SEED);
    let inputs: &Tensors = generated.get();
    let (k, n) = work.params.projection().unwrap();
    let (m, k, n) = (work.tokens() as usize, k as usize, n as usize);
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for r in 0..m {
        for c in 0..n {
            let (mut exact, mut rounded) = (0.0f64, 0.0f64);
            for kk in 0..k {
                let (x, w) = (inputs.x[r * k + kk], inputs.w[kk * n + c]);
                exact += x as f64 * w as f64;
                rounded += round(x) as f64 * round(w) as f64;
            }
            let y = round(rounded as f32) as f64;
            num += (y - exact).powi(2);
            den += exact.powi(2);
        }
    }
    (num / den).sqrt()
}

#[test]
fn precision_cost_agrees_with_an_independent_computation_and_bf16_costs_4_to_16x_fp16() {
    let (b, s, k, n) = (1u32, 37u32, 301u32, 203u32);
    let work = |precision| Workload {
        data: Data {
            dist: Dist::Normal,
            scale: Scale::ONE,
        },
        ..sized(
            op("matmul"),
            precision,
            &[("batch", b), ("seq", s), ("dim", k), ("out_dim", n)],
        )
    };
    let want16 = independent_rel_err(&work(Precision::F16), |v| f16::from_f32(v).to_f32());
    let want_b16 = independent_rel_err(&work(Precision::Bf16), |v| bf16::from_f32(v).to_f32());
    for backend in backends() {
        let mut got = Vec::new();
        for (p, want) in [("f16", want16), ("bf16", want_b16)] {
            let r = bench(&[
                "--op",
                "matmul",
                "--batch",
                "1",
                "--seq",
                "37",
                "--dim",
                "301",
                "--out-dim",
                "203",
                "--precision",
                p,
                "--dist",
                "normal",
                "--backend",
                backend,
            ]);
            assert_eq!(r["verified"], true, "{r}");
            assert_eq!(r["dist"], "normal");
            let e = r["precision_cost"]["rel_frobenius_err"].as_f64().unwrap();
            // The same quantity computed twice: only the kernel's f32
            // summation order differs, far below the format's rounding. (The
            // issue's target is 2x; leaving out the inputs' rounding, as the
            // lab once did, is within 2x too, so the test holds it to 10%.)
            assert!(
                (e / want - 1.0).abs() < 0.1,
                "{backend} {p}: the record says {e:.3e}, the independent computation {want:.3e}"
            );
            // The kernel error (rounded inputs) is well below the cost (original data).
            assert!(
                r["max_norm_err"].as_f64().unwrap()
                    < r["precision_cost"]["norm_err_max"].as_f64().unwrap() * 10.0
            );
            got.push(e);
        }
        let ratio = got[1] / got[0];
        assert!(
            (4.0..=16.0).contains(&ratio),
            "{backend}: BF16's cost is {ratio:.1}x FP16's (8 vs 11 significant bits: expected 4x-16x)"
        );
    }
}

#[test]
fn fp16_overflow_is_counted_not_a_failure_and_bf16_does_not_overflow() {
    for backend in backends() {
        for op in ["matmul", "embedding"] {
            let args = |p: &'static str| {
                [
                    "--op",
                    op,
                    "--batch",
                    "2",
                    "--seq",
                    "19",
                    "--dim",
                    "130",
                    "--vocab",
                    "300",
                    "--precision",
                    p,
                    "--dist",
                    "llm",
                    "--scale",
                    "16384",
                    "--backend",
                    backend,
                ]
            };
            let r16 = bench(&args("f16"));
            assert_eq!(r16["verified"], true, "{backend} {op}: {r16}");
            let nf = r16["precision_cost"]["non_finite"].as_u64().unwrap();
            assert!(
                nf > 0,
                "{backend} {op}: llm data at scale 16384 overflows FP16: {r16}"
            );
            assert_eq!(r16["overflows"].as_u64(), Some(nf), "{r16}");
            let rb = bench(&args("bf16"));
            assert_eq!(rb["verified"], true, "{rb}");
            assert_eq!(rb["precision_cost"]["non_finite"].as_u64(), Some(0), "{rb}");
            assert!(rb.get("overflows").is_none(), "{rb}");
        }
    }
}

#[test]
fn int8_weights_verify_cost_more_than_bf16_and_take_a_byte_plus_a_scale() {
    for backend in backends() {
        for op in ["matmul", "embed-project"] {
            let args = |p: &'static str| {
                [
                    "--op",
                    op,
                    "--batch",
                    "3",
                    "--seq",
                    "7",
                    "--dim",
                    "257",
                    "--out-dim",
                    "130",
                    "--vocab",
                    "400",
                    "--precision",
                    p,
                    "--dist",
                    "llm",
                    "--backend",
                    backend,
                ]
            };
            let r8 = bench(&args("w8"));
            assert_eq!(r8["verified"], true, "{backend} {op}: {r8}");
            assert_eq!(r8["precision"], "int8");
            let model = &r8["memory_bytes"]["model"];
            assert_eq!(model["weights"].as_u64(), Some(257 * 130 + 4 * 130), "{r8}");
            assert_eq!(
                model["output"].as_u64(),
                Some(21 * 130 * 2),
                "FP16 outputs: {r8}"
            );
            let rb = bench(&args("bf16"));
            let (e8, eb) = (
                r8["precision_cost"]["rel_frobenius_err"].as_f64().unwrap(),
                rb["precision_cost"]["rel_frobenius_err"].as_f64().unwrap(),
            );
            // 127 levels per column against BF16's 8 significant bits: a few
            // times the error, not orders of magnitude (a lost scale would be).
            assert!(
                e8 > eb && e8 < 20.0 * eb,
                "{backend} {op}: INT8 {e8:.2e}, BF16 {eb:.2e}"
            );
        }
    }
}

#[test]
fn bf16_prints_verified_records_with_their_cost_for_every_op_and_a_rectangular_shape() {
    for backend in backends() {
        for op in ["embedding", "matmul", "embed-project"] {
            let r = bench(&[
                "--op",
                op,
                "--batch",
                "3",
                "--seq",
                "5",
                "--dim",
                "129",
                "--out-dim",
                "67",
                "--vocab",
                "500",
                "--precision",
                "bfloat16",
                "--backend",
                backend,
            ]);
            assert_eq!(r["verified"], true, "{backend} {op}: {r}");
            assert_eq!(r["precision"], "bf16");
            let c = &r["precision_cost"];
            let width = if op == "embedding" { 129 } else { 67 };
            assert_eq!(c["elements"].as_u64(), Some(15 * width), "{r}");
            assert!(c["row_cosine_min"].as_f64().unwrap() > 0.99, "{r}");
            if op == "embedding" {
                // A copy: the cost is the table's rounding, within BF16's 2^-8.
                assert!(c["norm_err_max"].as_f64().unwrap() <= 2f64.powi(-8), "{r}");
                assert!(c.get("top1_agreement").is_none());
            } else {
                assert!(c["top5_agreement"].as_f64().is_some(), "{r}");
            }
            // BF16 stores two bytes a value: half FP32's weight.
            let model = &r["memory_bytes"]["model"];
            if op != "embedding" {
                assert_eq!(model["weights"].as_u64(), Some(129 * 67 * 2), "{r}");
            }
        }
    }
}

//! The report of a device check (`scripts/device-check`): kernel-lab's GPU
//! numbers beside the vendor library's on the same points and the same card
//! (`torch_gpu.jsonl`, written by `experiments/anchors/torch_gpu.py` in the same
//! call), the issue's targets with their verdicts, launch costs, what wgpu's
//! shader checks cost, energy, and anything that makes a number doubtful
//! (timestamp fallbacks, a loaded or throttling machine).
//!
//! Everything here is read from the check's folder; nothing is measured.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::analysis::seed_axes;
use crate::backend::BackendKind;
use crate::error::{LabError, Result};
use crate::ops::op::Roof;
use crate::results::{Record, ResultsFile};

/// The real-GPU issue's targets are about these points (as the vendor's
/// lines and the records name them): the square projection whose speed is
/// set against the vendor's GEMM, and the op whose largest points are set
/// against the device's copy bandwidth.
const SQUARE: (&str, u64, u64, u64, u64) = ("matmul", 1, 4096, 4096, 4096);
/// See [`SQUARE`].
const GATHER: &str = "embedding";

/// The key of the target square in `precision`.
fn square_key(precision: &str) -> String {
    let (op, b, s, d, n) = SQUARE;
    key(op, precision, b, s, d, n)
}

/// One vendor-library timing from `torch_gpu.jsonl`.
#[derive(Clone, Debug, PartialEq)]
pub struct VendorPoint {
    pub p50_ms: f64,
    pub gflops: Option<f64>,
    pub gbps: f64,
}

/// What `torch_gpu.jsonl` holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vendor {
    /// Its first line: library, CUDA, device.
    pub header: String,
    /// Device-to-device copy bandwidth, GB/s, by bytes copied (the best of
    /// the file's lines for each size).
    pub copy_gbps: BTreeMap<u64, f64>,
    /// Timings by point key (see [`key`]).
    pub points: BTreeMap<String, VendorPoint>,
}

/// The key both sides share: op, precision and sizes.
pub fn key(op: &str, precision: &str, batch: u64, seq: u64, dim: u64, out_dim: u64) -> String {
    format!("{op} {precision} B{batch} S{seq} D{dim} N{out_dim}")
}

fn record_key(r: &Record) -> String {
    let id = &r.id;
    let a = seed_axes(id).unwrap_or(crate::report::analysis::SeedAxes {
        batch: 0,
        seq: 0,
        dim: 0,
        out_dim: 0,
    });
    key(
        id.op().name(),
        id.precision.name(),
        a.batch as u64,
        a.seq as u64,
        a.dim as u64,
        a.out_dim as u64,
    )
}

impl Vendor {
    /// Parses the JSON lines; a line that is not JSON is an error naming it.
    pub fn parse(text: &str, source: &str) -> Result<Self> {
        let mut v = Vendor::default();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let j: Value = serde_json::from_str(line).map_err(|e| {
                LabError::invalid(source, &format!("line {}", i + 1), &e.to_string())
            })?;
            let num = |k: &str| j.get(k).and_then(Value::as_f64);
            let int = |k: &str| j.get(k).and_then(Value::as_u64);
            if j.get("library").is_some() {
                v.header = ["library", "cuda", "device"]
                    .iter()
                    .filter_map(|k| {
                        j.get(*k)
                            .and_then(Value::as_str)
                            .map(|s| format!("{k} {s}"))
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                continue;
            }
            let op = j.get("op").and_then(Value::as_str).unwrap_or("");
            if op == "copy" {
                if let (Some(b), Some(g)) = (int("bytes"), num("gbps")) {
                    // Several anchor runs append to one file: keep each size's best.
                    let best = v.copy_gbps.entry(b).or_insert(g);
                    *best = best.max(g);
                }
                continue;
            }
            let (Some(p50_ms), Some(gbps)) = (num("p50_ms"), num("gbps")) else {
                continue; // a skipped point
            };
            let prec = j.get("precision").and_then(Value::as_str).unwrap_or("");
            let (Some(b), Some(s), Some(d)) = (int("batch"), int("seq"), int("dim")) else {
                continue;
            };
            let n = int("out_dim").unwrap_or(d);
            v.points.insert(
                key(op, prec, b, s, d, n),
                VendorPoint {
                    p50_ms,
                    gflops: num("gflops"),
                    gbps,
                },
            );
        }
        Ok(v)
    }

    /// The best copy bandwidth measured (the practical memory ceiling).
    pub fn best_copy_gbps(&self) -> Option<f64> {
        self.copy_gbps.values().copied().reduce(f64::max)
    }
}

/// One row of the side-by-side table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub file: String,
    pub key: String,
    pub kernel: String,
    pub ours_ms: f64,
    pub vendor_ms: f64,
    /// `vendor_ms / ours_ms`: kernel-lab's speed as a fraction of the vendor's.
    pub ratio: f64,
    pub ours_rate: String,
    pub vendor_rate: String,
}

/// The side-by-side rows of the verified GPU points that the vendor timed.
pub fn rows(files: &[(String, ResultsFile)], vendor: &Vendor) -> Vec<Row> {
    files
        .iter()
        .flat_map(|(name, f)| f.records.iter().filter_map(|r| row(name, r, vendor)))
        .collect()
}

/// The side-by-side row of one record from `file`, where it is a verified GPU
/// point the vendor timed.
pub fn row(file: &str, r: &Record, vendor: &Vendor) -> Option<Row> {
    let m = r.measured.as_ref()?;
    if !(r.verified && r.id.backend == BackendKind::Gpu) {
        return None;
    }
    let k = record_key(r);
    let v = vendor.points.get(&k)?;
    let (ours_rate, vendor_rate) = match (r.id.params.roof(), v.gflops) {
        (Roof::Memory, _) | (_, None) => {
            (format!("{:.0} GB/s", m.gbps), format!("{:.0} GB/s", v.gbps))
        }
        (_, Some(g)) => (
            format!("{:.0} GFLOP/s", m.gflops),
            format!("{g:.0} GFLOP/s"),
        ),
    };
    Some(Row {
        file: file.to_string(),
        key: k,
        kernel: r.kernel.clone(),
        ours_ms: m.latency_ms.p50,
        vendor_ms: v.p50_ms,
        ratio: v.p50_ms / m.latency_ms.p50,
        ours_rate,
        vendor_rate,
    })
}

/// The file name of the rows that the coop step forced (`coop.jsonl`).
pub const FORCED_COOP: &str = "coop (forced)";

/// What a `bench --json` file of the script holds (`coop.jsonl`,
/// `gather.jsonl`): the records, and for each configuration bench printed no
/// record for, its name and the error the script kept.
pub fn bench_lines(text: &str) -> (Vec<Record>, Vec<(String, String)>) {
    let mut records = Vec::new();
    let mut refused = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Ok(r) = serde_json::from_str::<Record>(line) {
            records.push(r);
        } else if let Ok(v) = serde_json::from_str::<Value>(line) {
            let s = |k: &str| v[k].as_str().unwrap_or("?").to_string();
            refused.push((s("matmul_variant"), s("refused")));
        }
    }
    (records, refused)
}

/// A target of the real-GPU issue and whether this check met it.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    pub met: Option<bool>,
}

/// The issue's targets, judged from the rows (`None` where the check holds
/// no measurement for it).
pub fn verdicts(files: &[(String, ResultsFile)], rows: &[Row], vendor: &Vendor) -> Vec<Verdict> {
    let mut v = Vec::new();
    // The lab's defaults only: the shader-check runs are a comparison.
    // The fastest 4096^3 square of a precision (a coop configuration the coop
    // step forced included).
    let big_square = |prec: &str| {
        rows.iter()
            .filter(|r| !r.file.starts_with("shader-checks-"))
            .filter(|r| r.key == square_key(prec))
            .max_by(|a, b| a.ratio.total_cmp(&b.ratio))
    };
    let sgemm = big_square("f32").map(|r| r.ratio);
    v.push(Verdict {
        target: "FP32 matmul 4096^3 >= 50% of cuBLAS SGEMM (TF32 off)".into(),
        measured: sgemm.map_or("not measured".into(), |r| format!("{:.0}%", r * 100.0)),
        met: sgemm.map(|r| r >= 0.5),
    });
    // The gather's bandwidth on its largest points against the device copy.
    let copy = vendor.best_copy_gbps();
    let gathers: Vec<(u64, f64)> = files
        .iter()
        .flat_map(|(_, f)| &f.records)
        .filter(|r| r.id.op().name() == GATHER && r.id.backend == BackendKind::Gpu && r.verified)
        .filter_map(|r| {
            let a = seed_axes(&r.id)?;
            r.measured
                .as_ref()
                .map(|m| (a.batch as u64 * a.seq as u64 * a.dim as u64, m.gbps))
        })
        .collect();
    let largest = gathers.iter().map(|g| g.0).max();
    let at_largest: Vec<f64> = gathers
        .iter()
        .filter(|g| Some(g.0) == largest)
        .map(|g| g.1)
        .collect();
    let gather = match (copy, at_largest.is_empty()) {
        (Some(c), false) => Some(at_largest.iter().copied().fold(f64::MAX, f64::min) / c),
        _ => None,
    };
    v.push(Verdict {
        target: "embedding gather >= 80% of the device copy bandwidth (largest gather points, the slower precision)".into(),
        measured: match (gather, copy) {
            (Some(g), Some(c)) => format!("{:.0}% of {c:.0} GB/s", g * 100.0),
            _ => "not measured".into(),
        },
        met: gather.map(|g| g >= 0.8),
    });
    let best16 = big_square("f16");
    v.push(Verdict {
        target: "FP16 (cooperative matrices where offered) 4096^3 >= 25% of cuBLAS HGEMM".into(),
        measured: best16.map_or("not measured".into(), |r| {
            let name = r.kernel.split_whitespace().next().unwrap_or("");
            let how = if r.file == FORCED_COOP {
                format!("{name}, forced by the coop step; see its section")
            } else if r.kernel.contains("coop") {
                "the cooperative-matrix kernel, autotuned".to_string()
            } else {
                "the autotuner chose a non-cooperative kernel; see Autotuning".to_string()
            };
            format!("{:.1}% ({how})", r.ratio * 100.0)
        }),
        met: best16.map(|r| r.ratio >= 0.25),
    });
    v
}

fn load_results(dir: &Path) -> Result<Vec<(String, ResultsFile)>> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(files);
    };
    let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    names.sort();
    for d in names {
        let path = d.join("results.json");
        if path.exists() {
            let name = d
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into());
            files.push((name, ResultsFile::load(&path)?));
        }
    }
    Ok(files)
}

/// Writes `dir/device-report.md` from a device check's folder and returns its
/// text. `anchor` overrides `dir/torch_gpu.jsonl` (the report then says the
/// vendor numbers come from another call).
pub fn render(dir: &Path, anchor: Option<&Path>) -> Result<String> {
    // A check cut short still has its log; a folder with none of these is
    // not a check's, and gets no report of "not measured" everywhere.
    const MARKS: [&str; 6] = [
        "log.txt",
        "results",
        "devices.json",
        "torch_gpu.jsonl",
        "coop.jsonl",
        "gather.jsonl",
    ];
    if !MARKS.iter().any(|m| dir.join(m).exists()) {
        return Err(LabError::invalid(
            "device-report",
            &dir.display().to_string(),
            &format!(
                "holds nothing a device check writes ({}): give the folder scripts/device-check filled",
                MARKS.join(", ")
            ),
        ));
    }
    let files = load_results(&dir.join("results"))?;
    let own = dir.join("torch_gpu.jsonl");
    let (vendor_path, same_call) = match anchor {
        Some(a) => (a.to_path_buf(), false),
        None => (own, true),
    };
    let vendor = match std::fs::read_to_string(&vendor_path) {
        Ok(t) => Vendor::parse(&t, &vendor_path.display().to_string())?,
        Err(_) => Vendor::default(),
    };
    let mut md = String::new();
    let _ = writeln!(md, "# Device check\n");
    let gpu = files
        .iter()
        .find_map(|(_, f)| f.environment.gpu.clone())
        .map_or("no GPU".to_string(), |g| {
            format!(
                "{} ({}, {}, driver {})",
                g.name, g.api, g.device_type, g.driver
            )
        });
    let cpu = files.first().map_or("?".to_string(), |(_, f)| {
        format!("{} ({} cores)", f.environment.cpu.name, f.environment.cores)
    });
    let _ = writeln!(md, "- GPU: {gpu}\n- CPU: {cpu}");
    if let Ok(smi) = std::fs::read_to_string(dir.join("nvidia-smi.csv")) {
        let _ = writeln!(
            md,
            "- nvidia-smi before the check: `{}`",
            smi.lines().nth(1).unwrap_or("").trim()
        );
    }
    if !vendor.header.is_empty() {
        let from = if same_call {
            "same call, same card".to_string()
        } else {
            format!(
                "**another call** ({}): the ratios hold only as far as the two cards are alike",
                vendor_path.display()
            )
        };
        let _ = writeln!(md, "- vendor anchor: {} — {from}", vendor.header);
    }
    launch_costs(&mut md, dir, &vendor);

    let coop = std::fs::read_to_string(dir.join("coop.jsonl")).map(|t| bench_lines(&t));
    // `embedding-largest.jsonl`: the step's file in checks before it was named gather.
    let gathers = ["gather.jsonl", "embedding-largest.jsonl"]
        .into_iter()
        .find_map(|f| {
            let text = std::fs::read_to_string(dir.join(f)).ok()?;
            Some((f, bench_lines(&text).0))
        });
    let mut rows = rows(&files, &vendor);
    if let Ok((forced, _)) = &coop {
        rows.extend(forced.iter().filter_map(|r| row(FORCED_COOP, r, &vendor)));
    }
    let _ = writeln!(
        md,
        "\n## Targets\n\n| target | measured | met |\n|---|---|---|"
    );
    for v in verdicts(&files, &rows, &vendor) {
        let met = match v.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        let _ = writeln!(md, "| {} | {} | {met} |", v.target, v.measured);
    }
    if !rows.is_empty() {
        let _ = writeln!(
            md,
            "\n## kernel-lab beside the vendor library\n\nMedians; kernel-lab's are device time between pass timestamps, the vendor's CUDA events around each call. Ratio = vendor ms / kernel-lab ms (1.0 = as fast; above 1, kernel-lab is faster). Below ~50 us the vendor's events also hold the gap while PyTorch launches the kernel from Python, which pass timestamps leave out: small points flatter kernel-lab.\n\n| run | point | kernel-lab kernel | kernel-lab ms | vendor ms | ratio | kernel-lab | vendor |\n|---|---|---|---:|---:|---:|---:|---:|"
        );
        for r in &rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.4} | {:.4} | {:.3} | {} | {} |",
                r.file,
                r.key,
                r.kernel,
                r.ours_ms,
                r.vendor_ms,
                r.ratio,
                r.ours_rate,
                r.vendor_rate
            );
        }
    }
    shader_checks(&mut md, &files);
    if let Ok((forced, refused)) = &coop {
        forced_coop(&mut md, forced, refused, &vendor);
    }
    if let Some((file, g)) = &gathers {
        gather_twins(&mut md, file, g, vendor.best_copy_gbps());
    }
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    if let Some(t) = super::clock_log::render(&read("gather.times"), &read("nvidia-smi-log.csv")) {
        md.push_str(&t);
    }
    tuning(&mut md, &files);
    cold_and_energy(&mut md, &files);
    doubts(&mut md, &files);
    std::fs::write(dir.join("device-report.md"), &md).map_err(|source| LabError::Io {
        path: dir.join("device-report.md"),
        source,
    })?;
    Ok(md)
}

/// Each coop configuration the coop step forced: its time beside the
/// vendor's on the same point, or why it did not run.
fn forced_coop(md: &mut String, forced: &[Record], refused: &[(String, String)], vendor: &Vendor) {
    let _ = writeln!(
        md,
        "\n## Cooperative-matrix configurations, forced (`coop.jsonl`)\n\nEach configuration on the same point, verified before it is timed.\n\n| configuration | point | verified | median ms | GFLOP/s | of the vendor | note |\n|---|---|---|---:|---:|---:|---|"
    );
    for r in forced {
        let name = r.kernel.split_whitespace().next().unwrap_or("?");
        let (ms, rate) = r.measured.as_ref().map_or(("—".into(), "—".into()), |m| {
            (
                format!("{:.3}", m.latency_ms.p50),
                format!("{:.0}", m.gflops),
            )
        });
        let share = row(FORCED_COOP, r, vendor).map_or("—".to_string(), |row| {
            format!("{:.1}%", row.ratio * 100.0)
        });
        let note = r.skipped.as_ref().map_or(String::new(), |s| s.to_string());
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {ms} | {rate} | {share} | {note} |",
            record_key(r),
            if r.verified { "yes" } else { "no" }
        );
    }
    for (name, why) in refused {
        let _ = writeln!(md, "| {name} | — | — | — | — | — | {why} |");
    }
}

/// The largest gathers beside gathers that move the same bytes another way,
/// with each one's first call, warm-up and cache mode and the SM clock over
/// its samples: what tells a slow kernel from a slow card.
fn gather_twins(md: &mut String, file: &str, gathers: &[Record], copy: Option<f64>) {
    let _ = writeln!(
        md,
        "\n## Gathers beside same-bytes twins (`{file}`)\n\nThe first call, the median of the timed samples (device timestamps), and the energy window's calls run back to back (host wall time over at least 300 ms, where the card has an energy counter): three views of one kernel on one point.\n\n| point | vocab | dist | verified | first call ms | warm-up, caches | median ms | back to back, ms a call | GB/s | of the device copy | SM clock over the samples, MHz |\n|---|---:|---|---|---:|---|---:|---:|---:|---:|---|"
    );
    for r in gathers {
        let Some(m) = &r.measured else { continue };
        let back_to_back = m
            .energy
            .as_ref()
            .filter(|e| e.runs > 0)
            .map_or("—".to_string(), |e| {
                format!("{:.4}", e.window_s * 1e3 / e.runs as f64)
            });
        let share = copy.map_or("—".to_string(), |c| format!("{:.0}%", m.gbps / c * 100.0));
        let clocks = m.sm_clock_mhz.map_or("—".to_string(), |c| {
            let max = c.card_max.map_or(String::new(), |x| format!(" of {x}"));
            let lift = c
                .lifted_ms
                .map_or(String::new(), |ms| format!(", lifted {ms:.0} ms first"));
            format!(
                "{}-{}{max} (first {}, last {}{lift})",
                c.min, c.max, c.first, c.last
            )
        });
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.4} | {} runs, {} | {:.4} | {back_to_back} | {:.0} | {share} | {clocks} |",
            record_key(r),
            r.id
                .axis("vocab")
                .map_or_else(|| "-".to_string(), |v| v.to_string()),
            r.id.dist.name(),
            if r.verified { "yes" } else { "no" },
            m.first_run_ms,
            m.warmup_runs,
            if m.cold_cache { "flushed" } else { "warm" },
            m.latency_ms.p50,
            m.gbps
        );
    }
}

fn launch_costs(md: &mut String, dir: &Path, vendor: &Vendor) {
    let Ok(text) = std::fs::read_to_string(dir.join("devices.json")) else {
        return;
    };
    let Ok(j) = serde_json::from_str::<Value>(&text) else {
        return;
    };
    for which in ["gpu", "cpu"] {
        let Some(c) = j.pointer(&format!("/ceilings/{which}")) else {
            continue;
        };
        let f = |k: &str| c.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let _ = writeln!(
            md,
            "- {which} ceilings (`devices --probe`): copy {:.0} GB/s, FP32 FMA {:.0} GFLOP/s",
            f("copy_gbps"),
            f("fma_gflops")
        );
        if let Some(k) = c.get("coop") {
            let g = |key: &str| k.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
            // The vendor's HGEMM on the target's square, where the anchor ran it.
            let hgemm = vendor
                .points
                .get(&square_key("f16"))
                .and_then(|p| p.gflops)
                .map_or(String::new(), |h| {
                    format!(
                        " ({:.0}% and {:.0}% of cuBLAS HGEMM's {h:.0} GFLOP/s at 4096^3)",
                        g("gflops") / h * 100.0,
                        g("lds_gflops") / h * 100.0
                    )
                });
            let _ = writeln!(
                md,
                "- {which} cooperative matrices (`devices --probe`, {}x{0} f16 -> f32 fragments): {:.0} GFLOP/s with the operands in registers, {:.0} GFLOP/s reloading them from workgroup memory every step{hgemm}: the most the coop matmul can reach through wgpu here",
                g("fragment"),
                g("gflops"),
                g("lds_gflops")
            );
        }
        if let Some(d) = c.get("dispatch") {
            let g = |k: &str| d.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
            let _ = writeln!(
                md,
                "- {which} launch costs: empty dispatch {:.1} us, each of 100 dispatches in one pass {:.2} us, submission round trip {:.1} us, readback round trip {:.1} us",
                g("empty_dispatch_us"),
                g("per_dispatch_in_pass_us"),
                g("submit_round_trip_us"),
                g("readback_round_trip_us")
            );
        }
    }
}

fn shader_checks(md: &mut String, files: &[(String, ResultsFile)]) {
    let checks: Vec<&(String, ResultsFile)> = files
        .iter()
        .filter(|(n, _)| n.starts_with("shader-checks-"))
        .collect();
    if checks.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## What wgpu's shader checks cost\n\nThe same points, tuned afresh under each setting (`--shader-checks`), in this call.\n\n| setting | point | kernel | ms | GFLOP/s |\n|---|---|---|---:|---:|"
    );
    for (name, f) in checks {
        for r in &f.records {
            if let Some(m) = &r.measured {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.3} | {:.0} |",
                    name.trim_start_matches("shader-checks-"),
                    record_key(r),
                    r.kernel,
                    m.latency_ms.p50,
                    m.gflops
                );
            }
        }
    }
}

/// The fastest cooperative-matrix candidate among `by` (sorted fastest
/// first), named with its time: the coop kernel's best showing in a tuning,
/// whichever of its configurations that was.
fn fastest_coop(by: &[(&String, &f64)]) -> String {
    by.iter()
        .find(|(n, _)| n.starts_with("coop"))
        .map_or("—".to_string(), |(n, ms)| format!("{n} {ms:.3}"))
}

/// What the autotuner measured, per run, storage mode and shape class: the
/// choice, the runner-up, the fastest cooperative-matrix configuration where
/// it ran, and what compiling the choice cost.
fn tuning(md: &mut String, files: &[(String, ResultsFile)]) {
    let _ = writeln!(
        md,
        "\n## Autotuning\n\nMedian ms of each candidate on the class's tuning shape (every candidate verified first).\n\n| run | storage | class | chosen | ms | runner-up | fastest coop | compile ms (chosen) | rejected |\n|---|---|---|---|---:|---|---|---:|---|"
    );
    for (name, f) in files {
        for t in &f.environment.autotuning {
            let mut by: Vec<(&String, &f64)> = t.median_ms.iter().collect();
            by.sort_by(|a, b| a.1.total_cmp(b.1));
            let runner = by
                .iter()
                .find(|(n, _)| **n != t.chosen)
                .map_or("—".to_string(), |(n, ms)| format!("{n} {ms:.3}"));
            let coop = fastest_coop(&by);
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} | {runner} | {coop} | {} | {} |",
                t.storage,
                t.shape_class,
                t.chosen,
                t.median_ms
                    .get(&t.chosen)
                    .map_or("—".into(), |ms| format!("{ms:.3}")),
                t.compile_ms
                    .get(&t.chosen)
                    .map_or("—".into(), |ms| format!("{ms:.1}")),
                if t.rejected.is_empty() {
                    "none".to_string()
                } else {
                    t.rejected.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            );
        }
    }
}

fn cold_and_energy(md: &mut String, files: &[(String, ResultsFile)]) {
    let _ = writeln!(
        md,
        "\n## Cold start, compile and energy (GPU points)\n\n| run | point | first run ms | compile ms | median ms | avg W | GFLOP/J | GB/J |\n|---|---|---:|---:|---:|---:|---:|---:|"
    );
    for (name, f) in files {
        for r in f
            .records
            .iter()
            .filter(|r| r.id.backend == BackendKind::Gpu)
        {
            let Some(m) = &r.measured else { continue };
            let e = m.energy.as_ref();
            let opt =
                |v: Option<f64>, p: usize| v.map_or("—".to_string(), |v| format!("{v:.p$}"));
            let _ = writeln!(
                md,
                "| {name} | {} | {:.3} | {} | {:.4} | {} | {} | {} |",
                record_key(r),
                m.first_run_ms,
                opt(m.compile_ms, 1),
                m.latency_ms.p50,
                opt(e.map(|e| e.avg_power_w), 0),
                opt(e.and_then(|e| e.gflop_per_j), 1),
                opt(e.map(|e| e.gb_per_j), 2),
            );
        }
    }
}

fn doubts(md: &mut String, files: &[(String, ResultsFile)]) {
    let _ = writeln!(md, "\n## What could make a number doubtful\n");
    let mut any = false;
    for (name, f) in files {
        let fallbacks: u32 = f
            .records
            .iter()
            .filter_map(|r| r.measured.as_ref())
            .flat_map(|m| m.timestamp_fallbacks.values())
            .sum();
        if fallbacks > 0 {
            any = true;
            let _ = writeln!(
                md,
                "- {name}: {fallbacks} sample(s) fell back from device timestamps to wall time"
            );
        }
        for w in &f.environment.machine_warnings {
            any = true;
            let _ = writeln!(md, "- {name}: {w}");
        }
        let slow = crate::report::analysis::slow_clock_points(&f.records);
        if let Some((_, lowest)) = slow.first() {
            let lowest = lowest.min;
            any = true;
            let _ = writeln!(
                md,
                "- {name}: {} point(s) sampled with the SM clock under {:.0}% of the card's maximum (lowest reading {lowest} MHz; each record's warnings say which)",
                slow.len(),
                crate::sample_clocks::SLOW_CLOCK_SHARE * 100.0
            );
        }
        if !f.complete {
            any = true;
            let _ = writeln!(md, "- {name}: incomplete (stopped at its share of the budget; resume with `kernel-lab run --resume`)");
        }
    }
    if !any {
        // Claimed only where the clock was read (files before it was have none).
        let clocked = files.iter().flat_map(|(_, f)| &f.records).any(|r| {
            r.measured
                .as_ref()
                .is_some_and(|m| m.sm_clock_mhz.is_some())
        });
        let clock = if clocked { " no slow GPU clock," } else { "" };
        let _ = writeln!(md, "- nothing: every device timestamp was believable, no machine warning,{clock} every run complete");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::precision::Precision;
    use crate::report::testdata::synthetic;

    const JSONL: &str = r#"{"library": "torch 2.11.0+cu130", "cuda": "13.0", "device": "NVIDIA H100 80GB HBM3", "allow_tf32": false}
{"op": "copy", "bytes": 536870912, "p50_ms": 0.18, "gbps": 2872.8}
{"op": "copy", "bytes": 2147483648, "p50_ms": 0.72, "gbps": 2963.4}
{"op": "matmul", "precision": "f32", "batch": 1, "seq": 4096, "dim": 4096, "vocab": 32000, "out_dim": 4096, "p50_ms": 3.0, "gbps": 66.5, "gflops": 45408.0}
{"op": "embedding", "precision": "f16", "batch": 8, "seq": 512, "dim": 128, "out_dim": 128, "skipped": "OutOfMemoryError: ..."}
"#;

    /// A folder no check wrote is refused and gets no report; one holding
    /// only the log of a check cut short still gets one.
    #[test]
    fn a_folder_without_a_checks_files_is_refused() {
        let dir = std::env::temp_dir().join(format!("kernel-lab-dr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        let err = render(&dir, None).unwrap_err().to_string();
        assert!(err.contains("holds nothing a device check writes"), "{err}");
        assert!(!dir.join("device-report.md").exists());
        std::fs::write(dir.join("log.txt"), "device-check: started\n").unwrap();
        let md = render(&dir, None).unwrap();
        assert!(md.contains("not measured"), "{md}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parses_the_anchor_lines() {
        let v = Vendor::parse(JSONL, "t").expect("parses");
        assert!(
            v.header.contains("torch 2.11.0") && v.header.contains("H100"),
            "{}",
            v.header
        );
        assert_eq!(v.best_copy_gbps(), Some(2963.4));
        // A second anchor run's slower copy of the same size does not replace it.
        let twice = format!("{JSONL}{{\"op\": \"copy\", \"bytes\": 2147483648, \"p50_ms\": 0.8, \"gbps\": 2700.0}}\n");
        assert_eq!(
            Vendor::parse(&twice, "t").unwrap().best_copy_gbps(),
            Some(2963.4)
        );
        assert_eq!(v.points.len(), 1, "the skipped point is left out");
        let p = &v.points[&key("matmul", "f32", 1, 4096, 4096, 4096)];
        assert_eq!(p.p50_ms, 3.0);
        assert_eq!(p.gflops, Some(45408.0));
        let err = Vendor::parse("{\"op\": 1}\nnot json\n", "torch_gpu.jsonl").unwrap_err();
        assert!(
            err.to_string().contains("torch_gpu.jsonl") && err.to_string().contains("line 2"),
            "{err}"
        );
    }

    fn row(file: &str, prec: &str, ratio: f64, kernel: &str) -> Row {
        Row {
            file: file.into(),
            key: key("matmul", prec, 1, 4096, 4096, 4096),
            kernel: kernel.into(),
            ours_ms: 1.0,
            vendor_ms: ratio,
            ratio,
            ours_rate: String::new(),
            vendor_rate: String::new(),
        }
    }

    fn gathers(gbps: &[(u32, Precision, f64)]) -> Vec<(String, ResultsFile)> {
        use crate::backend::cpu::CpuBackend;
        use crate::backend::Backend;
        let records = gbps
            .iter()
            .map(|&(d, p, g)| {
                let mut r = synthetic("embedding", "gpu", p, 8, 512, d, 0.01);
                r.measured.as_mut().unwrap().gbps = g;
                r
            })
            .collect();
        let env = crate::results::Environment::capture(None, CpuBackend::new().device().clone());
        let file = ResultsFile {
            schema_version: crate::results::SCHEMA_VERSION,
            spec: Value::Null,
            environment: env,
            complete: true,
            records,
            anchors: None,
        };
        vec![("device-gpu".to_string(), file)]
    }

    /// A bench record and the script's refusal line for a configuration bench
    /// printed no record for are told apart; blank lines are nothing.
    #[test]
    fn bench_lines_are_records_or_refusals() {
        let f = gathers(&[(1024, Precision::F16, 2900.0)]);
        let rec = serde_json::to_string(&f[0].1.records[0]).unwrap();
        let text = format!(
            "{rec}\n\n{{\"matmul_variant\": \"coop-64x64x32-2x2\", \"refused\": \"error: no adapter\"}}\n"
        );
        let (records, refused) = bench_lines(&text);
        assert_eq!(records, vec![f[0].1.records[0].clone()]);
        assert_eq!(
            refused,
            vec![(
                "coop-64x64x32-2x2".to_string(),
                "error: no adapter".to_string()
            )]
        );
    }

    #[test]
    fn targets_are_judged_on_the_defaults_and_the_largest_gathers() {
        let vendor = Vendor::parse(JSONL, "t").unwrap();
        let rows = [
            row("device-square", "f32", 0.57, "wgsl-tiled-64x64x16-4x4 f32"),
            // A shader-check comparison may be faster; it is not the lab's default.
            row(
                "shader-checks-none",
                "f32",
                0.9,
                "wgsl-tiled-64x64x16-4x4 trusted f32",
            ),
            row("device-square", "f16", 0.036, "wgsl-tiled-64x64x16-4x4 f16"),
        ];
        // The largest gather is D1024: its slower precision (2400 GB/s) is judged,
        // not the faster one nor the small point that fits in cache.
        let files = gathers(&[
            (128, Precision::F32, 3400.0),
            (1024, Precision::F32, 2400.0),
            (1024, Precision::F16, 2900.0),
        ]);
        let v = verdicts(&files, &rows, &vendor);
        assert_eq!(v[0].met, Some(true));
        assert_eq!(v[0].measured, "57%");
        assert_eq!(v[1].met, Some(true), "{:?}", v[1]);
        assert!(v[1].measured.starts_with("81% of 2963"), "{:?}", v[1]);
        assert_eq!(v[2].met, Some(false));
        assert!(v[2].measured.contains("non-cooperative"), "{:?}", v[2]);

        // A coop configuration forced by the coop step counts when it is the fastest.
        let mut forced = rows.to_vec();
        forced.push(row(
            FORCED_COOP,
            "f16",
            0.05,
            "wgsl-coop-128x128x32-2x2 vec4-loads f16",
        ));
        let v16 = &verdicts(&files, &forced, &vendor)[2];
        assert_eq!(v16.met, Some(false));
        assert!(
            v16.measured
                .starts_with("5.0% (wgsl-coop-128x128x32-2x2, forced by the coop step"),
            "{v16:?}"
        );
        forced.push(row(FORCED_COOP, "f16", 0.3, "wgsl-coop-64x64x32-2x2 f16"));
        assert_eq!(verdicts(&files, &forced, &vendor)[2].met, Some(true));

        let slow = gathers(&[(1024, Precision::F32, 2000.0)]);
        assert_eq!(verdicts(&slow, &rows[..1], &vendor)[1].met, Some(false));
        let none = verdicts(&[], &[], &Vendor::default());
        assert!(
            none.iter()
                .all(|v| v.met.is_none() && v.measured == "not measured"),
            "{none:?}"
        );
    }

    /// A point sampled on a slow card is named among the doubts, and the
    /// gather table shows each twin's first call, warm-up and clocks.
    /// Planted: the doubts' clock check dropped -> "nothing" -> fails.
    #[test]
    fn slow_clocks_are_doubts_and_the_gather_table_shows_them() {
        use crate::sample_clocks::SampleClocks;
        let mut files = gathers(&[
            (1024, Precision::F16, 1300.0),
            (512, Precision::F32, 3700.0),
        ]);
        let recs = &mut files[0].1.records;
        let clocks = [[1980, 345, 1410], [1980, 1965, 1980]];
        for (r, c) in recs.iter_mut().zip(clocks) {
            r.measured.as_mut().unwrap().sm_clock_mhz = SampleClocks::from_readings(&c, Some(1980));
        }
        let mut md = String::new();
        doubts(&mut md, &files);
        assert!(
            md.contains("device-gpu: 1 point(s) sampled with the SM clock under 80%")
                && md.contains("lowest reading 345 MHz"),
            "{md}"
        );
        assert!(!md.contains("- nothing"), "{md}");
        // The energy window's back-to-back calls: 4302 in 0.3162 s.
        files[0].1.records[0].measured.as_mut().unwrap().energy = Some(crate::energy::Energy {
            window_s: 0.3162,
            runs: 4302,
            joules: 136.5,
            joules_per_run: 0.0317,
            avg_power_w: 431.7,
            gflop_per_j: None,
            gb_per_j: 8.5,
            sm_clock_mhz: Some(1980),
            temperature_c: Some(47),
            throttling: Vec::new(),
        });
        let mut md = String::new();
        gather_twins(&mut md, "gather.jsonl", &files[0].1.records, Some(4200.0));
        assert!(md.contains("| 0.0735 |"), "back to back: {md}");
        assert!(
            md.matches("| — | ").count() >= 1,
            "no window, no number: {md}"
        );
        assert!(
            md.contains("345-1980 of 1980 (first 1980, last 1410)"),
            "{md}"
        );
        files[0].1.records[0]
            .measured
            .as_mut()
            .unwrap()
            .sm_clock_mhz = Some(SampleClocks {
            lifted_ms: Some(87.4),
            ..SampleClocks::from_readings(&[1650, 1980], Some(1980)).unwrap()
        });
        let mut md = String::new();
        gather_twins(&mut md, "gather.jsonl", &files[0].1.records, None);
        assert!(
            md.contains("(first 1650, last 1980, lifted 87 ms first)"),
            "{md}"
        );
        let mut quiet = gathers(&[(512, Precision::F32, 3700.0)]);
        quiet[0].1.records[0]
            .measured
            .as_mut()
            .unwrap()
            .sm_clock_mhz = SampleClocks::from_readings(&[1980], Some(1980));
        let mut md = String::new();
        doubts(&mut md, &quiet);
        assert!(
            md.contains("- nothing") && md.contains("no slow GPU clock"),
            "{md}"
        );
        // Where no clock was read, none is claimed.
        let mut md = String::new();
        doubts(&mut md, &gathers(&[(512, Precision::F32, 3700.0)]));
        assert!(md.contains("- nothing") && !md.contains("clock"), "{md}");
    }

    /// The coop ceiling from `devices.json` is stated beside the launch costs.
    /// Planted: the coop line dropped -> fails.
    #[test]
    fn the_coop_ceiling_is_reported() {
        let dir = std::env::temp_dir().join(format!("kl-coop-ceiling-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let devices = r#"{"ceilings": {"gpu": {"copy_gbps": 3900.0, "fma_gflops": 51000.0, "method": "m",
            "coop": {"fragment": 16, "gflops": 412345.0, "lds_gflops": 201234.0, "method": "m"}}}}"#;
        std::fs::write(dir.join("devices.json"), devices).unwrap();
        let mut md = String::new();
        launch_costs(&mut md, &dir, &Vendor::default());
        assert!(
            md.contains("16x16 f16 -> f32 fragments): 412345 GFLOP/s with the operands in registers, 201234 GFLOP/s reloading them from workgroup memory every step: the most"),
            "{md}"
        );
        let hgemm = 721479.0;
        let text = format!(
            "{JSONL}{{\"op\": \"matmul\", \"precision\": \"f16\", \"batch\": 1, \"seq\": 4096, \"dim\": 4096, \"out_dim\": 4096, \"p50_ms\": 0.1905, \"gbps\": 528.0, \"gflops\": {hgemm}}}\n"
        );
        let vendor = Vendor::parse(&text, "test").unwrap();
        let mut md = String::new();
        launch_costs(&mut md, &dir, &vendor);
        std::fs::remove_dir_all(&dir).unwrap();
        let want = format!(
            "({:.0}% and {:.0}% of cuBLAS HGEMM's {hgemm:.0} GFLOP/s at 4096^3)",
            412345.0 / hgemm * 100.0,
            201234.0 / hgemm * 100.0
        );
        assert!(md.contains(&want), "{want} in {md}");
    }

    #[test]
    fn the_tuning_table_names_the_fastest_coop_configuration() {
        let times = [
            ("coop-128x128x32-2x2".to_string(), 1.49),
            ("coop-128x128x32-2x2-direct".to_string(), 0.61),
            ("tiled-64x64x16-4x4".to_string(), 0.68),
        ];
        let mut by: Vec<(&String, &f64)> = times.iter().map(|(n, t)| (n, t)).collect();
        by.sort_by(|a, b| a.1.total_cmp(b.1));
        assert_eq!(super::fastest_coop(&by), "coop-128x128x32-2x2-direct 0.610");
        assert_eq!(super::fastest_coop(&by[1..2]), "—", "no coop among them");
    }
}

//! `kernel-lab compare <a.json> <b.json>`: the points both files measured, side
//! by side, with the ratio of medians and a Mann-Whitney verdict from the raw
//! samples. Exits 1 when a point of `b` is slower than `a` beyond the threshold
//! and the difference is significant, so CI can gate on it; 3 when some point
//! has too few samples for the test to reach significance at all (it says
//! "inconclusive", never "same"). Warns when the two runs' machines or builds
//! differ (cores, CPU, GPU, build, probed ceilings). `--json` prints the same
//! as one document for programs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use kernel_lab::results::{Measured, PointId, Record, ResultsFile};
use kernel_lab::stats::mann_whitney_p;

/// Arguments of `compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The baseline results.json.
    a: PathBuf,
    /// The candidate results.json.
    b: PathBuf,
    /// Relative slowdown of the median that counts as a regression.
    #[arg(long, default_value_t = 0.05, value_parser = super::common::non_negative)]
    threshold: f64,
    /// Significance level of the Mann-Whitney test.
    #[arg(long, default_value_t = 0.01, value_parser = super::common::fraction)]
    alpha: f64,
    /// Print one JSON document (every matched point with its verdict, the
    /// counts, the machine warnings) instead of the table; same exit codes.
    #[arg(long)]
    json: bool,
}

/// One matched point: both medians, their ratio, the test's p and the verdict.
struct Row<'a> {
    record: &'a Record,
    a_p50_ms: f64,
    b_p50_ms: f64,
    ratio: f64,
    p: f64,
    verdict: Verdict,
    /// The sides ("a", "b") whose samples ran on a slow GPU clock.
    slow_clock: Vec<&'static str>,
}

/// The sides of a matched point whose samples ran with the GPU's clock under
/// its warning share (`sample_clocks`): a verdict there may be the card's.
fn slow_clock_sides(a: &Measured, b: &Measured) -> Vec<&'static str> {
    [("a", a), ("b", b)]
        .into_iter()
        .filter(|(_, m)| m.sm_clock_mhz.is_some_and(|c| c.is_slow()))
        .map(|(side, _)| side)
        .collect()
}

/// What the test says of one point.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Too few samples for any difference to reach significance.
    Inconclusive,
    Slower,
    Faster,
    Same,
}

impl Verdict {
    /// Its word in JSON, and the table's first word.
    fn name(self) -> &'static str {
        match self {
            Verdict::Inconclusive => "inconclusive",
            Verdict::Slower => "SLOWER",
            Verdict::Faster => "faster",
            Verdict::Same => "same",
        }
    }

    /// Its words in the table.
    fn words(self) -> &'static str {
        match self {
            Verdict::Inconclusive => "inconclusive (n too small)",
            v => v.name(),
        }
    }
}

/// A point measured on the same device: only those are compared.
type Key<'a> = (PointId, &'a str);

fn key(r: &Record) -> Key<'_> {
    (r.id, r.adapter.as_str())
}

pub fn run(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let a = ResultsFile::load(&args.a)?;
    let b = ResultsFile::load(&args.b)?;
    let base: BTreeMap<Key, &Record> = a
        .records
        .iter()
        .filter(|r| r.measured.is_some())
        .map(|r| (key(r), r))
        .collect();
    let warnings = environment_differences(&a, &b);
    for w in &warnings {
        eprintln!("warning: {w}; a difference may be the machine's, not the code's");
    }
    let mut rows = Vec::new();
    for r in b.records.iter().filter(|r| r.measured.is_some()) {
        let Some(old) = base.get(&key(r)) else {
            continue;
        };
        let (ma, mb) = (
            old.measured.as_ref().expect("filtered"),
            r.measured.as_ref().expect("filtered"),
        );
        let ratio = mb.latency_ms.p50 / ma.latency_ms.p50;
        let sa: Vec<f64> = ma.raw_ns.iter().map(|&v| v as f64).collect();
        let sb: Vec<f64> = mb.raw_ns.iter().map(|&v| v as f64).collect();
        let p = mann_whitney_p(&sa, &sb);
        let significant = p < args.alpha;
        let verdict = if !can_reach(sa.len(), sb.len(), args.alpha) {
            Verdict::Inconclusive
        } else if significant && ratio > 1.0 + args.threshold {
            Verdict::Slower
        } else if significant && ratio < 1.0 - args.threshold {
            Verdict::Faster
        } else {
            Verdict::Same
        };
        rows.push(Row {
            record: r,
            a_p50_ms: ma.latency_ms.p50,
            b_p50_ms: mb.latency_ms.p50,
            ratio,
            p,
            verdict,
            slow_clock: slow_clock_sides(ma, mb),
        });
    }
    let matched = rows.len();
    let count = |v: Verdict| rows.iter().filter(|r| r.verdict == v).count();
    let (regressions, inconclusive) = (count(Verdict::Slower), count(Verdict::Inconclusive));
    let slow_clock = rows.iter().filter(|r| !r.slow_clock.is_empty()).count();
    if args.json {
        let points: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| {
                let mut v = serde_json::to_value(row.record.id).expect("an id serialises");
                let o = v.as_object_mut().expect("an id is an object");
                o.insert("layer".into(), row.record.layer.clone().into());
                o.insert("adapter".into(), row.record.adapter.clone().into());
                o.insert("a_p50_ms".into(), finite(row.a_p50_ms));
                o.insert("b_p50_ms".into(), finite(row.b_p50_ms));
                o.insert("ratio".into(), finite(row.ratio));
                o.insert("p".into(), finite(row.p));
                o.insert("verdict".into(), row.verdict.name().into());
                o.insert("slow_gpu_clock".into(), row.slow_clock.clone().into());
                v
            })
            .collect();
        let doc = serde_json::json!({
            "a": args.a.display().to_string(),
            "b": args.b.display().to_string(),
            "threshold": args.threshold,
            "alpha": args.alpha,
            "matched": matched,
            "regressions": regressions,
            "inconclusive": inconclusive,
            "slow_gpu_clock": slow_clock,
            "warnings": warnings,
            "points": points,
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
    } else {
        println!(
            "{} {:>11} {:>11} {:>7} {:>9}  verdict",
            super::common::POINT_HEADER,
            "a p50 ms",
            "b p50 ms",
            "b/a",
            "p"
        );
        for row in &rows {
            println!(
                "{} {:>11.4} {:>11.4} {:>7.3} {:>9.2e}  {}",
                super::common::point_columns(row.record),
                row.a_p50_ms,
                row.b_p50_ms,
                row.ratio,
                row.p,
                row.verdict.words()
            );
            if !row.slow_clock.is_empty() {
                println!(
                    "    ^ sampled on a slow GPU clock in {}: this verdict may be the card's state, not the code's",
                    row.slow_clock.join(" and ")
                );
            }
        }
        println!("{matched} matching point(s), {regressions} slower than {:.0}% beyond the baseline (Mann-Whitney p < {})", args.threshold * 100.0, args.alpha);
        if slow_clock > 0 {
            println!("{slow_clock} point(s) sampled on a slow GPU clock in one file or both (marked ^): their verdicts may be the card's state, not the code's");
        }
    }
    if matched == 0 {
        anyhow::bail!(
            "no point of {} matches one of {}",
            args.b.display(),
            args.a.display()
        );
    }
    if inconclusive > 0 && !args.json {
        println!(
            "{inconclusive} point(s) inconclusive: too few samples for any difference to reach p < {} (take more samples; --quick gives 3-4)",
            args.alpha
        );
    }
    Ok(if regressions > 0 {
        ExitCode::from(1)
    } else if inconclusive > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// A number for JSON, or null where it is none (an edited file's zero median).
fn finite(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into)
}

/// Whether samples of these sizes can reach significance at `alpha` at all:
/// the smallest p the test gives is that of two samples that do not overlap.
fn can_reach(n1: usize, n2: usize, alpha: f64) -> bool {
    if n1 == 0 || n2 == 0 {
        return false;
    }
    let a: Vec<f64> = (0..n1).map(|i| i as f64).collect();
    let b: Vec<f64> = (n1..n1 + n2).map(|i| i as f64).collect();
    mann_whitney_p(&a, &b) < alpha
}

/// What differs between the machines or builds of two results files.
fn environment_differences(a: &ResultsFile, b: &ResultsFile) -> Vec<String> {
    let (ea, eb) = (&a.environment, &b.environment);
    let mut w = Vec::new();
    if ea.cores != eb.cores {
        w.push(format!("the runs had {} and {} cores", ea.cores, eb.cores));
    }
    if ea.cpu.name != eb.cpu.name {
        w.push(format!(
            "the CPUs differ ({} / {})",
            ea.cpu.name, eb.cpu.name
        ));
    }
    let gpu = |e: &kernel_lab::results::Environment| e.gpu.as_ref().map(|g| g.name.clone());
    if gpu(ea) != gpu(eb) {
        w.push(format!("the GPUs differ ({:?} / {:?})", gpu(ea), gpu(eb)));
    }
    if (&ea.crate_version, &ea.git_commit) != (&eb.crate_version, &eb.git_commit) {
        w.push(format!(
            "the builds differ ({} {:?} / {} {:?})",
            ea.crate_version, ea.git_commit, eb.crate_version, eb.git_commit
        ));
    }
    for (kind, ca) in &ea.ceilings {
        if let Some(cb) = eb.ceilings.get(kind) {
            for (what, x, y) in [
                ("copy bandwidth", ca.copy_gbps, cb.copy_gbps),
                ("FMA peak", ca.fma_gflops, cb.fma_gflops),
            ] {
                if x > 0.0 && y > 0.0 && (y / x - 1.0).abs() > 0.10 {
                    w.push(format!(
                        "the probed {kind} {what} differs by {:+.0}% ({x:.1} / {y:.1})",
                        (y / x - 1.0) * 100.0
                    ));
                }
            }
        }
    }
    w
}

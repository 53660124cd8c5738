//! `kernel-lab compare <a.json> <b.json>`: the points both files measured, side
//! by side, with the ratio of medians and a Mann-Whitney verdict from the raw
//! samples. Exits 1 when a point of `b` is slower than `a` beyond the threshold
//! and the difference is significant, so CI can gate on it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use kernel_lab::results::{PointId, Record, ResultsFile};
use kernel_lab::stats::mann_whitney_p;

/// Arguments of `compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The baseline results.json.
    a: PathBuf,
    /// The candidate results.json.
    b: PathBuf,
    /// Relative slowdown of the median that counts as a regression.
    #[arg(long, default_value_t = 0.05, value_parser = super::non_negative)]
    threshold: f64,
    /// Significance level of the Mann-Whitney test.
    #[arg(long, default_value_t = 0.01, value_parser = super::fraction)]
    alpha: f64,
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
    let mut regressions = 0;
    let mut matched = 0;
    println!(
        "{} {:>11} {:>11} {:>7} {:>9}  verdict",
        super::POINT_HEADER,
        "a p50 ms",
        "b p50 ms",
        "b/a",
        "p"
    );
    for r in b.records.iter().filter(|r| r.measured.is_some()) {
        let Some(old) = base.get(&key(r)) else {
            continue;
        };
        matched += 1;
        let (ma, mb) = (
            old.measured.as_ref().expect("filtered"),
            r.measured.as_ref().expect("filtered"),
        );
        let ratio = mb.latency_ms.p50 / ma.latency_ms.p50;
        let sa: Vec<f64> = ma.raw_ns.iter().map(|&v| v as f64).collect();
        let sb: Vec<f64> = mb.raw_ns.iter().map(|&v| v as f64).collect();
        let p = mann_whitney_p(&sa, &sb);
        let significant = p < args.alpha;
        let verdict = if significant && ratio > 1.0 + args.threshold {
            regressions += 1;
            "SLOWER"
        } else if significant && ratio < 1.0 - args.threshold {
            "faster"
        } else {
            "same"
        };
        println!(
            "{} {:>11.4} {:>11.4} {:>7.3} {:>9.2e}  {verdict}",
            super::point_columns(r),
            ma.latency_ms.p50,
            mb.latency_ms.p50,
            ratio,
            p
        );
    }
    println!("{matched} matching point(s), {regressions} slower than {:.0}% beyond the baseline (Mann-Whitney p < {})", args.threshold * 100.0, args.alpha);
    if matched == 0 {
        anyhow::bail!(
            "no point of {} matches one of {}",
            args.b.display(),
            args.a.display()
        );
    }
    Ok(if regressions > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

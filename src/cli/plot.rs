//! `kernel-lab plot <results.json>`: re-render the charts and report.md of a
//! results file, into its folder or `--out`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use kernel_lab::experiment::{ChartKind, Spec};
use kernel_lab::report;
use kernel_lab::results::ResultsFile;

/// Arguments of `plot`.
#[derive(Args, Debug)]
pub struct PlotArgs {
    /// A results.json written by `run`.
    results: PathBuf,
    /// Where to write the charts and report (default: beside the results).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Draw only these charts (comma-separated: seed, latency-distribution,
    /// gpu-vs-cpu, batching, precision, precision-cost, roofline); default:
    /// those the experiment names, else every one its data supports.
    #[arg(long, value_delimiter = ',', value_parser = parse_chart)]
    charts: Vec<ChartKind>,
}

/// Parses a chart's name as experiment files spell it.
fn parse_chart(s: &str) -> Result<ChartKind, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        "unknown chart; one of: seed, latency-distribution, gpu-vs-cpu, batching, precision, precision-cost, roofline".to_string()
    })
}

pub fn run(args: PlotArgs) -> anyhow::Result<ExitCode> {
    let results = ResultsFile::load(&args.results)?;
    let out = args
        .out
        .or_else(|| args.results.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&out).map_err(|source| kernel_lab::LabError::Io {
        path: out.clone(),
        source,
    })?;
    // The reports link to results.json beside them: a report written
    // elsewhere gets a copy (never over another run's file).
    let beside = out.join("results.json");
    let same = |a: &std::path::Path, b: &std::path::Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    if !beside.exists() {
        std::fs::copy(&args.results, &beside).map_err(|source| kernel_lab::LabError::Io {
            path: beside.clone(),
            source,
        })?;
    } else if !same(&beside, &args.results)
        && std::fs::read(&beside).ok() != std::fs::read(&args.results).ok()
    {
        eprintln!(
            "note: {} holds other results; the report's links to results.json point there, not to {}",
            beside.display(),
            args.results.display()
        );
    }
    let charts = if args.charts.is_empty() {
        serde_json::from_value::<Spec>(results.spec.clone())
            .map(|s| s.charts)
            .unwrap_or_default()
    } else {
        args.charts
    };
    let report = report::render(&results, &charts, &out)?;
    println!("report: {}", report.display());
    Ok(ExitCode::SUCCESS)
}

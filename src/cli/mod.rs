//! Command-line interface: the argument types (clap derive) and the dispatch
//! to one module per subcommand.

mod bench;
mod common;
mod compare;
mod devices;
mod list;
mod models;
mod ops;
mod output;
mod plot;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Measures what drives the cost of LLM inference ops (embedding lookup,
/// projection matmul) on a GPU through wgpu and on the CPU, verified against an
/// f64 reference.
#[derive(Parser, Debug)]
#[command(name = "kernel-lab", version, about)]
pub struct Cli {
    /// Without a command, runs the built-in default experiment on every usable
    /// backend and prints where its results, charts and report are.
    #[command(subcommand)]
    command: Option<Command>,
    /// CPU threads for the CPU backend, its ceilings and the anchor (default:
    /// RAYON_NUM_THREADS, else every core); reports record the count used.
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(1..=4096))]
    threads: Option<u32>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the GPU adapters wgpu can see, and the CPU.
    Devices(devices::DevicesArgs),
    /// Measure one point and print its record.
    Bench(bench::BenchArgs),
    /// Run an experiment file: results.json, SVG charts and report.md.
    Run(run::RunArgs),
    /// Re-render the charts and report of a results file.
    Plot(plot::PlotArgs),
    /// Compare two results files point by point; exit 1 on a significant slowdown.
    Compare(compare::CompareArgs),
    /// List the model presets and their layers' shapes.
    Models(models::ModelsArgs),
    /// List the ops, what each computes, and its parameters.
    Ops(ops::OpsArgs),
    /// List the experiment files: names, point counts, descriptions.
    List(list::ListArgs),
    /// Write the report of a device check's folder (scripts/device-check):
    /// kernel-lab beside the vendor library, targets, launch costs, energy.
    DeviceReport(DeviceReportArgs),
}

/// Arguments of `device-report`.
#[derive(clap::Args, Debug)]
pub struct DeviceReportArgs {
    /// The device check's folder (holds results/, devices.json, torch_gpu.jsonl).
    dir: std::path::PathBuf,
    /// The vendor timings to set beside kernel-lab's, when they come from
    /// another call (the report says so); default: the folder's torch_gpu.jsonl.
    #[arg(long)]
    anchor: Option<std::path::PathBuf>,
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n as usize)
            .build_global()
            .map_err(|e| anyhow::anyhow!("--threads {n}: {e}"))?;
    }
    match cli.command {
        None => run::run(run::RunArgs::default()),
        Some(Command::Devices(a)) => devices::run(a),
        Some(Command::Bench(a)) => bench::run(a),
        Some(Command::Run(a)) => run::run(a),
        Some(Command::Plot(a)) => plot::run(a),
        Some(Command::Compare(a)) => compare::run(a),
        Some(Command::Models(a)) => models::run(a),
        Some(Command::Ops(a)) => ops::run(a),
        Some(Command::List(a)) => list::run(a),
        Some(Command::DeviceReport(a)) => {
            let md = kernel_lab::report::device_check::render(&a.dir, a.anchor.as_deref())?;
            print!("{md}");
            eprintln!("report: {}", a.dir.join("device-report.md").display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

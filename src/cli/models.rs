//! `kernel-lab models`: the model presets (experiments/models.toml), each layer
//! with its op and sizes, and where the sizes come from.

use std::process::ExitCode;

use clap::Args;
use kernel_lab::models;
use kernel_lab::workload::Precision;

/// Arguments of `models`.
#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ModelsArgs) -> anyhow::Result<ExitCode> {
    let presets = models::presets();
    if args.json {
        println!("{}", serde_json::to_string_pretty(presets)?);
        return Ok(ExitCode::SUCCESS);
    }
    for m in presets {
        println!("{} ({} blocks)", m.name, m.blocks);
        println!("  {}", m.config);
        println!(
            "  {:<12} {:<9} {:>18} {:>8} {:>12} {:>12}",
            "layer", "op", "sizes", "per pass", "f16 weights", "GFLOP/token"
        );
        for l in &m.layers {
            let one = l.work(m, Precision::F16, 1, 1)?;
            let mem = one.memory_model();
            let bytes = mem.weights + mem.table;
            println!(
                "  {:<12} {:<9} {:>18} {:>8} {:>9.1} MiB {:>12.4}",
                l.layer,
                l.op.name(),
                l.sizes(),
                l.per_pass,
                bytes as f64 / 1048576.0,
                one.flops() as f64 / 1e9
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `kernel-lab models`: the model presets (experiments/models.toml), or the
//! models a file defines (`--models-from`), each layer with its op and sizes,
//! and where the sizes come from.

use std::process::ExitCode;

use clap::Args;
use kernel_lab::models;
use kernel_lab::precision::Precision;

/// Arguments of `models`.
#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// List the `[[model]]` tables of this TOML file (an experiment file, or a
    /// file of models alone), checked, instead of the presets.
    #[arg(long, value_name = "FILE")]
    models_from: Option<std::path::PathBuf>,
}

pub fn run(args: ModelsArgs) -> anyhow::Result<ExitCode> {
    let own;
    let listed = match &args.models_from {
        Some(path) => {
            own = models::load_own(path)?;
            own.as_slice()
        }
        None => models::presets(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(listed)?);
        return Ok(ExitCode::SUCCESS);
    }
    for m in listed {
        println!("{} ({} blocks)", m.name, m.blocks);
        println!("  {}", m.config);
        println!(
            "  {:<12} {:<9} {:>18} {:>8} {:>12} {:>12}",
            "layer", "op", "sizes", "per pass", "f16 weights", "GFLOP/token"
        );
        for l in &m.layers {
            let one = l.work(Precision::F16, 1, 1)?;
            let mem = one.memory_model();
            // The model's own data: a weight, a table.
            let bytes = mem.get("weights") + mem.get("table");
            println!(
                "  {:<12} {:<9} {:>18} {:>8} {:>9.1} MiB {:>12.4}",
                l.layer,
                l.op.name(),
                l.describe_sizes(),
                l.per_pass,
                bytes as f64 / 1048576.0,
                one.flops() as f64 / 1e9
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

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
        let mut all = Vec::new();
        for m in listed {
            let mut v = serde_json::to_value(m)?;
            v["kv_bytes_per_token"] = serde_json::json!({
                "f32": kv_bytes_per_token(m, Precision::F32)?,
                "f16": kv_bytes_per_token(m, Precision::F16)?,
            });
            all.push(v);
        }
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    for m in listed {
        println!("{} ({} blocks)", m.name, m.blocks);
        println!("  {}", m.config);
        let kv = kv_bytes_per_token(m, Precision::F16)?;
        if kv > 0 {
            println!(
                "  KV cache: {:.1} KiB a token in f16 ({:.2} GiB for a sequence of 8192 tokens)",
                kv as f64 / 1024.0,
                kv as f64 * 8192.0 / (1u64 << 30) as f64
            );
        }
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

/// KV-cache bytes one token adds to a sequence of model `m` at `precision`:
/// every layer's `kv-cache` memory at a context of one token, times its runs
/// per pass (0 for a model without attention layers).
fn kv_bytes_per_token(m: &models::Model, precision: Precision) -> anyhow::Result<u64> {
    let mut total = 0;
    for l in &m.layers {
        total += l.work(precision, 1, 1)?.memory_model().get("kv-cache") * l.per_pass as u64;
    }
    Ok(total)
}

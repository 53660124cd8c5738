//! `kernel-lab ops`: the ops the lab measures, what each computes, and its
//! parameters — each a spec axis, a `--set` axis and a `bench` flag — with
//! their defaults, and which the run sets rather than a model's layer.

use std::process::ExitCode;

use clap::Args;
use kernel_lab::ops::op::AxisKind;
use kernel_lab::ops::Op;

/// Arguments of `ops`.
#[derive(Args, Debug)]
pub struct OpsArgs {
    /// Print JSON instead of a listing.
    #[arg(long)]
    json: bool,
}

pub fn run(args: OpsArgs) -> anyhow::Result<ExitCode> {
    if args.json {
        let all: Vec<serde_json::Value> = Op::ALL
            .iter()
            .map(|op| {
                let params: Vec<serde_json::Value> = op
                    .axes()
                    .iter()
                    .map(|a| {
                        let (kind, default) = match a.kind {
                            AxisKind::Size { default } => {
                                ("size", default.map(serde_json::Value::from))
                            }
                            AxisKind::Flag { default } => {
                                ("flag", Some(serde_json::Value::from(default)))
                            }
                            AxisKind::Choice { default, .. } => {
                                ("choice", Some(serde_json::Value::from(default)))
                            }
                        };
                        serde_json::json!({
                            "name": a.name,
                            "help": a.help,
                            "kind": kind,
                            "default": default,
                            "set_by_run": a.run,
                        })
                    })
                    .collect();
                serde_json::json!({
                    "op": op.name(),
                    "about": op.about(),
                    "model_layer": op.model_layer(),
                    "parameters": params,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    for op in Op::ALL {
        println!("{}: {}", op.name(), op.about());
        for a in op.axes() {
            let default = match a.kind {
                AxisKind::Size { default: Some(d) } => format!(" (default {d})"),
                AxisKind::Size { default: None } => String::new(),
                AxisKind::Flag { default } => format!(" (a flag; default {default})"),
                AxisKind::Choice { options, default } => {
                    format!(" ({}; default {default})", options.join(" | "))
                }
            };
            let who = if a.run { "run" } else { "layer" };
            println!(
                "  --{:<10} {who:<5} {}{default}",
                a.name.replace('_', "-"),
                a.help
            );
        }
    }
    println!("(run: set by the run, even for a model's layer; layer: fixed by a model's layer)");
    Ok(ExitCode::SUCCESS)
}

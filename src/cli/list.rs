//! `kernel-lab list [DIR]`: the experiment files a user can run, with their
//! names, how many points each expands to (per backend) and what they ask.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use kernel_lab::backend::BackendKind;
use kernel_lab::experiment::Spec;

use super::output::{csv_cell, Format};

/// Arguments of `list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// The folder of experiment files.
    #[arg(default_value = "experiments")]
    dir: PathBuf,
    /// An aligned table, JSON lines, or CSV.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// One experiment file as listed.
#[derive(serde::Serialize)]
struct Entry {
    file: String,
    name: String,
    points: usize,
    gpu_points: usize,
    cpu_points: usize,
    description: String,
}

pub fn run(args: ListArgs) -> anyhow::Result<ExitCode> {
    let read = std::fs::read_dir(&args.dir).map_err(|source| kernel_lab::LabError::Io {
        path: args.dir.clone(),
        source,
    })?;
    let mut files: Vec<PathBuf> = read
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut entries = Vec::new();
    let mut broken = 0;
    for f in &files {
        let file = f.display().to_string();
        // A file of model presets (`[[model]]`, read by --set model=) is not an experiment.
        let presets = std::fs::read_to_string(f)
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .is_some_and(|t| t.contains_key("model") && !t.contains_key("axes"));
        if presets {
            continue;
        }
        match Spec::load(f, &[]).and_then(|s| Ok((s.expand()?, s))) {
            Ok((points, spec)) => {
                let on = |b| points.iter().filter(|p| p.backend == b).count();
                entries.push(Entry {
                    file,
                    name: spec.name.clone(),
                    points: points.len(),
                    gpu_points: on(BackendKind::Gpu),
                    cpu_points: on(BackendKind::Cpu),
                    description: spec.description.clone(),
                });
            }
            Err(e) => {
                broken += 1;
                eprintln!("{file}: {e}");
            }
        }
    }
    match args.format {
        Format::Json => {
            for e in &entries {
                println!("{}", serde_json::to_string(e)?);
            }
        }
        Format::Csv => {
            println!("file,name,points,gpu_points,cpu_points,description");
            for e in &entries {
                let cells = [
                    csv_cell(&e.file),
                    csv_cell(&e.name),
                    e.points.to_string(),
                    e.gpu_points.to_string(),
                    e.cpu_points.to_string(),
                    csv_cell(&e.description),
                ];
                println!("{}", cells.join(","));
            }
        }
        Format::Table => {
            let w = entries
                .iter()
                .map(|e| e.name.len())
                .max()
                .unwrap_or(4)
                .max(4);
            println!(
                "{:<w$}  {:>6}  {:>5}  {:>5}  description",
                "name", "points", "gpu", "cpu"
            );
            for e in &entries {
                println!(
                    "{:<w$}  {:>6}  {:>5}  {:>5}  {}",
                    e.name, e.points, e.gpu_points, e.cpu_points, e.description
                );
            }
            println!(
                "\nrun one with: kernel-lab run {}/<name>.toml",
                args.dir.display()
            );
        }
    }
    Ok(if broken > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

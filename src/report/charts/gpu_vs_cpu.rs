//! The GPU's speedup over the CPU vs dim: where the crossover lies.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::{line_panel, software_note, Chart};
use crate::report::analysis::speedups;
use crate::results::Record;

/// GPU over CPU speedup vs dim, a line per (op, precision, batch, seq); 1 = crossover.
pub fn gpu_vs_cpu(records: &[Record], out: &Path) -> Chart {
    let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (id, x) in speedups(records) {
        lines
            .entry(format!(
                "{} {} B{} S{}",
                id.op, id.precision, id.batch, id.seq
            ))
            .or_default()
            .push((id.dim as f64, x));
    }
    lines.retain(|_, v| v.len() >= 2);
    if lines.is_empty() {
        return Ok(vec![]);
    }
    let path = out.join("gpu-vs-cpu.svg");
    let root = SVGBackend::new(&path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut series: Vec<(String, Vec<(f64, f64)>)> = lines.into_iter().take(12).collect();
    for s in &mut series {
        s.1.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    // The crossover line: speedup 1.
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .collect();
    let (x0, x1) = xs
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
    series.push(("speedup 1 (crossover)".into(), vec![(x0, 1.0), (x1, 1.0)]));
    line_panel(
        &root,
        &format!(
            "GPU speedup over CPU (CPU p50 / GPU p50){}",
            software_note(records)
        ),
        "dim",
        "speedup (x)",
        &series,
        true,
        &[],
    )?;
    root.present()?;
    Ok(vec![path.clone()])
}

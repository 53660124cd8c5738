//! The report of a run: SVG charts, findings computed from the records, and
//! `report.md` and `report.html` tying them together (with an `index.html`
//! of every run beside it under `out/`). `render` is what `run` and `plot`
//! call.

pub mod analysis;
pub mod anchor_table;
pub mod charts;
pub mod clock_log;
pub mod device_check;
pub mod findings;
pub mod html;
pub mod layers;
pub mod markdown;
pub mod precision_study;
pub mod quality;
pub mod seed_notebooks;
#[cfg(test)]
pub(crate) mod testdata;

use std::path::{Path, PathBuf};

use crate::error::{LabError, Result};
use crate::experiment::ChartKind;
use crate::results::ResultsFile;

/// Draws the charts `kinds` asks for (all when empty) into `out`, then writes
/// `out/report.md`. Returns the report's path.
pub fn render(results: &ResultsFile, kinds: &[ChartKind], out: &Path) -> Result<PathBuf> {
    let all = [
        ChartKind::Seed,
        ChartKind::LatencyDistribution,
        ChartKind::GpuVsCpu,
        ChartKind::Batching,
        ChartKind::Precision,
        ChartKind::PrecisionCost,
        ChartKind::Roofline,
    ];
    let kinds = if kinds.is_empty() { &all[..] } else { kinds };
    // The precision study reads every data set; everything else one (see
    // analysis::primary_data), so a point swept over data counts once.
    let every = &results.records;
    let primary = analysis::on_primary_data(every);
    let records = &primary;
    // The spec's own models, which layer labels may name beside the presets.
    let own = results.models();
    // One meaning per colour across this report.
    charts::palette::reset();
    let mut files = Vec::new();
    for kind in kinds {
        let drawn = match kind {
            ChartKind::Seed => charts::seed(records, out),
            ChartKind::LatencyDistribution => charts::latency_distribution(records, out),
            ChartKind::GpuVsCpu => charts::gpu_vs_cpu(records, out),
            ChartKind::Batching => charts::batching(records, out),
            ChartKind::Precision => charts::precision(records, &own, out),
            ChartKind::PrecisionCost => charts::precision_cost(every, out),
            ChartKind::Roofline => charts::roofline(records, &results.environment.ceilings, out),
        };
        files.extend(
            drawn.map_err(|e| LabError::invalid("chart", &format!("{kind:?}"), &e.to_string()))?,
        );
    }
    let mut found = findings::findings(records, &results.environment.ceilings);
    found.extend(layers::findings(
        records,
        &results.environment.ceilings,
        &own,
    ));
    found.extend(precision_study::findings(every));
    found.extend(anchor_table::findings(records, results.anchors.as_ref()));
    if primary.len() < every.len() {
        if let Some(d) = analysis::primary_data(every) {
            found.insert(
                0,
                format!(
                    "This run swept the input data (distribution, scale): the precision study below reads all {} records; every other finding and chart reads the {} on {d} data, so that each point counts once.",
                    every.len(),
                    primary.len()
                ),
            );
        }
    }
    let previous = quality::previous_run(out, results);
    let quality = quality::summary(results, previous.as_ref());
    let text = markdown::report(results, &quality, &found, &files, out);
    let path = out.join("report.md");
    crate::atomic_file::write(&path, text.as_bytes())?;
    let page = html::report(results, &quality, &found, &files)?;
    crate::atomic_file::write(&out.join("report.html"), page.as_bytes())?;
    html::write_index_beside(out)?;
    Ok(path)
}

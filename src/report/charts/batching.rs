//! Batching: sustained tokens/s and p99 latency vs batch, the knee marked.

use std::path::Path;

use plotters::prelude::*;

use super::{line_panel, software_note, Chart, FONT};
use crate::report::analysis::{batch_curves, knee, BatchKey};
use crate::results::Record;

/// Tokens/s and p99 vs batch, the knee (gain < 5%) marked.
pub fn batching(records: &[Record], out: &Path) -> Chart {
    let curves = batch_curves(records);
    if curves.is_empty() {
        return Ok(vec![]);
    }
    let path = out.join("batching.svg");
    let root = SVGBackend::new(&path, (1200, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "batching: throughput and tail latency{}",
            software_note(records)
        ),
        (FONT, 18),
    )?;
    let (left, right) = root.split_horizontally(600);
    let label = |(backend, op, prec, s, d, n): &BatchKey| {
        let n = if n != d {
            format!(" N{n}")
        } else {
            String::new()
        };
        format!("{backend} {op} {prec} S{s} D{d}{n}")
    };
    let tps: Vec<(String, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|(k, v)| {
            let knee = knee(v, 0.05).map_or(String::new(), |b| format!(", knee at B{b}"));
            (
                format!("{}{knee}", label(k)),
                v.iter().map(|p| (p.0 as f64, p.1)).collect(),
            )
        })
        .collect();
    let knees: Vec<(f64, f64)> = curves
        .values()
        .filter_map(|v| {
            let b = knee(v, 0.05)?;
            v.iter().find(|p| p.0 == b).map(|p| (b as f64, p.1))
        })
        .collect();
    line_panel(
        &left,
        "tokens/s (sustained)",
        "batch",
        "tokens per second",
        &tps,
        true,
        &knees,
    )?;
    let p99: Vec<(String, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|(k, v)| (label(k), v.iter().map(|p| (p.0 as f64, p.2)).collect()))
        .collect();
    line_panel(
        &right,
        "p99 latency",
        "batch",
        "p99 latency (ms)",
        &p99,
        true,
        &[],
    )?;
    root.present()?;
    Ok(vec![path.clone()])
}

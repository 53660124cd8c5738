//! The seed notebook's figure: memory and latency vs dim, per op, backend
//! and precision.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::{line_panel, Chart, FONT, MIB};
use crate::backend::BackendKind;
use crate::report::analysis::{measured, p50};
use crate::results::Record;

/// The seed's figure, per op, backend and precision: memory (top) and latency
/// (bottom) vs dim, a line per batch, a panel per sequence length.
pub fn seed(records: &[Record], out: &Path) -> Chart {
    let mut groups: BTreeMap<(String, BackendKind, String), Vec<&Record>> = BTreeMap::new();
    for r in measured(records) {
        groups
            .entry((
                r.id.op.name().into(),
                r.id.backend,
                r.id.precision.name().into(),
            ))
            .or_default()
            .push(r);
    }
    let mut files = Vec::new();
    for ((op, backend, precision), rs) in groups {
        let dims: std::collections::BTreeSet<u32> = rs.iter().map(|r| r.id.dim).collect();
        if dims.len() < 2 {
            continue;
        }
        let seqs: std::collections::BTreeSet<u32> = rs.iter().map(|r| r.id.seq).collect();
        let path = out.join(format!("seed-{op}-{backend}-{precision}.svg"));
        let root = SVGBackend::new(&path, (520 * seqs.len() as u32, 760)).into_drawing_area();
        root.fill(&WHITE)?;
        let soft = if backend == BackendKind::Gpu && rs[0].software_device {
            ", software device"
        } else {
            ""
        };
        let root = root.titled(
            &format!(
                "{op} {precision} on {backend} ({}{soft}): memory and latency vs dim",
                rs[0].adapter
            ),
            (FONT, 18),
        )?;
        let panels = root.split_evenly((2, seqs.len()));
        for (col, &seq) in seqs.iter().enumerate() {
            let mut by_batch: BTreeMap<u32, Vec<&Record>> = BTreeMap::new();
            for r in rs.iter().filter(|r| r.id.seq == seq) {
                by_batch.entry(r.id.batch).or_default().push(r);
            }
            let series = |f: &dyn Fn(&Record) -> f64| -> Vec<(String, Vec<(f64, f64)>)> {
                by_batch
                    .iter()
                    .map(|(b, v)| {
                        let mut pts: Vec<(f64, f64)> =
                            v.iter().map(|r| (r.id.dim as f64, f(r))).collect();
                        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                        (format!("batch {b}"), pts)
                    })
                    .collect()
            };
            let mem = series(&|r| {
                r.measured
                    .as_ref()
                    .map_or(0.0, |m| m.memory_bytes.measured.total as f64 / MIB)
            });
            line_panel(
                &panels[col],
                &format!("seq {seq}: memory"),
                "dim",
                "measured MiB",
                &mem,
                true,
                &[],
            )?;
            let lat = series(&p50);
            line_panel(
                &panels[seqs.len() + col],
                &format!("seq {seq}: latency"),
                "dim",
                "p50 latency (ms)",
                &lat,
                true,
                &[],
            )?;
        }
        root.present()?;
        files.push(path.clone());
    }
    Ok(files)
}

//! The seed notebook's figure: memory and latency vs dim, per op, backend
//! and precision.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::canvas::MIB;
use super::canvas::{title, Canvas};
use super::common::{facet, part, Chart};
use super::panel::{draw, grid};
use super::panel::{Panel, Pt, Series};
use crate::backend::BackendKind;
use crate::report::analysis::{p50, p50_ci, seed_axes};
use crate::results::Record;

/// The seed's figure, per op, backend and precision: memory (top) and latency
/// (bottom) vs dim, a line per batch (its median's 95% CI as a bar), a panel
/// per sequence length; points not measured are marked on the axis.
pub fn seed(records: &[Record], out: &Path) -> Chart {
    let mut groups: BTreeMap<(String, BackendKind, String), Vec<&Record>> = BTreeMap::new();
    // The seed's axes: points of an op without them are not on this figure.
    let at = |r: &Record| seed_axes(&r.id).expect("filtered to the seed's axes");
    for r in records.iter().filter(|r| seed_axes(&r.id).is_some()) {
        groups
            .entry((
                r.id.op().name().into(),
                r.id.backend,
                r.id.precision.name().into(),
            ))
            .or_default()
            .push(r);
    }
    let mut files = Vec::new();
    for ((op, backend, precision), rs) in groups {
        let measured: Vec<&Record> = rs
            .iter()
            .copied()
            .filter(|r| r.measured.is_some())
            .collect();
        let dims: BTreeSet<u32> = measured.iter().map(|r| at(r).dim).collect();
        if dims.len() < 2 {
            continue;
        }
        let seqs: BTreeSet<u32> = rs.iter().map(|r| at(r).seq).collect();
        // Per seq: the memory panel(s), then the latency panel(s).
        let mut columns: Vec<Vec<Panel>> = Vec::new();
        for &seq in &seqs {
            let mut panels = Vec::new();
            let mut by_batch: BTreeMap<u32, Vec<&Record>> = BTreeMap::new();
            for r in rs.iter().filter(|r| at(r).seq == seq) {
                by_batch.entry(at(r).batch).or_default().push(r);
            }
            let series = |f: &dyn Fn(&Record) -> Pt| -> Vec<Series> {
                by_batch
                    .iter()
                    .map(|(b, v)| {
                        let mut s = Series::new(format!("batch {b}"), format!("B{b}"));
                        for r in v {
                            match &r.skipped {
                                Some(why) if r.measured.is_none() => {
                                    s.missing.push((at(r).dim as f64, why.to_string()))
                                }
                                _ => s.points.push(f(r)),
                            }
                        }
                        s
                    })
                    .collect()
            };
            let tip = |r: &Record, what: String| {
                format!("{op} {precision} {backend} {}: {what}", r.id.shape_label())
            };
            let mem = series(&|r| {
                let mib = r
                    .measured
                    .as_ref()
                    .map_or(0.0, |m| m.memory_bytes.measured.total as f64 / MIB);
                Pt::new(at(r).dim as f64, mib).tip(tip(r, format!("{mib:.2} MiB measured")))
            });
            let lat = series(&|r| {
                let (lo, hi) = p50_ci(r).unwrap_or((f64::NAN, f64::NAN));
                Pt::new(at(r).dim as f64, p50(r)).band(lo, hi).tip(tip(
                    r,
                    format!("p50 {:.4} ms (95% CI {lo:.4}..{hi:.4})", p50(r)),
                ))
            });
            for (what, y, s) in [
                ("memory", "measured MiB", mem),
                (
                    "latency (bars: 95% CI of the median)",
                    "p50 latency (ms)",
                    lat,
                ),
            ] {
                let groups = facet(s);
                let n = groups.len();
                for (i, g) in groups.into_iter().enumerate() {
                    let mut p = Panel::new(part(&format!("seq {seq}: {what}"), i, n), "dim", y);
                    p.series = g;
                    panels.push(p);
                }
            }
            columns.push(panels);
        }
        let per_seq = columns.iter().map(Vec::len).max().unwrap_or(0);
        let cols = columns.len();
        let canvas = Canvas::new(
            out.join(format!("seed-{op}-{backend}-{precision}.svg")),
            ((560 * cols as u32).max(640), 380 * per_seq as u32 + 60),
        );
        files.extend(canvas.draw(|root, notes| {
            let soft = if backend == BackendKind::Gpu && rs[0].software_device {
                ", software device"
            } else {
                ""
            };
            let body = title(
                root,
                &format!(
                    "{op} {precision} on {backend} ({}{soft}): memory and latency vs dim",
                    rs[0].adapter
                ),
                18.0,
            )?;

            // Column-major: each seq's panels stack in its column.
            let cells = grid(&body, per_seq * cols, cols);
            for (col, panels) in columns.iter().enumerate() {
                for (row, p) in panels.iter().enumerate() {
                    draw(&cells[row * cols + col], p, notes)?;
                }
            }
            Ok(())
        })?);
    }
    Ok(files)
}

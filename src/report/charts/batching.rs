//! Batching: sustained tokens/s and p99 latency vs batch, the knee marked; a
//! row of panels per backend, op and precision.

use std::collections::BTreeMap;
use std::path::Path;

use super::canvas::{title, Canvas};
use super::common::{facet, part, software_note, Chart};
use super::panel::{draw, grid};
use super::panel::{Panel, Pt, Series};
use crate::report::analysis::{batch_curves, knee, rate_band, seed_axes, BatchKey};
use crate::results::Record;

/// A row of the figure: tokens/s lines, p99 lines, the knees.
type Row = (Vec<Series>, Vec<Series>, Vec<(f64, f64)>);

/// Tokens/s (bars: from the median's 95% CI) and p99 vs batch, the knee
/// (no larger batch gains 5%) ringed; a row per backend x op x precision, a
/// line per seq and dim (faceted past eight).
pub fn batching(records: &[Record], out: &Path) -> Chart {
    let curves = batch_curves(records);
    if curves.is_empty() {
        return Ok(vec![]);
    }
    // The measured record of each curve point, looked up once, not per point.
    let by_point: BTreeMap<(BatchKey, u32), &Record> = records
        .iter()
        .filter(|r| r.measured.is_some())
        .filter_map(|r| {
            let id = &r.id;
            let a = seed_axes(id)?;
            let key = (
                id.backend,
                id.op(),
                id.precision.name().to_string(),
                a.seq,
                a.dim,
                a.out_dim,
            );
            Some(((key, a.batch), r))
        })
        .collect();
    let band = |k: &BatchKey, b: u32, tps: f64| -> Option<(f64, f64)> {
        rate_band(by_point.get(&(k.clone(), b))?, tps)
    };
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for (k, v) in &curves {
        let (backend, op, prec, s, d, n) = k;
        let line = if n != d {
            format!("S{s} D{d} N{n}")
        } else {
            format!("S{s} D{d}")
        };
        let knee_at = knee(v, 0.05);
        let label = knee_at.map_or(format!("{line}, no knee"), |b| format!("{line}, knee B{b}"));
        let row = rows.entry(format!("{backend} {op} {prec}")).or_default();
        let mut tps = Series::new(label.clone(), line.clone());
        let mut p99 = Series::new(label, line.clone());
        for &(b, t, p) in v {
            let (lo, hi) = band(k, b, t).unwrap_or((f64::NAN, f64::NAN));
            tps.points
                .push(Pt::new(b as f64, t).band(lo, hi).tip(format!(
                    "{backend} {op} {prec} {line} B{b}: {t:.0} tokens/s"
                )));
            p99.points.push(
                Pt::new(b as f64, p)
                    .tip(format!("{backend} {op} {prec} {line} B{b}: p99 {p:.4} ms")),
            );
        }
        // Batches of this line that were cut or skipped: marked where they would be.
        for (r, a) in records.iter().filter_map(|r| Some((r, seed_axes(&r.id)?))) {
            let on_line = r.measured.is_none()
                && r.id.backend == *backend
                && r.id.op() == *op
                && r.id.precision.name() == prec
                && (a.seq, a.dim, a.out_dim) == (*s, *d, *n);
            if !on_line {
                continue;
            }
            let why = r
                .skipped
                .as_ref()
                .map_or("not measured".into(), |w| w.to_string());
            tps.missing.push((a.batch as f64, why.clone()));
            p99.missing.push((a.batch as f64, why));
        }
        if let Some(b) = knee_at {
            if let Some(p) = v.iter().find(|p| p.0 == b) {
                row.2.push((b as f64, p.1));
            }
        }
        row.0.push(tps);
        row.1.push(p99);
    }
    let mut panels = Vec::new();
    for (name, (tps, p99, knees)) in rows {
        let (tps, p99) = (facet(tps), facet(p99));
        let n = tps.len();
        for (i, (t, p)) in tps.into_iter().zip(p99).enumerate() {
            let mut a = Panel::new(
                part(&format!("{name}: tokens/s (sustained)"), i, n),
                "batch",
                "tokens per second",
            );
            a.marks = knees
                .iter()
                .copied()
                .filter(|k| t.iter().any(|s| s.points.iter().any(|p| (p.x, p.y) == *k)))
                .collect();
            a.series = t;
            a.marks_label = "knee: no larger batch gains 5%".into();
            let mut b = Panel::new(
                part(&format!("{name}: p99 latency"), i, n),
                "batch",
                "p99 latency (ms)",
            );
            b.series = p;
            panels.push(a);
            panels.push(b);
        }
    }
    let rows = panels.len() / 2;
    let canvas = Canvas::new(out.join("batching.svg"), (1300, 400 * rows as u32 + 50));
    canvas.draw(|root, notes| {
        let body = title(
            root,
            &format!(
                "batching: throughput and tail latency{}",
                software_note(records)
            ),
            18.0,
        )?;

        for (cell, p) in grid(&body, panels.len(), 2).iter().zip(&panels) {
            draw(cell, p, notes)?;
        }
        Ok(())
    })
}

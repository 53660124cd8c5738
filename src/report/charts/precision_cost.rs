//! The precision study's charts: error against speed with the Pareto front
//! (`precision-tradeoff.svg`), and the per-element error's CDF per precision
//! (`precision-error-cdf.svg`). Both read the records' precision cost, which
//! compares with the full-precision data (see precision_cost.rs).

use std::collections::BTreeMap;
use std::path::Path;

use super::canvas::{title, Canvas};
use super::common::{software_note, Chart};
use super::panel::{draw, grid};
use super::panel::{Marker, Panel, Pt, Series};
use super::ticks::Scale as AxisScale;
use crate::backend::BackendKind;
use crate::data::Scale;
use crate::ops::Op;
use crate::precision::Precision;
use crate::report::analysis::measured;
use crate::report::precision_study::{dominated, tradeoff_dist, tradeoffs};
use crate::results::Record;

/// Both charts, when the records hold at least two precisions with a cost.
pub fn precision_cost(records: &[Record], out: &Path) -> Chart {
    let mut files = Vec::new();
    files.extend(tradeoff(records, out)?);
    files.extend(error_cdf(records, out)?);
    Ok(files)
}

/// A precision placed on the trade-off chart: speed vs FP32, error, which.
type Placed = (f64, f64, Precision);

/// Each precision's error CDFs (one per point), per op.
type Cdfs = BTreeMap<Op, BTreeMap<Precision, Vec<Vec<[f64; 2]>>>>;

/// Error vs speed relative to FP32, a panel per op, a colour per backend, the
/// Pareto front (no other precision both faster and more accurate) joined.
fn tradeoff(records: &[Record], out: &Path) -> Chart {
    let Some(dist) = tradeoff_dist(records) else {
        return Ok(vec![]);
    };
    let t = tradeoffs(records, dist);
    let mut by_op: BTreeMap<Op, BTreeMap<BackendKind, Vec<Placed>>> = BTreeMap::new();
    for (&(b, op, p), v) in &t {
        // FP32's own error can be exactly 0 (a gather): a log axis cannot show it.
        if v.rel_err > 0.0 && v.speedup_vs_f32.is_finite() {
            by_op.entry(op).or_default().entry(b).or_default().push((
                v.speedup_vs_f32,
                v.rel_err,
                p,
            ));
        }
    }
    by_op.retain(|_, m| m.values().any(|v| v.len() >= 2));
    if by_op.is_empty() {
        return Ok(vec![]);
    }
    let mut panels = Vec::new();
    for (op, series) in &by_op {
        let mut p = Panel::new(
            format!("{op}: lines join each backend's Pareto front"),
            "speed relative to FP32 on the same points (x)",
            "relative error ||y - y*|| / ||y*||",
        );
        p.x_at_data = false;
        p.y_scale = AxisScale::Log;
        for (backend, pts) in series {
            let xy: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.1)).collect();
            let mut front = Series::new(format!("{backend}: Pareto front"), backend.to_string());
            front.marker = Marker::None;
            front.dashed = *backend == BackendKind::Gpu;
            front.points = xy
                .iter()
                .filter(|&&q| !dominated(q, &xy))
                .map(|&(x, y)| Pt::new(x, y))
                .collect();
            p.series.push(front);
            for &(x, y, prec) in pts {
                let mut s = Series::new(format!("{backend} {}", prec.label()), prec.name());
                s.line = false;
                s.marker = if *backend == BackendKind::Gpu {
                    Marker::Triangle
                } else {
                    Marker::Circle
                };
                s.points.push(Pt::new(x, y).tip(format!(
                    "{op} {backend} {}: {x:.2}x the speed of FP32, relative error {y:.2e}",
                    prec.label()
                )));
                p.series.push(s);
            }
        }
        panels.push(p);
    }
    let canvas = Canvas::new(
        out.join("precision-tradeoff.svg"),
        ((640 * panels.len() as u32).max(760), 560),
    );
    canvas.draw(|root, notes| {
        let body = title(
            root,
            &format!(
                "What each precision costs and buys ({dist} data, scale 1; median over shapes){}",
                software_note(records)
            ),
            17.0,
        )?;
        for (cell, p) in grid(&body, panels.len(), panels.len()).iter().zip(&panels) {
            draw(cell, p, notes)?;
        }
        Ok(())
    })
}

/// The per-element normalised error's CDF, a line per precision (the median
/// over points of each quantile), a panel per projection op.
fn error_cdf(records: &[Record], out: &Path) -> Chart {
    let Some(dist) = tradeoff_dist(records) else {
        return Ok(vec![]);
    };
    let mut curves: Cdfs = BTreeMap::new();
    for r in measured(records).filter(|r| {
        r.id.params.projection().is_some() && r.id.dist == dist && r.id.scale == Scale::ONE
    }) {
        if let Some(c) = &r.precision_cost {
            curves
                .entry(r.id.op())
                .or_default()
                .entry(r.id.precision)
                .or_default()
                .push(c.norm_err_cdf.clone());
        }
    }
    curves.retain(|_, m| m.len() >= 2);
    if curves.is_empty() {
        return Ok(vec![]);
    }
    let mut panels = Vec::new();
    for (op, by_p) in &curves {
        let mut p = Panel::new(
            format!("{op} (median over points)"),
            "|y - y*| / sum|x*w| per element",
            "share of elements at or below",
        );
        p.x_at_data = false;
        p.x_scale = AxisScale::Log;
        p.y_scale = AxisScale::Linear;
        p.y_from_zero = true;
        for (&prec, cdfs) in by_p {
            // Median over points of each level's error.
            let levels = cdfs.iter().map(Vec::len).min().unwrap_or(0);
            let mut s = Series::new(prec.label(), prec.name());
            s.points = (0..levels)
                .map(|i| {
                    let q = cdfs[0][i][0];
                    let e = crate::report::analysis::median(cdfs.iter().map(|c| c[i][1]).collect());
                    (e, q)
                })
                .filter(|&(e, _)| e > 0.0)
                .map(|(e, q)| {
                    Pt::new(e, q).tip(format!(
                        "{op} {}: {:.1}% of elements at or below {e:.2e}",
                        prec.label(),
                        q * 100.0
                    ))
                })
                .collect();
            p.series.push(s);
        }
        panels.push(p);
    }
    let canvas = Canvas::new(
        out.join("precision-error-cdf.svg"),
        ((600 * panels.len() as u32).max(700), 520),
    );
    canvas.draw(|root, notes| {
        let body = title(
            root,
            &format!("Per-element error against the full-precision result ({dist} data, scale 1)"),
            17.0,
        )?;
        for (cell, p) in grid(&body, panels.len(), panels.len()).iter().zip(&panels) {
            draw(cell, p, notes)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dist;
    use crate::precision_cost::PrecisionCost;
    use crate::report::testdata::synthetic;

    fn rec(backend: &str, p: Precision, ms: f64, err: f64) -> Record {
        let mut r = synthetic("matmul", backend, p, 4, 32, 1024, ms);
        r.id.dist = Dist::Normal;
        r.precision_cost = Some(PrecisionCost {
            rel_frobenius_err: err,
            norm_err_p50: err / 10.0,
            norm_err_p99: err,
            norm_err_max: err * 2.0,
            norm_err_cdf: vec![[0.5, err / 10.0], [0.99, err], [1.0, err * 2.0]],
            row_cosine_min: Some(1.0),
            row_cosine_mean: Some(1.0),
            non_finite: 0,
            elements: 10,
            top1_agreement: None,
            top5_agreement: None,
        });
        r
    }

    /// Both charts draw a point per precision and backend, a CDF line per
    /// precision, and label what they show.
    #[test]
    fn tradeoff_and_cdf_draw_every_precision() {
        let mut rs = Vec::new();
        for backend in ["cpu", "gpu"] {
            for (p, ms, err) in [
                (Precision::F32, 2.0, 4e-7),
                (Precision::F16, 1.0, 4e-4),
                (Precision::Bf16, 1.1, 3e-3),
                (Precision::Int8, 0.9, 7e-3),
            ] {
                rs.push(rec(backend, p, ms, err));
            }
        }
        let dir = std::env::temp_dir().join(format!("kernel-lab-pcost-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = precision_cost(&rs, &dir).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        let tradeoff = std::fs::read_to_string(dir.join("precision-tradeoff.svg")).unwrap();
        for label in [
            "cpu FP16",
            "gpu BF16",
            "cpu INT8 (W8A16)",
            "gpu FP32",
            "speed relative to FP32",
        ] {
            assert!(tradeoff.contains(label), "tradeoff chart lacks {label}");
        }
        let cdf = std::fs::read_to_string(dir.join("precision-error-cdf.svg")).unwrap();
        for label in ["FP32", "FP16", "BF16", "INT8 (W8A16)", "share of elements"] {
            assert!(cdf.contains(label), "CDF chart lacks {label}");
        }
        // One precision is not a study: nothing is drawn.
        let one: Vec<Record> = rs
            .iter()
            .filter(|r| r.id.precision == Precision::F32)
            .cloned()
            .collect();
        let empty = std::env::temp_dir().join(format!("kernel-lab-pcost1-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        assert!(precision_cost(&one, &empty).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&empty);
    }
}

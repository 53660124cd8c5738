//! The precision study's charts: error against speed with the Pareto front
//! (`precision-tradeoff.svg`), and the per-element error's CDF per precision
//! (`precision-error-cdf.svg`). Both read the records' precision cost, which
//! compares with the full-precision data (see precision_cost.rs).

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::{fmt_num, legend, log_range, software_note, Chart, FONT};
use crate::backend::BackendKind;
use crate::report::analysis::measured;
use crate::report::precision_study::{dominated, tradeoff_dist, tradeoffs};
use crate::results::Record;
use crate::workload::{Op, Precision, Scale};

/// Both charts, when the records hold at least two precisions with a cost.
pub fn precision_cost(records: &[Record], out: &Path) -> Chart {
    let mut files = Vec::new();
    files.extend(tradeoff(records, out)?);
    files.extend(error_cdf(records, out)?);
    Ok(files)
}

/// One colour per precision, the same in every chart of the study (Okabe-Ito:
/// distinguishable in colour-blind vision, none too pale on white).
fn precision_color(p: Precision) -> RGBColor {
    match p {
        Precision::F32 => RGBColor(0, 0, 0),
        Precision::F16 => RGBColor(0, 114, 178),
        Precision::Bf16 => RGBColor(213, 94, 0),
        Precision::Int8 => RGBColor(0, 158, 115),
    }
}

/// One colour per backend on the trade-off chart.
fn backend_color(b: BackendKind) -> RGBColor {
    match b {
        BackendKind::Cpu => RGBColor(0, 114, 178),
        BackendKind::Gpu => RGBColor(204, 121, 167),
    }
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
    let path = out.join("precision-tradeoff.svg");
    let width = 560 * by_op.len() as u32;
    let root = SVGBackend::new(&path, (width.max(700), 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "What each precision costs and buys ({dist} data, scale 1; median over shapes){}",
            software_note(records)
        ),
        (FONT, 17),
    )?;
    let panels = root.split_evenly((1, by_op.len()));
    for (area, (op, series)) in panels.iter().zip(&by_op) {
        let all: Vec<(f64, f64)> = series.values().flatten().map(|p| (p.0, p.1)).collect();
        let (lo, hi) = all.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
        let pad = ((hi - lo) * 0.15).max(0.1);
        // Room on the right for the last point's label and the legend.
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{op}"), (FONT, 16))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(74)
            .build_cartesian_2d(
                (lo - pad).max(0.0)..(hi + 3.0 * pad),
                log_range(all.iter().map(|p| p.1)).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("speed relative to FP32 on the same points (x)")
            .y_desc("relative error ||y - y*|| / ||y*||")
            .label_style((FONT, 12))
            .light_line_style(TRANSPARENT)
            .x_label_formatter(&|v| fmt_num(*v))
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()?;
        for (backend, pts) in series {
            let c = backend_color(*backend);
            // CPU labels below their points, GPU labels above, so the two
            // backends' labels of one precision do not print over each other.
            let dy = if *backend == BackendKind::Cpu { 6 } else { -18 };
            let xy: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.1)).collect();
            let mut front: Vec<(f64, f64)> =
                xy.iter().copied().filter(|&p| !dominated(p, &xy)).collect();
            front.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(LineSeries::new(front, c.stroke_width(2)))?
                .label(format!("{backend}: Pareto front"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart.draw_series(pts.iter().map(|&(x, y, p)| {
                EmptyElement::at((x, y))
                    + Circle::new((0, 0), 5, c.filled())
                    + Text::new(
                        format!("{} {}", backend, p.label()),
                        (7, dy),
                        (FONT, 12).into_font(),
                    )
            }))?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    }
    root.present()?;
    Ok(vec![path.clone()])
}

/// The per-element normalised error's CDF, a line per precision (the median
/// over points of each quantile), a panel per projection op.
fn error_cdf(records: &[Record], out: &Path) -> Chart {
    let Some(dist) = tradeoff_dist(records) else {
        return Ok(vec![]);
    };
    let mut curves: Cdfs = BTreeMap::new();
    for r in measured(records)
        .filter(|r| r.id.op.uses_weight() && r.id.dist == dist && r.id.scale == Scale::ONE)
    {
        if let Some(c) = &r.precision_cost {
            curves
                .entry(r.id.op)
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
    let path = out.join("precision-error-cdf.svg");
    let width = 560 * curves.len() as u32;
    let root = SVGBackend::new(&path, (width.max(700), 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("Per-element error against the full-precision result ({dist} data, scale 1)"),
        (FONT, 17),
    )?;
    let panels = root.split_evenly((1, curves.len()));
    for (area, (op, by_p)) in panels.iter().zip(&curves) {
        // Median over points of each level's error.
        let lines: Vec<(Precision, Vec<(f64, f64)>)> = by_p
            .iter()
            .map(|(&p, cdfs)| {
                let levels = cdfs.iter().map(Vec::len).min().unwrap_or(0);
                let pts = (0..levels)
                    .map(|i| {
                        let q = cdfs[0][i][0];
                        let e =
                            crate::report::analysis::median(cdfs.iter().map(|c| c[i][1]).collect());
                        (e, q)
                    })
                    .filter(|&(e, _)| e > 0.0)
                    .collect();
                (p, pts)
            })
            .collect();
        let xr = log_range(lines.iter().flat_map(|l| l.1.iter().map(|p| p.0)));
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{op} (median over points)"), (FONT, 16))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(xr.log_scale(), 0.0..1.02)?;
        chart
            .configure_mesh()
            .x_desc("|y - y*| / sum|x*w| per element")
            .y_desc("share of elements at or below")
            .label_style((FONT, 12))
            .light_line_style(TRANSPARENT)
            .x_label_formatter(&|v| format!("{v:.0e}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .draw()?;
        for (p, pts) in &lines {
            let c = precision_color(*p);
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?
                .label(p.label())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart.draw_series(pts.iter().map(|&pt| Circle::new(pt, 3, c.filled())))?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    }
    root.present()?;
    Ok(vec![path.clone()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::precision_cost::PrecisionCost;
    use crate::report::testdata::synthetic;
    use crate::workload::Dist;

    fn rec(backend: &str, p: Precision, ms: f64, err: f64) -> Record {
        let mut r = synthetic(Op::Matmul, backend, p, 4, 32, 1024, ms);
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

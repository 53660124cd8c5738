//! The roofline: achieved GFLOP/s vs arithmetic intensity against each
//! backend's ceilings.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::{color, fmt_num, legend, log_range, software_note, Chart, FONT};
use crate::backend::{BackendKind, Ceilings};
use crate::report::analysis::measured;
use crate::results::Record;

/// Achieved GFLOP/s vs arithmetic intensity, against each backend's ceilings:
/// the probed copy bandwidth and FMA peak when the run measured them, else the
/// best GB/s and GFLOP/s any point of this run reached (labelled as such).
pub fn roofline(
    records: &[Record],
    ceilings: &BTreeMap<BackendKind, Ceilings>,
    out: &Path,
) -> Chart {
    let mut series = Vec::new();
    let mut all_x = Vec::new();
    for (i, backend) in BackendKind::ALL.into_iter().enumerate() {
        let rs: Vec<&Record> = measured(records)
            .filter(|r| r.id.backend == backend)
            .collect();
        let pts: Vec<(f64, f64)> = rs
            .iter()
            .filter_map(|r| r.measured.as_ref())
            .filter(|m| m.arithmetic_intensity > 0.0)
            .map(|m| (m.arithmetic_intensity, m.gflops))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let bw = rs
            .iter()
            .filter_map(|r| r.measured.as_ref())
            .map(|m| m.gbps)
            .fold(0.0, f64::max);
        let observed = pts.iter().map(|p| p.1).fold(0.0, f64::max);
        let (bw, peak, source) = match ceilings.get(&backend) {
            Some(c) => (c.copy_gbps, c.fma_gflops, "probed"),
            None => (bw, observed, "best observed"),
        };
        all_x.extend(pts.iter().map(|p| p.0));
        series.push((i, backend, pts, bw, peak, source));
    }
    if series.is_empty() {
        return Ok(vec![]);
    }
    let xr = log_range(all_x.iter().copied().chain([0.1, 1000.0]));
    let yr = log_range(
        series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.1).chain([s.4 * 1.2, s.3 * 0.1])),
    );
    let path = out.join("roofline.svg");
    let root = SVGBackend::new(&path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "roofline: achieved GFLOP/s against each backend's ceilings{}",
                software_note(records)
            ),
            (FONT, 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(xr.clone().log_scale(), yr.log_scale())?;
    chart
        .configure_mesh()
        .x_desc("arithmetic intensity (FLOP/byte)")
        .y_desc("GFLOP/s")
        .label_style((FONT, 12))
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|v| fmt_num(*v))
        .y_label_formatter(&|v| fmt_num(*v))
        .draw()?;
    for (i, backend, pts, bw, peak, source) in series {
        let c = color(i);
        let roof: Vec<(f64, f64)> = (0..=60)
            .map(|k| xr.start * (xr.end / xr.start).powf(k as f64 / 60.0))
            .map(|x| (x, (x * bw).min(peak)))
            .collect();
        chart
            .draw_series(LineSeries::new(roof, c.stroke_width(1)))?
            .label(format!(
                "{backend} ceiling: {bw:.1} GB/s, {peak:.1} GFLOP/s ({source})"
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(1)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))?
            .label(format!("{backend} points"))
            .legend(move |(x, y)| Circle::new((x + 9, y), 4, c.filled()));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present()?;
    Ok(vec![path.clone()])
}

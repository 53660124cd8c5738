//! The latency distribution of one point per backend: histogram and CDF
//! with p50, p95 and p99 marked.

use std::path::Path;

use plotters::prelude::*;

use super::{legend, Chart, FONT};
use crate::backend::BackendKind;
use crate::report::analysis::measured;
use crate::results::Record;

/// Histogram and CDF of the most-sampled point of each backend, p50/p95/p99 marked.
pub fn latency_distribution(records: &[Record], out: &Path) -> Chart {
    let mut files = Vec::new();
    for backend in BackendKind::ALL {
        let Some(r) = measured(records)
            .filter(|r| r.id.backend == backend)
            .max_by_key(|r| r.measured.as_ref().map_or(0, |m| m.raw_ns.len()))
        else {
            continue;
        };
        let m = r.measured.as_ref().expect("filtered");
        // The raw samples are what is drawn: a record that lost them (an edited
        // or foreign file) has nothing to show, whatever `samples` says.
        if m.raw_ns.len() < 5 {
            continue;
        }
        let ms: Vec<f64> = m.raw_ns.iter().map(|&n| n as f64 * 1e-6).collect();
        let (lo, hi) = ms
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
        if !(lo.is_finite() && hi.is_finite()) {
            continue;
        }
        let bins = 40usize;
        let width = ((hi - lo) / bins as f64).max(1e-9);
        let mut counts = vec![0u32; bins];
        for &v in &ms {
            counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
        }
        let path = out.join(format!("latency-distribution-{backend}.svg"));
        let root = SVGBackend::new(&path, (1100, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let soft = if r.software_device {
            ", software device"
        } else {
            ""
        };
        let root = root.titled(
            &format!(
                "{} {} {}{} on {}{soft}: {} samples ({:?})",
                r.id.op,
                r.id.precision,
                r.id.shape_label(),
                r.layer
                    .as_ref()
                    .map_or(String::new(), |l| format!(" ({l})")),
                r.adapter,
                m.samples,
                m.timing_method
            ),
            (FONT, 16),
        )?;
        let (left, right) = root.split_horizontally(550);
        let marks = [
            ("p50", m.latency_ms.p50, BLUE),
            ("p95", m.latency_ms.p95, MAGENTA),
            ("p99", m.latency_ms.p99, RED),
        ];
        let top = *counts.iter().max().unwrap_or(&1) as f64 * 1.1;
        let x_range = (lo - width)..(hi + width);
        let mut hist = ChartBuilder::on(&left)
            .caption("histogram", (FONT, 14))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(x_range.clone(), 0.0..top)?;
        hist.configure_mesh()
            .x_desc("latency (ms)")
            .y_desc("samples")
            .label_style((FONT, 12))
            .draw()?;
        hist.draw_series(counts.iter().enumerate().map(|(i, &c)| {
            let x0 = lo + i as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], BLUE.mix(0.5).filled())
        }))?;
        let mut cdf = ChartBuilder::on(&right)
            .caption("CDF", (FONT, 14))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(x_range.clone(), 0.0..1.0)?;
        cdf.configure_mesh()
            .x_desc("latency (ms)")
            .y_desc("fraction of samples")
            .label_style((FONT, 12))
            .draw()?;
        let mut sorted = ms.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        cdf.draw_series(LineSeries::new(
            sorted
                .iter()
                .enumerate()
                .map(|(i, &v)| (v, (i + 1) as f64 / n)),
            BLACK.stroke_width(2),
        ))?;
        // A percentile outside the samples drawn (an edited file) has no place
        // on these axes; drawing it would overflow plotters' pixel arithmetic.
        for (name, v, c) in marks.into_iter().filter(|m| x_range.contains(&m.1)) {
            for (chart_top, chart) in [(top, &mut hist), (1.0, &mut cdf)] {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(v, 0.0), (v, chart_top)],
                        c.stroke_width(2),
                    )))?
                    .label(format!("{name} {v:.3} ms"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                    });
            }
        }
        for chart in [&mut hist, &mut cdf] {
            legend(chart, SeriesLabelPosition::MiddleRight)?;
        }
        root.present()?;
        files.push(path.clone());
    }
    Ok(files)
}

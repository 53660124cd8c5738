//! The latency distribution of one point per backend, the one with the
//! worst tail (the report's tail finding names it): histogram and CDF with
//! p50, p95 and p99 marked and their values in the captions.

use std::path::Path;

use plotters::prelude::*;

use super::canvas::FONT;
use super::canvas::{title, Canvas, PanelMeta};
use super::common::Chart;
use super::palette;
use super::panel::Keyed;
use super::ticks::{fmt_num, linear_ticks};
use crate::backend::BackendKind;
use crate::prepared_op::TimingMethod;
use crate::report::analysis::{measured, worst_tail};
use crate::results::Record;

/// Histogram and CDF of each backend's point with the worst tail (p99 over
/// p50, among points of 20 samples or more; else its most-sampled point).
pub fn latency_distribution(records: &[Record], out: &Path) -> Chart {
    let mut files = Vec::new();
    for backend in BackendKind::ALL {
        let Some((r, which)) = worst_tail(records, backend)
            .map(|w| (w.1, "the worst p99/p50 of this backend"))
            .or_else(|| {
                measured(records)
                    .filter(|r| r.id.backend == backend)
                    .max_by_key(|r| r.measured.as_ref().map_or(0, |m| m.raw_ns.len()))
                    .map(|r| (r, "its most-sampled point"))
            })
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
        let canvas = Canvas::new(
            out.join(format!("latency-distribution-{backend}.svg")),
            (1100, 500),
        );
        files.extend(canvas.draw(|root, notes| {
            let soft = if r.software_device {
                ", software device"
            } else {
                ""
            };
            let method = match m.timing_method {
                TimingMethod::DeviceTimestamp => "GPU timestamps",
                TimingMethod::Wall => "host clock",
            };
            let body = title(
                root,
                &format!(
                    "{} {} {}{} on {}{soft}: {} samples ({method}), {which}",
                    r.id.op(),
                    r.id.precision,
                    r.id.shape_label(),
                    r.layer
                        .as_ref()
                        .map_or(String::new(), |l| format!(" ({l})")),
                    r.adapter,
                    m.samples,
                ),
                16.0,
            )?;
            let (left, right) = body.split_horizontally(550);
            let marks = [
                ("p50", m.latency_ms.p50, palette::colour("p50")),
                ("p95", m.latency_ms.p95, palette::colour("p95")),
                ("p99", m.latency_ms.p99, palette::colour("p99")),
            ];
            let caption = |what: &str| {
                format!(
                    "{what}: {}",
                    marks
                        .iter()
                        .map(|(n, v, _)| format!("{n} {v:.3} ms"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let x_keys = linear_ticks(lo, hi);
            let x_labels: Vec<String> = x_keys.iter().map(|v| fmt_num(*v)).collect();
            let top = *counts.iter().max().unwrap_or(&1) as f64 * 1.1;
            let x_range = (lo - width)..(hi + width);
            let y_keys = linear_ticks(0.0, top);
            let left = title(&left, &caption("histogram"), 13.0)?;
            let mut hist = ChartBuilder::on(&left)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(
                    Keyed::new(x_range.clone(), x_keys.clone()),
                    Keyed::new(0.0..top, y_keys.clone()),
                )?;
            hist.configure_mesh()
                .x_desc("latency (ms)")
                .y_desc("samples")
                .label_style((FONT, 12))
                .x_label_formatter(&|v| fmt_num(*v))
                .y_label_formatter(&|v| fmt_num(*v))
                .draw()?;
            notes.panel(PanelMeta {
                caption: "histogram".into(),
                x_axis: "latency (ms)".into(),
                y_axis: "samples".into(),
                x_ticks: x_labels.clone(),
                y_ticks: y_keys.iter().map(|v| fmt_num(*v)).collect(),
                series: vec![],
            });
            hist.draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let x0 = lo + i as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], BLUE.mix(0.5).filled())
            }))?;
            let right = title(&right, &caption("CDF"), 13.0)?;
            let f_keys = linear_ticks(0.0, 1.0);
            let mut cdf = ChartBuilder::on(&right)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(
                    Keyed::new(x_range.clone(), x_keys.clone()),
                    Keyed::new(0.0..1.0, f_keys.clone()),
                )?;
            cdf.configure_mesh()
                .x_desc("latency (ms)")
                .y_desc("fraction of samples")
                .label_style((FONT, 12))
                .x_label_formatter(&|v| fmt_num(*v))
                .y_label_formatter(&|v| fmt_num(*v))
                .draw()?;
            notes.panel(PanelMeta {
                caption: "CDF".into(),
                x_axis: "latency (ms)".into(),
                y_axis: "fraction of samples".into(),
                x_ticks: x_labels,
                y_ticks: f_keys.iter().map(|v| fmt_num(*v)).collect(),
                series: vec!["samples".into()],
            });
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
                    chart.draw_series(std::iter::once(PathElement::new(
                        vec![(v, 0.0), (v, chart_top)],
                        c.stroke_width(2),
                    )))?;
                    let at = chart.backend_coord(&(v, chart_top * 0.95));
                    notes.tip(at, format!("{name} {v:.4} ms"));
                    let label = TextStyle::from((FONT, 12).into_font()).color(&c);
                    chart.draw_series(std::iter::once(Text::new(
                        name.to_string(),
                        (v, chart_top * 0.97),
                        label,
                    )))?;
                }
            }
            Ok(())
        })?);
    }
    Ok(files)
}

//! SVG charts (plotters' SVG backend: text is SVG text, so no font library is
//! needed), one file per chart; each chart function returns the files it wrote,
//! and writes nothing when the records hold no data for it. This file holds
//! what they share: colours, axis ranges and labels, and the line panel.

mod batching;
mod gpu_vs_cpu;
mod latency_distribution;
mod precision;
mod precision_cost;
mod roofline;
mod seed;

pub use batching::batching;
pub use gpu_vs_cpu::gpu_vs_cpu;
pub use latency_distribution::latency_distribution;
pub use precision::precision;
pub use precision_cost::precision_cost;
pub use roofline::roofline;
pub use seed::seed;

use std::path::PathBuf;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::backend::BackendKind;
use crate::results::Record;

/// What a chart function returns: the files it wrote (none when the records
/// hold no data for it).
pub type Chart = Result<Vec<PathBuf>, Box<dyn std::error::Error>>;

pub(super) const FONT: &str = "sans-serif";
pub(super) const MIB: f64 = 1048576.0;

pub(super) fn color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// A range around `values` suited to a log axis (a little headroom each side,
/// always within 1e-300..1e300).
pub(super) fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return 0.1..10.0;
    }
    let pad = if hi / lo < 1.5 { 1.5 } else { 1.2 };
    // Ends well inside f64: plotters' log tick search steps from decade to
    // decade and never ends when a step overflows near f64::MAX or underflows
    // to 0 (a corrupt or edited results file can hold such values).
    const LIMIT: f64 = 1e300;
    (lo / pad).clamp(1.0 / LIMIT, LIMIT / 10.0)..(hi * pad).clamp(10.0 / LIMIT, LIMIT)
}

/// A short axis label: integers plainly, small and large values compactly.
pub(super) fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e6).contains(&a) {
        format!("{v:.0e}")
    } else if (v - v.round()).abs() < 1e-9 * a.max(1.0) {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

pub(super) fn software_note(records: &[Record]) -> &'static str {
    if records
        .iter()
        .any(|r| r.id.backend == BackendKind::Gpu && r.software_device)
    {
        " (GPU = software device: CPU timings)"
    } else {
        ""
    }
}

/// Draws the series' legend at `position`, on a translucent white box, as
/// every chart does.
pub(super) fn legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .draw()?;
    Ok(())
}

/// One panel of lines on log-log axes: `series` are (label, points).
pub(super) fn line_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
    y_log: bool,
    marks: &[(f64, f64)],
) -> Result<(), Box<dyn std::error::Error>> {
    let xr = log_range(series.iter().flat_map(|s| s.1.iter().map(|p| p.0)));
    let ys = series.iter().flat_map(|s| s.1.iter().map(|p| p.1));
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(caption, (FONT, 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .label_style((FONT, 12))
                .light_line_style(TRANSPARENT)
                .x_label_formatter(&|v| fmt_num(*v))
                .y_label_formatter(&|v| fmt_num(*v))
                .draw()?;
            for (i, (label, pts)) in series.iter().enumerate() {
                let c = color(i);
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?
                    .label(label.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                    });
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
            }
            if !marks.is_empty() {
                chart
                    .draw_series(
                        marks
                            .iter()
                            .map(|&p| Circle::new(p, 9, BLACK.stroke_width(2))),
                    )?
                    .label("knee: no larger batch adds 5% or more")
                    .legend(|(x, y)| Circle::new((x + 9, y), 6, BLACK.stroke_width(2)));
            }
            legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        }};
    }
    if y_log {
        // Dims and batches are powers of two: ticks at powers of two read best.
        draw!(builder.build_cartesian_2d(xr.log_scale().base(2.0), log_range(ys).log_scale())?);
    } else {
        let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        let pad = ((hi - lo) * 0.1).max(1e-9);
        draw!(builder
            .build_cartesian_2d(xr.log_scale().base(2.0), (lo.min(0.0) - pad)..(hi + pad))?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value near f64::MAX (an edited results file) made the log axis's
    /// tick search endless; the range now stays where plotters can step.
    #[test]
    fn log_axes_over_extreme_values_still_draw() {
        for ys in [[0.01, 1e308], [1e-320, 10.0], [f64::MAX, f64::MAX]] {
            let r = log_range(ys.iter().copied());
            assert!(
                r.start > 0.0 && r.end <= 1e300 && r.start < r.end,
                "{ys:?}: {r:?}"
            );
            let path =
                std::env::temp_dir().join(format!("kernel-lab-logaxis-{}.svg", std::process::id()));
            {
                let root = SVGBackend::new(&path, (400, 300)).into_drawing_area();
                let series = vec![("s".to_string(), vec![(128.0, ys[0]), (256.0, ys[1])])];
                line_panel(&root, "c", "x", "y", &series, true, &[]).expect("drawn");
            }
            let _ = std::fs::remove_file(&path);
        }
    }
}

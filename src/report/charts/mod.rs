//! SVG charts (plotters' SVG backend: text is SVG text, so no font library is
//! needed), one file per chart; each chart function returns the files it wrote,
//! and writes nothing when the records hold no data for it. Line charts are
//! built of [`panel`]s (ticks, legends beside the data, uncertainty bars,
//! unmeasured points marked, tooltips); colours come from [`palette`], one
//! meaning per colour across a report. This file holds what they share.

mod batching;
pub mod canvas;
mod gpu_vs_cpu;
mod latency_distribution;
pub mod palette;
pub mod panel;
mod precision;
mod precision_cost;
mod roofline;
mod seed;
pub mod ticks;

pub use batching::batching;
pub use gpu_vs_cpu::gpu_vs_cpu;
pub use latency_distribution::latency_distribution;
pub use precision::precision;
pub use precision_cost::precision_cost;
pub use roofline::roofline;
pub use seed::seed;

use std::path::PathBuf;

use crate::backend::BackendKind;
use crate::results::Record;
pub use panel::{Marker, Panel, Pt, Series};

/// What a chart function returns: the files it wrote (none when the records
/// hold no data for it).
pub type Chart = Result<Vec<PathBuf>, Box<dyn std::error::Error>>;

pub(super) const FONT: &str = "sans-serif";
pub(super) const MIB: f64 = 1048576.0;

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

/// `series` in groups of at most [`panel::MAX_SERIES`], sorted by label
/// (numbers by value): a chart draws one panel per group instead of
/// dropping series or burying the data under its legend.
pub(super) fn facet(mut series: Vec<Series>) -> Vec<Vec<Series>> {
    series.sort_by(|a, b| panel::natural_cmp(&a.label, &b.label));
    let n = series.len().div_ceil(panel::MAX_SERIES).max(1);
    // Even groups: 9 series make 5 + 4, not 8 + 1.
    let per = series.len().div_ceil(n).max(1);
    let mut out = Vec::new();
    while !series.is_empty() {
        let rest = series.split_off(per.min(series.len()));
        out.push(std::mem::replace(&mut series, rest));
    }
    out
}

/// The caption of part `i` of `n` of a faceted panel.
pub(super) fn part(caption: &str, i: usize, n: usize) -> String {
    if n > 1 {
        format!("{caption} ({}/{n})", i + 1)
    } else {
        caption.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value near f64::MAX (an edited results file) made the log axis's
    /// tick search endless; every panel over extreme values still draws.
    #[test]
    fn panels_over_extreme_values_still_draw() {
        for ys in [
            [0.01, 1e308],
            [1e-320, 10.0],
            [f64::MAX, f64::MAX],
            [-f64::MAX, f64::MAX],
        ] {
            let dir = std::env::temp_dir();
            let canvas = canvas::Canvas::new(
                dir.join(format!("kernel-lab-extreme-{}.svg", std::process::id())),
                (500, 400),
            );
            let path = canvas.path.clone();
            let mut p = Panel::new("c", "x", "y");
            let mut s = Series::new("s", "s");
            s.points = vec![Pt::new(128.0, ys[0]), Pt::new(256.0, ys[1])];
            p.series.push(s);
            canvas
                .draw(|root, notes| panel::draw(root, &p, notes))
                .unwrap_or_else(|e| panic!("{ys:?}: {e}"));
            let _ = std::fs::remove_file(&path);
        }
    }

    #[test]
    fn facets_hold_every_series_in_even_groups() {
        let s: Vec<Series> = (0..18).map(|i| Series::new(format!("B{i}"), "k")).collect();
        let f = facet(s);
        assert_eq!(f.iter().map(Vec::len).collect::<Vec<_>>(), [6, 6, 6]);
        assert_eq!(f[0][0].label, "B0");
        assert_eq!(f[2][5].label, "B17");
    }
}

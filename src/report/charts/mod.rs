//! SVG charts (plotters' SVG backend: text is SVG text, so no font library is
//! needed), one file per chart; each chart function returns the files it wrote,
//! and writes nothing when the records hold no data for it. Line charts are
//! built of [`panel`]s (ticks, legends beside the data, uncertainty bars,
//! unmeasured points marked, tooltips); colours come from [`palette`], one
//! meaning per colour across a report; `common` holds what they share.

mod batching;
pub mod canvas;
pub mod common;
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

pub use common::Chart;
pub use panel::{Marker, Panel, Pt, Series};

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
}

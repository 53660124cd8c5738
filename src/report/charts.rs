//! SVG charts (plotters' SVG backend: text is SVG text, so no font library is
//! needed). One function per chart; each returns the files it wrote, and writes
//! nothing when the records hold no data for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{measured, p50};
use crate::backend::Ceilings;
use crate::results::Record;
use crate::workload::Op;

type Chart = Result<Vec<PathBuf>, Box<dyn std::error::Error>>;

const FONT: &str = "sans-serif";
const MIB: f64 = 1048576.0;

fn color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// A range around `values` suited to a log axis (a little headroom each side).
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return 0.1..10.0;
    }
    let (lo, hi) = if hi / lo < 1.5 {
        (lo / 1.5, hi * 1.5)
    } else {
        (lo / 1.2, hi * 1.2)
    };
    lo..hi
}

/// A short axis label: integers plainly, small and large values compactly.
fn fmt_num(v: f64) -> String {
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

fn software_note(records: &[Record]) -> &'static str {
    if records
        .iter()
        .any(|r| r.backend == "gpu" && r.software_device)
    {
        " (GPU = software device: CPU timings)"
    } else {
        ""
    }
}

/// One panel of lines on log-log axes: `series` are (label, points).
fn line_panel(
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
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FONT, 12))
                .draw()?;
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

/// The seed's figure, per op, backend and precision: memory (top) and latency
/// (bottom) vs dim, a line per batch, a panel per sequence length.
pub fn seed(records: &[Record], out: &Path) -> Chart {
    let mut groups: BTreeMap<(String, String, String), Vec<&Record>> = BTreeMap::new();
    for r in measured(records) {
        groups
            .entry((
                r.op.name().into(),
                r.backend.clone(),
                r.precision.name().into(),
            ))
            .or_default()
            .push(r);
    }
    let mut files = Vec::new();
    for ((op, backend, precision), rs) in groups {
        let dims: std::collections::BTreeSet<u32> = rs.iter().map(|r| r.dim).collect();
        if dims.len() < 2 {
            continue;
        }
        let seqs: std::collections::BTreeSet<u32> = rs.iter().map(|r| r.seq).collect();
        let path = out.join(format!("seed-{op}-{backend}-{precision}.svg"));
        let root = SVGBackend::new(&path, (520 * seqs.len() as u32, 760)).into_drawing_area();
        root.fill(&WHITE)?;
        let soft = if backend == "gpu" && rs[0].software_device {
            ", software device"
        } else {
            ""
        };
        let root = root.titled(
            &format!(
                "{op} {precision} on {backend} ({}{soft}): memory and latency vs dim",
                rs[0].adapter
            ),
            (FONT, 18),
        )?;
        let panels = root.split_evenly((2, seqs.len()));
        for (col, &seq) in seqs.iter().enumerate() {
            let mut by_batch: BTreeMap<u32, Vec<&Record>> = BTreeMap::new();
            for r in rs.iter().filter(|r| r.seq == seq) {
                by_batch.entry(r.batch).or_default().push(r);
            }
            let series = |f: &dyn Fn(&Record) -> f64| -> Vec<(String, Vec<(f64, f64)>)> {
                by_batch
                    .iter()
                    .map(|(b, v)| {
                        let mut pts: Vec<(f64, f64)> =
                            v.iter().map(|r| (r.dim as f64, f(r))).collect();
                        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                        (format!("batch {b}"), pts)
                    })
                    .collect()
            };
            let mem = series(&|r| {
                r.measured
                    .as_ref()
                    .map_or(0.0, |m| m.memory_bytes.measured.total as f64 / MIB)
            });
            line_panel(
                &panels[col],
                &format!("seq {seq}: memory"),
                "dim",
                "measured MiB",
                &mem,
                true,
                &[],
            )?;
            let lat = series(&p50);
            line_panel(
                &panels[seqs.len() + col],
                &format!("seq {seq}: latency"),
                "dim",
                "p50 latency (ms)",
                &lat,
                true,
                &[],
            )?;
        }
        root.present()?;
        files.push(path.clone());
    }
    Ok(files)
}

/// Histogram and CDF of the most-sampled point of each backend, p50/p95/p99 marked.
pub fn latency_distribution(records: &[Record], out: &Path) -> Chart {
    let mut files = Vec::new();
    for backend in ["gpu", "cpu"] {
        let Some(r) = measured(records)
            .filter(|r| r.backend == backend)
            .max_by_key(|r| r.measured.as_ref().map_or(0, |m| m.samples))
        else {
            continue;
        };
        let m = r.measured.as_ref().expect("filtered");
        if m.samples < 5 {
            continue;
        }
        let ms: Vec<f64> = m.raw_ns.iter().map(|&n| n as f64 * 1e-6).collect();
        let (lo, hi) = ms
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
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
                "{} {} B{} S{} D{} on {}{soft}: {} samples ({:?})",
                r.op, r.precision, r.batch, r.seq, r.dim, r.adapter, m.samples, m.timing_method
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
            .build_cartesian_2d(x_range, 0.0..1.0)?;
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
        for (name, v, c) in marks {
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
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::MiddleRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FONT, 12))
                .draw()?;
        }
        root.present()?;
        files.push(path.clone());
    }
    Ok(files)
}

/// Key of a point regardless of backend.
type ShapeKey = (Op, String, u32, u32, u32, u32);

fn shape_key(r: &Record) -> ShapeKey {
    (
        r.op,
        r.precision.name().into(),
        r.batch,
        r.seq,
        r.dim,
        r.vocab,
    )
}

/// CPU p50 over GPU p50 for every point measured on both backends.
pub fn speedups(records: &[Record]) -> BTreeMap<ShapeKey, f64> {
    let cpu: BTreeMap<ShapeKey, f64> = measured(records)
        .filter(|r| r.backend == "cpu")
        .map(|r| (shape_key(r), p50(r)))
        .collect();
    measured(records)
        .filter(|r| r.backend == "gpu")
        .filter_map(|r| cpu.get(&shape_key(r)).map(|c| (shape_key(r), c / p50(r))))
        .collect()
}

/// GPU over CPU speedup vs dim, a line per (op, precision, batch, seq); 1 = crossover.
pub fn gpu_vs_cpu(records: &[Record], out: &Path) -> Chart {
    let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for ((op, prec, b, s, d, _), x) in speedups(records) {
        lines
            .entry(format!("{op} {prec} B{b} S{s}"))
            .or_default()
            .push((d as f64, x));
    }
    lines.retain(|_, v| v.len() >= 2);
    if lines.is_empty() {
        return Ok(vec![]);
    }
    let path = out.join("gpu-vs-cpu.svg");
    let root = SVGBackend::new(&path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut series: Vec<(String, Vec<(f64, f64)>)> = lines.into_iter().take(12).collect();
    for s in &mut series {
        s.1.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    // The crossover line: speedup 1.
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .collect();
    let (x0, x1) = xs
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
    series.push(("speedup 1 (crossover)".into(), vec![(x0, 1.0), (x1, 1.0)]));
    line_panel(
        &root,
        &format!(
            "GPU speedup over CPU (CPU p50 / GPU p50){}",
            software_note(records)
        ),
        "dim",
        "speedup (x)",
        &series,
        true,
        &[],
    )?;
    root.present()?;
    Ok(vec![path.clone()])
}

/// Group key for batching curves.
type BatchKey = (String, Op, String, u32, u32);

/// (batch, tokens/s, p99 ms) curves for every group with four batches or more.
pub fn batch_curves(records: &[Record]) -> BTreeMap<BatchKey, Vec<(u32, f64, f64)>> {
    let mut groups: BTreeMap<BatchKey, Vec<(u32, f64, f64)>> = BTreeMap::new();
    for r in measured(records) {
        let m = r.measured.as_ref().expect("filtered");
        let tps = m
            .throughput
            .as_ref()
            .map_or(m.tokens_per_s, |t| t.tokens_per_s);
        groups
            .entry((
                r.backend.clone(),
                r.op,
                r.precision.name().into(),
                r.seq,
                r.dim,
            ))
            .or_default()
            .push((r.batch, tps, m.latency_ms.p99));
    }
    // A knee needs a curve: four batches or more.
    groups.retain(|_, v| v.len() >= 4);
    for v in groups.values_mut() {
        v.sort_by_key(|p| p.0);
    }
    groups
}

/// The batch where throughput stops growing: the first batch that no larger
/// batch beats by `gain` or more (robust to one noisy step). `None` when only
/// the largest batch qualifies, i.e. throughput was still growing.
pub fn knee(curve: &[(u32, f64, f64)], gain: f64) -> Option<u32> {
    let last = curve.len().checked_sub(1)?;
    (0..last)
        .find(|&i| {
            curve[i + 1..]
                .iter()
                .all(|later| later.1 < curve[i].1 * (1.0 + gain))
        })
        .map(|i| curve[i].0)
}

/// Tokens/s and p99 vs batch, the knee (gain < 5%) marked.
pub fn batching(records: &[Record], out: &Path) -> Chart {
    let curves = batch_curves(records);
    if curves.is_empty() {
        return Ok(vec![]);
    }
    let path = out.join("batching.svg");
    let root = SVGBackend::new(&path, (1200, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "batching: throughput and tail latency{}",
            software_note(records)
        ),
        (FONT, 18),
    )?;
    let (left, right) = root.split_horizontally(600);
    let label = |(backend, op, prec, s, d): &BatchKey| format!("{backend} {op} {prec} S{s} D{d}");
    let tps: Vec<(String, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|(k, v)| {
            let knee = knee(v, 0.05).map_or(String::new(), |b| format!(", knee at B{b}"));
            (
                format!("{}{knee}", label(k)),
                v.iter().map(|p| (p.0 as f64, p.1)).collect(),
            )
        })
        .collect();
    let knees: Vec<(f64, f64)> = curves
        .values()
        .filter_map(|v| {
            let b = knee(v, 0.05)?;
            v.iter().find(|p| p.0 == b).map(|p| (b as f64, p.1))
        })
        .collect();
    line_panel(
        &left,
        "tokens/s (sustained)",
        "batch",
        "tokens per second",
        &tps,
        true,
        &knees,
    )?;
    let p99: Vec<(String, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|(k, v)| (label(k), v.iter().map(|p| (p.0 as f64, p.2)).collect()))
        .collect();
    line_panel(
        &right,
        "p99 latency",
        "batch",
        "p99 latency (ms)",
        &p99,
        true,
        &[],
    )?;
    root.present()?;
    Ok(vec![path.clone()])
}

/// Error (left) and speed (right) vs dim, a line per backend x op x precision.
pub fn precision(records: &[Record], out: &Path) -> Chart {
    let precisions: std::collections::BTreeSet<&str> =
        measured(records).map(|r| r.precision.name()).collect();
    if precisions.len() < 2 {
        return Ok(vec![]);
    }
    // The largest batch x seq of the run, so each line is one shape family.
    let Some((b, s)) = measured(records)
        .map(|r| (r.batch, r.seq))
        .max_by_key(|&(b, s)| b as u64 * s as u64)
    else {
        return Ok(vec![]);
    };
    let mut err: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut speed: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in measured(records).filter(|r| r.batch == b && r.seq == s && r.op != Op::Embedding) {
        let key = format!("{} {} {}", r.backend, r.op, r.precision);
        let m = r.measured.as_ref().expect("filtered");
        err.entry(key.clone())
            .or_default()
            .push((r.dim as f64, r.max_rel_err.unwrap_or(0.0).max(1e-12)));
        speed.entry(key).or_default().push((r.dim as f64, m.gflops));
    }
    let sorted = |m: BTreeMap<String, Vec<(f64, f64)>>| -> Vec<(String, Vec<(f64, f64)>)> {
        m.into_iter()
            .map(|(k, mut v)| {
                v.sort_by(|a, b| a.0.total_cmp(&b.0));
                (k, v)
            })
            .collect()
    };
    let (err, speed) = (sorted(err), sorted(speed));
    if err.is_empty() {
        return Ok(vec![]);
    }
    let path = out.join("precision.svg");
    let root = SVGBackend::new(&path, (1200, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("FP32 vs FP16 at B{b} S{s}{}", software_note(records)),
        (FONT, 18),
    )?;
    let (left, right) = root.split_horizontally(600);
    line_panel(
        &left,
        "max error / sum|x*w| vs the f64 reference",
        "dim",
        "normalised error",
        &err,
        true,
        &[],
    )?;
    line_panel(&right, "speed", "dim", "GFLOP/s", &speed, true, &[])?;
    root.present()?;
    Ok(vec![path.clone()])
}

/// Achieved GFLOP/s vs arithmetic intensity, against each backend's ceilings:
/// the probed copy bandwidth and FMA peak when the run measured them, else the
/// best GB/s and GFLOP/s any point of this run reached (labelled as such).
pub fn roofline(records: &[Record], ceilings: &BTreeMap<String, Ceilings>, out: &Path) -> Chart {
    let mut series = Vec::new();
    let mut all_x = Vec::new();
    for (i, backend) in ["gpu", "cpu"].into_iter().enumerate() {
        let rs: Vec<&Record> = measured(records).filter(|r| r.backend == backend).collect();
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
        let (bw, peak, source) = match ceilings.get(backend) {
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
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .draw()?;
    root.present()?;
    Ok(vec![path.clone()])
}

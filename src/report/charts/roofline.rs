//! The roofline, in two panels: achieved GFLOP/s vs arithmetic intensity
//! against each backend's roof (the ops that compute), and achieved GB/s vs
//! the bytes each call moves against the copy ceiling (every op, the gather
//! included: it does no FLOP, so the compute side cannot show it).

use std::collections::BTreeMap;
use std::path::Path;

use super::canvas::{title, Canvas};
use super::common::{software_note, Chart};
use super::panel::{draw, grid};
use super::panel::{Marker, Panel, Pt, Series};
use super::ticks::fmt_num;
use crate::backend::{BackendKind, Ceilings};
use crate::report::analysis::{measured, p50};
use crate::results::Record;

/// Both panels: the probed copy bandwidth and FMA peak where the run measured
/// them, else the best GB/s and GFLOP/s any point reached (labelled so).
pub fn roofline(
    records: &[Record],
    ceilings: &BTreeMap<BackendKind, Ceilings>,
    out: &Path,
) -> Chart {
    let mut compute = Panel::new(
        "compute: GFLOP/s vs FLOP per byte (lines: each backend's roof)",
        "arithmetic intensity (FLOP/byte)",
        "GFLOP/s",
    );
    compute.x_at_data = false;
    let mut memory = Panel::new(
        "memory: GB/s vs bytes each call moves (above the copy ceiling: in cache)",
        "MiB moved per call",
        "GB/s",
    );
    memory.x_at_data = false;
    for backend in BackendKind::ALL {
        let rs: Vec<&Record> = measured(records)
            .filter(|r| r.id.backend == backend)
            .collect();
        if rs.is_empty() {
            continue;
        }
        fn m<'a>(r: &&'a Record) -> &'a crate::results::Measured {
            r.measured.as_ref().expect("measured")
        }
        let best_bw = rs.iter().map(|r| m(r).gbps).fold(0.0, f64::max);
        let best_fl = rs.iter().map(|r| m(r).gflops).fold(0.0, f64::max);
        let (bw, peak, source) = match ceilings.get(&backend) {
            Some(c) => (c.copy_gbps, c.fma_gflops, "probed"),
            None => (best_bw, best_fl, "best observed"),
        };
        let marker = if backend == BackendKind::Gpu {
            Marker::Triangle
        } else {
            Marker::Circle
        };
        let mut pts = Series::new(format!("{backend} points"), backend.to_string());
        pts.marker = marker;
        let mut moved = pts.clone();
        for r in &rs {
            let mm = m(r);
            let what = format!(
                "{} {} {} {}",
                backend,
                r.id.op(),
                r.id.precision,
                r.id.shape_label()
            );
            if mm.arithmetic_intensity > 0.0 && mm.gflops > 0.0 {
                pts.points
                    .push(Pt::new(mm.arithmetic_intensity, mm.gflops).tip(format!(
                        "{what}: {:.2} GFLOP/s at {:.2} FLOP/byte",
                        mm.gflops, mm.arithmetic_intensity
                    )));
            }
            let mib = mm.gbps * 1e9 * p50(r) * 1e-3 / 1048576.0;
            if mib > 0.0 && mm.gbps > 0.0 {
                moved.points.push(
                    Pt::new(mib, mm.gbps)
                        .tip(format!("{what}: {:.1} GB/s moving {mib:.2} MiB", mm.gbps)),
                );
            }
        }
        // Unjoined: neither panel's x orders the points into a line.
        for s in [&mut pts, &mut moved] {
            s.line = false;
        }
        if !pts.points.is_empty() {
            let xs: Vec<f64> = pts.points.iter().map(|p| p.x).collect();
            let (lo, hi) = xs
                .iter()
                .fold((f64::INFINITY, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
            let ridge = peak / bw;
            let (lo, hi) = ((lo / 2.0).min(ridge / 2.0), (hi * 2.0).max(ridge * 2.0));
            let mut roof = Series::new(
                format!(
                    "{backend} roof: {} GB/s, {} GFLOP/s ({source})",
                    fmt_num(bw),
                    fmt_num(peak)
                ),
                backend.to_string(),
            );
            roof.marker = Marker::None;
            roof.dashed = true;
            roof.points = (0..=40)
                .map(|k| lo * (hi / lo).powf(k as f64 / 40.0))
                .map(|x| Pt::new(x, (x * bw).min(peak)))
                .collect();
            compute.series.push(pts);
            compute.series.push(roof);
        }
        if !moved.points.is_empty() {
            let xs = moved.points.iter().map(|p| p.x);
            let (lo, hi) = xs.fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
            let mut ceiling = Series::new(
                format!("{backend} copy ceiling {} GB/s ({source})", fmt_num(bw)),
                backend.to_string(),
            );
            ceiling.marker = Marker::None;
            ceiling.dashed = true;
            ceiling.points = vec![Pt::new(lo, bw), Pt::new(hi, bw)];
            memory.series.push(moved);
            memory.series.push(ceiling);
            if let Some(cache) = ceilings.get(&backend).and_then(|c| c.cache_copy_gbps) {
                let mut line = Series::new(
                    format!("{backend} in-cache copy {} GB/s (probed)", fmt_num(cache)),
                    format!("{backend} cache"),
                );
                line.marker = Marker::None;
                line.dashed = true;
                line.points = vec![Pt::new(lo, cache), Pt::new(hi, cache)];
                memory.series.push(line);
            }
        }
    }
    let panels: Vec<Panel> = [compute, memory]
        .into_iter()
        .filter(Panel::has_data)
        .collect();
    if panels.is_empty() {
        return Ok(vec![]);
    }
    let canvas = Canvas::new(out.join("roofline.svg"), (700 * panels.len() as u32, 560));
    canvas.draw(|root, notes| {
        let body = title(
            root,
            &format!(
                "roofline: achieved against each backend's ceilings{}",
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

//! Precision: the projections' verification error vs dim (every shape of the
//! run), and its speed vs dim, a panel per batch x seq; a colour per
//! precision, CPU solid with circles, GPU dashed with triangles, so lines
//! that coincide stay visible.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::canvas::{title, Canvas};
use super::panel::{draw, grid};
use super::{facet, part, software_note, Chart, Marker, Panel, Pt, Series};
use crate::backend::BackendKind;
use crate::report::analysis::{measured, rate_band};
use crate::results::Record;
use crate::workload::{Op, Precision};

fn styled(backend: BackendKind, op: Op, precision: Precision, ops: usize) -> Series {
    let mut s = if ops > 1 {
        Series::new(
            format!("{backend} {op} {precision}"),
            format!("{op} {precision}"),
        )
    } else {
        Series::new(format!("{backend} {precision}"), precision.name())
    };
    if backend == BackendKind::Gpu {
        s.dashed = true;
        s.marker = Marker::Triangle;
    }
    s
}

/// Error (the largest over every batch x seq, the bar spanning smallest to
/// largest) and GFLOP/s per batch x seq, vs dim, for two precisions or more.
pub fn precision(records: &[Record], out: &Path) -> Chart {
    let mm: Vec<&Record> = measured(records)
        .filter(|r| r.id.op.uses_weight())
        .collect();
    let precisions: BTreeSet<Precision> = mm.iter().map(|r| r.id.precision).collect();
    if precisions.len() < 2 {
        return Ok(vec![]);
    }
    let ops = mm.iter().map(|r| r.id.op).collect::<BTreeSet<Op>>().len();
    // Error: per backend x precision x dim, over every shape.
    let mut err: BTreeMap<(BackendKind, Op, Precision), BTreeMap<u32, Vec<f64>>> = BTreeMap::new();
    for r in &mm {
        if let Some(e) = r.max_norm_err {
            err.entry((r.id.backend, r.id.op, r.id.precision))
                .or_default()
                .entry(r.id.dim)
                .or_default()
                .push(e.max(1e-12));
        }
    }
    let err_series: Vec<Series> = err
        .into_iter()
        .map(|((b, op, p), by_dim)| {
            let mut s = styled(b, op, p, ops);
            for (d, v) in by_dim {
                let (lo, hi) = v.iter().fold((f64::INFINITY, 0.0f64), |(a, b), &e| (a.min(e), b.max(e)));
                s.points.push(Pt::new(d as f64, hi).band(lo, hi).tip(format!(
                    "{b} {op} {p} D{d}: largest normalised error {hi:.2e} over {} shapes (smallest {lo:.2e})",
                    v.len()
                )));
            }
            s
        })
        .collect();
    let mut panels = Vec::new();
    let groups = facet(err_series);
    let n = groups.len();
    for (i, g) in groups.into_iter().enumerate() {
        let mut p = Panel::new(
            part(
                "kernel error, max |y - ref| / sum|x*w| (rounded inputs); bars: range over shapes",
                i,
                n,
            ),
            "dim",
            "normalised error",
        );
        p.series = g;
        panels.push(p);
    }
    // Speed: a panel per batch x seq, a line per backend x op x precision, and
    // per N where a projection is not square (several N share a dim: one
    // line each, not a vertical stroke through them).
    type Lines = BTreeMap<(BackendKind, Op, Precision, Option<u32>), Series>;
    let mut speed: BTreeMap<(u32, u32), Lines> = BTreeMap::new();
    fn line<'a>(
        speed: &'a mut BTreeMap<(u32, u32), Lines>,
        r: &Record,
        ops: usize,
    ) -> &'a mut Series {
        let id = &r.id;
        let n = (id.out_dim != id.dim).then_some(id.out_dim);
        speed
            .entry((id.batch, id.seq))
            .or_default()
            .entry((id.backend, id.op, id.precision, n))
            .or_insert_with(|| {
                let mut s = styled(id.backend, id.op, id.precision, ops);
                if let Some(n) = n {
                    s.label = format!("{} N{n}", s.label);
                }
                s
            })
    }
    for r in &mm {
        let m = r.measured.as_ref().expect("measured");
        let (lo, hi) = rate_band(r, m.gflops).unwrap_or((f64::NAN, f64::NAN));
        line(&mut speed, r, ops)
            .points
            .push(Pt::new(r.id.dim as f64, m.gflops).band(lo, hi).tip(format!(
                "{} {} {}: {:.2} GFLOP/s",
                r.id.backend,
                r.id.precision,
                r.id.shape_label(),
                m.gflops
            )));
    }
    for r in records.iter().filter(|r| {
        r.measured.is_none() && r.id.op.uses_weight() && precisions.contains(&r.id.precision)
    }) {
        let why = r
            .skipped
            .as_ref()
            .map_or("not measured".into(), |w| w.to_string());
        line(&mut speed, r, ops)
            .missing
            .push((r.id.dim as f64, why));
    }
    for ((b, s), lines) in speed {
        let groups = facet(lines.into_values().collect());
        let n = groups.len();
        for (i, g) in groups.into_iter().enumerate() {
            let mut p = Panel::new(part(&format!("speed at B{b} S{s}"), i, n), "dim", "GFLOP/s");
            p.series = g;
            panels.push(p);
        }
    }
    if !panels.iter().any(Panel::has_data) {
        return Ok(vec![]);
    }
    let cols = panels.len().min(3);
    let rows = panels.len().div_ceil(cols);
    let canvas = Canvas::new(
        out.join("precision.svg"),
        (520 * cols as u32, 380 * rows as u32 + 50),
    );
    canvas.draw(|root, notes| {
        let body = title(
            root,
            &format!(
                "projection precision: {}{}",
                precisions
                    .iter()
                    .map(|p| p.label())
                    .collect::<Vec<_>>()
                    .join(" vs "),
                software_note(records)
            ),
            18.0,
        )?;

        for (cell, p) in grid(&body, panels.len(), cols).iter().zip(&panels) {
            draw(cell, p, notes)?;
        }
        Ok(())
    })
}

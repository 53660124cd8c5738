//! Precision: the projections' verification error vs dim (every shape of the
//! run), and its speed vs dim, a panel per batch x seq; a colour per
//! precision, CPU solid with circles, GPU dashed with triangles, so lines
//! that coincide stay visible. A sweep over a model's layers is drawn by
//! layer instead: a panel per model x backend x batch x seq, the layers along
//! x, ms per call on y (several layers share a dim, and a line per output
//! width split one regime over five panels).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::canvas::{title, Canvas};
use super::common::{facet, part, software_note, Chart};
use super::panel::{draw, grid};
use super::panel::{Marker, Panel, Pt, Series};
use super::ticks::Scale as AxisScale;
use crate::backend::BackendKind;
use crate::data::Data;
use crate::models::{self, Model};
use crate::ops::Op;
use crate::precision::Precision;
use crate::report::analysis::{measured, p50, p50_ci, rate_band, seed_axes};
use crate::results::{PointId, Record};

/// A record's dim (the x axis here: records are filtered to the seed's axes).
fn dim(r: &Record) -> u32 {
    seed_axes(&r.id).map_or(0, |a| a.dim)
}

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
pub fn precision(records: &[Record], own: &[Model], out: &Path) -> Chart {
    let mm: Vec<&Record> = measured(records)
        .filter(|r| r.id.params.projection().is_some() && seed_axes(&r.id).is_some())
        .collect();
    let precisions: BTreeSet<Precision> = mm.iter().map(|r| r.id.precision).collect();
    if precisions.len() < 2 {
        return Ok(vec![]);
    }
    let ops = mm.iter().map(|r| r.id.op()).collect::<BTreeSet<Op>>().len();
    // Error: per backend x precision x dim, over every shape.
    let mut err: BTreeMap<(BackendKind, Op, Precision), BTreeMap<u32, Vec<f64>>> = BTreeMap::new();
    for r in &mm {
        if let Some(e) = r.max_norm_err {
            err.entry((r.id.backend, r.id.op(), r.id.precision))
                .or_default()
                .entry(dim(r))
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
    // Layer names along x need wider panels than dims do.
    let mut col_w = 520;
    if let Some(by_layer) = layer_panels(records, &precisions, own) {
        panels.extend(by_layer);
        col_w = 660;
    } else {
        speed_panels(&mm, records, &precisions, ops, &mut panels);
    }
    if !panels.iter().any(Panel::has_data) {
        return Ok(vec![]);
    }
    let cols = panels.len().min(3);
    let rows = panels.len().div_ceil(cols);
    let canvas = Canvas::new(
        out.join("precision.svg"),
        (col_w * cols as u32, 380 * rows as u32 + 50),
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

/// A model-layer sweep's speed: a panel per model x backend x batch x seq,
/// the model's projections along x in the preset's order, ms per call (p50,
/// the bar its 95% CI) on a log axis, a line per precision, so the gap between
/// the lines is what each precision saves on that layer. `None` unless every
/// projection of the records is a layer of a known model (a preset or one of
/// `own`, the spec's).
fn layer_panels(
    records: &[Record],
    precisions: &BTreeSet<Precision>,
    own: &[Model],
) -> Option<Vec<Panel>> {
    let rs: Vec<&Record> = records
        .iter()
        .filter(|r| r.id.params.projection().is_some() && precisions.contains(&r.id.precision))
        .collect();
    // (record, model, layer name, its place in the preset)
    let mut placed = Vec::new();
    for r in rs {
        let (model, layer) = r.layer.as_deref()?.split_once('/')?;
        let preset = models::find_in(own, model).ok()?;
        let at = preset.layers.iter().position(|l| l.layer == layer)?;
        placed.push((r, model, layer, at));
    }
    if placed.is_empty() {
        return None;
    }
    // Each model's measured layers at 1, 2, ... in the preset's order.
    let mut names: BTreeMap<&str, BTreeMap<usize, &str>> = BTreeMap::new();
    for &(_, model, layer, at) in &placed {
        names.entry(model).or_default().insert(at, layer);
    }
    let x_of = |model: &str, at: usize| {
        names[model]
            .keys()
            .position(|&a| a == at)
            .map_or(0.0, |i| i as f64 + 1.0)
    };
    // The data too: a point per layer and precision in each line.
    type Key<'a> = (&'a str, BackendKind, u32, u32, String);
    let mut lines: BTreeMap<Key, BTreeMap<Precision, Series>> = BTreeMap::new();
    for &(r, model, layer, at) in &placed {
        let id = &r.id;
        let data = Data {
            dist: id.dist,
            scale: id.scale,
        };
        let data = if data.is_default() {
            String::new()
        } else {
            format!(", {data}")
        };
        let a = seed_axes(id)?;
        let series = lines
            .entry((model, id.backend, a.batch, a.seq, data))
            .or_default()
            .entry(id.precision)
            .or_insert_with(|| styled(id.backend, id.op(), id.precision, 1));
        let x = x_of(model, at);
        if r.measured.is_none() {
            let why = r
                .skipped
                .as_ref()
                .map_or("not measured".into(), |w| w.to_string());
            series.missing.push((x, why));
            continue;
        }
        let ms = p50(r);
        let (lo, hi) = p50_ci(r).unwrap_or((f64::NAN, f64::NAN));
        let twin = PointId {
            precision: Precision::F32,
            ..*id
        };
        let fp32 = placed
            .iter()
            .find(|(o, ..)| o.id == twin && o.measured.is_some());
        let vs = match fp32 {
            Some((o, ..)) if id.precision != Precision::F32 => {
                format!(", {:.2}x FP32's time", ms / p50(o))
            }
            _ => String::new(),
        };
        series.points.push(Pt::new(x, ms).band(lo, hi).tip(format!(
            "{model} {layer} ({} -> {}), {} {} B{} S{}: {ms:.3} ms per call{vs}",
            a.dim, a.out_dim, id.backend, id.precision, a.batch, a.seq
        )));
    }
    let mut panels = Vec::new();
    for ((model, backend, b, s, data), by_precision) in lines {
        let mut p = Panel::new(
            format!("{model}: time by layer, {backend} B{b} S{s}{data}"),
            "layer",
            "ms per call (p50)",
        );
        p.y_scale = AxisScale::Log;
        p.x_names = names[model]
            .values()
            .enumerate()
            .map(|(i, n)| (i as f64 + 1.0, n.to_string()))
            .collect();
        p.series = by_precision.into_values().collect();
        panels.push(p);
    }
    Some(panels)
}

/// Speed vs dim: a panel per batch x seq (faceted), a line per backend x op x
/// precision, and per N where a projection is not square.
fn speed_panels(
    mm: &[&Record],
    records: &[Record],
    precisions: &BTreeSet<Precision>,
    ops: usize,
    panels: &mut Vec<Panel>,
) {
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
        let a = seed_axes(id).expect("filtered to the seed's axes");
        let n = (a.out_dim != a.dim).then_some(a.out_dim);
        speed
            .entry((a.batch, a.seq))
            .or_default()
            .entry((id.backend, id.op(), id.precision, n))
            .or_insert_with(|| {
                let mut s = styled(id.backend, id.op(), id.precision, ops);
                if let Some(n) = n {
                    s.label = format!("{} N{n}", s.label);
                }
                s
            })
    }
    for r in mm {
        let m = r.measured.as_ref().expect("measured");
        let (lo, hi) = rate_band(r, m.gflops).unwrap_or((f64::NAN, f64::NAN));
        line(&mut speed, r, ops)
            .points
            .push(Pt::new(dim(r) as f64, m.gflops).band(lo, hi).tip(format!(
                "{} {} {}: {:.2} GFLOP/s",
                r.id.backend,
                r.id.precision,
                r.id.shape_label(),
                m.gflops
            )));
    }
    for r in records.iter().filter(|r| {
        r.measured.is_none()
            && r.id.params.projection().is_some()
            && seed_axes(&r.id).is_some()
            && precisions.contains(&r.id.precision)
    }) {
        let why = r
            .skipped
            .as_ref()
            .map_or("not measured".into(), |w| w.to_string());
        line(&mut speed, r, ops).missing.push((dim(r) as f64, why));
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata::layer;
    use crate::results::{Skip, SkipKind};

    fn layer_sweep() -> Vec<Record> {
        let mut rs = Vec::new();
        for backend in ["cpu", "gpu"] {
            for (p, f) in [(Precision::F32, 2.0), (Precision::F16, 1.0)] {
                for (name, k, n) in [
                    ("qkv", 768, 2304),
                    ("attn-out", 768, 768),
                    ("mlp-up", 768, 3072),
                    ("mlp-down", 3072, 768),
                    ("lm-head", 768, 50257),
                ] {
                    let ms = f * (k * n) as f64 / 1e6;
                    let mut r = layer(&format!("gpt2-small/{name}"), backend, (1, 1, k, n), ms);
                    r.id.precision = p;
                    rs.push(r);
                }
            }
        }
        // The GPU's FP32 LM head was cut: a cross at its place, not a gap.
        let cut = rs
            .iter_mut()
            .find(|r| {
                r.id.backend == BackendKind::Gpu
                    && r.id.precision == Precision::F32
                    && r.id.axis("out_dim") == Some(50257)
            })
            .unwrap();
        cut.measured = None;
        cut.skipped = Some(Skip::new(SkipKind::Cut, "over budget"));
        rs
    }

    fn drawn(rs: &[Record], tag: &str) -> String {
        let dir =
            std::env::temp_dir().join(format!("kernel-lab-prec-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = precision(rs, &[], &dir).unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        svg
    }

    /// A model's layers are drawn by name, a panel per backend and regime, a
    /// line per precision: not a line per output width along dim.
    #[test]
    fn a_layer_sweep_is_drawn_by_layer() {
        let svg = drawn(&layer_sweep(), "layers");
        for want in [
            "gpt2-small: time by layer, cpu B1 S1",
            "gpt2-small: time by layer, gpu B1 S1",
            // The layers along x, in the preset's order.
            "x_ticks&quot;:[&quot;qkv&quot;,&quot;attn-out&quot;,&quot;mlp-up&quot;,&quot;mlp-down&quot;,&quot;lm-head&quot;]",
            "ms per call (p50)",
            "not measured (cut or skipped)",
            "0.50x FP32",
        ] {
            assert!(svg.contains(want), "the chart lacks {want}");
        }
        assert!(!svg.contains("N2304"), "a line per output width");
        assert!(!svg.contains("speed at B1 S1"));
    }

    /// Projections that are not all a preset's layers keep the view along dim.
    #[test]
    fn projections_without_layers_are_drawn_along_dim() {
        let mut rs = layer_sweep();
        rs[0].layer = None;
        let svg = drawn(&rs, "dims");
        assert!(svg.contains("speed at B1 S1"), "no speed-vs-dim panel");
        assert!(!svg.contains("time by layer"));
    }
}

//! The GPU's speedup over the CPU along the axis the sweep varies: where the
//! crossover lies, a panel per op and precision.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::canvas::{title, Canvas};
use super::common::{facet, part, software_note, Chart};
use super::panel::{draw, grid};
use super::panel::{Panel, Pt, Series};
use crate::backend::BackendKind;
use crate::report::analysis::{p50, p50_ci, varying_axis};
use crate::results::{PointId, Record};

/// GPU-over-CPU speedup (CPU p50 / GPU p50), a panel per op and precision, a
/// line per the other two axes; bars span the ratio of the medians' 95% CIs;
/// shapes measured on one backend only are marked; 1x drawn as a reference.
pub fn gpu_vs_cpu(records: &[Record], out: &Path) -> Chart {
    let on = |b: BackendKind, id: &PointId| PointId { backend: b, ..*id };
    let by_id: BTreeMap<PointId, &Record> = records.iter().map(|r| (r.id, r)).collect();
    // Every square shape either backend has a record of, keyed on the GPU.
    let shapes: BTreeSet<PointId> = records
        .iter()
        .filter(|r| r.id.is_square())
        .map(|r| on(BackendKind::Gpu, &r.id))
        .filter(|id| by_id.contains_key(&on(BackendKind::Cpu, id)) && by_id.contains_key(id))
        .collect();
    let mut by_panel: BTreeMap<(String, String), Vec<PointId>> = BTreeMap::new();
    for id in &shapes {
        by_panel
            .entry((id.op().name().into(), id.precision.name().into()))
            .or_default()
            .push(*id);
    }
    let mut panels = Vec::new();
    for ((op, precision), ids) in by_panel {
        let along = varying_axis(ids.iter());
        let mut lines: BTreeMap<String, Series> = BTreeMap::new();
        for id in &ids {
            let (g, c) = (by_id[id], by_id[&on(BackendKind::Cpu, id)]);
            let label = along.rest(id);
            let s = lines
                .entry(label.clone())
                .or_insert_with(|| Series::new(label.clone(), label));
            let x = along.of(id) as f64;
            match (g.measured.is_some(), c.measured.is_some()) {
                (true, true) => {
                    let v = p50(c) / p50(g);
                    let mut pt = Pt::new(x, v).tip(format!(
                        "{op} {precision} {}: CPU {:.4} ms / GPU {:.4} ms = {v:.2}x",
                        id.shape_label(),
                        p50(c),
                        p50(g)
                    ));
                    if let (Some(gc), Some(cc)) = (p50_ci(g), p50_ci(c)) {
                        pt = pt.band(cc.0 / gc.1, cc.1 / gc.0);
                    }
                    s.points.push(pt);
                }
                _ => {
                    let why = [g, c]
                        .iter()
                        .filter_map(|r| {
                            r.skipped.as_ref().map(|w| format!("{}: {w}", r.id.backend))
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    s.missing.push((x, why));
                }
            }
        }
        let series: Vec<Series> = lines
            .into_values()
            .filter(|s| !s.points.is_empty())
            .collect();
        if series.iter().all(|s| s.points.len() < 2) {
            continue;
        }
        let groups = facet(series);
        let n = groups.len();
        for (i, g) in groups.into_iter().enumerate() {
            let mut p = Panel::new(
                part(&format!("{op} {precision}"), i, n),
                along.name(),
                "speedup (x)",
            );
            p.series = g;
            p.refs.push((1.0, "1x: equal speed (crossover)".into()));
            panels.push(p);
        }
    }
    if panels.is_empty() {
        return Ok(vec![]);
    }
    let cols = panels.len().min(2);
    let rows = panels.len().div_ceil(cols);
    let canvas = Canvas::new(
        out.join("gpu-vs-cpu.svg"),
        (620 * cols as u32, 420 * rows as u32 + 50),
    );
    canvas.draw(|root, notes| {
        let body = title(
            root,
            &format!(
                "GPU speedup over CPU (CPU p50 / GPU p50; above 1x the GPU is faster){}",
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

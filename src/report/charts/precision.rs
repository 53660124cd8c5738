//! Precision: verification error and speed vs dim per backend, op and
//! precision.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::{line_panel, software_note, Chart, FONT};
use crate::report::analysis::measured;
use crate::results::Record;
use crate::workload::Op;

/// Error (left) and speed (right) vs dim, a line per backend x op x precision.
pub fn precision(records: &[Record], out: &Path) -> Chart {
    let precisions: std::collections::BTreeSet<crate::workload::Precision> =
        measured(records).map(|r| r.id.precision).collect();
    if precisions.len() < 2 {
        return Ok(vec![]);
    }
    // The largest batch x seq of the run, so each line is one shape family.
    let Some((b, s)) = measured(records)
        .map(|r| (r.id.batch, r.id.seq))
        .max_by_key(|&(b, s)| b as u64 * s as u64)
    else {
        return Ok(vec![]);
    };
    let mut err: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut speed: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in
        measured(records).filter(|r| r.id.batch == b && r.id.seq == s && r.id.op != Op::Embedding)
    {
        let key = format!("{} {} {}", r.id.backend, r.id.op, r.id.precision);
        let m = r.measured.as_ref().expect("filtered");
        err.entry(key.clone())
            .or_default()
            .push((r.id.dim as f64, r.max_norm_err.unwrap_or(0.0).max(1e-12)));
        speed
            .entry(key)
            .or_default()
            .push((r.id.dim as f64, m.gflops));
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
        &format!(
            "{} at B{b} S{s}{}",
            precisions
                .iter()
                .map(|p| p.label())
                .collect::<Vec<_>>()
                .join(" vs "),
            software_note(records)
        ),
        (FONT, 18),
    )?;
    let (left, right) = root.split_horizontally(600);
    line_panel(
        &left,
        "kernel error: max |y - ref| / sum|x*w| (rounded inputs)",
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

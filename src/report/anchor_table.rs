//! The anchor part of a report: our CPU numbers beside a reference library's
//! (PyTorch) on the same points of the same run, as ratios and a table.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::analysis::p50;
use crate::backend::BackendKind;
use crate::ops::op::Roof;
use crate::ops::Op;
use crate::precision::Precision;
use crate::results::Record;
use crate::results::{AnchorPoint, Anchors};
use crate::stats::Samples;

/// Each anchored point with the CPU record that measured the same shape.
fn pairs<'a>(records: &'a [Record], anchors: &'a Anchors) -> Vec<(&'a Record, &'a AnchorPoint)> {
    anchors
        .points
        .iter()
        .filter_map(|a| {
            records
                .iter()
                .find(|r| r.id.backend == BackendKind::Cpu && r.measured.is_some() && a.matches(r))
                .map(|r| (r, a))
        })
        .collect()
}

/// Median, min and max of `v` (not empty).
fn spread(v: Vec<f64>) -> Option<(f64, f64, f64)> {
    let s = Samples::new(v)?;
    let sorted = s.sorted();
    Some((s.quantile(0.5), sorted[0], sorted[sorted.len() - 1]))
}

/// A record's rate in the unit its op reads it by: GFLOP/s against the FMA
/// peak, GB/s against the copy bandwidth.
fn rate(r: &Record, m: &crate::results::Measured) -> (f64, &'static str) {
    match r.id.params.roof() {
        Roof::Memory => (m.gbps, "GB/s"),
        Roof::Compute => (m.gflops, "GFLOP/s"),
    }
}

/// A parameter's value in a table cell ("-" where the op has none).
fn cell(v: Option<u32>) -> String {
    v.map_or("-".to_string(), |v| v.to_string())
}

/// Sentences comparing our CPU backend with the anchor, per op and precision.
pub fn findings(records: &[Record], anchors: Option<&Anchors>) -> Vec<String> {
    let Some(anchors) = anchors else {
        return Vec::new();
    };
    if let Some(why) = &anchors.unavailable {
        return vec![format!("No same-run anchor: {why}.")];
    }
    let mut groups: BTreeMap<(Op, Precision), Vec<(&Record, &AnchorPoint)>> = BTreeMap::new();
    for (r, a) in pairs(records, anchors) {
        groups
            .entry((r.id.op(), r.id.precision))
            .or_default()
            .push((r, a));
    }
    let mut out = Vec::new();
    for ((op, prec), group) in groups {
        let ours = |r: &Record| {
            let m = r.measured.as_ref().expect("paired records are measured");
            rate(r, m).0
        };
        let unit = rate(group[0].0, group[0].0.measured.as_ref().expect("measured")).1;
        let timed: Vec<_> = group
            .iter()
            .filter(|(_, a)| a.best_ms().is_some())
            .collect();
        let skipped = group.len() - timed.len();
        let skip_note = if skipped > 0 {
            format!(
                "; {} took too long in {} ({})",
                skipped,
                anchors.library,
                group
                    .iter()
                    .find_map(|(_, a)| a.skipped.as_deref())
                    .unwrap_or("")
            )
        } else {
            String::new()
        };
        let Some((ratio, lo, hi)) = spread(
            timed
                .iter()
                .map(|(r, a)| a.best_ms().unwrap_or(f64::NAN) / p50(r))
                .collect(),
        ) else {
            out.push(format!(
                "CPU {op} {prec}: {} not timed on any of the {} points{skip_note}.",
                anchors.library,
                group.len()
            ));
            continue;
        };
        let ours_med = spread(timed.iter().map(|(r, _)| ours(r)).collect()).map_or(0.0, |s| s.0);
        let theirs_med =
            spread(timed.iter().filter_map(|(_, a)| a.throughput).collect()).map_or(0.0, |s| s.0);
        let fresh_cost = spread(
            timed
                .iter()
                .filter_map(|(_, a)| Some(a.fresh_p50_ms? / a.out_p50_ms?))
                .collect(),
        );
        let alloc = fresh_cost.map_or(String::new(), |(m, _, _)| {
            format!(
                "; {}'s usual call, which allocates its output, takes {m:.2}x its `out=` call at the median",
                anchors.library.split(' ').next().unwrap_or("the library")
            )
        });
        out.push(format!(
            "CPU {op} {prec} against {}: ours runs at {ratio:.2}x its throughput at the median over {} shapes (min {lo:.2}x, max {hi:.2}x); medians {ours_med:.1} vs {theirs_med:.1} {unit}{alloc}{skip_note}.",
            anchors.library,
            timed.len()
        ));
    }
    out
}

/// A markdown section with one row per anchored point.
pub fn section(records: &[Record], anchors: &Anchors) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Same-run anchor: {}\n", anchors.library);
    if let Some(why) = &anchors.unavailable {
        let _ = writeln!(s, "Unavailable: {why}\n");
        return s;
    }
    let _ = writeln!(
        s,
        "The library timed on the same CPU points right after the sweep, with the same thread count: \
         `fresh` is its usual call (allocates the output), `out=` writes a preallocated one as ours does. \
         Ratio = its faster call's median / our median (above 1: ours is faster).\n"
    );
    let _ = writeln!(
        s,
        "| op | prec | B | S | D | ours p50 ms | fresh p50 ms | out= p50 ms | ours | theirs | unit | ratio |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
    );
    for (r, a) in pairs(records, anchors) {
        let m = r.measured.as_ref().expect("paired records are measured");
        let (ours, unit) = rate(r, m);
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        let ratio = a.best_ms().map_or_else(
            || a.skipped.clone().unwrap_or_default(),
            |t| format!("{:.2}x", t / m.latency_ms.p50),
        );
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.3} | {} | {} | {ours:.1} | {} | {unit} | {ratio} |",
            r.id.op(),
            r.id.precision,
            cell(r.id.axis("batch")),
            cell(r.id.axis("seq")),
            cell(r.id.axis("dim")),
            m.latency_ms.p50,
            f(a.fresh_p50_ms),
            f(a.out_p50_ms),
            a.throughput.map_or("-".to_string(), |t| format!("{t:.1}")),
        );
    }
    let _ = writeln!(s);
    s
}

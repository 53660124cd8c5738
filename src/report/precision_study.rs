//! The precision study's analysis and findings: what each precision costs
//! (error against the full-precision data, overflow, top-k agreement) and what
//! it buys (speed against FP32 on the same points, memory), per backend and op.
//! Pure functions of the records; the charts are in charts/precision_cost.rs.

use std::collections::BTreeMap;

use super::analysis::{measured, median, p50, preferred_or_most_common};
use crate::backend::BackendKind;
use crate::data::{Data, Dist, Scale};
use crate::ops::Op;
use crate::precision::Precision;
use crate::results::{PointId, Record};

/// One precision on one backend and op over the points it shares with FP32
/// (same shape and data).
#[derive(Clone, Debug, PartialEq)]
pub struct Tradeoff {
    /// Median of FP32's p50 over this precision's p50: above 1 is faster.
    pub speedup_vs_f32: f64,
    /// Median relative Frobenius error against the full-precision data.
    pub rel_err: f64,
    /// Points it is the median of.
    pub points: usize,
}

/// The key of a trade-off: backend, op, precision.
pub type TradeoffKey = (BackendKind, Op, Precision);

/// The data the study's trade-offs are read on: scale 1, and the `normal`
/// distribution where the run has it (else the most common distribution).
pub fn tradeoff_dist(records: &[Record]) -> Option<Dist> {
    let dists = measured(records)
        .filter(|r| r.id.scale == Scale::ONE)
        .map(|r| r.id.dist);
    preferred_or_most_common(dists, Dist::Normal)
}

/// Every precision's trade-off on `dist` at scale 1, where FP32 ran the same points.
pub fn tradeoffs(records: &[Record], dist: Dist) -> BTreeMap<TradeoffKey, Tradeoff> {
    let data = Data {
        dist,
        scale: Scale::ONE,
    };
    let as_f32 = |id: &PointId| PointId {
        precision: Precision::F32,
        ..*id
    };
    let f32s: BTreeMap<PointId, &Record> = measured(records)
        .filter(|r| r.id.precision == Precision::F32)
        .map(|r| (r.id, r))
        .collect();
    let mut pairs: BTreeMap<TradeoffKey, Vec<(f64, f64)>> = BTreeMap::new();
    // An INT8 point without a weight is an FP16 gather: not a precision of its own.
    let own = |r: &&Record| r.id.precision != Precision::Int8 || r.id.params.projection().is_some();
    for r in measured(records)
        .filter(|r| r.id.data() == data)
        .filter(own)
    {
        let (Some(base), Some(cost)) = (f32s.get(&as_f32(&r.id)), &r.precision_cost) else {
            continue;
        };
        pairs
            .entry((r.id.backend, r.id.op(), r.id.precision))
            .or_default()
            .push((p50(base) / p50(r), cost.rel_frobenius_err));
    }
    pairs
        .into_iter()
        .map(|(k, v)| {
            let t = Tradeoff {
                speedup_vs_f32: median(v.iter().map(|p| p.0).collect()),
                rel_err: median(v.iter().map(|p| p.1).collect()),
                points: v.len(),
            };
            (k, t)
        })
        .collect()
}

/// Whether `(speed, err)` is dominated by another point of `all`: another is
/// at least as fast and as accurate, and better in one.
pub fn dominated(p: (f64, f64), all: &[(f64, f64)]) -> bool {
    all.iter()
        .any(|&q| q.0 >= p.0 && q.1 <= p.1 && (q.0 > p.0 || q.1 < p.1))
}

/// Non-finite outputs per precision, distribution and scale: (outputs that
/// overflowed, outputs compared), summed over the points measured.
pub fn overflows(records: &[Record]) -> BTreeMap<(Precision, Dist, Scale), (u64, u64)> {
    let mut out: BTreeMap<(Precision, Dist, Scale), (u64, u64)> = BTreeMap::new();
    for r in records.iter().filter(|r| r.verified) {
        if let Some(c) = &r.precision_cost {
            let e = out
                .entry((r.id.precision, r.id.dist, r.id.scale))
                .or_default();
            e.0 += c.non_finite;
            e.1 += c.elements;
        }
    }
    out
}

/// A scale and the outputs that overflowed there, of those compared.
type ScaleOverflow = (Scale, u64, u64);

/// Whether a record's output is a vocabulary: an LM head preset layer, or a
/// projection at least 10000 wide.
fn is_vocabulary(r: &Record) -> bool {
    r.layer.as_deref().is_some_and(|l| l.ends_with("lm-head"))
        || r.id.params.projection().is_some_and(|(_, n)| n >= 10_000)
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// The study's findings, in numbers.
pub fn findings(records: &[Record]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(dist) = tradeoff_dist(records) else {
        return out;
    };
    let t = tradeoffs(records, dist);
    let mut keys: Vec<(BackendKind, Op)> = t.keys().map(|&(b, o, _)| (b, o)).collect();
    keys.dedup();
    for (backend, op) in keys {
        let get = |p: Precision| t.get(&(backend, op, p));
        let (Some(f16), Some(bf16)) = (get(Precision::F16), get(Precision::Bf16)) else {
            continue;
        };
        let f32_err = get(Precision::F32).map_or(String::new(), |f| {
            format!(" (FP32's own rounding: {:.1e})", f.rel_err)
        });
        out.push(format!(
            "Precision cost of {op} on {backend} ({dist} data, median over {} points): FP16's relative error is {:.2e} at {:.2}x FP32's speed; BF16's is {:.2e}, {:.1}x FP16's, at {:.2}x FP16's speed{f32_err}.",
            f16.points.min(bf16.points),
            f16.rel_err,
            f16.speedup_vs_f32,
            bf16.rel_err,
            bf16.rel_err / f16.rel_err,
            bf16.speedup_vs_f32 / f16.speedup_vs_f32,
        ));
        if let Some(i8) = get(Precision::Int8) {
            out.push(format!(
                "INT8 weights (W8A16) on {op} on {backend}: relative error {:.2e}, {:.1}x BF16's, at {:.2}x FP32's speed, for 1 byte a weight plus a 4-byte scale per column (BF16 and FP16: 2 bytes).",
                i8.rel_err,
                i8.rel_err / bf16.rel_err,
                i8.speedup_vs_f32,
            ));
        }
    }
    // Overflow: the smallest scale at which each precision's outputs overflow, per distribution.
    let ov = overflows(records);
    let mut by_dist: BTreeMap<(Dist, Precision), Vec<ScaleOverflow>> = BTreeMap::new();
    for (&(p, d, s), &(n, m)) in &ov {
        by_dist.entry((d, p)).or_default().push((s, n, m));
    }
    let dists: std::collections::BTreeSet<Dist> = by_dist.keys().map(|k| k.0).collect();
    for d in dists {
        let mut parts = Vec::new();
        let mut tested = Vec::new();
        for p in Precision::ALL {
            let Some(v) = by_dist.get(&(d, p)) else {
                continue;
            };
            let max_scale = v.iter().map(|x| x.0).max().expect("non-empty");
            match v.iter().find(|x| x.1 > 0) {
                Some(&(s, n, m)) => parts.push(format!(
                    "{} overflows from scale {s} ({n} of {m} outputs Inf/NaN there)",
                    p.label()
                )),
                None => tested.push(format!("{} never (up to scale {max_scale})", p.label())),
            }
        }
        if !parts.is_empty() {
            parts.extend(tested);
            out.push(format!("Overflow with {d} data: {}.", parts.join("; ")));
        }
    }
    // Top-1 agreement of vocabulary outputs (the next token an LM head picks).
    let mut top: BTreeMap<(Precision, Dist), Vec<(f64, f64)>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.verified && is_vocabulary(r)) {
        if r.id.scale != Scale::ONE {
            continue;
        }
        if let Some(c) = &r.precision_cost {
            if let (Some(t1), Some(t5)) = (c.top1_agreement, c.top5_agreement) {
                top.entry((r.id.precision, r.id.dist))
                    .or_default()
                    .push((t1, t5));
            }
        }
    }
    if !top.is_empty() {
        let parts: Vec<String> = top
            .iter()
            .map(|(&(p, d), v)| {
                format!(
                    "{} on {d} data top-1 {} / top-5 {} (worst of {} points)",
                    p.label(),
                    pct(v.iter().map(|x| x.0).fold(1.0, f64::min)),
                    pct(v.iter().map(|x| x.1).fold(1.0, f64::min)),
                    v.len()
                )
            })
            .collect();
        out.push(format!(
            "Vocabulary outputs (LM head): rows whose largest logit, and five largest, match the full-precision result: {}.",
            parts.join("; ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::precision_cost::PrecisionCost;
    use crate::report::testdata::{resized, synthetic};

    fn cost(err: f64, non_finite: u64) -> PrecisionCost {
        PrecisionCost {
            rel_frobenius_err: err,
            norm_err_p50: err / 10.0,
            norm_err_p99: err,
            norm_err_max: err * 2.0,
            norm_err_cdf: vec![[0.5, err / 10.0], [1.0, err * 2.0]],
            row_cosine_min: Some(1.0),
            row_cosine_mean: Some(1.0),
            non_finite,
            elements: 1000,
            top1_agreement: Some(1.0),
            top5_agreement: Some(0.9),
        }
    }

    fn rec(p: Precision, dist: Dist, scale: f64, ms: f64, err: f64, nf: u64) -> Record {
        let mut r = resized(
            synthetic("matmul", "cpu", p, 8, 64, 512, ms),
            &[("out_dim", 50_000)],
        );
        r.id.dist = dist;
        r.id.scale = Scale::new(scale).unwrap();
        r.precision_cost = Some(cost(err, nf));
        r
    }

    #[test]
    fn findings_state_the_tradeoffs_overflow_and_agreement() {
        let rs = vec![
            rec(Precision::F32, Dist::Normal, 1.0, 2.0, 1e-7, 0),
            rec(Precision::F16, Dist::Normal, 1.0, 1.0, 4e-4, 0),
            rec(Precision::Bf16, Dist::Normal, 1.0, 0.8, 3.2e-3, 0),
            rec(Precision::Int8, Dist::Normal, 1.0, 1.0, 6.4e-3, 0),
            rec(Precision::F16, Dist::Llm, 64.0, 1.0, 4e-4, 0),
            rec(Precision::F16, Dist::Llm, 4096.0, 1.0, 4e-4, 300),
            rec(Precision::Bf16, Dist::Llm, 4096.0, 1.0, 3e-3, 0),
        ];
        let f = findings(&rs);
        let all = f.join("\n");
        assert!(
            all.contains("FP16's relative error is 4.00e-4 at 2.00x FP32's speed; BF16's is 3.20e-3, 8.0x FP16's, at 1.25x FP16's speed"),
            "{all}"
        );
        assert!(
            all.contains("INT8 weights (W8A16) on matmul on cpu: relative error 6.40e-3, 2.0x BF16's, at 2.00x FP32's speed"),
            "{all}"
        );
        assert!(
            all.contains("Overflow with llm data: FP16 overflows from scale 4096 (300 of 1000 outputs Inf/NaN there); BF16 never (up to scale 4096)"),
            "{all}"
        );
        assert!(
            all.contains("FP16 on normal data top-1 100.0% / top-5 90.0%"),
            "{all}"
        );
    }

    #[test]
    fn pareto_domination() {
        let pts = [(1.0, 1e-7), (2.0, 4e-4), (1.5, 5e-4)];
        assert!(!dominated(pts[0], &pts));
        assert!(!dominated(pts[1], &pts));
        assert!(dominated(pts[2], &pts));
    }
}

//! Analysis of the records that the charts and the findings share: which
//! records were measured, medians, GPU-over-CPU speedups and batching curves
//! with their knees. Pure functions of the records; nothing here draws.

use std::collections::{BTreeMap, BTreeSet};

use crate::backend::BackendKind;
use crate::data::Data;
use crate::ops::Op;
use crate::results::{PointId, Record};
use crate::sample_clocks::SampleClocks;
use crate::stats::Samples;

/// A point along the seed's axes: batch, seq, dim, and its output's width
/// (`out_dim` where the op has one, else `dim`); `None` for an op without
/// them, which the findings along those axes leave out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeedAxes {
    /// Batch.
    pub batch: u32,
    /// Sequence length.
    pub seq: u32,
    /// Model dimension.
    pub dim: u32,
    /// Output width.
    pub out_dim: u32,
}

/// `id` along the seed's axes, if its op has them.
pub fn seed_axes(id: &PointId) -> Option<SeedAxes> {
    let dim = id.axis("dim")?;
    Some(SeedAxes {
        batch: id.axis("batch")?,
        seq: id.axis("seq")?,
        dim,
        out_dim: id.axis("out_dim").unwrap_or(dim),
    })
}

/// The data every finding and chart but the precision study's reads: the
/// lab's historical data (uniform, scale 1) where the run has it, else the
/// data the most records ran on. A point measured on several data sets would
/// otherwise count several times in a dim exponent or a speedup.
pub fn primary_data(records: &[Record]) -> Option<Data> {
    preferred_or_most_common(records.iter().map(|r| r.id.data()), Data::default())
}

/// `preferred` if it is among `items`, else the item seen most often (the
/// largest of a tie); `None` when there are none.
pub fn preferred_or_most_common<K: Ord + Copy>(
    items: impl Iterator<Item = K>,
    preferred: K,
) -> Option<K> {
    let mut count: BTreeMap<K, usize> = BTreeMap::new();
    for k in items {
        *count.entry(k).or_default() += 1;
    }
    if count.contains_key(&preferred) {
        return Some(preferred);
    }
    count.into_iter().max_by_key(|&(_, n)| n).map(|(k, _)| k)
}

/// The records on [`primary_data`].
pub fn on_primary_data(records: &[Record]) -> Vec<Record> {
    let data = primary_data(records);
    records
        .iter()
        .filter(|r| Some(r.id.data()) == data)
        .cloned()
        .collect()
}

/// Records that carry a measurement.
pub fn measured(records: &[Record]) -> impl Iterator<Item = &Record> {
    records.iter().filter(|r| r.measured.is_some())
}

/// The median of some values (NaN when there are none).
pub fn median(v: Vec<f64>) -> f64 {
    Samples::new(v).map_or(f64::NAN, |s| s.quantile(0.5))
}

/// A record's median latency in ms (NaN when it was not measured).
pub fn p50(r: &Record) -> f64 {
    r.measured.as_ref().map_or(f64::NAN, |m| m.latency_ms.p50)
}

/// CPU p50 over GPU p50 (device time where the GPU timed itself) for every
/// square point (a gather, a square projection: the lines along dim) measured
/// on both backends, keyed by the GPU point.
pub fn speedups(records: &[Record]) -> BTreeMap<PointId, f64> {
    speedups_by(records, |r| Some(p50(r)))
}

/// A request end to end (the request's upload, the op, the readback; the
/// model's table and weight already loaded), median ms, where it was measured.
pub fn request_ms(r: &Record) -> Option<f64> {
    let p = r.measured.as_ref()?.phases_ms.as_ref()?;
    // Files from before the one-time load was split out re-uploaded the model per request.
    p.model_load.map(|_| p.request())
}

/// CPU over GPU of `metric` for every square point both backends measured it
/// on, keyed by the GPU point.
pub fn speedups_by(
    records: &[Record],
    metric: impl Fn(&Record) -> Option<f64>,
) -> BTreeMap<PointId, f64> {
    let on_cpu = |id: &PointId| PointId {
        backend: BackendKind::Cpu,
        ..*id
    };
    let cpu: BTreeMap<PointId, f64> = measured(records)
        .filter(|r| r.id.backend == BackendKind::Cpu)
        .filter_map(|r| Some((r.id, metric(r)?)))
        .collect();
    measured(records)
        .filter(|r| r.id.backend == BackendKind::Gpu && r.id.is_square())
        .filter_map(|r| Some((r.id, cpu.get(&on_cpu(&r.id))? / metric(r)?)))
        .collect()
}

/// Group key for batching curves: backend, op, precision, seq, dim, out_dim.
pub type BatchKey = (BackendKind, Op, String, u32, u32, u32);

/// (batch, tokens/s, p99 ms) curves for every group with four batches or more.
pub fn batch_curves(records: &[Record]) -> BTreeMap<BatchKey, Vec<(u32, f64, f64)>> {
    let mut groups: BTreeMap<BatchKey, Vec<(u32, f64, f64)>> = BTreeMap::new();
    for r in measured(records) {
        let Some(a) = seed_axes(&r.id) else { continue };
        let m = r.measured.as_ref().expect("filtered");
        let tps = m
            .throughput
            .as_ref()
            .map_or(m.tokens_per_s, |t| t.tokens_per_s);
        groups
            .entry((
                r.id.backend,
                r.id.op(),
                r.id.precision.name().into(),
                a.seq,
                a.dim,
                a.out_dim,
            ))
            .or_default()
            .push((a.batch, tps, m.latency_ms.p99));
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

/// The measured records whose samples ran on a slow GPU clock, slowest
/// first (the run report's quality line, the device report's doubts).
pub fn slow_clock_points(records: &[Record]) -> Vec<(&Record, SampleClocks)> {
    let mut slow: Vec<_> = records
        .iter()
        .filter_map(|r| Some((r, r.measured.as_ref()?.sm_clock_mhz?)))
        .filter(|(_, c)| c.is_slow())
        .collect();
    slow.sort_by_key(|(_, c)| c.min);
    slow
}

/// The 95% confidence interval of a record's median latency, ms.
pub fn p50_ci(r: &Record) -> Option<(f64, f64)> {
    let m = r.measured.as_ref()?;
    let [lo, hi] = m.latency_ms.median_ci95;
    (lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi).then_some((lo, hi))
}

/// A rate (GFLOP/s, tokens/s) that is inversely proportional to a record's
/// median latency, with the interval its median's CI gives it.
pub fn rate_band(r: &Record, rate: f64) -> Option<(f64, f64)> {
    let (lo, hi) = p50_ci(r)?;
    let p50 = p50(r);
    Some((rate * p50 / hi, rate * p50 / lo))
}

/// p99 over p50 of every point of `backend` with 20 samples or more whose
/// ratio is a number (an edited file can hold a p50 of zero): the points the
/// report's tail finding summarises.
pub fn tail_ratios(records: &[Record], backend: BackendKind) -> Vec<(f64, &Record)> {
    measured(records)
        .filter(|r| r.id.backend == backend && r.measured.as_ref().is_some_and(|m| m.samples >= 20))
        .map(|r| {
            let l = &r.measured.as_ref().expect("filtered").latency_ms;
            (l.p99 / l.p50, r)
        })
        .filter(|x| x.0.is_finite())
        .collect()
}

/// The point of `backend` with the worst tail (largest p99 over p50) among
/// those [`tail_ratios`] keeps: the one the report's tail finding names.
pub fn worst_tail(records: &[Record], backend: BackendKind) -> Option<(f64, &Record)> {
    tail_ratios(records, backend)
        .into_iter()
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// The axis a speedup line runs along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Along {
    Dim,
    Batch,
    Seq,
}

impl Along {
    pub fn name(self) -> &'static str {
        match self {
            Along::Dim => "dim",
            Along::Batch => "batch",
            Along::Seq => "seq",
        }
    }
    pub fn of(self, id: &PointId) -> u32 {
        id.axis(self.name()).unwrap_or(0)
    }
    /// The line's label: the two axes it does not run along.
    pub fn rest(self, id: &PointId) -> String {
        let v = |a: Along| a.of(id);
        match self {
            Along::Dim => format!("B{} S{}", v(Along::Batch), v(Along::Seq)),
            Along::Batch => format!("S{} D{}", v(Along::Seq), v(Along::Dim)),
            Along::Seq => format!("B{} D{}", v(Along::Batch), v(Along::Dim)),
        }
    }
}

/// The axis with the most distinct values among `ids` (dim on a tie: the
/// seed's axis).
pub fn varying_axis<'a>(ids: impl Iterator<Item = &'a PointId> + Clone) -> Along {
    [Along::Dim, Along::Batch, Along::Seq]
        .into_iter()
        .rev()
        .max_by_key(|a| {
            ids.clone()
                .map(|id| a.of(id))
                .collect::<BTreeSet<_>>()
                .len()
        })
        .unwrap_or(Along::Dim)
}

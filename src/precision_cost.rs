//! What a precision costs: a backend's output against the f64 result of the
//! original, full-precision data (input rounding + arithmetic + output
//! rounding together), as a distribution rather than one number.
//!
//! The per-element error is normalised as the kernel error is (see
//! reference.rs): `|y - y*| / sum_k |x_k * w_k|` for a projection, `|y - y*| / |y*|`
//! for a gather, with `y*` and the sum taken over the original data. Its
//! quantiles come from a log-spaced histogram (32 bins a decade, so within
//! 7.5% of the exact order statistic), which keeps memory fixed however many
//! elements are compared; the maximum is exact.

use serde::{Deserialize, Serialize};

/// Quantile levels of the per-element error kept in a record (the error CDF).
pub const CDF_LEVELS: [f64; 11] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0,
];

/// The precision cost of one point's output (over the rows verification checked).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrecisionCost {
    /// `||y - y*||_F / ||y*||_F` over the finite outputs.
    pub rel_frobenius_err: f64,
    /// Median of the per-element normalised error.
    pub norm_err_p50: f64,
    /// 99th percentile of the per-element normalised error.
    pub norm_err_p99: f64,
    /// Largest per-element normalised error (exact).
    pub norm_err_max: f64,
    /// `[level, error]` pairs at `CDF_LEVELS`: the error's CDF.
    pub norm_err_cdf: Vec<[f64; 2]>,
    /// Smallest cosine similarity of an output row with its full-precision
    /// row, over each row's finite outputs (0 where exactly one of the two is
    /// all zero, as when a format underflows; 1 where both are); absent when
    /// no row has a finite output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_cosine_min: Option<f64>,
    /// Mean cosine similarity of output rows with their full-precision rows
    /// (as [`Self::row_cosine_min`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_cosine_mean: Option<f64>,
    /// Outputs that are Inf or NaN (from finite original inputs: an overflow
    /// of the format, not a kernel fault).
    pub non_finite: u64,
    /// Output elements compared.
    pub elements: u64,
    /// Share of rows whose largest output (top-1, as for a vocabulary's next
    /// token) is the full-precision result's; projections with N >= 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top1_agreement: Option<f64>,
    /// Share of rows whose five largest outputs are the full-precision
    /// result's five (as a set); projections with N >= 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top5_agreement: Option<f64>,
}

/// Bins per decade of the error histogram.
const BINS_PER_DECADE: f64 = 32.0;
/// The smallest error the histogram resolves (smaller ones, zero included, share bin 0).
const LOG_MIN: f64 = -12.0;
/// Decades above [`LOG_MIN`] the histogram covers (errors above land in the last bin).
const DECADES: f64 = 16.0;
const BINS: usize = (DECADES * BINS_PER_DECADE) as usize + 2;

/// Accumulates the cost row by row.
#[derive(Clone, Debug)]
pub struct CostAccumulator {
    hist: Vec<u64>,
    max: f64,
    diff2: f64,
    ref2: f64,
    cos_min: f64,
    cos_sum: f64,
    cos_rows: u64,
    non_finite: u64,
    elements: u64,
    top1: Option<(u64, u64)>,
    top5: Option<(u64, u64)>,
}

impl CostAccumulator {
    /// An empty accumulator; `ranked` for a projection, whose rows' top-k
    /// agreement is measured when they are at least 2 and 5 wide.
    pub fn new(ranked: bool, width: usize) -> Self {
        CostAccumulator {
            hist: vec![0; BINS],
            max: 0.0,
            diff2: 0.0,
            ref2: 0.0,
            cos_min: f64::INFINITY,
            cos_sum: 0.0,
            cos_rows: 0,
            non_finite: 0,
            elements: 0,
            top1: (ranked && width >= 2).then_some((0, 0)),
            top5: (ranked && width >= 5).then_some((0, 0)),
        }
    }

    fn bin(err: f64) -> usize {
        if err.is_nan() || err == f64::INFINITY {
            return BINS - 1;
        }
        if err <= 0.0 {
            return 0;
        }
        let b = ((err.log10() - LOG_MIN) * BINS_PER_DECADE).floor();
        if b < 0.0 {
            0
        } else {
            (b as usize + 1).min(BINS - 1)
        }
    }

    /// The geometric middle of bin `b`'s range (0 for bin 0).
    fn bin_value(b: usize) -> f64 {
        if b == 0 {
            return 0.0;
        }
        10f64.powf(LOG_MIN + (b as f64 - 0.5) / BINS_PER_DECADE)
    }

    /// Adds one output row: `got` from the backend, `want` the full-precision
    /// f64 result, `scale` each element's normaliser.
    pub fn add_row(&mut self, got: &[f32], want: &[f64], scale: &[f64]) {
        let (mut dot, mut gg, mut ww) = (0.0f64, 0.0f64, 0.0f64);
        let mut finite = 0u64;
        for ((&g, &w), &s) in got.iter().zip(want).zip(scale) {
            self.elements += 1;
            let g = g as f64;
            if !g.is_finite() {
                self.non_finite += 1;
                continue;
            }
            let d = g - w;
            let err = if s > 0.0 {
                d.abs() / s
            } else if d == 0.0 {
                0.0
            } else {
                f64::INFINITY
            };
            finite += 1;
            self.hist[Self::bin(err)] += 1;
            // JSON holds no infinity: a nonzero output where the exact result
            // is exactly zero records the largest finite error.
            self.max = self.max.max(err.min(f64::MAX));
            self.diff2 += d * d;
            self.ref2 += w * w;
            dot += g * w;
            gg += g * g;
            ww += w * w;
        }
        if finite > 0 {
            let cos = if gg > 0.0 && ww > 0.0 {
                dot / (gg.sqrt() * ww.sqrt())
            } else if gg == ww {
                // Both rows zero: identical.
                1.0
            } else {
                // One row zero: none of the other's direction is kept.
                0.0
            };
            self.cos_min = self.cos_min.min(cos);
            self.cos_sum += cos;
            self.cos_rows += 1;
        }
        if let Some((agree, rows)) = &mut self.top1 {
            *rows += 1;
            *agree +=
                (top_k(got.iter().map(|&v| v as f64), 1) == top_k(want.iter().copied(), 1)) as u64;
        }
        if let Some((agree, rows)) = &mut self.top5 {
            *rows += 1;
            *agree +=
                (top_k(got.iter().map(|&v| v as f64), 5) == top_k(want.iter().copied(), 5)) as u64;
        }
    }

    /// The error below which a share `q` of the finite elements fall.
    fn quantile(&self, q: f64) -> f64 {
        let total: u64 = self.hist.iter().sum();
        if total == 0 {
            return 0.0;
        }
        if q >= 1.0 {
            return self.max;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &c) in self.hist.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::bin_value(b).min(self.max);
            }
        }
        self.max
    }

    /// Adds the rows another accumulator saw (a block of rows checked on
    /// another thread): merged in row order, the sums are the same whatever
    /// the number of threads.
    pub fn merge(&mut self, other: &CostAccumulator) {
        for (a, b) in self.hist.iter_mut().zip(&other.hist) {
            *a += b;
        }
        self.max = self.max.max(other.max);
        self.diff2 += other.diff2;
        self.ref2 += other.ref2;
        self.cos_min = self.cos_min.min(other.cos_min);
        self.cos_sum += other.cos_sum;
        self.cos_rows += other.cos_rows;
        self.non_finite += other.non_finite;
        self.elements += other.elements;
        let add = |a: &mut Option<(u64, u64)>, b: Option<(u64, u64)>| {
            if let (Some((agree, rows)), Some((more, more_rows))) = (a, b) {
                *agree += more;
                *rows += more_rows;
            }
        };
        add(&mut self.top1, other.top1);
        add(&mut self.top5, other.top5);
    }

    /// The cost of every row added.
    pub fn finish(&self) -> PrecisionCost {
        let share =
            |t: Option<(u64, u64)>| t.and_then(|(a, r)| (r > 0).then(|| a as f64 / r as f64));
        PrecisionCost {
            rel_frobenius_err: if self.ref2 > 0.0 {
                (self.diff2 / self.ref2).sqrt()
            } else {
                self.diff2.sqrt()
            },
            norm_err_p50: self.quantile(0.5),
            norm_err_p99: self.quantile(0.99),
            norm_err_max: self.max,
            norm_err_cdf: CDF_LEVELS.iter().map(|&q| [q, self.quantile(q)]).collect(),
            row_cosine_min: (self.cos_rows > 0).then_some(self.cos_min),
            row_cosine_mean: (self.cos_rows > 0).then(|| self.cos_sum / self.cos_rows as f64),
            non_finite: self.non_finite,
            elements: self.elements,
            top1_agreement: share(self.top1),
            top5_agreement: share(self.top5),
        }
    }
}

/// The indices of the `k` largest values, sorted (NaN ranks lowest; ties go to
/// the lower index, as `argmax` does).
fn top_k(values: impl Iterator<Item = f64>, k: usize) -> Vec<usize> {
    let mut best: Vec<(f64, usize)> = Vec::with_capacity(k + 1);
    for (i, v) in values.enumerate() {
        let v = if v.is_nan() { f64::NEG_INFINITY } else { v };
        if best.len() < k || v > best[best.len() - 1].0 {
            let at = best.partition_point(|&(b, _)| b >= v);
            best.insert(at, (v, i));
            best.truncate(k);
        }
    }
    let mut idx: Vec<usize> = best.into_iter().map(|(_, i)| i).collect();
    idx.sort_unstable();
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_checked_row() {
        // y* = [3, 4] (norm 5); y = [3, 4.5]: Frobenius 0.5/5 = 0.1; errors
        // 0 and 0.5/scale 2.5 = 0.2; cosine (9+18)/(5*sqrt(29.25)).
        let mut acc = CostAccumulator::new(true, 2);
        acc.add_row(&[3.0, 4.5], &[3.0, 4.0], &[1.0, 2.5]);
        let c = acc.finish();
        assert!((c.rel_frobenius_err - 0.1).abs() < 1e-12, "{c:?}");
        assert_eq!(c.norm_err_max, 0.2);
        let cos = 27.0 / (5.0 * 29.25f64.sqrt());
        assert!((c.row_cosine_min.unwrap() - cos).abs() < 1e-12);
        assert_eq!(c.top1_agreement, Some(1.0));
        assert_eq!(c.top5_agreement, None);
        assert_eq!(c.elements, 2);
        // The median of {0, 0.2} is the smaller: exact zero.
        assert_eq!(c.norm_err_p50, 0.0);
    }

    /// A format that underflows to zero, a row of nothing but Inf, a nonzero
    /// output where zero is exact: the cost says so in numbers JSON can hold,
    /// so the results file it goes into reads back.
    #[test]
    fn degenerate_rows_give_finite_serialisable_numbers() {
        let mut acc = CostAccumulator::new(true, 2);
        acc.add_row(&[0.0, 0.0], &[1e-9, -2e-9], &[1e-9, 2e-9]);
        let c = acc.finish();
        assert_eq!(
            (c.row_cosine_min, c.row_cosine_mean),
            (Some(0.0), Some(0.0))
        );
        assert_eq!(c.rel_frobenius_err, 1.0);
        let mut inf = CostAccumulator::new(true, 2);
        inf.add_row(&[f32::INFINITY, f32::NAN], &[1.0, 2.0], &[1.0, 2.0]);
        let c = inf.finish();
        assert_eq!((c.row_cosine_min, c.non_finite), (None, 2));
        let mut zero = CostAccumulator::new(false, 1);
        zero.add_row(&[0.5], &[0.0], &[0.0]);
        let c = zero.finish();
        assert_eq!(c.norm_err_max, f64::MAX);
        for c in [c, acc.finish(), inf.finish()] {
            let text = serde_json::to_string(&c).unwrap();
            assert!(!text.contains("null"), "{text}");
            assert_eq!(serde_json::from_str::<PrecisionCost>(&text).unwrap(), c);
        }
    }

    #[test]
    fn quantiles_are_within_a_bin_of_the_exact_ones() {
        let mut acc = CostAccumulator::new(false, 1000);
        let errs: Vec<f64> = (1..=1000).map(|i| i as f64 * 1e-6).collect();
        let want = vec![0.0; 1000];
        let got: Vec<f32> = errs.iter().map(|&e| e as f32).collect();
        acc.add_row(&got, &want, &vec![1.0; 1000]);
        let c = acc.finish();
        for (q, exact) in [(0.5, 500e-6), (0.99, 990e-6)] {
            let v = acc.quantile(q);
            assert!((v / exact - 1.0).abs() < 0.08, "q{q}: {v} vs {exact}");
        }
        assert!((c.norm_err_max - 1e-3).abs() < 1e-9);
        assert_eq!(c.norm_err_cdf.len(), CDF_LEVELS.len());
        assert!(c.norm_err_cdf.windows(2).all(|w| w[0][1] <= w[1][1]));
    }

    #[test]
    fn overflow_is_counted_and_top_k_disagreement_seen() {
        let mut acc = CostAccumulator::new(true, 6);
        let want = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        acc.add_row(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &want, &[1.0; 6]);
        acc.add_row(&[7.0, 2.0, 3.0, f32::INFINITY, 5.0, 6.0], &want, &[1.0; 6]);
        let c = acc.finish();
        assert_eq!(c.non_finite, 1);
        assert_eq!(c.top1_agreement, Some(0.5));
        // Row 2: argmax 3 (the Inf) vs 5; top five {0, 2, 3, 4, 5} vs {1, 2, 3, 4, 5}.
        assert_eq!(c.top5_agreement, Some(0.5));
        assert_eq!(top_k([1.0, 5.0, 5.0, 2.0].into_iter(), 1), vec![1]);
    }
}

//! Statistics over raw latency samples: order statistics, spread, a bootstrap
//! confidence interval of the median, and Tukey outliers (counted, never dropped).
//!
//! A summary can only be built from a non-empty [`Samples`], so statistics of
//! zero samples cannot happen.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Bootstrap resamples for the confidence interval of the median.
const BOOTSTRAP_RESAMPLES: usize = 1000;

/// A non-empty set of finite sample values, sorted ascending.
#[derive(Clone, Debug, PartialEq)]
pub struct Samples(Vec<f64>);

impl Samples {
    /// Keeps the finite values; `None` when none is left.
    pub fn new(values: impl IntoIterator<Item = f64>) -> Option<Samples> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Samples(v))
    }

    /// The values, ascending.
    pub fn sorted(&self) -> &[f64] {
        &self.0
    }

    /// How many there are (at least one).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a `Samples` is never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `q`-quantile (0..=1), interpolating linearly between order statistics
    /// (Hyndman and Fan's type 7, numpy's default).
    pub fn quantile(&self, q: f64) -> f64 {
        quantile_sorted(&self.0, q)
    }
}

fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Everything reported about a distribution of samples, in the samples' unit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Sample count.
    pub count: usize,
    /// Smallest.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (n - 1); 0 for one sample.
    pub stddev: f64,
    /// Coefficient of variation, stddev / mean.
    pub cv: f64,
    /// Interquartile range, p75 - p25.
    pub iqr: f64,
    /// Bootstrap 95% confidence interval of the median: [low, high].
    pub median_ci95: [f64; 2],
    /// Samples below the lower Tukey fence (p25 - 1.5 IQR).
    pub outliers_low: usize,
    /// Samples above the upper Tukey fence (p75 + 1.5 IQR).
    pub outliers_high: usize,
}

impl Summary {
    /// The summary with every value multiplied by `k` (a change of unit).
    pub fn scaled(&self, k: f64) -> Summary {
        Summary {
            min: self.min * k,
            p50: self.p50 * k,
            p90: self.p90 * k,
            p95: self.p95 * k,
            p99: self.p99 * k,
            max: self.max * k,
            mean: self.mean * k,
            stddev: self.stddev * k,
            iqr: self.iqr * k,
            median_ci95: [self.median_ci95[0] * k, self.median_ci95[1] * k],
            ..self.clone()
        }
    }
}

/// Mean and sample standard deviation.
pub fn mean_stddev(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// The median of `v` (reorders it).
fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    let mid = n / 2;
    let (_, &mut upper, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    if n % 2 == 1 {
        upper
    } else {
        let lower = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + upper) / 2.0
    }
}

/// Percentile bootstrap 95% interval of the median, seeded so reruns agree.
pub fn bootstrap_median_ci(samples: &Samples, seed: u64) -> [f64; 2] {
    let v = samples.sorted();
    if v.len() == 1 {
        return [v[0], v[0]];
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut scratch = vec![0.0; v.len()];
    let mut medians: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            for s in scratch.iter_mut() {
                *s = v[rng.random_range(0..v.len())];
            }
            median_in_place(&mut scratch)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    [
        quantile_sorted(&medians, 0.025),
        quantile_sorted(&medians, 0.975),
    ]
}

/// Summarises `samples`.
pub fn summarize(samples: &Samples) -> Summary {
    let v = samples.sorted();
    let (mean, stddev) = mean_stddev(v);
    let (q1, q3) = (samples.quantile(0.25), samples.quantile(0.75));
    let iqr = q3 - q1;
    let (lo_fence, hi_fence) = (q1 - 1.5 * iqr, q3 + 1.5 * iqr);
    Summary {
        count: v.len(),
        min: v[0],
        p50: samples.quantile(0.5),
        p90: samples.quantile(0.9),
        p95: samples.quantile(0.95),
        p99: samples.quantile(0.99),
        max: v[v.len() - 1],
        mean,
        stddev,
        cv: if mean > 0.0 { stddev / mean } else { 0.0 },
        iqr,
        median_ci95: bootstrap_median_ci(samples, 0x5ca1ab1e),
        outliers_low: v.iter().filter(|&&x| x < lo_fence).count(),
        outliers_high: v.iter().filter(|&&x| x > hi_fence).count(),
    }
}

/// Complementary error function (Abramowitz and Stegun 7.1.26, |error| < 1.5e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let r = poly * (-z * z).exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Two-sided p-value of the Mann-Whitney U test that `a` and `b` come from the
/// same distribution (normal approximation with tie correction). Makes no
/// assumption of normality, which latency samples rarely satisfy.
pub fn mann_whitney_p(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    if a.is_empty() || b.is_empty() {
        return 1.0;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&v| (v, true))
        .chain(b.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (mut rank_a, mut ties, mut i) = (0.0, 0.0, 0);
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0; // average rank of the tied run
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        rank_a += all[i..=j].iter().filter(|x| x.1).count() as f64 * rank;
        i = j + 1;
    }
    let u = rank_a - n1 * (n1 + 1.0) / 2.0;
    let n = n1 + n2;
    let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if var <= 0.0 {
        return 1.0;
    }
    let z = (u - n1 * n2 / 2.0) / var.sqrt();
    erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[f64]) -> Samples {
        Samples::new(v.iter().copied()).unwrap()
    }

    #[test]
    fn empty_and_non_finite_inputs_give_no_samples() {
        let three = s(&[3.0, 1.0, 2.0]);
        assert_eq!((three.len(), three.is_empty()), (3, false));
        assert_eq!(three.sorted(), &[1.0, 2.0, 3.0]);
        assert!(Samples::new([]).is_none());
        assert!(Samples::new([f64::NAN, f64::INFINITY]).is_none());
        assert_eq!(Samples::new([f64::NAN, 2.0]).unwrap().len(), 1);
    }

    #[test]
    fn odd_count_quantiles() {
        let x = s(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        let sum = summarize(&x);
        assert_eq!(sum.p50, 3.0);
        assert_eq!(sum.min, 1.0);
        assert_eq!(sum.max, 5.0);
        assert_eq!(sum.iqr, 2.0); // q1 = 2, q3 = 4
        assert!((sum.p90 - 4.6).abs() < 1e-12);
        assert!((sum.stddev - 2.5f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn even_count_median_interpolates() {
        let x = s(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!(x.quantile(0.5), 2.5);
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(median_in_place(&mut v), 2.5);
    }

    #[test]
    fn ties_and_single_sample() {
        let t = summarize(&s(&[7.0, 7.0, 7.0, 7.0]));
        assert_eq!((t.p50, t.p99, t.stddev, t.iqr), (7.0, 7.0, 0.0, 0.0));
        assert_eq!(t.median_ci95, [7.0, 7.0]);
        assert_eq!(t.outliers_high + t.outliers_low, 0);
        let one = summarize(&s(&[3.0]));
        assert_eq!(
            (one.count, one.p50, one.p99, one.stddev),
            (1, 3.0, 3.0, 0.0)
        );
        assert_eq!(one.median_ci95, [3.0, 3.0]);
    }

    #[test]
    fn tukey_counts_outliers_without_dropping_them() {
        let mut v: Vec<f64> = (0..100).map(|i| 10.0 + (i % 5) as f64 * 0.1).collect();
        v.push(100.0);
        v.push(-50.0);
        let sum = summarize(&s(&v));
        assert_eq!(sum.count, 102);
        assert_eq!(sum.outliers_high, 1);
        assert_eq!(sum.outliers_low, 1);
        assert_eq!(sum.max, 100.0);
        // Fences at 1.5 IQR: for 0..=100 (IQR 50) the upper one is 150.
        let mut v: Vec<f64> = (0..=100).map(f64::from).collect();
        v.push(140.0);
        assert_eq!(summarize(&s(&v)).outliers_high, 0);
        v.push(160.0);
        assert_eq!(summarize(&s(&v)).outliers_high, 1);
    }

    #[test]
    fn mann_whitney_separates_shifted_samples_only() {
        let a: Vec<f64> = (0..50).map(|i| 10.0 + (i % 7) as f64 * 0.1).collect();
        let shifted: Vec<f64> = a.iter().map(|v| v * 1.5).collect();
        assert!(mann_whitney_p(&a, &shifted) < 1e-6);
        assert!(mann_whitney_p(&a, &a) > 0.9);
        assert_eq!(mann_whitney_p(&[1.0], &[1.0]), 1.0);
        assert!((erfc(0.0) - 1.0).abs() < 1e-6 && (erfc(1.0) - 0.157_299_2).abs() < 1e-6);
    }

    /// 0, 1, ..., 100: every percentile is its own rank, exactly.
    #[test]
    fn percentiles_of_0_to_100_are_exact() {
        let v: Vec<f64> = (0..=100).rev().map(f64::from).collect();
        let sum = summarize(&s(&v));
        assert_eq!(
            (sum.min, sum.p50, sum.p90, sum.p95, sum.p99, sum.max),
            (0.0, 50.0, 90.0, 95.0, 99.0, 100.0)
        );
        assert_eq!((sum.count, sum.mean, sum.iqr), (101, 50.0, 50.0));
        assert_eq!(s(&v).quantile(0.25), 25.0);
        assert_eq!(s(&v).quantile(0.999), 99.9);
        assert!((sum.stddev - (101.0 * 102.0 / 12.0f64).sqrt()).abs() < 1e-12);
        assert!((sum.cv - sum.stddev / 50.0).abs() < 1e-15);
        assert_eq!(sum.outliers_low + sum.outliers_high, 0);
        // A change of unit scales every value and keeps the counts.
        let ms = sum.scaled(1e-3);
        assert_eq!(
            (ms.min, ms.p50, ms.p90, ms.p95, ms.max, ms.mean),
            (0.0, 0.05, 0.09, 0.095, 0.1, 0.05)
        );
        assert_eq!((ms.stddev, ms.cv), (sum.stddev * 1e-3, sum.cv));
        let halved = summarize(&s(&[2.0, 4.0, 6.0])).scaled(0.5);
        assert_eq!((halved.min, halved.max, halved.mean), (1.0, 3.0, 2.0));
        assert_eq!((ms.p99, ms.iqr, ms.count), (0.099, 0.05, 101));
        assert_eq!(
            ms.median_ci95,
            [sum.median_ci95[0] * 1e-3, sum.median_ci95[1] * 1e-3]
        );
    }

    /// The interval of a spread sample has width, holds the median, and is
    /// narrower than the sample's middle half.
    #[test]
    fn bootstrap_ci_of_a_spread_sample_has_width() {
        let x = s(&(0..=100).map(f64::from).collect::<Vec<_>>());
        let ci = summarize(&x).median_ci95;
        assert!(ci[0] < 50.0 && 50.0 < ci[1], "{ci:?}");
        assert!(ci[1] - ci[0] >= 5.0 && ci[1] - ci[0] < 50.0, "{ci:?}");
        assert!(ci[0] >= 25.0 && ci[1] <= 75.0, "{ci:?}");
    }

    /// Worked by hand: a = 1..=5, b = 3..=8 has U = 4.5 (three ties count a
    /// half each), tie-corrected variance 29.591, z = -1.930, p = 0.05358;
    /// a = [1.5, 2.5, 9], b = [1, 2, 3, 4]: U = 7, variance 8, p = 0.7237.
    #[test]
    fn mann_whitney_matches_worked_examples() {
        let p = mann_whitney_p(&[1.0, 2.0, 3.0, 4.0, 5.0], &[3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert!((p - 0.053_577_749).abs() < 1e-6, "{p}");
        let q = mann_whitney_p(&[1.5, 2.5, 9.0], &[1.0, 2.0, 3.0, 4.0]);
        assert!((q - 0.723_673_610).abs() < 1e-6, "{q}");
        // Symmetric in its arguments.
        let r = mann_whitney_p(&[3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!((p - r).abs() < 1e-12);
        assert_eq!(mann_whitney_p(&[], &[1.0]), 1.0);
        assert_eq!(mann_whitney_p(&[1.0], &[]), 1.0);
    }

    #[test]
    fn erfc_matches_tabulated_values() {
        for (x, want) in [
            (0.1, 0.887_537_083_981_715),
            (0.5, 0.479_500_122_186_953),
            (2.0, 0.004_677_734_981_047),
            (-1.0, 1.842_700_792_949_715),
        ] {
            assert!((erfc(x) - want).abs() < 2e-7, "erfc({x}) = {}", erfc(x));
        }
    }

    #[test]
    fn mean_and_stddev_of_known_samples() {
        assert_eq!(
            mean_stddev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).0,
            5.0
        );
        let (_, sd) = mean_stddev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!((sd - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_stddev(&[3.0]), (3.0, 0.0));
        assert_eq!(mean_stddev(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
        let mut odd = vec![9.0, 1.0, 5.0];
        assert_eq!(median_in_place(&mut odd), 5.0);
        let mut five = vec![5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(median_in_place(&mut five), 3.0);
        // All zero: no coefficient of variation to divide by zero for.
        assert_eq!(summarize(&s(&[0.0, 0.0, 0.0])).cv, 0.0);
    }

    #[test]
    fn bootstrap_ci_brackets_the_median_and_is_reproducible() {
        let v: Vec<f64> = (0..200).map(|i| ((i * 37) % 101) as f64).collect();
        let x = s(&v);
        let ci = bootstrap_median_ci(&x, 1);
        let med = x.quantile(0.5);
        assert!(ci[0] <= med && med <= ci[1], "{ci:?} vs {med}");
        assert!(ci[1] - ci[0] < 30.0);
        assert_eq!(ci, bootstrap_median_ci(&x, 1));
    }
}

//! The one comparator: a backend's output against its op's f64 oracle (a
//! [`Reference`], from the op's folder), for every op.
//!
//! Error is measured per element as `|y - ref| / normaliser`, where the op
//! names the normaliser (`sum_k |x_ik * w_kj|` for a dot product, the
//! quantity its rounding error is proportional to; `|ref|` for a copy). This
//! stays meaningful where `ref` crosses zero, unlike `|y - ref| / |ref|`.
//! Below the formats' normal range rounding is absolute, not relative (the
//! op's [`Reference::underflow_allowance`]): there the normaliser grows by
//! that allowance over the tolerance, so that `normalised error <= tolerance`
//! stays the whole check. An Inf or NaN output verifies only where the format
//! must overflow. The same rows give the precision cost against the original,
//! full-precision data ([`crate::precision_cost::PrecisionCost`]).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ops::op::Reference;
use crate::precision::Precision;
use crate::precision_cost::{CostAccumulator, PrecisionCost};

/// Above this many multiply-adds the reference is computed on a sample of rows.
const FULL_REFERENCE_MACS: u64 = 1 << 28;
/// Rows checked when sampling (first, last, and evenly spread between).
pub const SAMPLED_ROWS: u64 = 256;
/// Rows the autotuner checks of each candidate on a large tuning shape: on a
/// 4096^3 shape 256 rows of two f64 references take seconds per candidate on
/// one core; 16 rows (the first, the last, and spread between them, so every
/// edge tile is among them) catch a wrong kernel, and the point the chosen one
/// measures is verified on the full sample again.
pub const TUNING_SAMPLED_ROWS: u64 = 16;

/// How a backend's output compared with the references.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Largest `|y - ref|` against the reference of the rounded inputs.
    pub max_abs_err: f64,
    /// Largest normalised kernel error (see the module doc): what verification checks.
    pub max_norm_err: f64,
    /// The tolerance on the normalised error that was applied.
    pub tolerance: f64,
    /// Output rows compared (all, or a sample for very large points).
    pub rows_checked: u64,
    /// Outputs that are Inf or NaN because the format overflowed (the rounded
    /// inputs' exact result is past its largest finite value, or an input
    /// rounded to infinity): a finding about the precision, not a fault.
    pub overflows: u64,
    /// Whether every checked element is within tolerance (or an expected overflow).
    pub verified: bool,
    /// Why verification failed, in one line; absent when it passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// What the precision cost against the full-precision data.
    pub cost: PrecisionCost,
}

/// Rows whose reference is computed: all of them when the whole output is
/// cheap enough, else a deterministic spread of `sampled` rows that includes
/// the first and last rows.
pub fn rows_to_check(reference: &dyn Reference, sampled: u64) -> Vec<u64> {
    let (m, _) = reference.shape();
    let macs = m.saturating_mul(reference.row_macs());
    let sampled = sampled.max(2);
    if macs <= FULL_REFERENCE_MACS || m <= sampled {
        return (0..m).collect();
    }
    let mut rows: Vec<u64> = (0..sampled).map(|i| i * (m - 1) / (sampled - 1)).collect();
    rows.dedup();
    rows
}

/// Compares `output` (the op's output shape, row-major) with `reference`, for
/// a point stored in `precision`.
pub fn verify(reference: &dyn Reference, precision: Precision, output: &[f32]) -> Accuracy {
    verify_sampled(reference, precision, output, SAMPLED_ROWS)
}

/// [`verify`] on at most `sampled` rows where the output is past the full
/// reference (the autotuner's [`TUNING_SAMPLED_ROWS`]).
///
/// The kernel error compares with the f64 result of the inputs rounded to
/// the point's precision, as the backend stored them: that is what a correct
/// kernel reproduces within the tolerance. The precision cost compares with
/// the f64 result of the original data.
pub fn verify_sampled(
    reference: &dyn Reference,
    precision: Precision,
    output: &[f32],
    sampled: u64,
) -> Accuracy {
    let (m, n) = reference.shape();
    let tol = reference.tolerance();
    let ranked = reference.ranked();
    let mut acc = Accuracy {
        max_abs_err: 0.0,
        max_norm_err: 0.0,
        tolerance: tol,
        rows_checked: 0,
        overflows: 0,
        verified: true,
        failure: None,
        cost: CostAccumulator::new(ranked, n).finish(),
    };
    if output.len() as u64 != m * n as u64 {
        acc.verified = false;
        acc.failure = Some(format!(
            "output has {} elements, expected {}",
            output.len(),
            m * n as u64
        ));
        return acc;
    }
    let rows = rows_to_check(reference, sampled);
    acc.rows_checked = rows.len() as u64;
    let block = Block {
        reference,
        precision,
        output,
        tol,
    };
    // Blocks of rows on every thread, merged in row order: the first failure
    // is the first in row order and the cost's sums do not depend on the
    // number of threads.
    let blocks: Vec<BlockFindings> = rows
        .par_chunks(VERIFY_BLOCK_ROWS)
        .map(|rows| block.check(rows))
        .collect();
    let mut cost = CostAccumulator::new(ranked, n);
    for b in blocks {
        cost.merge(&b.cost);
        acc.max_abs_err = acc.max_abs_err.max(b.max_abs_err);
        acc.max_norm_err = acc.max_norm_err.max(b.max_norm_err);
        acc.overflows += b.overflows;
        if acc.verified && b.failure.is_some() {
            acc.verified = false;
            acc.failure = b.failure;
        }
    }
    acc.cost = cost.finish();
    acc
}

/// Rows one verification task checks.
const VERIFY_BLOCK_ROWS: usize = 64;

/// What a block of rows is checked against, shared by every task.
struct Block<'a> {
    reference: &'a dyn Reference,
    precision: Precision,
    output: &'a [f32],
    tol: f64,
}

/// What one block of rows showed.
struct BlockFindings {
    cost: CostAccumulator,
    max_abs_err: f64,
    max_norm_err: f64,
    overflows: u64,
    /// The block's first failure, in row order.
    failure: Option<String>,
}

impl Block<'_> {
    /// Checks `rows` in order.
    fn check(&self, rows: &[u64]) -> BlockFindings {
        let (reference, tol, p) = (self.reference, self.tol, self.precision);
        let n = reference.shape().1;
        // Inputs rounded to the point's precision, as the backend stored them.
        let rounded = reference.inputs_rounded(p);
        let overflow_at = p.overflow_threshold();
        let mut f = BlockFindings {
            cost: CostAccumulator::new(reference.ranked(), n),
            max_abs_err: 0.0,
            max_norm_err: 0.0,
            overflows: 0,
            failure: None,
        };
        let (mut want, mut scale) = (vec![0.0f64; n], vec![0.0f64; n]);
        let (mut full, mut full_scale) = (vec![0.0f64; n], vec![0.0f64; n]);
        for &r in rows {
            let got = &self.output[r as usize * n..(r as usize + 1) * n];
            if rounded {
                reference.row(r, true, &mut want, &mut scale);
                reference.row(r, false, &mut full, &mut full_scale);
                f.cost.add_row(got, &full, &full_scale);
            } else {
                reference.row(r, false, &mut want, &mut scale);
                f.cost.add_row(got, &want, &scale);
            }
            for c in 0..n {
                let g = got[c] as f64;
                let expected = want[c];
                // Past the format's largest finite value the stored result is
                // infinite; an f16 accumulator can overflow on the way there.
                let overflows = !expected.is_finite()
                    || expected.abs() + tol * scale[c] >= overflow_at
                    || (reference.accumulator_overflows(scale[c]) && scale[c] >= overflow_at);
                if !g.is_finite() {
                    if overflows {
                        f.overflows += 1;
                    } else if f.failure.is_none() {
                        f.failure = Some(format!(
                            "non-finite output {g} at row {r}, column {c}, where {expected} was expected"
                        ));
                    }
                    continue;
                }
                if !expected.is_finite() {
                    if f.failure.is_none() {
                        f.failure = Some(format!(
                            "row {r}, column {c}: got {g}, but an input rounded to {p} is infinite, so {expected} was expected"
                        ));
                    }
                    continue;
                }
                let abs = (g - expected).abs();
                // Below the normal range the allowance is absolute: folded into the
                // normaliser so that `rel <= tol` means `abs <= tol * scale + allowance`.
                let allowance = reference.underflow_allowance(tol, expected, scale[c]);
                let normaliser = if tol > 0.0 {
                    scale[c] + allowance / tol
                } else {
                    scale[c]
                };
                // A zero normaliser means an exact zero is expected: any error is infinite relative error.
                let rel = if normaliser > 0.0 {
                    abs / normaliser
                } else if abs == 0.0 {
                    0.0
                } else {
                    f64::INFINITY
                };
                f.max_abs_err = f.max_abs_err.max(abs);
                f.max_norm_err = f.max_norm_err.max(rel);
                if rel > tol && f.failure.is_none() {
                    f.failure = Some(format!(
                        "row {r}, column {c}: got {g}, expected {expected}, normalised error {rel:.3e} > tolerance {tol:.3e}"
                    ));
                }
            }
        }
        f
    }
}

/// The whole output's f64 reference (inputs rounded as stored), as f32: what
/// a correct kernel returns, for tests that need one.
pub fn expected_output(reference: &dyn Reference) -> Vec<f32> {
    let (m, n) = reference.shape();
    let mut out = vec![0.0f32; m as usize * n];
    let (mut row, mut norm) = (vec![0.0; n], vec![0.0; n]);
    for r in 0..m {
        reference.row(r, true, &mut row, &mut norm);
        for (o, &v) in out[r as usize * n..(r as usize + 1) * n]
            .iter_mut()
            .zip(&row)
        {
            *o = v as f32;
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An accuracy that passed or failed, for tests of its consumers.
    pub(crate) fn accuracy(verified: bool) -> Accuracy {
        Accuracy {
            max_abs_err: 0.0,
            max_norm_err: 0.0,
            tolerance: 0.0,
            rows_checked: 1,
            overflows: 0,
            verified,
            failure: (!verified).then(|| "wrong".to_string()),
            cost: CostAccumulator::new(false, 1).finish(),
        }
    }

    /// A stand-in oracle: `m` rows of `n` columns, element (r, c) = r * n + c
    /// (its normaliser the same), with `tol` as its tolerance and `macs` per row.
    struct Table {
        m: u64,
        n: usize,
        tol: f64,
        macs: u64,
    }

    impl Reference for Table {
        fn shape(&self) -> (u64, usize) {
            (self.m, self.n)
        }
        fn row_macs(&self) -> u64 {
            self.macs
        }
        fn row(&self, r: u64, _stored: bool, out: &mut [f64], norm: &mut [f64]) {
            for (c, (o, s)) in out.iter_mut().zip(norm.iter_mut()).enumerate() {
                *o = (r as usize * self.n + c) as f64;
                *s = o.abs().max(1.0);
            }
        }
        fn tolerance(&self) -> f64 {
            self.tol
        }
        fn underflow_allowance(&self, _: f64, _: f64, _: f64) -> f64 {
            0.0
        }
        fn ranked(&self) -> bool {
            false
        }
    }

    fn table(m: u64, n: usize) -> Table {
        Table {
            m,
            n,
            tol: 1e-6,
            macs: n as u64,
        }
    }

    /// Rows are checked in parallel blocks: the failure reported is the first
    /// in row order, and the whole verdict (errors, cost, its sums) is the
    /// same on one thread and on four. Planted: blocks merged last-first ->
    /// row 250 is reported -> fails.
    #[test]
    fn parallel_verification_reports_the_first_failure_and_does_not_depend_on_threads() {
        let t = table(300, 40);
        let mut out = expected_output(&t);
        let on = |threads: usize, out: &[f32]| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| verify(&t, Precision::F16, out))
        };
        let (one, four) = (on(1, &out), on(4, &out));
        assert!(one.verified, "{one:?}");
        assert_eq!(one, four);
        assert_eq!(one.rows_checked, 300);
        out[250 * 40 + 3] += 0.5;
        out[70 * 40 + 9] += 0.5;
        let (one, four) = (on(1, &out), on(4, &out));
        assert!(!one.verified);
        assert!(
            one.failure
                .as_deref()
                .unwrap()
                .starts_with("row 70, column 9"),
            "{one:?}"
        );
        assert_eq!(one, four);
    }

    #[test]
    fn a_wrong_size_nan_or_infinity_fails_with_a_message() {
        let t = table(3, 4);
        let out = expected_output(&t);
        let short = verify(&t, Precision::F32, &out[1..]);
        assert!(!short.verified && short.failure.unwrap().contains("11 elements, expected 12"));
        let mut nan = out.clone();
        nan[5] = f32::NAN;
        let acc = verify(&t, Precision::F32, &nan);
        assert!(!acc.verified);
        assert!(acc
            .failure
            .unwrap()
            .contains("non-finite output NaN at row 1, column 1"));
        let mut inf = out.clone();
        inf[0] = f32::INFINITY;
        assert!(!verify(&t, Precision::F32, &inf).verified);
    }

    /// Every row up to 2^28 multiply-adds (or up to 256 rows), a spread of
    /// 256 rows past it that includes the first and the last; the tuner's 16.
    #[test]
    fn the_full_reference_ends_at_two_to_the_28_multiply_adds() {
        let rows = |m, macs| {
            rows_to_check(
                &Table {
                    macs,
                    ..table(m, 1)
                },
                SAMPLED_ROWS,
            )
        };
        assert_eq!(rows(1024, 512 * 512).len(), 1024);
        assert_eq!(rows(1025, 512 * 512).len(), 256);
        assert_eq!(rows(256, 4096 * 4096).len(), 256);
        assert_eq!(rows(200, 8192 * 8192).len(), 200);
        let big = rows(64 * 1024, 1024 * 1024);
        assert_eq!(big.first(), Some(&0));
        assert_eq!(big.last(), Some(&(64 * 1024 - 1)));
        assert_eq!(big.len(), SAMPLED_ROWS as usize);
        let tuning = rows_to_check(
            &Table {
                macs: 1 << 20,
                ..table(64 * 1024, 1)
            },
            TUNING_SAMPLED_ROWS,
        );
        assert_eq!(tuning.len(), TUNING_SAMPLED_ROWS as usize);
        assert_eq!(tuning.last(), Some(&(64 * 1024 - 1)));
    }

    /// An exact tolerance (a copy's) accepts the exact value and nothing else.
    #[test]
    fn a_zero_tolerance_is_exact() {
        let t = Table {
            tol: 0.0,
            ..table(2, 3)
        };
        let mut out = expected_output(&t);
        assert!(verify(&t, Precision::F16, &out).verified);
        out[4] = f32::from_bits(out[4].to_bits() + 1);
        let acc = verify(&t, Precision::F16, &out);
        // The error is still measured against the element's normaliser.
        let one_ulp = (out[4] as f64 - 4.0) / 4.0;
        assert_eq!(acc.max_norm_err, one_ulp);
        assert!(!acc.verified && acc.failure.unwrap().contains("row 1, column 1"));
    }

    /// An element whose normaliser is zero (an exact zero expected from zero
    /// inputs) passes when it is zero and fails as an infinite error when not.
    #[test]
    fn a_zero_normaliser_accepts_exact_zero_only() {
        struct Zeros;
        impl Reference for Zeros {
            fn shape(&self) -> (u64, usize) {
                (2, 3)
            }
            fn row_macs(&self) -> u64 {
                3
            }
            fn row(&self, _: u64, _: bool, out: &mut [f64], norm: &mut [f64]) {
                out.fill(0.0);
                norm.fill(0.0);
            }
            fn tolerance(&self) -> f64 {
                1e-3
            }
            fn underflow_allowance(&self, _: f64, _: f64, _: f64) -> f64 {
                0.0
            }
            fn ranked(&self) -> bool {
                false
            }
        }
        let mut out = vec![0.0f32; 6];
        let acc = verify(&Zeros, Precision::F32, &out);
        assert!(acc.verified && acc.max_norm_err == 0.0, "{acc:?}");
        out[5] = 1e-30;
        let acc = verify(&Zeros, Precision::F32, &out);
        assert!(!acc.verified && acc.max_norm_err.is_infinite(), "{acc:?}");
    }
}

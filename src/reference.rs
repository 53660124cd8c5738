//! The oracle: f64 reference implementations of every op and the comparison of a
//! backend's output against them.
//!
//! Error is measured per element as `|y - ref| / scale`, where `scale` is
//! `sum_k |x_ik * w_kj|` for a projection (the quantity the rounding error of a dot
//! product is proportional to) and `|ref|` for a gather. This normalisation stays
//! meaningful where `ref` crosses zero, unlike `|y - ref| / |ref|`. Below the
//! formats' normal range rounding is absolute, not relative (see
//! [`underflow_allowance`]): there the normaliser grows by that allowance over
//! the tolerance, so that `normalised error <= tolerance` stays the whole check.

use std::borrow::Cow;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::precision_cost::{CostAccumulator, PrecisionCost};
use crate::workload::{Inputs, Op, Precision, Workload};

/// Unit roundoff of f32 (2^-24).
const U32: f64 = 5.960_464_477_539_063e-8;
/// Unit roundoff of f16 (2^-11).
const U16: f64 = 4.882_812_5e-4;

/// Smallest positive normal f32 (2^-126): an f32 product below it is subnormal or flushed.
const F32_MIN_NORMAL: f64 = 1.175_494_350_822_287_5e-38;
/// Smallest positive normal f16 (2^-14).
const F16_MIN_NORMAL: f64 = 6.103_515_625e-5;

/// Above this many multiply-adds the reference is computed on a sample of rows.
const FULL_REFERENCE_MACS: u64 = 1 << 28;
/// Rows checked when sampling (first, last, and evenly spread between).
const SAMPLED_ROWS: u64 = 256;
/// Rows the autotuner checks of each candidate on a large tuning shape: on a
/// 4096^3 shape 256 rows of two f64 references take seconds per candidate on
/// one core; 16 rows (the first, the last, and spread between them, so every
/// edge tile is among them) catch a wrong kernel, and the point the chosen one
/// measures is verified on the full sample again.
pub const TUNING_SAMPLED_ROWS: u64 = 16;

/// The tolerance on the normalised error for a projection of inner size `k`.
///
/// A dot product of length k accumulated in f32 has a worst-case error of
/// `gamma_k = k*u/(1 - k*u)` times `sum |x*w|` (Higham, Accuracy and Stability of
/// Numerical Algorithms, 3.1), whatever the summation order, so a kernel within it
/// is correct and one outside it is wrong. We allow 2*k*u32 (margin for the
/// denominator and for FMA contraction). FP16 and BF16 storage add one final
/// rounding of the output (relative u of |y| <= scale: 2^-11 for f16, 2^-8 for
/// bf16); the inputs are exact in the format and their products exact in f32
/// (11 + 11 and 8 + 8 significant bits fit f32's 24), so nothing else grows.
/// The bound grows with K; a gather is a copy and must be exact.
pub fn tolerance(op: Op, precision: Precision, k: u64) -> f64 {
    if !op.uses_weight() {
        return 0.0;
    }
    let accumulate = 2.0 * k as f64 * U32;
    match precision {
        Precision::F32 => accumulate,
        Precision::F16 | Precision::Bf16 => accumulate + precision.unit_roundoff(),
        // INT8 weights times FP16 activations are exact in f32 (8 + 11 bits);
        // the column's scale adds one f32 rounding (applied to the sum or to
        // each weight), the FP16 output one f16 rounding.
        Precision::Int8 => accumulate + U32 + precision.unit_roundoff(),
    }
}

/// The tolerance for a projection of inner size `k` accumulated in f16 (a
/// labelled GPU choice, [`Accumulation::F16`]).
///
/// The worst-case bound `k*u16` reaches 1 at k = 2048 and would pass anything,
/// so this is the probabilistic bound of Higham & Mary (SIAM J. Sci. Comput.
/// 41(5), 2019): with rounding errors independent and zero-mean, the error is
/// within `lambda * sqrt(k) * u` of `sum |x*w|` except with probability about
/// `2*exp(-lambda^2/2)` per element; lambda = 8 makes that 3e-14. A wrong index
/// still fails it by orders of magnitude; plus one f16 rounding of the output.
pub fn tolerance_f16_accumulation(op: Op, k: u64) -> f64 {
    if !op.uses_weight() {
        return 0.0;
    }
    8.0 * (k as f64).sqrt() * U16 + U16
}

/// The absolute error, past `tol * scale`, that underflow lets a correct
/// kernel add to one output element whose f64 result is `expected`.
///
/// The relative bounds of [`tolerance`] hold only above the formats' smallest
/// normal values. Below them a result is rounded to a fixed spacing (f16's
/// subnormals are 2^-24 apart) or flushed to zero, which WGSL allows: either
/// way off by less than the smallest normal. So an output whose value lies
/// below its format's normal range (f16: 6.1e-5, reached by a one-deep
/// projection or by cancellation) may be off by that much; every accumulated
/// product may underflow too (f32: 2^-126 each, k of them and the INT8 column
/// scale; in an f16 accumulator 2^-14, in the probabilistic sqrt(k) of
/// [`tolerance_f16_accumulation`]). A gather copies and is allowed nothing.
pub fn underflow_allowance(
    work: &Workload,
    accumulation: Accumulation,
    tol: f64,
    expected: f64,
    scale: f64,
) -> f64 {
    if !work.op.uses_weight() {
        return 0.0;
    }
    let k = work.mkn().1 as f64;
    let accumulate = match accumulation {
        Accumulation::F32 => (k + 1.0) * F32_MIN_NORMAL,
        Accumulation::F16 => 8.0 * k.sqrt() * F16_MIN_NORMAL,
    };
    let min_normal = work.precision.min_normal();
    let stored = if expected.abs() + tol * scale + accumulate < min_normal {
        min_normal
    } else {
        0.0
    };
    accumulate + stored
}

/// How a kernel accumulates its dot products (which sets the tolerance).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Accumulation {
    /// In f32 (every CPU kernel, and GPU kernels unless asked otherwise).
    #[default]
    F32,
    /// In f16 (GPU kernels with `--accumulate f16`, FP16 points only).
    F16,
}

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

/// Rows whose reference is computed: all of them when the projection is small
/// enough, else a deterministic spread of `sampled` rows that includes the
/// first and last rows.
fn rows_to_check(work: &Workload, sampled: u64) -> Vec<u64> {
    let (m, k, n) = work.mkn();
    let macs = if work.op.uses_weight() {
        m * k * n
    } else {
        m * n
    };
    let sampled = sampled.max(2);
    if macs <= FULL_REFERENCE_MACS || m <= sampled {
        return (0..m).collect();
    }
    let mut rows: Vec<u64> = (0..sampled).map(|i| i * (m - 1) / (sampled - 1)).collect();
    rows.dedup();
    rows
}

/// The activation row `r` the projection reads: `x[r]` or `table[ids[r]]`.
fn activation_row<'a>(work: &Workload, inputs: &'a Inputs, r: u64) -> &'a [f32] {
    let d = work.shape.dim as usize;
    let src = match work.op {
        Op::Matmul => r as usize,
        _ => inputs.ids[r as usize] as usize,
    };
    let data = if work.op == Op::Matmul {
        &inputs.x
    } else {
        &inputs.table
    };
    &data[src * d..(src + 1) * d]
}

/// Computes output row `r` in f64 from activation row `x` and weight `w`
/// (`[k, n]`; unused by a gather), with each element's normaliser.
fn reference_row(work: &Workload, x: &[f32], w: &[f32], out: &mut [f64], scale: &mut [f64]) {
    if !work.op.uses_weight() {
        for ((o, s), &v) in out.iter_mut().zip(scale.iter_mut()).zip(x) {
            *o = v as f64;
            *s = (v as f64).abs();
        }
        return;
    }
    let n = work.mkn().2 as usize;
    out.fill(0.0);
    scale.fill(0.0);
    for (kk, &xv) in x.iter().enumerate() {
        let xv = xv as f64;
        let wrow = &w[kk * n..(kk + 1) * n];
        for ((o, s), &wv) in out.iter_mut().zip(scale.iter_mut()).zip(wrow) {
            let p = xv * wv as f64;
            *o += p;
            *s += p.abs();
        }
    }
}

/// Compares `output` (`[B*S, N]`, row-major) with the f64 references.
pub fn verify(work: &Workload, inputs: &Inputs, output: &[f32]) -> Accuracy {
    verify_accumulated(work, inputs, output, Accumulation::F32)
}

/// [`verify`] for a kernel that accumulates as `accumulation` says.
///
/// The kernel error compares with the f64 result of the inputs rounded to
/// the point's precision, as the backend stored them: that is what a correct
/// kernel reproduces within the tolerance. The precision cost compares with
/// the f64 result of the original data.
pub fn verify_accumulated(
    work: &Workload,
    inputs: &Inputs,
    output: &[f32],
    accumulation: Accumulation,
) -> Accuracy {
    verify_sampled(work, inputs, output, accumulation, SAMPLED_ROWS)
}

/// [`verify_accumulated`] on at most `sampled` rows where the projection is
/// past the full reference (the autotuner's [`TUNING_SAMPLED_ROWS`]).
pub fn verify_sampled(
    work: &Workload,
    inputs: &Inputs,
    output: &[f32],
    accumulation: Accumulation,
    sampled: u64,
) -> Accuracy {
    let (m, k, n) = work.mkn();
    let p = work.precision;
    let tol = match accumulation {
        Accumulation::F32 => tolerance(work.op, p, k),
        Accumulation::F16 => tolerance_f16_accumulation(work.op, k),
    };
    let mut acc = Accuracy {
        max_abs_err: 0.0,
        max_norm_err: 0.0,
        tolerance: tol,
        rows_checked: 0,
        overflows: 0,
        verified: true,
        failure: None,
        cost: CostAccumulator::new(work.op.uses_weight(), n as usize).finish(),
    };
    if output.len() as u64 != m * n {
        acc.verified = false;
        acc.failure = Some(format!(
            "output has {} elements, expected {}",
            output.len(),
            m * n
        ));
        return acc;
    }
    let rounded = p != Precision::F32;
    let wq: Cow<[f32]> = if rounded && work.op.uses_weight() {
        Cow::Owned(p.stored_weight(&inputs.w, n as usize))
    } else {
        Cow::Borrowed(&inputs.w)
    };
    let rows = rows_to_check(work, sampled);
    acc.rows_checked = rows.len() as u64;
    let block = Block {
        work,
        inputs,
        output,
        wq: &wq,
        accumulation,
        tol,
    };
    // Blocks of rows on every thread, merged in row order: the first failure
    // is the first in row order and the cost's sums do not depend on the
    // number of threads.
    let blocks: Vec<BlockFindings> = rows
        .par_chunks(VERIFY_BLOCK_ROWS)
        .map(|rows| block.check(rows))
        .collect();
    let mut cost = CostAccumulator::new(work.op.uses_weight(), n as usize);
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
    work: &'a Workload,
    inputs: &'a Inputs,
    output: &'a [f32],
    /// The weight as stored (rounded to the point's precision).
    wq: &'a [f32],
    accumulation: Accumulation,
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
        let (work, inputs, tol) = (self.work, self.inputs, self.tol);
        let p = work.precision;
        let n = work.mkn().2 as usize;
        // Inputs rounded to the point's precision, as the backend stored them.
        let rounded = p != Precision::F32;
        let overflow_at = p.overflow_threshold();
        let round = |v: &[f32]| -> Vec<f32> { v.iter().map(|&x| p.round(x)).collect() };
        let mut f = BlockFindings {
            cost: CostAccumulator::new(work.op.uses_weight(), n),
            max_abs_err: 0.0,
            max_norm_err: 0.0,
            overflows: 0,
            failure: None,
        };
        let (mut want, mut scale) = (vec![0.0f64; n], vec![0.0f64; n]);
        let (mut full, mut full_scale) = (vec![0.0f64; n], vec![0.0f64; n]);
        for &r in rows {
            let x = activation_row(work, inputs, r);
            let got = &self.output[r as usize * n..(r as usize + 1) * n];
            if rounded {
                reference_row(work, &round(x), self.wq, &mut want, &mut scale);
                reference_row(work, x, &inputs.w, &mut full, &mut full_scale);
                f.cost.add_row(got, &full, &full_scale);
            } else {
                reference_row(work, x, &inputs.w, &mut want, &mut scale);
                f.cost.add_row(got, &want, &scale);
            }
            for c in 0..n {
                let g = got[c] as f64;
                let expected = want[c];
                // Past the format's largest finite value the stored result is
                // infinite; an f16 accumulator can overflow on the way there.
                let overflows = !expected.is_finite()
                    || expected.abs() + tol * scale[c] >= overflow_at
                    || (self.accumulation == Accumulation::F16 && scale[c] >= overflow_at);
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
                let allowance =
                    underflow_allowance(work, self.accumulation, tol, expected, scale[c]);
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

/// The whole output's f64 reference (inputs rounded as stored), as f32: what a
/// correct kernel returns, for tests that need one.
#[cfg(test)]
pub(crate) fn reference_output(work: &Workload, inputs: &Inputs) -> Vec<f32> {
    let (m, _, n) = work.mkn();
    let mut out = vec![0.0f32; (m * n) as usize];
    let (mut row, mut scale) = (vec![0.0; n as usize], vec![0.0; n as usize]);
    let w = work.precision.stored_weight(&inputs.w, n as usize);
    for r in 0..m {
        let x: Vec<f32> = activation_row(work, inputs, r)
            .iter()
            .map(|&v| work.precision.round(v))
            .collect();
        reference_row(work, &x, &w, &mut row, &mut scale);
        for (o, &v) in out[(r * n) as usize..((r + 1) * n) as usize]
            .iter_mut()
            .zip(&row)
        {
            *o = v as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Shape;

    fn small(op: Op) -> (Workload, Inputs) {
        let work = Workload {
            op,
            precision: Precision::F32,
            shape: Shape::new(1, 5, 7, 9).unwrap(),
            data: Default::default(),
        };
        let inputs = Inputs::generate(&work, 1);
        (work, inputs)
    }

    #[test]
    fn reference_matches_hand_computed_projection() {
        let work = Workload {
            op: Op::Matmul,
            precision: Precision::F32,
            shape: Shape::new(1, 1, 2, 1).unwrap(),
            data: Default::default(),
        };
        let inputs = Inputs {
            x: vec![1.0, 2.0],
            w: vec![3.0, 4.0, 5.0, 6.0],
            ..Default::default()
        };
        let acc = verify(&work, &inputs, &[13.0, 16.0]);
        assert!(acc.verified, "{acc:?}");
        let bad = verify(&work, &inputs, &[13.0, 16.5]);
        assert!(!bad.verified);
        assert!(bad.failure.unwrap().contains("column 1"));
    }

    #[test]
    fn exact_outputs_verify_and_perturbed_ones_fail() {
        for op in Op::ALL {
            let (work, inputs) = small(op);
            let mut out = reference_output(&work, &inputs);
            assert!(verify(&work, &inputs, &out).verified, "{op}");
            out[3] += 0.25;
            assert!(!verify(&work, &inputs, &out).verified, "{op}");
        }
    }

    /// Rows are checked in parallel blocks: the failure reported is the first
    /// in row order, and the whole verdict (errors, cost, its sums) is the
    /// same on one thread and on four. Planted: blocks merged last-first ->
    /// row 250 is reported -> fails.
    #[test]
    fn parallel_verification_reports_the_first_failure_and_does_not_depend_on_threads() {
        let work = Workload {
            op: Op::EmbedProject,
            precision: Precision::F16,
            shape: Shape::rect(3, 100, 24, 40, 77).unwrap(),
            data: Default::default(),
        };
        let inputs = Inputs::generate(&work, 3);
        let mut out = reference_output(&work, &inputs);
        let on = |threads: usize, out: &[f32]| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| verify(&work, &inputs, out))
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
    fn nan_fails_with_a_message() {
        let (work, inputs) = small(Op::Matmul);
        let mut out = reference_output(&work, &inputs);
        out[0] = f32::NAN;
        let acc = verify(&work, &inputs, &out);
        assert!(!acc.verified);
        assert!(acc.failure.unwrap().contains("non-finite"));
    }

    /// FP16 overflow is a property of the format: Inf where the exact result
    /// is past 65504 verifies (and is counted); Inf anywhere else, or a finite
    /// value where an input rounded to Inf, still fails.
    #[test]
    fn overflow_passes_only_where_the_format_overflows() {
        let work = Workload {
            op: Op::Matmul,
            precision: Precision::F16,
            shape: Shape::rect(1, 1, 2, 2, 1).unwrap(),
            data: Default::default(),
        };
        // y = [60000 + 6000, 0 + 6000]: column 0 overflows f16, column 1 does not.
        let inputs = Inputs {
            x: vec![60000.0, 6000.0],
            w: vec![1.0, 0.0, 1.0, 1.0],
            ..Default::default()
        };
        let acc = verify(&work, &inputs, &[f32::INFINITY, 6000.0]);
        assert!(acc.verified, "{acc:?}");
        assert_eq!(acc.overflows, 1);
        assert_eq!(acc.cost.non_finite, 1);
        let bad = verify(&work, &inputs, &[f32::INFINITY, f32::INFINITY]);
        assert!(!bad.verified);
        assert!(bad.failure.unwrap().contains("column 1"));
        // An input past 65504 is Inf in f16: a finite output is wrong.
        let inputs = Inputs {
            x: vec![70000.0, 0.0],
            ..inputs
        };
        let finite = verify(&work, &inputs, &[70000.0, 0.0]);
        assert!(!finite.verified);
        assert!(finite.failure.unwrap().contains("infinite"), "");
        // The same values in FP32 overflow nothing.
        let work32 = Workload {
            precision: Precision::F32,
            ..work
        };
        assert!(verify(&work32, &inputs, &[70000.0, 0.0]).verified);
        assert!(!verify(&work32, &inputs, &[f32::INFINITY, 0.0]).verified);
    }

    /// Below f16's normal range (6.1e-5) a result is rounded to 2^-24 steps or
    /// flushed to zero, both correct; a wrong value there, or an error of the
    /// same absolute size on a normal-range result, still fails.
    #[test]
    fn subnormal_outputs_are_allowed_their_absolute_rounding_and_nothing_more() {
        for p in [Precision::F16, Precision::Int8] {
            let work = Workload {
                op: Op::Matmul,
                precision: p,
                shape: Shape::rect(1, 1, 1, 3, 1).unwrap(),
                data: Default::default(),
            };
            // One-deep: y = x * w, exact in f32; columns 0 and 2 are subnormal in f16.
            let inputs = Inputs {
                x: vec![0.01],
                w: vec![0.003, 0.5, -0.0021],
                ..Default::default()
            };
            let exact = reference_output(&work, &inputs);
            let want = |c: usize| {
                let x = p.round(0.01) as f64;
                x * p.stored_weight(&inputs.w, 3)[c] as f64
            };
            assert!(want(0).abs() < 6.1e-5 && want(2).abs() < 6.1e-5);
            let stored: Vec<f32> = exact.iter().map(|&v| p.round(v)).collect();
            // The stored subnormal is off by more than the relative bound allows:
            // without the allowance this output would fail.
            let rel = (stored[0] as f64 - want(0)).abs() / want(0).abs();
            assert!(rel > tolerance(Op::Matmul, p, 1), "{p}: {rel}");
            assert!(verify(&work, &inputs, &stored).verified, "{p} rounded");
            let flushed = [0.0, stored[1], -0.0];
            assert!(verify(&work, &inputs, &flushed).verified, "{p} flushed");
            // Off by two smallest normals at a subnormal result: wrong.
            let mut bad = stored.clone();
            bad[2] += 2.0 * p.min_normal() as f32;
            let acc = verify(&work, &inputs, &bad);
            assert!(!acc.verified, "{p}: {acc:?}");
            assert!(acc.failure.unwrap().contains("column 2"));
            // The same absolute error (1e-5, under the smallest normal) on the
            // normal-range result 0.005 is 2e-3 relative: wrong.
            let mut bad = stored.clone();
            bad[1] += 1e-5;
            let acc = verify(&work, &inputs, &bad);
            assert!(!acc.verified, "{p}: {acc:?}");
            assert!(acc.failure.unwrap().contains("column 1"));
        }
    }

    #[test]
    fn tolerance_grows_with_k_and_precision() {
        assert!(
            tolerance(Op::Matmul, Precision::F32, 1024) > tolerance(Op::Matmul, Precision::F32, 64)
        );
        assert!(
            tolerance(Op::Matmul, Precision::F16, 64) > tolerance(Op::Matmul, Precision::F32, 64)
        );
        assert_eq!(tolerance(Op::Embedding, Precision::F16, 64), 0.0);
    }

    /// One element off by 10x the tolerance (in the normalised units the check
    /// uses) fails, and off by half of it passes, in every precision and at a
    /// depth where the bound is mostly accumulation: a tolerance made much
    /// looser (or tighter) than the derived bound fails this.
    #[test]
    fn an_element_off_by_ten_tolerances_fails_and_half_of_one_passes() {
        for op in [Op::Matmul, Op::EmbedProject] {
            for p in Precision::ALL {
                let work = Workload {
                    op,
                    precision: p,
                    shape: Shape::new(1, 3, 300, 17).unwrap(),
                    data: Default::default(),
                };
                let inputs = Inputs::generate(&work, 5);
                let exact = reference_output(&work, &inputs);
                let n = work.mkn().2 as usize;
                let (r, c) = (1usize, 7usize);
                let x: Vec<f32> = activation_row(&work, &inputs, r as u64)
                    .iter()
                    .map(|&v| p.round(v))
                    .collect();
                let (mut row, mut scale) = (vec![0.0; n], vec![0.0; n]);
                reference_row(
                    &work,
                    &x,
                    &p.stored_weight(&inputs.w, n),
                    &mut row,
                    &mut scale,
                );
                // The bound derived here, not read from `tolerance`, so that a
                // looser `tolerance` lets the 10x element through and fails.
                let output_rounding = match p {
                    Precision::F32 => 0.0,
                    Precision::F16 => 2f64.powi(-11),
                    Precision::Bf16 => 2f64.powi(-8),
                    Precision::Int8 => 2f64.powi(-24) + 2f64.powi(-11),
                };
                let tol = 2.0 * 300.0 * 2f64.powi(-24) + output_rounding;
                for (factor, ok) in [(10.0, false), (0.5, true), (-10.0, false)] {
                    let mut out = exact.clone();
                    out[r * n + c] = (row[c] + factor * tol * scale[c]) as f32;
                    let acc = verify(&work, &inputs, &out);
                    assert_eq!(acc.verified, ok, "{op} {p} x{factor}: {acc:?}");
                    if !ok {
                        let msg = acc.failure.unwrap();
                        assert!(msg.contains("row 1, column 7"), "{msg}");
                    }
                    let want = factor.abs() * tol;
                    assert!(
                        (acc.max_norm_err - want).abs() <= 0.05 * want,
                        "{op} {p} x{factor}: {} vs {want}",
                        acc.max_norm_err
                    );
                }
            }
        }
    }

    /// The bounds themselves: 2*k*u32 for f32 accumulation, plus one output
    /// rounding of the format (and for INT8 one f32 rounding of the scale);
    /// 8*sqrt(k)*u16 + u16 for f16 accumulation; a gather is exact.
    #[test]
    fn tolerances_are_the_derived_bounds() {
        let (u32_, u16_, ubf16) = (2f64.powi(-24), 2f64.powi(-11), 2f64.powi(-8));
        let k = 4096;
        let acc = 2.0 * 4096.0 * u32_;
        assert_eq!(tolerance(Op::Matmul, Precision::F32, k), acc);
        assert_eq!(tolerance(Op::Matmul, Precision::F16, k), acc + u16_);
        assert_eq!(tolerance(Op::EmbedProject, Precision::Bf16, k), acc + ubf16);
        assert_eq!(tolerance(Op::Matmul, Precision::Int8, k), acc + u32_ + u16_);
        assert_eq!(
            tolerance_f16_accumulation(Op::Matmul, k),
            8.0 * 64.0 * u16_ + u16_
        );
        for p in Precision::ALL {
            assert_eq!(tolerance(Op::Embedding, p, k), 0.0);
        }
        assert_eq!(tolerance_f16_accumulation(Op::Embedding, k), 0.0);
    }

    /// Every row up to 2^28 multiply-adds (or up to 256 rows), a spread of
    /// 256 rows past it; a gather counts M*N copies.
    #[test]
    fn the_full_reference_ends_at_two_to_the_28_multiply_adds() {
        let rows = |op, m, k, n| {
            rows_to_check(
                &Workload {
                    op,
                    precision: Precision::F32,
                    shape: Shape::rect(1, m, k, n, 1).unwrap(),
                    data: Default::default(),
                },
                SAMPLED_ROWS,
            )
            .len()
        };
        assert_eq!(rows(Op::Matmul, 1024, 512, 512), 1024);
        assert_eq!(rows(Op::Matmul, 1025, 512, 512), 256);
        assert_eq!(rows(Op::Matmul, 256, 4096, 4096), 256);
        assert_eq!(rows(Op::Matmul, 200, 8192, 8192), 200);
        assert_eq!(rows(Op::Embedding, 1 << 18, 1024, 1), 1 << 18);
        assert_eq!(rows(Op::Embedding, (1 << 18) + 1, 1024, 1), 256);
    }

    /// An infinite FP16 output is accepted exactly where the exact result,
    /// plus the tolerance, reaches f16's overflow threshold (65520), and an
    /// f16 accumulator may also overflow where sum|x*w| does.
    #[test]
    fn overflow_is_accepted_within_the_tolerance_of_the_threshold_only() {
        let work = Workload {
            op: Op::Matmul,
            precision: Precision::F16,
            shape: Shape::rect(1, 1, 2, 1, 1).unwrap(),
            data: Default::default(),
        };
        let check = |x: [f32; 2], acc: Accumulation| {
            let inputs = Inputs {
                x: x.to_vec(),
                w: vec![1.0, 1.0],
                ..Default::default()
            };
            verify_accumulated(&work, &inputs, &[f32::INFINITY], acc)
        };
        // 65504 (f16's largest) + 2^-11 * 65504 = 65536 >= 65520: may round to Inf.
        let edge = check([32768.0, 32736.0], Accumulation::F32);
        assert!(edge.verified && edge.overflows == 1, "{edge:?}");
        // 64976 + 31.7 < 65520: Inf is wrong.
        assert!(!check([30000.0, 34976.0], Accumulation::F32).verified);
        // Exact result 0, but sum|x*w| = 131008: only an f16 accumulator may overflow.
        assert!(!check([65504.0, -65504.0], Accumulation::F32).verified);
        let f16_acc = check([65504.0, -65504.0], Accumulation::F16);
        assert!(f16_acc.verified && f16_acc.overflows == 1, "{f16_acc:?}");
        assert!(!check([1.0, 1.0], Accumulation::F16).verified);
    }

    #[test]
    fn large_points_sample_rows_including_the_ends() {
        let work = Workload {
            op: Op::Matmul,
            precision: Precision::F32,
            shape: Shape::new(64, 1024, 1024, 1).unwrap(),
            data: Default::default(),
        };
        let rows = rows_to_check(&work, SAMPLED_ROWS);
        assert_eq!(rows.first(), Some(&0));
        assert_eq!(rows.last(), Some(&(64 * 1024 - 1)));
        assert_eq!(rows.len(), SAMPLED_ROWS as usize);
        let tuning = rows_to_check(&work, TUNING_SAMPLED_ROWS);
        assert_eq!(tuning.len(), TUNING_SAMPLED_ROWS as usize);
        assert_eq!(tuning.first(), Some(&0));
        assert_eq!(tuning.last(), Some(&(64 * 1024 - 1)));
    }
}

//! The projection's oracle: each output row in f64 with its normaliser
//! `sum_k |x_k * w_kj|`, from the inputs as stored (rounded to the point's
//! precision; INT8 weights quantised per column and dequantised) or as
//! generated, and the tolerance a correct kernel meets.
//!
//! A dot product of length K accumulated in f32 has a worst-case error of
//! `gamma_K = K*u/(1 - K*u)` times `sum |x*w|` (Higham, Accuracy and
//! Stability of Numerical Algorithms, 3.1), whatever the summation order, so
//! a kernel within it is correct and one outside it is wrong. Below the
//! formats' smallest normal values rounding is absolute; see
//! [`underflow_allowance`].

use std::borrow::Cow;

use super::quantize::stored_weight;
use crate::ops::op::Reference;
use crate::precision::Precision;
use crate::prepared_op::Accumulation;

/// Unit roundoff of f32 (2^-24).
const U32: f64 = 5.960_464_477_539_063e-8;
/// Unit roundoff of f16 (2^-11).
const U16: f64 = 4.882_812_5e-4;
/// Smallest positive normal f32 (2^-126): an f32 product below it is subnormal or flushed.
const F32_MIN_NORMAL: f64 = 1.175_494_350_822_287_5e-38;
/// Smallest positive normal f16 (2^-14).
const F16_MIN_NORMAL: f64 = 6.103_515_625e-5;

/// The tolerance on the normalised error of a projection of inner size `k`
/// accumulated in f32.
///
/// We allow 2*k*u32 (margin for the denominator of gamma_k and for FMA
/// contraction). FP16 and BF16 storage add one final rounding of the output
/// (relative u of |y| <= scale: 2^-11 for f16, 2^-8 for bf16); the inputs are
/// exact in the format and their products exact in f32 (11 + 11 and 8 + 8
/// significant bits fit f32's 24), so nothing else grows. INT8 weights times
/// FP16 activations are exact in f32 (8 + 11 bits); the column's scale adds
/// one f32 rounding (applied to the sum or to each weight), the FP16 output
/// one f16 rounding.
pub fn tolerance(precision: Precision, k: u64) -> f64 {
    let accumulate = 2.0 * k as f64 * U32;
    match precision {
        Precision::F32 => accumulate,
        Precision::F16 | Precision::Bf16 => accumulate + precision.unit_roundoff(),
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
pub fn tolerance_f16_accumulation(k: u64) -> f64 {
    8.0 * (k as f64).sqrt() * U16 + U16
}

/// The absolute error, past `tol * scale`, that underflow lets a correct
/// projection of inner size `k` in `precision` add to one output element
/// whose f64 result is `expected`.
///
/// The relative bounds of [`tolerance`] hold only above the formats' smallest
/// normal values. Below them a result is rounded to a fixed spacing (f16's
/// subnormals are 2^-24 apart) or flushed to zero, which WGSL allows: either
/// way off by less than the smallest normal. So an output whose value lies
/// below its format's normal range (f16: 6.1e-5, reached by a one-deep
/// projection or by cancellation) may be off by that much; every accumulated
/// product may underflow too (f32: 2^-126 each, k of them and the INT8 column
/// scale; in an f16 accumulator 2^-14, in the probabilistic sqrt(k) of
/// [`tolerance_f16_accumulation`]).
pub fn underflow_allowance(
    precision: Precision,
    accumulation: Accumulation,
    k: u64,
    tol: f64,
    expected: f64,
    scale: f64,
) -> f64 {
    let k = k as f64;
    let accumulate = match accumulation {
        Accumulation::F32 => (k + 1.0) * F32_MIN_NORMAL,
        Accumulation::F16 => 8.0 * k.sqrt() * F16_MIN_NORMAL,
    };
    let min_normal = precision.min_normal();
    let stored = if expected.abs() + tol * scale + accumulate < min_normal {
        min_normal
    } else {
        0.0
    };
    accumulate + stored
}

/// Where a projection's activation rows come from.
pub enum Activations<'a> {
    /// `x[M, K]` itself.
    Rows(&'a [f32]),
    /// Rows of a table `[V, K]` picked by token ids (an embedding lookup
    /// feeding the projection).
    Gathered {
        /// The table.
        table: &'a [f32],
        /// One id per row.
        ids: &'a [u32],
    },
}

impl Activations<'_> {
    /// Row `r`, `k` wide.
    fn row(&self, r: u64, k: usize) -> &[f32] {
        let (data, src) = match self {
            Activations::Rows(x) => (*x, r as usize),
            Activations::Gathered { table, ids } => (*table, ids[r as usize] as usize),
        };
        &data[src * k..(src + 1) * k]
    }
}

/// The f64 oracle of `y[M, N] = x[M, K] @ W[K, N]`.
pub struct Projection<'a> {
    x: Activations<'a>,
    w: &'a [f32],
    /// The weight as stored (rounded, or quantised and dequantised).
    stored_w: Cow<'a, [f32]>,
    m: u64,
    k: usize,
    n: usize,
    precision: Precision,
    accumulation: Accumulation,
}

impl<'a> Projection<'a> {
    /// The oracle of an `m`-row projection of `x` by the `k` x `n` weight
    /// `w`, stored in `precision`, for a kernel accumulating as `accumulation`.
    pub fn new(
        x: Activations<'a>,
        w: &'a [f32],
        (m, k, n): (u64, u64, u64),
        precision: Precision,
        accumulation: Accumulation,
    ) -> Self {
        let stored_w = if precision == Precision::F32 {
            Cow::Borrowed(w)
        } else {
            Cow::Owned(stored_weight(precision, w, n as usize))
        };
        Projection {
            x,
            w,
            stored_w,
            m,
            k: k as usize,
            n: n as usize,
            precision,
            accumulation,
        }
    }
}

/// `out[j] = sum_k x_k w_kj` in f64, `scale[j] = sum_k |x_k w_kj|`.
fn dot_row(x: &[f32], w: &[f32], n: usize, out: &mut [f64], scale: &mut [f64]) {
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

impl Reference for Projection<'_> {
    fn shape(&self) -> (u64, usize) {
        (self.m, self.n)
    }

    fn row_macs(&self) -> u64 {
        (self.k * self.n) as u64
    }

    fn row(&self, r: u64, stored: bool, out: &mut [f64], norm: &mut [f64]) {
        let x = self.x.row(r, self.k);
        if stored {
            let p = self.precision;
            let xq: Vec<f32> = x.iter().map(|&v| p.round(v)).collect();
            dot_row(&xq, &self.stored_w, self.n, out, norm);
        } else {
            dot_row(x, self.w, self.n, out, norm);
        }
    }

    fn tolerance(&self) -> f64 {
        match self.accumulation {
            Accumulation::F32 => tolerance(self.precision, self.k as u64),
            Accumulation::F16 => tolerance_f16_accumulation(self.k as u64),
        }
    }

    fn underflow_allowance(&self, tol: f64, expected: f64, norm: f64) -> f64 {
        underflow_allowance(
            self.precision,
            self.accumulation,
            self.k as u64,
            tol,
            expected,
            norm,
        )
    }

    fn accumulator_overflows(&self, _norm: f64) -> bool {
        self.accumulation == Accumulation::F16
    }

    fn ranked(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::matmul::inputs::{generate, Tensors};
    use crate::ops::matmul::params::Params;
    use crate::verify::{expected_output, verify};

    /// The underflow allowance, worked by hand: k + 1 products of 2^-126 in
    /// an f32 accumulator, 8 sqrt(k) of 2^-14 in an f16 one, plus FP16's
    /// smallest normal where the element (with its tolerance) is below it.
    #[test]
    fn the_underflow_allowance_is_as_worked_by_hand() {
        let (f32_min, f16_min) = (2f64.powi(-126), 2f64.powi(-14));
        let a =
            |p, acc, k, tol, expected, scale| underflow_allowance(p, acc, k, tol, expected, scale);
        use Accumulation::{F16, F32};
        assert_eq!(a(Precision::F32, F32, 3, 0.0, 1.0, 1.0), 4.0 * f32_min);
        assert_eq!(a(Precision::F16, F32, 3, 0.0, 1.0, 1.0), 4.0 * f32_min);
        assert_eq!(
            a(Precision::F16, F32, 3, 0.0, 0.0, 0.0),
            4.0 * f32_min + f16_min
        );
        assert_eq!(a(Precision::F16, F16, 16, 0.0, 0.0, 0.0), 32.0 * f16_min);
        // 2^-15 with a tolerance of another 2^-15 reaches the normal range:
        // no allowance for the stored element.
        let half = f16_min / 2.0;
        assert_eq!(a(Precision::F16, F32, 0, 0.5, half, f16_min), f32_min);
        assert_eq!(a(Precision::F16, F32, 0, 0.0, half, 0.0), f32_min + f16_min);
    }

    fn projection<'a>(
        t: &'a Tensors,
        (m, k, n): (u64, u64, u64),
        p: Precision,
        acc: Accumulation,
    ) -> Projection<'a> {
        Projection::new(Activations::Rows(&t.x), &t.w, (m, k, n), p, acc)
    }

    #[test]
    fn reference_matches_hand_computed_projection() {
        let t = Tensors {
            x: vec![1.0, 2.0],
            w: vec![3.0, 4.0, 5.0, 6.0],
        };
        let r = projection(&t, (1, 2, 2), Precision::F32, Accumulation::F32);
        let acc = verify(&r, Precision::F32, &[13.0, 16.0]);
        assert!(acc.verified, "{acc:?}");
        let bad = verify(&r, Precision::F32, &[13.0, 16.5]);
        assert!(!bad.verified);
        assert!(bad.failure.unwrap().contains("column 1"));
    }

    #[test]
    fn exact_outputs_verify_and_perturbed_ones_fail() {
        for p in Precision::ALL {
            let params = Params {
                batch: 1,
                seq: 5,
                dim: 7,
                out_dim: 7,
            };
            let i = generate(&params, Default::default(), 1);
            let r = projection(i.get(), params.mkn(), p, Accumulation::F32);
            let mut out = expected_output(&r);
            assert!(verify(&r, p, &out).verified, "{p}");
            out[3] += 0.25;
            assert!(!verify(&r, p, &out).verified, "{p}");
        }
    }

    /// FP16 overflow is a property of the format: Inf where the exact result
    /// is past 65504 verifies (and is counted); Inf anywhere else, or a finite
    /// value where an input rounded to Inf, still fails.
    #[test]
    fn overflow_passes_only_where_the_format_overflows() {
        // y = [60000 + 6000, 0 + 6000]: column 0 overflows f16, column 1 does not.
        let t = Tensors {
            x: vec![60000.0, 6000.0],
            w: vec![1.0, 0.0, 1.0, 1.0],
        };
        let r = projection(&t, (1, 2, 2), Precision::F16, Accumulation::F32);
        let acc = verify(&r, Precision::F16, &[f32::INFINITY, 6000.0]);
        assert!(acc.verified, "{acc:?}");
        assert_eq!(acc.overflows, 1);
        assert_eq!(acc.cost.non_finite, 1);
        let bad = verify(&r, Precision::F16, &[f32::INFINITY, f32::INFINITY]);
        assert!(!bad.verified);
        assert!(bad.failure.unwrap().contains("column 1"));
        // An input past 65504 is Inf in f16: a finite output is wrong.
        let t = Tensors {
            x: vec![70000.0, 0.0],
            ..t
        };
        let r = projection(&t, (1, 2, 2), Precision::F16, Accumulation::F32);
        let finite = verify(&r, Precision::F16, &[70000.0, 0.0]);
        assert!(!finite.verified);
        assert!(finite.failure.unwrap().contains("infinite"), "");
        // The same values in FP32 overflow nothing.
        let r32 = projection(&t, (1, 2, 2), Precision::F32, Accumulation::F32);
        assert!(verify(&r32, Precision::F32, &[70000.0, 0.0]).verified);
        assert!(!verify(&r32, Precision::F32, &[f32::INFINITY, 0.0]).verified);
    }

    /// Below f16's normal range (6.1e-5) a result is rounded to 2^-24 steps or
    /// flushed to zero, both correct; a wrong value there, or an error of the
    /// same absolute size on a normal-range result, still fails.
    #[test]
    fn subnormal_outputs_are_allowed_their_absolute_rounding_and_nothing_more() {
        for p in [Precision::F16, Precision::Int8] {
            // One-deep: y = x * w, exact in f32; columns 0 and 2 are subnormal in f16.
            let t = Tensors {
                x: vec![0.01],
                w: vec![0.003, 0.5, -0.0021],
            };
            let r = projection(&t, (1, 1, 3), p, Accumulation::F32);
            let exact = expected_output(&r);
            let want = |c: usize| {
                let x = p.round(0.01) as f64;
                x * stored_weight(p, &t.w, 3)[c] as f64
            };
            assert!(want(0).abs() < 6.1e-5 && want(2).abs() < 6.1e-5);
            let stored: Vec<f32> = exact.iter().map(|&v| p.round(v)).collect();
            // The stored subnormal is off by more than the relative bound allows:
            // without the allowance this output would fail.
            let rel = (stored[0] as f64 - want(0)).abs() / want(0).abs();
            assert!(rel > tolerance(p, 1), "{p}: {rel}");
            assert!(verify(&r, p, &stored).verified, "{p} rounded");
            let flushed = [0.0, stored[1], -0.0];
            assert!(verify(&r, p, &flushed).verified, "{p} flushed");
            // Off by two smallest normals at a subnormal result: wrong.
            let mut bad = stored.clone();
            bad[2] += 2.0 * p.min_normal() as f32;
            let acc = verify(&r, p, &bad);
            assert!(!acc.verified, "{p}: {acc:?}");
            assert!(acc.failure.unwrap().contains("column 2"));
            // The same absolute error (1e-5, under the smallest normal) on the
            // normal-range result 0.005 is 2e-3 relative: wrong.
            let mut bad = stored.clone();
            bad[1] += 1e-5;
            let acc = verify(&r, p, &bad);
            assert!(!acc.verified, "{p}: {acc:?}");
            assert!(acc.failure.unwrap().contains("column 1"));
        }
    }

    #[test]
    fn tolerance_grows_with_k_and_precision() {
        assert!(tolerance(Precision::F32, 1024) > tolerance(Precision::F32, 64));
        assert!(tolerance(Precision::F16, 64) > tolerance(Precision::F32, 64));
    }

    /// One element off by 10x the tolerance (in the normalised units the check
    /// uses) fails, and off by half of it passes, in every precision and at a
    /// depth where the bound is mostly accumulation, with the activations read
    /// directly and through a table: a tolerance made much looser (or
    /// tighter) than the derived bound fails this.
    #[test]
    fn an_element_off_by_ten_tolerances_fails_and_half_of_one_passes() {
        let params = Params {
            batch: 1,
            seq: 3,
            dim: 300,
            out_dim: 300,
        };
        let i = generate(&params, Default::default(), 5);
        let t: &Tensors = i.get();
        // The same rows through a table of three rows and ids 0, 1, 2.
        let ids = [0u32, 1, 2];
        for gathered in [false, true] {
            for p in Precision::ALL {
                let x = if gathered {
                    Activations::Gathered {
                        table: &t.x,
                        ids: &ids,
                    }
                } else {
                    Activations::Rows(&t.x)
                };
                let r = Projection::new(x, &t.w, params.mkn(), p, Accumulation::F32);
                let exact = expected_output(&r);
                let n = 300;
                let (row_i, c) = (1usize, 7usize);
                let (mut row, mut scale) = (vec![0.0; n], vec![0.0; n]);
                r.row(row_i as u64, true, &mut row, &mut scale);
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
                    out[row_i * n + c] = (row[c] + factor * tol * scale[c]) as f32;
                    let acc = verify(&r, p, &out);
                    assert_eq!(acc.verified, ok, "{p} x{factor}: {acc:?}");
                    if !ok {
                        let msg = acc.failure.unwrap();
                        assert!(msg.contains("row 1, column 7"), "{msg}");
                    }
                    let want = factor.abs() * tol;
                    assert!(
                        (acc.max_norm_err - want).abs() <= 0.05 * want,
                        "{p} x{factor}: {} vs {want}",
                        acc.max_norm_err
                    );
                }
            }
        }
    }

    /// The bounds themselves: 2*k*u32 for f32 accumulation, plus one output
    /// rounding of the format (and for INT8 one f32 rounding of the scale);
    /// 8*sqrt(k)*u16 + u16 for f16 accumulation.
    #[test]
    fn tolerances_are_the_derived_bounds() {
        let (u32_, u16_, ubf16) = (2f64.powi(-24), 2f64.powi(-11), 2f64.powi(-8));
        let k = 4096;
        let acc = 2.0 * 4096.0 * u32_;
        assert_eq!(tolerance(Precision::F32, k), acc);
        assert_eq!(tolerance(Precision::F16, k), acc + u16_);
        assert_eq!(tolerance(Precision::Bf16, k), acc + ubf16);
        assert_eq!(tolerance(Precision::Int8, k), acc + u32_ + u16_);
        assert_eq!(tolerance_f16_accumulation(k), 8.0 * 64.0 * u16_ + u16_);
    }

    /// An infinite FP16 output is accepted exactly where the exact result,
    /// plus the tolerance, reaches f16's overflow threshold (65520), and an
    /// f16 accumulator may also overflow where sum|x*w| does.
    #[test]
    fn overflow_is_accepted_within_the_tolerance_of_the_threshold_only() {
        let check = |x: [f32; 2], acc: Accumulation| {
            let t = Tensors {
                x: x.to_vec(),
                w: vec![1.0, 1.0],
            };
            let r = projection(&t, (1, 2, 1), Precision::F16, acc);
            verify(&r, Precision::F16, &[f32::INFINITY])
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

    /// A projection's rows rank its columns (a vocabulary's logits), so its
    /// precision cost counts top-k agreement; its sampled rows cost K x N each.
    #[test]
    fn projections_are_ranked_and_cost_k_by_n_a_row() {
        let t = Tensors {
            x: vec![0.0; 6],
            w: vec![0.0; 6],
        };
        let r = projection(&t, (2, 3, 2), Precision::F32, Accumulation::F32);
        assert!(r.ranked());
        assert_eq!((r.shape(), r.row_macs()), ((2, 2), 6));
    }
}

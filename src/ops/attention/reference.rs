//! Attention's oracle: each output row `(b, s, h)` in f64 — the scores
//! `q . k_j / sqrt(D)` over the keys the query sees, a max-subtracted
//! softmax, the probability-weighted sum of the values — from the inputs as
//! stored (Q rounded to the activations' precision, K and V as the cache's
//! format stores them, int8 and FP8 dequantised) or as generated.
//!
//! ## The error bound
//! A kernel computes each score in f32 (a dot product of length D: error
//! within `gamma_D * c_j`, where `c_j = |scale| sum_d |q_d k_jd|`, Higham
//! 3.1), exponentiates it (a few ulps relative; WGSL allows `3 + 2|x|` ulps,
//! and `|x| <= 2 c_max` here), normalises by a sum of up to L terms and
//! accumulates `sum_j p_j v_jd` over up to L keys (gamma_L each, whatever the
//! order, the online softmax's rescalings included). An absolute error `e`
//! in a score is a relative error `e` in its probability, and in the sum's
//! normaliser, so with `c_max = max_j c_j` the output element's error is
//! within
//!
//! `(2 gamma_D (1 + c_max) + 2 gamma_L + 8u) sum_j p_j |v_jd| + u_out |o_d|`.
//!
//! The normaliser is `(1 + c_max) sum_j p_j |v_jd|` (which bounds `|o_d|`),
//! and the tolerance `(4 (D + L) + 32) u32 + u_out`: twice gamma (margin for
//! its denominator and FMA contraction, as the projection takes), the exp
//! and dequantisation roundings, and the output's storage rounding.

use super::inputs::Qkv;
use super::kv::{activation_precision, KvFormat, Stored};
use super::params::Params;
use crate::ops::op::Reference;
use crate::precision::Precision;

/// Unit roundoff of f32 (2^-24).
const U32: f64 = 5.960_464_477_539_063e-8;
/// Smallest positive normal f32 (2^-126).
const F32_MIN_NORMAL: f64 = 1.175_494_350_822_287_5e-38;

/// The f64 oracle of one attention point.
pub struct Attention<'a> {
    p: Params,
    qkv: &'a Qkv,
    /// Q and the output's precision.
    act: Precision,
    k: Stored<'a>,
    v: Stored<'a>,
    raw_k: Stored<'a>,
    raw_v: Stored<'a>,
    format: KvFormat,
}

impl<'a> Attention<'a> {
    /// The oracle of `p` at `precision` over `qkv`.
    pub fn new(p: &Params, precision: Precision, qkv: &'a Qkv) -> Self {
        let format = p.kv_precision.format(precision);
        let d = p.head_dim as usize;
        let head = p.context as usize * d;
        Attention {
            p: *p,
            qkv,
            act: activation_precision(precision),
            k: Stored::new(format, &qkv.k, d, head),
            v: Stored::new(format, &qkv.v, d, head),
            raw_k: Stored::new(KvFormat::F32, &qkv.k, d, head),
            raw_v: Stored::new(KvFormat::F32, &qkv.v, d, head),
            format,
        }
    }

    /// The softmax scale `1 / sqrt(D)` as the kernels hold it (an f32).
    pub fn scale(head_dim: u32) -> f32 {
        1.0 / (head_dim as f32).sqrt()
    }
}

impl Reference for Attention<'_> {
    fn shape(&self) -> (u64, usize) {
        (self.p.query_rows(), self.p.head_dim as usize)
    }

    fn row_macs(&self) -> u64 {
        2 * self.p.context as u64 * self.p.head_dim as u64
    }

    fn row(&self, r: u64, stored: bool, out: &mut [f64], norm: &mut [f64]) {
        let p = &self.p;
        let (h, d) = (p.heads as u64, p.head_dim as usize);
        let head = (r % h) as u32;
        let s = ((r / h) % p.seq as u64) as u32;
        let b = r / h / p.seq as u64;
        let g = (head / p.group()) as u64;
        let first_key = (b * p.kv_heads as u64 + g) * p.context as u64;
        let q: Vec<f64> = self.qkv.q[r as usize * d..(r as usize + 1) * d]
            .iter()
            .map(|&x| if stored { self.act.round(x) } else { x } as f64)
            .collect();
        let (k, v) = if stored {
            (&self.k, &self.v)
        } else {
            (&self.raw_k, &self.raw_v)
        };
        let scale = Attention::scale(p.head_dim) as f64;
        let n = p.visible(s) as usize;
        let mut scores = vec![0.0f64; n];
        let mut c_max = 0.0f64;
        let mut row = vec![0.0f64; d];
        for (j, sc) in scores.iter_mut().enumerate() {
            k.row(first_key as usize + j, &mut row);
            let (mut dot, mut mag) = (0.0, 0.0);
            for (a, b) in q.iter().zip(&row) {
                dot += a * b;
                mag += (a * b).abs();
            }
            *sc = dot * scale;
            c_max = c_max.max(mag * scale.abs());
        }
        let m = scores.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let mut sum = 0.0;
        for sc in scores.iter_mut() {
            *sc = (*sc - m).exp();
            sum += *sc;
        }
        out.iter_mut().for_each(|o| *o = 0.0);
        norm.iter_mut().for_each(|o| *o = 0.0);
        for (j, &e) in scores.iter().enumerate() {
            let pj = e / sum;
            v.row(first_key as usize + j, &mut row);
            for ((o, nm), &x) in out.iter_mut().zip(norm.iter_mut()).zip(&row) {
                *o += pj * x;
                *nm += pj * x.abs();
            }
        }
        norm.iter_mut().for_each(|nm| *nm *= 1.0 + c_max);
    }

    fn tolerance(&self) -> f64 {
        let (d, l) = (self.p.head_dim as f64, self.p.context as f64);
        (4.0 * (d + l) + 32.0) * U32
            + match self.act {
                Precision::F32 => 0.0,
                p => p.unit_roundoff(),
            }
    }

    /// Products and terms below f32's normal range (D + L + 2 of them), and
    /// an output below its format's normal range (f16: 6.1e-5), may be off
    /// by the format's smallest normal.
    fn underflow_allowance(&self, tol: f64, expected: f64, norm: f64) -> f64 {
        let accumulate = (self.p.head_dim + self.p.context + 2) as f64 * F32_MIN_NORMAL;
        let min_normal = self.act.min_normal();
        let stored = if expected.abs() + tol * norm + accumulate < min_normal {
            min_normal
        } else {
            0.0
        };
        accumulate + stored
    }

    fn ranked(&self) -> bool {
        false
    }

    /// FP32 Q with an int8 or FP8 cache stores the cache rounded.
    fn inputs_rounded(&self, precision: Precision) -> bool {
        precision != Precision::F32 || self.format != KvFormat::F32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::attention::kv::KvPrecision;
    use crate::verify::{expected_output, verify};

    fn tiny(causal: bool) -> (Params, Qkv) {
        // B1, S2, L3 (prefix 1), H2, G1, D2.
        let p = Params {
            batch: 1,
            seq: 2,
            context: 3,
            heads: 2,
            kv_heads: 1,
            head_dim: 2,
            causal,
            kv_precision: KvPrecision::Same,
            materialized: false,
        };
        let qkv = Qkv {
            q: vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 0.0],
            k: vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
            v: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        };
        (p, qkv)
    }

    /// Rows worked by hand: query 0 (position 1) sees keys 0 and 1 when
    /// causal; query 1 sees all three.
    #[test]
    fn rows_worked_by_hand() {
        let (p, qkv) = tiny(true);
        let r = Attention::new(&p, Precision::F32, &qkv);
        let s = 1.0 / 2f64.sqrt();
        let (mut out, mut norm) = (vec![0.0; 2], vec![0.0; 2]);
        // Row 0: (s0, h0), q = (1, 0): scores s*1, 0 over keys 0, 1.
        r.row(0, true, &mut out, &mut norm);
        let (e0, e1) = ((s - s).exp(), (0.0 - s).exp());
        let p0 = e0 / (e0 + e1);
        let want = p0 * 1.0 + (1.0 - p0) * 3.0;
        assert!((out[0] - want).abs() < 1e-6, "{} {want}", out[0]);
        assert!(norm[0] >= out[0].abs());
        // Row 3: (s1, h1), q = (2, 0): scores 2s, 0, 2s over all keys.
        r.row(3, true, &mut out, &mut norm);
        let (a, b) = ((2.0 * s).exp(), 1.0);
        let want = (a * 2.0 + b * 4.0 + a * 6.0) / (2.0 * a + b);
        assert!((out[1] - want).abs() < 1e-6, "{} {want}", out[1]);
        // Not causal, query 0 sees key 2 too.
        let (p, qkv) = tiny(false);
        let full = Attention::new(&p, Precision::F32, &qkv);
        full.row(0, true, &mut out, &mut norm);
        let e2 = (s - s).exp();
        let want = (e0 * 1.0 + e1 * 3.0 + e2 * 5.0) / (e0 + e1 + e2);
        assert!((out[0] - want).abs() < 1e-6);
    }

    /// The reference's own result passes; an element moved by the tolerance
    /// times its normaliser (twice over) fails, by half of it passes.
    #[test]
    fn the_tolerance_separates_a_correct_row_from_a_wrong_one() {
        let (p, qkv) = tiny(true);
        for prec in [Precision::F32, Precision::F16, Precision::Bf16] {
            let r = Attention::new(&p, prec, &qkv);
            let out = expected_output(&r);
            assert!(verify(&r, prec, &out).verified, "{prec}");
            let (mut o, mut n) = (vec![0.0; 2], vec![0.0; 2]);
            r.row(1, true, &mut o, &mut n);
            let tol = r.tolerance();
            let mut bad = out.clone();
            bad[2] = (o[0] + 3.0 * tol * n[0]) as f32;
            assert!(!verify(&r, prec, &bad).verified, "{prec}");
            let mut ok = out.clone();
            ok[2] = (o[0] + 0.3 * tol * n[0]) as f32;
            if prec == Precision::F32 {
                assert!(verify(&r, prec, &ok).verified, "{prec}");
            }
        }
        // A mask off by one (query 0 also seeing key 2) fails.
        let r = Attention::new(&p, Precision::F32, &qkv);
        let (pf, _) = tiny(false);
        let wrong = Attention::new(&pf, Precision::F32, &qkv);
        let mut out = expected_output(&r);
        out[..4].copy_from_slice(&expected_output(&wrong)[..4]);
        assert!(!verify(&r, Precision::F32, &out).verified);
    }
}

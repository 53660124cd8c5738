//! INT8 weights (W8A16), as LLM inference engines ship them: a projection's
//! weight as int8 with one f32 scale per output column (symmetric,
//! `max |w| / 127`), dequantised inside the kernel. Every backend and the
//! reference quantise through [`quantize_weight`], so they store the same
//! numbers.

use crate::precision::Precision;

/// A weight quantised to int8 per output column: `w[k, c] ~ q[k, c] * scales[c]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantizedWeight {
    /// `[k, n]` row-major, in -127..=127.
    pub q: Vec<i8>,
    /// One per column: the column's `max |w| / 127` (1 for an all-zero column).
    pub scales: Vec<f32>,
}

impl QuantizedWeight {
    /// `q * scale`, element by element, in f32.
    pub fn dequantize(&self) -> Vec<f32> {
        let n = self.scales.len();
        self.q
            .iter()
            .enumerate()
            .map(|(i, &q)| q as f32 * self.scales[i % n])
            .collect()
    }
}

/// Symmetric per-output-channel int8 quantisation of a `[k, n]` weight, as
/// weight-only inference engines do it: each column's scale maps its largest
/// magnitude to 127, values round to nearest (ties to even) and clamp to
/// -127..=127.
pub fn quantize_weight(w: &[f32], n: usize) -> QuantizedWeight {
    let mut max = vec![0.0f32; n];
    for row in w.chunks_exact(n) {
        for (m, &v) in max.iter_mut().zip(row) {
            *m = m.max(v.abs());
        }
    }
    let scales: Vec<f32> = max
        .iter()
        .map(|&m| {
            if m > 0.0 && m.is_finite() {
                m / 127.0
            } else {
                1.0
            }
        })
        .collect();
    let q = w
        .chunks_exact(n)
        .flat_map(|row| {
            row.iter()
                .zip(&scales)
                .map(|(&v, &s)| (v / s).round_ties_even().clamp(-127.0, 127.0) as i8)
        })
        .collect();
    QuantizedWeight { q, scales }
}

/// Bytes of a `k` x `n` weight in `precision`: its elements, plus one f32
/// scale per column for INT8.
pub fn weight_bytes(precision: Precision, k: u64, n: u64) -> u64 {
    match precision {
        Precision::Int8 => k * n + 4 * n,
        _ => k * n * precision.bytes(),
    }
}

/// A `k` x `n` weight as `precision` stores it, widened back to f32: rounded
/// element by element, or for INT8 quantised per column and dequantised.
pub fn stored_weight(precision: Precision, w: &[f32], n: usize) -> Vec<f32> {
    match precision {
        Precision::Int8 => quantize_weight(w, n).dequantize(),
        _ => w.iter().map(|&v| precision.round(v)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use half::f16;

    use super::*;

    #[test]
    fn int8_weights_quantise_per_column_and_count_a_byte_plus_scales() {
        // Column 0 spans +-254 (scale 2; 1.0 is a tie and rounds to even 0,
        // 3.0 to 2), column 1 is all zero (scale 1).
        let w = [254.0, 0.0, -100.0, 0.0, 1.0, 0.0, 3.0, 0.0];
        let qw = quantize_weight(&w, 2);
        assert_eq!(qw.scales, vec![2.0, 1.0]);
        assert_eq!(qw.q, vec![127, 0, -50, 0, 0, 0, 2, 0]);
        assert_eq!(qw.dequantize()[2], -100.0);
        assert_eq!(weight_bytes(Precision::Int8, 4, 5), 4 * 5 + 4 * 5);
        assert_eq!(
            Precision::ALL.map(|p| weight_bytes(p, 3, 5)),
            [60, 30, 30, 15 + 20]
        );
    }

    #[test]
    fn quantisation_clamps_and_keeps_zero_and_infinite_columns_usable() {
        // An infinite value would make the scale infinite: the column keeps 1.
        let w = [f32::INFINITY, 0.5, 2.0, -0.25];
        let qw = quantize_weight(&w, 2);
        assert_eq!(qw.scales, vec![1.0, 0.5 / 127.0]);
        assert_eq!(qw.q, vec![127, 127, 2, -64]);
        assert_eq!(qw.dequantize()[3], -64.0 * 0.5 / 127.0);
    }

    #[test]
    fn stored_weights_are_rounded_or_quantised() {
        let w = [0.1f32, -0.2, 0.3, 0.4];
        assert_eq!(stored_weight(Precision::F32, &w, 2), w.to_vec());
        assert_eq!(
            stored_weight(Precision::F16, &w, 2),
            w.iter()
                .map(|&v| f16::from_f32(v).to_f32())
                .collect::<Vec<_>>()
        );
        assert_eq!(
            stored_weight(Precision::Int8, &w, 2),
            quantize_weight(&w, 2).dequantize()
        );
    }
}

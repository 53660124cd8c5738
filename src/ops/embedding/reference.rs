//! The lookup's oracle: a copy, which must be exact. Each output row is the
//! table row its id names, as stored (rounded to the point's precision) or as
//! generated; an element's normaliser is its own magnitude.

use crate::ops::op::Reference;
use crate::precision::Precision;

/// The f64 oracle of `out[t, :] = table[ids[t], :]`.
pub struct Copy<'a> {
    /// The table `[V, K]`.
    pub table: &'a [f32],
    /// One id per output row.
    pub ids: &'a [u32],
    /// The row width K.
    pub k: usize,
    /// How the table is stored.
    pub precision: Precision,
}

impl Reference for Copy<'_> {
    fn shape(&self) -> (u64, usize) {
        (self.ids.len() as u64, self.k)
    }

    fn row_macs(&self) -> u64 {
        self.k as u64
    }

    fn row(&self, r: u64, stored: bool, out: &mut [f64], norm: &mut [f64]) {
        let src = self.ids[r as usize] as usize * self.k;
        let row = &self.table[src..src + self.k];
        for ((o, s), &v) in out.iter_mut().zip(norm.iter_mut()).zip(row) {
            let v = if stored { self.precision.round(v) } else { v } as f64;
            *o = v;
            *s = v.abs();
        }
    }

    /// A copy is exact.
    fn tolerance(&self) -> f64 {
        0.0
    }

    /// A copy is allowed nothing.
    fn underflow_allowance(&self, _: f64, _: f64, _: f64) -> f64 {
        0.0
    }

    fn ranked(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{expected_output, verify};

    #[test]
    fn a_copy_must_be_exact_in_every_precision() {
        let table = [0.1f32, -2.5, 3.0, 70000.0, 1e-6, 7.0];
        let ids = [2u32, 1, 0];
        for p in Precision::ALL {
            let r = Copy {
                table: &table,
                ids: &ids,
                k: 2,
                precision: p,
            };
            // A copy has no accumulator to overflow, however large the row.
            assert!(!r.ranked() && r.tolerance() == 0.0 && !r.accumulator_overflows(1e30));
            // A row costs its width; nothing underflows in a copy.
            assert_eq!(r.row_macs(), 2);
            assert_eq!(r.underflow_allowance(0.0, 1e-40, 1e-40), 0.0);
            let mut out = expected_output(&r);
            assert_eq!(out.len(), 6);
            assert_eq!(out[0], p.round(1e-6));
            let acc = verify(&r, p, &out);
            // FP16's copy of 70000 is infinite, as the format must make it.
            assert!(acc.verified, "{p}: {acc:?}");
            out[5] = f32::from_bits(out[5].to_bits() ^ 1);
            assert!(!verify(&r, p, &out).verified, "{p}");
        }
    }
}

//! The storage element types the CPU kernels are written once for (f32, f16,
//! bf16): conversion from the f32 the inputs are generated in, and widening
//! to f32 and rounding back, a slice at a time (SIMD where the CPU converts
//! in hardware).

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rayon::prelude::*;

use crate::precision::Precision;

/// A storage element type the CPU kernels are written once for.
pub trait Element: Copy + Default + Send + Sync + 'static {
    /// The precision it stores.
    const PRECISION: Precision;
    /// Converts from the f32 the inputs are generated in.
    fn from_f32(v: f32) -> Self;
    /// Widens to f32 for verification.
    fn to_f32(self) -> f32;
    /// Widens a slice to f32 (SIMD where the CPU converts in hardware).
    fn widen(src: &[Self], dst: &mut [f32]);
    /// Rounds a slice of f32 into this type (SIMD where the CPU converts in
    /// hardware: F16C's `vcvtps2ph` is ~6x the scalar conversion here).
    fn narrow(src: &[f32], dst: &mut [Self]) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = Self::from_f32(v);
        }
    }
}

impl Element for f32 {
    const PRECISION: Precision = Precision::F32;
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn widen(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

impl Element for f16 {
    const PRECISION: Precision = Precision::F16;
    fn narrow(src: &[f32], dst: &mut [Self]) {
        dst.convert_from_f32_slice(src);
    }
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn widen(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
}

impl Element for bf16 {
    const PRECISION: Precision = Precision::Bf16;
    fn narrow(src: &[f32], dst: &mut [Self]) {
        dst.convert_from_f32_slice(src);
    }
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    /// A BF16 is the top half of an f32: element by element over zipped
    /// slices, which the compiler vectorises (`half`'s slice conversion is an
    /// indexed scalar loop).
    fn widen(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.to_f32();
        }
    }
}

/// Rounds `src` into `dst`, in parallel.
pub fn convert_into<T: Element>(dst: &mut [T], src: &[f32]) {
    dst.par_chunks_mut(1 << 16)
        .zip(src.par_chunks(1 << 16))
        .for_each(|(d, s)| T::narrow(s, d));
}

/// `v` widened to f32, in parallel (an output read back for verification).
pub fn widened<T: Element>(v: &[T]) -> Vec<f32> {
    v.par_iter().map(|x| x.to_f32()).collect()
}

//! The CPU projection for few rows (decode: one new token per sequence),
//! where reading the weight once bounds the product: each task streams whole
//! rows of the weight (or a block of columns) over a range of K with f32
//! accumulators, and the ranges' partial sums are added at the end. The inner
//! loop is compiled for AVX2, FMA and F16C where the CPU has them (checked at
//! run time), else portable; INT8 weights are widened as they are read.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::ops::Range;

use half::{bf16, f16};
use rayon::prelude::*;

use crate::backend::cpu::element::Element;

/// A weight element the skinny loop widens to f32 as it reads it: the
/// storage types, and an INT8 weight's quantized values (its scales are
/// applied to the sums).
pub trait WeightElement: Copy + Sync {
    /// `src` as f32: itself, or widened into `buf`.
    fn as_f32<'a>(src: &'a [Self], buf: &'a mut [f32]) -> &'a [f32];
    /// Eight elements at `p` widened to f32 in one 256-bit register.
    ///
    /// # Safety
    /// `p` points at eight readable elements; the CPU has AVX2 and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> __m256;
}

impl WeightElement for f32 {
    #[inline(always)]
    fn as_f32<'a>(src: &'a [Self], _: &'a mut [f32]) -> &'a [f32] {
        src
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> __m256 {
        // SAFETY: eight readable f32 at p (the caller's contract).
        unsafe { _mm256_loadu_ps(p) }
    }
}

impl WeightElement for f16 {
    #[inline(always)]
    fn as_f32<'a>(src: &'a [Self], buf: &'a mut [f32]) -> &'a [f32] {
        widened(src, buf)
    }
    /// F16C's `vcvtph2ps`: eight halves in one instruction.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> __m256 {
        // SAFETY: 16 readable bytes at p; the CPU has F16C (the caller's contract).
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast::<__m128i>())) }
    }
}

impl WeightElement for bf16 {
    #[inline(always)]
    fn as_f32<'a>(src: &'a [Self], buf: &'a mut [f32]) -> &'a [f32] {
        widened(src, buf)
    }
    /// A BF16 is the top half of an f32: zero-extend to 32 bits, shift up 16.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> __m256 {
        // SAFETY: 16 readable bytes at p; the CPU has AVX2 (the caller's contract).
        unsafe {
            let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast::<__m128i>()));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h))
        }
    }
}

/// INT8 widens exactly (|q| <= 127), element by element over zipped slices,
/// which the compiler vectorises (sign-extend, convert).
impl WeightElement for i8 {
    #[inline(always)]
    fn as_f32<'a>(src: &'a [Self], buf: &'a mut [f32]) -> &'a [f32] {
        for (d, &q) in buf.iter_mut().zip(src) {
            *d = q as f32;
        }
        &buf[..src.len()]
    }
    /// Sign-extend eight bytes to 32 bits, convert.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> __m256 {
        // SAFETY: 8 readable bytes at p; the CPU has AVX2 (the caller's contract).
        unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast::<__m128i>()))) }
    }
}

/// `src` widened into the front of `buf` by [`Element::widen`].
#[inline(always)]
fn widened<'a, T: Element>(src: &[T], buf: &'a mut [f32]) -> &'a [f32] {
    let out = &mut buf[..src.len()];
    T::widen(src, out);
    out
}

/// Bytes of f32 accumulators one task of [`matmul_skinny`] keeps: a share of
/// an L2, so a task's columns are whole rows of w wherever they fit (decode
/// at M = 1 up to N = 32768), and w streams past as one contiguous run.
const SKINNY_ACC_BYTES: usize = 128 << 10;

/// Bytes of accumulators one pass of the inner loop updates: an L1's worth,
/// beside the four widened rows of w it adds into them.
const SKINNY_TILE_BYTES: usize = 16 << 10;

/// Fewest rows of w one task adds when K is split between tasks.
const SKINNY_MIN_ROWS: usize = 64;

/// Rows of w added per pass over the accumulators: a quarter of the
/// accumulator loads and stores per multiply-add.
const KU: usize = 4;

/// `y[m, n] = x[m, k] @ w[k, n]` for few rows (decode: one row per sequence),
/// with f32 accumulators. The weight is read once, which is what bounds such
/// a product, so the work is cut to read it in long contiguous runs: each
/// task owns a block of output columns (whole rows of w where the
/// accumulators fit in [`SKINNY_ACC_BYTES`]) and a range of K, and the
/// ranges' partial sums are added at the end. Here (B1 S1 K4096 N4096 FP16,
/// `bench`), blocks of 1024 columns, a 2 KiB run per row, read 8 GB/s.
/// An INT8 weight passes its per-column `scales`, applied to the sums.
pub(super) fn matmul_skinny<T: Element, W: WeightElement>(
    x: &[T],
    w: &[W],
    scales: Option<&[f32]>,
    y: &mut [T],
    k: usize,
    n: usize,
) {
    let mut xs = vec![0f32; x.len()];
    T::widen(x, &mut xs);
    let m = (y.len() / n).max(1);
    let threads = rayon::current_num_threads().max(1);
    let width = (SKINNY_ACC_BYTES / 4 / m).next_multiple_of(16).min(n);
    let blocks = n.div_ceil(width);
    // Split K where the column blocks alone leave a core idle: at least two
    // tasks per thread, each at least SKINNY_MIN_ROWS rows (a multiple of KU).
    let chunks = (2 * threads)
        .div_ceil(blocks)
        .min(k.div_ceil(SKINNY_MIN_ROWS))
        .max(1);
    let rows = k.div_ceil(chunks).next_multiple_of(KU);
    let chunks = k.div_ceil(rows).max(1);
    let task = |t: usize| {
        let (b, c) = (t / chunks, t % chunks);
        let c0 = b * width;
        let k0 = (c * rows).min(k);
        skinny_block(
            &xs,
            w,
            k,
            n,
            m,
            c0..(c0 + width).min(n),
            k0..(k0 + rows).min(k),
        )
    };
    let mut sums: Vec<Vec<f32>> = (0..blocks * chunks).into_par_iter().map(task).collect();
    for (b, parts) in sums.chunks_mut(chunks).enumerate() {
        let (first, rest) = parts.split_first_mut().expect("a chunk per block");
        for part in rest.iter() {
            for (a, p) in first.iter_mut().zip(part) {
                *a += p;
            }
        }
        let c0 = b * width;
        let cols = width.min(n - c0);
        for (r, out) in first.chunks_exact_mut(cols).enumerate() {
            if let Some(scales) = scales {
                for (a, &s) in out.iter_mut().zip(&scales[c0..c0 + cols]) {
                    *a *= s;
                }
            }
            T::narrow(out, &mut y[r * n + c0..r * n + c0 + cols]);
        }
    }
}

/// The sums of rows `ks` of w times the matching columns of x, for output
/// columns `cs`, as `m` rows of `cs.len()` f32: through fused multiply-adds
/// on 256-bit vectors where the CPU has AVX2, FMA and F16C (checked at run
/// time, so one binary serves every x86-64), else in whatever the build
/// targets (FMA is baseline on aarch64).
fn skinny_block<W: WeightElement>(
    xs: &[f32],
    w: &[W],
    k: usize,
    n: usize,
    m: usize,
    cs: Range<usize>,
    ks: Range<usize>,
) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
    {
        // SAFETY: the three features were detected on this CPU just now.
        return unsafe { skinny_block_avx2(xs, w, k, n, m, cs, ks) };
    }
    skinny_block_body::<W, { cfg!(target_arch = "aarch64") }, false>(xs, w, k, n, m, cs, ks)
}

/// [`skinny_block_body`] compiled for AVX2, FMA and F16C.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn skinny_block_avx2<W: WeightElement>(
    xs: &[f32],
    w: &[W],
    k: usize,
    n: usize,
    m: usize,
    cs: Range<usize>,
    ks: Range<usize>,
) -> Vec<f32> {
    skinny_block_body::<W, true, true>(xs, w, k, n, m, cs, ks)
}

/// `acc + x * v`, fused (one rounding) when `FMA`.
#[inline(always)]
fn madd<const FMA: bool>(acc: f32, x: f32, v: f32) -> f32 {
    if FMA {
        x.mul_add(v, acc)
    } else {
        acc + x * v
    }
}

/// `acc + x[0] * v[0] + ... + x[3] * v[3]`, added in that order.
#[inline(always)]
fn madd4<const FMA: bool>(acc: f32, x: [f32; KU], v: [f32; KU]) -> f32 {
    let s = madd::<FMA>(madd::<FMA>(acc, x[0], v[0]), x[1], v[1]);
    madd::<FMA>(madd::<FMA>(s, x[2], v[2]), x[3], v[3])
}

/// `a0[j] += x . (w0[j], w1[j], w2[j], w3[j])` for every column `j` of the
/// tile (and `a1` with `z` when `TWO`), in the order of the portable loop:
/// eight columns at a time, each row of w loaded and widened in a register
/// ([`WeightElement::load8`]) with no trip through memory, the remaining
/// columns one by one.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; every slice of `w`, `a0` and (when
/// `TWO`) `a1` has the same length.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn add4_avx2<W: WeightElement, const TWO: bool>(
    a0: &mut [f32],
    a1: &mut [f32],
    w: [&[W]; KU],
    x: [f32; KU],
    z: [f32; KU],
) {
    let len = a0.len();
    assert!(w.iter().all(|s| s.len() == len) && (!TWO || a1.len() == len));
    // SAFETY: every pointer below is at j + 8 <= len elements into a slice
    // of length len (asserted); the CPU has the features (the contract).
    // No closures here: a closure is a function of its own, compiled without
    // the caller's target features, so the intrinsics in it would be calls.
    unsafe {
        let (x0, x1, x2, x3) = (
            _mm256_set1_ps(x[0]),
            _mm256_set1_ps(x[1]),
            _mm256_set1_ps(x[2]),
            _mm256_set1_ps(x[3]),
        );
        let (z0, z1, z2, z3) = (
            _mm256_set1_ps(z[0]),
            _mm256_set1_ps(z[1]),
            _mm256_set1_ps(z[2]),
            _mm256_set1_ps(z[3]),
        );
        let mut j = 0;
        while j + 8 <= len {
            let v0 = W::load8(w[0].as_ptr().add(j));
            let v1 = W::load8(w[1].as_ptr().add(j));
            let v2 = W::load8(w[2].as_ptr().add(j));
            let v3 = W::load8(w[3].as_ptr().add(j));
            let p = a0.as_mut_ptr().add(j);
            let s = _mm256_fmadd_ps(x1, v1, _mm256_fmadd_ps(x0, v0, _mm256_loadu_ps(p)));
            _mm256_storeu_ps(p, _mm256_fmadd_ps(x3, v3, _mm256_fmadd_ps(x2, v2, s)));
            if TWO {
                let p = a1.as_mut_ptr().add(j);
                let s = _mm256_fmadd_ps(z1, v1, _mm256_fmadd_ps(z0, v0, _mm256_loadu_ps(p)));
                _mm256_storeu_ps(p, _mm256_fmadd_ps(z3, v3, _mm256_fmadd_ps(z2, v2, s)));
            }
            j += 8;
        }
        let mut tail = [[0f32; 8]; KU];
        for i in 0..KU {
            let mut buf = [0f32; 8];
            let got = W::as_f32(&w[i][j..], &mut buf);
            tail[i][..got.len()].copy_from_slice(got);
        }
        for c in 0..len - j {
            let v = [tail[0][c], tail[1][c], tail[2][c], tail[3][c]];
            a0[j + c] = madd4::<true>(a0[j + c], x, v);
            if TWO {
                a1[j + c] = madd4::<true>(a1[j + c], z, v);
            }
        }
    }
}

/// The skinny block's loop: [`KU`] rows of w at a time, a tile of columns at
/// a time (the tile's accumulators stay in L1 while each row of w is still
/// read front to back), and output rows two at a time, so each element of w,
/// once loaded, feeds two rows. With `AVX2` (only in [`skinny_block_avx2`])
/// the rows of w are widened in registers as they are loaded
/// ([`add4_avx2`]); else they are widened into an L1 buffer and the loop is
/// written over zipped slices so the compiler vectorises it without bounds
/// checks.
#[inline(always)]
fn skinny_block_body<W: WeightElement, const FMA: bool, const AVX2: bool>(
    xs: &[f32],
    w: &[W],
    k: usize,
    n: usize,
    m: usize,
    cs: Range<usize>,
    ks: Range<usize>,
) -> Vec<f32> {
    let (c0, cols) = (cs.start, cs.len());
    let tile = (SKINNY_TILE_BYTES / 4 / m).next_multiple_of(16).min(cols);
    let mut bufs = vec![0f32; KU * tile];
    let mut acc = vec![0f32; m * cols];
    let mut kk = ks.start;
    while kk + KU <= ks.end {
        let x4 = |r: usize| -> [f32; KU] {
            let v = &xs[r * k + kk..r * k + kk + KU];
            [v[0], v[1], v[2], v[3]]
        };
        let mut t0 = 0;
        while t0 < cols {
            let tw = tile.min(cols - t0);
            let seg = |i: usize| &w[(kk + i) * n + c0 + t0..(kk + i) * n + c0 + t0 + tw];
            #[cfg(target_arch = "x86_64")]
            if AVX2 {
                let segs = [seg(0), seg(1), seg(2), seg(3)];
                let mut pairs = acc.chunks_exact_mut(2 * cols);
                for (p, two) in pairs.by_ref().enumerate() {
                    let (out0, out1) = two.split_at_mut(cols);
                    // SAFETY: AVX2 is true only in `skinny_block_avx2`, which
                    // runs only where the CPU has AVX2, FMA and F16C.
                    unsafe {
                        add4_avx2::<W, true>(
                            &mut out0[t0..t0 + tw],
                            &mut out1[t0..t0 + tw],
                            segs,
                            x4(2 * p),
                            x4(2 * p + 1),
                        )
                    };
                }
                let last = pairs.into_remainder();
                if !last.is_empty() {
                    // SAFETY: as above.
                    unsafe {
                        add4_avx2::<W, false>(
                            &mut last[t0..t0 + tw],
                            &mut [],
                            segs,
                            x4(m - 1),
                            [0.0; KU],
                        )
                    };
                }
                t0 += tw;
                continue;
            }
            let (b0, rest) = bufs.split_at_mut(tile);
            let (b1, rest) = rest.split_at_mut(tile);
            let (b2, b3) = rest.split_at_mut(tile);
            let (w0, w1, w2, w3) = (
                W::as_f32(seg(0), &mut b0[..tw]),
                W::as_f32(seg(1), &mut b1[..tw]),
                W::as_f32(seg(2), &mut b2[..tw]),
                W::as_f32(seg(3), &mut b3[..tw]),
            );
            let mut pairs = acc.chunks_exact_mut(2 * cols);
            for (p, two) in pairs.by_ref().enumerate() {
                let (out0, out1) = two.split_at_mut(cols);
                let (x, z) = (x4(2 * p), x4(2 * p + 1));
                for (((((a0, a1), &v0), &v1), &v2), &v3) in out0[t0..t0 + tw]
                    .iter_mut()
                    .zip(out1[t0..t0 + tw].iter_mut())
                    .zip(w0)
                    .zip(w1)
                    .zip(w2)
                    .zip(w3)
                {
                    *a0 = madd4::<FMA>(*a0, x, [v0, v1, v2, v3]);
                    *a1 = madd4::<FMA>(*a1, z, [v0, v1, v2, v3]);
                }
            }
            let last = pairs.into_remainder();
            if !last.is_empty() {
                let x = x4(m - 1);
                for ((((a, &v0), &v1), &v2), &v3) in
                    last[t0..t0 + tw].iter_mut().zip(w0).zip(w1).zip(w2).zip(w3)
                {
                    *a = madd4::<FMA>(*a, x, [v0, v1, v2, v3]);
                }
            }
            t0 += tw;
        }
        kk += KU;
    }
    while kk < ks.end {
        let mut t0 = 0;
        while t0 < cols {
            let tw = tile.min(cols - t0);
            let wrow = W::as_f32(&w[kk * n + c0 + t0..kk * n + c0 + t0 + tw], &mut bufs[..tw]);
            for (r, out) in acc.chunks_exact_mut(cols).enumerate() {
                let xv = xs[r * k + kk];
                for (a, &wv) in out[t0..t0 + tw].iter_mut().zip(wrow) {
                    *a = madd::<FMA>(*a, xv, wv);
                }
            }
            t0 += tw;
        }
        kk += 1;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};

    /// Deterministic values in [-1, 1) for the skinny tests.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| {
                let h = (i ^ seed).wrapping_mul(2_654_435_761).rotate_left(13);
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// The skinny product of `T`-rounded inputs against an f64 sum of the same
    /// rounded inputs, element by element, within K f32 roundings of the sum
    /// of magnitudes plus the output's own rounding (`out_ulp`, relative).
    fn check_skinny<T: Element + WeightElement>(m: usize, k: usize, n: usize, out_ulp: f64) {
        let round = |v: Vec<f32>| -> Vec<T> { v.into_iter().map(T::from_f32).collect() };
        let (x, w) = (round(values(m * k, 1)), round(values(k * n, 2)));
        let mut y = vec![T::default(); m * n];
        matmul_skinny(&x, &w, None, &mut y, k, n);
        for r in 0..m {
            for c in 0..n {
                let (mut exact, mut mag) = (0f64, 0f64);
                for i in 0..k {
                    let p = x[r * k + i].to_f32() as f64 * w[i * n + c].to_f32() as f64;
                    exact += p;
                    mag += p.abs();
                }
                let got = y[r * n + c].to_f32() as f64;
                let bound =
                    mag * k as f64 * f32::EPSILON as f64 / 2.0 + exact.abs() * out_ulp + 1e-30;
                assert!(
                    (got - exact).abs() <= bound,
                    "{} m {m} k {k} n {n}: y[{r}, {c}] = {got}, exact {exact}, bound {bound}",
                    T::PRECISION
                );
            }
        }
    }

    /// The skinny product with an INT8 weight: FP16 activations times the
    /// quantized values, each column's sum scaled, against an f64 sum of the
    /// same, within K + 1 f32 roundings of the scaled sum of magnitudes plus
    /// the FP16 output's rounding.
    fn check_skinny_w8(m: usize, k: usize, n: usize) {
        let x: Vec<f16> = values(m * k, 5).into_iter().map(f16::from_f32).collect();
        let q: Vec<i8> = values(k * n, 6)
            .into_iter()
            .map(|v| (v * 127.0).round() as i8)
            .collect();
        let scales: Vec<f32> = values(n, 7).into_iter().map(|v| 0.5 + v.abs()).collect();
        let mut y = vec![f16::ZERO; m * n];
        matmul_skinny(&x, &q, Some(&scales), &mut y, k, n);
        for r in 0..m {
            for c in 0..n {
                let (mut exact, mut mag) = (0f64, 0f64);
                for i in 0..k {
                    let p = x[r * k + i].to_f64() * q[i * n + c] as f64 * scales[c] as f64;
                    exact += p;
                    mag += p.abs();
                }
                let got = y[r * n + c].to_f64();
                let bound = mag * (k + 1) as f64 * f32::EPSILON as f64 / 2.0
                    + exact.abs() * f16::EPSILON.to_f64() / 2.0
                    + 1e-30;
                assert!(
                    (got - exact).abs() <= bound,
                    "w8 m {m} k {k} n {n}: y[{r}, {c}] = {got}, exact {exact}, bound {bound}"
                );
            }
        }
    }

    /// Every path through the skinny kernel: odd and even row counts (the
    /// pair loop and its remainder), K not a multiple of four (the row tail)
    /// and split between tasks (partial sums added), N under one tile, over
    /// one tile, and wider than one task's accumulators (several column
    /// blocks), in every precision it serves, INT8 weights included.
    #[test]
    fn skinny_matches_an_exact_sum_on_every_path() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| {
            for (m, k, n) in [
                (1, 1, 1),
                (1, 7, 33),
                (2, 301, 100),
                (3, 4096, 17),
                (5, 259, 1000),
                (8, 130, 4100),
                (16, 67, 2051),
                (1, 1030, 40_000),
            ] {
                check_skinny::<f32>(m, k, n, 0.0);
                check_skinny::<f16>(m, k, n, f16::EPSILON.to_f64() / 2.0);
                check_skinny::<bf16>(m, k, n, bf16::EPSILON.to_f64() / 2.0);
                check_skinny_w8(m, k, n);
            }
        });
    }

    /// The portable loop (no FMA, no F16C) and the dispatched one (AVX2 with
    /// the weights widened in registers, on this CPU) agree, for every weight
    /// type, with a column tail: the tests above run only the dispatched one.
    #[test]
    fn skinny_portable_loop_matches_the_dispatched_one() {
        fn agree<W: WeightElement>(widen: impl Fn(f32) -> W) {
            let (m, k, n) = (3, 259, 1003);
            let x = values(m * k, 3);
            let w: Vec<W> = values(k * n, 4).into_iter().map(widen).collect();
            let portable = skinny_block_body::<W, false, false>(&x, &w, k, n, m, 0..n, 0..k);
            let dispatched = skinny_block(&x, &w, k, n, m, 0..n, 0..k);
            let mut buf = vec![0f32; w.len()];
            let wf = W::as_f32(&w, &mut buf);
            for (i, (a, b)) in portable.iter().zip(&dispatched).enumerate() {
                let (r, c) = (i / n, i % n);
                // Both within K roundings of the sum of magnitudes.
                let mag: f32 = (0..k).map(|j| (x[r * k + j] * wf[j * n + c]).abs()).sum();
                let tol = 2.0 * k as f32 * f32::EPSILON * (mag + 1e-30);
                assert!(
                    (a - b).abs() <= tol,
                    "element {i}: {a} vs {b}, tolerance {tol}"
                );
            }
        }
        agree(|v| v);
        agree(f16::from_f32);
        agree(bf16::from_f32);
        agree(|v| (v * 127.0).round() as i8);
    }
}

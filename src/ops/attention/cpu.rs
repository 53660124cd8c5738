//! Attention on the CPU, f32 accumulation, the same algorithms as the GPU's:
//!
//! - **fused** (flash): a task per (sequence, KV head, block of queries) —
//!   the block's queries for every query head sharing the KV head, so a
//!   K/V block widened once serves the whole group — streams the cache in
//!   blocks of keys: scores by a GEMM (`gemm`, AVX-512/AVX2 at run time), a
//!   vectorised exp, an online softmax, `P V` by a GEMM into the
//!   accumulator. Blocks wholly above the causal diagonal are never read.
//!   When sequences x KV heads x query blocks are too few for the cores (a
//!   decode step at batch 1), the context is split across tasks too and the
//!   partial results are merged (split-K, "flash-decoding").
//! - **materialised**: per (sequence, head), the S x L scores in memory:
//!   QK^T by one GEMM, a softmax over each row, PV by another.
//!
//! A narrow cache (f16, bf16, int8 with scales, FP8 E4M3 with scales) is
//! widened a block at a time as it is read.

use half::{bf16, f16};
use rayon::prelude::*;

use super::inputs::Qkv;
use super::kv::{fp8_decode, KvFormat};
use super::params::Params;
use super::reference::Attention;
use crate::backend::cpu::element::{widened, Element};
use crate::backend::cpu::runner::{timed, CpuKernel, CpuRun};
use crate::error::Result;
use crate::ops::matmul::skinny::WeightElement;
use crate::ops::op::Inputs;
use crate::precision::Precision;
use crate::prepared_op::{MemoryUse, PreparedOp, RoleBytes};

/// Keys a fused task reads per block (scores `R x KEY_BLOCK` stay in L1/L2).
const KEY_BLOCK: usize = 128;
/// Query rows (queries x heads of a group) a fused task holds.
const QUERY_ROWS: usize = 64;
/// Tasks per core the fused path aims for before it splits the context.
const TASKS_PER_CORE: usize = 4;

/// A K or V cache in its storage format.
enum KvBuf {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
    Int8 { q: Vec<i8>, scale: Vec<f32> },
    Fp8 { q: Vec<u8>, scale: Vec<f32> },
}

impl KvBuf {
    /// `data` (`[B, G, L, D]`) encoded as `format`; `head_len` = L x D.
    fn load(format: KvFormat, data: &[f32], d: usize, head_len: usize) -> Self {
        match format {
            KvFormat::F32 => KvBuf::F32(data.to_vec()),
            KvFormat::F16 => {
                let mut v = vec![f16::ZERO; data.len()];
                crate::backend::cpu::element::convert_into(&mut v, data);
                KvBuf::F16(v)
            }
            KvFormat::Bf16 => {
                let mut v = vec![bf16::ZERO; data.len()];
                crate::backend::cpu::element::convert_into(&mut v, data);
                KvBuf::Bf16(v)
            }
            KvFormat::Int8 | KvFormat::Fp8 => {
                let (bytes, scale) = super::kv::encode(format, data, d, head_len);
                let mut q = bytes;
                q.truncate(data.len());
                if format == KvFormat::Int8 {
                    KvBuf::Int8 {
                        q: q.into_iter().map(|b| b as i8).collect(),
                        scale,
                    }
                } else {
                    KvBuf::Fp8 { q, scale }
                }
            }
        }
    }

    /// Whether [`Self::stream_scores`] and [`Self::stream_values`] read this
    /// cache in place (f16, bf16, int8 on a CPU with AVX2, FMA and F16C).
    fn streams(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            matches!(self, KvBuf::F16(_) | KvBuf::Bf16(_) | KvBuf::Int8 { .. })
                && avx2_fma()
                && std::is_x86_feature_detected!("f16c")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// `s[r, j] = scale * q_r . k_(row0 + j)` reading the cache in place,
    /// widening eight elements a register (only where [`Self::streams`]).
    fn stream_scores(
        &self,
        row0: usize,
        q: &[f32],
        s: &mut [f32],
        dims: (usize, usize, usize),
        scale: f32,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            let (_, kb, d) = dims;
            let r = row0 * d..(row0 + kb) * d;
            // SAFETY: streams() checked AVX2, FMA and F16C; the slices hold
            // kb rows of d, q rows x d, s rows x kb.
            unsafe {
                match self {
                    KvBuf::F16(v) => stream::scores(&v[r], None, q, s, dims, scale),
                    KvBuf::Bf16(v) => stream::scores(&v[r], None, q, s, dims, scale),
                    KvBuf::Int8 { q: c, scale: sc } => {
                        stream::scores(&c[r], Some(&sc[row0..row0 + kb]), q, s, dims, scale)
                    }
                    _ => unreachable!("streams() is false"),
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (row0, q, s, dims, scale);
    }

    /// `acc[r, :] += sum_j s[r, j] v_(row0 + j)` reading the cache in place.
    fn stream_values(&self, row0: usize, s: &[f32], acc: &mut [f32], dims: (usize, usize, usize)) {
        #[cfg(target_arch = "x86_64")]
        {
            let (_, kb, d) = dims;
            let r = row0 * d..(row0 + kb) * d;
            // SAFETY: as in stream_scores.
            unsafe {
                match self {
                    KvBuf::F16(v) => stream::values(&v[r], None, s, acc, dims),
                    KvBuf::Bf16(v) => stream::values(&v[r], None, s, acc, dims),
                    KvBuf::Int8 { q: c, scale: sc } => {
                        stream::values(&c[r], Some(&sc[row0..row0 + kb]), s, acc, dims)
                    }
                    _ => unreachable!("streams() is false"),
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (row0, s, acc, dims);
    }

    /// Bytes held.
    fn bytes(&self) -> u64 {
        match self {
            KvBuf::F32(v) => v.len() as u64 * 4,
            KvBuf::F16(v) => v.len() as u64 * 2,
            KvBuf::Bf16(v) => v.len() as u64 * 2,
            KvBuf::Int8 { q, scale } => q.len() as u64 + scale.len() as u64 * 4,
            KvBuf::Fp8 { q, scale } => q.len() as u64 + scale.len() as u64 * 4,
        }
    }

    /// Rows `row0 .. row0 + n` (each `d` wide) as f32: the cache itself when
    /// it is f32, else widened (dequantised) into `buf`.
    fn rows<'a>(
        &'a self,
        row0: usize,
        n: usize,
        d: usize,
        head_len: usize,
        buf: &'a mut [f32],
    ) -> &'a [f32] {
        let r = row0 * d..(row0 + n) * d;
        let out = &mut buf[..n * d];
        match self {
            KvBuf::F32(v) => return &v[r],
            KvBuf::F16(v) => widen_fast(&v[r], out),
            KvBuf::Bf16(v) => widen_fast(&v[r], out),
            KvBuf::Int8 { q, scale } => dequantise_int8(&q[r], &scale[row0..row0 + n], d, out),
            KvBuf::Fp8 { q, scale } => {
                let table = fp8_table();
                // Each row's head holds its scale.
                for (i, (o, q)) in out
                    .chunks_exact_mut(d)
                    .zip(q[r].chunks_exact(d))
                    .enumerate()
                {
                    let s = scale[(row0 + i) * d / head_len];
                    for (o, &q) in o.iter_mut().zip(q) {
                        *o = table[q as usize] * s;
                    }
                }
            }
        }
        out
    }
}

/// `src` widened to f32 into `dst`: eight at a time with F16C's
/// `vcvtph2ps` (or BF16's shift) where the CPU has AVX2 and F16C — half's
/// slice conversion is a scalar loop here, slower than streaming the cache.
fn widen_fast<W: WeightElement + Element>(src: &[W], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c") {
        // SAFETY: the CPU has AVX2 and F16C (checked just above).
        return unsafe { widen_x86(src, dst) };
    }
    W::widen(src, dst)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn widen_x86<W: WeightElement + Element>(src: &[W], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: elements i..i+8 exist in both slices; the CPU has AVX2 and
        // F16C (this function's features).
        unsafe {
            let v = W::load8(src.as_ptr().add(i));
            std::arch::x86_64::_mm256_storeu_ps(dst.as_mut_ptr().add(i), v);
        }
        i += 8;
    }
    for (d, s) in dst[i..n].iter_mut().zip(&src[i..n]) {
        *d = s.to_f32();
    }
}

/// Int8 rows (`d` wide, a scale each) dequantised into `out`.
#[inline(always)]
fn dequantise_int8_body(q: &[i8], scale: &[f32], d: usize, out: &mut [f32]) {
    for ((o, q), &s) in out.chunks_exact_mut(d).zip(q.chunks_exact(d)).zip(scale) {
        for (o, &q) in o.iter_mut().zip(q) {
            *o = q as f32 * s;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dequantise_int8_avx2(q: &[i8], scale: &[f32], d: usize, out: &mut [f32]) {
    dequantise_int8_body(q, scale, d, out)
}

/// Int8 rows dequantised, compiled for AVX2 where the CPU has it.
fn dequantise_int8(q: &[i8], scale: &[f32], d: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { dequantise_int8_avx2(q, scale, d, out) };
    }
    dequantise_int8_body(q, scale, d, out)
}

/// A block of few query rows against a narrow cache read in place: each
/// key's row widened eight elements at a time into a register and used for
/// every query row (no f32 copy of the block is written and read back).
#[cfg(target_arch = "x86_64")]
mod stream {
    use std::arch::x86_64::*;

    use super::WeightElement;
    use crate::backend::cpu::element::Element;

    /// The rows a block holds at most (accumulators in registers).
    const MAX_ROWS: usize = super::DIRECT_ROWS;

    /// Horizontal sum of eight lanes.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
        _mm_cvtss_f32(s)
    }

    /// `s[r, j] = scale * row_scale_j * q_r . k_j` over `kb` keys of `d`.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `k` holds kb x d, `q` rows x d, `s`
    /// rows x kb, `rows <= MAX_ROWS`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn scores<W: WeightElement + ToF32>(
        k: &[W],
        row_scale: Option<&[f32]>,
        q: &[f32],
        s: &mut [f32],
        (rows, kb, d): (usize, usize, usize),
        scale: f32,
    ) {
        debug_assert!(rows <= MAX_ROWS);
        let whole = d / 8 * 8;
        for j in 0..kb {
            let kj = &k[j * d..(j + 1) * d];
            let mut acc = [_mm256_setzero_ps(); MAX_ROWS];
            let mut i = 0;
            while i < whole {
                // SAFETY: elements i..i+8 of k's row and q's rows exist.
                let kv = unsafe { W::load8(kj.as_ptr().add(i)) };
                for (r, a) in acc.iter_mut().enumerate().take(rows) {
                    // SAFETY: q row r holds d elements.
                    let qv = unsafe { _mm256_loadu_ps(q.as_ptr().add(r * d + i)) };
                    *a = _mm256_fmadd_ps(qv, kv, *a);
                }
                i += 8;
            }
            let m = scale * row_scale.map_or(1.0, |rs| rs[j]);
            for (r, a) in acc.iter().enumerate().take(rows) {
                let mut dot = hsum(*a);
                for t in whole..d {
                    dot += q[r * d + t] * kj[t].value();
                }
                s[r * kb + j] = dot * m;
            }
        }
    }

    /// `acc[r, :] += sum_j s[r, j] * row_scale_j * v_j`.
    ///
    /// # Safety
    /// As [`scores`]; `acc` holds rows x d.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn values<W: WeightElement + ToF32>(
        v: &[W],
        row_scale: Option<&[f32]>,
        s: &[f32],
        acc: &mut [f32],
        (rows, kb, d): (usize, usize, usize),
    ) {
        let whole = d / 8 * 8;
        for j in 0..kb {
            let vj = &v[j * d..(j + 1) * d];
            let m = row_scale.map_or(1.0, |rs| rs[j]);
            let mut p = [0f32; MAX_ROWS];
            for (r, pr) in p.iter_mut().enumerate().take(rows) {
                *pr = s[r * kb + j] * m;
            }
            let mut i = 0;
            while i < whole {
                // SAFETY: elements i..i+8 of v's row and acc's rows exist.
                unsafe {
                    let vv = W::load8(vj.as_ptr().add(i));
                    for (r, &pr) in p.iter().enumerate().take(rows) {
                        let at = acc.as_mut_ptr().add(r * d + i);
                        _mm256_storeu_ps(
                            at,
                            _mm256_fmadd_ps(_mm256_set1_ps(pr), vv, _mm256_loadu_ps(at)),
                        );
                    }
                }
                i += 8;
            }
            for (r, &pr) in p.iter().enumerate().take(rows) {
                for t in whole..d {
                    acc[r * d + t] += pr * vj[t].value();
                }
            }
        }
    }

    /// A cache element's value before its row's scale.
    pub trait ToF32 {
        /// The value.
        fn value(self) -> f32;
    }
    impl<T: Element> ToF32 for T {
        fn value(self) -> f32 {
            self.to_f32()
        }
    }
    impl ToF32 for i8 {
        fn value(self) -> f32 {
            self as f32
        }
    }
}

/// Every E4M3 byte's value (NaN codes as 0: the quantiser never writes them).
fn fp8_table() -> &'static [f32; 256] {
    static T: std::sync::OnceLock<[f32; 256]> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        std::array::from_fn(|b| {
            let v = fp8_decode(b as u8);
            if v.is_nan() {
                0.0
            } else {
                v
            }
        })
    })
}

/// `e^x` for `x <= 0` in f32 within a few ulps, written so a loop over it
/// vectorises (no libm call): `2^n e^r` with `n = round(x log2 e)`, `|r| <=
/// ln2 / 2`, `e^r` by its degree-7 Taylor polynomial (truncation < 1e-8).
#[inline(always)]
fn exp_neg(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 x 2^23: adding it rounds to an integer
    let x = x.max(-87.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `s[j] = exp(s[j] - m)` over a row, and their sum (eight lanes).
#[inline(always)]
fn exp_sub_body(s: &mut [f32], m: f32) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = s.chunks_exact_mut(8);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c.iter_mut()) {
            *x = exp_neg(*x - m);
            *a += *x;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for x in chunks.into_remainder() {
        *x = exp_neg(*x - m);
        sum += *x;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp_sub_avx2(s: &mut [f32], m: f32) -> f32 {
    exp_sub_body(s, m)
}

/// `s[j] = exp(s[j] - m)` and their sum, compiled for AVX2 and FMA where the
/// CPU has them.
fn exp_sub(s: &mut [f32], m: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { exp_sub_avx2(s, m) };
    }
    exp_sub_body(s, m)
}

/// Rows up to which a block's two products are direct loops rather than
/// GEMM calls (a decode step's few query heads: the GEMM's packing costs
/// more than it saves on 4 x 128 x 128).
const DIRECT_ROWS: usize = 8;

/// `s[r, j] = scale * q_r . k_j` and then nothing else: the direct loops
/// (eight lanes, vectorised) of a block of few rows.
#[inline(always)]
fn scores_direct_body(
    q: &[f32],
    k: &[f32],
    s: &mut [f32],
    (rows, kb, d): (usize, usize, usize),
    scale: f32,
) {
    for j in 0..kb {
        let kj = &k[j * d..(j + 1) * d];
        for r in 0..rows {
            let qr = &q[r * d..(r + 1) * d];
            let mut acc = [0f32; 8];
            let (qc, kc) = (qr.chunks_exact(8), kj.chunks_exact(8));
            let (qt, kt) = (qc.remainder(), kc.remainder());
            for (a, b) in qc.zip(kc) {
                for l in 0..8 {
                    acc[l] += a[l] * b[l];
                }
            }
            let mut dot: f32 = acc.iter().sum();
            for (a, b) in qt.iter().zip(kt) {
                dot += a * b;
            }
            s[r * kb + j] = dot * scale;
        }
    }
}

/// `acc[r, :] += sum_j s[r, j] v_j`: the direct loops of a block of few rows.
#[inline(always)]
fn values_direct_body(s: &[f32], v: &[f32], acc: &mut [f32], (rows, kb, d): (usize, usize, usize)) {
    for j in 0..kb {
        let vj = &v[j * d..(j + 1) * d];
        for r in 0..rows {
            let p = s[r * kb + j];
            if p == 0.0 {
                continue;
            }
            for (a, &x) in acc[r * d..(r + 1) * d].iter_mut().zip(vj) {
                *a += p * x;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn scores_direct_avx2(
    q: &[f32],
    k: &[f32],
    s: &mut [f32],
    dims: (usize, usize, usize),
    scale: f32,
) {
    scores_direct_body(q, k, s, dims, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn values_direct_avx2(s: &[f32], v: &[f32], acc: &mut [f32], dims: (usize, usize, usize)) {
    values_direct_body(s, v, acc, dims)
}

/// Whether the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
fn avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// The block's scores by direct loops (AVX2 and FMA where present).
fn scores_direct(q: &[f32], k: &[f32], s: &mut [f32], dims: (usize, usize, usize), scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { scores_direct_avx2(q, k, s, dims, scale) };
    }
    scores_direct_body(q, k, s, dims, scale)
}

/// The block's `P V` by direct loops (AVX2 and FMA where present).
fn values_direct(s: &[f32], v: &[f32], acc: &mut [f32], dims: (usize, usize, usize)) {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { values_direct_avx2(s, v, acc, dims) };
    }
    values_direct_body(s, v, acc, dims)
}

/// `dst[m, n] (row stride ldd) = (read_dst ? dst : 0) + beta * lhs[m, k]
/// (row stride lda) x rhs`, where `rhs[kk, j]` is at `rhs + kk * rhs_rs + j *
/// rhs_cs`; on the calling thread.
///
/// # Safety
/// Every element addressed is inside its allocation; `dst` is exclusive.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_f32(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    ldd: usize,
    read_dst: bool,
    (lhs, lda): (*const f32, usize),
    (rhs, rhs_rs, rhs_cs): (*const f32, usize, usize),
    beta: f32,
) {
    // SAFETY: the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            ldd as isize,
            read_dst,
            lhs,
            1,
            lda as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            if read_dst { 1.0 } else { 0.0 },
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// A pointer tasks write disjoint parts of.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: each task writes only its own rows (the callers' contracts).
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The pointer (a method, so closures capture the whole wrapper).
    fn get(self) -> *mut T {
        self.0
    }
}

/// How the fused path splits the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// Queries per task.
    pub queries: usize,
    /// Query blocks per (sequence, KV head).
    pub blocks: usize,
    /// Context splits per query block (1: none).
    pub splits: usize,
}

/// The fused path's split of `p` over `threads` cores.
pub fn split(p: &Params, threads: usize) -> Split {
    let queries = (QUERY_ROWS / p.group() as usize).max(1).min(p.seq as usize);
    let blocks = (p.seq as usize).div_ceil(queries);
    let base = p.batch as usize * p.kv_heads as usize * blocks;
    let want = TASKS_PER_CORE * threads;
    let splits = if base >= want {
        1
    } else {
        want.div_ceil(base)
            .min((p.context as usize).div_ceil(KEY_BLOCK))
            .max(1)
    };
    Split {
        queries,
        blocks,
        splits,
    }
}

/// The path that runs `p`, as records name it.
pub fn kernel_name(p: &Params, precision: Precision) -> String {
    let kv = p.kv_precision.format(precision).name();
    let q = super::kv::activation_precision(precision);
    if p.materialized {
        format!("materialized-f32acc q-{q} kv-{kv}")
    } else {
        let s = split(p, rayon::current_num_threads());
        let split = if s.splits > 1 {
            format!(" split-{}", s.splits)
        } else {
            String::new()
        };
        format!("flash-f32acc q-{q} kv-{kv}{split}")
    }
}

/// One thread's working tiles.
struct Tiles {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    s: Vec<f32>,
    acc: Vec<f32>,
    m: Vec<f32>,
    l: Vec<f32>,
}

impl Tiles {
    /// Tiles of `rows` query rows and `keys` keys of `d` (scores only when
    /// `scores`: the materialised path writes them in its own buffer).
    fn new(rows: usize, keys: usize, d: usize, scores: bool) -> Self {
        Tiles {
            q: vec![0.0; rows * d],
            k: vec![0.0; keys * d],
            v: vec![0.0; keys * d],
            s: vec![0.0; if scores { rows * keys } else { 0 }],
            acc: vec![0.0; rows * d],
            m: vec![0.0; rows],
            l: vec![0.0; rows],
        }
    }

    /// Bytes held.
    fn bytes(&self) -> u64 {
        let f = |v: &Vec<f32>| v.capacity() as u64 * 4;
        f(&self.q) + f(&self.k) + f(&self.v) + f(&self.s) + f(&self.acc) + f(&self.m) + f(&self.l)
    }
}

/// One [`Tiles`] per thread of the pool, allocated when the kernel is
/// prepared, so that no run pays for allocation.
struct TilePool(Vec<std::sync::Mutex<Tiles>>);

impl TilePool {
    fn new(rows: usize, keys: usize, d: usize, scores: bool) -> Self {
        let n = rayon::current_num_threads() + 1;
        TilePool(
            (0..n)
                .map(|_| std::sync::Mutex::new(Tiles::new(rows, keys, d, scores)))
                .collect(),
        )
    }

    /// The calling thread's tiles (the last for a thread outside the pool).
    fn mine(&self) -> std::sync::MutexGuard<'_, Tiles> {
        let i = rayon::current_thread_index().map_or(self.0.len() - 1, |i| i.min(self.0.len() - 1));
        self.0[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bytes(&self) -> u64 {
        self.0
            .iter()
            .map(|t| t.lock().map_or(0, |t| t.bytes()))
            .sum()
    }
}

/// A prepared attention: Q and the output in `T`, the cache in its format.
struct AttentionKernel<'a, T> {
    name: String,
    p: Params,
    qkv: &'a Qkv,
    q: Vec<T>,
    k: KvBuf,
    v: KvBuf,
    out: Vec<T>,
    /// The materialised scores `[B, H, S, L]`.
    scores: Vec<f32>,
    /// Split partials: per task, m and l per row, then the accumulator.
    partials: Vec<f32>,
    split: Split,
    /// Each thread's working tiles.
    tiles: TilePool,
}

impl<T: Element> AttentionKernel<'_, T> {
    fn dims(&self) -> (usize, usize, usize, usize, usize) {
        let p = &self.p;
        (
            p.seq as usize,
            p.context as usize,
            p.heads as usize,
            p.group() as usize,
            p.head_dim as usize,
        )
    }

    /// Rows of a fused task: `queries x group`.
    fn task_rows(&self) -> usize {
        self.split.queries * self.p.group() as usize
    }

    /// One fused task: queries of block `qb` of sequence `b` for the heads
    /// of KV head `g`, over split `sp` of the keys; the result finished into
    /// the output, or left as a partial (m, l, acc) in `part`.
    #[allow(clippy::too_many_arguments)]
    fn fused_task(
        &self,
        t: &mut Tiles,
        (b, g, qb, sp): (usize, usize, usize, usize),
        out: Shared<T>,
        part: Shared<f32>,
    ) {
        let (s_len, l_len, h, hpg, d) = self.dims();
        let prefix = l_len - s_len;
        let i0 = qb * self.split.queries;
        let i1 = (i0 + self.split.queries).min(s_len);
        let rows = (i1 - i0) * hpg;
        let scale = Attention::scale(self.p.head_dim);
        // The queries' rows, widened.
        for i in i0..i1 {
            for hh in 0..hpg {
                let src = ((b * s_len + i) * h + g * hpg + hh) * d;
                let r = (i - i0) * hpg + hh;
                T::widen(&self.q[src..src + d], &mut t.q[r * d..(r + 1) * d]);
            }
        }
        t.m[..rows].fill(f32::NEG_INFINITY);
        t.l[..rows].fill(0.0);
        t.acc[..rows * d].fill(0.0);
        // The keys this block sees, and this split's share of them in whole blocks.
        let seen = if self.p.causal { prefix + i1 } else { l_len };
        let per_split = seen.div_ceil(self.split.splits).div_ceil(KEY_BLOCK) * KEY_BLOCK;
        let (k0, k1) = ((sp * per_split).min(seen), ((sp + 1) * per_split).min(seen));
        let head_row = (b * self.p.kv_heads as usize + g) * l_len;
        let head_len = l_len * d;
        let mut j0 = k0;
        while j0 < k1 {
            let kb = KEY_BLOCK.min(k1 - j0);
            let stream = rows <= DIRECT_ROWS && self.k.streams();
            if stream {
                self.k
                    .stream_scores(head_row + j0, &t.q, &mut t.s, (rows, kb, d), scale);
            } else if rows <= DIRECT_ROWS {
                let kt = self.k.rows(head_row + j0, kb, d, head_len, &mut t.k);
                scores_direct(&t.q, kt, &mut t.s, (rows, kb, d), scale);
            } else {
                let kt = self.k.rows(head_row + j0, kb, d, head_len, &mut t.k);
                // SAFETY: q is rows x d, k kb x d, s rows x kb: all inside their tiles.
                unsafe {
                    gemm_f32(
                        (rows, kb, d),
                        t.s.as_mut_ptr(),
                        kb,
                        false,
                        (t.q.as_ptr(), d),
                        (kt.as_ptr(), 1, d),
                        scale,
                    );
                }
            }
            for r in 0..rows {
                let i = i0 + r / hpg;
                let valid = if self.p.causal {
                    (prefix + i + 1).saturating_sub(j0).min(kb)
                } else {
                    kb
                };
                let row = &mut t.s[r * kb..(r + 1) * kb];
                if valid == 0 {
                    row.fill(0.0);
                    continue;
                }
                let mx = row[..valid]
                    .iter()
                    .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let m_new = t.m[r].max(mx);
                let corr = (t.m[r] - m_new).exp();
                let sum = exp_sub(&mut row[..valid], m_new);
                row[valid..].fill(0.0);
                t.l[r] = t.l[r] * corr + sum;
                if corr != 1.0 {
                    t.acc[r * d..(r + 1) * d]
                        .iter_mut()
                        .for_each(|a| *a *= corr);
                }
                t.m[r] = m_new;
            }
            if stream {
                self.v
                    .stream_values(head_row + j0, &t.s, &mut t.acc, (rows, kb, d));
                j0 += kb;
                continue;
            }
            let vt = self.v.rows(head_row + j0, kb, d, head_len, &mut t.v);
            if rows <= DIRECT_ROWS {
                values_direct(&t.s, vt, &mut t.acc, (rows, kb, d));
                j0 += kb;
                continue;
            }
            // SAFETY: s is rows x kb, v kb x d, acc rows x d.
            unsafe {
                gemm_f32(
                    (rows, d, kb),
                    t.acc.as_mut_ptr(),
                    d,
                    true,
                    (t.s.as_ptr(), kb),
                    (vt.as_ptr(), d, 1),
                    1.0,
                );
            }
            j0 += kb;
        }
        if self.split.splits == 1 {
            for r in 0..rows {
                let (i, hh) = (i0 + r / hpg, r % hpg);
                let dst = ((b * s_len + i) * h + g * hpg + hh) * d;
                let inv = 1.0 / t.l[r];
                let a = &mut t.acc[r * d..(r + 1) * d];
                a.iter_mut().for_each(|x| *x *= inv);
                // SAFETY: output rows of (b, i, g's heads) belong to this task alone.
                let o = unsafe { std::slice::from_raw_parts_mut(out.get().add(dst), d) };
                T::narrow(a, o);
            }
        } else {
            let slot = self.task_rows() * (d + 2);
            let task = ((b * self.p.kv_heads as usize + g) * self.split.blocks + qb)
                * self.split.splits
                + sp;
            // SAFETY: slot `task` of the partials belongs to this task alone.
            let dst = unsafe { std::slice::from_raw_parts_mut(part.get().add(task * slot), slot) };
            let (ml, acc) = dst.split_at_mut(2 * self.task_rows());
            for r in 0..rows {
                ml[2 * r] = t.m[r];
                ml[2 * r + 1] = t.l[r];
            }
            acc[..rows * d].copy_from_slice(&t.acc[..rows * d]);
        }
    }

    /// Merges the splits of query block `qb` of (b, g) into the output.
    fn merge(&self, (b, g, qb): (usize, usize, usize), out: Shared<T>) {
        let (s_len, _, h, hpg, d) = self.dims();
        let i0 = qb * self.split.queries;
        let i1 = (i0 + self.split.queries).min(s_len);
        let tr = self.task_rows();
        let slot = tr * (d + 2);
        let first =
            ((b * self.p.kv_heads as usize + g) * self.split.blocks + qb) * self.split.splits;
        let mut tiles = self.tiles.mine();
        let acc = &mut tiles.acc[..d];
        for r in 0..(i1 - i0) * hpg {
            let parts = (0..self.split.splits)
                .map(|sp| &self.partials[(first + sp) * slot..(first + sp + 1) * slot]);
            let m = parts
                .clone()
                .fold(f32::NEG_INFINITY, |a, s| a.max(s[2 * r]));
            acc.fill(0.0);
            let mut l = 0.0;
            for s in parts {
                let w = (s[2 * r] - m).exp();
                if w == 0.0 {
                    continue;
                }
                l += w * s[2 * r + 1];
                let a = &s[2 * tr + r * d..2 * tr + (r + 1) * d];
                acc.iter_mut().zip(a).for_each(|(x, &y)| *x += w * y);
            }
            let inv = 1.0 / l;
            acc.iter_mut().for_each(|x| *x *= inv);
            let (i, hh) = (i0 + r / hpg, r % hpg);
            let dst = ((b * s_len + i) * h + g * hpg + hh) * d;
            // SAFETY: the rows of (b, i, g's heads) belong to this merge alone.
            let o = unsafe { std::slice::from_raw_parts_mut(out.get().add(dst), d) };
            T::narrow(acc, o);
        }
    }

    fn fused(&mut self) {
        let p = self.p;
        let sp = self.split;
        let tasks = p.batch as usize * p.kv_heads as usize * sp.blocks * sp.splits;
        let out = Shared(self.out.as_mut_ptr());
        let part = Shared(self.partials.as_mut_ptr());
        let this = &*self;
        (0..tasks).into_par_iter().for_each(|task| {
            let s = task % sp.splits;
            let qb = task / sp.splits % sp.blocks;
            let bg = task / sp.splits / sp.blocks;
            let (b, g) = (bg / p.kv_heads as usize, bg % p.kv_heads as usize);
            this.fused_task(&mut this.tiles.mine(), (b, g, qb, s), out, part);
        });
        if sp.splits > 1 {
            (0..tasks / sp.splits).into_par_iter().for_each(|task| {
                let qb = task % sp.blocks;
                let bg = task / sp.blocks;
                let (b, g) = (bg / p.kv_heads as usize, bg % p.kv_heads as usize);
                this.merge((b, g, qb), out);
            });
        }
    }

    /// The materialised path: per (b, h), scores by a GEMM, a softmax per
    /// row in place (masked scores 0), the output by a GEMM.
    fn materialized(&mut self) {
        let p = self.p;
        let (s_len, l_len, h, hpg, d) = self.dims();
        let prefix = l_len - s_len;
        let scale = Attention::scale(p.head_dim);
        let out = Shared(self.out.as_mut_ptr());
        let (k, v, q, causal) = (&self.k, &self.v, &self.q, p.causal);
        let kvh = p.kv_heads as usize;
        let pool = &self.tiles;
        self.scores
            .par_chunks_mut(s_len * l_len)
            .enumerate()
            .for_each(|(bh, sc)| {
                let mut tiles = pool.mine();
                let Tiles {
                    q: qt,
                    k: kbuf,
                    v: vbuf,
                    acc,
                    ..
                } = &mut *tiles;
                let (b, hd) = (bh / h, bh % h);
                let g = hd / hpg;
                for i in 0..s_len {
                    let src = ((b * s_len + i) * h + hd) * d;
                    T::widen(&q[src..src + d], &mut qt[i * d..(i + 1) * d]);
                }
                let head_row = (b * kvh + g) * l_len;
                let kt = k.rows(head_row, l_len, d, l_len * d, kbuf);
                // SAFETY: q is S x d, k L x d, scores S x L.
                unsafe {
                    gemm_f32(
                        (s_len, l_len, d),
                        sc.as_mut_ptr(),
                        l_len,
                        false,
                        (qt.as_ptr(), d),
                        (kt.as_ptr(), 1, d),
                        scale,
                    );
                }
                for (i, row) in sc.chunks_exact_mut(l_len).enumerate() {
                    let valid = if causal { prefix + i + 1 } else { l_len };
                    let mx = row[..valid]
                        .iter()
                        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                    let sum = exp_sub(&mut row[..valid], mx);
                    let inv = 1.0 / sum;
                    row[..valid].iter_mut().for_each(|x| *x *= inv);
                    row[valid..].fill(0.0);
                }
                let vt = v.rows(head_row, l_len, d, l_len * d, vbuf);
                // SAFETY: scores S x L, v L x d, acc S x d.
                unsafe {
                    gemm_f32(
                        (s_len, d, l_len),
                        acc.as_mut_ptr(),
                        d,
                        false,
                        (sc.as_ptr(), l_len),
                        (vt.as_ptr(), d, 1),
                        1.0,
                    );
                }
                for i in 0..s_len {
                    let dst = ((b * s_len + i) * h + hd) * d;
                    // SAFETY: the rows of head hd of sequence b belong to this task alone.
                    let o = unsafe { std::slice::from_raw_parts_mut(out.get().add(dst), d) };
                    T::narrow(&acc[i * d..(i + 1) * d], o);
                }
            });
    }
}

impl<T: Element> CpuKernel for AttentionKernel<'_, T> {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn execute(&mut self) {
        if self.p.materialized {
            self.materialized();
        } else {
            self.fused();
        }
    }

    fn upload_request(&mut self) {
        crate::backend::cpu::element::convert_into(&mut self.q, &self.qkv.q);
    }

    fn output(&self) -> Vec<f32> {
        widened(&self.out)
    }

    fn memory(&self) -> MemoryUse {
        let e = std::mem::size_of::<T>() as u64;
        let mut parts = vec![
            ("q", self.q.capacity() as u64 * e),
            ("kv-cache", self.k.bytes() + self.v.bytes()),
            ("output", self.out.capacity() as u64 * e),
        ];
        if self.p.materialized {
            parts.push(("scores", self.scores.capacity() as u64 * 4));
        }
        MemoryUse {
            parts: RoleBytes::of(&parts),
            other: self.partials.capacity() as u64 * 4 + self.tiles.bytes(),
            ..Default::default()
        }
    }
}

fn build<'a, T: Element>(
    p: &Params,
    precision: Precision,
    qkv: &'a Qkv,
) -> Box<dyn PreparedOp + 'a> {
    let format = p.kv_precision.format(precision);
    let d = p.head_dim as usize;
    let head_len = p.context as usize * d;
    let split = split(p, rayon::current_num_threads());
    let partials = if p.materialized || split.splits == 1 {
        0
    } else {
        let rows = split.queries * p.group() as usize;
        p.batch as usize * p.kv_heads as usize * split.blocks * split.splits * rows * (d + 2)
    };
    let ((k, v), load_ns) = timed(|| {
        (
            KvBuf::load(format, &qkv.k, d, head_len),
            KvBuf::load(format, &qkv.v, d, head_len),
        )
    });
    let mut kernel = AttentionKernel {
        name: kernel_name(p, precision),
        p: *p,
        qkv,
        q: vec![T::default(); qkv.q.len()],
        k,
        v,
        out: vec![T::default(); qkv.q.len()],
        scores: vec![
            0.0;
            if p.materialized {
                p.score_elements() as usize
            } else {
                0
            }
        ],
        partials: vec![0.0; partials],
        split,
        tiles: if p.materialized {
            let (s, l) = (p.seq as usize, p.context as usize);
            TilePool::new(s, l, d, false)
        } else {
            TilePool::new(split.queries * p.group() as usize, KEY_BLOCK, d, true)
        },
    };
    kernel.upload_request();
    Box::new(CpuRun::new(kernel, load_ns))
}

/// The attention `p` prepared on the CPU in `precision` (INT8: FP16 Q and
/// output beside an INT8 cache).
pub fn prepare<'a>(
    p: &Params,
    precision: Precision,
    inputs: &'a Inputs,
) -> Result<Box<dyn PreparedOp + 'a>> {
    let qkv: &Qkv = inputs.get();
    Ok(match super::kv::activation_precision(precision) {
        Precision::F32 => build::<f32>(p, precision, qkv),
        Precision::Bf16 => build::<bf16>(p, precision, qkv),
        _ => build::<f16>(p, precision, qkv),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vectorised_exp_is_within_a_few_ulps() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let got = exp_neg(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max((got - want).abs() / want);
            x += 0.0137;
        }
        assert!(worst < 4.0 * 5.97e-8, "{worst}");
        let mut row = vec![
            0.0f32,
            -1.0,
            -2.0,
            f32::NEG_INFINITY,
            -0.5,
            -3.0,
            -4.0,
            -5.0,
            -6.0,
            -7.0,
        ];
        let sum = exp_sub(&mut row, 0.0);
        assert_eq!(row[3], exp_neg(-87.0));
        let want: f64 = [0.0f64, -1.0, -2.0, -0.5, -3.0, -4.0, -5.0, -6.0, -7.0]
            .iter()
            .map(|x| x.exp())
            .sum();
        assert!((sum as f64 - want).abs() < 1e-5);
    }

    #[test]
    fn decode_at_batch_one_splits_the_context() {
        let p = Params {
            batch: 1,
            seq: 1,
            context: 4096,
            heads: 32,
            kv_heads: 8,
            head_dim: 128,
            causal: true,
            kv_precision: Default::default(),
            materialized: false,
        };
        let s = split(&p, 2);
        assert_eq!((s.queries, s.blocks, s.splits), (1, 1, 1));
        let one = Params { kv_heads: 1, ..p };
        assert_eq!(split(&one, 16).splits, 32);
        let prefill = Params {
            seq: 2048,
            context: 2048,
            ..p
        };
        let s = split(&prefill, 2);
        assert_eq!((s.queries, s.blocks, s.splits), (16, 128, 1));
    }
}

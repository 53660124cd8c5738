//! The CPU backend: the same ops as the GPU, on the host. The projection goes
//! through the `gemm` crate's f32 kernels (BLAS-class, AVX-512 aware): FP16,
//! BF16 and INT8 weights are widened to f32 a panel at a time, so every
//! precision accumulates in f32; few-row products (decode) take a
//! weight-streaming path. The gather copies rows in parallel (rayon) into a
//! preallocated output, so no sample pays for allocation or page faults.

use std::ops::Range;
use std::time::Instant;

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rayon::prelude::*;

use super::{
    Backend, BackendKind, DeviceInfo, DeviceLimits, MemoryUse, Phases, PreparedOp, Sample,
    TimingMethod, CACHE_FLUSH_BYTES,
};
use crate::error::Result;
use crate::workload::{quantize_weight, Inputs, Op, Precision, QuantizedWeight, Workload};

/// The host CPU as a backend.
pub struct CpuBackend {
    info: DeviceInfo,
}

impl CpuBackend {
    /// Describes the host CPU (model, cores, SIMD features).
    pub fn new() -> Self {
        let threads = rayon::current_num_threads();
        CpuBackend {
            info: DeviceInfo {
                name: cpu_model(),
                api: "native".into(),
                device_type: "host-cpu".into(),
                driver: String::new(),
                software: false,
                features: simd_features(),
                limits: DeviceLimits {
                    threads: Some(threads as u64),
                    ..Default::default()
                },
            },
        }
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

/// The CPU's model name, from /proc/cpuinfo where there is one.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn simd_features() -> Vec<String> {
    #[allow(unused_mut)]
    let mut f: Vec<String> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        for (name, on) in [
            ("avx2", std::is_x86_feature_detected!("avx2")),
            ("fma", std::is_x86_feature_detected!("fma")),
            ("f16c", std::is_x86_feature_detected!("f16c")),
            ("avx512f", std::is_x86_feature_detected!("avx512f")),
        ] {
            if on {
                f.push(name.into());
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    f.push("neon".into());
    f
}

impl Backend for CpuBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Cpu
    }

    fn device(&self) -> &DeviceInfo {
        &self.info
    }

    fn describe(&self, work: &Workload) -> String {
        describe(work)
    }

    fn probe_ceilings(&self) -> Result<super::Ceilings> {
        Ok(super::cpu_ceilings::probe())
    }

    fn prepare<'a>(
        &'a self,
        work: &Workload,
        inputs: &'a Inputs,
    ) -> Result<Box<dyn PreparedOp + 'a>> {
        Ok(match work.precision {
            Precision::F32 => Box::new(CpuOp::<f32>::new(*work, inputs)),
            Precision::F16 => Box::new(CpuOp::<f16>::new(*work, inputs)),
            Precision::Bf16 => Box::new(CpuOp::<bf16>::new(*work, inputs)),
            // FP16 activations and outputs; the weight is quantised in new().
            Precision::Int8 => Box::new(CpuOp::<f16>::new(*work, inputs)),
        })
    }
}

/// The implementation that runs `work` on the CPU.
fn describe(work: &Workload) -> String {
    let m = work.mkn().0;
    let int8 = work.precision == Precision::Int8;
    let matmul = if skinny(work.precision, m as usize) {
        if int8 {
            "skinny-w8-f32acc"
        } else {
            "skinny-f32acc"
        }
    } else if int8 {
        "w8-dequant+gemm-f32"
    } else if work.precision == Precision::F32 {
        "gemm"
    } else {
        "widen+gemm-f32"
    };
    match work.op {
        Op::Embedding => format!("rayon-gather {}", work.precision),
        Op::Matmul => format!("{matmul} {}", work.precision),
        Op::EmbedProject => format!("rayon-gather+{matmul} {}", work.precision),
    }
}

/// Rows up to which a projection takes [`matmul_skinny`]: decode's one row per
/// sequence, where the weight's bytes bound the product and `gemm`'s packing
/// costs more than it saves.
const SKINNY_ROWS: usize = 16;

/// Whether an `m`-row output in `precision` takes [`matmul_skinny`]: few
/// rows (here at B8 S1 K4096 N4096, `bench`: 9.2 and 10.0 ms against 19.0 ms
/// through `gemm` in f32; 4.7 to 6.5 ms since the loop is compiled for AVX2
/// and FMA). Every type follows the same rule, INT8 weights included (read
/// as int8 and widened in L1 instead of a widened f32 copy of the weight
/// written and read again): both paths accumulate in f32.
fn skinny(_precision: Precision, m: usize) -> bool {
    m <= SKINNY_ROWS
}

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
    /// `src` as f32: itself, or widened into `buf`.
    fn as_f32<'a>(src: &'a [Self], buf: &'a mut [f32]) -> &'a [f32];
    /// [`Element::as_f32`] inlined into code compiled for F16C, where FP16
    /// widens 8 elements an instruction without a call per chunk.
    ///
    /// # Safety
    /// The CPU must have F16C.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn as_f32_f16c<'a>(src: &'a [Self], buf: &'a mut [f32]) -> &'a [f32] {
        Self::as_f32(src, buf)
    }
    /// `y[m, n] = x[m, k] @ w[k, n]` through `gemm`, accumulating in f32;
    /// `scratch` holds whatever widened copies the type needs. Narrow types
    /// go through [`gemm_widened`].
    fn gemm(x: &[Self], w: &[Self], y: &mut [Self], k: usize, n: usize, s: &mut Scratch) {
        let m = y.len() / n;
        gemm_widened(
            x,
            m,
            k,
            n,
            s,
            |k0, rows, panel| widen_panel(w, n, k0, rows, panel),
            |y32| {
                y.par_chunks_mut(1 << 16)
                    .zip(y32.par_chunks(1 << 16))
                    .for_each(|(d, src)| Self::narrow(src, d))
            },
        )
    }
}

/// A weight element the skinny loop widens to f32 as it reads it: the
/// storage types, and an INT8 weight's quantized values (its scales are
/// applied to the sums).
pub trait WeightElement: Copy + Sync {
    /// `src` as f32: itself, or widened into `buf`.
    fn as_f32<'a>(src: &'a [Self], buf: &'a mut [f32]) -> &'a [f32];
    /// [`WeightElement::as_f32`] inlined into code compiled for F16C.
    ///
    /// # Safety
    /// The CPU must have F16C.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn as_f32_f16c<'a>(src: &'a [Self], buf: &'a mut [f32]) -> &'a [f32] {
        Self::as_f32(src, buf)
    }
}

impl<T: Element> WeightElement for T {
    #[inline(always)]
    fn as_f32<'a>(src: &'a [Self], buf: &'a mut [f32]) -> &'a [f32] {
        Element::as_f32(src, buf)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn as_f32_f16c<'a>(src: &'a [Self], buf: &'a mut [f32]) -> &'a [f32] {
        // SAFETY: the caller's CPU has F16C.
        unsafe { Element::as_f32_f16c(src, buf) }
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
}

/// Widened f32 copies for the storage types the projection accumulates in
/// f32 through (FP16, BF16, INT8 weights): the activations `[m, k]`, a panel
/// of [`panel_rows`] rows of the weight, and the f32 output.
#[derive(Default)]
pub struct Scratch {
    x: Vec<f32>,
    w: Vec<f32>,
    y: Vec<f32>,
}

impl Scratch {
    fn new(m: usize, k: usize, n: usize) -> Self {
        Scratch {
            x: vec![0.0; m * k],
            w: vec![0.0; panel_rows(k, n) * n],
            y: vec![0.0; m * n],
        }
    }

    fn bytes(&self) -> u64 {
        4 * (self.x.capacity() + self.w.capacity() + self.y.capacity()) as u64
    }
}

/// Bytes of the f32 copy of a weight panel: a panel, not a second whole
/// weight, so a narrow type keeps its memory advantage; large enough that
/// the f32 output is passed over few times (once when K x N fits).
const WIDEN_PANEL_BYTES: usize = 16 << 20;

/// Rows of a `k` x `n` weight widened to f32 at a time: [`WIDEN_PANEL_BYTES`]
/// worth, at least 64.
fn panel_rows(k: usize, n: usize) -> usize {
    (WIDEN_PANEL_BYTES / 4 / n.max(1)).max(64).min(k.max(1))
}

/// `y[m, n] = x[m, k] @ w[k, n]` accumulated in f32 for a storage type
/// `gemm` would not accumulate in f32 throughout: the activations widened to
/// f32 once, the weight a panel of rows at a time by `widen_rows(k0, rows,
/// panel)`, f32 products summed by `gemm` into the f32 output, which
/// `finish(y32)` then rounds into the op's output. (`gemm`'s own FP16 path
/// keeps partial sums in the f16 output between blocks of K: with LLM-like
/// data at scale 16384 they overflowed to -inf where the exact result was
/// -59768, so it is not used.)
fn gemm_widened<T: Element>(
    x: &[T],
    m: usize,
    k: usize,
    n: usize,
    s: &mut Scratch,
    widen_rows: impl Fn(usize, usize, &mut [f32]),
    finish: impl FnOnce(&mut [f32]),
) {
    let xs = &mut s.x[..m * k];
    xs.par_chunks_mut(1 << 16)
        .zip(x.par_chunks(1 << 16))
        .for_each(|(d, src)| T::widen(src, d));
    let step = panel_rows(k, n);
    let mut k0 = 0;
    while k0 < k {
        let rows = step.min(k - k0);
        let panel = &mut s.w[..rows * n];
        widen_rows(k0, rows, panel);
        // SAFETY: xs[k0..] with row stride k covers (m-1)*k + rows elements
        // past k0; the panel holds rows*n; s.y holds m*n and is its own Vec.
        unsafe {
            gemm_raw(
                m,
                rows,
                n,
                s.y.as_mut_ptr(),
                xs.as_ptr().add(k0),
                k,
                panel.as_ptr(),
                k0 > 0,
            )
        }
        k0 += rows;
    }
    finish(&mut s.y[..m * n]);
}

/// Widens rows `k0..k0 + rows` of `w` (`n` wide) into `panel`, in parallel.
fn widen_panel<T: Element>(w: &[T], n: usize, k0: usize, rows: usize, panel: &mut [f32]) {
    panel
        .par_chunks_mut(1 << 16)
        .zip(w[k0 * n..(k0 + rows) * n].par_chunks(1 << 16))
        .for_each(|(d, src)| T::widen(src, d));
}

fn gemm_parallelism(m: usize, k: usize, n: usize) -> gemm::Parallelism {
    let threads = rayon::current_num_threads();
    if threads > 1 && m * k * n >= 1 << 16 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
}

/// `dst[m, n] (+)= lhs[m, k] @ rhs[k, n]` through `gemm`'s f32 kernel,
/// row-major with row strides `lda`, `n` and `n`; with `accumulate` the
/// product is added to `dst`.
///
/// # Safety
/// `lhs` covers `(m - 1) * lda + k` elements, `rhs` `k * n` and `dst` `m * n`;
/// `dst` aliases neither input.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw(
    m: usize,
    k: usize,
    n: usize,
    dst: *mut f32,
    lhs: *const f32,
    lda: usize,
    rhs: *const f32,
    accumulate: bool,
) {
    // SAFETY: the caller's contract (row-major: column stride 1).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            accumulate,
            lhs,
            1,
            lda as isize,
            rhs,
            1,
            n as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm_parallelism(m, k, n),
        );
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
    fn as_f32<'a>(src: &'a [Self], _: &'a mut [f32]) -> &'a [f32] {
        src
    }
    fn gemm(x: &[Self], w: &[Self], y: &mut [Self], k: usize, n: usize, _: &mut Scratch) {
        let m = y.len() / n;
        // SAFETY: the slices hold m*k, k*n and m*n elements; y is its own Vec.
        unsafe { gemm_raw(m, k, n, y.as_mut_ptr(), x.as_ptr(), k, w.as_ptr(), false) }
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
    fn as_f32<'a>(src: &'a [Self], buf: &'a mut [f32]) -> &'a [f32] {
        src.convert_to_f32_slice(buf);
        buf
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn as_f32_f16c<'a>(src: &'a [Self], buf: &'a mut [f32]) -> &'a [f32] {
        use std::arch::x86_64::{__m128i, _mm256_cvtph_ps, _mm256_storeu_ps, _mm_loadu_si128};
        let n = src.len().min(buf.len());
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n elements of both slices; unaligned loads and
            // stores; the caller's CPU has F16C.
            unsafe {
                let h = _mm_loadu_si128(src.as_ptr().add(i).cast::<__m128i>());
                _mm256_storeu_ps(buf.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            }
            i += 8;
        }
        for (d, s) in buf[i..n].iter_mut().zip(&src[i..n]) {
            *d = s.to_f32();
        }
        &buf[..n]
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
    fn as_f32<'a>(src: &'a [Self], buf: &'a mut [f32]) -> &'a [f32] {
        Self::widen(src, buf);
        &buf[..src.len()]
    }
}

/// A prepared CPU op: every buffer allocated once, in the op's precision.
struct CpuOp<'a, T: Element> {
    work: Workload,
    inputs: &'a Inputs,
    ids: Vec<u32>,
    table: Vec<T>,
    /// The matmul's input, or the rows `embed-project` gathers.
    x: Vec<T>,
    w: Vec<T>,
    /// The weight of an INT8 point (then `w` is empty).
    qw: QuantizedWeight,
    y: Vec<T>,
    /// f32 copies for the precisions widened to f32 (FP16, BF16, INT8 weights).
    scratch: Scratch,
    flush: Vec<u8>,
    /// Time the table and weight took to load.
    model_load_ns: u64,
}

fn convert_into<T: Element>(dst: &mut [T], src: &[f32]) {
    dst.par_chunks_mut(1 << 16)
        .zip(src.par_chunks(1 << 16))
        .for_each(|(d, s)| T::narrow(s, d));
}

impl<'a, T: Element> CpuOp<'a, T> {
    fn new(work: Workload, inputs: &'a Inputs) -> Self {
        let (m, k, n) = work.mkn();
        let activations = if work.op == Op::Embedding {
            0
        } else {
            (m * k) as usize
        };
        let int8 = work.precision == Precision::Int8;
        let mut kernel = CpuOp {
            work,
            inputs,
            ids: vec![0; inputs.ids.len()],
            table: vec![T::default(); inputs.table.len()],
            x: vec![T::default(); activations],
            w: vec![T::default(); if int8 { 0 } else { inputs.w.len() }],
            qw: QuantizedWeight::default(),
            y: vec![T::default(); (m * n) as usize],
            // Every precision but FP32 accumulates through widened f32 copies.
            scratch: if work.precision != Precision::F32
                && work.op.uses_weight()
                && !skinny(work.precision, m as usize)
            {
                Scratch::new(m as usize, k as usize, n as usize)
            } else {
                Scratch::default()
            },
            flush: Vec::new(),
            model_load_ns: 0,
        };
        kernel.model_load_ns = kernel.load_model();
        kernel.upload_request();
        kernel
    }

    /// Materialises the model's data (table, weight) in the op's buffers and
    /// precision, once. Returns the nanoseconds it took.
    fn load_model(&mut self) -> u64 {
        let t = Instant::now();
        convert_into(&mut self.table, &self.inputs.table);
        if self.work.precision == Precision::Int8 {
            self.qw = quantize_weight(&self.inputs.w, self.work.mkn().2 as usize);
        } else {
            convert_into(&mut self.w, &self.inputs.w);
        }
        t.elapsed().as_nanos() as u64
    }

    /// Materialises one request's inputs (ids, or activations).
    fn upload_request(&mut self) {
        self.ids.copy_from_slice(&self.inputs.ids);
        if self.work.op == Op::Matmul {
            convert_into(&mut self.x, &self.inputs.x);
        }
    }

    fn execute(&mut self) {
        let (_, k, n) = self.work.mkn();
        let (k, n) = (k as usize, n as usize);
        match self.work.op {
            Op::Embedding => gather(&self.ids, &self.table, &mut self.y, k),
            Op::Matmul | Op::EmbedProject => {
                if self.work.op == Op::EmbedProject {
                    gather(&self.ids, &self.table, &mut self.x, k);
                }
                if self.qw.q.is_empty() {
                    matmul(&self.x, &self.w, &mut self.y, k, n, &mut self.scratch);
                } else {
                    matmul_w8(&self.x, &self.qw, &mut self.y, k, n, &mut self.scratch);
                }
            }
        }
    }
}

/// Bytes of output one gather task copies: large enough that rayon's
/// scheduling is noise next to the copy, small enough to balance the threads.
const GATHER_TASK_BYTES: usize = 128 << 10;
/// Gathers up to this many output bytes run on the calling thread: handing the
/// work to rayon's pool and waking its threads costs more than a second core
/// saves. Measured here (2 cores, f16 B8 S512 D128, 1 MiB out, median of 1000
/// calls): 36 us on the calling thread, 49 us through the pool.
const GATHER_SERIAL_BYTES: usize = 1 << 20;

/// `out[t, :] = table[ids[t], :]`, rows split across threads.
fn gather<T: Element>(ids: &[u32], table: &[T], out: &mut [T], d: usize) {
    let copy = |dst: &mut [T], ids: &[u32]| {
        for (row, &id) in dst.chunks_exact_mut(d).zip(ids) {
            let src = id as usize * d;
            row.copy_from_slice(&table[src..src + d]);
        }
    };
    let row_bytes = d * std::mem::size_of::<T>();
    if ids.len() * row_bytes <= GATHER_SERIAL_BYTES {
        return copy(out, ids);
    }
    let rows_per_task = (GATHER_TASK_BYTES / row_bytes).max(1);
    out.par_chunks_mut(rows_per_task * d)
        .zip(ids.par_chunks(rows_per_task))
        .for_each(|(dst, ids)| copy(dst, ids));
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
fn matmul_skinny<T: Element, W: WeightElement>(
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

/// `src` as f32 through F16C where `F16C` says the code is compiled for it.
#[inline(always)]
fn as_f32_in<'a, W: WeightElement, const F16C: bool>(
    src: &'a [W],
    buf: &'a mut [f32],
) -> &'a [f32] {
    #[cfg(target_arch = "x86_64")]
    if F16C {
        // SAFETY: F16C is true only in `skinny_block_avx2`, which runs only
        // where the CPU has F16C.
        return unsafe { W::as_f32_f16c(src, buf) };
    }
    W::as_f32(src, buf)
}

/// The skinny block's loop: [`KU`] rows of w at a time, widened to f32 a tile
/// of columns at a time (the tile's accumulators and the widened rows stay
/// in L1 while each row of w is still read front to back), and output rows
/// two at a time, so each widened element of w, once loaded, feeds two rows.
/// Written over zipped slices so the compiler vectorises it without bounds
/// checks.
#[inline(always)]
fn skinny_block_body<W: WeightElement, const FMA: bool, const F16C: bool>(
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
            let (b0, rest) = bufs.split_at_mut(tile);
            let (b1, rest) = rest.split_at_mut(tile);
            let (b2, b3) = rest.split_at_mut(tile);
            let (w0, w1, w2, w3) = (
                as_f32_in::<W, F16C>(seg(0), &mut b0[..tw]),
                as_f32_in::<W, F16C>(seg(1), &mut b1[..tw]),
                as_f32_in::<W, F16C>(seg(2), &mut b2[..tw]),
                as_f32_in::<W, F16C>(seg(3), &mut b3[..tw]),
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
                    let s0 = madd::<FMA>(madd::<FMA>(*a0, x[0], v0), x[1], v1);
                    *a0 = madd::<FMA>(madd::<FMA>(s0, x[2], v2), x[3], v3);
                    let s1 = madd::<FMA>(madd::<FMA>(*a1, z[0], v0), z[1], v1);
                    *a1 = madd::<FMA>(madd::<FMA>(s1, z[2], v2), z[3], v3);
                }
            }
            let last = pairs.into_remainder();
            if !last.is_empty() {
                let x = x4(m - 1);
                for ((((a, &v0), &v1), &v2), &v3) in
                    last[t0..t0 + tw].iter_mut().zip(w0).zip(w1).zip(w2).zip(w3)
                {
                    let s = madd::<FMA>(madd::<FMA>(*a, x[0], v0), x[1], v1);
                    *a = madd::<FMA>(madd::<FMA>(s, x[2], v2), x[3], v3);
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
            let wrow =
                as_f32_in::<W, F16C>(&w[kk * n + c0 + t0..kk * n + c0 + t0 + tw], &mut bufs[..tw]);
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

/// `y[m, n] = x[m, k] @ w[k, n]`, all row-major, through `gemm` (or the
/// widened path where `gemm` would accumulate in f16).
fn matmul<T: Element>(x: &[T], w: &[T], y: &mut [T], k: usize, n: usize, scratch: &mut Scratch) {
    let m = y.len() / n;
    if skinny(T::PRECISION, m) {
        return matmul_skinny(x, w, None, y, k, n);
    }
    T::gemm(x, w, y, k, n, scratch)
}

/// `y[m, n] = (x[m, k] @ q[k, n]) * scales[n]` for an INT8 weight, as
/// weight-only engines compute it: the activations widened to f32 once, the
/// int8 weight a panel of rows at a time (exact: |q| <= 127), f32 products
/// accumulated by `gemm` into an f32 output, each column's scale applied to
/// its sum, and the result rounded to the output type. Few rows (decode) take
/// [`matmul_skinny`], which widens the int8 rows in L1 as it reads them.
fn matmul_w8<T: Element>(
    x: &[T],
    qw: &QuantizedWeight,
    y: &mut [T],
    k: usize,
    n: usize,
    s: &mut Scratch,
) {
    let m = y.len() / n;
    if skinny(Precision::Int8, m) {
        return matmul_skinny(x, &qw.q, Some(&qw.scales), y, k, n);
    }
    gemm_widened(
        x,
        m,
        k,
        n,
        s,
        |k0, rows, panel| {
            panel
                .par_chunks_mut(1 << 16)
                .zip(qw.q[k0 * n..(k0 + rows) * n].par_chunks(1 << 16))
                .for_each(|(d, src)| {
                    for (o, &q) in d.iter_mut().zip(src) {
                        *o = q as f32;
                    }
                })
        },
        |y32| {
            y.par_chunks_mut(n)
                .zip(y32.par_chunks_mut(n))
                .for_each(|(out, acc)| {
                    for (a, &scale) in acc.iter_mut().zip(&qw.scales) {
                        *a *= scale;
                    }
                    T::narrow(acc, out);
                })
        },
    );
}

impl<T: Element> PreparedOp for CpuOp<'_, T> {
    fn describe(&self) -> String {
        describe(&self.work)
    }

    fn timing_method(&self) -> TimingMethod {
        TimingMethod::Wall
    }

    fn run(&mut self) -> Result<Sample> {
        let t = Instant::now();
        self.execute();
        Ok(Sample::wall(t.elapsed().as_nanos() as u64))
    }

    fn run_batch(&mut self, n: u32) -> Result<Sample> {
        let t = Instant::now();
        for _ in 0..n {
            self.execute();
        }
        Ok(Sample::wall(t.elapsed().as_nanos() as u64))
    }

    fn model_load_ns(&self) -> u64 {
        self.model_load_ns
    }

    fn run_phases(&mut self) -> Result<Phases> {
        let t = Instant::now();
        self.upload_request();
        let upload_ns = t.elapsed().as_nanos() as u64;
        let kernel_ns = self.run()?.wall_ns;
        // The output already lives in host memory: there is nothing to read back.
        Ok(Phases {
            upload_ns,
            kernel_ns,
            readback_ns: 0,
        })
    }

    fn output(&mut self) -> Result<Vec<f32>> {
        Ok(self.y.par_iter().map(|v| v.to_f32()).collect())
    }

    fn memory(&self) -> MemoryUse {
        let e = std::mem::size_of::<T>() as u64;
        MemoryUse {
            ids: self.ids.capacity() as u64 * 4,
            table: self.table.capacity() as u64 * e,
            activations: self.x.capacity() as u64 * e,
            weights: self.w.capacity() as u64 * e
                + self.qw.q.capacity() as u64
                + self.qw.scales.capacity() as u64 * 4,
            output: self.y.capacity() as u64 * e,
            other: self.flush.capacity() as u64 + self.scratch.bytes(),
            ..Default::default()
        }
        .summed()
    }

    fn flush_caches(&mut self) -> Result<()> {
        if self.flush.is_empty() {
            self.flush = vec![0u8; CACHE_FLUSH_BYTES as usize];
        }
        let v = self.flush[0].wrapping_add(1);
        self.flush.par_chunks_mut(1 << 20).for_each(|c| c.fill(v));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_cover_any_k() {
        assert_eq!(panel_rows(1, 1), 1);
        assert_eq!(panel_rows(33, 1000), 33);
        assert_eq!(panel_rows(4096, 50257), 83);
        assert_eq!(panel_rows(100_000, 1 << 20), 64);
    }

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
    fn check_skinny<T: Element>(m: usize, k: usize, n: usize, out_ulp: f64) {
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

    /// The portable loop (no FMA, no F16C) and the AVX2 one agree with the
    /// exact sums too: the tests above run whichever this CPU takes.
    #[test]
    fn skinny_portable_loop_matches_the_dispatched_one() {
        let (m, k, n) = (3, 259, 1000);
        let x = values(m * k, 3);
        let w: Vec<f16> = values(k * n, 4).into_iter().map(f16::from_f32).collect();
        let portable = skinny_block_body::<f16, false, false>(&x, &w, k, n, m, 0..n, 0..k);
        let dispatched = skinny_block(&x, &w, k, n, m, 0..n, 0..k);
        for (i, (a, b)) in portable.iter().zip(&dispatched).enumerate() {
            let tol = 2.0 * k as f32 * f32::EPSILON * (a.abs() + 1.0);
            assert!((a - b).abs() <= tol, "element {i}: {a} vs {b}");
        }
    }
}

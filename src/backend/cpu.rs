//! The CPU backend: the same ops as the GPU, on the host. The projection goes
//! through the `gemm` crate's f32 kernels (BLAS-class, AVX-512 aware): FP16,
//! BF16 and INT8 weights are widened to f32 a panel at a time, so every
//! precision accumulates in f32; few-row products (decode) take a
//! weight-streaming path. The gather copies rows in parallel (rayon) into a
//! preallocated output, so no sample pays for allocation or page faults.

use std::time::Instant;

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rayon::prelude::*;

use super::cpu_skinny::{matmul_skinny, WeightElement};
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
                vendor_id: None,
                device_id: None,
                pci_bus_id: None,
            },
        }
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

pub use super::cpu_name::cpu_model;

/// The CPU's SIMD features for a line of text; a CPU with none of those the
/// kernels use says so rather than leaving a blank.
pub fn features_line(features: &[String]) -> String {
    if features.is_empty() {
        "none of the SIMD extensions the kernels dispatch on".into()
    } else {
        features.join(" ")
    }
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
    {
        for (name, on) in [
            ("neon", std::arch::is_aarch64_feature_detected!("neon")),
            ("fp16", std::arch::is_aarch64_feature_detected!("fp16")),
            ("bf16", std::arch::is_aarch64_feature_detected!("bf16")),
            (
                "dotprod",
                std::arch::is_aarch64_feature_detected!("dotprod"),
            ),
            ("i8mm", std::arch::is_aarch64_feature_detected!("i8mm")),
            ("sve", std::arch::is_aarch64_feature_detected!("sve")),
        ] {
            if on {
                f.push(name.into());
            }
        }
    }
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
/// as int8 and widened as they are loaded, instead of a widened f32 copy of
/// the weight written and read again): both paths accumulate in f32.
fn skinny(_precision: Precision, m: usize) -> bool {
    m <= SKINNY_ROWS
}

/// A storage element type the CPU kernels are written once for.
pub trait Element: WeightElement + Default + Send + 'static {
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
                gemm_parallelism(m, rows, n),
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

/// Gives every thread of the pool `gemm`'s per-thread packing buffer before
/// anything is timed. `gemm` allocates it (as large as the core's L2 cache:
/// 2 MiB on this lab machine's Xeon cores, 512 KiB on a Zen 3 one) the first time a
/// thread runs a product, so a thread that first joined in while samples were
/// taken made the timed phase look as if it allocated (`timed_peak_alloc` of
/// 2 MiB against a 5 MiB op, on one CPU and not another). One small product
/// on each thread (for every thread, not once a process: `--threads` may
/// build another pool) costs microseconds.
fn warm_gemm_threads() {
    const D: usize = 32;
    rayon::broadcast(|_| {
        let (a, b) = ([1.0f32; D * D], [1.0f32; D * D]);
        let mut c = [0.0f32; D * D];
        // SAFETY: D x D row-major operands, no aliasing; one thread each.
        unsafe {
            gemm_raw(
                D,
                D,
                D,
                c.as_mut_ptr(),
                a.as_ptr(),
                D,
                b.as_ptr(),
                false,
                gemm::Parallelism::None,
            )
        };
    });
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
/// product is added to `dst`; over `parallelism`'s threads (see
/// [`gemm_parallelism`]).
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
    parallelism: gemm::Parallelism,
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
            parallelism,
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
    fn gemm(x: &[Self], w: &[Self], y: &mut [Self], k: usize, n: usize, _: &mut Scratch) {
        let m = y.len() / n;
        // SAFETY: the slices hold m*k, k*n and m*n elements; y is its own Vec.
        unsafe {
            gemm_raw(
                m,
                k,
                n,
                y.as_mut_ptr(),
                x.as_ptr(),
                k,
                w.as_ptr(),
                false,
                gemm_parallelism(m, k, n),
            )
        }
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
        if work.op.uses_weight() && !skinny(work.precision, m as usize) {
            warm_gemm_threads();
        }
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
            // Not `flush`: the harness's cache-flush buffer, no part of the op.
            other: self.scratch.bytes(),
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
}

//! The projection on the CPU: through the `gemm` crate's f32 kernels
//! (BLAS-class, AVX-512 aware). FP16, BF16 and INT8 weights are widened to
//! f32 a panel at a time, so every precision accumulates in f32; few-row
//! products (decode) take the weight-streaming path of `skinny.rs`. The
//! [`Weight`] is the part an op that ends in a projection (embed-project)
//! reuses.

use half::{bf16, f16};
use rayon::prelude::*;

use super::inputs::Tensors;
use super::params::Params;
use super::quantize::{quantize_weight, QuantizedWeight};
use super::skinny::{matmul_skinny, WeightElement};
use crate::backend::cpu::element::{convert_into, widened, Element};
use crate::backend::cpu::runner::{timed, CpuKernel, CpuRun};
use crate::error::Result;
use crate::ops::op::Inputs;
use crate::precision::Precision;
use crate::prepared_op::{MemoryUse, PreparedOp, RoleBytes};

/// Rows up to which a projection takes [`matmul_skinny`]: decode's one row per
/// sequence, where the weight's bytes bound the product and `gemm`'s packing
/// costs more than it saves (here at B8 S1 K4096 N4096, `bench`: 9.2 and 10.0
/// ms against 19.0 ms through `gemm` in f32; 4.7 to 6.5 ms since the loop is
/// compiled for AVX2 and FMA). Every type follows the same rule, INT8 weights
/// included (read as int8 and widened as they are loaded, instead of a
/// widened f32 copy of the weight written and read again): both paths
/// accumulate in f32.
const SKINNY_ROWS: usize = 16;

/// Whether an `m`-row output takes [`matmul_skinny`].
fn skinny(m: usize) -> bool {
    m <= SKINNY_ROWS
}

/// The path an `m`-row projection in `precision` takes: `skinny-f32acc`,
/// `skinny-w8-f32acc`, `w8-dequant+gemm-f32`, `gemm` or `widen+gemm-f32`.
pub fn path(precision: Precision, m: u64) -> &'static str {
    let int8 = precision == Precision::Int8;
    match (skinny(m as usize), int8, precision == Precision::F32) {
        (true, true, _) => "skinny-w8-f32acc",
        (true, false, _) => "skinny-f32acc",
        (false, true, _) => "w8-dequant+gemm-f32",
        (false, false, true) => "gemm",
        (false, false, false) => "widen+gemm-f32",
    }
}

/// The CPU kernel of `p` in `precision`, as records name it.
pub fn kernel_name(p: &Params, precision: Precision) -> String {
    format!("{} {precision}", path(precision, p.tokens()))
}

/// A storage type the projection runs in: an [`Element`] the skinny loop can
/// read as a weight, with its `gemm` route.
pub trait GemmElement: Element + WeightElement {
    /// `y[m, n] = x[m, k] @ w[k, n]` through `gemm`, accumulating in f32;
    /// `scratch` holds whatever widened copies the type needs. Narrow types
    /// go through `gemm_widened`.
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

impl GemmElement for f32 {
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

impl GemmElement for f16 {}

impl GemmElement for bf16 {}

/// Widened f32 copies for the storage types the projection accumulates in
/// f32 through (FP16, BF16, INT8 weights): the activations `[m, k]`, a panel
/// of `panel_rows` rows of the weight, and the f32 output.
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
    if skinny(m) {
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

/// A projection's weight in a CPU kernel's buffers: in the point's element
/// type, or quantised to INT8 per column; with the widened copies its `gemm`
/// route needs.
pub struct Weight<T> {
    w: Vec<T>,
    /// The weight of an INT8 point (then `w` is empty).
    qw: QuantizedWeight,
    scratch: Scratch,
    k: usize,
    n: usize,
    int8: bool,
}

impl<T: GemmElement> Weight<T> {
    /// The buffers of an `m` x `k` by `k` x `n` product in `precision`,
    /// allocated (not yet loaded: [`Self::load`]).
    pub fn new(precision: Precision, (m, k, n): (u64, u64, u64)) -> Self {
        let (m, k, n) = (m as usize, k as usize, n as usize);
        let int8 = precision == Precision::Int8;
        Weight {
            w: vec![T::default(); if int8 { 0 } else { k * n }],
            qw: QuantizedWeight::default(),
            // Every precision but FP32 accumulates through widened f32 copies.
            scratch: if precision != Precision::F32 && !skinny(m) {
                Scratch::new(m, k, n)
            } else {
                Scratch::default()
            },
            k,
            n,
            int8,
        }
    }

    /// Places the weight `w` (`[k, n]`, f32) in the buffers: rounded to the
    /// element type, or quantised.
    pub fn load(&mut self, w: &[f32]) {
        if self.int8 {
            self.qw = quantize_weight(w, self.n);
        } else {
            convert_into(&mut self.w, w);
        }
    }

    /// Gives `gemm`'s threads their buffers before anything is timed, where
    /// an `m`-row product will go through `gemm`.
    pub fn warm(&self, m: u64) {
        if !skinny(m as usize) {
            warm_gemm_threads();
        }
    }

    /// `y[m, n] = x[m, k] @ W`.
    pub fn multiply(&mut self, x: &[T], y: &mut [T]) {
        let (k, n) = (self.k, self.n);
        if self.int8 {
            return matmul_w8(x, &self.qw, y, k, n, &mut self.scratch);
        }
        if skinny(y.len() / n) {
            return matmul_skinny(x, &self.w, None, y, k, n);
        }
        T::gemm(x, &self.w, y, k, n, &mut self.scratch)
    }

    /// Bytes of the weight as held (INT8: values and scales).
    pub fn bytes(&self) -> u64 {
        (self.w.capacity() * std::mem::size_of::<T>()) as u64
            + self.qw.q.capacity() as u64
            + self.qw.scales.capacity() as u64 * 4
    }

    /// Bytes of the f32 copies narrow types are widened into.
    pub fn scratch_bytes(&self) -> u64 {
        self.scratch.bytes()
    }
}

/// A prepared projection: activations, weight and output in the point's
/// precision.
struct MatmulKernel<'a, T> {
    tensors: &'a Tensors,
    name: String,
    x: Vec<T>,
    weight: Weight<T>,
    y: Vec<T>,
}

impl<T: GemmElement> CpuKernel for MatmulKernel<'_, T> {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn execute(&mut self) {
        self.weight.multiply(&self.x, &mut self.y);
    }

    fn upload_request(&mut self) {
        convert_into(&mut self.x, &self.tensors.x);
    }

    fn output(&self) -> Vec<f32> {
        widened(&self.y)
    }

    fn memory(&self) -> MemoryUse {
        let e = std::mem::size_of::<T>() as u64;
        MemoryUse {
            parts: RoleBytes::of(&[
                ("activations", self.x.capacity() as u64 * e),
                ("weights", self.weight.bytes()),
                ("output", self.y.capacity() as u64 * e),
            ]),
            other: self.weight.scratch_bytes(),
            ..Default::default()
        }
    }
}

fn build<'a, T: GemmElement>(
    p: &Params,
    precision: Precision,
    t: &'a Tensors,
) -> Box<dyn PreparedOp + 'a> {
    let (m, k, n) = p.mkn();
    let mut kernel = MatmulKernel {
        tensors: t,
        name: kernel_name(p, precision),
        x: vec![T::default(); (m * k) as usize],
        weight: Weight::new(precision, (m, k, n)),
        y: vec![T::default(); (m * n) as usize],
    };
    let ((), load_ns) = timed(|| kernel.weight.load(&t.w));
    kernel.upload_request();
    kernel.weight.warm(m);
    Box::new(CpuRun::new(kernel, load_ns))
}

/// The projection `p` prepared on the CPU in `precision` (INT8: FP16
/// activations and outputs, the weight quantised).
pub fn prepare<'a>(
    p: &Params,
    precision: Precision,
    inputs: &'a Inputs,
) -> Result<Box<dyn PreparedOp + 'a>> {
    let t: &Tensors = inputs.get();
    Ok(match precision {
        Precision::F32 => build::<f32>(p, precision, t),
        Precision::F16 | Precision::Int8 => build::<f16>(p, precision, t),
        Precision::Bf16 => build::<bf16>(p, precision, t),
    })
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

    /// Records name the path that ran: few rows stream the weight, more go
    /// through `gemm`, widened where the type is narrow.
    #[test]
    fn every_path_is_named() {
        let names: Vec<&str> = [
            (Precision::F32, 16),
            (Precision::Int8, 1),
            (Precision::Int8, 17),
            (Precision::F32, 17),
            (Precision::Bf16, 17),
        ]
        .map(|(p, m)| path(p, m))
        .to_vec();
        assert_eq!(
            names,
            [
                "skinny-f32acc",
                "skinny-w8-f32acc",
                "w8-dequant+gemm-f32",
                "gemm",
                "widen+gemm-f32"
            ]
        );
    }
}

//! The projection `y[M, N] = x[M, K] @ W[K, N]`: the seed's `x @ W`, a model's
//! QKV, attention-output, MLP and LM-head layers. M = batch x seq tokens, K =
//! `dim`, N = `out_dim` (= `dim` unless given); decode is seq = 1, a handful
//! of rows against a whole weight.
//!
//! Its files: `params.rs` (sizes, validation, cost model), `quantize.rs`
//! (INT8 weights), `inputs.rs`, `reference.rs` (the f64 oracle and its
//! tolerance), `cpu.rs` and `skinny.rs` (the CPU kernels), `gpu.rs` (the GPU
//! plan and program), `kernels.rs` (the WGSL configurations), `support.rs`
//! (what a device runs of them) and `classes.rs` (the autotuner's shape
//! classes). This file ties them to the lab's [`Operation`].

pub mod classes;
pub mod cpu;
pub mod gpu;
pub mod inputs;
pub mod kernels;
pub mod params;
pub mod quantize;
pub mod reference;
pub mod skinny;
pub mod support;

pub use params::Params;

use inputs::Tensors;
use reference::{Activations, Projection};

use crate::backend::gpu::device::GpuDevice;
use crate::data::Data;
use crate::error::Result;
use crate::ops::op::{Axis, Cost, Inputs, Operation, Reference, Roof, Scaling, Values};
use crate::precision::Precision;
use crate::prepared_op::{Accumulation, PreparedOp};

/// The memory breakdown's parts of a projection.
const MEMORY_PARTS: &[(&str, &[&str])] = &[
    ("weight", &["weights"]),
    ("activations", &["activations"]),
    ("output", &["output"]),
];

impl Operation for Params {
    const NAME: &'static str = params::NAME;
    const ABOUT: &'static str =
        "a projection y[M, N] = x[M, K] @ W[K, N]: M = batch x seq tokens, K = dim, N = out_dim";
    const AXES: &'static [Axis] = params::AXES;

    fn from_values(values: &Values) -> Result<Self> {
        Params::from_values(values)
    }

    fn axis(&self, axis: &str) -> Option<u32> {
        Params::axis(self, axis)
    }

    fn label(&self) -> String {
        Params::label(self)
    }

    fn sizes(&self) -> String {
        format!("{} -> {}", self.dim, self.out_dim)
    }

    fn tokens(&self) -> u64 {
        Params::tokens(self)
    }

    fn output_shape(&self) -> (u64, u64) {
        let (m, _, n) = self.mkn();
        (m, n)
    }

    fn cost(&self, precision: Precision) -> Cost {
        Params::cost(self, precision)
    }

    fn host_input_bytes(&self) -> u64 {
        let (m, k, n) = self.mkn();
        (m * k + k * n) * 4
    }

    fn generate(&self, data: Data, seed: u64) -> Inputs {
        inputs::generate(self, data, seed)
    }

    fn reference<'a>(
        &self,
        precision: Precision,
        inputs: &'a Inputs,
        accumulation: Accumulation,
    ) -> Box<dyn Reference + 'a> {
        let t: &Tensors = inputs.get();
        Box::new(Projection::new(
            Activations::Rows(&t.x),
            &t.w,
            self.mkn(),
            precision,
            accumulation,
        ))
    }

    fn cpu_kernel(&self, precision: Precision) -> String {
        cpu::kernel_name(self, precision)
    }

    fn cpu<'a>(
        &self,
        precision: Precision,
        inputs: &'a Inputs,
    ) -> Result<Box<dyn PreparedOp + 'a>> {
        cpu::prepare(self, precision, inputs)
    }

    fn gpu_kernel(&self, gpu: &GpuDevice, precision: Precision) -> String {
        gpu::kernel_name(gpu, self, precision)
    }

    fn gpu<'a>(
        &self,
        gpu: &'a GpuDevice,
        precision: Precision,
        inputs: &'a Inputs,
    ) -> Result<Box<dyn PreparedOp + 'a>> {
        gpu::prepare(gpu, self, precision, inputs)
    }

    fn roof(&self) -> Roof {
        Roof::Compute
    }

    fn scaling(&self) -> Scaling {
        Scaling {
            axis: "dim",
            exponent: 2.0,
            model: "FLOP (2*B*S*D^2)",
            on_line: self.out_dim == self.dim,
        }
    }

    fn projection(&self) -> Option<(u64, u64)> {
        Some((self.dim as u64, self.out_dim as u64))
    }

    /// Square projections of 1 to 231 rows whose sizes are no tile multiple
    /// (K 100, 33, 129), a 1 x 1 x 1 one, and one of 64 (whole 4-element
    /// words: the vector loads).
    fn examples() -> Vec<Self> {
        [
            (3, 77, 100),
            (1, 1, 1),
            (2, 5, 33),
            (1, 65, 129),
            (2, 3, 64),
        ]
        .map(|(batch, seq, dim)| Params {
            batch,
            seq,
            dim,
            out_dim: dim,
        })
        .to_vec()
    }

    fn memory_parts() -> &'static [(&'static str, &'static [&'static str])] {
        MEMORY_PARTS
    }

    fn memory_note() -> &'static str {
        "activations and output are B*S*D each, the weight D*N"
    }
}

//! Embed-project: an embedding lookup feeding a projection, both in one
//! submission (on the GPU, one pass: the gather writes the rows the matmul
//! reads) — what a model's first layer and its first projection cost
//! together, and what the rows cost handed through memory.
//!
//! A composite: its files reuse the lookup's and the projection's parts
//! (`params.rs`, `inputs.rs`, `cpu.rs`, `gpu.rs`); its oracle is the
//! projection's over the gathered rows. This file ties them to the lab's
//! [`Operation`].

pub mod cpu;
pub mod gpu;
pub mod inputs;
pub mod params;

pub use params::Params;

use inputs::Tensors;

use crate::backend::gpu::device::GpuDevice;
use crate::data::Data;
use crate::error::Result;
use crate::ops::matmul::reference::{Activations, Projection};
use crate::ops::op::{Axis, Cost, Inputs, Operation, Reference, Roof, Scaling, Values};
use crate::precision::Precision;
use crate::prepared_op::{Accumulation, PreparedOp};

/// The memory breakdown's parts of embed-project.
const MEMORY_PARTS: &[(&str, &[&str])] = &[
    ("table", &["table"]),
    ("weight", &["weights"]),
    ("activations", &["activations", "ids"]),
    ("output", &["output"]),
];

impl Operation for Params {
    const NAME: &'static str = params::NAME;
    const ABOUT: &'static str =
        "an embedding lookup feeding a projection to out_dim columns, both in one submission";
    const AXES: &'static [Axis] = params::AXES;
    const MODEL_LAYER: bool = false;

    fn from_values(values: &Values) -> Result<Self> {
        Params::from_values(values)
    }

    fn axis(&self, axis: &str) -> Option<u32> {
        Params::axis(self, axis)
    }

    fn label(&self) -> String {
        self.projection_part().label()
    }

    fn sizes(&self) -> String {
        format!("{} x {} -> {}", self.vocab, self.dim, self.out_dim)
    }

    fn tokens(&self) -> u64 {
        self.projection_part().tokens()
    }

    fn output_shape(&self) -> (u64, u64) {
        let (m, _, n) = self.projection_part().mkn();
        (m, n)
    }

    fn cost(&self, precision: Precision) -> Cost {
        Params::cost(self, precision)
    }

    fn host_input_bytes(&self) -> u64 {
        let (m, k, n) = self.projection_part().mkn();
        (self.vocab as u64 * k + k * n + m) * 4
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
        let x = Activations::Gathered {
            table: &t.lookup.table,
            ids: &t.lookup.ids,
        };
        Box::new(Projection::new(
            x,
            &t.w,
            self.projection_part().mkn(),
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

    /// The lookup's examples feeding square projections.
    fn examples() -> Vec<Self> {
        [
            (3, 77, 100, 1000),
            (1, 1, 1, 1),
            (2, 5, 33, 7),
            (1, 65, 129, 300),
            (2, 3, 64, 40),
        ]
        .map(|(batch, seq, dim, vocab)| Params {
            batch,
            seq,
            dim,
            vocab,
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

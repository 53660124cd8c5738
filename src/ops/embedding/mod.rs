//! The embedding lookup `out[b, s, :] = table[ids[b, s], :]`: a model's first
//! layer, a copy of the rows its tokens name from a `[vocab, dim]` table.
//!
//! Its files: `params.rs` (sizes, validation, cost model), `inputs.rs`,
//! `reference.rs` (the f64 oracle: an exact copy), `cpu.rs`, `gpu.rs` (the
//! GPU plan and program) and `kernels.rs` (the WGSL gathers). This file ties
//! them to the lab's [`Operation`].

pub mod cpu;
pub mod gpu;
pub mod inputs;
pub mod kernels;
pub mod params;
pub mod reference;

pub use params::Params;

use inputs::Lookup;

use crate::backend::gpu::device::GpuDevice;
use crate::data::Data;
use crate::error::Result;
use crate::ops::op::{Axis, Cost, Inputs, Operation, Reference, Roof, Scaling, Values};
use crate::precision::Precision;
use crate::prepared_op::{Accumulation, PreparedOp};

/// The memory breakdown's parts of a lookup.
const MEMORY_PARTS: &[(&str, &[&str])] = &[
    ("table", &["table"]),
    ("activations", &["ids"]),
    ("output", &["output"]),
];

impl Operation for Params {
    const NAME: &'static str = params::NAME;
    const ABOUT: &'static str =
        "an embedding lookup out[t, :] = table[ids[t], :] from a [vocab, dim] table, t over batch x seq tokens";
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
        format!("{} x {}", self.vocab, self.dim)
    }

    fn tokens(&self) -> u64 {
        Params::tokens(self)
    }

    fn output_shape(&self) -> (u64, u64) {
        (self.tokens(), self.dim as u64)
    }

    fn cost(&self, precision: Precision) -> Cost {
        Params::cost(self, precision)
    }

    fn host_input_bytes(&self) -> u64 {
        (self.vocab as u64 * self.dim as u64 + self.tokens()) * 4
    }

    fn generate(&self, data: Data, seed: u64) -> Inputs {
        inputs::generate(self, data, seed)
    }

    fn reference<'a>(
        &self,
        precision: Precision,
        inputs: &'a Inputs,
        _accumulation: Accumulation,
    ) -> Box<dyn Reference + 'a> {
        let lookup: &Lookup = inputs.get();
        Box::new(reference::Copy {
            table: &lookup.table,
            ids: &lookup.ids,
            k: self.dim as usize,
            precision,
        })
    }

    fn cpu_kernel(&self, precision: Precision) -> String {
        cpu::kernel_name(precision)
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
        Roof::Memory
    }

    fn scaling(&self) -> Scaling {
        Scaling {
            axis: "dim",
            exponent: 1.0,
            model: "bytes-moved",
            on_line: true,
        }
    }

    /// Rows of 100, 1, 33 and 129 elements (the vec4, element-pair and word
    /// gathers), 64-element rows (the vec4 gather in f16 too), tables of 1 to
    /// 1000 rows.
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
        })
        .to_vec()
    }

    fn memory_parts() -> &'static [(&'static str, &'static [&'static str])] {
        MEMORY_PARTS
    }

    fn memory_note() -> &'static str {
        "the table is vocab x dim whatever the batch, the output B*S*D"
    }
}

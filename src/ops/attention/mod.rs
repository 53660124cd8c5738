//! Attention over a KV cache, `out = softmax(Q K^T / sqrt(D) + mask) V`:
//! what context length costs. A decode step (S = 1) reads the whole cache
//! for one new token per sequence; a prefill (S = L) does S x L work; a
//! chunked prefill (1 < S < L) both. MHA, GQA and MQA (`heads`, `kv_heads`),
//! causal or not, the cache as the point's precision or narrower (int8, FP8).
//!
//! Its files: `params.rs` (sizes, validation, cost model), `kv.rs` (the
//! cache's formats and quantisers), `inputs.rs`, `reference.rs` (the f64
//! oracle and its error bound), `cpu.rs` (fused flash with split-K, and the
//! materialised path), `gpu.rs` (plan and program) and `kernels.rs` (the WGSL
//! of `shaders/attention/`). This file ties them to the lab's [`Operation`].

pub mod cpu;
pub mod gpu;
pub mod inputs;
pub mod kernels;
pub mod kv;
pub mod params;
pub mod reference;

pub use params::Params;

use crate::backend::gpu::device::GpuDevice;
use crate::data::Data;
use crate::error::Result;
use crate::ops::op::{Axis, Cost, Inputs, Operation, Reference, Roof, Scaling, Values};
use crate::precision::Precision;
use crate::prepared_op::{Accumulation, PreparedOp};
use kv::KvPrecision;

/// The memory breakdown's parts of an attention.
const MEMORY_PARTS: &[(&str, &[&str])] = &[
    ("KV cache", &["kv-cache"]),
    ("queries", &["q"]),
    ("output", &["output"]),
    ("scores", &["scores"]),
    ("workspace", &["workspace"]),
];

impl Operation for Params {
    const NAME: &'static str = params::NAME;
    const ABOUT: &'static str =
        "attention softmax(Q K^T / sqrt(D)) V of S new tokens over a KV cache of L, H query and G KV heads, causal by default";
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
        format!("H{} G{} D{}", self.heads, self.kv_heads, self.head_dim)
    }

    fn tokens(&self) -> u64 {
        Params::tokens(self)
    }

    fn output_shape(&self) -> (u64, u64) {
        (self.query_rows(), self.head_dim as u64)
    }

    fn cost(&self, precision: Precision) -> Cost {
        Params::cost(self, precision)
    }

    fn host_input_bytes(&self) -> u64 {
        inputs::host_bytes(self)
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
        Box::new(reference::Attention::new(self, precision, inputs.get()))
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

    /// A decode step streams the cache (the copy bandwidth bounds it); a
    /// prefill is arithmetic (the FMA peak).
    fn roof(&self) -> Roof {
        if self.seq == 1 {
            Roof::Memory
        } else {
            Roof::Compute
        }
    }

    /// Decode grows with the context (the cache read once: exponent 1);
    /// prefill with S (S x L pairs at S = L: exponent 2).
    fn scaling(&self) -> Scaling {
        if self.seq == 1 {
            Scaling {
                axis: "context",
                exponent: 1.0,
                model: "KV-cache bytes",
                on_line: true,
            }
        } else {
            Scaling {
                axis: "seq",
                exponent: 2.0,
                model: "(query, key) pairs",
                on_line: self.seq == self.context,
            }
        }
    }

    /// Odd heads (1, 33, 100), odd contexts, decode and chunked prefill with
    /// a prefix, MHA, GQA and MQA, causal and not, int8 and FP8 caches, the
    /// materialised path, a batch of 3, and a decode of 200 sequences (row chunks under small
    /// bindings).
    fn examples() -> Vec<Self> {
        let p = |batch, seq, context, heads, kv_heads, head_dim| Params {
            batch,
            seq,
            context,
            heads,
            kv_heads,
            head_dim,
            causal: true,
            kv_precision: KvPrecision::Same,
            materialized: false,
        };
        vec![
            p(1, 1, 1, 1, 1, 1),
            p(3, 1, 300, 4, 2, 33),
            p(2, 70, 70, 2, 1, 100),
            Params {
                causal: false,
                ..p(1, 20, 37, 3, 3, 64)
            },
            p(1, 5, 133, 4, 4, 16),
            Params {
                kv_precision: KvPrecision::Int8,
                ..p(2, 1, 150, 8, 2, 64)
            },
            Params {
                kv_precision: KvPrecision::Fp8,
                ..p(1, 33, 97, 2, 1, 40)
            },
            Params {
                materialized: true,
                ..p(2, 19, 45, 4, 2, 24)
            },
            p(200, 1, 65, 2, 1, 8),
        ]
    }

    fn memory_parts() -> &'static [(&'static str, &'static [&'static str])] {
        MEMORY_PARTS
    }

    fn memory_note() -> &'static str {
        "the KV cache is 2 x B x G x L x D elements (it grows with batch x context), the queries and output B x S x H x D, the materialised scores B x H x S x L"
    }
}

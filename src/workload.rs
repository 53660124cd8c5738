//! What one point measures, independent of backend: an op with its own
//! parameters ([`OpParams`]), the storage precision, and the input data; and
//! what the rest of the lab asks of it (cost, inputs, verification), each
//! answered by the op through the registry.

use serde::{Deserialize, Serialize};

use crate::data::Data;
use crate::ops::op::{Inputs, MemoryModel};
use crate::ops::{Op, OpParams};
use crate::precision::Precision;
use crate::prepared_op::Accumulation;
use crate::verify::{self, Accuracy};

/// One measurable configuration (op and parameters, precision, data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Workload {
    /// What is computed, at which sizes.
    pub params: OpParams,
    /// Storage precision.
    pub precision: Precision,
    /// The input data's distribution and scale.
    pub data: Data,
}

impl Workload {
    /// The workload of op `op` (by name) in `precision` with these
    /// parameters, the op's defaults for the rest; parameters the op lacks
    /// are skipped, so one list of sizes serves every op (test fixtures).
    #[cfg(test)]
    pub fn named(op: &str, precision: Precision, sizes: &[(&str, u32)]) -> Self {
        let op: Op = op.parse().expect("a known op");
        let mut v = crate::ops::op::Values::default();
        for &(k, x) in sizes {
            if op.axes().iter().any(|a| a.name == k) {
                v.set(k, x);
            }
        }
        Self::new(op.params(&v).expect("valid parameters"), precision)
    }

    /// `params` in `precision` on the lab's historical data.
    pub fn new(params: OpParams, precision: Precision) -> Self {
        Workload {
            params,
            precision,
            data: Data::default(),
        }
    }

    /// Which op.
    pub fn op(&self) -> Op {
        self.params.op()
    }

    /// Floating-point operations of one run (0 for a copy).
    pub fn flops(&self) -> u64 {
        self.params.cost(self.precision).flops
    }

    /// Bytes that must cross memory at least once in one run.
    pub fn bytes_moved(&self) -> u64 {
        self.params.cost(self.precision).bytes_moved
    }

    /// FLOP per byte moved (0 for a copy).
    pub fn arithmetic_intensity(&self) -> f64 {
        self.params.cost(self.precision).arithmetic_intensity()
    }

    /// Bytes each buffer needs at this precision.
    pub fn memory_model(&self) -> MemoryModel {
        self.params.cost(self.precision).memory
    }

    /// Tokens one run processes.
    pub fn tokens(&self) -> u64 {
        self.params.tokens()
    }

    /// The point's inputs at full precision, drawn from `seed`.
    pub fn inputs(&self, seed: u64) -> Inputs {
        self.params.generate(self.data, seed)
    }

    /// `output` against the op's f64 oracle over `inputs`, for a kernel that
    /// accumulates as `accumulation` says.
    pub fn verify(&self, inputs: &Inputs, output: &[f32], accumulation: Accumulation) -> Accuracy {
        let reference = self.params.reference(self.precision, inputs, accumulation);
        verify::verify(reference.as_ref(), self.precision, output)
    }
}

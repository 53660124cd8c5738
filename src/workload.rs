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

#[cfg(test)]
mod tests {
    use super::*;

    /// A workload answers with its op's cost at its own precision: B2 S3
    /// D5 N7 is 6 tokens, 2*6*5*7 = 420 FLOPs, and 120 + 140 + 168 bytes of
    /// activations, weights and output in FP32 (half of each in FP16).
    #[test]
    fn a_workload_answers_with_its_ops_cost_at_its_precision() {
        let sizes = [("batch", 2), ("seq", 3), ("dim", 5), ("out_dim", 7)];
        let w = Workload::named("matmul", Precision::F32, &sizes);
        assert_eq!(w.op().name(), "matmul");
        assert_eq!(w.tokens(), 6);
        assert_eq!(w.flops(), 420);
        assert_eq!(w.bytes_moved(), 428);
        assert_eq!(w.memory_model().total, 428);
        assert_eq!(w.memory_model().parts.get("weights"), 140);
        assert!((w.arithmetic_intensity() - 420.0 / 428.0).abs() < 1e-12);
        let half = Workload::named("matmul", Precision::F16, &sizes);
        assert_eq!(half.bytes_moved(), 214);
        assert_eq!(half.flops(), 420);
        let lookup = Workload::named(
            "embedding",
            Precision::F32,
            &[("batch", 2), ("seq", 3), ("dim", 4)],
        );
        assert_eq!((lookup.flops(), lookup.arithmetic_intensity()), (0, 0.0));
    }
}

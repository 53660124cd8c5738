//! Embed-project on the CPU: the lookup's gather into the activations, then
//! the projection, each through its own op's kernel parts.

use half::{bf16, f16};

use super::inputs::Tensors;
use super::params::Params;
use crate::backend::cpu::element::widened;
use crate::backend::cpu::runner::{timed, CpuKernel, CpuRun};
use crate::error::Result;
use crate::ops::embedding::cpu::{Table, PATH as GATHER};
use crate::ops::matmul::cpu::{path, GemmElement, Weight};
use crate::ops::op::Inputs;
use crate::precision::Precision;
use crate::prepared_op::{MemoryUse, PreparedOp, RoleBytes};

/// The CPU kernel of `p` in `precision`, as records name it.
pub fn kernel_name(p: &Params, precision: Precision) -> String {
    format!(
        "{GATHER}+{} {precision}",
        path(precision, p.projection_part().tokens())
    )
}

/// A prepared embed-project: table, gathered rows, weight and output in the
/// point's precision.
struct Kernel<'a, T> {
    name: String,
    table: Table<'a, T>,
    x: Vec<T>,
    weight: Weight<T>,
    y: Vec<T>,
    k: usize,
}

impl<T: GemmElement> CpuKernel for Kernel<'_, T> {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn execute(&mut self) {
        self.table.gather(&mut self.x, self.k);
        self.weight.multiply(&self.x, &mut self.y);
    }

    fn upload_request(&mut self) {
        self.table.upload_request();
    }

    fn output(&self) -> Vec<f32> {
        widened(&self.y)
    }

    fn memory(&self) -> MemoryUse {
        let e = std::mem::size_of::<T>() as u64;
        let (ids, table) = self.table.bytes();
        MemoryUse {
            parts: RoleBytes::of(&[
                ("ids", ids),
                ("table", table),
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
    let (m, k, n) = p.projection_part().mkn();
    let mut kernel = Kernel {
        name: kernel_name(p, precision),
        table: Table::<T>::new(&t.lookup),
        x: vec![T::default(); (m * k) as usize],
        weight: Weight::new(precision, (m, k, n)),
        y: vec![T::default(); (m * n) as usize],
        k: k as usize,
    };
    let ((), load_ns) = timed(|| {
        kernel.table.load();
        kernel.weight.load(&t.w);
    });
    kernel.upload_request();
    kernel.weight.warm(m);
    Box::new(CpuRun::new(kernel, load_ns))
}

/// `p` prepared on the CPU in `precision` (INT8: an FP16 table and
/// activations, the weight quantised).
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

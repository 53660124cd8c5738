//! The lookup on the CPU: rows copied in parallel (rayon) into a
//! preallocated output, so no sample pays for allocation or page faults.
//! [`gather`] and [`Table`] are the parts embed-project reuses.

use half::{bf16, f16};
use rayon::prelude::*;

use super::inputs::Lookup;
use super::params::Params;
use crate::backend::cpu::element::{convert_into, widened, Element};
use crate::backend::cpu::runner::{timed, CpuKernel, CpuRun};
use crate::error::Result;
use crate::ops::op::Inputs;
use crate::precision::Precision;
use crate::prepared_op::{MemoryUse, PreparedOp, RoleBytes};

/// Bytes of output one gather task copies: large enough that rayon's
/// scheduling is noise next to the copy, small enough to balance the threads.
const GATHER_TASK_BYTES: usize = 128 << 10;
/// Gathers up to this many output bytes run on the calling thread: handing the
/// work to rayon's pool and waking its threads costs more than a second core
/// saves. Measured here (2 cores, f16 B8 S512 D128, 1 MiB out, median of 1000
/// calls): 36 us on the calling thread, 49 us through the pool.
const GATHER_SERIAL_BYTES: usize = 1 << 20;

/// `out[t, :] = table[ids[t], :]`, rows `d` wide, split across threads.
pub fn gather<T: Element>(ids: &[u32], table: &[T], out: &mut [T], d: usize) {
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

/// The path a lookup takes, as records name it.
pub const PATH: &str = "rayon-gather";

/// The CPU kernel of a lookup in `precision`.
pub fn kernel_name(precision: Precision) -> String {
    format!("{PATH} {precision}")
}

/// A lookup's table and ids in a CPU kernel's buffers, in the point's
/// element type.
pub struct Table<'a, T> {
    lookup: &'a Lookup,
    /// The request's ids.
    pub ids: Vec<u32>,
    /// The table, rounded to the element type.
    pub table: Vec<T>,
}

impl<'a, T: Element> Table<'a, T> {
    /// The buffers of `lookup`, allocated (not yet loaded).
    pub fn new(lookup: &'a Lookup) -> Self {
        Table {
            lookup,
            ids: vec![0; lookup.ids.len()],
            table: vec![T::default(); lookup.table.len()],
        }
    }

    /// Places the table in its buffer (the model's data).
    pub fn load(&mut self) {
        convert_into(&mut self.table, &self.lookup.table);
    }

    /// Materialises the request's ids.
    pub fn upload_request(&mut self) {
        self.ids.copy_from_slice(&self.lookup.ids);
    }

    /// `out[t, :] = table[ids[t], :]`, rows `k` wide.
    pub fn gather(&self, out: &mut [T], k: usize) {
        gather(&self.ids, &self.table, out, k);
    }

    /// Bytes of the ids and of the table.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.ids.capacity() as u64 * 4,
            (self.table.capacity() * std::mem::size_of::<T>()) as u64,
        )
    }
}

/// A prepared lookup: table and output in the point's precision.
struct GatherKernel<'a, T> {
    name: String,
    table: Table<'a, T>,
    y: Vec<T>,
    k: usize,
}

impl<T: Element> CpuKernel for GatherKernel<'_, T> {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn execute(&mut self) {
        self.table.gather(&mut self.y, self.k);
    }

    fn upload_request(&mut self) {
        self.table.upload_request();
    }

    fn output(&self) -> Vec<f32> {
        widened(&self.y)
    }

    fn memory(&self) -> MemoryUse {
        let (ids, table) = self.table.bytes();
        MemoryUse {
            parts: RoleBytes::of(&[
                ("ids", ids),
                ("table", table),
                (
                    "output",
                    (self.y.capacity() * std::mem::size_of::<T>()) as u64,
                ),
            ]),
            ..Default::default()
        }
    }
}

fn build<'a, T: Element>(
    p: &Params,
    precision: Precision,
    lookup: &'a Lookup,
) -> Box<dyn PreparedOp + 'a> {
    let k = p.dim as usize;
    let mut kernel = GatherKernel {
        name: kernel_name(precision),
        table: Table::<T>::new(lookup),
        y: vec![T::default(); p.tokens() as usize * k],
        k,
    };
    let ((), load_ns) = timed(|| kernel.table.load());
    kernel.upload_request();
    Box::new(CpuRun::new(kernel, load_ns))
}

/// The lookup `p` prepared on the CPU in `precision` (INT8: an FP16 table).
pub fn prepare<'a>(
    p: &Params,
    precision: Precision,
    inputs: &'a Inputs,
) -> Result<Box<dyn PreparedOp + 'a>> {
    let lookup: &Lookup = inputs.get();
    Ok(match precision {
        Precision::F32 => build::<f32>(p, precision, lookup),
        Precision::F16 | Precision::Int8 => build::<f16>(p, precision, lookup),
        Precision::Bf16 => build::<bf16>(p, precision, lookup),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows land where their ids say, on one thread and split across many
    /// (past the serial threshold).
    #[test]
    fn gathers_copy_the_named_rows_serially_and_in_parallel() {
        for d in [3usize, 1 << 16] {
            let table: Vec<f32> = (0..4 * d).map(|i| i as f32).collect();
            let ids = [3u32, 0, 3, 1, 2, 2, 0, 1];
            let mut out = vec![0.0f32; ids.len() * d];
            gather(&ids, &table, &mut out, d);
            for (t, &id) in ids.iter().enumerate() {
                assert_eq!(out[t * d], (id as usize * d) as f32, "d {d} row {t}");
                assert_eq!(out[t * d + d - 1], (id as usize * d + d - 1) as f32);
            }
        }
    }
}

//! The one CPU runner: an op's CPU kernel ([`CpuKernel`]: its buffers in the
//! point's precision, and how to run it) becomes a [`PreparedOp`] here, which
//! times runs with the host clock, runs them back to back, times requests
//! (upload and run; the output is already in host memory), flushes caches and
//! reports the op's memory. The runner never knows what an op means.

use std::time::Instant;

use rayon::prelude::*;

use crate::error::Result;
use crate::prepared_op::{MemoryUse, Phases, PreparedOp, Sample, TimingMethod, CACHE_FLUSH_BYTES};

/// An op's prepared CPU kernel: every buffer allocated once, the model's
/// data loaded.
pub trait CpuKernel: Send {
    /// Which implementation runs (the record's `kernel`).
    fn describe(&self) -> String;
    /// One execution of the op.
    fn execute(&mut self);
    /// Materialises one request's inputs (ids, or activations) in the
    /// kernel's buffers and precision.
    fn upload_request(&mut self);
    /// The output of the last execution, widened to f32, row-major.
    fn output(&self) -> Vec<f32>;
    /// Bytes the kernel holds by buffer role, and its working copies as `other`.
    fn memory(&self) -> MemoryUse;
}

/// A CPU kernel as a prepared op.
pub struct CpuRun<K> {
    kernel: K,
    flush: Vec<u8>,
    model_load_ns: u64,
}

impl<K: CpuKernel> CpuRun<K> {
    /// `kernel`, whose model took `model_load_ns` to load into its buffers.
    pub fn new(kernel: K, model_load_ns: u64) -> Self {
        CpuRun {
            kernel,
            flush: Vec::new(),
            model_load_ns,
        }
    }
}

impl<K: CpuKernel> PreparedOp for CpuRun<K> {
    fn describe(&self) -> String {
        self.kernel.describe()
    }

    fn timing_method(&self) -> TimingMethod {
        TimingMethod::Wall
    }

    fn run(&mut self) -> Result<Sample> {
        let t = Instant::now();
        self.kernel.execute();
        Ok(Sample::wall(t.elapsed().as_nanos() as u64))
    }

    fn run_batch(&mut self, n: u32) -> Result<Sample> {
        let t = Instant::now();
        for _ in 0..n {
            self.kernel.execute();
        }
        Ok(Sample::wall(t.elapsed().as_nanos() as u64))
    }

    fn model_load_ns(&self) -> u64 {
        self.model_load_ns
    }

    fn run_phases(&mut self) -> Result<Phases> {
        let t = Instant::now();
        self.kernel.upload_request();
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
        Ok(self.kernel.output())
    }

    fn memory(&self) -> MemoryUse {
        // Not `flush`: the harness's cache-flush buffer, no part of the op.
        self.kernel.memory().summed()
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

/// Times `load` (the model's data placed in a kernel's buffers), returning
/// its result and the nanoseconds it took.
pub fn timed<T>(load: impl FnOnce() -> T) -> (T, u64) {
    let t = Instant::now();
    let out = load();
    (out, t.elapsed().as_nanos() as u64)
}

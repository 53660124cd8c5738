//! What a prepared op offers the measuring loop: it runs the op, one timed
//! execution at a time ([`Sample`]), back to back, or as an end-to-end request
//! ([`Phases`]), and hands back its output for verification. Backends
//! implement [`PreparedOp`]; the engine (`measure`) only sees this trait.

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// How a sample's time was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimingMethod {
    /// GPU timestamp queries written at the start and end of the pass.
    DeviceTimestamp,
    /// The host's monotonic clock around submit-to-completion.
    Wall,
}

/// Why a sample's timestamp interval was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimestampFault {
    /// A timestamp read 0 (an unwritten or reset slot), or start equals end.
    Zero,
    /// The end is before the start, and no counter wrap explains it:
    /// reordered writes (gpuweb#3952).
    Negative,
    /// The end is before the start because the counter wrapped: counting on
    /// past the top of a counter as wide as the start (at least 32 bits; a
    /// Vulkan device's may have 36) reaches the end within the wall time.
    Wrapped,
    /// The interval is longer than the host's wall time around the same
    /// submission, which contains it.
    ExceedsWall,
    /// The queue reported no usable timestamp period.
    NoPeriod,
}

impl TimestampFault {
    /// The name records and warnings use.
    pub fn name(self) -> &'static str {
        match self {
            TimestampFault::Zero => "zero",
            TimestampFault::Negative => "negative",
            TimestampFault::Wrapped => "wrapped",
            TimestampFault::ExceedsWall => "exceeds-wall",
            TimestampFault::NoPeriod => "no-period",
        }
    }
}

/// One timed execution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Host time from submit (or call) to completion, nanoseconds.
    pub wall_ns: u64,
    /// Device time between the pass's timestamps, when the device gave a usable one.
    pub device_ns: Option<u64>,
    /// Why the device's interval was not used, when it was timed but rejected.
    pub fault: Option<TimestampFault>,
}

impl Sample {
    /// A sample whose device interval was read and checked: device time when
    /// `device` holds one, else wall time, with the fault when it was rejected.
    pub fn timed(wall_ns: u64, device: Option<std::result::Result<u64, TimestampFault>>) -> Self {
        match device {
            Some(Ok(ns)) => Sample {
                wall_ns,
                device_ns: Some(ns),
                fault: None,
            },
            Some(Err(f)) => Sample {
                fault: Some(f),
                ..Sample::wall(wall_ns)
            },
            None => Sample::wall(wall_ns),
        }
    }

    /// A sample timed by the host clock alone.
    pub fn wall(wall_ns: u64) -> Self {
        Sample {
            wall_ns,
            device_ns: None,
            fault: None,
        }
    }

    /// The time the measurement uses: device time when present, else wall time.
    pub fn best_ns(&self) -> u64 {
        self.device_ns.unwrap_or(self.wall_ns)
    }
}

/// The phases of one end-to-end request, nanoseconds of host time. The model's
/// table and weight are loaded once, before any request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// Host to device: the request's inputs (ids or activations) written into
    /// the backend's buffers.
    pub upload_ns: u64,
    /// The op itself (submit to completion).
    pub kernel_ns: u64,
    /// Device to host: the output read back into host memory.
    pub readback_ns: u64,
}

/// Bytes a prepared kernel actually holds, per buffer role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryUse {
    /// Token ids.
    pub ids: u64,
    /// Embedding table.
    pub table: u64,
    /// Activations (input of matmul, or gathered rows).
    pub activations: u64,
    /// Projection weight.
    pub weights: u64,
    /// Output.
    pub output: u64,
    /// Anything else the backend keeps for the op (uniforms, staging and
    /// timestamp buffers on the GPU; the f32 copies narrow types are widened
    /// into on the CPU). Not the buffer cold-cache timing writes between
    /// samples: that is the harness's, and runs before 2026-11-27 counted it
    /// here.
    pub other: u64,
    /// The sum of the above.
    pub total: u64,
    /// Bytes the device's allocator reports in live allocations, where the
    /// backend gives a report (wgpu's `generate_allocator_report`).
    #[serde(default)]
    pub allocator_allocated: Option<u64>,
    /// Bytes the device's allocator holds in memory blocks, used or not.
    #[serde(default)]
    pub allocator_reserved: Option<u64>,
}

impl MemoryUse {
    /// Fills in `total` from the parts.
    pub fn summed(mut self) -> Self {
        self.total =
            self.ids + self.table + self.activations + self.weights + self.output + self.other;
        self
    }
}

/// A prepared op with its inputs resident, ready to be timed.
pub trait PreparedOp {
    /// Which implementation runs (the record's `kernel`): kernel family,
    /// configuration and storage.
    fn describe(&self) -> String;
    /// How this kernel's samples are timed.
    fn timing_method(&self) -> TimingMethod;
    /// Runs the op once and times it.
    fn run(&mut self) -> Result<Sample>;
    /// Runs the op `n` times back to back in one submission; the sample covers all `n`.
    fn run_batch(&mut self, n: u32) -> Result<Sample>;
    /// One end-to-end request: upload the request's inputs (ids or
    /// activations; the table and weight stay loaded), run, read the output back.
    fn run_phases(&mut self) -> Result<Phases>;
    /// Nanoseconds the model's data (table, weight) took to load when the op
    /// was prepared: a one-time cost, not a request's.
    fn model_load_ns(&self) -> u64 {
        0
    }
    /// The output of the last run as f32, `[B*S, dim]` row-major (outside any timing).
    fn output(&mut self) -> Result<Vec<f32>>;
    /// Bytes this kernel holds, measured from its allocations.
    fn memory(&self) -> MemoryUse;
    /// Evicts the op's data from caches (for cold-cache samples).
    fn flush_caches(&mut self) -> Result<()>;
    /// How the kernel accumulates dot products (sets the verification tolerance).
    fn accumulation(&self) -> crate::reference::Accumulation {
        crate::reference::Accumulation::F32
    }
    /// One-time work the prepare call did besides setting the op up, which
    /// the cold start must not count; `None` for a backend that does none.
    fn one_time_costs(&self) -> Option<OneTimeCosts> {
        None
    }
}

/// One-time work inside a prepare call: deciding how the op runs (autotuning,
/// when its shape class was not tuned yet) and compiling pipelines (0 when the
/// device had compiled them before).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OneTimeCosts {
    /// Nanoseconds spent deciding the plan, autotuning included.
    pub planning_ns: u64,
    /// Nanoseconds spent compiling pipelines.
    pub compile_ns: u64,
}

//! What a prepared op offers the measuring loop: it runs the op, one timed
//! execution at a time ([`Sample`]), back to back, or as an end-to-end request
//! ([`Phases`]), and hands back its output for verification. Backends
//! implement [`PreparedOp`]; the engine (`measure`) only sees this trait.

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Bytes written to evict the caches between cold samples: larger than any
/// last-level cache this lab expects (nvbench and Triton's do_bench do the same).
pub const CACHE_FLUSH_BYTES: u64 = 256 << 20;

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

/// Bytes per named buffer role (`table`, `weights`, `kv-cache`, ...), in the
/// order the op names its buffers. In a results file each role is a field of
/// its own beside the totals, as files before roles were named had them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleBytes(pub Vec<(String, u64)>);

impl RoleBytes {
    /// Roles and their bytes, in this order.
    pub fn of(parts: &[(&str, u64)]) -> Self {
        RoleBytes(parts.iter().map(|&(r, b)| (r.to_string(), b)).collect())
    }

    /// The bytes of `role` (0 when the op has no such buffer).
    pub fn get(&self, role: &str) -> u64 {
        self.0
            .iter()
            .filter(|(r, _)| r == role)
            .map(|(_, b)| b)
            .sum()
    }

    /// Adds `bytes` to `role`, which joins the end of the list when new.
    pub fn add(&mut self, role: &str, bytes: u64) {
        match self.0.iter_mut().find(|(r, _)| r == role) {
            Some((_, b)) => *b += bytes,
            None => self.0.push((role.to_string(), bytes)),
        }
    }

    /// Every role's bytes together.
    pub fn sum(&self) -> u64 {
        self.0.iter().map(|(_, b)| b).sum()
    }
}

/// Serialises `roles` and then `rest` (fields that are not roles) as one map.
pub(crate) fn serialize_roles<S: serde::Serializer>(
    s: S,
    roles: &RoleBytes,
    rest: &[(&str, Option<u64>)],
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(roles.0.len() + rest.len()))?;
    for (role, bytes) in &roles.0 {
        map.serialize_entry(role, bytes)?;
    }
    for (k, v) in rest {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

/// Reads a map of roles and the fields `rest` names (absent ones `None`), the
/// roles in the file's order.
pub(crate) fn deserialize_roles<'de, D: serde::Deserializer<'de>, const N: usize>(
    d: D,
    rest: [&'static str; N],
) -> std::result::Result<(RoleBytes, [Option<u64>; N]), D::Error> {
    struct Visit<const N: usize>([&'static str; N]);
    impl<'de, const N: usize> serde::de::Visitor<'de> for Visit<N> {
        type Value = (RoleBytes, [Option<u64>; N]);
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of buffer roles to bytes")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut roles = RoleBytes::default();
            let mut rest = [None; N];
            while let Some(key) = map.next_key::<String>()? {
                let value: Option<u64> = map.next_value()?;
                match self.0.iter().position(|k| *k == key) {
                    Some(i) => rest[i] = value,
                    None => roles.0.push((key, value.unwrap_or(0))),
                }
            }
            Ok((roles, rest))
        }
    }
    d.deserialize_map(Visit(rest))
}

/// Bytes a prepared kernel actually holds, per buffer role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// Each of the op's buffers by role (token ids, a table, activations,
    /// weights, the output, ...).
    pub parts: RoleBytes,
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
    pub allocator_allocated: Option<u64>,
    /// Bytes the device's allocator holds in memory blocks, used or not.
    pub allocator_reserved: Option<u64>,
}

impl MemoryUse {
    /// Fills in `total` from the parts.
    pub fn summed(mut self) -> Self {
        self.total = self.parts.sum() + self.other;
        self
    }
}

impl Serialize for MemoryUse {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_roles(
            s,
            &self.parts,
            &[
                ("other", Some(self.other)),
                ("total", Some(self.total)),
                ("allocator_allocated", self.allocator_allocated),
                ("allocator_reserved", self.allocator_reserved),
            ],
        )
    }
}

impl<'de> Deserialize<'de> for MemoryUse {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (parts, [other, total, allocated, reserved]) = deserialize_roles(
            d,
            [
                "other",
                "total",
                "allocator_allocated",
                "allocator_reserved",
            ],
        )?;
        let other = other.unwrap_or(0);
        Ok(MemoryUse {
            total: total.unwrap_or(parts.sum() + other),
            parts,
            other,
            allocator_allocated: allocated,
            allocator_reserved: reserved,
        })
    }
}

/// How a kernel accumulates its dot products (which sets the tolerance it is
/// verified against).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Accumulation {
    /// In f32 (every CPU kernel, and GPU kernels unless asked otherwise).
    #[default]
    F32,
    /// In f16 (GPU kernels with `--accumulate f16`, FP16 points only).
    F16,
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
    /// activations; the model's data stays loaded), run, read the output back.
    fn run_phases(&mut self) -> Result<Phases>;
    /// Nanoseconds the model's data (table, weight) took to load when the op
    /// was prepared: a one-time cost, not a request's.
    fn model_load_ns(&self) -> u64 {
        0
    }
    /// The output of the last run as f32, row-major in the op's output shape
    /// (outside any timing).
    fn output(&mut self) -> Result<Vec<f32>>;
    /// Bytes this kernel holds, measured from its allocations.
    fn memory(&self) -> MemoryUse;
    /// Evicts the op's data from caches (for cold-cache samples).
    fn flush_caches(&mut self) -> Result<()>;
    /// How the kernel accumulates dot products (sets the verification tolerance).
    fn accumulation(&self) -> Accumulation {
        Accumulation::F32
    }
    /// The rows of each buffer the output comes back in, in order, where the
    /// backend splits it (a GPU's row chunks: one binding each); empty where
    /// it holds the output whole.
    fn output_chunks(&self) -> Vec<u32> {
        Vec::new()
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

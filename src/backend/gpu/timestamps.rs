//! Device time from timestamp queries, checked before it is believed.
//!
//! A compute pass writes a start and an end timestamp; a command buffer of its
//! own, submitted right after the pass's, resolves them into a buffer and copies
//! that into a readable one. Resolving in the pass's own encoder can read zeros
//! on Vulkan (gfx-rs/wgpu#6406), so it is never done there.
//!
//! Real drivers hand back intervals that cannot be true: an unwritten slot
//! resolves to 0 (wgpu#9664, Metal on macOS 26: wgpu#9414), timestamps only order
//! "after" so an end can precede its start (gpuweb#3952), counters narrower than
//! 64 bits wrap, and a device interval longer than the host's wall time around
//! the same submission is impossible. [`interval`] names each case as a
//! [`TimestampFault`]; the sample then falls back to wall time and the record
//! counts the fallbacks by reason.

use std::time::Instant;

use super::context::GpuContext;
use crate::error::Result;
use crate::prepared_op::Sample;
pub use crate::prepared_op::TimestampFault;

/// The narrowest timestamp counter a device may have, bits. Vulkan requires
/// 36 valid bits (`timestampValidBits`), Intel GPUs have that many, Metal and
/// D3D12 have 64; 32 leaves a margin.
const MIN_COUNTER_BITS: u32 = 32;

/// The device interval in nanoseconds between raw ticks `start` and `end`,
/// given the queue's period and the host wall time `wall_ns` of the same
/// submission, or the reason it cannot be believed.
pub fn interval(
    start: u64,
    end: u64,
    period_ns: f32,
    wall_ns: u64,
) -> std::result::Result<u64, TimestampFault> {
    if period_ns.is_nan() || period_ns <= 0.0 || period_ns.is_infinite() {
        return Err(TimestampFault::NoPeriod);
    }
    if start == 0 || end == 0 || start == end {
        return Err(TimestampFault::Zero);
    }
    if end < start {
        // Reordering moves an end back by a little, to near its start; a wrap
        // brings it round to a small count. A counter holds the start, so it
        // is at least as wide as the start's own bits (and at least
        // MIN_COUNTER_BITS): if wrapping at that width makes the interval fit
        // inside the wall time, a wrap explains the pair, and nothing else can.
        let bits = (u64::BITS - start.leading_zeros()).max(MIN_COUNTER_BITS);
        let ticks = (1u128 << bits) - start as u128 + end as u128;
        return Err(if ticks as f64 * period_ns as f64 <= wall_ns as f64 {
            TimestampFault::Wrapped
        } else {
            TimestampFault::Negative
        });
    }
    let ns = ((end - start) as f64 * period_ns as f64).round();
    if ns < 1.0 {
        return Err(TimestampFault::Zero);
    }
    if ns > wall_ns as f64 {
        return Err(TimestampFault::ExceedsWall);
    }
    Ok(ns as u64)
}

/// The query set and buffers for one begin/end pair per pass.
pub struct TimestampQueries {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    period_ns: f32,
}

/// Bytes held by the query buffers (for the memory report).
pub const QUERY_BYTES: u64 = 2 * 2 * 8;

impl TimestampQueries {
    /// Creates the queries, whose ticks are `period_ns` nanoseconds each;
    /// call only when the device has TIMESTAMP_QUERY.
    pub fn new(device: &wgpu::Device, period_ns: f32) -> Self {
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("pass timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let buffer = |label, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage,
                mapped_at_creation: false,
            })
        };
        TimestampQueries {
            set,
            resolve: buffer(
                "timestamp resolve",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            readback: buffer(
                "timestamp readback",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            period_ns,
        }
    }

    /// The writes to attach to the pass being timed.
    pub fn pass_writes(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }
    }

    /// The resolve and the copy into the readable buffer, in a command buffer
    /// of their own (wgpu#6406).
    fn resolve_commands(&self, device: &wgpu::Device) -> wgpu::CommandBuffer {
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("timestamp resolve"),
        });
        encoder.resolve_query_set(&self.set, 0..2, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, 16);
        encoder.finish()
    }

    /// Reads the resolved ticks once the submission is done.
    fn read_ticks(&self, device: &wgpu::Device) -> Result<(u64, u64)> {
        let raw = super::readback::map_read(device, &self.readback, 16)?;
        // The bytes are not u64-aligned in a Vec<u8>: read them unaligned.
        Ok((
            bytemuck::pod_read_unaligned(&raw[0..8]),
            bytemuck::pod_read_unaligned(&raw[8..16]),
        ))
    }
}

/// Submits `commands` (whose pass wrote `queries`' timestamps, if any), then
/// the resolve in a submission of its own, waits for both, and checks the
/// interval against the wall time from the first submit to completion: the
/// sample is device time when the interval is believable, else wall time with
/// the reason.
pub fn submit_timed(
    ctx: &GpuContext,
    queries: Option<&TimestampQueries>,
    commands: wgpu::CommandBuffer,
) -> Result<Sample> {
    let resolve = queries.map(|q| q.resolve_commands(&ctx.device));
    let start = Instant::now();
    ctx.queue.submit([commands]);
    if let Some(r) = resolve {
        ctx.queue.submit([r]);
    }
    ctx.wait()?;
    let wall_ns = start.elapsed().as_nanos() as u64;
    let device = match queries {
        Some(q) => {
            let (s, e) = q.read_ticks(&ctx.device)?;
            Some(interval(s, e, q.period_ns, wall_ns))
        }
        None => None,
    };
    Ok(Sample::timed(wall_ns, device))
}

#[cfg(test)]
mod tests {
    use super::{interval, Sample, TimestampFault as F};

    const WALL: u64 = 1_000_000;

    #[test]
    fn scales_by_period() {
        assert_eq!(interval(100, 1100, 1.0, WALL), Ok(1000));
        assert_eq!(interval(1, 1001, 41.666, WALL), Ok(41666));
        // The same interval anywhere in the counter's range, high bits set.
        assert_eq!(interval(u64::MAX - 1000, u64::MAX - 10, 1.0, WALL), Ok(990));
    }

    #[test]
    fn an_interval_equal_to_the_wall_time_is_kept() {
        assert_eq!(interval(10, 10 + WALL, 1.0, WALL), Ok(WALL));
        assert_eq!(interval(10, 11 + WALL, 1.0, WALL), Err(F::ExceedsWall));
    }

    #[test]
    fn unwritten_slots_read_zero() {
        assert_eq!(interval(0, 500, 1.0, WALL), Err(F::Zero));
        assert_eq!(interval(500, 0, 1.0, WALL), Err(F::Zero));
        assert_eq!(interval(0, 0, 1.0, WALL), Err(F::Zero));
        assert_eq!(interval(7, 7, 1.0, WALL), Err(F::Zero));
        // Sub-nanosecond after scaling is no interval either; one nanosecond is.
        assert_eq!(interval(7, 8, 0.25, WALL), Err(F::Zero));
        assert_eq!(interval(7, 8, 1.0, WALL), Ok(1));
    }

    #[test]
    fn reordered_ends_are_negative_and_wraps_are_wrapped() {
        assert_eq!(interval(1000, 900, 1.0, WALL), Err(F::Negative));
        // Counters of every width a device has (Vulkan's 36 valid bits on
        // Intel, 48, 64) and 32, each wrapping 80 ticks into the interval:
        // the end is tiny, the start just under 2^bits.
        for bits in [32, 36, 40, 48, 63, 64] {
            let top = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            assert_eq!(interval(top - 49, 29, 1.0, WALL), Err(F::Wrapped), "{bits}");
            // Reordered near the same place: the end just before the start.
            assert_eq!(
                interval(top - 49, top - 80, 1.0, WALL),
                Err(F::Negative),
                "{bits}"
            );
        }
        // A reordered pair that straddles a power of two is no wrap.
        assert_eq!(
            interval((1 << 36) + 5, (1 << 36) - 5, 1.0, WALL),
            Err(F::Negative)
        );
        // A wrap that would make the interval longer than the wall time (at
        // 36 bits: 1000 + 10^6 ticks) is no wrap either.
        assert_eq!(
            interval((1 << 36) - 1000, WALL, 1.0, WALL),
            Err(F::Negative)
        );
        assert_eq!(
            interval((1 << 36) - 1000, WALL - 1000, 1.0, WALL),
            Err(F::Wrapped)
        );
        // The ticks scaled by the period, as for a believable interval: 80
        // ticks of 52 ns fit in 5 us of wall time, not in 4.
        assert_eq!(interval((1 << 36) - 50, 30, 52.0, 5_000), Err(F::Wrapped));
        assert_eq!(interval((1 << 36) - 50, 30, 52.0, 4_000), Err(F::Negative));
        // A counter narrower than 32 bits is not believed: small values
        // going backwards are reordering.
        assert_eq!(interval((1 << 20) - 50, 30, 1.0, WALL), Err(F::Negative));
    }

    #[test]
    fn longer_than_the_wall_is_impossible() {
        assert_eq!(interval(1, 2_000_001, 1.0, WALL), Err(F::ExceedsWall));
        // Absurd: a period that scales a small tick count past the wall time.
        assert_eq!(interval(1, 1001, 1e4, WALL), Err(F::ExceedsWall));
    }

    #[test]
    fn a_missing_period_is_named() {
        for p in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            assert_eq!(interval(1, 100, p, WALL), Err(F::NoPeriod), "{p}");
        }
    }

    #[test]
    fn a_stream_of_ticks_becomes_samples_with_reasons() {
        // (start, end, wall): a good pair, an unwritten slot, a reordered end,
        // and an interval longer than the submission around it.
        let stream = [
            (100, 600, 1000),
            (0, 600, 1000),
            (600, 100, 1000),
            (100, 5100, 1000),
        ];
        let samples: Vec<_> = stream
            .iter()
            .map(|&(s, e, wall)| Sample::timed(wall, Some(interval(s, e, 1.0, wall))))
            .collect();
        assert_eq!(samples[0].device_ns, Some(500));
        assert_eq!(samples[0].fault, None);
        let faults: Vec<_> = samples[1..].iter().map(|s| s.fault).collect();
        assert_eq!(
            faults,
            [Some(F::Zero), Some(F::Negative), Some(F::ExceedsWall)]
        );
        assert!(samples[1..]
            .iter()
            .all(|s| s.device_ns.is_none() && s.best_ns() == 1000));
        // No timestamps at all: a wall sample, and no fault to count.
        let plain = Sample::timed(7, None);
        assert_eq!(
            (plain.device_ns, plain.fault, plain.best_ns()),
            (None, None, 7)
        );
    }
}

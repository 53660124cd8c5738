//! Device time from timestamp queries: a start and an end timestamp written by
//! the compute pass, resolved into a buffer, read back, scaled by the queue's
//! timestamp period. Subtraction is wrap-safe; a zero or "negative" interval
//! (seen on drivers that reset or reorder counters) is reported as unusable, so
//! the caller falls back to wall time for that sample.

use crate::error::Result;

/// Converts a pair of raw ticks to nanoseconds, or `None` when the interval is
/// not usable (zero, or negative once wrapping is taken into account).
///
/// Counters are 64-bit and may wrap: `end.wrapping_sub(start)` is the elapsed
/// count whenever less than 2^63 ticks passed. A difference of 2^63 or more can
/// only mean `end` was written before `start`: a broken interval.
pub fn ticks_to_ns(start: u64, end: u64, period_ns: f32) -> Option<u64> {
    let ticks = end.wrapping_sub(start);
    if ticks == 0 || ticks >= 1 << 63 || period_ns.is_nan() || period_ns <= 0.0 {
        return None;
    }
    let ns = (ticks as f64 * period_ns as f64).round();
    (ns >= 1.0).then_some(ns as u64)
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
    /// Creates the queries; call only when the device has TIMESTAMP_QUERY.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
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
            period_ns: queue.get_timestamp_period(),
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

    /// Records the resolve and the copy into the readable buffer, after the pass.
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.resolve_query_set(&self.set, 0..2, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, 16);
    }

    /// Reads the resolved pair once the submission is done; `None` if unusable.
    pub fn read_ns(&self, device: &wgpu::Device) -> Result<Option<u64>> {
        let raw = super::readback::map_read(device, &self.readback, 16)?;
        // The bytes are not u64-aligned in a Vec<u8>: read them unaligned.
        let start: u64 = bytemuck::pod_read_unaligned(&raw[0..8]);
        let end: u64 = bytemuck::pod_read_unaligned(&raw[8..16]);
        Ok(ticks_to_ns(start, end, self.period_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::ticks_to_ns;

    #[test]
    fn scales_by_period() {
        assert_eq!(ticks_to_ns(100, 1100, 1.0), Some(1000));
        assert_eq!(ticks_to_ns(0, 1000, 41.666), Some(41666));
    }

    #[test]
    fn survives_wrap() {
        assert_eq!(ticks_to_ns(u64::MAX - 9, 10, 1.0), Some(20));
    }

    #[test]
    fn zero_and_negative_intervals_are_unusable() {
        assert_eq!(ticks_to_ns(5, 5, 1.0), None);
        assert_eq!(ticks_to_ns(10, 5, 1.0), None);
        assert_eq!(ticks_to_ns(0, 10, 0.0), None);
    }
}

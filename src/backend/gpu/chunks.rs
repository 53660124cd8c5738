//! Chunk planning: how the rows of a point are split so that every per-chunk
//! buffer fits one storage binding (lavapipe allows 128 MiB) and every dispatch
//! fits the device's workgroup grid. Buffers that cannot be split (the table,
//! the weight) must fit whole.

use super::shaders::{MatmulVariant, StorageMode};
use crate::error::{LabError, Result};
use crate::workload::{Op, Workload};

/// How the activation rows of a point are split to fit the binding limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkPlan {
    /// Rows in every chunk but possibly the last.
    pub rows_per_chunk: u64,
    /// Number of chunks.
    pub chunks: u64,
}

/// Bytes a buffer of `elems` elements takes in `mode`, rounded up to whole
/// 4-byte words (the copy and binding granularity).
pub fn buffer_bytes(mode: StorageMode, elems: u64) -> u64 {
    (elems * mode.element_bytes() as u64).div_ceil(4) * 4
}

/// Splits the rows of `work` so that every per-chunk buffer fits `limit` bytes
/// and every dispatch fits `max_groups` workgroups per dimension.
pub fn plan_chunks(
    work: &Workload,
    mode: StorageMode,
    limit: u64,
    max_groups: u32,
) -> Result<ChunkPlan> {
    let (m, k, n) = work.mkn();
    let e = mode.element_bytes() as u64;
    let ty = mode.name();
    let whole = |what: String, needed: u64| {
        if needed > limit {
            Err(LabError::Limit {
                what,
                needed,
                limit_name: "max_storage_buffer_binding_size",
                limit,
            })
        } else {
            Ok(())
        }
    };
    if work.op.uses_table() {
        whole(
            format!("embedding table [{} x {k} {ty}]", work.shape.vocab),
            buffer_bytes(mode, work.shape.vocab as u64 * k),
        )?;
    }
    if work.op.uses_weight() {
        whole(
            format!("weight [{k} x {n} {ty}]"),
            buffer_bytes(mode, k * n),
        )?;
    }
    let stride = mode.padded_stride(n as u32) as u64;
    let mut row_bytes = stride * e;
    if work.op.uses_table() {
        row_bytes = row_bytes.max(4);
    }
    if work.op != Op::Embedding {
        row_bytes = row_bytes.max(mode.padded_stride(k as u32) as u64 * e);
    }
    let mut rows = limit / row_bytes;
    if rows == 0 {
        return Err(LabError::Limit {
            what: format!("one activation row [{k} {ty}]"),
            needed: row_bytes,
            limit_name: "max_storage_buffer_binding_size",
            limit,
        });
    }
    if work.op.uses_weight() {
        // The matmul grid has ceil(rows / tile) workgroups along y; plan for
        // the smallest tile of any variant.
        let tile = MatmulVariant::CANDIDATES
            .iter()
            .map(|v| v.tile().0)
            .min()
            .unwrap_or(1);
        rows = rows.min(tile as u64 * max_groups as u64);
    }
    let chunks = m.div_ceil(rows);
    // Even out the chunks rather than leave a small remainder.
    Ok(ChunkPlan {
        rows_per_chunk: m.div_ceil(chunks),
        chunks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Precision, Shape};

    fn work(op: Op, b: u32, s: u32, d: u32, v: u32) -> Workload {
        Workload {
            op,
            precision: Precision::F32,
            shape: Shape::new(b, s, d, v).unwrap(),
        }
    }

    #[test]
    fn seed_largest_point_splits_under_lavapipe_limit() {
        let w = work(Op::Matmul, 64, 1024, 1024, 1);
        let plan = plan_chunks(&w, StorageMode::F32, 128 << 20, 65535).unwrap();
        assert_eq!(plan.chunks, 2);
        assert_eq!(plan.rows_per_chunk, 32768);
    }

    #[test]
    fn small_points_are_one_chunk() {
        let w = work(Op::EmbedProject, 3, 77, 100, 1000);
        let plan = plan_chunks(&w, StorageMode::PackedF16, 128 << 20, 65535).unwrap();
        assert_eq!(
            plan,
            ChunkPlan {
                rows_per_chunk: 231,
                chunks: 1
            }
        );
    }

    #[test]
    fn buffers_round_up_to_whole_words() {
        assert_eq!(buffer_bytes(StorageMode::F32, 3), 12);
        assert_eq!(buffer_bytes(StorageMode::F16, 3), 8);
        assert_eq!(buffer_bytes(StorageMode::PackedF16, 4), 8);
    }

    #[test]
    fn a_table_over_the_limit_names_the_numbers() {
        let w = work(Op::Embedding, 1, 1, 1024, 32000);
        let err = plan_chunks(&w, StorageMode::F32, 64 << 20, 65535)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("embedding table")
                && err.contains("131072000")
                && err.contains("67108864"),
            "{err}"
        );
    }
}

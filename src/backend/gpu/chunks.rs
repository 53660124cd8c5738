//! Chunk planning: how a point is split so that every buffer fits one storage
//! binding (lavapipe allows 128 MiB) and every dispatch fits the device's
//! workgroup grid: the activation and output rows into row chunks, the
//! embedding table into blocks of rows (one gather dispatch each, skipping the
//! ids held elsewhere), the weight into blocks of columns (one matmul dispatch
//! each, writing its columns of y).

use super::shaders::{MatmulVariant, StorageMode};
use crate::error::{LabError, Result};
use crate::workload::{Op, Workload};

/// How a point is split to fit the binding limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkPlan {
    /// Rows in every chunk but possibly the last.
    pub rows_per_chunk: u64,
    /// Number of chunks.
    pub chunks: u64,
    /// Table rows in every table block but possibly the last (the vocabulary
    /// when the table fits one binding).
    pub table_block_rows: u64,
    /// Weight columns in every column block but possibly the last (N when the
    /// weight fits one binding); a multiple of 4 when there are several.
    pub weight_block_cols: u64,
}

impl ChunkPlan {
    /// A plan of one chunk and whole buffers for an `m`-row output.
    pub fn whole(work: &Workload) -> Self {
        let (m, _, n) = work.mkn();
        ChunkPlan {
            rows_per_chunk: m,
            chunks: 1,
            table_block_rows: work.shape.vocab as u64,
            weight_block_cols: n,
        }
    }

    /// The table blocks: (first row, rows) each.
    pub fn table_blocks(&self, vocab: u64) -> Vec<(u64, u64)> {
        blocks(vocab, self.table_block_rows)
    }

    /// The weight's column blocks: (first column, columns) each.
    pub fn weight_blocks(&self, n: u64) -> Vec<(u64, u64)> {
        blocks(n, self.weight_block_cols)
    }
}

/// `total` split into runs of `size` (the last may be shorter).
fn blocks(total: u64, size: u64) -> Vec<(u64, u64)> {
    let size = size.max(1);
    (0..total.div_ceil(size))
        .map(|i| (i * size, size.min(total - i * size)))
        .collect()
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
    let too_big = |what: String, needed: u64| LabError::Limit {
        what,
        needed,
        limit_name: "max_storage_buffer_binding_size",
        limit,
    };
    let vocab = work.shape.vocab as u64;
    let mut table_block_rows = vocab;
    if work.op.uses_table() && buffer_bytes(mode, vocab * k) > limit {
        table_block_rows = limit / (k * e);
        if table_block_rows == 0 {
            return Err(too_big(
                format!("one embedding table row [{k} {ty}]"),
                buffer_bytes(mode, k),
            ));
        }
    }
    let mut weight_block_cols = n;
    if work.op.uses_weight() && mode.weight_bytes(k, n) > limit {
        // Whole 4-column groups, so packed words and vec4 loads never straddle
        // blocks (and an INT8 block's values fill whole words).
        let per_four = mode.weight_bytes(k, 4);
        weight_block_cols = limit / per_four * 4;
        if weight_block_cols == 0 {
            return Err(too_big(
                format!("four weight columns [{k} x 4 {ty}]"),
                per_four,
            ));
        }
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
        table_block_rows,
        weight_block_cols,
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
            data: Default::default(),
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
        assert_eq!(plan, ChunkPlan::whole(&w));
        assert_eq!(plan.rows_per_chunk, 231);
    }

    #[test]
    fn buffers_round_up_to_whole_words() {
        assert_eq!(buffer_bytes(StorageMode::F32, 3), 12);
        assert_eq!(buffer_bytes(StorageMode::F16, 3), 8);
        assert_eq!(buffer_bytes(StorageMode::PackedF16, 4), 8);
    }

    #[test]
    fn a_table_over_the_limit_is_split_into_row_blocks() {
        // GPT-2 XL's table in f32: 50257 x 1600, 322 MB, under a 128 MiB binding.
        let w = work(Op::Embedding, 1, 5, 1600, 50257);
        let plan = plan_chunks(&w, StorageMode::F32, 128 << 20, 65535).unwrap();
        let blocks = plan.table_blocks(50257);
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0], (0, 20971));
        assert_eq!(blocks.iter().map(|b| b.1).sum::<u64>(), 50257);
        for (_, rows) in &blocks {
            assert!(buffer_bytes(StorageMode::F32, rows * 1600) <= 128 << 20);
        }
    }

    #[test]
    fn a_weight_over_the_limit_is_split_into_column_blocks_of_whole_words() {
        // Llama-3's LM head in f16: 4096 x 128256, 1.05 GB.
        let mut w = work(Op::Matmul, 1, 1, 4096, 1);
        w.precision = Precision::F16;
        w.shape = Shape::rect(1, 1, 4096, 128256, 1).unwrap();
        let plan = plan_chunks(&w, StorageMode::F16, 128 << 20, 65535).unwrap();
        let blocks = plan.weight_blocks(128256);
        assert_eq!(blocks.len(), 8);
        assert!(blocks.iter().all(|b| b.0 % 4 == 0 && b.1 % 4 == 0));
        assert_eq!(blocks.iter().map(|b| b.1).sum::<u64>(), 128256);
        for (_, cols) in &blocks {
            assert!(buffer_bytes(StorageMode::F16, 4096 * cols) <= 128 << 20);
        }
    }

    #[test]
    fn a_row_that_cannot_fit_names_the_numbers() {
        let w = work(Op::Embedding, 1, 1, 1024, 32000);
        let err = plan_chunks(&w, StorageMode::F32, 1024, 65535)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("one embedding table row") && err.contains("4096") && err.contains("1024"),
            "{err}"
        );
    }

    /// For any row count: the chunks cover every row once, no chunk's buffers
    /// pass the limit, and no chunk is needless (a planner that rounds the
    /// chunk count down makes each chunk too big for the binding).
    #[test]
    fn chunks_cover_every_row_within_the_limit() {
        let limit = 8 << 10;
        for m in [1u32, 2, 50, 51, 52, 101, 200, 201, 203, 1000, 4099] {
            for p in [Precision::F32, Precision::F16] {
                let mut w = work(Op::Matmul, 1, m, 37, 1);
                w.precision = p;
                let mode = StorageMode::for_precision(p, true, false);
                let plan = plan_chunks(&w, mode, limit, 65535).unwrap();
                let (rows, chunks) = (plan.rows_per_chunk, plan.chunks);
                let m = m as u64;
                assert!(rows * chunks >= m, "m {m}: {plan:?}");
                assert!((chunks - 1) * rows < m, "m {m}: an empty chunk: {plan:?}");
                let row_bytes = mode.padded_stride(37) as u64 * mode.element_bytes() as u64;
                assert!(
                    rows * row_bytes <= limit,
                    "m {m}: {rows} rows of {row_bytes} B > {limit}"
                );
                assert_eq!(chunks, m.div_ceil(limit / row_bytes), "m {m}: {plan:?}");
            }
        }
    }

    #[test]
    fn blocks_cover_the_total_once() {
        assert_eq!(blocks(10, 4), vec![(0, 4), (4, 4), (8, 2)]);
        assert_eq!(blocks(8, 8), vec![(0, 8)]);
    }
}

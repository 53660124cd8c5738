//! Splitting a point so that every buffer fits one storage binding (lavapipe
//! allows 128 MiB) and every dispatch fits the device's workgroup grid: rows
//! of activations and outputs into row chunks, a large fixed buffer (a table,
//! a weight) into blocks. Which buffers an op has and how a block is
//! dispatched is the op's; the arithmetic of splitting is here, once.

use crate::error::{LabError, Result};

/// Rows split into chunks of at most `rows_per_chunk` (the last may be shorter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowChunks {
    /// Rows in every chunk but possibly the last.
    pub rows_per_chunk: u64,
    /// Number of chunks.
    pub chunks: u64,
}

impl RowChunks {
    /// One chunk of all `m` rows.
    pub fn whole(m: u64) -> Self {
        RowChunks {
            rows_per_chunk: m,
            chunks: 1,
        }
    }

    /// The chunks of `m` rows: (first row, rows) each.
    pub fn of(&self, m: u64) -> Vec<(u64, u64)> {
        blocks(m, self.rows_per_chunk)
    }
}

/// `total` split into runs of `size` (the last may be shorter).
pub fn blocks(total: u64, size: u64) -> Vec<(u64, u64)> {
    let size = size.max(1);
    (0..total.div_ceil(size))
        .map(|i| (i * size, size.min(total - i * size)))
        .collect()
}

/// The error of a buffer that cannot fit one binding even split as far as
/// it splits.
pub fn too_big(what: String, needed: u64, limit: u64) -> LabError {
    LabError::Limit {
        what,
        needed,
        limit_name: "max_storage_buffer_binding_size",
        limit,
    }
}

/// Splits `m` rows so that a chunk's rows, `row_bytes` each in its largest
/// per-row buffer, fit `limit` bytes, and no chunk has more than `max_rows`
/// (a dispatch's grid); the chunks are evened out rather than leave a small
/// remainder. `row` names one row for the error when a single row is too big.
pub fn split_rows(
    m: u64,
    row_bytes: u64,
    limit: u64,
    max_rows: u64,
    row: impl FnOnce() -> String,
) -> Result<RowChunks> {
    let rows = limit / row_bytes.max(1);
    if rows == 0 {
        return Err(too_big(row(), row_bytes, limit));
    }
    let rows = rows.min(max_rows.max(1));
    let chunks = m.div_ceil(rows);
    Ok(RowChunks {
        rows_per_chunk: m.div_ceil(chunks),
        chunks,
    })
}

/// Units (rows of a table, columns of a weight) per block of a fixed buffer
/// of `total` units, `unit_bytes` each, so that a block fits `limit`: all of
/// them when the whole fits, else as many whole groups of `granule` units
/// (`group_bytes` each) as fit. `group` names one group for the error when
/// a single one is too big.
pub fn block_units(
    total: u64,
    whole_bytes: u64,
    group_bytes: u64,
    granule: u64,
    limit: u64,
    group: impl FnOnce() -> String,
) -> Result<u64> {
    if whole_bytes <= limit {
        return Ok(total);
    }
    let units = limit / group_bytes.max(1) * granule;
    if units == 0 {
        return Err(too_big(group(), group_bytes, limit));
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For any row count: the chunks cover every row once, no chunk passes
    /// the limit, and no chunk is needless (a planner that rounds the chunk
    /// count down makes each chunk too big for the binding).
    #[test]
    fn chunks_cover_every_row_within_the_limit() {
        let limit = 8 << 10;
        for m in [1u64, 2, 50, 51, 52, 101, 200, 201, 203, 1000, 4099] {
            for row_bytes in [37 * 4, 38 * 2] {
                let plan = split_rows(m, row_bytes, limit, u64::MAX, String::new).unwrap();
                let (rows, chunks) = (plan.rows_per_chunk, plan.chunks);
                assert!(rows * chunks >= m, "m {m}: {plan:?}");
                assert!((chunks - 1) * rows < m, "m {m}: an empty chunk: {plan:?}");
                assert!(
                    rows * row_bytes <= limit,
                    "m {m}: {rows} rows of {row_bytes} B"
                );
                assert_eq!(chunks, m.div_ceil(limit / row_bytes), "m {m}: {plan:?}");
                let covered: u64 = plan.of(m).iter().map(|c| c.1).sum();
                assert_eq!(covered, m);
            }
        }
        // The grid's limit caps a chunk however small its rows.
        let capped = split_rows(1000, 4, 1 << 20, 300, String::new).unwrap();
        assert_eq!((capped.chunks, capped.rows_per_chunk), (4, 250));
    }

    #[test]
    fn a_row_or_group_that_cannot_fit_names_the_numbers() {
        let err = split_rows(5, 4096, 1024, 10, || "one row [1024 f32]".into())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("one row [1024 f32]") && err.contains("4096") && err.contains("1024"),
            "{err}"
        );
        let err = block_units(100, 4000, 40, 4, 39, || "four columns".into())
            .unwrap_err()
            .to_string();
        assert!(err.contains("four columns") && err.contains("40"), "{err}");
        assert_eq!(
            block_units(100, 4000, 40, 4, 4000, String::new).unwrap(),
            100
        );
        assert_eq!(
            block_units(100, 4000, 40, 4, 1000, String::new).unwrap(),
            100
        );
        assert_eq!(block_units(100, 4000, 40, 4, 999, String::new).unwrap(), 96);
    }

    #[test]
    fn blocks_cover_the_total_once() {
        assert_eq!(blocks(10, 4), vec![(0, 4), (4, 4), (8, 2)]);
        assert_eq!(blocks(8, 8), vec![(0, 8)]);
        assert_eq!(RowChunks::whole(7).of(7), vec![(0, 7)]);
    }
}

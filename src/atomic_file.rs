//! Atomic file writes: a temporary file beside the target, then a rename, so a
//! reader never sees half a file. Used by the results file, the reports and the
//! tuning cache alike.

use std::path::Path;

use crate::error::{LabError, Result};

/// Writes `bytes` to `path` atomically, naming `path` in any error.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let io = |source| LabError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

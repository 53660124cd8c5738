//! The library's typed errors. Each renders as one line that names what is wrong
//! and the value or limit involved; the binary prints it and exits non-zero.

use std::path::PathBuf;

/// Everything that can go wrong inside the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A user-supplied value is not acceptable.
    #[error("invalid {field} `{value}`: {reason}")]
    Invalid {
        /// Which field or flag.
        field: String,
        /// The value given.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// No GPU adapter could be found or matched.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    /// The device cannot hold a buffer the point needs, even split.
    #[error("{what} needs {needed} bytes, over the device limit {limit_name} = {limit} bytes")]
    Limit {
        /// The buffer that does not fit.
        what: String,
        /// Bytes it needs.
        needed: u64,
        /// Which limit.
        limit_name: &'static str,
        /// The limit's value.
        limit: u64,
    },
    /// The backend cannot run this point at all (a missing feature, say).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The GPU reported an error (validation, out of memory, lost device).
    #[error("GPU error: {0}")]
    Gpu(String),
    /// The GPU device was lost (driver reset, removal, or destruction); the
    /// backend must be reopened before it can run anything again.
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl LabError {
    /// Shorthand for [`LabError::Invalid`].
    pub fn invalid(field: &str, value: &str, reason: &str) -> Self {
        LabError::Invalid {
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// The lab's result type.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

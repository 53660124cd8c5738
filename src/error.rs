//! The library's typed errors. Each renders as one line that names what is wrong
//! and the value or limit involved; the binary prints it and exits non-zero.
//! A TOML file the lab reads fails as one line too ([`toml_error`]).

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

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A TOML file's parse error in one line: `what` `origin:line:col`, the
/// parser's words, and the offending line itself (which names the key where
/// the parser's message may not).
pub fn toml_error(what: &str, text: &str, origin: &str, e: &toml::de::Error) -> LabError {
    let at = e.span().map(|s| line_col(text, s.start));
    let (place, line) = at.map_or((String::new(), String::new()), |(l, c)| {
        let line: String = text
            .lines()
            .nth(l - 1)
            .unwrap_or("")
            .trim()
            .chars()
            .take(60)
            .collect();
        (format!(":{l}:{c}"), format!(" (line: {line})"))
    });
    LabError::invalid(
        what,
        &format!("{origin}{place}"),
        &format!("{}{line}", e.message().trim()),
    )
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn positions_are_as_a_reader_counts_them() {
        assert_eq!(line_col("ab\ncde\nf", 5), (2, 3));
        assert_eq!(line_col("ab\ncde\nf", 0), (1, 1));
        assert_eq!(line_col("ab\ncde\nf", 99), (3, 2));
    }
}

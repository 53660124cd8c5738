//! The gather's kernels: which copy a row takes ([`GatherVariant`]: 16-byte
//! words, 4-byte words, or element pairs for odd f16 rows) and its WGSL from
//! `shaders/embedding/`. The word kernels copy bits and never need the
//! element type; only the pairs kernel reads through the storage accessors.

use crate::backend::gpu::storage::{read_accessor, write_accessor, StorageMode};

/// The element-pairs gather for `mode` (through the storage accessors).
fn pairs_source(mode: StorageMode) -> String {
    format!(
        "{}{}{}\n{}",
        mode.enable(),
        read_accessor(mode, "table", 0),
        write_accessor(mode, "out", 2),
        include_str!("../../../shaders/embedding/pairs.wgsl")
    )
}

/// How the gather copies a row: chosen from the row's size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GatherVariant {
    /// Element pairs through the storage accessors (any row; needed for odd f16 rows).
    Pairs,
    /// Whole 4-byte words, bit for bit (rows of a multiple of 4 bytes).
    Words,
    /// Whole 16-byte `vec4<u32>` words (rows of a multiple of 16 bytes).
    Vec4,
}

impl GatherVariant {
    /// The widest copy a row of `dim` elements in `mode` allows.
    pub fn for_row(mode: StorageMode, dim: u32) -> Self {
        let bytes = dim as u64 * if mode == StorageMode::F32 { 4 } else { 2 };
        if bytes.is_multiple_of(16) {
            GatherVariant::Vec4
        } else if bytes.is_multiple_of(4) {
            GatherVariant::Words
        } else {
            GatherVariant::Pairs
        }
    }

    /// A short name for records.
    pub fn name(self) -> &'static str {
        match self {
            GatherVariant::Pairs => "gather-pairs",
            GatherVariant::Words => "gather-u32",
            GatherVariant::Vec4 => "gather-vec4",
        }
    }

    /// Bytes one invocation copies.
    pub fn word_bytes(self) -> u32 {
        match self {
            GatherVariant::Pairs => 0,
            GatherVariant::Words => 4,
            GatherVariant::Vec4 => 16,
        }
    }

    /// The WGSL for `mode`.
    pub fn source(self, mode: StorageMode) -> String {
        let words = include_str!("../../../shaders/embedding/words.wgsl");
        match self {
            GatherVariant::Pairs => pairs_source(mode),
            GatherVariant::Words => words.replace("WORD", "u32"),
            GatherVariant::Vec4 => words.replace("WORD", "vec4<u32>"),
        }
    }
}

/// Invocations per gather workgroup.
pub const GATHER_WORKGROUP: u32 = 256;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::gpu::storage::validate_wgsl;

    #[test]
    fn gather_copies_the_widest_word_a_row_allows() {
        assert_eq!(
            GatherVariant::for_row(StorageMode::F32, 100),
            GatherVariant::Vec4
        );
        assert_eq!(
            GatherVariant::for_row(StorageMode::F32, 33),
            GatherVariant::Words
        );
        assert_eq!(
            GatherVariant::for_row(StorageMode::F16, 100),
            GatherVariant::Words
        );
        assert_eq!(
            GatherVariant::for_row(StorageMode::PackedF16, 64),
            GatherVariant::Vec4
        );
        assert_eq!(
            GatherVariant::for_row(StorageMode::F16, 33),
            GatherVariant::Pairs
        );
    }

    /// Every gather, in every storage mode, parses, validates and compiles
    /// to SPIR-V with naga, without a device.
    #[test]
    fn every_gather_validates() {
        for mode in StorageMode::ALL {
            for v in [
                GatherVariant::Pairs,
                GatherVariant::Words,
                GatherVariant::Vec4,
            ] {
                validate_wgsl(&format!("{} {mode:?}", v.name()), &v.source(mode), &[]);
            }
        }
    }
}

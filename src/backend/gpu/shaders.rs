//! Assembles the WGSL kernels in `shaders/` with the storage accessors for one
//! storage mode, so each kernel is written once for f32, f16 and packed f16.

use crate::workload::Precision;

/// How elements are stored in GPU buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorageMode {
    /// `array<f32>`.
    F32,
    /// `array<f16>` (needs SHADER_F16).
    F16,
    /// f16 values two to an `array<u32>` word, through `unpack2x16float` /
    /// `pack2x16float`: FP16 storage on adapters without SHADER_F16.
    PackedF16,
}

impl StorageMode {
    /// The mode for `precision` on a device with or without SHADER_F16.
    pub fn for_precision(precision: Precision, shader_f16: bool, force_packed: bool) -> Self {
        match precision {
            Precision::F32 => StorageMode::F32,
            Precision::F16 if shader_f16 && !force_packed => StorageMode::F16,
            Precision::F16 => StorageMode::PackedF16,
        }
    }

    /// A short name for records.
    pub fn name(self) -> &'static str {
        match self {
            StorageMode::F32 => "f32",
            StorageMode::F16 => "f16",
            StorageMode::PackedF16 => "f16-packed",
        }
    }

    /// Bytes per stored element.
    pub fn element_bytes(self) -> u32 {
        match self {
            StorageMode::F32 => 4,
            StorageMode::F16 | StorageMode::PackedF16 => 2,
        }
    }

    /// Row strides of written buffers are padded to a whole number of words.
    pub fn padded_stride(self, cols: u32) -> u32 {
        match self {
            StorageMode::PackedF16 => cols.div_ceil(2) * 2,
            _ => cols,
        }
    }

    fn element(self) -> &'static str {
        match self {
            StorageMode::F32 => "f32",
            StorageMode::F16 => "f16",
            StorageMode::PackedF16 => "u32",
        }
    }

    fn enable(self) -> &'static str {
        match self {
            StorageMode::F16 => "enable f16;\n",
            _ => "",
        }
    }
}

/// Declares read-only buffer `name` at `binding` and `load_<name>(i) -> f32`.
fn read_accessor(mode: StorageMode, name: &str, binding: u32) -> String {
    let body = match mode {
        StorageMode::F32 => format!("return {name}[i];"),
        StorageMode::F16 => format!("return f32({name}[i]);"),
        // Element i is the low (even i) or high (odd i) half of word i/2.
        StorageMode::PackedF16 => {
            format!("let w = unpack2x16float({name}[i >> 1u]); return select(w.x, w.y, (i & 1u) == 1u);")
        }
    };
    format!(
        "@group(0) @binding({binding}) var<storage, read> {name}: array<{e}>;\nfn load_{name}(i: u32) -> f32 {{ {body} }}\n",
        e = mode.element()
    )
}

/// Declares writable buffer `name` at `binding` and `store2_<name>(i, v, both)`,
/// which writes `v.x` at even index `i` and `v.y` at `i + 1` when `both`.
fn write_accessor(mode: StorageMode, name: &str, binding: u32) -> String {
    let body = match mode {
        StorageMode::F32 => format!("{name}[i] = v.x; if (both) {{ {name}[i + 1u] = v.y; }}"),
        StorageMode::F16 => {
            format!("{name}[i] = f16(v.x); if (both) {{ {name}[i + 1u] = f16(v.y); }}")
        }
        // The word holds both halves; without `both` the high half is row padding.
        StorageMode::PackedF16 => {
            format!("{name}[i >> 1u] = pack2x16float(select(vec2<f32>(v.x, 0.0), v, both));")
        }
    };
    format!(
        "@group(0) @binding({binding}) var<storage, read_write> {name}: array<{e}>;\nfn store2_{name}(i: u32, v: vec2<f32>, both: bool) {{ {body} }}\n",
        e = mode.element()
    )
}

/// The matmul kernels to choose from (the GPU backend autotunes between them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulVariant {
    /// 64x64 workgroup tiles in shared memory, 4x4 outputs per thread (`matmul.wgsl`).
    Tiled,
    /// No shared memory or barriers, 4x4 outputs per thread (`matmul_direct.wgsl`).
    Direct,
}

impl MatmulVariant {
    /// Every variant, in a stable order.
    pub const ALL: [MatmulVariant; 2] = [MatmulVariant::Tiled, MatmulVariant::Direct];

    /// A short name for records.
    pub fn name(self) -> &'static str {
        match self {
            MatmulVariant::Tiled => "tiled-64x64x16",
            MatmulVariant::Direct => "direct-4x4",
        }
    }

    /// Rows (and columns) of y one workgroup covers.
    pub fn tile(self) -> u32 {
        match self {
            MatmulVariant::Tiled => MATMUL_TILE,
            MatmulVariant::Direct => 32,
        }
    }

    /// The WGSL for `mode`.
    pub fn source(self, mode: StorageMode) -> String {
        let body = match self {
            MatmulVariant::Tiled => include_str!("../../../shaders/matmul.wgsl"),
            MatmulVariant::Direct => include_str!("../../../shaders/matmul_direct.wgsl"),
        };
        format!(
            "{}{}{}{}\n{}\n{body}",
            mode.enable(),
            read_accessor(mode, "a", 0),
            read_accessor(mode, "b", 1),
            write_accessor(mode, "y", 2),
            include_str!("../../../shaders/matmul_common.wgsl"),
        )
    }
}

/// The embedding gather for `mode`.
pub fn embedding(mode: StorageMode) -> String {
    format!(
        "{}{}{}\n{}",
        mode.enable(),
        read_accessor(mode, "table", 0),
        write_accessor(mode, "out", 2),
        include_str!("../../../shaders/embedding.wgsl")
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
        let words = include_str!("../../../shaders/gather_words.wgsl");
        match self {
            GatherVariant::Pairs => embedding(mode),
            GatherVariant::Words => words.replace("WORD", "u32"),
            GatherVariant::Vec4 => words.replace("WORD", "vec4<u32>"),
        }
    }
}

/// Rows and columns of `y` one matmul workgroup computes.
pub const MATMUL_TILE: u32 = 64;
/// Invocations per gather workgroup.
pub const GATHER_WORKGROUP: u32 = 256;

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Every variant must parse and validate with naga, without a device.
    #[test]
    fn every_variant_validates() {
        for mode in [StorageMode::F32, StorageMode::F16, StorageMode::PackedF16] {
            for (name, src) in [
                ("matmul", MatmulVariant::Tiled.source(mode)),
                ("matmul-direct", MatmulVariant::Direct.source(mode)),
                ("embedding", embedding(mode)),
                ("gather-u32", GatherVariant::Words.source(mode)),
                ("gather-vec4", GatherVariant::Vec4.source(mode)),
            ] {
                let module = naga::front::wgsl::parse_str(&src)
                    .unwrap_or_else(|e| panic!("{name} {mode:?}: {}", e.emit_to_string(&src)));
                naga::valid::Validator::new(
                    naga::valid::ValidationFlags::all(),
                    naga::valid::Capabilities::all(),
                )
                .validate(&module)
                .unwrap_or_else(|e| panic!("{name} {mode:?}: {e:?}"));
            }
        }
    }
}

//! How a point's elements are stored in GPU buffers (f32, f16, f16 or bf16
//! packed two to a word, INT8 weights with per-column scales), and the WGSL
//! storage accessors every kernel is written against: `load_<name>`,
//! `load4_<name>` and `store2_<name>` for one mode, prepended to a kernel so
//! that it is written once for every mode.

use half::{bf16, f16};

use crate::precision::Precision;

/// The value a guarded output's tail words hold (little-endian words): a
/// kernel that writes past its rows, or a checked load that reads past its
/// input, changes one (see `GpuOptions::bounds_guard`).
pub const GUARD_SENTINEL: u32 = 0xdead_beef;

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
    /// bf16 values two to an `array<u32>` word (WGSL has no bf16 type): a
    /// bf16 is the top half of an f32, so reading one is a shift and a
    /// bitcast; writing rounds to nearest even.
    PackedBf16,
    /// INT8 weights (W8A16): the weight's int8 values four to a `u32` word,
    /// followed by one f32 scale per column, dequantised in the kernel (the
    /// scale applied to each column's sum); everything else as [`Self::F16`].
    W8F16,
    /// INT8 weights as in [`Self::W8F16`]; everything else as [`Self::PackedF16`].
    W8PackedF16,
}

impl StorageMode {
    /// Every mode.
    pub const ALL: [StorageMode; 6] = [
        StorageMode::F32,
        StorageMode::F16,
        StorageMode::PackedF16,
        StorageMode::PackedBf16,
        StorageMode::W8F16,
        StorageMode::W8PackedF16,
    ];

    /// The mode for `precision` on a device with or without SHADER_F16.
    pub fn for_precision(precision: Precision, shader_f16: bool, force_packed: bool) -> Self {
        match precision {
            Precision::F32 => StorageMode::F32,
            Precision::F16 if shader_f16 && !force_packed => StorageMode::F16,
            Precision::F16 => StorageMode::PackedF16,
            Precision::Bf16 => StorageMode::PackedBf16,
            Precision::Int8 if shader_f16 && !force_packed => StorageMode::W8F16,
            Precision::Int8 => StorageMode::W8PackedF16,
        }
    }

    /// How tables, activations and outputs are stored (all but an INT8 weight).
    pub fn activation(self) -> Self {
        match self {
            StorageMode::W8F16 => StorageMode::F16,
            StorageMode::W8PackedF16 => StorageMode::PackedF16,
            other => other,
        }
    }

    /// Whether the weight is INT8 with per-column scales.
    pub fn int8_weight(self) -> bool {
        matches!(self, StorageMode::W8F16 | StorageMode::W8PackedF16)
    }

    /// A short name for records.
    pub fn name(self) -> &'static str {
        match self {
            StorageMode::F32 => "f32",
            StorageMode::F16 => "f16",
            StorageMode::PackedF16 => "f16-packed",
            StorageMode::PackedBf16 => "bf16-packed",
            StorageMode::W8F16 => "w8-f16",
            StorageMode::W8PackedF16 => "w8-f16-packed",
        }
    }

    /// Bytes per stored element of tables, activations and outputs.
    pub fn element_bytes(self) -> u32 {
        match self.activation() {
            StorageMode::F32 => 4,
            _ => 2,
        }
    }

    /// Bytes of a weight block of `k` rows and `cols` columns, in whole
    /// 4-byte words: its elements, and for INT8 the int8 values padded to a
    /// word, then one f32 scale per column.
    pub fn weight_bytes(self, k: u64, cols: u64) -> u64 {
        if self.int8_weight() {
            (k * cols).div_ceil(4) * 4 + 4 * cols
        } else {
            (k * cols * self.element_bytes() as u64).div_ceil(4) * 4
        }
    }

    /// Row strides of written buffers are padded to a whole number of words.
    pub fn padded_stride(self, cols: u32) -> u32 {
        match self.activation() {
            StorageMode::PackedF16 | StorageMode::PackedBf16 => cols.div_ceil(2) * 2,
            _ => cols,
        }
    }

    /// The WGSL type of one stored word of tables, activations and outputs.
    pub fn element(self) -> &'static str {
        match self.activation() {
            StorageMode::F32 => "f32",
            StorageMode::F16 => "f16",
            _ => "u32",
        }
    }

    /// The `enable` directive the mode needs (`enable f16;`), or nothing.
    pub fn enable(self) -> &'static str {
        match self.activation() {
            StorageMode::F16 => "enable f16;\n",
            _ => "",
        }
    }
}

/// `data` encoded as `mode` stores tables, activations and outputs, padded to
/// whole 4-byte words.
pub fn encode(mode: StorageMode, data: &[f32]) -> Vec<u8> {
    let mut bytes = match mode.activation() {
        StorageMode::F32 => bytemuck::cast_slice(data).to_vec(),
        StorageMode::PackedBf16 => {
            let halves: Vec<bf16> = data.iter().map(|&v| bf16::from_f32(v)).collect();
            bytemuck::cast_slice(&halves).to_vec()
        }
        _ => {
            let halves: Vec<f16> = data.iter().map(|&v| f16::from_f32(v)).collect();
            bytemuck::cast_slice(&halves).to_vec()
        }
    };
    bytes.resize(bytes.len().div_ceil(4) * 4, 0);
    bytes
}

/// Declares read-only buffer `name` at `binding`, `load_<name>(i) -> f32` and
/// `load4_<name>(i) -> vec4<f32>` (elements i..i+4). With `vec4` the buffer is
/// an array of 4-element words (`vec4<f32>`, `vec4<f16>`, or `vec2<u32>` holding
/// four packed halves) and `load4` one 16- or 8-byte load, for i a multiple of 4;
/// otherwise `load4` is four scalar loads.
pub fn read_accessor4(mode: StorageMode, name: &str, binding: u32, vec4: bool) -> String {
    let mode = mode.activation();
    if vec4 {
        let (word, scalar, four) = match mode {
            StorageMode::F32 => (
                "vec4<f32>",
                format!("return {name}[i >> 2u][i & 3u];"),
                format!("return {name}[i >> 2u];"),
            ),
            StorageMode::F16 => (
                "vec4<f16>",
                format!("return f32({name}[i >> 2u][i & 3u]);"),
                format!("return vec4<f32>({name}[i >> 2u]);"),
            ),
            // Halves 0..3 of a word pair: word (i >> 1) & 1 of the pair, half i & 1.
            StorageMode::PackedF16 => (
                "vec2<u32>",
                format!(
                    "let w = unpack2x16float({name}[i >> 2u][(i >> 1u) & 1u]); return select(w.x, w.y, (i & 1u) == 1u);"
                ),
                format!(
                    "let w = {name}[i >> 2u]; return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));"
                ),
            ),
            // A bf16 is the top half of an f32: the low half of a word moves up, the high one is masked.
            StorageMode::W8F16 | StorageMode::W8PackedF16 => unreachable!("mapped by activation()"),
            StorageMode::PackedBf16 => (
                "vec2<u32>",
                format!(
                    "let w = {name}[i >> 2u][(i >> 1u) & 1u]; return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u));"
                ),
                format!(
                    "let w = {name}[i >> 2u]; return bitcast<vec4<f32>>(vec4<u32>(w.x << 16u, w.x & 0xffff0000u, w.y << 16u, w.y & 0xffff0000u));"
                ),
            ),
        };
        return format!(
            "@group(0) @binding({binding}) var<storage, read> {name}: array<{word}>;\n\
             fn load_{name}(i: u32) -> f32 {{ {scalar} }}\n\
             fn load4_{name}(i: u32) -> vec4<f32> {{ {four} }}\n"
        );
    }
    format!(
        "{}fn load4_{name}(i: u32) -> vec4<f32> {{ return vec4<f32>(load_{name}(i), load_{name}(i + 1u), load_{name}(i + 2u), load_{name}(i + 3u)); }}\n",
        read_accessor(mode, name, binding)
    )
}

/// Declares read-only buffer `name` at `binding` and `load_<name>(i) -> f32`.
pub fn read_accessor(mode: StorageMode, name: &str, binding: u32) -> String {
    let mode = mode.activation();
    let body = match mode {
        StorageMode::F32 => format!("return {name}[i];"),
        StorageMode::F16 => format!("return f32({name}[i]);"),
        // Element i is the low (even i) or high (odd i) half of word i/2.
        StorageMode::PackedF16 => {
            format!("let w = unpack2x16float({name}[i >> 1u]); return select(w.x, w.y, (i & 1u) == 1u);")
        }
        StorageMode::PackedBf16 => {
            format!("let w = {name}[i >> 1u]; return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u));")
        }
        StorageMode::W8F16 | StorageMode::W8PackedF16 => unreachable!("mapped by activation()"),
    };
    format!(
        "@group(0) @binding({binding}) var<storage, read> {name}: array<{e}>;\nfn load_{name}(i: u32) -> f32 {{ {body} }}\n",
        e = mode.element()
    )
}

/// Declares writable buffer `name` at `binding` and `store2_<name>(i, v, both)`,
/// which writes `v.x` at even index `i` and `v.y` at `i + 1` when `both`.
pub fn write_accessor(mode: StorageMode, name: &str, binding: u32) -> String {
    let mode = mode.activation();
    let body = match mode {
        StorageMode::F32 => format!("{name}[i] = v.x; if (both) {{ {name}[i + 1u] = v.y; }}"),
        StorageMode::F16 => {
            format!("{name}[i] = f16(v.x); if (both) {{ {name}[i + 1u] = f16(v.y); }}")
        }
        // The word holds both halves; without `both` the high half is row padding.
        StorageMode::PackedF16 => {
            format!("{name}[i >> 1u] = pack2x16float(select(vec2<f32>(v.x, 0.0), v, both));")
        }
        StorageMode::PackedBf16 => format!(
            "let h = select(vec2<f32>(v.x, 0.0), v, both); {name}[i >> 1u] = bf16_bits_{name}(h.x) | (bf16_bits_{name}(h.y) << 16u);"
        ),
        StorageMode::W8F16 | StorageMode::W8PackedF16 => unreachable!("mapped by activation()"),
    };
    // Round to nearest, ties to even, as the host's conversion does; a NaN
    // stays a (quiet) NaN instead of rounding into infinity.
    let helper = if mode == StorageMode::PackedBf16 {
        format!(
            "fn bf16_bits_{name}(v: f32) -> u32 {{ let b = bitcast<u32>(v); if ((b & 0x7fffffffu) > 0x7f800000u) {{ return (b >> 16u) | 0x40u; }} return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u; }}\n"
        )
    } else {
        String::new()
    };
    format!(
        "@group(0) @binding({binding}) var<storage, read_write> {name}: array<{e}>;\n{helper}fn store2_{name}(i: u32, v: vec2<f32>, both: bool) {{ {body} }}\n",
        e = mode.element()
    )
}

/// Parses and validates `src` with naga, resolves its override `constants`
/// as a pipeline would, and writes SPIR-V, without a device; panics naming
/// `name` on the first failure (for kernel tests).
#[cfg(test)]
pub(crate) fn validate_wgsl(name: &str, src: &str, constants: &[(&str, f64)]) {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let mut values = naga::back::PipelineConstants::default();
    for (k, v) in constants {
        values.insert(k.to_string(), *v);
    }
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((naga::ShaderStage::Compute, "main")),
        &values,
    )
    .unwrap_or_else(|e| panic!("{name} overrides: {e:?}"));
    naga::back::spv::write_vec(&module, &info, &Default::default(), None)
        .unwrap_or_else(|e| panic!("{name} SPIR-V: {e:?}"));
}

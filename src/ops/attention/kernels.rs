//! Attention's WGSL (`shaders/attention/`) and its assembly: each kernel gets
//! the storage accessors of the buffers it reads and writes — Q and the
//! output in the activations' storage mode, K and V in the cache's format
//! (int8 and FP8 unpacked four to a word and scaled as they are read) — and
//! the head size and key tile as constants.

use super::kv::KvFormat;
use crate::backend::gpu::storage::{read_accessor, write_accessor, StorageMode};

/// One of attention's GPU kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// The fused prefill kernel (online softmax over K/V tiles).
    Flash,
    /// Split-K decode: partial results per context split.
    Decode,
    /// Merges decode's splits.
    Combine,
    /// Materialised pass 1: QK^T into the scores.
    Scores,
    /// Materialised pass 2: softmax of each score row.
    Softmax,
    /// Materialised pass 3: P V.
    Values,
}

impl Kernel {
    /// Every kernel.
    pub const ALL: [Kernel; 6] = [
        Kernel::Flash,
        Kernel::Decode,
        Kernel::Combine,
        Kernel::Scores,
        Kernel::Softmax,
        Kernel::Values,
    ];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Flash => "attention-flash",
            Kernel::Decode => "attention-decode",
            Kernel::Combine => "attention-combine",
            Kernel::Scores => "attention-scores",
            Kernel::Softmax => "attention-softmax",
            Kernel::Values => "attention-values",
        }
    }

    /// Which of Q, K, V and the output it binds.
    fn uses(self) -> (bool, bool, bool, bool) {
        match self {
            Kernel::Flash => (true, true, true, true),
            Kernel::Decode => (true, true, true, false),
            Kernel::Combine => (false, false, false, true),
            Kernel::Scores => (true, true, false, false),
            Kernel::Softmax => (false, false, false, false),
            Kernel::Values => (false, false, true, true),
        }
    }

    fn body(self) -> &'static str {
        match self {
            Kernel::Flash => include_str!("../../../shaders/attention/flash.wgsl"),
            Kernel::Decode => include_str!("../../../shaders/attention/decode.wgsl"),
            Kernel::Combine => include_str!("../../../shaders/attention/combine.wgsl"),
            Kernel::Scores => include_str!("../../../shaders/attention/scores.wgsl"),
            Kernel::Softmax => include_str!("../../../shaders/attention/softmax.wgsl"),
            Kernel::Values => include_str!("../../../shaders/attention/values.wgsl"),
        }
    }

    /// The storage bindings it declares: (binding, what).
    pub fn bindings(self, format: KvFormat) -> Vec<u32> {
        let (q, k, v, out) = self.uses();
        let mut b = Vec::new();
        let scaled = format.quantised();
        if q {
            b.push(binding::Q);
        }
        if k {
            b.push(binding::K);
            if scaled {
                b.push(binding::K_SCALE);
            }
        }
        if v {
            b.push(binding::V);
            if scaled {
                b.push(binding::V_SCALE);
            }
        }
        if out {
            b.push(binding::OUT);
        }
        match self {
            Kernel::Decode | Kernel::Combine => b.push(binding::PART),
            Kernel::Scores | Kernel::Softmax | Kernel::Values => b.push(binding::SCORES),
            Kernel::Flash => {}
        }
        b
    }

    /// The WGSL of this kernel for heads of `d`, Q and output in `mode`,
    /// the cache in `format`.
    pub fn source(self, mode: StorageMode, format: KvFormat, d: u32) -> String {
        let (q, k, v, out) = self.uses();
        let mut s = String::from(mode.enable());
        s.push_str(&format!(
            "const HEAD_DIM: u32 = {d}u;\nconst KEYS: u32 = {}u;\nconst ROWS: u32 = {}u;\n",
            flash_tile(d).0,
            flash_tile(d).1
        ));
        if q {
            s.push_str(&read_accessor(mode, "q", binding::Q));
        }
        if k {
            s.push_str(&kv_accessor(
                mode,
                format,
                "kc",
                binding::K,
                binding::K_SCALE,
            ));
        }
        if v {
            s.push_str(&kv_accessor(
                mode,
                format,
                "vc",
                binding::V,
                binding::V_SCALE,
            ));
        }
        if out {
            s.push_str(&write_accessor(mode, "out", binding::OUT));
        }
        s.push_str(include_str!("../../../shaders/attention/common.wgsl"));
        s.push_str(self.body());
        s
    }
}

/// The bindings of attention's buffers.
pub mod binding {
    /// Queries.
    pub const Q: u32 = 0;
    /// Keys.
    pub const K: u32 = 1;
    /// Values.
    pub const V: u32 = 2;
    /// The output.
    pub const OUT: u32 = 3;
    /// The uniform parameters.
    pub const PARAMS: u32 = 4;
    /// The keys' scales (int8, FP8).
    pub const K_SCALE: u32 = 5;
    /// The values' scales.
    pub const V_SCALE: u32 = 6;
    /// Decode's partial results.
    pub const PART: u32 = 7;
    /// The materialised scores.
    pub const SCORES: u32 = 8;
}

/// Keys and queries per tile of the fused kernel for heads of `d`: the K
/// and V tiles and the queries' accumulators, in f32, within the 16 KiB of
/// workgroup memory every adapter offers, beside the tile's scores (at most
/// 32 x 32) and three f32 per query: `(2 keys + rows) x d <= 2944`, each at
/// most 32.
pub fn flash_tile(d: u32) -> (u32, u32) {
    let budget = 2944 / d.max(1);
    let rows = (budget / 2).clamp(1, 32);
    let keys = ((budget - rows) / 2).clamp(1, 32);
    (keys, rows)
}

/// Declares cache buffer `name` at `binding` (and its scales at
/// `scale_binding` when quantised) and `load_<name>(i) -> f32`, the element
/// dequantised.
fn kv_accessor(
    mode: StorageMode,
    format: KvFormat,
    name: &str,
    binding: u32,
    scale_binding: u32,
) -> String {
    let words = format!(
        "@group(0) @binding({binding}) var<storage, read> {name}: array<u32>;\n\
         @group(0) @binding({scale_binding}) var<storage, read> {name}_scale: array<f32>;\n"
    );
    match format {
        KvFormat::F32 | KvFormat::F16 | KvFormat::Bf16 => read_accessor(mode, name, binding),
        // Byte i & 3 of word i / 4, sign-extended; one scale per row of the head.
        KvFormat::Int8 => format!(
            "{words}fn load_{name}(i: u32) -> f32 {{ let w = {name}[i >> 2u]; let v = bitcast<i32>((w >> ((i & 3u) * 8u)) << 24u) >> 24u; return f32(v) * {name}_scale[i / HEAD_DIM]; }}\n"
        ),
        // E4M3: exponent bias 7 (f32's 127: + 120), 3 fraction bits; exponent 0
        // is subnormal, m x 2^-9. One scale per head of a sequence.
        KvFormat::Fp8 => format!(
            "{words}fn load_{name}(i: u32) -> f32 {{ let b = ({name}[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu; let e = (b >> 3u) & 15u; let m = b & 7u; var v = f32(m) * 0.001953125; if (e != 0u) {{ v = bitcast<f32>(((e + 120u) << 23u) | (m << 20u)); }} v = select(v, -v, (b & 128u) != 0u); return v * {name}_scale[i / (p.context * HEAD_DIM)]; }}\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::gpu::storage::validate_wgsl;

    /// Every kernel, for every activation storage mode and cache format it
    /// meets, and heads of 1, 33, 64, 128 and 256, parses, validates and
    /// compiles to SPIR-V with naga, without a device.
    #[test]
    fn every_attention_kernel_validates() {
        let modes = [
            (StorageMode::F32, KvFormat::F32),
            (StorageMode::F16, KvFormat::F16),
            (StorageMode::PackedF16, KvFormat::F16),
            (StorageMode::PackedBf16, KvFormat::Bf16),
            (StorageMode::F16, KvFormat::Int8),
            (StorageMode::PackedF16, KvFormat::Fp8),
            (StorageMode::F32, KvFormat::Fp8),
        ];
        for kernel in Kernel::ALL {
            for (mode, format) in modes {
                for d in [1, 33, 64, 128, 256] {
                    let name = format!("{} {mode:?} {format:?} d{d}", kernel.name());
                    validate_wgsl(&name, &kernel.source(mode, format, d), &[]);
                }
            }
        }
    }

    #[test]
    fn tiles_fit_workgroup_memory() {
        for d in [1, 2, 33, 64, 100, 128, 255, 256] {
            let (keys, rows) = flash_tile(d);
            let bytes = (2 * keys + rows) * d * 4 + rows * keys * 4 + 3 * rows * 4;
            assert!(keys >= 1 && rows >= 1 && bytes <= 16384, "d {d}: {bytes}");
        }
        assert_eq!(
            (flash_tile(64), flash_tile(128), flash_tile(256)),
            ((11, 23), (6, 11), (3, 5))
        );
        assert_eq!(
            Kernel::Flash.bindings(KvFormat::Int8),
            vec![0, 1, 5, 2, 6, 3]
        );
        assert_eq!(Kernel::Softmax.bindings(KvFormat::F32), vec![8]);
    }
}

//! The storage precisions a point runs in, and what each stores: bytes per
//! element, rounding, unit roundoff, normal range and overflow threshold. Every
//! op reads its precision from here; what a precision means for an op's own
//! buffers (INT8's per-column weight scales) is the op's.

use std::fmt;
use std::str::FromStr;

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

use crate::error::LabError;

/// Storage precision of tables, activations, weights and outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// IEEE binary32 storage, f32 accumulation.
    #[serde(alias = "fp32", alias = "float32")]
    F32,
    /// IEEE binary16 storage (5-bit exponent, 10-bit fraction), f32 accumulation.
    #[serde(alias = "fp16", alias = "half", alias = "float16")]
    F16,
    /// bfloat16 storage (f32's 8-bit exponent, 7-bit fraction: the top 16 bits
    /// of an f32), f32 accumulation.
    #[serde(alias = "bfloat16")]
    Bf16,
    /// Weight-only INT8 (W8A16), as LLM inference engines ship it: projection
    /// weights as int8 with one f32 scale per output column (symmetric,
    /// `max |w| / 127`), dequantised inside the kernel; tables, activations and
    /// outputs in FP16; f32 accumulation.
    #[serde(alias = "w8", alias = "w8a16")]
    Int8,
}

impl Precision {
    /// Every precision, in a stable order.
    pub const ALL: [Precision; 4] = [
        Precision::F32,
        Precision::F16,
        Precision::Bf16,
        Precision::Int8,
    ];

    /// Bytes per stored element of tables, activations and outputs.
    pub fn bytes(self) -> u64 {
        match self {
            Precision::F32 => 4,
            Precision::F16 | Precision::Bf16 | Precision::Int8 => 2,
        }
    }

    /// The name used on the command line and in records.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }

    /// The name in prose: FP32, FP16, BF16.
    pub fn label(self) -> &'static str {
        match self {
            Precision::F32 => "FP32",
            Precision::F16 => "FP16",
            Precision::Bf16 => "BF16",
            Precision::Int8 => "INT8 (W8A16)",
        }
    }

    /// Rounds a table, activation or output value to what this precision
    /// stores (round to nearest, ties to even; past the largest finite value,
    /// to infinity). INT8's weights are quantised by the projection's own
    /// per-column quantiser (`ops::matmul::quantize`).
    pub fn round(self, v: f32) -> f32 {
        match self {
            Precision::F32 => v,
            Precision::F16 | Precision::Int8 => f16::from_f32(v).to_f32(),
            Precision::Bf16 => bf16::from_f32(v).to_f32(),
        }
    }

    /// The unit roundoff of the stored format: 2^-24, 2^-11, 2^-8.
    pub fn unit_roundoff(self) -> f64 {
        match self {
            Precision::F32 => 2f64.powi(-24),
            Precision::F16 | Precision::Int8 => 2f64.powi(-11),
            Precision::Bf16 => 2f64.powi(-8),
        }
    }

    /// The smallest positive normal value of the stored output (2^-14 for
    /// f16, 2^-126 for f32 and bf16). Below it a result is subnormal: rounded
    /// to a fixed absolute spacing, not a relative one, or flushed to zero,
    /// which WGSL allows a GPU to do.
    pub fn min_normal(self) -> f64 {
        match self {
            Precision::F32 | Precision::Bf16 => 2f64.powi(-126),
            Precision::F16 | Precision::Int8 => 2f64.powi(-14),
        }
    }

    /// The smallest magnitude that rounds to infinity when stored: half an
    /// ulp past the largest finite value (65520 for f16).
    pub fn overflow_threshold(self) -> f64 {
        match self {
            Precision::F32 => f32::MAX as f64 * (1.0 + 2f64.powi(-24)),
            Precision::F16 | Precision::Int8 => 65520.0,
            Precision::Bf16 => f32::MAX as f64 * (1.0 + 2f64.powi(-8)),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "f16" | "fp16" | "half" | "float16" => Ok(Precision::F16),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "int8" | "w8" | "w8a16" => Ok(Precision::Int8),
            _ => Err(LabError::invalid(
                "precision",
                s,
                "expected f32 (fp32), f16 (fp16, half), bf16 (bfloat16) or int8 (w8: int8 weights, FP16 activations)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precisions_know_their_sizes_and_limits() {
        let sizes: Vec<_> = Precision::ALL
            .iter()
            .map(|p| (p.bytes(), p.name(), p.label()))
            .collect();
        assert_eq!(
            sizes,
            [
                (4, "f32", "FP32"),
                (2, "f16", "FP16"),
                (2, "bf16", "BF16"),
                (2, "int8", "INT8 (W8A16)"),
            ]
        );
        assert_eq!(
            Precision::ALL.map(|p| p.unit_roundoff()),
            [
                2f64.powi(-24),
                2f64.powi(-11),
                2f64.powi(-8),
                2f64.powi(-11)
            ]
        );
        assert_eq!(Precision::F16.overflow_threshold(), 65520.0);
        assert_eq!(Precision::Int8.overflow_threshold(), 65520.0);
        assert_eq!(
            Precision::F16.min_normal() as f32,
            f16::MIN_POSITIVE.to_f32()
        );
        assert_eq!(Precision::Int8.min_normal(), Precision::F16.min_normal());
        assert_eq!(Precision::F32.min_normal() as f32, f32::MIN_POSITIVE);
        assert_eq!(
            Precision::Bf16.min_normal() as f32,
            bf16::MIN_POSITIVE.to_f32()
        );
        let f32_max = f32::MAX as f64;
        assert_eq!(
            Precision::F32.overflow_threshold(),
            f32_max * (1.0 + 2f64.powi(-24))
        );
        assert_eq!(
            Precision::Bf16.overflow_threshold(),
            f32_max * (1.0 + 2f64.powi(-8))
        );
        assert_eq!(Precision::Int8.round(1.0 + 1.0 / 4096.0), 1.0);
        assert_eq!(Precision::F32.round(1.0 + 1.0 / 4096.0), 1.0 + 1.0 / 4096.0);
        for p in Precision::ALL {
            assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
        }
        assert!("f64".parse::<Precision>().is_err());
    }

    #[test]
    fn precisions_take_the_names_users_type() {
        for (name, p) in [
            ("fp32", Precision::F32),
            ("half", Precision::F16),
            ("FP16", Precision::F16),
            ("bfloat16", Precision::Bf16),
            ("bf16", Precision::Bf16),
            ("w8", Precision::Int8),
            ("INT8", Precision::Int8),
        ] {
            assert_eq!(name.parse::<Precision>().unwrap(), p, "{name}");
        }
        assert_eq!(Precision::Bf16.round(1.0 + 1.0 / 512.0), 1.0);
        assert_eq!(Precision::F16.round(70000.0), f32::INFINITY);
        assert_eq!(Precision::Bf16.round(70000.0), 70144.0);
    }
}

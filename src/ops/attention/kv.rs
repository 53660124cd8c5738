//! How the KV cache is stored: the point's own precision (f32, f16, bf16),
//! or narrower than it (`--kv-precision int8`: one f32 scale per token and
//! head; `fp8`: E4M3 with one f32 scale per head of each sequence), and the
//! quantisers and decoders both backends and the reference share. A narrow
//! cache is widened inside the kernels as it is read, never in a separate pass.

use serde::{Deserialize, Serialize};

use crate::precision::Precision;

/// The `kv_precision` parameter: the cache as the point's precision, or a
/// narrower format.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum KvPrecision {
    /// As Q and the output (INT8 points: an INT8 cache, the analogue of
    /// W8A16's weights).
    #[default]
    Same,
    /// int8 with one f32 scale per token and KV head (`max |x| / 127`).
    Int8,
    /// FP8 E4M3 with one f32 scale per KV head of each sequence (`max |x| / 448`).
    Fp8,
}

impl KvPrecision {
    /// The names the parameter takes.
    pub const NAMES: &'static [&'static str] = &["same", "int8", "fp8"];

    /// The name in records and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            KvPrecision::Same => "same",
            KvPrecision::Int8 => "int8",
            KvPrecision::Fp8 => "fp8",
        }
    }

    /// The parameter named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "same" => Some(KvPrecision::Same),
            "int8" => Some(KvPrecision::Int8),
            "fp8" => Some(KvPrecision::Fp8),
            _ => None,
        }
    }

    /// The format the cache is stored in at the point's `precision`.
    pub fn format(self, precision: Precision) -> KvFormat {
        match (self, precision) {
            (KvPrecision::Int8, _) | (KvPrecision::Same, Precision::Int8) => KvFormat::Int8,
            (KvPrecision::Fp8, _) => KvFormat::Fp8,
            (KvPrecision::Same, Precision::F32) => KvFormat::F32,
            (KvPrecision::Same, Precision::F16) => KvFormat::F16,
            (KvPrecision::Same, Precision::Bf16) => KvFormat::Bf16,
        }
    }
}

/// The precision of Q and the output at the point's `precision` (INT8
/// points: FP16 activations beside an INT8 cache).
pub fn activation_precision(precision: Precision) -> Precision {
    match precision {
        Precision::Int8 => Precision::F16,
        p => p,
    }
}

/// A KV cache's storage format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvFormat {
    /// f32.
    F32,
    /// IEEE f16.
    F16,
    /// bfloat16.
    Bf16,
    /// int8, one f32 scale per token and head.
    Int8,
    /// FP8 E4M3, one f32 scale per head of a sequence.
    Fp8,
}

impl KvFormat {
    /// A short name for records.
    pub fn name(self) -> &'static str {
        match self {
            KvFormat::F32 => "f32",
            KvFormat::F16 => "f16",
            KvFormat::Bf16 => "bf16",
            KvFormat::Int8 => "int8",
            KvFormat::Fp8 => "fp8",
        }
    }

    /// Bytes of one element (scales apart).
    pub fn element_bytes(self) -> u64 {
        match self {
            KvFormat::F32 => 4,
            KvFormat::F16 | KvFormat::Bf16 => 2,
            KvFormat::Int8 | KvFormat::Fp8 => 1,
        }
    }

    /// Bytes of K (or V) for `heads` cache rows of `d` elements per token,
    /// `tokens` tokens, `seqs` sequences: elements and scales.
    pub fn bytes(self, seqs: u64, heads: u64, tokens: u64, d: u64) -> u64 {
        let elems = seqs * heads * tokens * d * self.element_bytes();
        elems
            + match self {
                KvFormat::Int8 => seqs * heads * tokens * 4,
                KvFormat::Fp8 => seqs * heads * 4,
                _ => 0,
            }
    }

    /// Whether values are quantised with scales.
    pub fn quantised(self) -> bool {
        matches!(self, KvFormat::Int8 | KvFormat::Fp8)
    }
}

/// The largest finite E4M3 value.
pub const FP8_MAX: f32 = 448.0;

/// The value of E4M3 byte `b` (sign, 4 exponent bits biased by 7, 3 fraction
/// bits; exponent 0 is subnormal, 2^-6 x m/8; 0x7f and 0xff are NaN).
pub fn fp8_decode(b: u8) -> f32 {
    let e = ((b >> 3) & 15) as i32;
    let m = (b & 7) as f32;
    let v = if e == 0 {
        m / 8.0 * 2f32.powi(-6)
    } else if e == 15 && b & 7 == 7 {
        f32::NAN
    } else {
        (1.0 + m / 8.0) * 2f32.powi(e - 7)
    };
    if b & 0x80 != 0 {
        -v
    } else {
        v
    }
}

/// The positive E4M3 values in order, byte 0..=0x7e.
fn fp8_positive() -> &'static [f32; 127] {
    static T: std::sync::OnceLock<[f32; 127]> = std::sync::OnceLock::new();
    T.get_or_init(|| std::array::from_fn(|i| fp8_decode(i as u8)))
}

/// `v` rounded to the nearest E4M3 value (ties to the even code), saturating
/// at +-448 as FP8 KV caches do.
pub fn fp8_encode(v: f32) -> u8 {
    let sign = if v.is_sign_negative() { 0x80 } else { 0 };
    let a = v.abs();
    let t = fp8_positive();
    if a.is_nan() || a >= FP8_MAX {
        return sign | 0x7e;
    }
    // The first code whose value is >= a; compare with the one below.
    let hi = t.partition_point(|&x| x < a);
    if hi == 0 {
        return sign;
    }
    let lo = hi - 1;
    let (dl, dh) = (a - t[lo], t[hi] - a);
    let code = if dl < dh || (dl == dh && lo % 2 == 0) {
        lo
    } else {
        hi
    };
    sign | code as u8
}

/// The int8 code of `v` at `scale` (`round(v / scale)`, clamped to +-127).
pub fn int8_encode(v: f32, scale: f32) -> i8 {
    if scale == 0.0 {
        return 0;
    }
    (v / scale).round().clamp(-127.0, 127.0) as i8
}

/// The scale of an int8 row: `max |x| / 127` (0 for a zero row).
pub fn int8_scale(row: &[f32]) -> f32 {
    row.iter().fold(0f32, |m, &x| m.max(x.abs())) / 127.0
}

/// The scale of an FP8 head: `max |x| / 448` (0 for a zero head).
pub fn fp8_scale(head: &[f32]) -> f32 {
    head.iter().fold(0f32, |m, &x| m.max(x.abs())) / FP8_MAX
}

/// A K or V cache `[B, G, L, D]` encoded as `format` stores it: its bytes
/// (elements, padded to whole words) and its scales (none for f32/f16/bf16).
/// `d` is the row width, `head_len` the elements of one head of a sequence
/// (`L x D`).
pub fn encode(format: KvFormat, data: &[f32], d: usize, head_len: usize) -> (Vec<u8>, Vec<f32>) {
    let mut scales = Vec::new();
    let mut bytes: Vec<u8> = match format {
        KvFormat::F32 => bytemuck::cast_slice(data).to_vec(),
        KvFormat::F16 => data
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        KvFormat::Bf16 => data
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        KvFormat::Int8 => {
            let mut out = Vec::with_capacity(data.len());
            for row in data.chunks(d) {
                let s = int8_scale(row);
                scales.push(s);
                out.extend(row.iter().map(|&v| int8_encode(v, s) as u8));
            }
            out
        }
        KvFormat::Fp8 => {
            let mut out = Vec::with_capacity(data.len());
            for head in data.chunks(head_len) {
                let s = fp8_scale(head);
                scales.push(s);
                out.extend(
                    head.iter()
                        .map(|&v| fp8_encode(if s == 0.0 { 0.0 } else { v / s })),
                );
            }
            out
        }
    };
    bytes.resize(bytes.len().div_ceil(4) * 4, 0);
    (bytes, scales)
}

/// Element `i` of a cache as `format` stores it, dequantised, given the
/// whole original cache (the reference's "as stored" values): the row's int8
/// scale or the head's FP8 scale is recomputed from the originals, as the
/// quantiser computed it.
pub struct Stored<'a> {
    data: &'a [f32],
    format: KvFormat,
    d: usize,
    head_len: usize,
    fp8_scales: Vec<f32>,
}

impl<'a> Stored<'a> {
    /// The stored view of `data` in `format`.
    pub fn new(format: KvFormat, data: &'a [f32], d: usize, head_len: usize) -> Self {
        let fp8_scales = if format == KvFormat::Fp8 {
            data.chunks(head_len).map(fp8_scale).collect()
        } else {
            Vec::new()
        };
        Stored {
            data,
            format,
            d,
            head_len,
            fp8_scales,
        }
    }

    /// Row `row` (`d` elements from element `row * d`) as stored, into `out`.
    pub fn row(&self, row: usize, out: &mut [f64]) {
        let src = &self.data[row * self.d..(row + 1) * self.d];
        match self.format {
            KvFormat::F32 => out.iter_mut().zip(src).for_each(|(o, &v)| *o = v as f64),
            KvFormat::F16 => out
                .iter_mut()
                .zip(src)
                .for_each(|(o, &v)| *o = Precision::F16.round(v) as f64),
            KvFormat::Bf16 => out
                .iter_mut()
                .zip(src)
                .for_each(|(o, &v)| *o = Precision::Bf16.round(v) as f64),
            KvFormat::Int8 => {
                let s = int8_scale(src);
                out.iter_mut()
                    .zip(src)
                    .for_each(|(o, &v)| *o = int8_encode(v, s) as f64 * s as f64);
            }
            KvFormat::Fp8 => {
                let s = self.fp8_scales[row * self.d / self.head_len];
                out.iter_mut().zip(src).for_each(|(o, &v)| {
                    let q = if s == 0.0 {
                        0.0
                    } else {
                        fp8_decode(fp8_encode(v / s))
                    };
                    *o = q as f64 * s as f64
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e4m3_decodes_and_rounds_to_nearest_even_saturating() {
        assert_eq!(fp8_decode(0x00), 0.0);
        assert_eq!(fp8_decode(0x01), 2f32.powi(-9));
        assert_eq!(fp8_decode(0x08), 2f32.powi(-6));
        assert_eq!(fp8_decode(0x38), 1.0);
        assert_eq!(fp8_decode(0x7e), 448.0);
        assert_eq!(fp8_decode(0xb8), -1.0);
        assert!(fp8_decode(0x7f).is_nan());
        for b in 0..=0x7eu8 {
            assert_eq!(fp8_encode(fp8_decode(b)), b, "{b:#x}");
            assert_eq!(fp8_encode(-fp8_decode(b)), b | 0x80);
        }
        // 1.0625 lies halfway between 1 (0x38, even) and 1.125 (0x39).
        assert_eq!(fp8_encode(1.0625), 0x38);
        assert_eq!(fp8_encode(1.1875), 0x3a);
        assert_eq!(fp8_encode(1.07), 0x39);
        assert_eq!(fp8_encode(1e9), 0x7e);
        assert_eq!(fp8_encode(-1e9), 0xfe);
        assert_eq!(fp8_encode(2f32.powi(-11)), 0);
    }

    #[test]
    fn int8_rows_and_fp8_heads_carry_their_scales() {
        let data = [1.0f32, -2.0, 0.5, 4.0, 0.0, 0.0];
        let (bytes, scales) = encode(KvFormat::Int8, &data, 2, 6);
        assert_eq!(scales, vec![2.0 / 127.0, 4.0 / 127.0, 0.0]);
        assert_eq!(bytes.len(), 8);
        assert_eq!(bytes[1] as i8, -127);
        assert_eq!(bytes[0] as i8, 64);
        let (bytes, scales) = encode(KvFormat::Fp8, &data, 2, 3);
        assert_eq!(scales, vec![2.0 / 448.0, 4.0 / 448.0]);
        assert_eq!(fp8_decode(bytes[1]) * scales[0], -2.0);
        let s = Stored::new(KvFormat::Int8, &data, 2, 6);
        let mut row = [0.0; 2];
        s.row(0, &mut row);
        assert_eq!(
            row,
            [
                64.0 * (2.0f32 / 127.0) as f64,
                -127.0 * (2.0f32 / 127.0) as f64
            ]
        );
        assert!((row[0] - 1.0).abs() < 2.0 / 127.0 / 2.0 + 1e-7);
        assert_eq!(KvPrecision::Same.format(Precision::Int8), KvFormat::Int8);
        assert_eq!(KvPrecision::Fp8.format(Precision::F32), KvFormat::Fp8);
        assert_eq!(KvFormat::Int8.bytes(2, 8, 10, 128), 2 * 8 * 10 * (128 + 4));
    }
}

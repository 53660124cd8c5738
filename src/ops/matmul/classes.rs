//! The matmul shapes the autotuner tells apart, and the shape each class is
//! tuned on.

/// Matmul shapes the autotuner tells apart: the best tile for a few hundred
/// outputs is not the best for millions (too few workgroups to fill the
/// device), and a long inner dimension favours kernels that reuse each load
/// over many FMAs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShapeClass {
    /// Fewer than 2^20 outputs (M x N), K below 512.
    Small,
    /// Fewer than 2^20 outputs, K of 512 or more (decode-like: few rows, wide model).
    SmallDeep,
    /// 2^20 outputs or more, K below 512.
    Large,
    /// 2^20 to 2^24 outputs, K of 512 or more.
    LargeDeep,
    /// 2^24 outputs (4096 x 4096) or more, K of 512 or more: enough
    /// workgroups for the largest tiles to fill a data-centre GPU, which on
    /// a LargeDeep shape leave most of it idle (on an H200, a 128x128 coop
    /// tile ran 2048^3 at 11.5 TFLOP/s and 4096^3 at 36).
    HugeDeep,
}

impl ShapeClass {
    /// Every class.
    pub const ALL: [ShapeClass; 5] = [
        ShapeClass::Small,
        ShapeClass::SmallDeep,
        ShapeClass::Large,
        ShapeClass::LargeDeep,
        ShapeClass::HugeDeep,
    ];

    /// The class of an M x N output with inner size K.
    pub fn of(m: u64, n: u64, k: u64) -> Self {
        match (m * n < 1 << 20, k < 512) {
            (true, true) => ShapeClass::Small,
            (true, false) => ShapeClass::SmallDeep,
            (false, true) => ShapeClass::Large,
            (false, false) if m * n < 1 << 24 => ShapeClass::LargeDeep,
            (false, false) => ShapeClass::HugeDeep,
        }
    }

    /// A short name for records.
    pub fn name(self) -> &'static str {
        match self {
            ShapeClass::Small => "small",
            ShapeClass::SmallDeep => "small-deep",
            ShapeClass::Large => "large",
            ShapeClass::LargeDeep => "large-deep",
            ShapeClass::HugeDeep => "huge-deep",
        }
    }

    /// The shape (batch, seq, dim) every candidate is timed on: M = batch*seq
    /// rows, K = N = dim, inside the class. A software device gets smaller
    /// shapes, so that tuning takes seconds there too: HugeDeep's there is
    /// LargeDeep's (a huge shape would take a software device minutes per
    /// candidate), the one shape that lies outside its class.
    pub fn tuning_shape(self, software: bool) -> (u32, u32, u32) {
        match (self, software) {
            (ShapeClass::Small, _) => (1, 256, 256),
            (ShapeClass::SmallDeep, true) => (1, 64, 1024),
            (ShapeClass::SmallDeep, false) => (1, 128, 4096),
            (ShapeClass::Large, true) => (1, 4096, 256),
            (ShapeClass::Large, false) => (1, 8192, 256),
            (ShapeClass::LargeDeep, true) => (1, 1024, 1024),
            (ShapeClass::LargeDeep, false) => (1, 2048, 2048),
            (ShapeClass::HugeDeep, true) => (1, 1024, 1024),
            (ShapeClass::HugeDeep, false) => (1, 4096, 4096),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tuning_shape_lies_in_its_class() {
        for class in ShapeClass::ALL {
            for software in [false, true] {
                let (b, s, d) = class.tuning_shape(software);
                let m = b as u64 * s as u64;
                let want = match (class, software) {
                    (ShapeClass::HugeDeep, true) => ShapeClass::LargeDeep,
                    _ => class,
                };
                assert_eq!(ShapeClass::of(m, d as u64, d as u64), want, "{software}");
            }
        }
    }

    #[test]
    fn classes_split_at_a_mebi_output_and_k_512() {
        assert_eq!(ShapeClass::of(1023, 1024, 511), ShapeClass::Small);
        assert_eq!(ShapeClass::of(1024, 1024, 511), ShapeClass::Large);
        assert_eq!(ShapeClass::of(1, 1, 512), ShapeClass::SmallDeep);
        assert_eq!(ShapeClass::of(1024, 1024, 512), ShapeClass::LargeDeep);
        assert_eq!(ShapeClass::of(4095, 4096, 512), ShapeClass::LargeDeep);
        assert_eq!(ShapeClass::of(4096, 4096, 512), ShapeClass::HugeDeep);
        assert_eq!(ShapeClass::of(4096, 4096, 511), ShapeClass::Large);
    }
}

//! What a point's input data looks like, and the seeded stream every op draws
//! its inputs from: the distributions (`uniform`, `normal`, `llm`), the scale
//! on activations, and [`Draws`], which hands out activations, weights and
//! token ids in the order an op asks for them. The streams are part of the
//! results' meaning (a point re-run draws the same data), so they are pinned
//! by a test.

use std::fmt;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::error::LabError;

/// The seed used when none is given.
pub const DEFAULT_SEED: u64 = 0x05ee_d1ab;

/// Share of the activation channels that carry outliers in the `llm`
/// distribution: 6 of 4096. Dettmers et al., "LLM.int8(): 8-bit Matrix
/// Multiplication for Transformers at Scale" (NeurIPS 2022, section 4) find
/// the outliers of a 6.7B model concentrated in about 6 of its 4096 hidden
/// dimensions, in every layer.
const OUTLIER_CHANNEL_SHARE: f64 = 6.0 / 4096.0;
/// How much larger an outlier channel is than the rest: the same paper reports
/// outlier features up to 20x larger than the other dimensions.
const OUTLIER_FACTOR: f32 = 20.0;
/// Spread of the weight's per-output-channel scales in the `llm` distribution:
/// log-normal with this sigma (so one channel in six is 1.6x the median and
/// one in forty 2.7x). Per-channel weight ranges that differ this much are
/// why inference engines quantise weights per output channel (Nagel et al.,
/// "A White Paper on Neural Network Quantization", 2021, section 2.2); the
/// exact sigma is a modelling choice, not a measured constant.
const WEIGHT_CHANNEL_SIGMA: f32 = 0.5;

/// The seeded stream of one point's inputs, at full precision (f32): every
/// backend rounds them to the point's precision as it loads them, and the
/// reference computes both the f64 result of the rounded inputs (what a
/// kernel must reproduce) and that of these originals (what the precision
/// costs). An op asks for its buffers in a fixed order; the values depend on
/// that order, so an op keeps it.
pub struct Draws {
    rng: ChaCha8Rng,
    dist: Dist,
    scale: f32,
    /// Per activation channel (llm: a few outliers), empty otherwise.
    channel_gain: Vec<f32>,
    /// Per weight column (llm: log-normal), empty otherwise.
    column_gain: Vec<f32>,
}

impl Draws {
    /// The stream of `seed` for data `data`, whose activation rows are `k`
    /// wide and whose weight (if any) has `weight_cols` columns. The llm
    /// distribution's outlier channels and weight column scales come from a
    /// stream of their own, so the values' stream is the same for every
    /// distribution's layout.
    pub fn new(seed: u64, data: Data, k: u64, weight_cols: Option<u64>) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(seed);
        let mut layout_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6c6c_6d00);
        let channel_gain: Vec<f32> = match data.dist {
            Dist::Llm => {
                let outliers = ((k as f64 * OUTLIER_CHANNEL_SHARE).round() as u64).max(1);
                let mut gain = vec![1.0f32; k as usize];
                for _ in 0..outliers {
                    gain[layout_rng.random_range(0..k as usize)] = OUTLIER_FACTOR;
                }
                gain
            }
            _ => Vec::new(),
        };
        let column_gain: Vec<f32> = match (data.dist, weight_cols) {
            (Dist::Llm, Some(n)) => {
                let spread = LogNormal::new(0.0f32, WEIGHT_CHANNEL_SIGMA).expect("valid sigma");
                (0..n).map(|_| spread.sample(&mut layout_rng)).collect()
            }
            _ => Vec::new(),
        };
        Draws {
            rng,
            dist: data.dist,
            scale: data.scale.get() as f32,
            channel_gain,
            column_gain,
        }
    }

    fn draw(&mut self) -> f32 {
        match self.dist {
            Dist::Uniform => self.rng.random_range(-1.0f32..1.0),
            Dist::Normal | Dist::Llm => StandardNormal.sample(&mut self.rng),
        }
    }

    /// `count` activations (rows of `k` channels, as [`Self::new`] was
    /// told): scaled, the llm distribution's outlier channels amplified.
    /// Table rows are drawn the same way.
    pub fn activations(&mut self, count: u64) -> Vec<f32> {
        let k = self.channel_gain.len().max(1) as u64;
        (0..count)
            .map(|i| {
                let gain = self
                    .channel_gain
                    .get((i % k) as usize)
                    .copied()
                    .unwrap_or(1.0);
                self.draw() * self.scale * gain
            })
            .collect()
    }

    /// A `k` x `n` weight with a standard deviation of `1/sqrt(k)` (as
    /// initialisers and trained layers have, so outputs stay O(scale));
    /// uniform within `+-1/sqrt(k)`, its historical range; the llm
    /// distribution's columns scaled log-normally.
    pub fn weight(&mut self, k: u64, n: u64) -> Vec<f32> {
        let std = 1.0 / (k as f32).sqrt();
        (0..k * n)
            .map(|i| {
                let gain = self
                    .column_gain
                    .get((i % n) as usize)
                    .copied()
                    .unwrap_or(1.0);
                self.draw() * std * gain
            })
            .collect()
    }

    /// `m` token ids, uniform over a vocabulary of `vocab`.
    pub fn ids(&mut self, m: u64, vocab: u32) -> Vec<u32> {
        (0..m).map(|_| self.rng.random_range(0..vocab)).collect()
    }
}

/// How a point's input values are distributed.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Dist {
    /// Uniform in [-1, 1) (the weight in +-1/sqrt(dim)): the lab's historical data.
    #[default]
    Uniform,
    /// Standard normal (the weight with standard deviation 1/sqrt(dim)).
    Normal,
    /// Normal, as a trained LLM's layers see it: a few activation channels
    /// (6 in 4096) 20x larger than the rest, and weight columns whose scales
    /// spread log-normally (see the constants above for the sources).
    Llm,
}

impl Dist {
    /// Every distribution, in a stable order.
    pub const ALL: [Dist; 3] = [Dist::Uniform, Dist::Normal, Dist::Llm];

    /// The name used on the command line and in records.
    pub fn name(self) -> &'static str {
        match self {
            Dist::Uniform => "uniform",
            Dist::Normal => "normal",
            Dist::Llm => "llm",
        }
    }
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dist {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dist::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| LabError::invalid("dist", s, "expected uniform, normal or llm"))
    }
}

/// The factor activations and table rows are multiplied by: 1 for the data as
/// drawn, larger to push values toward a format's largest finite value (FP16's
/// 65504), smaller toward its subnormals. A finite positive number; compared,
/// ordered and hashed by value, so it can name a point.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Scale(f64);

impl Scale {
    /// The data as drawn.
    pub const ONE: Scale = Scale(1.0);

    /// A scale, if `v` is finite and within 1e-30..1e30 (so the scaled f32
    /// inputs stay finite before any rounding).
    pub fn new(v: f64) -> Result<Scale, LabError> {
        if v.is_finite() && (1e-30..=1e30).contains(&v) {
            Ok(Scale(v))
        } else {
            Err(LabError::invalid(
                "scale",
                &v.to_string(),
                "expected a positive number between 1e-30 and 1e30",
            ))
        }
    }

    /// The factor.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for Scale {
    fn default() -> Self {
        Scale::ONE
    }
}

impl TryFrom<f64> for Scale {
    type Error = LabError;
    fn try_from(v: f64) -> Result<Self, Self::Error> {
        Scale::new(v)
    }
}

impl From<Scale> for f64 {
    fn from(s: Scale) -> f64 {
        s.0
    }
}

impl Eq for Scale {}

impl PartialOrd for Scale {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scale {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl std::hash::Hash for Scale {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Scale {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v: f64 = s
            .trim()
            .parse()
            .map_err(|_| LabError::invalid("scale", s, "expected a positive number"))?;
        Scale::new(v)
    }
}

/// What a point's input data looks like: its distribution and scale.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Data {
    /// The distribution values are drawn from.
    pub dist: Dist,
    /// The factor on activations and table rows.
    pub scale: Scale,
}

impl Data {
    /// Whether this is the lab's historical data (uniform, scale 1).
    pub fn is_default(&self) -> bool {
        *self == Data::default()
    }
}

impl fmt::Display for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scale == Scale::ONE {
            write!(f, "{}", self.dist)
        } else {
            write!(f, "{} x{}", self.dist, self.scale)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_ones_are_refused() {
        for d in Dist::ALL {
            assert_eq!(d.to_string().parse::<Dist>().unwrap(), d);
        }
        assert_eq!(" 2.5 ".parse::<Scale>().unwrap().get(), 2.5);
        assert!("-1".parse::<Scale>().is_err() && "1e-31".parse::<Scale>().is_err());
        assert_eq!(Scale::new(1e-30).unwrap().get(), 1e-30);
        assert_eq!(Scale::new(1e30).unwrap().get(), 1e30);
        assert!(Scale::try_from(0.5).unwrap() < Scale::ONE);
        assert_eq!(f64::from(Scale::new(3.0).unwrap()), 3.0);
        let data = Data {
            dist: Dist::Llm,
            scale: Scale::new(64.0).unwrap(),
        };
        assert_eq!(data.to_string(), "llm x64");
        assert_eq!(Data::default().to_string(), "uniform");
        assert!(Data::default().is_default() && !data.is_default());
        use std::collections::HashSet;
        let set: HashSet<Scale> = [1.0, 1.0, 2.0].map(|v| Scale::new(v).unwrap()).into();
        assert_eq!(set.len(), 2);
        use std::hash::{BuildHasher, RandomState};
        let h = RandomState::new();
        assert_ne!(
            h.hash_one(Scale::new(1.0).unwrap()),
            h.hash_one(Scale::new(2.0).unwrap())
        );
    }

    #[test]
    fn scale_is_validated_and_ordered() {
        assert!(Scale::new(0.0).is_err());
        assert!(Scale::new(f64::NAN).is_err());
        assert!(Scale::new(1e31).is_err());
        assert!("64".parse::<Scale>().unwrap() > Scale::ONE);
        assert!("x".parse::<Dist>().unwrap_err().to_string().contains("llm"));
    }

    /// The stream of a projection's inputs: activations, then the weight.
    fn projection(dist: Dist, seed: u64, m: u64, k: u64, n: u64) -> (Vec<f32>, Vec<f32>) {
        let data = Data {
            dist,
            scale: Scale::ONE,
        };
        let mut d = Draws::new(seed, data, k, Some(n));
        let x = d.activations(m * k);
        (x, d.weight(k, n))
    }

    /// The streams are part of the results' meaning (a point re-run draws the
    /// same data): these values are pinned, for each distribution.
    #[test]
    fn streams_are_pinned() {
        let mut got = Vec::new();
        for dist in Dist::ALL {
            let (x, w) = projection(dist, 3, 2, 4096, 8);
            let outliers: Vec<usize> = (0..4096)
                .filter(|&c| x[c].abs() > 8.0 || x[4096 + c].abs() > 8.0)
                .collect();
            got.push((dist, [x[0], x[4097], w[0], w[9], w[8 * 4095 + 7]], outliers));
        }
        let want = [
            (
                Dist::Uniform,
                [
                    -0.78329754,
                    -0.4725635,
                    -0.0018172562,
                    0.0024558902,
                    0.012649871,
                ],
                vec![],
            ),
            (
                Dist::Normal,
                [
                    0.4387562,
                    -1.0639191,
                    -0.010198665,
                    0.0112921335,
                    0.008688495,
                ],
                vec![],
            ),
            // The weight's columns scaled log-normally; 6 outlier channels of 4096.
            (
                Dist::Llm,
                [
                    0.4387562,
                    -1.0639191,
                    -0.011872206,
                    0.009605825,
                    0.004100141,
                ],
                vec![724, 1308, 2245, 2467, 2489, 4000],
            ),
        ];
        assert_eq!(got, want);
        // A seed whose low bits meet the layout stream's own constant.
        let (x, _) = projection(Dist::Llm, 0x100, 2, 4096, 8);
        let outliers: Vec<usize> = (0..4096)
            .filter(|&c| x[c].abs() > 8.0 || x[4096 + c].abs() > 8.0)
            .collect();
        assert_eq!(outliers, [795, 2331, 2548, 2999, 3761]);
    }

    #[test]
    fn distributions_have_their_shape() {
        let (uniform, w) = projection(Dist::Uniform, 3, 64, 4096, 8);
        assert!(uniform.iter().all(|v| (-1.0..1.0).contains(v)));
        // The weight's spread is 1/sqrt(K): uniform within +-1/64 at K = 4096.
        assert!(w.iter().all(|v| v.abs() < 1.0 / 64.0));
        let (normal, _) = projection(Dist::Normal, 3, 64, 4096, 8);
        let var = normal.iter().map(|v| (v * v) as f64).sum::<f64>() / normal.len() as f64;
        assert!((0.95..1.05).contains(&var), "variance {var}");
        let data = Data {
            dist: Dist::Llm,
            scale: Scale::new(8.0).unwrap(),
        };
        let llm = Draws::new(3, data, 4096, Some(8)).activations(64 * 4096);
        // Channel magnitudes: a few are ~20x the median.
        let mut rms: Vec<f64> = (0..4096)
            .map(|c| {
                let s: f64 = (0..64).map(|r| (llm[r * 4096 + c] as f64).powi(2)).sum();
                (s / 64.0).sqrt()
            })
            .collect();
        rms.sort_by(f64::total_cmp);
        let median = rms[2048];
        assert!((6.0..10.0).contains(&median), "median channel rms {median}");
        let big = rms.iter().filter(|&&r| r > 10.0 * median).count();
        assert!((1..=6).contains(&big), "{big} outlier channels");
    }

    #[test]
    fn ids_stay_inside_the_vocabulary_and_the_stream_is_reproducible() {
        let draw = |seed| Draws::new(seed, Data::default(), 4, None).ids(1000, 10);
        let a = draw(7);
        assert!(a.iter().all(|&i| i < 10));
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
    }
}

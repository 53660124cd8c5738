//! The GPU's SM clock while a point's samples ran, as the driver reported it
//! between samples, and the warning when it was far below the card's maximum.
//!
//! A GPU lowers its clocks when idle and raises them under load; a point
//! sampled while the card is still climbing back (after seconds of host-side
//! verification, say) or while it is held down by power or heat times a
//! slower card than the one it reports. The machine state before and after a
//! run cannot show that for one point: these readings, taken by the
//! measurement engine around the samples themselves, can.

use serde::{Deserialize, Serialize};

/// Below this share of the card's maximum SM clock, a point's samples get a
/// warning: a loaded GPU under its power limit stays well above it.
pub const SLOW_CLOCK_SHARE: f64 = 0.8;

/// How the slow-clock warning begins (pooling rounds replaces it by this).
pub const WARNING_PREFIX: &str = "slow GPU clock:";

/// The SM clock over one point's samples, MHz.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleClocks {
    /// Read just before the first sample (after the warm-up).
    pub first: u32,
    /// The lowest reading.
    pub min: u32,
    /// The highest reading.
    pub max: u32,
    /// Read just after the last sample.
    pub last: u32,
    /// How many readings these summarise.
    pub readings: u32,
    /// The highest SM clock the card may run at, where the driver says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_max: Option<u32>,
    /// Busy warm-up run before the samples because the clock read under
    /// [`SLOW_CLOCK_SHARE`] of the maximum after the warm-up, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifted_ms: Option<f64>,
}

impl SampleClocks {
    /// The summary of `readings` taken in order; `None` when there are none
    /// (no driver to ask: software devices, Apple GPUs, a card whose driver
    /// has no clock file).
    pub fn from_readings(readings: &[u32], card_max: Option<u32>) -> Option<Self> {
        let (&first, &last) = (readings.first()?, readings.last()?);
        Some(SampleClocks {
            first,
            min: *readings.iter().min()?,
            max: *readings.iter().max()?,
            last,
            readings: readings.len() as u32,
            card_max,
            lifted_ms: None,
        })
    }

    /// This point's clocks with a later pass's (pooled rounds): the range
    /// over both, the first pass's first reading and the later one's last.
    pub fn pooled(self, later: SampleClocks) -> Self {
        SampleClocks {
            first: self.first,
            min: self.min.min(later.min),
            max: self.max.max(later.max),
            last: later.last,
            readings: self.readings + later.readings,
            card_max: self.card_max.or(later.card_max),
            lifted_ms: match (self.lifted_ms, later.lifted_ms) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
            },
        }
    }

    /// Whether the clock read below [`SLOW_CLOCK_SHARE`] of the card's
    /// maximum (never where the maximum is unknown).
    pub fn is_slow(&self) -> bool {
        self.card_max
            .is_some_and(|m| m > 0 && (self.min as f64) < SLOW_CLOCK_SHARE * m as f64)
    }

    /// The warning for samples taken with the clock below
    /// [`SLOW_CLOCK_SHARE`] of the card's maximum; `None` when it stayed
    /// above, or the maximum is unknown.
    pub fn warning(&self) -> Option<String> {
        if !self.is_slow() {
            return None;
        }
        let card_max = self.card_max?;
        let lift = self.lifted_ms.map_or(String::new(), |ms| {
            format!("; {ms:.0} ms of back-to-back runs before the samples did not keep it up")
        });
        Some(format!(
            "{WARNING_PREFIX} the SM clock read {} MHz between samples ({} before the first, {} after the last; the card's maximum is {card_max} MHz{lift}): the card was still waking from idle, its driver kept it low under so light a load, or power or heat held it down (see the machine state's throttle reasons), so these timings may be slower than the card at full clock",
            self.min,
            self.first,
            self.last
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_summarised_in_order() {
        let c = SampleClocks::from_readings(&[345, 1980, 1410, 1755], Some(1980)).unwrap();
        assert_eq!((c.first, c.min, c.max, c.last), (345, 345, 1980, 1755));
        assert_eq!(c.readings, 4);
        assert_eq!(SampleClocks::from_readings(&[], Some(1980)), None);
    }

    /// Planted: the threshold compared against `max` or `last` instead of
    /// `min` -> the dip in the middle passes unwarned -> fails.
    #[test]
    fn a_clock_that_dipped_below_the_share_is_warned_about() {
        let dipped = SampleClocks::from_readings(&[1980, 1500, 1980], Some(1980)).unwrap();
        let w = dipped.warning().expect("1500 of 1980 MHz is under 80%");
        assert!(
            w.contains("1500 MHz") && w.contains("1980 MHz"),
            "names the reading and the maximum: {w}"
        );
        let steady = SampleClocks::from_readings(&[1980, 1600, 1755], Some(1980)).unwrap();
        assert_eq!(steady.warning(), None, "1600 of 1980 is above 80%");
        let lifted = SampleClocks {
            lifted_ms: Some(212.0),
            ..dipped
        };
        assert!(lifted
            .warning()
            .unwrap()
            .contains("212 ms of back-to-back runs"));
        // Exactly 80% is not under it.
        let at = |mhz: u32| SampleClocks::from_readings(&[mhz], Some(1980)).unwrap();
        assert!(!at(1584).is_slow() && at(1583).is_slow());
        let unknown = SampleClocks::from_readings(&[345], None).unwrap();
        assert_eq!(unknown.warning(), None, "no maximum, no verdict");
    }

    #[test]
    fn pooled_rounds_span_both() {
        let a = SampleClocks::from_readings(&[1700, 1980], Some(1980)).unwrap();
        let b = SampleClocks::from_readings(&[900, 1500, 1800], None).unwrap();
        let p = a.pooled(b);
        assert_eq!((p.first, p.min, p.max, p.last), (1700, 900, 1980, 1800));
        assert_eq!((p.readings, p.card_max), (5, Some(1980)));
        // Lifting time adds up over the passes that needed it.
        let lift = |c: SampleClocks, ms: Option<f64>| SampleClocks { lifted_ms: ms, ..c };
        assert_eq!(a.pooled(b).lifted_ms, None);
        assert_eq!(
            lift(a, Some(30.0)).pooled(lift(b, Some(12.5))).lifted_ms,
            Some(42.5)
        );
        assert_eq!(a.pooled(lift(b, Some(12.5))).lifted_ms, Some(12.5));
        assert_eq!(lift(a, Some(30.0)).pooled(b).lifted_ms, Some(30.0));
    }
}

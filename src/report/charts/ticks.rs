//! Axis scales and tick positions: a log axis only where the data spans 10x
//! or more, ticks at 1-2-5 steps (never decades alone, which leave a narrow
//! panel with no number), or at the data's own values (the dims swept) where
//! there are few of them, so no axis reads "614.4" between two dims.

/// How an axis maps values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Logarithmic where every value is positive and they span 10x or more,
    /// else linear.
    Auto,
    /// Always linear.
    Linear,
    /// Logarithmic where every value is positive, else linear.
    Log,
}

/// The smallest and largest finite values (positive ones only when `positive`).
pub fn extent(values: impl IntoIterator<Item = f64>, positive: bool) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite() && (!positive || *v > 0.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    (lo <= hi).then_some((lo, hi))
}

/// Whether `scale` draws `values` on a log axis.
pub fn is_log(scale: Scale, values: &[f64]) -> bool {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() || finite.iter().any(|v| *v <= 0.0) {
        return false;
    }
    let (lo, hi) = extent(finite.iter().copied(), true).expect("non-empty");
    match scale {
        Scale::Linear => false,
        Scale::Log => true,
        Scale::Auto => hi / lo >= 10.0,
    }
}

/// Ticks at 1, 2 and 5 times each power of ten within `lo..=hi` (decades
/// alone over more than four decades; 1 to 9 when 1-2-5 gives fewer than
/// three, linear steps when even that does).
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let within = |mults: &[f64]| -> Vec<f64> {
        let (e0, e1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        let mut v = Vec::new();
        for e in e0.max(-300)..=e1.min(300) {
            for m in mults {
                let t = m * 10f64.powi(e);
                // Relative slack, so an end that is itself a tick survives rounding.
                if t >= lo * (1.0 - 1e-9) && t <= hi * (1.0 + 1e-9) {
                    v.push(t);
                }
            }
        }
        v
    };
    let v = within(&[1.0, 2.0, 5.0]);
    if v.len() > 12 {
        // Many decades: 1-2-5 would crowd a panel; decades alone still read.
        let d = within(&[1.0]);
        if d.len() >= 3 {
            return d;
        }
    }
    if v.len() >= 3 {
        return v;
    }
    let v = within(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    if v.len() >= 3 {
        return v;
    }
    linear_ticks(lo, hi)
}

/// Four to ten ticks at a 1-2-5 step within `lo..=hi` (three where the
/// range allows no more).
pub fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return vec![lo];
    }
    let count = |step: f64| (hi / step + 1e-9).floor() - (lo / step - 1e-9).ceil() + 1.0;
    let mag = 10f64.powf(span.log10().floor());
    // Steps from coarse to fine: the first with four ticks or more.
    let steps = [2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01].map(|m| m * mag);
    let step = steps
        .iter()
        .copied()
        .find(|&s| count(s) >= 4.0)
        .unwrap_or(steps[steps.len() - 1]);
    let mut v = Vec::new();
    let mut k = (lo / step - 1e-9).ceil();
    while k * step <= hi + step * 1e-9 && v.len() < 40 {
        // Snap values that should be 0 (e.g. -1e-17) to 0.
        let t = k * step;
        v.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        k += 1.0;
    }
    v
}

/// The distinct values of `values`, sorted; thinned to at most `max` (first
/// and last kept) when there are more.
pub fn data_ticks(values: impl IntoIterator<Item = f64>, max: usize) -> Vec<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v.dedup_by(|a, b| (*a - *b).abs() <= 1e-12 * b.abs().max(1e-300));
    if v.len() <= max || max < 2 {
        return v;
    }
    let step = (v.len() - 1) as f64 / (max - 1) as f64;
    let mut out: Vec<f64> = (0..max)
        .map(|i| v[(i as f64 * step).round() as usize])
        .collect();
    out.dedup();
    out
}

/// A short tick label: integers plainly, small and large values compactly.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e6).contains(&a) {
        let s = format!("{v:.1e}");
        // 2.0e-5 reads 2e-5.
        s.replace(".0e", "e")
    } else if (v - v.round()).abs() < 1e-9 * a.max(1.0) {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_axis_inside_one_decade_still_has_three_labelled_ticks() {
        // seed-embedding-cpu-f16's latency panel: 0.11..0.19 ms had no tick.
        assert!(
            log_ticks(0.11, 0.19).len() >= 3,
            "{:?}",
            log_ticks(0.11, 0.19)
        );
        assert_eq!(
            log_ticks(0.9, 110.0),
            vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        );
    }

    #[test]
    fn the_scale_is_log_only_over_ten_x() {
        assert!(!is_log(Scale::Auto, &[90.0, 100.0]));
        assert!(is_log(Scale::Auto, &[1.0, 10.0]));
        assert!(!is_log(Scale::Log, &[0.0, 10.0]));
        assert!(!is_log(Scale::Linear, &[1.0, 1000.0]));
    }

    #[test]
    fn linear_ticks_step_one_two_five() {
        assert_eq!(
            linear_ticks(90.0, 100.0),
            vec![90.0, 92.0, 94.0, 96.0, 98.0, 100.0]
        );
        let t = linear_ticks(-0.3, 1.2);
        assert!(t.contains(&0.0) && t.len() >= 4, "{t:?}");
    }

    #[test]
    fn data_ticks_keep_the_values_and_thin_past_the_limit() {
        assert_eq!(
            data_ticks([256.0, 128.0, 256.0, 1024.0], 10),
            vec![128.0, 256.0, 1024.0]
        );
        let many = data_ticks((1..=40).map(f64::from), 8);
        assert_eq!(many.len(), 8);
        assert_eq!((many[0], many[7]), (1.0, 40.0));
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(fmt_num(2e-5), "2e-5");
        assert_eq!(fmt_num(1024.0), "1024");
        assert_eq!(fmt_num(0.25), "0.25");
        assert_eq!(fmt_num(1.5e7), "1.5e7");
    }
}

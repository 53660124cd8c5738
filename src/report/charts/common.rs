//! What the chart functions share: their return type, the software-device
//! note of a title, and faceting a panel's series into groups.

use std::path::PathBuf;

use super::panel::{self, Series};
use crate::backend::BackendKind;
use crate::results::Record;

/// What a chart function returns: the files it wrote (none when the records
/// hold no data for it).
pub type Chart = Result<Vec<PathBuf>, Box<dyn std::error::Error>>;

pub fn software_note(records: &[Record]) -> &'static str {
    if records
        .iter()
        .any(|r| r.id.backend == BackendKind::Gpu && r.software_device)
    {
        " (GPU = software device: CPU timings)"
    } else {
        ""
    }
}

/// `series` in groups of at most [`panel::MAX_SERIES`], sorted by label
/// (numbers by value): a chart draws one panel per group instead of
/// dropping series or burying the data under its legend.
pub fn facet(mut series: Vec<Series>) -> Vec<Vec<Series>> {
    series.sort_by(|a, b| panel::natural_cmp(&a.label, &b.label));
    let n = series.len().div_ceil(panel::MAX_SERIES).max(1);
    // Even groups: 9 series make 5 + 4, not 8 + 1.
    let per = series.len().div_ceil(n).max(1);
    let mut out = Vec::new();
    while !series.is_empty() {
        let rest = series.split_off(per.min(series.len()));
        out.push(std::mem::replace(&mut series, rest));
    }
    out
}

/// The caption of part `i` of `n` of a faceted panel.
pub fn part(caption: &str, i: usize, n: usize) -> String {
    if n > 1 {
        format!("{caption} ({}/{n})", i + 1)
    } else {
        caption.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facets_hold_every_series_in_even_groups() {
        let s: Vec<Series> = (0..18).map(|i| Series::new(format!("B{i}"), "k")).collect();
        let f = facet(s);
        assert_eq!(f.iter().map(Vec::len).collect::<Vec<_>>(), [6, 6, 6]);
        assert_eq!(f[0][0].label, "B0");
        assert_eq!(f[2][5].label, "B17");
        assert_eq!(part("speed", 1, 3), "speed (2/3)");
        assert_eq!(part("speed", 0, 1), "speed");
    }
}

//! Colours: one meaning per colour across a report. A series' colour comes
//! from its key ("f16", "B8", "cpu f32"), handed out in the order keys first
//! appear while a report is drawn, from a palette that reads on white (no
//! yellow, nothing paler than mid-grey); [`reset`] starts a report afresh.

use std::cell::RefCell;

use plotters::style::RGBColor;

/// Twelve colours with at least 3:1 contrast on white, distinguishable side
/// by side (Okabe-Ito's darker members first, then Tableau's, darkened).
const PALETTE: [RGBColor; 12] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 140, 100),   // bluish green
    RGBColor(170, 68, 153),  // reddish purple
    RGBColor(0, 0, 0),       // black
    RGBColor(86, 60, 160),   // violet
    RGBColor(140, 86, 75),   // brown
    RGBColor(30, 110, 130),  // teal
    RGBColor(200, 30, 60),   // crimson
    RGBColor(110, 110, 110), // grey
    RGBColor(60, 120, 30),   // olive green
    // Last: beside vermillion it reads as its shade.
    RGBColor(190, 110, 0), // dark orange
];

thread_local! {
    static KEYS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Forgets every key: the next report hands out colours from the start.
pub fn reset() {
    KEYS.with(|k| k.borrow_mut().clear());
}

/// The colour of `key` in the report being drawn: the same key, the same
/// colour, in every chart (keys past the twelfth reuse colours in order).
pub fn colour(key: &str) -> RGBColor {
    KEYS.with(|k| {
        let mut keys = k.borrow_mut();
        let i = match keys.iter().position(|x| x == key) {
            Some(i) => i,
            None => {
                keys.push(key.to_string());
                keys.len() - 1
            }
        };
        PALETTE[i % PALETTE.len()]
    })
}

/// The grey of reference lines (ceilings, "1x"), never a series colour.
pub const REFERENCE: RGBColor = RGBColor(150, 150, 150);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_keeps_its_colour_and_keys_differ() {
        reset();
        let a = colour("f16");
        let b = colour("B8");
        assert_ne!(a, b);
        assert_eq!(colour("f16"), a);
        reset();
        assert_eq!(colour("B8"), a, "reset starts the palette afresh");
    }

    #[test]
    fn no_colour_is_pale_on_white() {
        // Relative luminance (sRGB, approximately): contrast with white >= 3.
        for c in PALETTE.iter().chain([&REFERENCE]) {
            let lin = |v: u8| {
                let s = v as f64 / 255.0;
                if s <= 0.04045 {
                    s / 12.92
                } else {
                    ((s + 0.055) / 1.055).powf(2.4)
                }
            };
            let l = 0.2126 * lin(c.0) + 0.7152 * lin(c.1) + 0.0722 * lin(c.2);
            let contrast = 1.05 / (l + 0.05);
            let min = if *c == REFERENCE { 2.5 } else { 3.0 };
            assert!(contrast >= min, "{c:?}: contrast {contrast:.2}");
        }
    }
}

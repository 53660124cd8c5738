//! One panel of a chart: series of points with their uncertainty, points
//! that were not measured marked where they would be, reference lines that
//! are not data, ticks from [`super::ticks`], and the legend beside the plot
//! (never over the data), every entry in it sorted as the caller gave them.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::canvas::FONT;
use super::canvas::{fit, title, Notes, PanelMeta};
use super::palette::{self, REFERENCE};
use super::ticks::{self, Scale};

/// A point: where, the range its uncertainty spans (drawn as a bar), and its
/// tooltip.
#[derive(Clone, Debug)]
pub struct Pt {
    pub x: f64,
    pub y: f64,
    pub band: Option<(f64, f64)>,
    pub tip: String,
}

impl Pt {
    pub fn new(x: f64, y: f64) -> Self {
        Pt {
            x,
            y,
            band: None,
            tip: String::new(),
        }
    }
    pub fn band(mut self, lo: f64, hi: f64) -> Self {
        if lo.is_finite() && hi.is_finite() && lo <= hi {
            self.band = Some((lo, hi));
        }
        self
    }
    pub fn tip(mut self, tip: impl Into<String>) -> Self {
        self.tip = tip.into();
        self
    }
}

/// How a series' points are marked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Marker {
    #[default]
    Circle,
    Triangle,
    Square,
    /// A line alone (a ceiling).
    None,
}

/// One line of data.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    /// What its colour means across the report ("f16", "B8"): see palette.
    pub colour_key: String,
    pub points: Vec<Pt>,
    /// Points of this series that were not measured: x and why.
    pub missing: Vec<(f64, String)>,
    pub dashed: bool,
    pub marker: Marker,
    /// Whether the points are joined (not for a scatter).
    pub line: bool,
}

impl Series {
    pub fn new(label: impl Into<String>, colour_key: impl Into<String>) -> Self {
        Series {
            label: label.into(),
            colour_key: colour_key.into(),
            points: Vec::new(),
            missing: Vec::new(),
            dashed: false,
            marker: Marker::Circle,
            line: true,
        }
    }
}

/// A panel: its caption, axes, series and what is drawn beside the data.
#[derive(Clone, Debug)]
pub struct Panel {
    pub caption: String,
    pub x_desc: String,
    pub y_desc: String,
    pub x_scale: Scale,
    pub y_scale: Scale,
    /// Ticks at the data's x values (dims, batches) rather than 1-2-5 steps.
    pub x_at_data: bool,
    /// A linear y axis starts at 0.
    pub y_from_zero: bool,
    pub series: Vec<Series>,
    /// Horizontal reference lines (not data): y and what they mean.
    pub refs: Vec<(f64, String)>,
    /// Points ringed in black, and what the ring means.
    pub marks: Vec<(f64, f64)>,
    pub marks_label: String,
    /// Named positions along a linear x axis (a model's layers at 1, 2, ...):
    /// when set, the x ticks are exactly these names.
    pub x_names: Vec<(f64, String)>,
}

impl Panel {
    pub fn new(caption: impl Into<String>, x_desc: &str, y_desc: &str) -> Self {
        Panel {
            caption: caption.into(),
            x_desc: x_desc.into(),
            y_desc: y_desc.into(),
            x_scale: Scale::Auto,
            y_scale: Scale::Auto,
            x_at_data: true,
            y_from_zero: false,
            series: Vec::new(),
            refs: Vec::new(),
            marks: Vec::new(),
            marks_label: String::new(),
            x_names: Vec::new(),
        }
    }

    /// Whether any series has a point to draw.
    pub fn has_data(&self) -> bool {
        self.series.iter().any(|s| !s.points.is_empty())
    }
}

/// The most series one panel holds before a chart should facet.
pub const MAX_SERIES: usize = 8;

/// An axis in drawing space: log10 of the values on a log axis.
struct Axis {
    log: bool,
    range: std::ops::Range<f64>,
    ticks: Vec<(f64, String)>,
}

impl Axis {
    fn t(&self, v: f64) -> f64 {
        if self.log {
            v.log10()
        } else {
            v
        }
    }

    /// Ticks at the data's values with `at_data`; a `horizontal` axis's
    /// labels sit side by side, and are thinned where they would touch.
    fn new(values: &[f64], scale: Scale, at_data: bool, from_zero: bool, horizontal: bool) -> Axis {
        let log = ticks::is_log(scale, values);
        let (mut lo, mut hi) = ticks::extent(values.iter().copied(), log).unwrap_or((0.0, 1.0));
        if from_zero && !log {
            lo = lo.min(0.0);
        }
        if hi <= lo {
            // One value: a range around it, so the axis still has ticks.
            (lo, hi) = if lo == 0.0 {
                (-1.0, 1.0)
            } else {
                (lo - lo.abs() * 0.5, hi + hi.abs() * 0.5)
            };
        }
        let nice = |lo: f64, hi: f64| {
            let v = if log {
                ticks::log_ticks(lo, hi)
            } else {
                ticks::linear_ticks(lo, hi)
            };
            if v.len() >= 3 {
                v
            } else {
                ticks::linear_ticks(lo, hi)
                    .into_iter()
                    .filter(|t| !log || *t > 0.0)
                    .collect()
            }
        };
        let mut t = if at_data {
            ticks::data_ticks(values.iter().copied().filter(|v| !log || *v > 0.0), 10)
        } else {
            Vec::new()
        };
        if t.len() < 3 {
            // Too few values to label the axis: 1-2-5 steps instead (mixing
            // the two would print 1000 over 1024).
            t = nice(lo, hi);
        }
        let tf = |v: f64| if log { v.log10() } else { v };
        // Ends plotters can map: a corrupt file's +-f64::MAX would make the
        // span infinite.
        let (a, b) = (tf(lo).clamp(-1e300, 1e300), tf(hi).clamp(-1e300, 1e300));
        let span = b - a;
        let pad = if span > 0.0 {
            span * 0.06
        } else {
            a.abs().max(1.0) * 0.1
        };
        // Ticks that fall outside the padded range (a forced 1-2-5 fill) go.
        let range = (a - pad)..(b + pad);
        let ticks: Vec<(f64, String)> = t
            .into_iter()
            .filter(|v| range.contains(&tf(*v)))
            .map(|v| (tf(v), ticks::fmt_num(v)))
            .collect();
        // A label takes about 2% of a panel's width per character.
        let chars = ticks.iter().map(|t| t.1.len()).max().unwrap_or(1) as f64;
        let ticks = if horizontal {
            spaced(ticks, (range.end - range.start) * (0.02 * chars).max(0.05))
        } else {
            ticks
        };
        Axis { log, range, ticks }
    }

    /// A linear axis whose ticks are `names` at their positions, half a step
    /// of room at each end.
    fn named(names: &[(f64, String)]) -> Axis {
        let (lo, hi) = names
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), n| {
                (a.min(n.0), b.max(n.0))
            });
        Axis {
            log: false,
            range: (lo - 0.5)..(hi + 0.5),
            ticks: names.to_vec(),
        }
    }

    fn label(&self, v: f64) -> String {
        self.ticks
            .iter()
            .min_by(|a, b| (a.0 - v).abs().total_cmp(&(b.0 - v).abs()))
            .map_or_else(|| ticks::fmt_num(v), |t| t.1.clone())
    }
}

/// A linear coordinate whose ticks are exactly the given key points
/// (plotters' own pick their count from the pixel size).
#[derive(Clone, Debug)]
pub struct Keyed {
    pub range: std::ops::Range<f64>,
    pub keys: Vec<f64>,
}

impl Keyed {
    pub fn new(range: std::ops::Range<f64>, keys: Vec<f64>) -> Self {
        Keyed { range, keys }
    }
}

impl Ranged for Keyed {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        let f = if span > 0.0 {
            (v - self.range.start) / span
        } else {
            0.5
        };
        // Far outside the range (a reference line's end): clamped, so the
        // pixel arithmetic cannot overflow.
        limit.0 + (f.clamp(-10.0, 10.0) * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.keys.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

/// Drops ticks closer than `gap` (drawing units) to the one kept before them,
/// so data values such as 90, 96 and 100 cannot print over each other; the
/// last tick is kept (its neighbour goes instead), and at least three remain
/// where three were given.
fn spaced(ticks: Vec<(f64, String)>, gap: f64) -> Vec<(f64, String)> {
    if ticks.len() <= 3 {
        return ticks;
    }
    let mut kept: Vec<(f64, String)> = Vec::new();
    let last = ticks.len() - 1;
    let all = ticks.clone();
    for (i, t) in ticks.into_iter().enumerate() {
        match kept.last() {
            Some(k) if t.0 - k.0 < gap => {
                if i == last && kept.len() > 1 {
                    kept.pop();
                    kept.push(t);
                }
            }
            _ => kept.push(t),
        }
    }
    if kept.len() < 3 {
        // First, middle and last: three labels however crowded.
        return vec![all[0].clone(), all[last / 2].clone(), all[last].clone()];
    }
    kept
}

/// A legend row: text, colour and how its sample is drawn.
enum Sample {
    /// Dashed, marker, joined.
    Line(bool, Marker, bool),
    Cross,
    Ring,
    Reference,
}

/// Draws `panel` on `area`, recording tooltips and what it drew in `notes`.
pub fn draw(
    area: &DrawingArea<SVGBackend, Shift>,
    panel: &Panel,
    notes: &mut Notes,
) -> Result<(), Box<dyn std::error::Error>> {
    let area = title(area, &panel.caption, 15.0)?;
    let (w, h) = area.dim_in_pixel();

    // The legend: beside the plot, as wide as its longest entry allows.
    let mut rows: Vec<(String, RGBColor, Sample)> = panel
        .series
        .iter()
        .map(|s| {
            (
                s.label.clone(),
                palette::colour(&s.colour_key),
                Sample::Line(s.dashed, s.marker, s.line),
            )
        })
        .collect();
    if panel.series.iter().any(|s| !s.missing.is_empty()) {
        rows.push((
            "x  not measured (cut or skipped)".into(),
            BLACK,
            Sample::Cross,
        ));
    }
    for (_, what) in &panel.refs {
        rows.push((what.clone(), REFERENCE, Sample::Reference));
    }
    if !panel.marks.is_empty() {
        rows.push((panel.marks_label.clone(), BLACK, Sample::Ring));
    }
    let longest = rows
        .iter()
        .map(|r| super::canvas::text_width(&r.0, 12.0))
        .fold(0.0, f64::max);
    let legend_w = (longest + 40.0).clamp(90.0, w as f64 * 0.42) as u32;
    let (plot, legend) = area.split_horizontally(w - legend_w);

    let xs: Vec<f64> = panel
        .series
        .iter()
        .flat_map(|s| {
            s.points
                .iter()
                .map(|p| p.x)
                .chain(s.missing.iter().map(|m| m.0))
        })
        .filter(|v| v.is_finite())
        .collect();
    let ys: Vec<f64> = panel
        .series
        .iter()
        .flat_map(|s| {
            s.points.iter().flat_map(|p| {
                [p.y]
                    .into_iter()
                    .chain(p.band.into_iter().flat_map(|b| [b.0, b.1]))
            })
        })
        .chain(panel.refs.iter().map(|r| r.0))
        .filter(|v| v.is_finite())
        .collect();
    let x = if panel.x_names.is_empty() {
        Axis::new(&xs, panel.x_scale, panel.x_at_data, false, true)
    } else {
        Axis::named(&panel.x_names)
    };
    let y = Axis::new(&ys, panel.y_scale, false, panel.y_from_zero, false);
    let fits = |v: f64, a: &Axis| v.is_finite() && (!a.log || v > 0.0);

    let xk: Vec<f64> = x.ticks.iter().map(|t| t.0).collect();
    let yk: Vec<f64> = y.ticks.iter().map(|t| t.0).collect();
    let mut chart = ChartBuilder::on(&plot)
        .margin(8)
        .margin_right(16)
        .x_label_area_size(44)
        .y_label_area_size(66)
        .build_cartesian_2d(
            Keyed::new(x.range.clone(), xk.clone()),
            Keyed::new(y.range.clone(), yk.clone()),
        )?;
    let xl = |v: &f64| x.label(*v);
    let yl = |v: &f64| y.label(*v);
    chart
        .configure_mesh()
        .x_desc(panel.x_desc.as_str())
        .y_desc(panel.y_desc.as_str())
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .x_labels(xk.len() + 1)
        .y_labels(yk.len() + 1)
        .x_label_formatter(&xl)
        .y_label_formatter(&yl)
        .bold_line_style(RGBColor(230, 230, 230))
        .light_line_style(TRANSPARENT)
        .draw()?;

    for (v, _) in &panel.refs {
        if fits(*v, &y) {
            let ty = y.t(*v);
            chart.draw_series(DashedLineSeries::new(
                [(x.range.start, ty), (x.range.end, ty)],
                6,
                4,
                REFERENCE.stroke_width(2),
            ))?;
        }
    }
    let bottom = y.range.start + (y.range.end - y.range.start) * 0.03;
    for s in &panel.series {
        let c = palette::colour(&s.colour_key);
        let mut pts: Vec<&Pt> = s
            .points
            .iter()
            .filter(|p| fits(p.x, &x) && fits(p.y, &y))
            .collect();
        pts.sort_by(|a, b| a.x.total_cmp(&b.x));
        let line: Vec<(f64, f64)> = pts.iter().map(|p| (x.t(p.x), y.t(p.y))).collect();
        if s.line && s.dashed {
            chart.draw_series(DashedLineSeries::new(line.clone(), 7, 4, c.stroke_width(2)))?;
        } else if s.line {
            chart.draw_series(LineSeries::new(line.clone(), c.stroke_width(2)))?;
        }
        for p in &pts {
            let at = (x.t(p.x), y.t(p.y));
            if let Some((lo, hi)) = p.band.filter(|b| fits(b.0, &y) && fits(b.1, &y)) {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(at.0, y.t(lo)), (at.0, y.t(hi))],
                    c.mix(0.6).stroke_width(2),
                )))?;
            }
            match s.marker {
                Marker::Circle => {
                    chart.draw_series(std::iter::once(Circle::new(at, 3, c.filled())))?;
                }
                Marker::Triangle => {
                    chart.draw_series(std::iter::once(TriangleMarker::new(at, 5, c.filled())))?;
                }
                Marker::Square => {
                    chart.draw_series(std::iter::once(
                        EmptyElement::at(at) + Rectangle::new([(-3, -3), (3, 3)], c.filled()),
                    ))?;
                }
                Marker::None => {}
            }
            if s.marker != Marker::None {
                let tip = if p.tip.is_empty() {
                    format!(
                        "{}: {} {}, {} {}",
                        s.label,
                        panel.x_desc,
                        ticks::fmt_num(p.x),
                        panel.y_desc,
                        ticks::fmt_num(p.y)
                    )
                } else {
                    p.tip.clone()
                };
                notes.tip(chart.backend_coord(&at), tip);
            }
        }
        for (mx, why) in s.missing.iter().filter(|m| fits(m.0, &x)) {
            let at = (x.t(*mx), bottom);
            chart.draw_series(std::iter::once(Cross::new(at, 5, c.stroke_width(2))))?;
            notes.tip(
                chart.backend_coord(&at),
                format!(
                    "{} at {} {}: {why}",
                    s.label,
                    panel.x_desc,
                    ticks::fmt_num(*mx)
                ),
            );
        }
    }
    for &(mx, my) in panel
        .marks
        .iter()
        .filter(|m| fits(m.0, &x) && fits(m.1, &y))
    {
        chart.draw_series(std::iter::once(Circle::new(
            (x.t(mx), y.t(my)),
            9,
            BLACK.stroke_width(2),
        )))?;
    }

    // The legend rows, from the plot's top.
    let (lw, _) = legend.dim_in_pixel();
    let text_w = lw as f64 - 34.0;
    let row_h = 18;
    let mut ly = 14;
    for (text, c, sample) in &rows {
        if ly + row_h > h as i32 {
            break;
        }
        let (sx, ex) = (4, 24);
        match sample {
            Sample::Line(dashed, marker, joined) => {
                if *joined && *dashed {
                    legend.draw(&DashedPathElement::new(
                        vec![(sx, ly), (ex, ly)],
                        5,
                        3,
                        c.stroke_width(2),
                    ))?;
                } else if *joined {
                    legend.draw(&PathElement::new(
                        vec![(sx, ly), (ex, ly)],
                        c.stroke_width(2),
                    ))?;
                }
                let mid = ((sx + ex) / 2, ly);
                match marker {
                    Marker::Circle => legend.draw(&Circle::new(mid, 3, c.filled()))?,
                    Marker::Triangle => legend.draw(&TriangleMarker::new(mid, 5, c.filled()))?,
                    Marker::Square => legend.draw(
                        &(EmptyElement::at(mid) + Rectangle::new([(-3, -3), (3, 3)], c.filled())),
                    )?,
                    Marker::None => {}
                }
            }
            Sample::Cross => legend.draw(&Cross::new((14, ly), 5, c.stroke_width(2)))?,
            Sample::Ring => legend.draw(&Circle::new((14, ly), 6, c.stroke_width(2)))?,
            Sample::Reference => legend.draw(&DashedPathElement::new(
                vec![(sx, ly), (ex, ly)],
                5,
                3,
                c.stroke_width(2),
            ))?,
        }
        let (t, size) = fit(text.trim_start_matches("x  "), text_w, 12.0);
        let style = TextStyle::from((FONT, size).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        legend.draw(&Text::new(t, (30, ly), style))?;
        ly += row_h;
    }

    notes.panel(PanelMeta {
        caption: panel.caption.clone(),
        x_axis: panel.x_desc.clone(),
        y_axis: panel.y_desc.clone(),
        x_ticks: x.ticks.iter().map(|t| t.1.clone()).collect(),
        y_ticks: y.ticks.iter().map(|t| t.1.clone()).collect(),
        series: panel.series.iter().map(|s| s.label.clone()).collect(),
    });
    Ok(())
}

/// Splits `area` into a grid of `n` cells, `cols` wide, row-major.
pub fn grid<'a>(
    area: &DrawingArea<SVGBackend<'a>, Shift>,
    n: usize,
    cols: usize,
) -> Vec<DrawingArea<SVGBackend<'a>, Shift>> {
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols).max(1);
    area.split_evenly((rows, cols))
        .into_iter()
        .take(n)
        .collect()
}

/// Sorts labels the way a reader expects: numbers inside them by value
/// ("B8" before "B16"), the rest alphabetically.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let chunks = |s: &str| -> Vec<(bool, String)> {
        let mut v: Vec<(bool, String)> = Vec::new();
        for ch in s.chars() {
            let d = ch.is_ascii_digit();
            match v.last_mut() {
                Some((k, t)) if *k == d => t.push(ch),
                _ => v.push((d, ch.to_string())),
            }
        }
        v
    };
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let o = match (x.0, y.0) {
            (true, true) => {
                x.1.parse::<u64>()
                    .unwrap_or(u64::MAX)
                    .cmp(&y.1.parse::<u64>().unwrap_or(u64::MAX))
            }
            _ => x.1.cmp(&y.1),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    ca.len().cmp(&cb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sort_by_their_numbers() {
        let mut v = vec!["B16", "B64", "B8", "B32"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["B8", "B16", "B32", "B64"]);
        let mut v = vec!["cpu f16 S1024", "cpu f16 S512", "cpu f32 S512"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["cpu f16 S512", "cpu f16 S1024", "cpu f32 S512"]);
    }

    #[test]
    fn thinning_keeps_three_ticks() {
        let t: Vec<(f64, String)> = (0..4).map(|i| (i as f64, i.to_string())).collect();
        assert_eq!(spaced(t, 1.5).len(), 3);
    }

    /// The error CDF's axis over seven decades printed 21 labels into each other.
    #[test]
    fn a_log_axis_over_many_decades_labels_decades() {
        let a = Axis::new(&[2e-10, 1.2e-3], Scale::Log, false, false, true);
        let labels: Vec<&str> = a.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(
            labels,
            ["1e-9", "1e-8", "1e-7", "1e-6", "1e-5", "1e-4", "0.001"]
        );
    }

    #[test]
    fn close_data_ticks_do_not_overprint() {
        let a = Axis::new(&[90.0, 90.5, 96.0, 100.0], Scale::Auto, true, false, true);
        let labels: Vec<&str> = a.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["90", "96", "100"]);
    }

    #[test]
    fn an_axis_over_two_dims_still_has_three_ticks_and_no_fractional_dim() {
        let a = Axis::new(&[128.0, 256.0], Scale::Auto, true, false, true);
        assert!(a.ticks.len() >= 3, "{:?}", a.ticks);
        let a = Axis::new(
            &[128.0, 256.0, 512.0, 1024.0],
            Scale::Auto,
            true,
            false,
            true,
        );
        let labels: Vec<&str> = a.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["128", "256", "512", "1024"]);
    }
}

//! One chart file: the SVG plotters draws, then, once it is written, a
//! tooltip per point (an SVG `<title>` a browser shows on hover) and a
//! `<metadata>` block naming each panel's ticks and series, which the tests
//! check against the text actually drawn. Also titles that fit their canvas.

use std::path::PathBuf;

/// The font family every chart's text asks for (SVG text: no font library).
pub const FONT: &str = "sans-serif";
/// Bytes in a MiB.
pub const MIB: f64 = 1048576.0;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

/// What one panel shows, by name: its axes' tick labels and its series.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PanelMeta {
    pub caption: String,
    pub x_axis: String,
    pub y_axis: String,
    pub x_ticks: Vec<String>,
    pub y_ticks: Vec<String>,
    pub series: Vec<String>,
}

/// What is gathered while a chart is drawn, written into the file after.
#[derive(Debug, Default)]
pub struct Notes {
    tips: Vec<(i32, i32, String)>,
    panels: Vec<PanelMeta>,
}

impl Notes {
    /// A tooltip at pixel (x, y) of the canvas.
    pub fn tip(&mut self, at: (i32, i32), text: impl Into<String>) {
        self.tips.push((at.0, at.1, text.into()));
    }
    /// A panel drawn.
    pub fn panel(&mut self, meta: PanelMeta) {
        self.panels.push(meta);
    }
}

/// An SVG file being drawn.
pub struct Canvas {
    pub path: PathBuf,
    pub size: (u32, u32),
}

impl Canvas {
    pub fn new(path: PathBuf, size: (u32, u32)) -> Self {
        Canvas { path, size }
    }

    /// Draws the chart with `f` on the whole canvas (white), writes it, and
    /// adds what `f` noted: the file's path.
    pub fn draw(
        self,
        f: impl FnOnce(
            &DrawingArea<SVGBackend<'_>, Shift>,
            &mut Notes,
        ) -> Result<(), Box<dyn std::error::Error>>,
    ) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
        let mut notes = Notes::default();
        {
            let root = SVGBackend::new(&self.path, self.size).into_drawing_area();
            root.fill(&WHITE)?;
            f(&root, &mut notes)?;
            root.present()?;
        }
        self.finish(notes)
    }

    /// Adds the tooltips and the metadata to the written file.
    fn finish(self, notes: Notes) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
        let svg = std::fs::read_to_string(&self.path)?;
        let Some(end) = svg.rfind("</svg>") else {
            return Err(format!("{}: no </svg>", self.path.display()).into());
        };
        let mut extra = String::new();
        extra.push_str("<metadata id=\"kernel-lab-chart\">");
        extra.push_str(&escape(&serde_json::to_string(&notes.panels)?));
        extra.push_str("</metadata>\n<g class=\"tips\">\n");
        for (x, y, t) in &notes.tips {
            extra.push_str(&format!(
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"6\" fill=\"transparent\" pointer-events=\"all\"><title>{}</title></circle>\n",
                escape(t)
            ));
        }
        extra.push_str("</g>\n");
        let text = format!("{}{extra}{}", &svg[..end], &svg[end..]);
        crate::atomic_file::write(&self.path, text.as_bytes())?;
        Ok(vec![self.path])
    }
}

/// XML-escapes text (SVG and HTML alike).
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The width a line of `text` takes at plotters font `size`, in pixels (an
/// upper estimate: plotters writes font-size size/1.24, and sans-serif glyphs
/// average under 0.6 em).
pub fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size / 1.24 * 0.6
}

/// The largest font size from `size` down to 10 at which `text` fits `width`
/// pixels, and the text cut with "..." if even 10 does not.
pub fn fit(text: &str, width: f64, size: f64) -> (String, f64) {
    let mut s = size;
    while s > 10.0 && text_width(text, s) > width {
        s -= 1.0;
    }
    if text_width(text, s) <= width {
        return (text.to_string(), s);
    }
    let per = s / 1.24 * 0.6;
    let keep = ((width / per) as usize).saturating_sub(3);
    (
        format!("{}...", text.chars().take(keep).collect::<String>()),
        s,
    )
}

/// Draws `text` centred on top of `area`, over as many lines as it needs to
/// fit the width (at most three, words kept whole), and returns the rest.
pub fn title<'a>(
    area: &DrawingArea<SVGBackend<'a>, Shift>,
    text: &str,
    size: f64,
) -> Result<DrawingArea<SVGBackend<'a>, Shift>, Box<dyn std::error::Error>> {
    let (w, _) = area.dim_in_pixel();
    let width = w as f64 - 16.0;
    let mut lines: Vec<String> = Vec::new();
    for word in text.split(' ') {
        match lines.last_mut() {
            Some(l) if text_width(&format!("{l} {word}"), size) <= width => {
                l.push(' ');
                l.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    if lines.len() > 3 {
        let rest = lines.split_off(2).join(" ");
        lines.push(rest);
    }
    let line_h = (size * 1.25).ceil() as i32;
    let mut y = 6;
    for l in &lines {
        let (l, s) = fit(l, width, size);
        let style = TextStyle::from((FONT, s).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        area.draw(&Text::new(l, (w as i32 / 2, y), style))?;
        y += line_h;
    }
    Ok(area.split_vertically((y + 4) as u32).1)
}

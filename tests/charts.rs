//! The charts as a reader gets them: `kernel-lab plot` re-renders every
//! committed results file, and each SVG is parsed: no text outside the
//! canvas, every panel's axes with three labelled ticks or more (the labels
//! actually drawn), every series named in the chart's metadata drawn in its
//! legend, and as many series as the data holds (none dropped).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A `<text>` element: where, how large, anchored how, rotated or not, what.
#[derive(Debug)]
struct Text {
    x: f64,
    y: f64,
    size: f64,
    anchor: String,
    /// The glyph box across the line, as offsets from y in font sizes
    /// (plotters' dy: 0.76em top, 0.5ex centre, -0.5ex bottom, none baseline).
    across: (f64, f64),
    rotated: bool,
    content: String,
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    let j = tag[i..].find('"')?;
    Some(tag[i..i + j].to_string())
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

struct Svg {
    width: f64,
    height: f64,
    texts: Vec<Text>,
    /// The panels the metadata names: caption, x ticks, y ticks, series.
    panels: Vec<Value>,
    tips: usize,
}

fn parse(path: &Path) -> Svg {
    let s = std::fs::read_to_string(path).unwrap();
    let head = &s[s.find("<svg").expect("an svg")..];
    let head = &head[..head.find('>').unwrap()];
    let num = |t: &str, n: &str| -> f64 { attr(t, n).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
    let (width, height) = (num(head, "width"), num(head, "height"));
    let mut texts = Vec::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("<text") {
        rest = &rest[i..];
        let end_tag = rest.find('>').unwrap();
        let tag = &rest[..end_tag];
        let close = rest.find("</text>").unwrap();
        texts.push(Text {
            x: num(tag, "x"),
            y: num(tag, "y"),
            size: num(tag, "font-size"),
            anchor: attr(tag, "text-anchor").unwrap_or_else(|| "start".into()),
            across: match attr(tag, "dy").as_deref() {
                Some("0.76em") => (-0.05, 1.0),
                Some("0.5ex") => (-0.55, 0.55),
                Some("-0.5ex") => (-1.0, 0.1),
                _ => (-0.85, 0.25),
            },
            rotated: tag.contains("rotate("),
            content: unescape(rest[end_tag + 1..close].trim()),
        });
        rest = &rest[close..];
    }
    let panels = match (
        s.find("<metadata id=\"kernel-lab-chart\">"),
        s.find("</metadata>"),
    ) {
        (Some(a), Some(b)) => {
            let json = unescape(&s[a + "<metadata id=\"kernel-lab-chart\">".len()..b]);
            serde_json::from_str::<Vec<Value>>(&json).expect("metadata is JSON")
        }
        _ => panic!("{}: no chart metadata", path.display()),
    };
    let tips = s.matches("<title>").count();
    Svg {
        width,
        height,
        texts,
        panels,
        tips,
    }
}

/// The problems of one SVG, in words (empty when none).
fn problems(path: &Path) -> Vec<String> {
    let svg = parse(path);
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let mut out = Vec::new();
    for t in &svg.texts {
        // Sans-serif glyphs average well under 0.6 em.
        let w = t.content.chars().count() as f64 * t.size * 0.55;
        let (a, b) = match t.anchor.as_str() {
            "middle" => (-w / 2.0, w / 2.0),
            "end" => (-w, 0.0),
            _ => (0.0, w),
        };
        let (c, d) = (t.across.0 * t.size, t.across.1 * t.size);
        // Rotated by 270 degrees (the y axis' name): the line runs upwards,
        // and the glyphs' "down" points right.
        let (x0, x1, y0, y1) = if t.rotated {
            (t.x + c, t.x + d, t.y - b, t.y - a)
        } else {
            (t.x + a, t.x + b, t.y + c, t.y + d)
        };
        let slack = 2.0;
        if x0 < -slack || y0 < -slack || x1 > svg.width + slack || y1 > svg.height + slack {
            out.push(format!(
                "{name}: text {:?} at ({:.0}, {:.0}) spans x {x0:.0}..{x1:.0}, y {y0:.0}..{y1:.0}, outside {}x{}",
                t.content, t.x, t.y, svg.width, svg.height
            ));
        }
    }
    // Labels on one line (a horizontal axis' ticks) must not run into each other.
    // (y, font size) -> the labels' horizontal extents on that line.
    type Line<'a> = Vec<(f64, f64, &'a str)>;
    let mut rows: BTreeMap<(i64, i64), Line> = BTreeMap::new();
    for t in svg.texts.iter().filter(|t| !t.rotated) {
        let w = t.content.chars().count() as f64 * t.size * 0.5;
        let x0 = match t.anchor.as_str() {
            "middle" => t.x - w / 2.0,
            "end" => t.x - w,
            _ => t.x,
        };
        rows.entry((t.y.round() as i64, (t.size * 10.0) as i64))
            .or_default()
            .push((x0, x0 + w, t.content.as_str()));
    }
    for row in rows.values_mut() {
        row.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in row.windows(2) {
            if pair[0].1 > pair[1].0 + 1.0 {
                out.push(format!(
                    "{name}: {:?} and {:?} print over each other",
                    pair[0].2, pair[1].2
                ));
            }
        }
    }
    let drawn: BTreeSet<&str> = svg.texts.iter().map(|t| t.content.as_str()).collect();
    let shown = |label: &str| {
        drawn.contains(label)
            || drawn.iter().any(|d| {
                d.strip_suffix("...")
                    .is_some_and(|cut| cut.len() >= 8 && label.starts_with(cut))
            })
    };
    if svg.panels.is_empty() {
        out.push(format!("{name}: no panel in the metadata"));
    }
    for p in &svg.panels {
        let caption = p["caption"].as_str().unwrap_or("?");
        for axis in ["x_ticks", "y_ticks"] {
            let ticks: Vec<&str> = p[axis]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            if ticks.len() < 3 {
                out.push(format!(
                    "{name} / {caption}: {axis} has {} labels: {ticks:?}",
                    ticks.len()
                ));
            }
            for t in &ticks {
                if !drawn.contains(t) {
                    out.push(format!(
                        "{name} / {caption}: {axis} label {t:?} is not drawn"
                    ));
                }
            }
        }
        for s in p["series"].as_array().unwrap() {
            let s = s.as_str().unwrap();
            if !shown(s) && caption != "CDF" {
                out.push(format!(
                    "{name} / {caption}: series {s:?} not in its legend"
                ));
            }
        }
    }
    if svg.tips == 0 {
        out.push(format!("{name}: no tooltip"));
    }
    out
}

/// Renders `results` with the real binary into a fresh folder.
fn plot(results: &Path, name: &str) -> PathBuf {
    let out = common::temp_dir(name);
    let o = common::run(&[
        "plot",
        results.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "plot {}: {}",
        results.display(),
        common::stderr(&o)
    );
    out
}

fn svgs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "svg"))
        .collect();
    v.sort();
    v
}

/// Every results.json under results/ (the device checks' folders included).
fn committed() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().is_some_and(|n| n == "results.json") {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    walk(Path::new("results"), &mut v);
    v.sort();
    v
}

#[test]
fn every_committed_chart_keeps_its_text_inside_and_labels_its_axes_and_series() {
    let mut all = Vec::new();
    let mut charts = 0;
    for (i, results) in committed().iter().enumerate() {
        let dir = plot(results, &format!("charts-{i}"));
        for svg in svgs(&dir) {
            charts += 1;
            all.extend(problems(&svg));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(
        charts >= 20,
        "only {charts} charts drawn from the committed results"
    );
    assert!(
        all.is_empty(),
        "{} problems:\n{}",
        all.len(),
        all.join("\n")
    );
}

fn records(results: &Path) -> Vec<Value> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(results).unwrap()).unwrap();
    v["records"].as_array().unwrap().clone()
}

fn series_count(svg: &Path) -> usize {
    parse(svg)
        .panels
        .iter()
        .map(|p| p["series"].as_array().unwrap().len())
        .sum()
}

/// week1-embedding-dim: gpu-vs-cpu once drew 12 of its 30 lines (`take(12)`),
/// every matmul line among those dropped; the seed figures hold a line per
/// batch in each panel.
#[test]
fn no_series_is_dropped() {
    let results = Path::new("results/epyc-2core-lavapipe/week1-embedding-dim/results.json");
    let dir = plot(results, "charts-series");
    let recs = records(results);
    let key = |r: &Value, b: &str| {
        format!(
            "{} {} {} {} {} {b}",
            r["op"], r["precision"], r["batch"], r["seq"], r["dim"]
        )
    };
    let measured: BTreeSet<String> = recs
        .iter()
        .filter(|r| r["p50"].is_number() || r["latency_ms"].is_object())
        .map(|r| key(r, r["backend"].as_str().unwrap()))
        .collect();
    // A line per (op, precision, batch, seq) with a shape measured on both backends.
    let lines: BTreeSet<String> = recs
        .iter()
        .filter(|r| {
            r["backend"] == "gpu"
                && measured.contains(&key(r, "gpu"))
                && measured.contains(&key(r, "cpu"))
        })
        .map(|r| format!("{} {} {} {}", r["op"], r["precision"], r["batch"], r["seq"]))
        .collect();
    assert!(lines.len() > 12, "{} lines", lines.len());
    assert_eq!(series_count(&dir.join("gpu-vs-cpu.svg")), lines.len());
    let svg = std::fs::read_to_string(dir.join("gpu-vs-cpu.svg")).unwrap();
    assert!(svg.contains("matmul f32") && svg.contains("matmul f16"));

    // seed-<op>-<backend>-<precision>: memory and latency, a line per batch per seq.
    let mut batches: BTreeMap<String, BTreeSet<(u64, u64)>> = BTreeMap::new();
    for r in &recs {
        let name = format!(
            "seed-{}-{}-{}.svg",
            r["op"].as_str().unwrap(),
            r["backend"].as_str().unwrap(),
            r["precision"].as_str().unwrap()
        );
        batches
            .entry(name)
            .or_default()
            .insert((r["seq"].as_u64().unwrap(), r["batch"].as_u64().unwrap()));
    }
    for (name, seq_batch) in batches {
        assert_eq!(
            series_count(&dir.join(&name)),
            2 * seq_batch.len(),
            "{name}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

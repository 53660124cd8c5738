//! `report.html`: the report as one self-contained page (the charts inline
//! as SVG with a tooltip per point, no script or style from the network): the
//! run-quality summary, the findings, every chart, and the points in a table
//! with exact values that sorts on a click of its header. Also
//! `out/index.html`, a page listing every run under `out/`.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::markdown::{environment, verdict};
use super::quality::{shown_p99, MIN_SAMPLES_FOR_P99};
use crate::error::Result;
use crate::results::{iso_time, ResultsFile};

use super::charts::canvas::escape as esc;

/// Escapes `s`, then turns its Markdown `**bold**` and `` `code` `` into tags.
fn inline(s: &str) -> String {
    let mut out = String::new();
    let e = esc(s);
    let mut bold = false;
    let mut code = false;
    let mut chars = e.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '*' && chars.peek() == Some(&'*') && !code {
            chars.next();
            out.push_str(if bold { "</strong>" } else { "<strong>" });
            bold = !bold;
        } else if c == '`' {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
        } else {
            out.push(c);
        }
    }
    if bold {
        out.push_str("</strong>");
    }
    if code {
        out.push_str("</code>");
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#111}\
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}\
li{margin:.25em 0}figure{margin:1.5em 0}figure svg{max-width:100%;height:auto;border:1px solid #eee}\
figcaption{font-size:.9em;color:#444}table{border-collapse:collapse;font-size:.85em}\
th,td{border:1px solid #ddd;padding:.2em .45em;white-space:nowrap}td.n{text-align:right}\
th{background:#f3f3f3;cursor:pointer;position:sticky;top:0}th[data-dir=asc]::after{content:' \\25B2'}\
th[data-dir=desc]::after{content:' \\25BC'}tr:nth-child(even){background:#fafafa}.warn{color:#a00}.scroll{overflow-x:auto}";

const SORT: &str = "document.querySelectorAll('table.sortable th').forEach(function(th,i){\
th.addEventListener('click',function(){var t=th.closest('table'),b=t.tBodies[0];\
var asc=th.dataset.dir!=='asc';t.querySelectorAll('th').forEach(function(h){delete h.dataset.dir;});\
th.dataset.dir=asc?'asc':'desc';var key=function(td){return td.dataset.v!==undefined?parseFloat(td.dataset.v):td.textContent;};\
var rows=Array.prototype.slice.call(b.rows);rows.sort(function(r,s){var x=key(r.cells[i]),y=key(s.cells[i]);\
var c=(typeof x==='number')?x-y:String(x).localeCompare(String(y),undefined,{numeric:true});return asc?c:-c;});\
rows.forEach(function(r){b.appendChild(r);});});});";

/// A number cell: shown rounded, sorted on the exact value (missing: `-`).
fn num(v: Option<f64>, digits: usize) -> String {
    match v.filter(|v| v.is_finite()) {
        Some(v) => format!("<td class=\"n\" data-v=\"{v}\" title=\"{v}\">{v:.digits$}</td>"),
        None => "<td class=\"n\" data-v=\"-1e308\">-</td>".into(),
    }
}

/// The page's text.
pub fn report(
    results: &ResultsFile,
    quality: &[String],
    findings: &[String],
    charts: &[PathBuf],
) -> Result<String> {
    let name = results.spec["name"].as_str().unwrap_or("experiment");
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>kernel-lab report: {}</title><style>{STYLE}</style></head>\n<body>\n<h1>kernel-lab report: {}</h1>\n",
        esc(name),
        esc(name)
    );
    if let Some(d) = results.spec["description"]
        .as_str()
        .filter(|d| !d.is_empty())
    {
        let _ = writeln!(s, "<p>{}</p>", inline(d));
    }
    if !results.complete {
        let _ = writeln!(
            s,
            "<p class=\"warn\"><strong>This run is incomplete</strong> (interrupted or still running): {} points so far.</p>",
            results.records.len()
        );
    }
    let _ = writeln!(
        s,
        "<p>The data: <a href=\"results.json\">results.json</a> (every sample); the same report as <a href=\"report.md\">Markdown</a>.</p>"
    );
    let list = |s: &mut String, title: &str, items: &[String]| {
        let _ = writeln!(s, "<h2>{title}</h2>\n<ul>");
        for i in items {
            let _ = writeln!(s, "<li>{}</li>", inline(i));
        }
        let _ = writeln!(s, "</ul>");
    };
    list(&mut s, "Run quality", quality);
    list(&mut s, "Environment", &environment(results));
    if findings.is_empty() {
        let _ = writeln!(
            s,
            "<h2>Findings</h2>\n<p>The points of this run support no finding (too few to compare).</p>"
        );
    } else {
        list(&mut s, "Findings", findings);
    }
    if !charts.is_empty() {
        let _ = writeln!(
            s,
            "<h2>Charts</h2>\n<p>Hover a point for its values; bars are 95% confidence intervals of the median.</p>"
        );
        for c in charts {
            let svg = std::fs::read_to_string(c).map_err(|source| crate::error::LabError::Io {
                path: c.clone(),
                source,
            })?;
            let svg = match svg.find("<svg") {
                Some(i) => &svg[i..],
                None => continue,
            };
            let file = c
                .file_name()
                .map_or(String::new(), |f| f.to_string_lossy().into_owned());
            let _ = writeln!(
                s,
                "<figure id=\"{}\">{svg}<figcaption><a href=\"{}\">{}</a></figcaption></figure>",
                esc(file.trim_end_matches(".svg")),
                esc(&file),
                esc(&file)
            );
        }
    }
    for t in super::seed_notebooks::tables(&results.records) {
        let _ = writeln!(
            s,
            "<h2>{}</h2>\n<p>{}</p>\n<table><thead><tr>{}</tr></thead><tbody>",
            esc(&t.title),
            esc(&t.note),
            t.headers
                .iter()
                .map(|h| format!("<th>{}</th>", esc(h)))
                .collect::<String>()
        );
        for r in &t.rows {
            let _ = writeln!(
                s,
                "<tr>{}</tr>",
                r.iter()
                    .map(|c| format!("<td>{}</td>", esc(c)))
                    .collect::<String>()
            );
        }
        let _ = writeln!(s, "</tbody></table>");
    }
    points_table(&mut s, results);
    let _ = writeln!(s, "<script>{SORT}</script>\n</body></html>");
    Ok(s)
}

fn points_table(s: &mut String, results: &ResultsFile) {
    let _ = writeln!(
        s,
        "<h2>Points</h2>\n<p>Click a column to sort it. Latency in ms (device timestamps on a GPU where it has them); p99 needs {MIN_SAMPLES_FOR_P99} samples.</p>\n<div class=\"scroll\"><table class=\"sortable\"><thead><tr>"
    );
    for h in [
        "layer",
        "op",
        "backend",
        "precision",
        "B",
        "S",
        "D",
        "N",
        "p50 ms",
        "CI low",
        "CI high",
        "p99 ms",
        "CV %",
        "samples",
        "GFLOP/s",
        "GB/s",
        "tokens/s",
        "MiB",
        "max norm err",
        "verified",
        "note",
    ] {
        let _ = write!(s, "<th>{h}</th>");
    }
    let _ = writeln!(s, "</tr></thead><tbody>");
    for r in &results.records {
        let id = &r.id;
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            esc(r.layer.as_deref().unwrap_or("-")),
            id.op(),
            id.backend,
            id.precision
        );
        // The seed's axes, where the op has them.
        let a = super::analysis::seed_axes(id);
        for v in [
            a.map(|a| a.batch),
            a.map(|a| a.seq),
            a.map(|a| a.dim),
            a.map(|a| a.out_dim),
        ] {
            s.push_str(&num(v.map(f64::from), 0));
        }
        let m = r.measured.as_ref();
        let lat = m.map(|m| &m.latency_ms);
        s.push_str(&num(lat.map(|l| l.p50), 4));
        s.push_str(&num(lat.map(|l| l.median_ci95[0]), 4));
        s.push_str(&num(lat.map(|l| l.median_ci95[1]), 4));
        s.push_str(&num(m.and_then(shown_p99), 4));
        s.push_str(&num(lat.map(|l| l.cv * 100.0), 1));
        s.push_str(&num(m.map(|m| m.samples as f64), 0));
        s.push_str(&num(m.map(|m| m.gflops), 2));
        s.push_str(&num(m.map(|m| m.gbps), 2));
        s.push_str(&num(m.map(|m| m.tokens_per_s), 0));
        s.push_str(&num(
            m.map(|m| m.memory_bytes.measured.total as f64 / 1048576.0),
            2,
        ));
        s.push_str(&num(r.max_norm_err, 6));
        let note = match &r.skipped {
            Some(k) if r.measured.is_none() => k.to_string(),
            _ => r.warnings.join("; "),
        };
        let _ = writeln!(
            s,
            "<td>{}</td><td>{}</td></tr>",
            inline(&verdict(r)),
            esc(&note)
        );
    }
    let _ = writeln!(s, "</tbody></table></div>");
}

/// Writes `index.html` in the folder above `out` when that folder is an
/// `out/` of runs (the default output place): a row per run with a report.
pub fn write_index_beside(out: &Path) -> Result<()> {
    let Some(parent) = out
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "out"))
    else {
        return Ok(());
    };
    let mut runs: Vec<(u64, String, String)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(parent) {
        for e in entries.flatten() {
            let dir = e.path();
            if !dir.join("report.html").is_file() {
                continue;
            }
            let folder = e.file_name().to_string_lossy().into_owned();
            let row = match ResultsFile::load(&dir.join("results.json")) {
                Ok(r) => {
                    let measured = r.records.iter().filter(|x| x.measured.is_some()).count();
                    let device = r
                        .environment
                        .gpu
                        .as_ref()
                        .map_or(r.environment.cpu.name.clone(), |g| {
                            format!("{} + {}", g.name, r.environment.cpu.name)
                        });
                    (
                        r.environment.timestamp_unix,
                        folder.clone(),
                        format!(
                            "<td><a href=\"{f}/report.html\">{f}</a></td><td>{}</td><td>{}</td><td class=\"n\">{measured} of {}</td><td>{}</td><td><a href=\"{f}/results.json\">results.json</a></td>",
                            esc(r.spec["name"].as_str().unwrap_or("?")),
                            iso_time(r.environment.timestamp_unix),
                            r.records.len(),
                            if r.complete {
                                esc(&device)
                            } else {
                                format!("{} (incomplete)", esc(&device))
                            },
                            f = esc(&folder),
                        ),
                    )
                }
                Err(_) => (
                    0,
                    folder.clone(),
                    format!(
                        "<td><a href=\"{f}/report.html\">{f}</a></td><td>?</td><td>?</td><td>?</td><td>results.json unreadable</td><td></td>",
                        f = esc(&folder)
                    ),
                ),
            };
            runs.push(row);
        }
    }
    runs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>kernel-lab runs</title><style>{STYLE}</style></head>\n<body>\n<h1>kernel-lab runs</h1>\n<p>{} runs in this folder, newest first.</p>\n<table class=\"sortable\"><thead><tr><th>folder</th><th>experiment</th><th>started (UTC)</th><th>points measured</th><th>devices</th><th>data</th></tr></thead><tbody>\n",
        runs.len()
    );
    for (_, _, row) in &runs {
        let _ = writeln!(s, "<tr>{row}</tr>");
    }
    let _ = writeln!(
        s,
        "</tbody></table>\n<script>{SORT}</script>\n</body></html>"
    );
    crate::atomic_file::write(&parent.join("index.html"), s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_emphasis_becomes_tags_and_html_is_escaped() {
        assert_eq!(
            inline("**failed** at `x<y` & more"),
            "<strong>failed</strong> at <code>x&lt;y</code> &amp; more"
        );
    }
}

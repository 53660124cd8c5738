//! The points a command prints, in the format asked for: an aligned table
//! for people (latency in us, ms or s as fits), CSV for spreadsheets, or JSON
//! records for programs. Rows come in axis order (op, backend, precision,
//! batch, seq, dim, out_dim), whatever order the sweep ran them in.

use clap::ValueEnum;
use kernel_lab::results::Record;

/// `--format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned table.
    #[default]
    Table,
    /// One JSON record per line (the results file's records).
    Json,
    /// Comma-separated values with a header row; exact numbers.
    Csv,
}

/// A latency in the unit that fits it: `47 ns`, `850.0 us`, `12.35 ms`, `1.204 s`.
pub fn duration(ms: f64) -> String {
    if !ms.is_finite() {
        "-".into()
    } else if ms < 1e-3 {
        // Under a microsecond "0.0 us" would hide the value.
        format!("{:.0} ns", ms * 1e6)
    } else if ms < 1.0 {
        format!("{:.1} us", ms * 1e3)
    } else if ms < 1000.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{:.3} s", ms / 1e3)
    }
}

const HEADERS: [&str; 15] = [
    "op",
    "backend",
    "precision",
    "B",
    "S",
    "D",
    "N",
    "layer",
    "p50",
    "p99",
    "samples",
    "GFLOP/s",
    "tokens/s",
    "max_norm_err",
    "verified",
];

/// The records sorted in axis order.
pub fn in_axis_order(records: &[Record]) -> Vec<&Record> {
    let mut v: Vec<&Record> = records.iter().collect();
    v.sort_by_key(|r| {
        (
            r.id.op().name(),
            r.id.backend.to_string(),
            r.id.precision.name(),
            r.id.params,
            r.id.dist,
            r.id.scale,
        )
    });
    v
}

/// A parameter's value in a cell ("-" where the op has none).
fn cell(v: Option<u32>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// One row of cells; `exact` for CSV (full-precision numbers, ms), else for the table.
fn row(r: &Record, exact: bool) -> Vec<String> {
    let id = &r.id;
    let mut v = vec![
        id.op().name().to_string(),
        id.backend.to_string(),
        id.precision.name().to_string(),
        cell(id.axis("batch")),
        cell(id.axis("seq")),
        cell(id.axis("dim")),
        cell(id.axis("out_dim").or(id.axis("dim"))),
        r.layer.clone().unwrap_or_else(|| "-".into()),
    ];
    let err = r.max_norm_err.map_or("-".into(), |e| {
        if exact {
            e.to_string()
        } else {
            format!("{e:.1e}")
        }
    });
    match &r.measured {
        Some(m) => {
            let p99 = kernel_lab::report::quality::shown_p99(m);
            if exact {
                v.push(m.latency_ms.p50.to_string());
                v.push(p99.map_or(String::new(), |p| p.to_string()));
                v.push(m.samples.to_string());
                v.push(m.gflops.to_string());
                v.push(m.tokens_per_s.to_string());
            } else {
                v.push(duration(m.latency_ms.p50));
                v.push(p99.map_or("n/a".into(), duration));
                v.push(m.samples.to_string());
                v.push(format!("{:.2}", m.gflops));
                v.push(format!("{:.0}", m.tokens_per_s));
            }
            v.push(err);
            v.push(r.verified.to_string());
        }
        None => {
            for _ in 0..5 {
                v.push(if exact { String::new() } else { "-".into() });
            }
            v.push(err);
            v.push(kernel_lab::report::markdown::verdict(r).replace("**", ""));
        }
    }
    v
}

pub fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Prints `records` in `format` on stdout; the table notes why points were skipped.
pub fn print(records: &[Record], format: Format) -> anyhow::Result<()> {
    let sorted = in_axis_order(records);
    match format {
        Format::Json => {
            for r in sorted {
                println!("{}", serde_json::to_string(r)?);
            }
        }
        Format::Csv => {
            println!(
                "{},p50_ms,p99_ms,samples,gflops,tokens_per_s,max_norm_err,verified",
                HEADERS[..8].join(",")
            );
            for r in sorted {
                let cells: Vec<String> = row(r, true).iter().map(|c| csv_cell(c)).collect();
                println!("{}", cells.join(","));
            }
        }
        Format::Table => {
            let layers = sorted.iter().any(|r| r.layer.is_some());
            let keep = |i: usize| i != 7 || layers;
            let rows: Vec<Vec<String>> = sorted.iter().map(|r| row(r, false)).collect();
            let mut width: Vec<usize> = HEADERS.iter().map(|h| h.len()).collect();
            for r in &rows {
                for (i, c) in r.iter().enumerate() {
                    width[i] = width[i].max(c.chars().count());
                }
            }
            let line = |cells: Vec<String>| {
                let mut s = String::new();
                for (i, c) in cells.iter().enumerate().filter(|(i, _)| keep(*i)) {
                    // Names left, numbers right.
                    if i < 3 || i == 7 || i == HEADERS.len() - 1 {
                        s.push_str(&format!("{c:<w$}  ", w = width[i]));
                    } else {
                        s.push_str(&format!("{c:>w$}  ", w = width[i]));
                    }
                }
                s.trim_end().to_string()
            };
            println!("{}", line(HEADERS.iter().map(|h| h.to_string()).collect()));
            for r in rows {
                println!("{}", line(r));
            }
            for r in sorted.iter().filter(|r| r.measured.is_none()) {
                if let Some(s) = &r.skipped {
                    println!(
                        "  {} {} {} {}: {s}",
                        r.id.backend,
                        r.id.op(),
                        r.id.precision,
                        r.id.shape_label()
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_their_unit() {
        assert_eq!(duration(0.85), "850.0 us");
        assert_eq!(duration(0.000047), "47 ns");
        assert_eq!(duration(0.001), "1.0 us");
        assert_eq!(duration(12.345), "12.35 ms");
        assert_eq!(duration(1204.0), "1.204 s");
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("x\"y"), "\"x\"\"y\"");
        assert_eq!(csv_cell("plain"), "plain");
    }
}

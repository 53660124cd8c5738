//! This lab's numbers beside the seed notebooks' published ones
//! (`experiments/seed/published.toml`), where the run measured the same
//! shape: the week-1 latencies (one `time.time()` call per point) and the
//! week-2 distribution (100 calls). Their CPU is not ours: the ratio says how
//! far apart the two machines and methods land, not which is right.

use serde::Deserialize;

use super::analysis::{measured, seed_axes};
use crate::backend::BackendKind;
use crate::ops::Op;
use crate::precision::Precision;
use crate::results::Record;

/// The published figures, built into the binary.
const PUBLISHED: &str = include_str!("../../experiments/seed/published.toml");

#[derive(Deserialize)]
struct Published {
    source: Source,
    week1: Vec<Week1Row>,
    week2: Week2,
}

/// Where the figures come from, and which of the lab's ops they measured.
#[derive(Deserialize)]
struct Source {
    op: Op,
}

#[derive(Deserialize)]
struct Week1Row {
    batch: u32,
    seq: u32,
    dims: Vec<u32>,
    ms: Vec<f64>,
}

#[derive(Deserialize)]
struct Week2 {
    batch: u32,
    seq: u32,
    dim: u32,
    mean_ms: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
}

fn published() -> Published {
    toml::from_str(PUBLISHED).expect("experiments/seed/published.toml parses (a test checks)")
}

/// A table: its headers and rows of cells.
pub struct Table {
    pub title: String,
    pub note: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The seed's FP32 op `op` (square, uniform data) measured here on `backend`.
fn ours(
    records: &[Record],
    op: Op,
    backend: BackendKind,
    (b, s, d): (u32, u32, u32),
) -> Option<&Record> {
    measured(records).find(|r| {
        r.id.op() == op
            && r.id.precision == Precision::F32
            && r.id.backend == backend
            && seed_axes(&r.id).is_some_and(|a| (a.batch, a.seq, a.dim, a.out_dim) == (b, s, d, d))
    })
}

/// The comparison tables this run supports (none when it measured no shape
/// of the notebooks').
pub fn tables(records: &[Record]) -> Vec<Table> {
    let p = published();
    let mut out = Vec::new();
    let mut rows = Vec::new();
    for w in &p.week1 {
        for (&d, &ms) in w.dims.iter().zip(&w.ms) {
            for backend in BackendKind::ALL {
                if let Some(r) = ours(records, p.source.op, backend, (w.batch, w.seq, d)) {
                    let m = r.measured.as_ref().expect("measured");
                    let soft = if r.software_device {
                        " (software GPU)"
                    } else {
                        ""
                    };
                    rows.push(vec![
                        format!("B{} S{} D{d}", w.batch, w.seq),
                        format!("{ms:.0}"),
                        format!("{backend}{soft}"),
                        format!("{:.3}", m.latency_ms.p50),
                        format!(
                            "{:.3}..{:.3}",
                            m.latency_ms.median_ci95[0], m.latency_ms.median_ci95[1]
                        ),
                        m.samples.to_string(),
                        format!("{:.2}x", ms / m.latency_ms.p50),
                    ]);
                }
            }
        }
    }
    if !rows.is_empty() {
        out.push(Table {
            title: "Week 1 beside the seed notebook".into(),
            note: "The notebook timed ONE call per point with time.time() (about 1 ms resolution) on its author's CPU; here, the median of many calls with its 95% CI. Their CPU is not ours: the ratio measures the two machines and methods together.".into(),
            headers: ["shape (FP32 x @ W)", "seed ms", "here on", "p50 ms", "95% CI", "samples", "seed / here"]
                .map(String::from)
                .to_vec(),
            rows,
        });
    }
    let w = &p.week2;
    let mut rows = Vec::new();
    for backend in BackendKind::ALL {
        if let Some(r) = ours(records, p.source.op, backend, (w.batch, w.seq, w.dim)) {
            let m = r.measured.as_ref().expect("measured");
            let l = &m.latency_ms;
            let soft = if r.software_device {
                " (software GPU)"
            } else {
                ""
            };
            rows.push(vec![
                format!("here, {backend}{soft}, {} samples", m.samples),
                format!("{:.2}", l.mean),
                format!("{:.2}", l.p50),
                format!("{:.2}", l.p95),
                format!("{:.2}", l.p99),
                format!("{:.2}", l.p99 / l.p50),
            ]);
        }
    }
    if !rows.is_empty() {
        rows.insert(
            0,
            vec![
                "seed notebook, its CPU, 100 calls".into(),
                format!("{:.1}", w.mean_ms),
                format!("{:.1}", w.p50_ms),
                format!("{:.1}", w.p95_ms),
                format!("{:.1}", w.p99_ms),
                format!("{:.2}", w.p99_ms / w.p50_ms),
            ],
        );
        out.push(Table {
            title: format!("Week 2 beside the seed notebook (B{} S{} D{}, FP32)", w.batch, w.seq, w.dim),
            note: "Compare the shapes of the two distributions (p99 over p50), not their levels: the machines differ.".into(),
            headers: ["", "mean ms", "p50 ms", "p95 ms", "p99 ms", "p99 / p50"]
                .map(String::from)
                .to_vec(),
            rows,
        });
    }
    out
}

/// The tables as Markdown.
pub fn markdown(tables: &[Table]) -> String {
    let mut s = String::new();
    for t in tables {
        s.push_str(&format!("## {}\n\n{}\n\n", t.title, t.note));
        s.push_str(&format!("| {} |\n", t.headers.join(" | ")));
        s.push_str(&format!("|{}\n", "---|".repeat(t.headers.len())));
        for r in &t.rows {
            s.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata::synthetic;

    #[test]
    fn the_published_figures_parse_and_line_up() {
        let p = published();
        assert_eq!(p.week1.len(), 2);
        assert!(p.week1.iter().all(|w| w.dims.len() == w.ms.len()));
        assert_eq!(p.week2.p99_ms, 98.3);
    }

    #[test]
    fn matching_shapes_are_set_beside_the_seed_and_others_are_not() {
        let rs = vec![
            synthetic("matmul", "cpu", Precision::F32, 8, 512, 1024, 24.5),
            synthetic("matmul", "cpu", Precision::F32, 32, 1024, 512, 50.0),
            // Not the seed's: another dim, another precision.
            synthetic("matmul", "cpu", Precision::F32, 8, 512, 2048, 99.0),
            synthetic("matmul", "cpu", Precision::F16, 8, 512, 512, 9.0),
        ];
        let t = tables(&rs);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].rows.len(), 1);
        assert_eq!(t[0].rows[0][0], "B8 S512 D1024");
        assert_eq!(t[0].rows[0][1], "49");
        // synthetic() samples 1.00x, 1.01x and 1.02x the median given: p50 24.745 ms.
        assert_eq!(t[0].rows[0][6], "1.98x", "49 ms / 24.745 ms");
        assert_eq!(t[1].rows.len(), 2, "the seed's row and ours");
        assert!(tables(&rs[2..]).is_empty());
    }
}

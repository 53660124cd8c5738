//! Same-run anchors: what a reference library reaches on the same shapes, on the
//! same machine, in the same `kernel-lab run`, so our numbers come with their
//! ratio to it. The CPU anchor is PyTorch (MKL / oneDNN), timed by
//! `experiments/anchors/torch_cpu.py`, which the binary carries and runs with
//! `python3` (or `$KERNEL_LAB_PYTHON`). Without Python or PyTorch the anchor is
//! recorded as unavailable, with the reason, and the run goes on.

use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::measure::Sampling;
use crate::results::Record;
use crate::workload::{Op, Precision, Shape, Workload};

/// The helper script, carried in the binary.
pub const TORCH_CPU_SCRIPT: &str = include_str!("../experiments/anchors/torch_cpu.py");

/// Which library anchors a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnchorKind {
    /// PyTorch on the CPU, beside the CPU backend's points.
    Torch,
}

/// The library's numbers on one point. Throughput uses the lab's own FLOP and
/// byte models (workload.rs), so ratios compare like with like.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnchorPoint {
    /// The op.
    pub op: Op,
    /// Storage precision.
    pub precision: Precision,
    /// Batch.
    pub batch: u32,
    /// Sequence length.
    pub seq: u32,
    /// Model dimension.
    pub dim: u32,
    /// Vocabulary.
    pub vocab: u32,
    /// Median ms of the library's usual call, which allocates its output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh_p50_ms: Option<f64>,
    /// Median ms of the same kernel into a preallocated output (`out=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_p50_ms: Option<f64>,
    /// GFLOP/s (projections) or GB/s (gather) of the faster of the two calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<f64>,
    /// Why the library was not timed on this point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl AnchorPoint {
    /// The workload this point describes.
    pub fn work(&self) -> Option<Workload> {
        Some(Workload {
            op: self.op,
            precision: self.precision,
            shape: Shape::new(self.batch, self.seq, self.dim, self.vocab).ok()?,
        })
    }

    /// The faster of the two calls, ms.
    pub fn best_ms(&self) -> Option<f64> {
        match (self.fresh_p50_ms, self.out_p50_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether `record` measured the same point.
    pub fn matches(&self, r: &Record) -> bool {
        (r.op, r.precision, r.batch, r.seq, r.dim)
            == (self.op, self.precision, self.batch, self.seq, self.dim)
            && (r.op == Op::Matmul || r.vocab == self.vocab)
    }
}

/// The anchor of a run: the library, and its numbers per point or why there are none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Anchors {
    /// Which anchor was asked for.
    pub kind: AnchorKind,
    /// The library and version, threads, BLAS, as the helper reported them.
    pub library: String,
    /// Why the anchor could not run at all (no Python, no PyTorch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// One entry per anchored point.
    pub points: Vec<AnchorPoint>,
}

/// The Python interpreter to run helpers with: `$KERNEL_LAB_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("KERNEL_LAB_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Times PyTorch, run by the interpreter `python`, on the verified CPU points
/// of `records`, with the sampling settings of the run and `threads` threads
/// (the CPU backend's).
pub fn torch_cpu(
    python: &str,
    records: &[Record],
    sampling: &Sampling,
    max_run_seconds: f64,
    threads: usize,
) -> Anchors {
    let mut points: Vec<serde_json::Value> = records
        .iter()
        .filter(|r| r.backend == "cpu" && r.verified)
        .map(|r| {
            serde_json::json!({
                "op": r.op, "precision": r.precision, "batch": r.batch,
                "seq": r.seq, "dim": r.dim, "vocab": r.vocab,
            })
        })
        .collect();
    points.dedup();
    let request = serde_json::json!({
        "threads": threads,
        "min_samples": sampling.min_samples,
        "min_ms": sampling.min_ms,
        "max_ms": sampling.max_ms,
        "max_run_seconds": max_run_seconds,
        "points": points,
    });
    let unavailable = |why: String| Anchors {
        kind: AnchorKind::Torch,
        library: "torch".into(),
        unavailable: Some(why),
        points: Vec::new(),
    };
    let output = match Command::new(python)
        .arg("-c")
        .arg(TORCH_CPU_SCRIPT)
        .arg(request.to_string())
        .output()
    {
        Ok(o) => o,
        Err(e) => return unavailable(format!("could not start {python}: {e}")),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        return unavailable(format!("{python} exited with {}: {last}", output.status));
    }
    let mut anchors = Anchors {
        kind: AnchorKind::Torch,
        library: "torch".into(),
        unavailable: None,
        points: Vec::new(),
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(lib) = v.get("library").and_then(|l| l.as_str()) {
            anchors.library = format!(
                "{lib} ({} BLAS, {} threads)",
                v.get("blas").and_then(|b| b.as_str()).unwrap_or("?"),
                v.get("threads").and_then(|t| t.as_u64()).unwrap_or(0)
            );
            continue;
        }
        if let Ok(mut p) = serde_json::from_value::<AnchorPoint>(v) {
            p.throughput = p.best_ms().zip(p.work()).map(|(ms, w)| {
                let per_s = 1e3 / ms;
                if w.op == Op::Embedding {
                    w.bytes_moved() as f64 * per_s / 1e9
                } else {
                    w.flops() as f64 * per_s / 1e9
                }
            });
            anchors.points.push(p);
        }
    }
    anchors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interpreter_is_reported_unavailable_not_fatal() {
        let a = torch_cpu("/nonexistent/python3", &[], &Sampling::default(), 1.0, 1);
        let why = a.unavailable.expect("unavailable");
        assert!(why.contains("/nonexistent/python3"), "{why}");
        assert!(a.points.is_empty());
    }
}

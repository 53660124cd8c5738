//! Same-run anchors: what a reference library reaches on the same shapes, on the
//! same machine, in the same `kernel-lab run`, so our numbers come with their
//! ratio to it. The CPU anchor is PyTorch (MKL / oneDNN), timed by
//! `experiments/anchors/torch_cpu.py`, which the binary carries and runs with
//! `python3` (or `$KERNEL_LAB_PYTHON`) as a helper for the whole sweep: each CPU
//! point goes to it right after the lab measured it, so both are timed within
//! seconds of each other, under the same machine conditions. Without Python or
//! PyTorch the anchor is recorded as unavailable, with the reason, and the run
//! goes on. The numbers it returns are kept as `results::Anchors`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::measure::Sampling;
use crate::results::{AnchorPoint, Record};
use crate::workload::Op;

/// The helper script, carried in the binary.
pub const TORCH_CPU_SCRIPT: &str = include_str!("../experiments/anchors/torch_cpu.py");

/// The Python interpreter to run helpers with: `$KERNEL_LAB_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("KERNEL_LAB_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A running helper: it times the library on each point as the sweep hands it
/// over, right after the lab measured the same point.
pub struct AnchorSession {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    python: String,
    /// The library and version, BLAS and threads, as the helper reported them.
    pub library: String,
}

impl AnchorSession {
    /// Starts the PyTorch helper with the interpreter `python`, the run's
    /// sampling settings, its budget and `threads` threads (the CPU
    /// backend's). Fails, with the helper's last word, when Python or
    /// PyTorch is missing.
    pub fn start_torch(
        python: &str,
        sampling: &Sampling,
        max_run_seconds: f64,
        threads: usize,
    ) -> std::result::Result<Self, String> {
        let settings = serde_json::json!({
            "threads": threads,
            "min_samples": sampling.min_samples,
            "min_ms": sampling.min_ms,
            "max_ms": sampling.max_ms,
            "max_run_seconds": max_run_seconds,
        });
        let mut child = Command::new(python)
            .arg("-c")
            .arg(TORCH_CPU_SCRIPT)
            .arg(settings.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start {python}: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut session = AnchorSession {
            child,
            stdin,
            stdout,
            python: python.to_string(),
            library: String::new(),
        };
        let first = session.read_line()?;
        let lib = first
            .get("library")
            .and_then(|l| l.as_str())
            .ok_or_else(|| {
                format!("{python}: the helper's first line names no library: {first}")
            })?;
        session.library = format!(
            "{lib} ({} BLAS, {} threads)",
            first.get("blas").and_then(|b| b.as_str()).unwrap_or("?"),
            first.get("threads").and_then(|t| t.as_u64()).unwrap_or(0)
        );
        Ok(session)
    }

    /// The next JSON line from the helper (lines that are not JSON are
    /// skipped); at its end, the reason it ended.
    fn read_line(&mut self) -> std::result::Result<serde_json::Value, String> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .stdout
                .read_line(&mut line)
                .map_err(|e| format!("reading from {}: {e}", self.python))?;
            if n == 0 {
                return Err(self.why_it_ended());
            }
            if let Ok(v) = serde_json::from_str(&line) {
                return Ok(v);
            }
        }
    }

    /// The helper's exit status and the last line it wrote to stderr.
    fn why_it_ended(&mut self) -> String {
        drop(self.stdin.take());
        let status = self
            .child
            .wait()
            .map_or("an unknown status".to_string(), |s| s.to_string());
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        format!("{} exited with {status}: {last}", self.python)
    }

    /// Times the library on the point `r` measured (a verified CPU record).
    pub fn measure(&mut self, r: &Record) -> std::result::Result<AnchorPoint, String> {
        let id = &r.id;
        let request = serde_json::json!({
            "op": id.op, "precision": id.precision, "batch": id.batch,
            "seq": id.seq, "dim": id.dim, "vocab": id.vocab, "out_dim": id.out_dim,
        });
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{} was closed", self.python))?;
        writeln!(stdin, "{request}")
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("writing to {}: {e}", self.python))?;
        let answer = self.read_line()?;
        let mut p: AnchorPoint = serde_json::from_value(answer.clone())
            .map_err(|e| format!("{}: unreadable answer {answer}: {e}", self.python))?;
        p.throughput = p.best_ms().zip(p.work()).map(|(ms, w)| {
            let per_s = 1e3 / ms;
            if w.op == Op::Embedding {
                w.bytes_moved() as f64 * per_s / 1e9
            } else {
                w.flops() as f64 * per_s / 1e9
            }
        });
        Ok(p)
    }
}

impl Drop for AnchorSession {
    fn drop(&mut self) {
        // Closing stdin ends the helper's loop; don't leave it behind.
        drop(self.stdin.take());
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interpreter_is_an_error_that_names_it() {
        let why = AnchorSession::start_torch("/nonexistent/python3", &Sampling::default(), 1.0, 1)
            .err()
            .expect("no such interpreter");
        assert!(
            why.contains("could not start /nonexistent/python3"),
            "{why}"
        );
    }

    #[test]
    fn a_helper_that_exits_is_reported_with_its_last_words() {
        // `false` starts and exits non-zero without a line, as a Python
        // without torch does (after its traceback).
        let why = AnchorSession::start_torch("false", &Sampling::default(), 1.0, 1)
            .err()
            .expect("false is no helper");
        assert!(why.starts_with("false exited with exit status: 1"), "{why}");
    }
}

//! Same-run anchors: what a reference library reaches on the same shapes, on the
//! same machine, in the same `kernel-lab run`, so our numbers come with their
//! ratio to it. The CPU anchor is PyTorch (MKL / oneDNN), timed by
//! `experiments/anchors/torch_cpu.py`, which the binary carries and runs with
//! `python3` (or `$KERNEL_LAB_PYTHON`) as a helper for the whole sweep: each CPU
//! point goes to it right after the lab measured it, so both are timed within
//! seconds of each other, under the same machine conditions. Without Python or
//! PyTorch the anchor is recorded as unavailable, with the reason, and the run
//! goes on. The numbers it returns are kept as `results::Anchors`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::measure::Sampling;
use crate::results::{AnchorPoint, Record};

/// The helper script, carried in the binary.
pub const TORCH_CPU_SCRIPT: &str = include_str!("../experiments/anchors/torch_cpu.py");

/// How long the helper may take to start (importing PyTorch can be slow).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// The startup timeout: [`STARTUP_TIMEOUT`], or `$KERNEL_LAB_ANCHOR_TIMEOUT_S`
/// seconds (which also caps each answer's wait).
fn startup_timeout() -> Duration {
    env_timeout().unwrap_or(STARTUP_TIMEOUT)
}

fn env_timeout() -> Option<Duration> {
    std::env::var("KERNEL_LAB_ANCHOR_TIMEOUT_S")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
}

/// Lines of the helper's stderr kept for error messages.
const STDERR_LINES: usize = 20;
/// Non-JSON stdout lines in a row after which the helper is given up.
const MAX_NOISE_LINES: usize = 10_000;

/// The Python interpreter to run helpers with: `$KERNEL_LAB_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("KERNEL_LAB_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A running helper: it times the library on each point as the sweep hands it
/// over, right after the lab measured the same point.
pub struct AnchorSession {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Lines the helper writes on stdout, read by a thread of their own so a
    /// silent helper can be timed out instead of blocking the run.
    lines: Receiver<String>,
    /// The last lines of its stderr, drained by a thread so that a helper that
    /// floods stderr never blocks on a full pipe.
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// How long one point's answer may take.
    answer_timeout: Duration,
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
        Self::start(
            python,
            sampling,
            max_run_seconds,
            threads,
            startup_timeout(),
        )
    }

    fn start(
        python: &str,
        sampling: &Sampling,
        max_run_seconds: f64,
        threads: usize,
        startup_timeout: Duration,
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
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(std::result::Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let ring = Arc::clone(&stderr);
        let err = BufReader::new(child.stderr.take().expect("stderr is piped"));
        std::thread::spawn(move || {
            for line in err.lines().map_while(std::result::Result::ok) {
                let mut r = ring.lock().unwrap_or_else(|p| p.into_inner());
                if r.len() == STDERR_LINES {
                    r.pop_front();
                }
                r.push_back(line);
            }
        });
        let mut session = AnchorSession {
            child,
            stdin,
            lines,
            stderr,
            // The helper's own budget per point, plus its two timed forms and slack.
            answer_timeout: env_timeout().unwrap_or(Duration::from_secs_f64(
                (3.0 * max_run_seconds + 3.0 * sampling.max_ms / 1e3 + 30.0).min(3600.0),
            )),
            python: python.to_string(),
            library: String::new(),
        };
        let first = session.read_line(startup_timeout)?;
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

    /// The next JSON line from the helper, within `timeout`; lines that are
    /// not JSON are skipped (at most [`MAX_NOISE_LINES`] in a row). A helper
    /// that stays silent past the timeout, floods, ends, or is outlived by a
    /// stop request (Ctrl-C) is killed and the reason returned.
    fn read_line(&mut self, timeout: Duration) -> std::result::Result<serde_json::Value, String> {
        let deadline = Instant::now() + timeout;
        let mut noise = 0;
        loop {
            if crate::stop::stop_requested() {
                self.kill();
                return Err(format!(
                    "{} was stopped (the run was asked to stop)",
                    self.python
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.kill();
                return Err(format!(
                    "{} did not answer within {:.0} s and was stopped{}",
                    self.python,
                    timeout.as_secs_f64(),
                    self.last_words()
                        .map_or(String::new(), |l| format!(" (its last words: {l})"))
                ));
            }
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(line) => {
                    if let Ok(v) = serde_json::from_str(&line) {
                        return Ok(v);
                    }
                    noise += 1;
                    if noise > MAX_NOISE_LINES {
                        self.kill();
                        return Err(format!(
                            "{} printed {MAX_NOISE_LINES} lines that are not JSON in a row and was stopped",
                            self.python
                        ));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(self.why_it_ended()),
            }
        }
    }

    /// The last non-empty line the helper wrote on stderr, if any.
    fn last_words(&self) -> Option<String> {
        let r = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        r.iter().rev().find(|l| !l.trim().is_empty()).cloned()
    }

    /// Ends the helper now.
    fn kill(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The helper's exit status and the last line it wrote to stderr.
    fn why_it_ended(&mut self) -> String {
        drop(self.stdin.take());
        let status = self
            .child
            .wait()
            .map_or("an unknown status".to_string(), |s| s.to_string());
        // Its stderr thread ends with the process; give it a moment to catch up.
        std::thread::sleep(Duration::from_millis(50));
        let last = self.last_words().unwrap_or_else(|| "no message".into());
        format!("{} exited with {status}: {last}", self.python)
    }

    /// Times the library on the point `r` measured (a verified CPU record).
    pub fn measure(&mut self, r: &Record) -> std::result::Result<AnchorPoint, String> {
        let id = &r.id;
        // The op's name and its own parameters, and the precision.
        let mut request = serde_json::to_value(id.params).expect("parameters serialise");
        request["precision"] = serde_json::to_value(id.precision).expect("a precision serialises");
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{} was closed", self.python))?;
        writeln!(stdin, "{request}")
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("writing to {}: {e}", self.python))?;
        let answer = self.read_line(self.answer_timeout)?;
        let mut p: AnchorPoint = serde_json::from_value(answer.clone())
            .map_err(|e| format!("{}: unreadable answer {answer}: {e}", self.python))?;
        p.throughput = p.best_ms().map(|ms| p.rate(ms));
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

    /// A fake interpreter: a shell script that ignores its arguments.
    fn fake(name: &str, body: &str) -> String {
        let dir = std::env::temp_dir().join(format!("kernel-lab-helper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        let mut perm = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&path, perm).unwrap();
        path.display().to_string()
    }

    /// Starts a fake helper, retrying while another test's fork still holds
    /// the just-written script open (ETXTBSY, "Text file busy").
    fn start_fake(python: &str, timeout: Duration) -> std::result::Result<AnchorSession, String> {
        for _ in 0..50 {
            match AnchorSession::start(python, &Sampling::default(), 1.0, 1, timeout) {
                Err(e) if e.contains("Text file busy") => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                r => return r,
            }
        }
        Err("the script stayed busy".into())
    }

    #[test]
    fn a_silent_helper_is_timed_out_and_killed() {
        let python = fake("silent", "echo 'importing...' >&2; exec sleep 600");
        let start = Instant::now();
        let why = start_fake(&python, Duration::from_secs(1))
            .err()
            .expect("a silent helper");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        assert!(
            why.contains("did not answer within 1 s") && why.contains("importing..."),
            "{why}"
        );
    }

    #[test]
    fn a_helper_flooding_stderr_does_not_block_and_stdout_noise_is_bounded() {
        // 4 MB of stderr before its first line: a pipe nobody drains fills at 64 KiB.
        let python = fake(
            "flood",
            "head -c 4000000 /dev/zero | tr '\\0' 'x' >&2; echo; echo '{\"library\": \"fake\"}'; cat > /dev/null",
        );
        let s = start_fake(&python, Duration::from_secs(30)).expect("the flood is drained");
        assert!(s.library.starts_with("fake"), "{}", s.library);
        drop(s);
        let python = fake("noise", "exec yes 'not json'");
        let why = start_fake(&python, Duration::from_secs(30))
            .err()
            .expect("noise is no helper");
        assert!(why.contains("lines that are not JSON"), "{why}");
    }
}

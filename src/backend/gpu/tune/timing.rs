//! Times an op's candidate configurations on one tuning shape and keeps the
//! fastest that verifies. Candidates are prepared by the op (which knows how
//! to build each); each is verified by the op's own check and timed through
//! the measurement engine with the tuning sampling profile, so the tuner is
//! no second harness and knows nothing of wgpu or of ops.

use super::tuner::{Candidate, Tuning};
use crate::error::{LabError, Result};
use crate::measure::{self, Sampling};
use crate::prepared_op::{Accumulation, PreparedOp};
use crate::stats::Samples;
use crate::verify::Accuracy;

/// Times every candidate (prepared by `build`, its output checked by
/// `verify`) and returns the fastest verified one, with every candidate's
/// median and every rejection. A candidate that fails to build, run or
/// verify is left out with the reason; only a lost device stops the tuning.
pub fn tune<'a, V: Candidate>(
    candidates: Vec<V>,
    verify: impl Fn(&[f32], Accumulation) -> Accuracy,
    mut build: impl FnMut(V) -> Result<Box<dyn PreparedOp + 'a>>,
) -> Result<Tuning> {
    let mut timings: Vec<(String, f64)> = Vec::new();
    let mut rejected = Vec::new();
    let mut compile_ms = Vec::new();
    for variant in candidates {
        let best = timings.iter().map(|t| t.1).reduce(f64::min);
        let timed = build(variant).and_then(|mut op| {
            if let Some(c) = op.one_time_costs() {
                compile_ms.push((variant.name(), c.compile_ns as f64 * 1e-6));
            }
            time_candidate(op.as_mut(), &verify, best)
        });
        match timed {
            Ok(ms) => timings.push((variant.name(), ms)),
            Err(e @ LabError::DeviceLost(_)) => return Err(e),
            Err(e) => rejected.push((variant.name(), e.to_string())),
        }
    }
    let chosen = timings
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|t| t.0.clone())
        .ok_or_else(|| {
            let why: Vec<String> = rejected.iter().map(|(v, e)| format!("{v}: {e}")).collect();
            LabError::Gpu(format!(
                "no variant verified on the tuning shape ({})",
                why.join("; ")
            ))
        })?;
    Ok(Tuning {
        chosen,
        timings_ms: timings,
        rejected,
        cached: false,
        not_cached: None,
        compile_ms,
    })
}

/// Runs and verifies a prepared candidate, then returns the median ms of its
/// first timed run and the engine's tuning samples — or that first run alone
/// when it is over twice the `best` median so far (it cannot win; on a slow
/// device this is most of the tuning time saved).
fn time_candidate(
    op: &mut dyn PreparedOp,
    verify: &dyn Fn(&[f32], Accumulation) -> Accuracy,
    best: Option<f64>,
) -> Result<f64> {
    op.run()?;
    let accuracy = verify(&op.output()?, op.accumulation());
    if !accuracy.verified {
        return Err(LabError::Gpu(format!(
            "failed verification: {}",
            accuracy.failure.unwrap_or_default()
        )));
    }
    let first = op.run()?.best_ns() as f64 * 1e-6;
    if best.is_some_and(|b| first > 2.0 * b) {
        return Ok(first);
    }
    let m = measure::run(op, &Sampling::tuning())?;
    let all = std::iter::once(first).chain(m.samples.iter().map(|s| s.best_ns() as f64 * 1e-6));
    Ok(Samples::new(all).map_or(first, |s| s.quantile(0.5)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepared_op::{MemoryUse, Phases, Sample, TimingMethod};
    use crate::verify::tests::accuracy;

    /// A candidate that "runs" in a fixed time and returns a fixed output.
    struct Fake {
        output: Vec<f32>,
        ns: u64,
    }

    impl PreparedOp for Fake {
        fn describe(&self) -> String {
            "fake".into()
        }
        fn timing_method(&self) -> TimingMethod {
            TimingMethod::DeviceTimestamp
        }
        fn run(&mut self) -> Result<Sample> {
            Ok(Sample::timed(self.ns * 2, Some(Ok(self.ns))))
        }
        fn run_batch(&mut self, n: u32) -> Result<Sample> {
            Ok(Sample::timed(
                self.ns * 2 * n as u64,
                Some(Ok(self.ns * n as u64)),
            ))
        }
        fn run_phases(&mut self) -> Result<Phases> {
            Ok(Phases {
                kernel_ns: self.ns,
                ..Default::default()
            })
        }
        fn output(&mut self) -> Result<Vec<f32>> {
            Ok(self.output.clone())
        }
        fn memory(&self) -> MemoryUse {
            MemoryUse::default()
        }
        fn flush_caches(&mut self) -> Result<()> {
            Ok(())
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    struct V(&'static str);

    impl Candidate for V {
        fn name(&self) -> String {
            self.0.into()
        }
    }

    /// The fastest candidate is rejected when one element of its output is
    /// wrong, and the slower correct one is chosen; each keeps its reason or
    /// time. Planted: the verdict ignored -> the wrong one wins -> fails.
    #[test]
    fn a_fast_candidate_with_a_wrong_element_is_rejected_and_the_right_one_chosen() {
        let right = vec![1.0f32, 2.0, 3.0];
        let mut wrong = right.clone();
        *wrong.last_mut().unwrap() += 1.0;
        let verify = |out: &[f32], _: Accumulation| accuracy(out == [1.0, 2.0, 3.0]);
        let (fast, slow) = (V("fast"), V("slow"));
        let t = tune(vec![fast, slow], verify, |v| {
            Ok(Box::new(Fake {
                output: if v == fast {
                    wrong.clone()
                } else {
                    right.clone()
                },
                ns: if v == fast { 1_000 } else { 5_000 },
            }))
        })
        .unwrap();
        assert_eq!(t.chosen, "slow");
        assert_eq!(t.timings_ms, vec![("slow".to_string(), 0.005)]);
        assert_eq!(t.rejected.len(), 1);
        assert_eq!(t.rejected[0].0, "fast");
        assert!(
            t.rejected[0].1.contains("failed verification"),
            "{:?}",
            t.rejected
        );
        let none = tune(vec![fast], verify, |_| {
            Ok(Box::new(Fake {
                output: wrong.clone(),
                ns: 1,
            }) as Box<dyn PreparedOp>)
        })
        .unwrap_err()
        .to_string();
        assert!(
            none.contains("no variant verified")
                && none.contains("fast: GPU error: failed verification"),
            "{none}"
        );
    }
}

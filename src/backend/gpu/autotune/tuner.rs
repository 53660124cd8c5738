//! Times the candidate matmul configurations of one storage mode and shape
//! class and keeps the fastest that verifies. Candidates are prepared by the
//! caller (the GPU backend builds them); each is verified against the f64
//! reference and timed through the measurement engine with the tuning
//! sampling profile, so the tuner is no second harness and knows nothing of
//! wgpu.

use super::Tuning;
use crate::backend::gpu::shaders::MatmulVariant;
use crate::error::{LabError, Result};
use crate::measure::{self, Sampling};
use crate::prepared_op::PreparedOp;
use crate::reference;
use crate::stats::Samples;
use crate::workload::{Inputs, Workload};

/// Times every candidate on `work` (prepared by `build`) and returns the
/// fastest verified one, with every candidate's median and every rejection.
/// A candidate that fails to build, run or verify is left out with the
/// reason; only a lost device stops the tuning.
pub fn tune<'a>(
    candidates: Vec<MatmulVariant>,
    work: &Workload,
    inputs: &Inputs,
    mut build: impl FnMut(MatmulVariant) -> Result<Box<dyn PreparedOp + 'a>>,
) -> Result<Tuning> {
    let mut timings: Vec<(MatmulVariant, f64)> = Vec::new();
    let mut rejected = Vec::new();
    let mut compile_ms = Vec::new();
    for variant in candidates {
        let best = timings.iter().map(|t| t.1).reduce(f64::min);
        let timed = build(variant).and_then(|mut op| {
            if let Some(c) = op.one_time_costs() {
                compile_ms.push((variant, c.compile_ns as f64 * 1e-6));
            }
            time_candidate(op.as_mut(), work, inputs, best)
        });
        match timed {
            Ok(ms) => timings.push((variant, ms)),
            Err(e @ LabError::DeviceLost(_)) => return Err(e),
            Err(e) => rejected.push((variant, e.to_string())),
        }
    }
    let chosen = timings
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|t| t.0)
        .ok_or_else(|| {
            let why: Vec<String> = rejected
                .iter()
                .map(|(v, e)| format!("{}: {e}", v.name()))
                .collect();
            LabError::Gpu(format!(
                "no matmul variant verified on the tuning shape ({})",
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

/// Runs and verifies a prepared candidate (on [`reference::TUNING_SAMPLED_ROWS`]
/// rows where the shape is past the full reference), then returns the median ms of its
/// first timed run and the engine's tuning samples — or that first run alone
/// when it is over twice the `best` median so far (it cannot win; on a slow
/// device this is most of the tuning time saved).
fn time_candidate(
    op: &mut dyn PreparedOp,
    work: &Workload,
    inputs: &Inputs,
    best: Option<f64>,
) -> Result<f64> {
    op.run()?;
    let accuracy = reference::verify_sampled(
        work,
        inputs,
        &op.output()?,
        op.accumulation(),
        reference::TUNING_SAMPLED_ROWS,
    );
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
    use crate::workload::{Op, Precision, Shape};

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

    /// The fastest candidate is rejected when one element of its output is
    /// wrong, and the slower correct one is chosen; each keeps its reason or time.
    #[test]
    fn a_fast_candidate_with_a_wrong_element_is_rejected_and_the_right_one_chosen() {
        let work = Workload {
            op: Op::Matmul,
            precision: Precision::F32,
            shape: Shape::new(1, 37, 24, 1).unwrap(),
            data: Default::default(),
        };
        let inputs = Inputs::generate(&work, 1);
        let right = reference::reference_output(&work, &inputs);
        let mut wrong = right.clone();
        *wrong.last_mut().unwrap() += 1.0;
        let (fast, slow) = (MatmulVariant::TILED, MatmulVariant::DIRECT);
        let t = tune(vec![fast, slow], &work, &inputs, |v| {
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
        assert_eq!(t.chosen, slow);
        assert_eq!(t.timings_ms, vec![(slow, 0.005)]);
        assert_eq!(t.rejected.len(), 1);
        assert_eq!(t.rejected[0].0, fast);
        assert!(
            t.rejected[0].1.contains("failed verification"),
            "{:?}",
            t.rejected
        );
    }
}

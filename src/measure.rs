//! The measurement engine: warm-up, adaptive sampling with recorded stopping
//! rules, optional cache flushing between samples, batch (throughput) mode and
//! end-to-end phases. Generic over [`PreparedOp`]: it holds no GPU code.
//! `measure_point` measures one point with it, from inputs to a verified record.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::prepared_op::{Phases, PreparedOp, Sample};
use crate::sample_clocks::SLOW_CLOCK_SHARE;
use crate::stats::mean_stddev;

/// How a point is sampled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sampling {
    /// Warm-up executions before sampling (at least this many, unless
    /// `warmup_ms` runs out first after one).
    pub warmup_runs: u32,
    /// Warm-up time budget, milliseconds.
    pub warmup_ms: f64,
    /// Samples to take before any stopping rule but `max_ms` may stop sampling.
    pub min_samples: u32,
    /// Never take more samples than this.
    pub max_samples: u32,
    /// Keep sampling for at least this long, milliseconds.
    pub min_ms: f64,
    /// Stop after this long, milliseconds (after one sample at least).
    pub max_ms: f64,
    /// Stop once the standard error of the mean is below this fraction of the mean.
    pub target_rel_noise: f64,
    /// Evict caches before every sample (cold-cache timing).
    pub cold_cache: bool,
    /// Measure back-to-back dispatches in one submission (throughput).
    pub batch_mode: bool,
    /// End-to-end requests (upload + kernel + readback) to time.
    pub phase_runs: u32,
    /// Passes a sweep makes over its points: each point is measured this many
    /// times, every other pass in reverse order, and its samples pooled, each
    /// pass with [`Sampling::for_round`]'s share of the budgets. On a machine
    /// whose speed drifts over minutes (a shared VM), points measured far
    /// apart in time compare fairly only so.
    pub rounds: u32,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            warmup_runs: 3,
            warmup_ms: 200.0,
            min_samples: 10,
            max_samples: 1000,
            min_ms: 200.0,
            max_ms: 3000.0,
            target_rel_noise: 0.01,
            cold_cache: false,
            batch_mode: true,
            phase_runs: 3,
            rounds: 1,
        }
    }
}

impl Sampling {
    /// A much cheaper sampling for smoke runs and tests.
    pub fn quick() -> Self {
        Sampling {
            warmup_runs: 1,
            warmup_ms: 20.0,
            min_samples: 3,
            max_samples: 20,
            min_ms: 0.0,
            max_ms: 300.0,
            target_rel_noise: 0.05,
            cold_cache: false,
            batch_mode: true,
            phase_runs: 1,
            rounds: 1,
        }
    }

    /// One pass's share of a sampling of `rounds` passes: its sample counts
    /// and time budgets divided by the rounds (at least one sample), the
    /// warm-up unchanged. Throughput and end-to-end phases are measured in
    /// the first pass only (`first`), so a later pass only adds latency
    /// samples.
    pub fn for_round(&self, first: bool) -> Sampling {
        let r = self.rounds.max(1);
        let split = |v: u32| v.div_ceil(r).max(1);
        Sampling {
            min_samples: split(self.min_samples),
            max_samples: split(self.max_samples),
            min_ms: self.min_ms / r as f64,
            max_ms: self.max_ms / r as f64,
            batch_mode: self.batch_mode && first,
            phase_runs: if first { self.phase_runs } else { 0 },
            rounds: 1,
            ..self.clone()
        }
    }
}

impl Sampling {
    /// The autotuner's profile: no warm-up (the candidate was just verified and
    /// run once), exactly four samples, no throughput or phases — with the
    /// candidate's first timed run, the median of five.
    pub fn tuning() -> Self {
        Sampling {
            warmup_runs: 0,
            warmup_ms: 0.0,
            min_samples: 4,
            max_samples: 4,
            min_ms: 0.0,
            max_ms: f64::INFINITY,
            target_rel_noise: 0.0,
            cold_cache: false,
            batch_mode: false,
            phase_runs: 0,
            rounds: 1,
        }
    }
}

/// Which rule ended sampling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopRule {
    /// The relative noise fell below the target after the minimums were met.
    TargetNoise,
    /// `max_samples` reached.
    MaxSamples,
    /// `max_ms` ran out.
    MaxTime,
}

/// The sustained cost of back-to-back dispatches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchResult {
    /// Dispatches per submission.
    pub dispatches: u32,
    /// Submissions measured.
    pub submissions: u32,
    /// Median time per dispatch, nanoseconds.
    pub per_dispatch_ns: f64,
}

/// The raw outcome of sampling one kernel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Warm-up executions run.
    pub warmup_runs: u32,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// Why sampling stopped.
    pub stop: StopRule,
    /// Sustained throughput, when batch mode ran.
    pub batch: Option<BatchResult>,
    /// End-to-end phases, one per request.
    pub phases: Vec<Phases>,
    /// The device's clock, MHz, read before the first sample, after every
    /// [`CLOCK_EVERY`]-th and after the last (empty where nothing can read it).
    #[serde(default)]
    pub clocks_mhz: Vec<u32>,
    /// Busy warm-up spent lifting a clock that read low after the warm-up,
    /// milliseconds (`None` when none was needed or possible).
    #[serde(default)]
    pub clock_lift_ms: Option<f64>,
}

/// Samples between two readings of the device's clock while sampling.
pub const CLOCK_EVERY: usize = 16;

/// Whether sampling may stop now, and by which rule. Pure, for testing.
pub fn should_stop(s: &Sampling, times_ns: &[f64], elapsed: Duration) -> Option<StopRule> {
    let n = times_ns.len() as u32;
    let ms = elapsed.as_secs_f64() * 1e3;
    if n >= s.max_samples {
        return Some(StopRule::MaxSamples);
    }
    if n >= 1 && ms >= s.max_ms {
        return Some(StopRule::MaxTime);
    }
    if n >= s.min_samples.max(2) && ms >= s.min_ms {
        let (mean, sd) = mean_stddev(times_ns);
        if mean > 0.0 && sd / (mean * (n as f64).sqrt()) <= s.target_rel_noise {
            return Some(StopRule::TargetNoise);
        }
    }
    None
}

/// The device's clock as the engine may read it between runs.
#[derive(Clone, Copy)]
pub struct Clock<'a> {
    /// The clock now, MHz (`None` when it cannot be read).
    pub read: &'a dyn Fn() -> Option<u32>,
    /// The highest clock the device may run at, MHz.
    pub max_mhz: Option<u32>,
}

fn no_reading() -> Option<u32> {
    None
}

impl Clock<'_> {
    /// No clock to read (the CPU, and every GPU without a driver monitor).
    pub const NONE: Clock<'static> = Clock {
        read: &no_reading,
        max_mhz: None,
    };
}

/// The longest busy warm-up spent lifting a low clock, milliseconds.
pub const LIFT_MAX_MS: f64 = 500.0;
/// Each busy warm-up batch runs about this long, milliseconds.
const LIFT_BATCH_MS: f64 = 10.0;
/// Batches in a row that may leave the clock no higher before the lift stops
/// (a card held down by its power limit climbs no further).
const LIFT_FLAT_BATCHES: u32 = 5;

/// Warms `kernel` up, samples it until a stopping rule fires, then measures
/// throughput and phases as `s` asks.
pub fn run(kernel: &mut dyn PreparedOp, s: &Sampling) -> Result<Measurement> {
    run_watched(kernel, s, Clock::NONE)
}

/// [`run`], watching the device's clock: after the warm-up, a clock under
/// [`SLOW_CLOCK_SHARE`] of its maximum is lifted by back-to-back batches (at
/// most [`LIFT_MAX_MS`]; never when `s` asks for no warm-up), and it is read
/// between samples (never inside one): before the first, after every
/// [`CLOCK_EVERY`]-th and after the last, into [`Measurement::clocks_mhz`].
pub fn run_watched(
    kernel: &mut dyn PreparedOp,
    s: &Sampling,
    clock: Clock<'_>,
) -> Result<Measurement> {
    let warm_start = Instant::now();
    let mut warmup_runs = 0;
    let mut last_ns = None;
    while warmup_runs < s.warmup_runs {
        last_ns = Some(kernel.run()?.best_ns());
        warmup_runs += 1;
        if warm_start.elapsed().as_secs_f64() * 1e3 >= s.warmup_ms {
            break;
        }
    }
    let clock_lift_ms = match last_ns {
        Some(ns) => lift_clock(kernel, clock, ns)?,
        None => None,
    };

    let mut samples = Vec::new();
    let mut times = Vec::new();
    let mut clocks_mhz: Vec<u32> = (clock.read)().into_iter().collect();
    let start = Instant::now();
    let mut excluded = Duration::ZERO;
    let stop = loop {
        if s.cold_cache {
            // The flush is not part of the sample, nor of the time budget.
            let t = Instant::now();
            kernel.flush_caches()?;
            excluded += t.elapsed();
        }
        let sample = kernel.run()?;
        times.push(sample.best_ns() as f64);
        samples.push(sample);
        let stop = should_stop(s, &times, start.elapsed().saturating_sub(excluded));
        if stop.is_some() || samples.len() % CLOCK_EVERY == 0 {
            // Outside the budget, like a flush: the reading is no part of sampling.
            let t = Instant::now();
            clocks_mhz.extend((clock.read)());
            excluded += t.elapsed();
        }
        if let Some(rule) = stop {
            break rule;
        }
    };

    let median = {
        let mut t = times.clone();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    // Batches sized to take about 50 ms (2..=256 dispatches); skipped when a
    // single dispatch is so slow that even two would overrun the budget.
    let batch = if s.batch_mode && median * 2.0 <= s.max_ms * 1e6 {
        let dispatches = ((50e6 / median.max(1.0)) as u32).clamp(2, 256);
        let mut per = Vec::new();
        for _ in 0..3 {
            per.push(kernel.run_batch(dispatches)?.best_ns() as f64 / dispatches as f64);
        }
        per.sort_by(f64::total_cmp);
        Some(BatchResult {
            dispatches,
            submissions: 3,
            per_dispatch_ns: per[1],
        })
    } else {
        None
    };

    // At least one end-to-end request when asked for; more while the budget lasts.
    let mut phases = Vec::new();
    let phase_start = Instant::now();
    while (phases.len() as u32) < s.phase_runs {
        phases.push(kernel.run_phases()?);
        if phase_start.elapsed().as_secs_f64() * 1e3 >= s.max_ms {
            break;
        }
    }
    Ok(Measurement {
        warmup_runs,
        samples,
        stop,
        batch,
        phases,
        clocks_mhz,
        clock_lift_ms,
    })
}

/// Runs `kernel` back to back while `clock` reads under [`SLOW_CLOCK_SHARE`]
/// of its maximum, until it does not, [`LIFT_MAX_MS`] have passed, or
/// [`LIFT_FLAT_BATCHES`] batches in a row raised it no further; batches of
/// about [`LIFT_BATCH_MS`] at `run_ns` a run. Returns the milliseconds spent,
/// `None` when the clock read high enough (or could not be read) to begin with.
fn lift_clock(kernel: &mut dyn PreparedOp, clock: Clock<'_>, run_ns: u64) -> Result<Option<f64>> {
    let Some(max) = clock.max_mhz else {
        return Ok(None);
    };
    let Some(mut now) = (clock.read)() else {
        return Ok(None);
    };
    let target = (SLOW_CLOCK_SHARE * max as f64).ceil() as u32;
    if now >= target {
        return Ok(None);
    }
    let per_batch = (LIFT_BATCH_MS * 1e6 / run_ns.max(1) as f64).clamp(1.0, 10_000.0) as u32;
    let t = Instant::now();
    let (mut best, mut flat) = (now, 0);
    while now < target && flat < LIFT_FLAT_BATCHES && t.elapsed().as_secs_f64() * 1e3 < LIFT_MAX_MS
    {
        kernel.run_batch(per_batch)?;
        // A reading that fails ends the lift.
        now = (clock.read)().unwrap_or(target);
        if now > best {
            (best, flat) = (now, 0);
        } else {
            flat += 1;
        }
    }
    Ok(Some(t.elapsed().as_secs_f64() * 1e3))
}

#[cfg(test)]
mod tests {
    /// A pass of three takes a third of the sample counts (at least one) and
    /// time budgets; throughput and phases only in the first pass.
    #[test]
    fn a_round_takes_its_share_of_the_budgets() {
        let s = Sampling {
            min_samples: 10,
            max_samples: 200,
            min_ms: 60.0,
            max_ms: 900.0,
            rounds: 3,
            ..Sampling::default()
        };
        let first = s.for_round(true);
        assert_eq!((first.min_samples, first.max_samples), (4, 67));
        assert_eq!((first.min_ms, first.max_ms), (20.0, 300.0));
        assert!(first.batch_mode && first.phase_runs == s.phase_runs && first.rounds == 1);
        let later = s.for_round(false);
        assert!(!later.batch_mode && later.phase_runs == 0);
        let one = Sampling {
            max_samples: 1,
            min_samples: 0,
            rounds: 4,
            ..Sampling::default()
        };
        assert_eq!(
            (
                one.for_round(false).max_samples,
                one.for_round(false).min_samples
            ),
            (1, 1)
        );
        assert_eq!(Sampling::default().for_round(true), Sampling::default());
    }

    use super::*;

    fn cfg() -> Sampling {
        Sampling {
            min_samples: 5,
            max_samples: 50,
            min_ms: 10.0,
            max_ms: 1000.0,
            target_rel_noise: 0.01,
            ..Default::default()
        }
    }

    #[test]
    fn stops_at_max_samples() {
        let t = vec![1.0; 50];
        assert_eq!(
            should_stop(&cfg(), &t, Duration::from_millis(1)),
            Some(StopRule::MaxSamples)
        );
    }

    #[test]
    fn stops_at_max_time_even_below_min_samples() {
        let t = vec![1.0, 9.0];
        assert_eq!(
            should_stop(&cfg(), &t, Duration::from_secs(2)),
            Some(StopRule::MaxTime)
        );
    }

    #[test]
    fn quiet_points_stop_on_noise_only_after_the_minimums() {
        let quiet = vec![100.0; 5];
        assert_eq!(
            should_stop(&cfg(), &quiet[..4], Duration::from_millis(50)),
            None
        );
        assert_eq!(should_stop(&cfg(), &quiet, Duration::from_millis(5)), None);
        assert_eq!(
            should_stop(&cfg(), &quiet, Duration::from_millis(50)),
            Some(StopRule::TargetNoise)
        );
    }

    #[test]
    fn noisy_points_keep_sampling() {
        let noisy: Vec<f64> = (0..10)
            .map(|i| if i % 2 == 0 { 50.0 } else { 150.0 })
            .collect();
        assert_eq!(should_stop(&cfg(), &noisy, Duration::from_millis(50)), None);
    }

    /// A kernel whose samples are fixed, to test the engine without a device.
    struct Fixed(u64, u32);
    impl PreparedOp for Fixed {
        fn describe(&self) -> String {
            "fixed".into()
        }
        fn timing_method(&self) -> crate::prepared_op::TimingMethod {
            crate::prepared_op::TimingMethod::Wall
        }
        fn run(&mut self) -> Result<Sample> {
            self.1 += 1;
            Ok(Sample::wall(self.0))
        }
        fn run_batch(&mut self, n: u32) -> Result<Sample> {
            Ok(Sample::wall(self.0 * n as u64 / 2))
        }
        fn run_phases(&mut self) -> Result<Phases> {
            Ok(Phases {
                upload_ns: 1,
                kernel_ns: self.0,
                readback_ns: 2,
            })
        }
        fn output(&mut self) -> Result<Vec<f32>> {
            Ok(vec![])
        }
        fn memory(&self) -> crate::prepared_op::MemoryUse {
            Default::default()
        }
        fn flush_caches(&mut self) -> Result<()> {
            Ok(())
        }
    }

    /// 9, 11, 9, 11: mean 10, sample sd 2/sqrt(3), so the median's relative
    /// noise sd/(mean*sqrt(n)) is 0.0577: a target of 0.06 stops, 0.057 not.
    #[test]
    fn the_noise_rule_is_the_relative_standard_error() {
        let t = [9.0, 11.0, 9.0, 11.0];
        let at = |target| Sampling {
            min_samples: 4,
            min_ms: 0.0,
            target_rel_noise: target,
            ..cfg()
        };
        let d = Duration::from_millis(1);
        assert_eq!(should_stop(&at(0.06), &t, d), Some(StopRule::TargetNoise));
        assert_eq!(should_stop(&at(0.057), &t, d), None);
        assert_eq!(should_stop(&at(0.06), &[0.0; 4], d), None);
    }

    #[test]
    fn the_quick_profile_is_small() {
        let q = Sampling::quick();
        assert_eq!((q.min_samples, q.max_samples, q.warmup_runs), (3, 20, 1));
        assert_eq!((q.max_ms, q.phase_runs), (300.0, 1));
    }

    /// A kernel that takes real time (`sleep` per run) and returns the
    /// samples of `times` in turn, counting flushes.
    struct Timed {
        sleep: Duration,
        times: Vec<u64>,
        runs: usize,
        flushes: usize,
        batches: Vec<u32>,
    }
    impl PreparedOp for Timed {
        fn describe(&self) -> String {
            "timed".into()
        }
        fn timing_method(&self) -> crate::prepared_op::TimingMethod {
            crate::prepared_op::TimingMethod::Wall
        }
        fn run(&mut self) -> Result<Sample> {
            std::thread::sleep(self.sleep);
            self.runs += 1;
            Ok(Sample::wall(self.times[(self.runs - 1) % self.times.len()]))
        }
        fn run_batch(&mut self, n: u32) -> Result<Sample> {
            self.batches.push(n);
            Ok(Sample::wall(1000 * n as u64))
        }
        fn run_phases(&mut self) -> Result<Phases> {
            std::thread::sleep(self.sleep);
            Ok(Phases {
                upload_ns: 1,
                kernel_ns: 2,
                readback_ns: 3,
            })
        }
        fn output(&mut self) -> Result<Vec<f32>> {
            Ok(vec![])
        }
        fn memory(&self) -> crate::prepared_op::MemoryUse {
            Default::default()
        }
        fn flush_caches(&mut self) -> Result<()> {
            std::thread::sleep(self.sleep);
            self.flushes += 1;
            Ok(())
        }
    }

    fn timed(sleep_ms: u64, times: &[u64]) -> Timed {
        Timed {
            sleep: Duration::from_millis(sleep_ms),
            times: times.to_vec(),
            runs: 0,
            flushes: 0,
            batches: Vec::new(),
        }
    }

    /// Warm-up stops at its time budget; cold-cache flushes precede each
    /// sample and do not count against the budget; the batch is sized from
    /// the median sample (50 ms worth); phases stop at the time budget.
    #[test]
    fn budgets_flushes_and_batch_size_follow_the_samples() {
        let mut k = timed(5, &[1_000_000, 3_000_000, 2_000_000]);
        let s = Sampling {
            warmup_runs: 1000,
            warmup_ms: 20.0,
            min_samples: 3,
            max_samples: 3,
            min_ms: 0.0,
            max_ms: 60.0,
            cold_cache: true,
            phase_runs: 1000,
            ..Default::default()
        };
        let m = run(&mut k, &s).unwrap();
        assert!(
            (1..=6).contains(&m.warmup_runs),
            "{} warm-up runs",
            m.warmup_runs
        );
        assert_eq!(m.samples.len(), 3);
        assert_eq!(k.flushes, 3);
        // Median 2 ms: 25 dispatches of it in a batch.
        assert_eq!(k.batches, vec![25, 25, 25]);
        assert_eq!(m.batch.unwrap().per_dispatch_ns, 1000.0);
        assert!(
            (2..=14).contains(&m.phases.len()),
            "{} phases",
            m.phases.len()
        );
    }

    /// No batch when two dispatches would overrun the time budget.
    #[test]
    fn a_slow_point_skips_the_batch() {
        let s = Sampling {
            warmup_runs: 0,
            min_samples: 1,
            max_samples: 1,
            max_ms: 10.0,
            phase_runs: 0,
            ..Default::default()
        };
        let mut slow = timed(0, &[6_000_000]);
        assert!(run(&mut slow, &s).unwrap().batch.is_none());
        let mut fits = timed(0, &[5_000_000]);
        assert_eq!(run(&mut fits, &s).unwrap().batch.unwrap().dispatches, 10);
    }

    #[test]
    fn the_tuning_profile_takes_exactly_four_samples_and_nothing_else() {
        let mut k = Fixed(1_000, 0);
        let m = run(&mut k, &Sampling::tuning()).unwrap();
        assert_eq!(m.warmup_runs, 0);
        assert_eq!(m.samples.len(), 4);
        assert_eq!(m.stop, StopRule::MaxSamples);
        assert!(m.batch.is_none() && m.phases.is_empty());
        assert_eq!(k.1, 4);
    }

    #[test]
    fn engine_runs_warmup_samples_batch_and_phases() {
        let mut k = Fixed(1_000_000, 0);
        let s = Sampling {
            warmup_runs: 2,
            min_samples: 4,
            max_samples: 8,
            min_ms: 0.0,
            phase_runs: 2,
            ..Default::default()
        };
        let m = run(&mut k, &s).unwrap();
        assert_eq!(m.warmup_runs, 2);
        assert_eq!(m.samples.len(), 4); // identical samples: zero noise once the minimum is met
        assert_eq!(m.stop, StopRule::TargetNoise);
        assert_eq!(k.1, 6);
        let b = m.batch.unwrap();
        assert_eq!(b.per_dispatch_ns, 500_000.0);
        assert_eq!(m.phases.len(), 2);
    }

    /// The clock is read before the first sample, after every 16th and after
    /// the last, once where the last is a 16th; never in the warm-up or the
    /// batch. Planted: a reading after every sample, or none at the end ->
    /// the counts differ -> fails.
    #[test]
    fn the_clock_is_read_between_samples_and_at_both_ends() {
        use std::cell::Cell;
        for (n, reads) in [(40, 4), (32, 3), (1, 2)] {
            let calls = Cell::new(0u32);
            let clock = || {
                calls.set(calls.get() + 1);
                Some(1000 + calls.get())
            };
            let s = Sampling {
                warmup_runs: 5,
                min_samples: n,
                max_samples: n,
                min_ms: 0.0,
                phase_runs: 1,
                ..Default::default()
            };
            let clock = Clock {
                read: &clock,
                max_mhz: None,
            };
            let m = run_watched(&mut Fixed(1_000, 0), &s, clock).unwrap();
            assert_eq!(m.samples.len(), n as usize);
            assert_eq!(m.clocks_mhz.len(), reads, "{n} samples");
            assert_eq!(m.clocks_mhz[0], 1001, "the first reading comes first");
        }
        let m = run(&mut Fixed(1_000, 0), &Sampling::tuning()).unwrap();
        assert!(m.clocks_mhz.is_empty(), "nothing to read it");
    }

    /// A clock that reads low after the warm-up is lifted by busy batches
    /// until it reads 80% of its maximum, or stops rising, before the first
    /// sample; a high clock, an unknown maximum or a no-warm-up sampling are
    /// left alone. Planted: the lift skipped, or run without the flat-batch
    /// stop -> the reading counts differ -> fails.
    #[test]
    fn a_low_clock_is_lifted_before_sampling() {
        use std::cell::Cell;
        let s = Sampling {
            warmup_runs: 1,
            min_samples: 4,
            max_samples: 4,
            min_ms: 0.0,
            phase_runs: 0,
            batch_mode: false,
            ..Default::default()
        };
        // Readings: the lift's own until it stops, then 2 around 4 samples.
        type Reading<'a> = &'a dyn Fn(u32) -> u32;
        let cases: [(Reading, Option<u32>, u32, bool, u32); 5] = [
            (&|i| 345 + 500 * i, Some(1980), 1, true, 4 + 2),
            (&|_| 900, Some(1980), 1, true, 1 + LIFT_FLAT_BATCHES + 2),
            (&|_| 1980, Some(1980), 1, false, 1 + 2),
            (&|_| 345, None, 1, false, 2),
            (&|_| 345, Some(1980), 0, false, 2),
        ];
        for (n, (at, max_mhz, warmup_runs, lifted, reads)) in cases.into_iter().enumerate() {
            let calls = Cell::new(0u32);
            let read = || {
                let v = at(calls.get());
                calls.set(calls.get() + 1);
                Some(v)
            };
            let clock = Clock {
                read: &read,
                max_mhz,
            };
            let s = Sampling {
                warmup_runs,
                ..s.clone()
            };
            let m = run_watched(&mut Fixed(1_000_000, 0), &s, clock).unwrap();
            assert_eq!(m.clock_lift_ms.is_some(), lifted, "case {n}");
            assert_eq!(calls.get(), reads, "case {n}: readings");
            if n == 0 {
                assert_eq!(m.clocks_mhz[0], 345 + 500 * 4, "sampling began lifted");
            }
        }
    }
}

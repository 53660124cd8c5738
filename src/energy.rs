//! Energy per point, from the GPU driver's energy counter (NVML on NVIDIA;
//! hwmon's `energy1_input` on Intel's discrete cards and the AMD cards that
//! have one).
//!
//! After a point's latency samples, the op runs back to back in batches for a
//! window of at least [`WINDOW_MS`] while the card's millijoule counter is read
//! at both ends, so the energy is that of the op running continuously, not of
//! the host's gaps between samples. The counter advances in steps of its own
//! (tens of milliseconds on data-centre cards), which the window is long
//! enough to average over.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::gpu_monitor::GpuMonitor;
use crate::prepared_op::PreparedOp;
use crate::workload::Workload;

/// The shortest energy window, milliseconds of continuous running.
pub const WINDOW_MS: f64 = 300.0;

/// One batch's target length, milliseconds (the host submits between batches).
const BATCH_MS: f64 = 50.0;

/// What a point cost in energy, measured while it ran back to back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Energy {
    /// Seconds the window lasted (wall clock).
    pub window_s: f64,
    /// Executions of the op in the window.
    pub runs: u64,
    /// Energy the card used over the window, joules.
    pub joules: f64,
    /// `joules / runs`.
    pub joules_per_run: f64,
    /// `joules / window_s`, watts.
    pub avg_power_w: f64,
    /// FLOPs per joule, in GFLOP/J (ops with FLOPs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gflop_per_j: Option<f64>,
    /// Modeled bytes moved per joule, GB/J.
    pub gb_per_j: f64,
    /// The SM clock at the end of the window, MHz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_mhz: Option<u32>,
    /// The die temperature at the end of the window, degrees Celsius.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<u32>,
    /// Throttle reasons at the end of the window, other than idle.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttling: Vec<String>,
}

/// Runs `op` (median latency `per_run_ns`) back to back for the window and
/// returns its energy; `None` when the card has no energy counter or the
/// counter did not advance.
pub fn measure(
    op: &mut dyn PreparedOp,
    monitor: &GpuMonitor,
    work: &Workload,
    per_run_ns: f64,
) -> Result<Option<Energy>> {
    let Some(e0) = monitor.energy_mj() else {
        return Ok(None);
    };
    let per_batch = (BATCH_MS * 1e6 / per_run_ns.max(1.0)).clamp(1.0, 100_000.0) as u32;
    let t = Instant::now();
    let mut runs = 0u64;
    while t.elapsed().as_secs_f64() * 1e3 < WINDOW_MS {
        op.run_batch(per_batch)?;
        runs += per_batch as u64;
    }
    let window_s = t.elapsed().as_secs_f64();
    let Some(e1) = monitor.energy_mj() else {
        return Ok(None);
    };
    let state = monitor.state();
    Ok(
        summarize(e1.saturating_sub(e0), window_s, runs, work).map(|e| Energy {
            sm_clock_mhz: state.as_ref().and_then(|s| s.sm_clock_mhz),
            temperature_c: state.as_ref().and_then(|s| s.temperature_c),
            throttling: state
                .as_ref()
                .map(|s| s.throttling().into_iter().map(String::from).collect())
                .unwrap_or_default(),
            ..e
        }),
    )
}

/// The energy record for `millijoules` over `window_s` and `runs` of `work`;
/// `None` when the counter did not move.
fn summarize(millijoules: u64, window_s: f64, runs: u64, work: &Workload) -> Option<Energy> {
    if millijoules == 0 || runs == 0 || window_s <= 0.0 {
        return None;
    }
    let joules = millijoules as f64 / 1e3;
    let flops = work.flops() as f64 * runs as f64;
    Some(Energy {
        window_s,
        runs,
        joules,
        joules_per_run: joules / runs as f64,
        avg_power_w: joules / window_s,
        gflop_per_j: (flops > 0.0).then(|| flops / 1e9 / joules),
        gb_per_j: work.bytes_moved() as f64 * runs as f64 / 1e9 / joules,
        sm_clock_mhz: None,
        temperature_c: None,
        throttling: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::{measure, summarize, WINDOW_MS};
    use crate::error::Result;
    use crate::gpu_monitor::{CardReader, GpuMonitor, GpuState};
    use crate::precision::Precision;
    use crate::prepared_op::{MemoryUse, Phases, PreparedOp, Sample, TimingMethod};
    use crate::workload::Workload;

    /// A card whose energy counter advances 3 mJ per run of [`Busy`]; it
    /// refuses the counter after `refuse_after` readings.
    struct Card {
        mj: Arc<AtomicU64>,
        readings: AtomicU64,
        refuse_after: u64,
    }
    impl CardReader for Card {
        fn state(&self) -> Option<GpuState> {
            Some(GpuState {
                sm_clock_mhz: Some(1755),
                temperature_c: Some(61),
                throttle_reasons: Some(vec!["GPU_IDLE".into(), "SW_POWER_CAP".into()]),
                ..Default::default()
            })
        }
        fn sm_clock_mhz(&self) -> Option<u32> {
            None
        }
        fn max_sm_clock_mhz(&self) -> Option<u32> {
            None
        }
        fn free_memory(&self) -> Option<u64> {
            None
        }
        fn energy_mj(&self) -> Option<u64> {
            let n = self.readings.fetch_add(1, Ordering::SeqCst);
            (n < self.refuse_after).then(|| self.mj.load(Ordering::SeqCst))
        }
    }

    /// An op whose batches take 20 ms and cost the card 3 mJ a run.
    struct Busy {
        mj: Arc<AtomicU64>,
        batches: Vec<u32>,
    }
    impl PreparedOp for Busy {
        fn describe(&self) -> String {
            "busy".into()
        }
        fn timing_method(&self) -> TimingMethod {
            TimingMethod::Wall
        }
        fn run(&mut self) -> Result<Sample> {
            unreachable!("the window runs batches only")
        }
        fn run_batch(&mut self, n: u32) -> Result<Sample> {
            std::thread::sleep(Duration::from_millis(20));
            self.mj.fetch_add(3 * n as u64, Ordering::SeqCst);
            self.batches.push(n);
            Ok(Sample::wall(20_000_000))
        }
        fn run_phases(&mut self) -> Result<Phases> {
            unreachable!()
        }
        fn output(&mut self) -> Result<Vec<f32>> {
            unreachable!()
        }
        fn memory(&self) -> MemoryUse {
            MemoryUse::default()
        }
        fn flush_caches(&mut self) -> Result<()> {
            unreachable!()
        }
    }

    fn card_and_op(refuse_after: u64) -> (GpuMonitor, Busy) {
        let mj = Arc::new(AtomicU64::new(1_000_000));
        let card = Card {
            mj: mj.clone(),
            readings: AtomicU64::new(0),
            refuse_after,
        };
        let op = Busy {
            mj,
            batches: Vec::new(),
        };
        (GpuMonitor::from_reader(Box::new(card)), op)
    }

    #[test]
    fn the_window_runs_batches_for_its_length_and_reads_the_counter_at_both_ends() {
        let (monitor, mut op) = card_and_op(u64::MAX);
        let w = work(1000);
        // 2 ms a run: batches of 25 runs to fill 50 ms.
        let e = measure(&mut op, &monitor, &w, 2e6)
            .unwrap()
            .expect("counter moved");
        assert!(op.batches.iter().all(|&n| n == 25), "{:?}", op.batches);
        // Each batch sleeps 20 ms or more, so 15 fill the window: a 16th
        // never starts (however slow a loaded machine makes the sleeps).
        let batches = op.batches.len() as u64;
        assert!((1..=15).contains(&batches), "{batches} batches");
        assert!(e.window_s * 1e3 >= WINDOW_MS, "{}", e.window_s);
        assert_eq!(e.runs, 25 * batches);
        assert_eq!(e.joules, 3.0 * e.runs as f64 / 1e3);
        assert_eq!((e.sm_clock_mhz, e.temperature_c), (Some(1755), Some(61)));
        assert_eq!(e.throttling, ["SW_POWER_CAP"], "idle is no throttling");
    }

    #[test]
    fn no_counter_at_either_end_gives_no_energy() {
        let w = work(8);
        let (monitor, mut op) = card_and_op(0);
        assert_eq!(measure(&mut op, &monitor, &w, 2e6).unwrap(), None);
        assert!(op.batches.is_empty(), "nothing to run without a counter");
        let (monitor, mut op) = card_and_op(1);
        assert_eq!(measure(&mut op, &monitor, &w, 2e6).unwrap(), None);
    }

    fn work(d: u32) -> Workload {
        Workload::named(
            "matmul",
            Precision::F32,
            &[("batch", 1), ("seq", d), ("dim", d)],
        )
    }

    #[test]
    fn energy_divides_by_runs_window_and_work() {
        let w = work(1000);
        // 2 GFLOP per run; 10 runs in 0.5 s for 200 J.
        let e = summarize(200_000, 0.5, 10, &w).expect("counter moved");
        assert_eq!(e.joules, 200.0);
        assert_eq!(e.joules_per_run, 20.0);
        assert_eq!(e.avg_power_w, 400.0);
        let gflop = w.flops() as f64 / 1e9;
        assert!((e.gflop_per_j.unwrap() - gflop * 10.0 / 200.0).abs() < 1e-12);
        assert!((e.gb_per_j - w.bytes_moved() as f64 * 10.0 / 1e9 / 200.0).abs() < 1e-12);
    }

    #[test]
    fn a_counter_that_did_not_move_gives_no_energy() {
        let w = work(8);
        assert!(summarize(0, 0.3, 10, &w).is_none());
        assert!(summarize(5, 0.3, 0, &w).is_none());
    }
}

//! The state of the machine around a run: the CPU's frequency governor and
//! clock, the load average, and (NVIDIA, AMD, Intel) the GPU's clocks, power limit,
//! temperature and throttle reasons. Captured before and after every run and
//! kept in the results' environment, so a slow point can be told apart from a
//! loaded or throttling machine; [`warnings`] says when that was the case.

use serde::{Deserialize, Serialize};

use crate::gpu_monitor::{GpuMonitor, GpuState};

/// The host's side.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostState {
    /// cpufreq's governor for CPU 0 (`performance`, `powersave`, `schedutil`...),
    /// where the kernel exposes it (virtual machines often do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governor: Option<String>,
    /// CPU 0's current clock, MHz, where exposed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_mhz: Option<f64>,
    /// The 1, 5 and 15 minute load averages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_avg: Option<[f64; 3]>,
}

/// The machine at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineState {
    pub host: HostState,
    /// The GPU as its driver reports it (NVML on NVIDIA, the kernel's files on AMD and Intel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuState>,
}

impl MachineState {
    /// Reads the machine now; `monitor` is the GPU's driver view, if any.
    pub fn capture(monitor: Option<&GpuMonitor>) -> Self {
        MachineState {
            host: HostState::capture(),
            gpu: monitor.and_then(GpuMonitor::state),
        }
    }
}

impl HostState {
    /// Reads `/proc` and `/sys` (Linux); fields other systems lack stay empty.
    pub fn capture() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        HostState {
            governor: read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            cpu_mhz: read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
                .and_then(|s| s.trim().parse::<f64>().ok())
                .map(|khz| khz / 1e3)
                .or_else(|| read("/proc/cpuinfo").and_then(|s| cpuinfo_mhz(&s))),
            load_avg: read("/proc/loadavg").and_then(|s| parse_loadavg(&s)),
        }
    }
}

/// The first `cpu MHz` line of `/proc/cpuinfo`.
fn cpuinfo_mhz(text: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
}

/// The three load averages of `/proc/loadavg`.
fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// What a reader should know about the machine's state: a host already busy
/// before the run (1-minute load above a quarter of the cores, at least 1),
/// and GPU throttling before or after it.
pub fn warnings(before: &MachineState, after: &MachineState, cores: usize) -> Vec<String> {
    let mut w = Vec::new();
    if let Some([l1, ..]) = before.host.load_avg {
        let limit = (cores as f64 / 4.0).max(1.0);
        if l1 > limit {
            w.push(format!(
                "the host was loaded before the run: 1-minute load average {l1:.2} on {cores} cores (over {limit:.2}); CPU timings may be slowed"
            ));
        }
    }
    for (when, s) in [("before", before), ("after", after)] {
        if let Some(g) = &s.gpu {
            let t = g.throttling();
            if !t.is_empty() {
                w.push(format!(
                    "the GPU was throttling {when} the run: {} (SM clock {} MHz of {} MHz)",
                    t.join(", "),
                    g.sm_clock_mhz.map_or("?".into(), |c| c.to_string()),
                    g.max_sm_clock_mhz.map_or("?".into(), |c| c.to_string()),
                ));
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_load(l1: f64) -> MachineState {
        MachineState {
            host: HostState {
                load_avg: Some([l1, 0.0, 0.0]),
                ..Default::default()
            },
            gpu: None,
        }
    }

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            parse_loadavg("0.52 1.07 2.00 3/412 9981\n"),
            Some([0.52, 1.07, 2.0])
        );
        assert_eq!(parse_loadavg("garbage"), None);
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2595.124\n";
        assert_eq!(cpuinfo_mhz(cpuinfo), Some(2595.124));
        assert_eq!(cpuinfo_mhz("processor: 0\n"), None);
    }

    #[test]
    fn a_loaded_host_is_warned_about() {
        let quiet = host_load(0.3);
        assert!(warnings(&quiet, &quiet, 2).is_empty());
        let busy = host_load(1.5);
        let w = warnings(&busy, &quiet, 2);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("1.50") && w[0].contains("2 cores"), "{w:?}");
        // On 16 cores the same load is not a warning.
        assert!(warnings(&busy, &quiet, 16).is_empty());
    }

    #[test]
    fn gpu_throttling_is_warned_about_and_idle_is_not() {
        let gpu = |reasons: &[&str]| MachineState {
            gpu: Some(GpuState {
                name: "H100".into(),
                sm_clock_mhz: Some(1200),
                max_sm_clock_mhz: Some(1980),
                throttle_reasons: Some(reasons.iter().map(|r| r.to_string()).collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(warnings(&gpu(&["GPU_IDLE"]), &gpu(&["NONE"]), 16).is_empty());
        let w = warnings(&gpu(&["GPU_IDLE"]), &gpu(&["HW_SLOWDOWN"]), 16);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("after")
                && w[0].contains("HW_SLOWDOWN")
                && w[0].contains("1200 MHz of 1980")
        );
    }
}

//! The state of the machine around a run: the CPU's frequency governor and
//! clock, the load average, and (NVIDIA, AMD, Intel) the GPU's clocks, power limit,
//! temperature and throttle reasons. Captured before and after every run and
//! kept in the results' environment, so a slow point can be told apart from a
//! loaded or throttling machine; [`warnings`] says when that was the case.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::gpu_monitor::sysfs::read_u64;
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
    /// Thermal throttle events the kernel has counted since boot: every
    /// core's `thermal_throttle/core_throttle_count`, plus each package's
    /// `package_throttle_count` once (x86 with thermal monitoring — Intel's
    /// cores; virtual machines and most AMD hosts have none). Its growth
    /// between before and after a run is throttling during the run, which the
    /// before/after clock alone would miss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thermal_throttle_events: Option<u64>,
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
        Self::capture_at(Path::new("/"))
    }

    /// [`Self::capture`] from a tree rooted at `root` (a fake one in tests).
    fn capture_at(root: &Path) -> Self {
        let read = |p: &str| std::fs::read_to_string(root.join(p)).ok();
        HostState {
            governor: read("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            cpu_mhz: read("sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
                .and_then(|s| s.trim().parse::<f64>().ok())
                .map(|khz| khz / 1e3)
                .or_else(|| read("proc/cpuinfo").and_then(|s| cpuinfo_mhz(&s))),
            load_avg: read("proc/loadavg").and_then(|s| parse_loadavg(&s)),
            thermal_throttle_events: thermal_throttle_events(&root.join("sys/devices/system/cpu")),
        }
    }
}

/// The sum of every `cpuN`'s `thermal_throttle/core_throttle_count` under
/// `cpus`, plus `package_throttle_count` once per package
/// (`topology/physical_package_id`; every core of a package repeats its
/// package's count). `None` where no core has the files.
fn thermal_throttle_events(cpus: &Path) -> Option<u64> {
    let mut total = None;
    let mut packages = BTreeSet::new();
    for entry in std::fs::read_dir(cpus).ok()?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_cpu = name
            .strip_prefix("cpu")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_cpu {
            continue;
        }
        let dir = entry.path();
        let Some(core) = read_u64(&dir.join("thermal_throttle/core_throttle_count")) else {
            continue;
        };
        let mut events = core;
        let package = std::fs::read_to_string(dir.join("topology/physical_package_id"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        if packages.insert(package) {
            events += read_u64(&dir.join("thermal_throttle/package_throttle_count")).unwrap_or(0);
        }
        total = Some(total.unwrap_or(0) + events);
    }
    total
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
/// CPU thermal throttling during it, and GPU throttling before or after it.
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
    if let (Some(b), Some(a)) = (
        before.host.thermal_throttle_events,
        after.host.thermal_throttle_events,
    ) {
        if a > b {
            w.push(format!(
                "the CPU throttled during the run: {} thermal throttle events (the kernel's thermal_throttle counts, {b} before, {a} after); CPU timings may be slowed",
                a - b
            ));
        }
    }
    if let (Some(b), Some(a)) = (&before.gpu, &after.gpu) {
        let held = a.throttled_since(b);
        if !held.is_empty() {
            let causes: Vec<String> = held
                .iter()
                .map(|(c, ms)| format!("{c} {ms:.0} ms"))
                .collect();
            w.push(format!(
                "the GPU's clocks were held down during the run: {} (the driver's throttle counters); GPU timings may be slowed",
                causes.join(", ")
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
    use std::path::PathBuf;

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

    /// A fake `/sys/devices/system/cpu`: per core (its package, its core
    /// count, its package count); `None` counts leave the files out.
    fn fake_cpus(name: &str, cores: &[(u32, Option<u64>, Option<u64>)]) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("kernel-lab-throttle-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cpus = root.join("sys/devices/system/cpu");
        for (n, &(package, core, pkg)) in cores.iter().enumerate() {
            let dir = cpus.join(format!("cpu{n}"));
            std::fs::create_dir_all(dir.join("topology")).unwrap();
            std::fs::write(
                dir.join("topology/physical_package_id"),
                format!("{package}\n"),
            )
            .unwrap();
            std::fs::create_dir_all(dir.join("thermal_throttle")).unwrap();
            if let Some(c) = core {
                std::fs::write(
                    dir.join("thermal_throttle/core_throttle_count"),
                    format!("{c}\n"),
                )
                .unwrap();
            }
            if let Some(p) = pkg {
                std::fs::write(
                    dir.join("thermal_throttle/package_throttle_count"),
                    format!("{p}\n"),
                )
                .unwrap();
            }
        }
        // Not cores: the kernel's other entries beside them.
        std::fs::create_dir_all(cpus.join("cpufreq")).unwrap();
        std::fs::create_dir_all(cpus.join("cpuidle")).unwrap();
        root
    }

    #[test]
    fn thermal_throttle_counts_sum_cores_and_each_package_once() {
        // Two packages of two cores: cores 1+2+3+4, packages 10 and 20 once each.
        let root = fake_cpus(
            "two-packages",
            &[
                (0, Some(1), Some(10)),
                (0, Some(2), Some(10)),
                (1, Some(3), Some(20)),
                (1, Some(4), Some(20)),
            ],
        );
        let host = HostState::capture_at(&root);
        assert_eq!(host.thermal_throttle_events, Some(40));
        // No counts at all (a virtual machine): unknown, not zero.
        let none = fake_cpus("none", &[(0, None, None), (0, None, None)]);
        assert_eq!(HostState::capture_at(&none).thermal_throttle_events, None);
        // No tree at all.
        let empty = std::env::temp_dir().join("kernel-lab-throttle-missing-root");
        assert_eq!(HostState::capture_at(&empty).thermal_throttle_events, None);
        for r in [root, none] {
            std::fs::remove_dir_all(r).unwrap();
        }
    }

    #[test]
    fn the_host_is_read_from_cpufreq_and_proc() {
        let root = fake_cpus("host", &[(0, None, None)]);
        let write = |p: &str, text: &str| {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("proc/loadavg", "0.52 1.07 2.00 3/412 9981\n");
        write("proc/cpuinfo", "processor\t: 0\ncpu MHz\t\t: 2595.124\n");
        // No cpufreq (a virtual machine): the clock from cpuinfo.
        let vm = HostState::capture_at(&root);
        assert_eq!(vm.governor, None);
        assert_eq!(vm.cpu_mhz, Some(2595.124));
        assert_eq!(vm.load_avg, Some([0.52, 1.07, 2.0]));
        // cpufreq's governor and clock (kHz) come first; an empty governor is none.
        write(
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
            "performance\n",
        );
        write(
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq",
            "3400000\n",
        );
        let host = HostState::capture_at(&root);
        assert_eq!(host.governor.as_deref(), Some("performance"));
        assert_eq!(host.cpu_mhz, Some(3400.0));
        write("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "\n");
        assert_eq!(HostState::capture_at(&root).governor, None);
        std::fs::remove_dir_all(root).unwrap();
    }

    /// Every Linux has a load average; without a monitor, no GPU state.
    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine_is_read() {
        let m = MachineState::capture(None);
        assert!(m.host.load_avg.is_some(), "{m:?}");
        assert!(m.gpu.is_none());
    }

    #[test]
    fn cpu_throttling_during_the_run_is_warned_about() {
        let host = |events: Option<u64>| MachineState {
            host: HostState {
                thermal_throttle_events: events,
                ..Default::default()
            },
            gpu: None,
        };
        // Events counted long before the run are no warning; new ones are.
        assert!(warnings(&host(Some(7)), &host(Some(7)), 16).is_empty());
        let w = warnings(&host(Some(7)), &host(Some(12)), 16);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("5 thermal throttle events"), "{w:?}");
        // Unknown on either side: nothing to say.
        assert!(warnings(&host(None), &host(Some(12)), 16).is_empty());
        assert!(warnings(&host(Some(7)), &host(None), 16).is_empty());
    }

    #[test]
    fn gpu_throttling_during_the_run_is_warned_about_from_the_counters() {
        let gpu = |power_ms: f64| MachineState {
            gpu: Some(GpuState {
                throttle_reasons: Some(vec!["GPU_IDLE".into()]),
                throttled_ms: Some([("power".to_string(), power_ms)].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        // Idle at both ends, yet power-capped for 1.2 s in between.
        let w = warnings(&gpu(300.0), &gpu(1500.0), 16);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("power 1200 ms"), "{w:?}");
        assert!(warnings(&gpu(300.0), &gpu(300.2), 16).is_empty());
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

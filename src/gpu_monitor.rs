//! The NVIDIA driver's own view of the GPU while it runs: clocks, power limit,
//! temperature, throttle reasons and the energy counter, through NVML.
//!
//! NVML is opened at run time (`libnvidia-ml.so.1`, the library every NVIDIA
//! driver installs), so nothing is needed to build or run where there is no
//! NVIDIA driver: [`GpuMonitor::open`] then returns `None` and results carry no
//! GPU state. Every reading is optional, because drivers and cards expose
//! different subsets (a consumer card may refuse the energy counter).

use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::Nvml;
use serde::{Deserialize, Serialize};

/// One snapshot of the GPU's state, as its driver reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuState {
    /// The driver's name for the card.
    pub name: String,
    /// Current SM clock, MHz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_mhz: Option<u32>,
    /// The highest SM clock the card may run at, MHz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sm_clock_mhz: Option<u32>,
    /// Current memory clock, MHz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_clock_mhz: Option<u32>,
    /// The power limit the driver enforces, watts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_limit_w: Option<f64>,
    /// Power drawn now, watts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_w: Option<f64>,
    /// Die temperature, degrees Celsius.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<u32>,
    /// Why the clocks are held below their maximum now (NVML's names; `GPU_IDLE`
    /// alone means the card was idle, not throttled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_reasons: Option<Vec<String>>,
}

impl GpuState {
    /// The throttle reasons that slow a busy GPU down (idle and sync-boost
    /// are not throttling).
    pub fn throttling(&self) -> Vec<&str> {
        self.throttle_reasons
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|r| !matches!(*r, "GPU_IDLE" | "SYNC_BOOST" | "NONE"))
            .collect()
    }
}

/// An open NVML handle on the GPU a run uses.
pub struct GpuMonitor {
    nvml: Nvml,
    index: u32,
}

impl GpuMonitor {
    /// Opens NVML and picks the device named `adapter_name` (the wgpu
    /// adapter's name), or the only device; `None` where there is no NVIDIA
    /// driver or no matching device.
    pub fn open(adapter_name: &str) -> Option<Self> {
        let nvml = Nvml::builder()
            .lib_path(std::ffi::OsStr::new("libnvidia-ml.so.1"))
            .init()
            .or_else(|_| Nvml::init())
            .ok()?;
        let count = nvml.device_count().ok()?;
        let names: Vec<String> = (0..count)
            .map(|i| {
                nvml.device_by_index(i)
                    .and_then(|d| d.name())
                    .unwrap_or_default()
            })
            .collect();
        let index = pick_device(&names, adapter_name)?;
        Some(GpuMonitor { nvml, index })
    }

    /// The current state; readings the driver refuses are left out.
    pub fn state(&self) -> Option<GpuState> {
        let d = self.nvml.device_by_index(self.index).ok()?;
        Some(GpuState {
            name: d.name().unwrap_or_default(),
            sm_clock_mhz: d.clock_info(Clock::SM).ok(),
            max_sm_clock_mhz: d.max_clock_info(Clock::SM).ok(),
            mem_clock_mhz: d.clock_info(Clock::Memory).ok(),
            power_limit_w: d.enforced_power_limit().ok().map(|mw| mw as f64 / 1e3),
            power_w: d.power_usage().ok().map(|mw| mw as f64 / 1e3),
            temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
            throttle_reasons: d.current_throttle_reasons().ok().map(|r| {
                let names: Vec<String> = r.iter_names().map(|(n, _)| n.to_string()).collect();
                if names.is_empty() {
                    vec!["NONE".into()]
                } else {
                    names
                }
            }),
        })
    }

    /// The SM clock now, MHz: one reading, cheap enough to take between samples.
    pub fn sm_clock_mhz(&self) -> Option<u32> {
        let d = self.nvml.device_by_index(self.index).ok()?;
        d.clock_info(Clock::SM).ok()
    }

    /// The highest SM clock the card may run at, MHz.
    pub fn max_sm_clock_mhz(&self) -> Option<u32> {
        let d = self.nvml.device_by_index(self.index).ok()?;
        d.max_clock_info(Clock::SM).ok()
    }

    /// Device memory not allocated now, bytes (NVML's "free" framebuffer).
    pub fn free_memory(&self) -> Option<u64> {
        let d = self.nvml.device_by_index(self.index).ok()?;
        d.memory_info().ok().map(|m| m.free)
    }

    /// The card's energy counter, millijoules since the driver loaded; `None`
    /// where the card has none.
    pub fn energy_mj(&self) -> Option<u64> {
        let d = self.nvml.device_by_index(self.index).ok()?;
        d.total_energy_consumption().ok()
    }
}

/// The device among `names` that the adapter `wanted` is: an exact name, else
/// one whose name contains the other's, else the only device.
fn pick_device(names: &[String], wanted: &str) -> Option<u32> {
    let norm = |s: &str| s.trim().to_lowercase();
    let w = norm(wanted);
    let find = |f: &dyn Fn(&str) -> bool| names.iter().position(|n| f(&norm(n)));
    find(&|n| n == w)
        .or_else(|| find(&|n| !n.is_empty() && (n.contains(&w) || w.contains(n))))
        .or_else(|| (names.len() == 1).then_some(0))
        .map(|i| i as u32)
}

#[cfg(test)]
mod tests {
    use super::{pick_device, GpuState};

    #[test]
    fn picks_the_adapter_by_name_or_the_only_card() {
        let names = vec![
            "NVIDIA A100-SXM4-40GB".to_string(),
            "NVIDIA H100 80GB HBM3".into(),
        ];
        assert_eq!(pick_device(&names, "NVIDIA H100 80GB HBM3"), Some(1));
        assert_eq!(pick_device(&names, "nvidia h100 80gb hbm3 "), Some(1));
        assert_eq!(
            pick_device(&names, "llvmpipe (LLVM 15.0.6, 256 bits)"),
            None
        );
        assert_eq!(pick_device(&names[1..], "H100 (Vulkan)"), Some(0));
        assert_eq!(pick_device(&[], "H100"), None);
    }

    #[test]
    fn idle_and_sync_boost_are_not_throttling() {
        let s = GpuState {
            throttle_reasons: Some(vec!["GPU_IDLE".into(), "SW_POWER_CAP".into()]),
            ..Default::default()
        };
        assert_eq!(s.throttling(), vec!["SW_POWER_CAP"]);
        let idle = GpuState {
            throttle_reasons: Some(vec!["NONE".into()]),
            ..Default::default()
        };
        assert!(idle.throttling().is_empty());
    }
}

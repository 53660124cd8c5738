//! NVIDIA cards through NVML, opened at run time (`libnvidia-ml.so.1`): a
//! machine without the NVIDIA driver has no library, and no monitor.

use std::collections::BTreeMap;

use nvml_wrapper::enum_wrappers::device::{Clock, PerformancePolicy, TemperatureSensor};
use nvml_wrapper::{Device, Nvml};

use super::card::{pick_card, CardReader, GpuState, PciAddress};
use crate::backend::info::DeviceInfo;

/// An open NVML handle on one card.
pub struct NvmlCard {
    nvml: Nvml,
    index: u32,
}

impl NvmlCard {
    /// NVML's card for `adapter` (an NVIDIA adapter): the one at its PCI
    /// address, else by name (see [`pick_card`]); `None` without the driver's
    /// library or without a card that is surely this adapter.
    pub fn open(adapter: &DeviceInfo) -> Option<Self> {
        let nvml = Nvml::builder()
            .lib_path(std::ffi::OsStr::new("libnvidia-ml.so.1"))
            .init()
            .or_else(|_| Nvml::init())
            .ok()?;
        let count = nvml.device_count().ok()?;
        let cards: Vec<(String, Option<PciAddress>)> = (0..count)
            .map(|i| match nvml.device_by_index(i) {
                Ok(d) => (
                    d.name().unwrap_or_default(),
                    d.pci_info().ok().and_then(|p| PciAddress::parse(&p.bus_id)),
                ),
                Err(_) => (String::new(), None),
            })
            .collect();
        let address = adapter.pci_bus_id.as_deref().and_then(PciAddress::parse);
        let index = pick_card(&cards, &adapter.name, address)? as u32;
        Some(NvmlCard { nvml, index })
    }

    fn device(&self) -> Option<Device<'_>> {
        self.nvml.device_by_index(self.index).ok()
    }
}

/// NVML's violation counters (time held below the asked-for clocks) by
/// cause, milliseconds; the causes the card refuses are left out, `None`
/// when it refuses all.
fn throttled_ms(d: &Device<'_>) -> Option<BTreeMap<String, f64>> {
    let causes = [
        ("power", PerformancePolicy::Power),
        ("thermal", PerformancePolicy::Thermal),
        ("board-limit", PerformancePolicy::BoardLimit),
        ("reliability", PerformancePolicy::Reliability),
    ];
    let counted: BTreeMap<String, f64> = causes
        .into_iter()
        .filter_map(|(name, policy)| {
            let v = d.violation_status(policy).ok()?;
            Some((name.to_string(), v.violation_time as f64 / 1e6))
        })
        .collect();
    (!counted.is_empty()).then_some(counted)
}

impl CardReader for NvmlCard {
    fn state(&self) -> Option<GpuState> {
        let d = self.device()?;
        Some(GpuState {
            name: d.name().unwrap_or_default(),
            source: Some("nvml".into()),
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
            throttled_ms: throttled_ms(&d),
        })
    }

    fn sm_clock_mhz(&self) -> Option<u32> {
        self.device()?.clock_info(Clock::SM).ok()
    }

    fn max_sm_clock_mhz(&self) -> Option<u32> {
        self.device()?.max_clock_info(Clock::SM).ok()
    }

    /// NVML's "free" framebuffer.
    fn free_memory(&self) -> Option<u64> {
        self.device()?.memory_info().ok().map(|m| m.free)
    }

    /// Millijoules since the driver loaded.
    fn energy_mj(&self) -> Option<u64> {
        self.device()?.total_energy_consumption().ok()
    }
}

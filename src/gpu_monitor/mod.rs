//! The GPU driver's own view of the card while it runs: clocks, power limit,
//! power, temperature, throttle reasons, free memory and the energy counter.
//!
//! Two sources, both read at run time so nothing is needed to build or run
//! where they are absent: NVIDIA's NVML ([`nvml`], `libnvidia-ml.so.1`, which
//! every NVIDIA driver installs) and the Linux kernel's DRM and hwmon files
//! for AMD (`amdgpu`) and Intel (`i915`, `xe`) cards ([`sysfs`]). A monitor
//! attaches only to the card the run's adapter is — same vendor, and the same
//! PCI address where the graphics API reports one — so a run on an integrated
//! GPU or a software device is never credited with another card's clocks or
//! energy. Every reading is optional: drivers and cards expose different
//! subsets (a consumer card may refuse the energy counter, an integrated one
//! has no power limit).

pub mod card;
pub mod nvml;
pub mod sysfs;

pub use card::{
    pick_card, CardReader, GpuState, PciAddress, AMD, INTEL, NVIDIA, THROTTLED_MS_NOTED,
};

use crate::backend::info::DeviceInfo;

/// An open view of the GPU a run uses, through its driver.
pub struct GpuMonitor {
    card: Box<dyn CardReader>,
}

impl GpuMonitor {
    /// The driver's view of the card `adapter` is: NVML for an NVIDIA card,
    /// the kernel's files for an AMD or Intel one; `None` for a software
    /// device, another vendor, no driver to read, or no card that is surely
    /// this adapter.
    pub fn open(adapter: &DeviceInfo) -> Option<Self> {
        let card: Box<dyn CardReader> = match reader_for(adapter)? {
            Reader::Nvml => Box::new(nvml::NvmlCard::open(adapter)?),
            Reader::Sysfs => Box::new(sysfs::DrmCard::open(
                std::path::Path::new(sysfs::DRM_ROOT),
                adapter,
            )?),
        };
        Some(GpuMonitor { card })
    }

    /// A monitor over any reader (a fake card in tests).
    #[cfg(test)]
    pub(crate) fn from_reader(card: Box<dyn CardReader>) -> Self {
        GpuMonitor { card }
    }

    /// See [`CardReader::state`].
    pub fn state(&self) -> Option<GpuState> {
        self.card.state()
    }

    /// See [`CardReader::sm_clock_mhz`].
    pub fn sm_clock_mhz(&self) -> Option<u32> {
        self.card.sm_clock_mhz()
    }

    /// See [`CardReader::max_sm_clock_mhz`].
    pub fn max_sm_clock_mhz(&self) -> Option<u32> {
        self.card.max_sm_clock_mhz()
    }

    /// See [`CardReader::free_memory`].
    pub fn free_memory(&self) -> Option<u64> {
        self.card.free_memory()
    }

    /// See [`CardReader::energy_mj`].
    pub fn energy_mj(&self) -> Option<u64> {
        self.card.energy_mj()
    }
}

/// Which driver interface can speak for an adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    Nvml,
    Sysfs,
}

/// NVML for an NVIDIA adapter, the kernel's files for AMD and Intel, nothing
/// for a software device (whatever vendor id it borrows) or anyone else.
fn reader_for(adapter: &DeviceInfo) -> Option<Reader> {
    if adapter.software {
        return None;
    }
    match adapter.vendor_id? {
        NVIDIA => Some(Reader::Nvml),
        AMD | INTEL => Some(Reader::Sysfs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{pick_card, reader_for, CardReader, GpuMonitor, GpuState, PciAddress, Reader};
    use crate::backend::info::{DeviceInfo, DeviceLimits};

    #[test]
    fn only_a_real_nvidia_amd_or_intel_adapter_gets_a_reader() {
        let info = |vendor: Option<u32>, software: bool| DeviceInfo {
            name: "x".into(),
            api: "vulkan".into(),
            device_type: "discrete-gpu".into(),
            driver: String::new(),
            software,
            features: Vec::new(),
            limits: DeviceLimits::default(),
            vendor_id: vendor,
            device_id: None,
            pci_bus_id: None,
        };
        assert_eq!(reader_for(&info(Some(0x10de), false)), Some(Reader::Nvml));
        assert_eq!(reader_for(&info(Some(0x1002), false)), Some(Reader::Sysfs));
        assert_eq!(reader_for(&info(Some(0x8086), false)), Some(Reader::Sysfs));
        // lavapipe on a machine with an NVIDIA card, Apple, the CPU backend.
        assert_eq!(reader_for(&info(Some(0x10005), true)), None);
        assert_eq!(reader_for(&info(Some(0x10de), true)), None);
        assert_eq!(reader_for(&info(Some(0x106b), false)), None);
        assert_eq!(reader_for(&info(None, false)), None);
    }

    fn cards(list: &[(&str, &str)]) -> Vec<(String, Option<PciAddress>)> {
        list.iter()
            .map(|(n, a)| (n.to_string(), PciAddress::parse(a)))
            .collect()
    }

    #[test]
    fn pci_addresses_parse_in_every_spelling() {
        let a = PciAddress::parse("0000:18:00.0").expect("vulkan");
        assert_eq!(PciAddress::parse("00000000:18:00.0"), Some(a), "NVML's");
        assert_eq!(PciAddress::parse("18:00.0"), Some(a), "no domain");
        assert_eq!(PciAddress::parse(" 0000:18:00.0\n"), Some(a));
        assert_ne!(PciAddress::parse("0000:18:00.1"), Some(a));
        assert_ne!(PciAddress::parse("0001:18:00.0"), Some(a));
        assert_eq!(
            PciAddress::parse("0000:AB:1f.7"),
            PciAddress::parse("0000:ab:1F.7")
        );
        for bad in [
            "",
            "card0",
            "0000:18:00",
            "0:0:18:00.0",
            "0000:118:00.0",
            "zz:00.0",
        ] {
            assert_eq!(PciAddress::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn picks_the_card_at_the_adapters_address() {
        let eight = cards(&[
            ("NVIDIA H100 80GB HBM3", "00000000:18:00.0"),
            ("NVIDIA H100 80GB HBM3", "00000000:2A:00.0"),
        ]);
        let at = |a: &str| PciAddress::parse(a);
        assert_eq!(
            pick_card(&eight, "NVIDIA H100 80GB HBM3", at("0000:2a:00.0")),
            Some(1)
        );
        // Same name twice and no address: no guess.
        assert_eq!(pick_card(&eight, "NVIDIA H100 80GB HBM3", None), None);
        // An address no card has (another vendor's device): none, whatever the name.
        assert_eq!(
            pick_card(&eight, "NVIDIA H100 80GB HBM3", at("0000:00:02.0")),
            None
        );
        let one = cards(&[("NVIDIA H200", "00000000:18:00.0")]);
        assert_eq!(pick_card(&one, "NVIDIA H200", at("0000:18:00.0")), Some(0));
        // Another slot: the name alone, when it is exactly this card's.
        assert_eq!(pick_card(&one, "NVIDIA H200", at("0000:19:00.0")), Some(0));
        assert_eq!(
            pick_card(&one, "NVIDIA H100 80GB HBM3", at("0000:19:00.0")),
            None
        );
        // A VM's other domain numbering: the same slot.
        assert_eq!(
            pick_card(&eight, "NVIDIA H100 80GB HBM3", at("0001:2a:00.0")),
            Some(1)
        );
    }

    #[test]
    fn without_addresses_picks_by_name_or_the_only_card() {
        let names = cards(&[("NVIDIA A100-SXM4-40GB", ""), ("NVIDIA H100 80GB HBM3", "")]);
        assert_eq!(pick_card(&names, "NVIDIA H100 80GB HBM3", None), Some(1));
        assert_eq!(pick_card(&names, "nvidia h100 80gb hbm3 ", None), Some(1));
        assert_eq!(
            pick_card(&names, "llvmpipe (LLVM 15.0.6, 256 bits)", None),
            None
        );
        assert_eq!(pick_card(&names, "NVIDIA", None), None, "contained in both");
        assert_eq!(pick_card(&names[1..], "H100 (Vulkan)", None), Some(0));
        assert_eq!(
            pick_card(&names[1..], "NVIDIA H100/PCIe/SSE2", None),
            Some(0)
        );
        assert_eq!(pick_card(&[], "H100", None), None);
    }

    /// A card with a distinct reading for each question.
    struct Fixed;
    impl CardReader for Fixed {
        fn state(&self) -> Option<GpuState> {
            Some(GpuState {
                name: "fixed".into(),
                ..Default::default()
            })
        }
        fn sm_clock_mhz(&self) -> Option<u32> {
            Some(1755)
        }
        fn max_sm_clock_mhz(&self) -> Option<u32> {
            Some(1980)
        }
        fn free_memory(&self) -> Option<u64> {
            Some(7 << 30)
        }
        fn energy_mj(&self) -> Option<u64> {
            Some(123_456)
        }
    }

    /// Among two cards without addresses, the one whose name contains the
    /// adapter's, or is contained in it; a card whose name the driver
    /// refused (empty) matches nothing.
    #[test]
    fn names_match_by_containment_either_way_and_never_when_empty() {
        let cards = |names: &[&str]| -> Vec<(String, Option<PciAddress>)> {
            names.iter().map(|n| (n.to_string(), None)).collect()
        };
        let two = cards(&["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"]);
        assert_eq!(pick_card(&two, "H100", None), Some(0));
        assert_eq!(
            pick_card(&two, "NVIDIA A100-SXM4-40GB (Vulkan)", None),
            Some(1)
        );
        let refused = cards(&["", "NVIDIA H100 80GB HBM3"]);
        assert_eq!(pick_card(&refused, "H100", None), Some(1));
    }

    #[test]
    fn the_monitor_asks_its_card_each_question() {
        let m = GpuMonitor::from_reader(Box::new(Fixed));
        assert_eq!(m.state().map(|s| s.name), Some("fixed".into()));
        assert_eq!(
            (m.sm_clock_mhz(), m.max_sm_clock_mhz()),
            (Some(1755), Some(1980))
        );
        assert_eq!(
            (m.free_memory(), m.energy_mj()),
            (Some(7 << 30), Some(123_456))
        );
    }

    #[test]
    fn throttled_time_is_the_growth_of_each_cause_both_states_count() {
        let at = |pairs: &[(&str, f64)]| GpuState {
            throttled_ms: Some(pairs.iter().map(|&(c, ms)| (c.to_string(), ms)).collect()),
            ..Default::default()
        };
        let before = at(&[("power", 100.0), ("thermal", 5.0), ("reliability", 0.0)]);
        let after = at(&[
            ("power", 350.5),
            ("thermal", 5.4),
            ("board-limit", 9.0),
            ("reliability", 1.0),
        ]);
        // Thermal grew by less than a millisecond; board-limit has no start.
        assert_eq!(
            after.throttled_since(&before),
            vec![("power", 250.5), ("reliability", 1.0)]
        );
        assert!(before.throttled_since(&before).is_empty());
        assert!(after.throttled_since(&GpuState::default()).is_empty());
        assert!(GpuState::default().throttled_since(&before).is_empty());
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

//! One card as a driver reports it: its state ([`GpuState`]), the reader a
//! driver interface implements ([`CardReader`]), and finding the card that
//! is the run's adapter among a driver's cards ([`pick_card`], by PCI
//! address, slot and name). NVML (`nvml.rs`) and the kernel's files
//! (`sysfs.rs`) implement the reader.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// PCI vendor ids of the cards a monitor can read.
pub const NVIDIA: u32 = 0x10de;
/// AMD's PCI vendor id.
pub const AMD: u32 = 0x1002;
/// Intel's PCI vendor id.
pub const INTEL: u32 = 0x8086;

/// One snapshot of the GPU's state, as its driver reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuState {
    /// The driver's name for the card (the adapter's, where the driver has none).
    pub name: String,
    /// Where the readings come from: `nvml`, or `sysfs (amdgpu)`, `sysfs (i915)`, `sysfs (xe)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Current SM clock, MHz (AMD's shader clock, Intel's GT clock).
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
    /// Why the clocks are held below their maximum now (NVML's names, or
    /// Intel's `PL1`, `THERMAL`...; `GPU_IDLE` alone means the card was idle,
    /// not throttled; `NONE` that the driver reports no reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_reasons: Option<Vec<String>>,
    /// How long the driver has counted the clocks held below what was asked,
    /// by cause (`power`, `thermal`, `board-limit`, `reliability`),
    /// milliseconds since it loaded: NVML's violation counters. Their growth
    /// between before and after a run is throttling during the run, which
    /// the reasons in force at either end miss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_ms: Option<BTreeMap<String, f64>>,
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

    /// The time the clocks were held down between `earlier` and this state,
    /// by cause, milliseconds: each cause both count, where it grew by at
    /// least [`THROTTLED_MS_NOTED`].
    pub fn throttled_since(&self, earlier: &GpuState) -> Vec<(&str, f64)> {
        let (Some(now), Some(then)) = (&self.throttled_ms, &earlier.throttled_ms) else {
            return Vec::new();
        };
        now.iter()
            .filter_map(|(cause, &ms)| {
                let grew = ms - then.get(cause)?;
                (grew >= THROTTLED_MS_NOTED).then_some((cause.as_str(), grew))
            })
            .collect()
    }
}

/// Throttled time over a run that is worth a warning, milliseconds (NVML
/// counts in nanoseconds; a power cap touched for a moment is not news).
pub const THROTTLED_MS_NOTED: f64 = 1.0;

/// What a driver interface reads of one card; every reading optional.
pub trait CardReader: Send + Sync {
    /// The current state; readings the driver refuses are left out.
    fn state(&self) -> Option<GpuState>;
    /// The SM clock now, MHz: one reading, cheap enough to take between samples.
    fn sm_clock_mhz(&self) -> Option<u32>;
    /// The highest SM clock the card may run at, MHz.
    fn max_sm_clock_mhz(&self) -> Option<u32>;
    /// Device memory not allocated now, bytes.
    fn free_memory(&self) -> Option<u64>;
    /// The card's energy counter, millijoules since some fixed moment; `None`
    /// where the card has none.
    fn energy_mj(&self) -> Option<u64>;
}

/// A PCI address, `domain:bus:device.function`, from any of the spellings
/// drivers use (`0000:01:00.0` from Vulkan and sysfs, `00000000:01:00.0`
/// from NVML, hex digits in either case).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciAddress {
    domain: u32,
    bus: u8,
    device: u8,
    function: u8,
}

impl PciAddress {
    /// The same bus, device and function, whatever the domain.
    fn same_slot(&self, other: &PciAddress) -> bool {
        (self.bus, self.device, self.function) == (other.bus, other.device, other.function)
    }

    /// Parses `[domain:]bus:device.function`; `None` for anything else
    /// (an empty string where the API reports no address).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (rest, function) = s.rsplit_once('.')?;
        let mut parts = rest.rsplit(':');
        let device = parts.next()?;
        let bus = parts.next()?;
        let domain = parts.next().unwrap_or("0");
        if parts.next().is_some() {
            return None;
        }
        let hex = |v: &str| u32::from_str_radix(v, 16).ok();
        let small = |v: &str| hex(v).and_then(|x| u8::try_from(x).ok());
        Some(PciAddress {
            domain: hex(domain)?,
            bus: small(bus)?,
            device: small(device)?,
            function: small(function)?,
        })
    }
}

/// Which of `cards` (each a name and a PCI address, where known) is the
/// adapter named `name` at `address`: the card at the same address; else,
/// where addresses are known but none is the adapter's, the one card in the
/// same slot under another domain number (a virtual machine's numbering),
/// else the one card of exactly the adapter's name; without addresses, the
/// one card of the same name (exact, then one name containing the other),
/// else the only card. Two cards that fit equally well are no answer: a
/// reading of the wrong card would be worse than none.
pub fn pick_card(
    cards: &[(String, Option<PciAddress>)],
    name: &str,
    address: Option<PciAddress>,
) -> Option<usize> {
    let unique = |f: &dyn Fn(usize) -> bool| -> Option<Option<usize>> {
        let mut hits = (0..cards.len()).filter(|&i| f(i));
        let first = hits.next()?;
        Some(hits.next().is_none().then_some(first))
    };
    let norm = |s: &str| s.trim().to_lowercase();
    let w = norm(name);
    let exact_name = |i: usize| !w.is_empty() && norm(&cards[i].0) == w;
    if let Some(want) = address {
        if cards.iter().any(|(_, a)| a.is_some()) {
            if let Some(i) = cards.iter().position(|(_, a)| *a == Some(want)) {
                return Some(i);
            }
            return unique(&|i| cards[i].1.is_some_and(|a| a.same_slot(&want)))
                .or_else(|| unique(&exact_name))
                .flatten();
        }
    }
    let contains = |i: usize| {
        let n = norm(&cards[i].0);
        !n.is_empty() && !w.is_empty() && (n.contains(&w) || w.contains(&n))
    };
    unique(&exact_name)
        .or_else(|| unique(&contains))
        .unwrap_or_else(|| (cards.len() == 1).then_some(0))
}

//! AMD and Intel cards through the Linux kernel's own files: the DRM class
//! (`/sys/class/drm/cardN`) and the card's hwmon folder. `amdgpu` gives the
//! shader and memory clocks, power, power cap, temperature, VRAM use and on
//! some cards an energy counter; `i915` and `xe` give the GT clock, throttle
//! reasons and, on discrete cards, the power limit and an energy counter.
//! Every file is optional: a missing or unreadable one leaves its field out.
//!
//! Units as the kernel writes them: Hz for hwmon's `freqN_input`, MHz for
//! `pp_dpm_*` and Intel's frequency files, microwatts, microjoules and
//! millidegrees Celsius for hwmon.

use std::fs;
use std::path::{Path, PathBuf};

use super::card::{CardReader, GpuState, PciAddress, AMD, INTEL};
use crate::backend::info::DeviceInfo;

/// Where the kernel lists the DRM devices.
pub const DRM_ROOT: &str = "/sys/class/drm";

/// The kernel driver behind a card, which decides where its readings are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Amdgpu,
    I915,
    Xe,
}

impl Driver {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "amdgpu" => Some(Driver::Amdgpu),
            "i915" => Some(Driver::I915),
            "xe" => Some(Driver::Xe),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Driver::Amdgpu => "amdgpu",
            Driver::I915 => "i915",
            Driver::Xe => "xe",
        }
    }
}

/// One DRM card as the kernel lists it.
#[derive(Clone, Debug)]
pub struct DrmCard {
    /// The adapter's name (the kernel has no marketing name to give).
    name: String,
    /// `cardN`.
    card: PathBuf,
    /// `cardN/device`: the PCI device's folder.
    device: PathBuf,
    /// The device's hwmon folder, where it has one.
    hwmon: Option<PathBuf>,
    driver: Driver,
}

/// What a card folder says of itself, for matching it to an adapter.
struct Listed {
    card: PathBuf,
    vendor: u32,
    device_id: Option<u32>,
    address: Option<PciAddress>,
    driver: Driver,
}

impl DrmCard {
    /// The card under `root` that `adapter` (an AMD or Intel adapter) is: the
    /// one at its PCI address where the API reports it, else the only card
    /// of its vendor and device id; `None` where there is no such card, its
    /// driver is not one this reads, or two cards fit.
    pub fn open(root: &Path, adapter: &DeviceInfo) -> Option<Self> {
        let vendor = adapter.vendor_id.filter(|v| matches!(*v, AMD | INTEL))?;
        let mut fits: Vec<Listed> = list(root)
            .into_iter()
            .filter(|c| c.vendor == vendor)
            .collect();
        let address = adapter.pci_bus_id.as_deref().and_then(PciAddress::parse);
        if let Some(want) = address {
            fits.retain(|c| c.address == Some(want));
        } else if let Some(id) = adapter.device_id.filter(|&d| d != 0) {
            fits.retain(|c| c.device_id == Some(id));
        }
        if fits.len() != 1 {
            return None;
        }
        let c = fits.remove(0);
        let device = c.card.join("device");
        Some(DrmCard {
            name: adapter.name.clone(),
            hwmon: hwmon_dir(&device),
            card: c.card,
            device,
            driver: c.driver,
        })
    }

    /// The current state; files the kernel does not have are left out
    /// (always a state: [`CardReader::state`] wraps it).
    pub fn state(&self) -> GpuState {
        let hw = |f: &str| self.hwmon.as_ref().and_then(|h| read_u64(&h.join(f)));
        let watts = |uw: u64| uw as f64 / 1e6;
        let (power_limit_w, power_w, mem_clock_mhz) = match self.driver {
            Driver::Amdgpu => (
                hw("power1_cap").map(watts),
                hw("power1_average")
                    .or_else(|| hw("power1_input"))
                    .map(watts),
                hw("freq2_input")
                    .map(hz_to_mhz)
                    .or_else(|| dpm_current(&self.device.join("pp_dpm_mclk"))),
            ),
            Driver::I915 | Driver::Xe => (hw("power1_max").map(watts), None, None),
        };
        GpuState {
            name: self.name.clone(),
            source: Some(format!("sysfs ({})", self.driver.name())),
            sm_clock_mhz: self.sm_clock_mhz(),
            max_sm_clock_mhz: self.max_sm_clock_mhz(),
            mem_clock_mhz,
            power_limit_w,
            power_w,
            temperature_c: hw("temp1_input").map(|mc| (mc / 1000) as u32),
            throttle_reasons: self.throttle_reasons(),
            throttled_ms: None,
        }
    }

    /// Intel's throttle reasons in force (`PL1`, `THERMAL`...), `NONE` when
    /// none is; `None` where the driver has no such files (AMD).
    fn throttle_reasons(&self) -> Option<Vec<String>> {
        let (dir, prefix) = match self.driver {
            Driver::Amdgpu => return None,
            Driver::I915 => (self.card.join("gt").join("gt0"), "throttle_reason_"),
            Driver::Xe => (self.xe_freq().join("throttle"), "reason_"),
        };
        let mut found = false;
        let mut reasons = Vec::new();
        for entry in fs::read_dir(dir).ok()?.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(reason) = file.strip_prefix(prefix) else {
                continue;
            };
            // `status` is the other files' sum, not a reason of its own.
            if reason == "status" {
                continue;
            }
            if let Some(v) = read_u64(&entry.path()) {
                found = true;
                if v != 0 {
                    reasons.push(reason.to_uppercase());
                }
            }
        }
        reasons.sort();
        if !found {
            return None;
        }
        if reasons.is_empty() {
            reasons.push("NONE".into());
        }
        Some(reasons)
    }

    /// The xe driver's frequency folder for the card's first GT.
    fn xe_freq(&self) -> PathBuf {
        self.device.join("tile0").join("gt0").join("freq0")
    }
}

impl CardReader for DrmCard {
    fn state(&self) -> Option<GpuState> {
        Some(DrmCard::state(self))
    }

    /// The shader (AMD) or GT (Intel) clock now, MHz: the clock the card
    /// runs at, where the kernel tells it apart from the one requested.
    fn sm_clock_mhz(&self) -> Option<u32> {
        match self.driver {
            Driver::Amdgpu => self
                .hwmon
                .as_ref()
                .and_then(|h| read_u64(&h.join("freq1_input")))
                .map(hz_to_mhz)
                .or_else(|| dpm_current(&self.device.join("pp_dpm_sclk"))),
            // The actual clock reads 0 while the GT sleeps (RC6) between
            // samples: then the clock requested for it is the one it wakes at.
            Driver::I915 => read_u32(&self.card.join("gt_act_freq_mhz"))
                .filter(|&f| f > 0)
                .or_else(|| read_u32(&self.card.join("gt_cur_freq_mhz"))),
            Driver::Xe => {
                let f = self.xe_freq();
                read_u32(&f.join("act_freq"))
                    .filter(|&f| f > 0)
                    .or_else(|| read_u32(&f.join("cur_freq")))
            }
        }
    }

    /// The highest shader or GT clock the hardware offers, MHz.
    fn max_sm_clock_mhz(&self) -> Option<u32> {
        match self.driver {
            Driver::Amdgpu => dpm_max(&self.device.join("pp_dpm_sclk")),
            Driver::I915 => read_u32(&self.card.join("gt_RP0_freq_mhz"))
                .or_else(|| read_u32(&self.card.join("gt_max_freq_mhz"))),
            Driver::Xe => {
                let f = self.xe_freq();
                read_u32(&f.join("rp0_freq")).or_else(|| read_u32(&f.join("max_freq")))
            }
        }
    }

    /// VRAM not in use, bytes (AMD; Intel's drivers do not say).
    fn free_memory(&self) -> Option<u64> {
        match self.driver {
            Driver::Amdgpu => {
                let total = read_u64(&self.device.join("mem_info_vram_total"))?;
                let used = read_u64(&self.device.join("mem_info_vram_used"))?;
                Some(total.saturating_sub(used))
            }
            Driver::I915 | Driver::Xe => None,
        }
    }

    /// hwmon's energy counter, millijoules; `None` where the card has none
    /// (most AMD cards, Intel's integrated GPUs).
    fn energy_mj(&self) -> Option<u64> {
        let uj = read_u64(&self.hwmon.as_ref()?.join("energy1_input"))?;
        Some(uj / 1000)
    }
}

/// The cards under `root` (`cardN` folders, not their connectors) of a
/// driver this module reads.
fn list(root: &Path) -> Vec<Listed> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut cards: Vec<Listed> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("card")?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let card = e.path();
            let device = card.join("device");
            let driver = fs::canonicalize(device.join("driver")).ok()?;
            Some(Listed {
                vendor: read_hex(&device.join("vendor"))?,
                device_id: read_hex(&device.join("device")),
                address: fs::canonicalize(&device).ok().and_then(|p| {
                    p.file_name()
                        .and_then(|f| PciAddress::parse(&f.to_string_lossy()))
                }),
                driver: Driver::from_name(&driver.file_name()?.to_string_lossy())?,
                card,
            })
        })
        .collect();
    cards.sort_by(|a, b| a.card.cmp(&b.card));
    cards
}

/// The device's `hwmon/hwmonN` folder (the first, where there are several).
fn hwmon_dir(device: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(device.join("hwmon"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("hwmon"))
        })
        .collect();
    dirs.sort();
    dirs.into_iter().next()
}

/// A file holding one unsigned number (sysfs style), `None` when absent or unreadable.
pub(crate) fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_u32(path: &Path) -> Option<u32> {
    read_u64(path).and_then(|v| u32::try_from(v).ok())
}

/// A `0x1002`-style id file.
fn read_hex(path: &Path) -> Option<u32> {
    let s = fs::read_to_string(path).ok()?;
    let s = s.trim();
    u32::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

fn hz_to_mhz(hz: u64) -> u32 {
    ((hz + 500_000) / 1_000_000) as u32
}

/// The levels of an amdgpu `pp_dpm_*` file (`1: 1800Mhz *`), each with
/// whether it is the one in use.
fn dpm_levels(path: &Path) -> Vec<(u32, bool)> {
    let Ok(text) = fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(':')?;
            let mut words = rest.split_whitespace();
            let value = words.next()?;
            let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let mhz = digits.parse().ok()?;
            Some((mhz, words.any(|w| w == "*")))
        })
        .collect()
}

/// The level marked in use.
fn dpm_current(path: &Path) -> Option<u32> {
    dpm_levels(path).into_iter().find(|l| l.1).map(|l| l.0)
}

/// The highest level.
fn dpm_max(path: &Path) -> Option<u32> {
    dpm_levels(path).into_iter().map(|l| l.0).max()
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::backend::info::DeviceLimits;

    /// A fake `/sys`: `drm/` holds the card folders, `devices/` the PCI
    /// devices they link to, `drivers/` the drivers those link to.
    struct Tree(PathBuf);

    impl Tree {
        fn new(tag: &str) -> Self {
            let root =
                std::env::temp_dir().join(format!("kernel-lab-sysfs-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            for d in [
                "drm",
                "devices",
                "drivers/amdgpu",
                "drivers/i915",
                "drivers/xe",
                "drivers/nouveau",
            ] {
                fs::create_dir_all(root.join(d)).unwrap();
            }
            Tree(root)
        }

        fn drm(&self) -> PathBuf {
            self.0.join("drm")
        }

        /// Card `n` at PCI `address`, bound to `driver`; returns its device folder.
        fn card(&self, n: u32, address: &str, vendor: &str, device: &str, driver: &str) -> PathBuf {
            let dev = self.0.join("devices").join(address);
            fs::create_dir_all(&dev).unwrap();
            fs::write(dev.join("vendor"), format!("{vendor}\n")).unwrap();
            fs::write(dev.join("device"), format!("{device}\n")).unwrap();
            symlink(self.0.join("drivers").join(driver), dev.join("driver")).unwrap();
            let card = self.drm().join(format!("card{n}"));
            fs::create_dir_all(&card).unwrap();
            symlink(&dev, card.join("device")).unwrap();
            // A connector and a render node, which are not cards.
            fs::create_dir_all(self.drm().join(format!("card{n}-DP-1"))).unwrap();
            fs::create_dir_all(self.drm().join(format!("renderD{}", 128 + n))).unwrap();
            dev
        }

        fn write(&self, path: &Path, text: &str) {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn adapter(name: &str, vendor: u32, device: u32, address: &str) -> DeviceInfo {
        DeviceInfo {
            name: name.into(),
            api: "vulkan".into(),
            device_type: "discrete-gpu".into(),
            driver: String::new(),
            software: false,
            features: Vec::new(),
            limits: DeviceLimits::default(),
            vendor_id: Some(vendor),
            device_id: Some(device),
            pci_bus_id: (!address.is_empty()).then(|| address.to_string()),
        }
    }

    #[test]
    fn an_amd_card_reads_clocks_power_temperature_memory_and_energy() {
        let t = Tree::new("amd");
        let dev = t.card(1, "0000:03:00.0", "0x1002", "0x744c", "amdgpu");
        let hw = dev.join("hwmon/hwmon4");
        t.write(&hw.join("freq1_input"), "2304000000\n");
        t.write(&hw.join("freq2_input"), "1249000000\n");
        t.write(&hw.join("power1_average"), "287000000\n");
        t.write(&hw.join("power1_cap"), "355000000\n");
        t.write(&hw.join("temp1_input"), "61000\n");
        t.write(&hw.join("energy1_input"), "123456789\n");
        t.write(
            &dev.join("pp_dpm_sclk"),
            "0: 500Mhz \n1: 1400Mhz *\n2: 2500Mhz \n",
        );
        t.write(&dev.join("mem_info_vram_total"), "25753026560\n");
        t.write(&dev.join("mem_info_vram_used"), "1073741824\n");
        let card = DrmCard::open(
            &t.drm(),
            &adapter("AMD Radeon RX 7900 XTX", AMD, 0x744c, "0000:03:00.0"),
        )
        .expect("the card at the adapter's address");
        let s = card.state();
        assert_eq!(s.source.as_deref(), Some("sysfs (amdgpu)"));
        assert_eq!(s.name, "AMD Radeon RX 7900 XTX");
        assert_eq!(
            s.sm_clock_mhz,
            Some(2304),
            "hwmon's clock, not the dpm level"
        );
        assert_eq!(s.max_sm_clock_mhz, Some(2500));
        assert_eq!(s.mem_clock_mhz, Some(1249));
        assert_eq!(s.power_w, Some(287.0));
        assert_eq!(s.power_limit_w, Some(355.0));
        assert_eq!(s.temperature_c, Some(61));
        assert_eq!(s.throttle_reasons, None, "amdgpu has no reason files");
        assert_eq!(card.free_memory(), Some(25753026560 - 1073741824));
        assert_eq!(card.energy_mj(), Some(123456));
        // Without hwmon's clock, the level marked in use.
        fs::remove_file(hw.join("freq1_input")).unwrap();
        assert_eq!(card.sm_clock_mhz(), Some(1400));
    }

    #[test]
    fn intel_cards_read_the_gt_clock_and_throttle_reasons() {
        let t = Tree::new("intel");
        let dev = t.card(0, "0000:00:02.0", "0x8086", "0xa7a0", "i915");
        let card_dir = t.drm().join("card0");
        t.write(&card_dir.join("gt_act_freq_mhz"), "1300\n");
        t.write(&card_dir.join("gt_cur_freq_mhz"), "1350\n");
        t.write(&card_dir.join("gt_RP0_freq_mhz"), "1500\n");
        t.write(&card_dir.join("gt_max_freq_mhz"), "1400\n");
        let gt = card_dir.join("gt/gt0");
        t.write(&gt.join("throttle_reason_status"), "1\n");
        t.write(&gt.join("throttle_reason_pl1"), "1\n");
        t.write(&gt.join("throttle_reason_thermal"), "0\n");
        let igpu = DrmCard::open(
            &t.drm(),
            &adapter("Intel(R) Iris(R) Xe Graphics", INTEL, 0xa7a0, ""),
        )
        .expect("the only Intel card of that id");
        let s = igpu.state();
        assert_eq!(
            (s.sm_clock_mhz, s.max_sm_clock_mhz),
            (Some(1300), Some(1500))
        );
        assert_eq!(s.throttle_reasons, Some(vec!["PL1".to_string()]));
        assert_eq!(
            (s.power_limit_w, s.power_w, igpu.energy_mj()),
            (None, None, None)
        );
        t.write(&gt.join("throttle_reason_pl1"), "0\n");
        assert_eq!(
            igpu.state().throttle_reasons,
            Some(vec!["NONE".to_string()])
        );
        // Asleep between samples: the requested clock, not 0.
        t.write(&card_dir.join("gt_act_freq_mhz"), "0\n");
        assert_eq!(igpu.sm_clock_mhz(), Some(1350));

        let dev2 = t.card(1, "0000:03:00.0", "0x8086", "0xe20b", "xe");
        let f = dev2.join("tile0/gt0/freq0");
        t.write(&f.join("act_freq"), "2850\n");
        t.write(&f.join("rp0_freq"), "2850\n");
        t.write(&f.join("throttle/status"), "1\n");
        t.write(&f.join("throttle/reason_thermal"), "1\n");
        t.write(&f.join("throttle/reason_pl1"), "1\n");
        t.write(&dev2.join("hwmon/hwmon2/energy1_input"), "5000000\n");
        t.write(&dev2.join("hwmon/hwmon2/power1_max"), "190000000\n");
        let arc = DrmCard::open(
            &t.drm(),
            &adapter(
                "Intel(R) Arc(TM) B580 Graphics",
                INTEL,
                0xe20b,
                "0000:03:00.0",
            ),
        )
        .expect("the card at the address");
        let s = arc.state();
        assert_eq!(s.source.as_deref(), Some("sysfs (xe)"));
        assert_eq!(
            (s.sm_clock_mhz, s.max_sm_clock_mhz),
            (Some(2850), Some(2850))
        );
        assert_eq!(
            s.throttle_reasons,
            Some(vec!["PL1".to_string(), "THERMAL".to_string()])
        );
        assert_eq!(
            (s.power_limit_w, arc.energy_mj()),
            (Some(190.0), Some(5000))
        );
        drop(dev);
    }

    #[test]
    fn only_the_adapters_own_card_is_read() {
        let t = Tree::new("pick");
        t.card(0, "0000:00:02.0", "0x8086", "0xa7a0", "i915");
        t.card(1, "0000:03:00.0", "0x1002", "0x744c", "amdgpu");
        t.card(2, "0000:04:00.0", "0x1002", "0x744c", "amdgpu");
        t.card(3, "0000:05:00.0", "0x10de", "0x2684", "nouveau");
        let open = |a: DeviceInfo| DrmCard::open(&t.drm(), &a).map(|c| c.card);
        let amd = |address: &str| adapter("AMD Radeon RX 7900 XTX", AMD, 0x744c, address);
        assert_eq!(open(amd("0000:04:00.0")), Some(t.drm().join("card2")));
        assert_eq!(open(amd("0000:03:00.0")), Some(t.drm().join("card1")));
        // Two identical cards and no address: no guess.
        assert_eq!(open(amd("")), None);
        // An address where no card of the vendor is.
        assert_eq!(open(amd("0000:00:02.0")), None);
        // Another device id of the vendor, no address: not these cards.
        assert_eq!(open(adapter("AMD Radeon 780M", AMD, 0x15bf, "")), None);
        assert_eq!(
            open(adapter("Intel(R) Graphics", INTEL, 0xa7a0, "")),
            Some(t.drm().join("card0"))
        );
        // NVIDIA goes through NVML, other vendors and software devices nowhere.
        assert_eq!(
            open(adapter(
                "NVIDIA GeForce RTX 4090",
                0x10de,
                0x2684,
                "0000:05:00.0"
            )),
            None
        );
        assert_eq!(
            open(adapter("llvmpipe (LLVM 15.0.6, 256 bits)", 0x10005, 0, "")),
            None
        );
        let mut no_vendor = amd("0000:03:00.0");
        no_vendor.vendor_id = None;
        assert_eq!(open(no_vendor), None);
        // No DRM folder at all (not Linux, a container).
        assert!(DrmCard::open(&t.0.join("nowhere"), &amd("0000:03:00.0")).is_none());
    }

    #[test]
    fn dpm_levels_parse_the_kernels_lines() {
        let t = Tree::new("dpm");
        let p = t.0.join("pp_dpm_sclk");
        t.write(&p, "S: 19Mhz *\n0: 500Mhz\n1: 2124MHz\n");
        assert_eq!((dpm_current(&p), dpm_max(&p)), (Some(19), Some(2124)));
        t.write(&p, "garbage\n");
        assert_eq!((dpm_current(&p), dpm_max(&p)), (None, None));
        assert_eq!(hz_to_mhz(1_999_600_000), 2000);
    }
}

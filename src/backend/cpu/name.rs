//! The CPU's model name for records: `/proc/cpuinfo`'s `model name` on x86
//! Linux; on Arm Linux, whose `/proc/cpuinfo` has no name, the core named
//! from its implementer and part numbers (as `lscpu` does: a Graviton 3 is a
//! Neoverse-V1); macOS's `machdep.cpu.brand_string`; Windows'
//! `PROCESSOR_IDENTIFIER`; else the architecture alone.

/// The name of the CPU this runs on.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| from_cpuinfo(&s))
        .or_else(os_name)
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The model name in a `/proc/cpuinfo` text: its `model name` line, else an
/// Arm core's implementer and part (the first core's; a big.LITTLE chip's
/// other cores are named after it, as `+ Cortex-A55`).
fn from_cpuinfo(text: &str) -> Option<String> {
    let field = |line: &str, key: &str| -> Option<String> {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    };
    if let Some(name) = text.lines().find_map(|l| field(l, "model name")) {
        if !name.is_empty() {
            return Some(name);
        }
    }
    let mut cores: Vec<String> = Vec::new();
    let mut implementer = None;
    for line in text.lines() {
        if let Some(v) = field(line, "CPU implementer") {
            implementer = parse_hex(&v);
        } else if let Some(v) = field(line, "CPU part") {
            if let (Some(imp), Some(part)) = (implementer, parse_hex(&v)) {
                let name = arm_core(imp, part);
                if !cores.contains(&name) {
                    cores.push(name);
                }
            }
        }
    }
    if cores.is_empty() {
        return None;
    }
    Some(cores.join(" + "))
}

fn parse_hex(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

/// An Arm core's name from its MIDR implementer and part numbers; unknown
/// ones by their numbers, so two machines still read apart.
fn arm_core(implementer: u32, part: u32) -> String {
    let known = match (implementer, part) {
        (0x41, 0xd03) => "ARM Cortex-A53",
        (0x41, 0xd05) => "ARM Cortex-A55",
        (0x41, 0xd07) => "ARM Cortex-A57",
        (0x41, 0xd08) => "ARM Cortex-A72",
        (0x41, 0xd09) => "ARM Cortex-A73",
        (0x41, 0xd0a) => "ARM Cortex-A75",
        (0x41, 0xd0b) => "ARM Cortex-A76",
        (0x41, 0xd0c) => "ARM Neoverse-N1",
        (0x41, 0xd0d) => "ARM Cortex-A77",
        (0x41, 0xd40) => "ARM Neoverse-V1",
        (0x41, 0xd41) => "ARM Cortex-A78",
        (0x41, 0xd44) => "ARM Cortex-X1",
        (0x41, 0xd46) => "ARM Cortex-A510",
        (0x41, 0xd47) => "ARM Cortex-A710",
        (0x41, 0xd48) => "ARM Cortex-X2",
        (0x41, 0xd49) => "ARM Neoverse-N2",
        (0x41, 0xd4d) => "ARM Cortex-A715",
        (0x41, 0xd4e) => "ARM Cortex-X3",
        (0x41, 0xd4f) => "ARM Neoverse-V2",
        (0x41, 0xd80) => "ARM Cortex-A520",
        (0x41, 0xd81) => "ARM Cortex-A720",
        (0x41, 0xd82) => "ARM Cortex-X4",
        (0x41, 0xd84) => "ARM Neoverse-V3",
        (0x41, 0xd8e) => "ARM Neoverse-N3",
        (0x48, 0xd01) => "HiSilicon Kunpeng-920",
        (0x4e, 0x004) => "NVIDIA Carmel",
        (0x50, 0x000) => "Ampere eMAG",
        (0xc0, 0xac3) => "Ampere-1",
        (0xc0, 0xac4) => "Ampere-1a",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let vendor = match implementer {
        0x41 => "ARM",
        0x42 => "Broadcom",
        0x43 => "Cavium",
        0x48 => "HiSilicon",
        0x4e => "NVIDIA",
        0x51 => "Qualcomm",
        0x61 => "Apple",
        0xc0 => "Ampere",
        _ => "Arm",
    };
    format!("{vendor} core (implementer 0x{implementer:02x}, part 0x{part:03x})")
}

/// The operating system's own name for the CPU, where it has one to ask.
fn os_name() -> Option<String> {
    #[cfg(target_os = "macos")]
    {
        let out = std::process::Command::new("/usr/sbin/sysctl")
            .args(["-n", "machdep.cpu.brand_string"])
            .output()
            .ok()?;
        let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !name.is_empty() {
            return Some(name);
        }
    }
    #[cfg(windows)]
    {
        if let Ok(name) = std::env::var("PROCESSOR_IDENTIFIER") {
            if !name.trim().is_empty() {
                return Some(name.trim().to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::from_cpuinfo;

    #[test]
    fn x86_names_come_from_model_name() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(from_cpuinfo(text).as_deref(), Some("AMD EPYC 7B13"));
    }

    #[test]
    fn arm_cores_are_named_from_implementer_and_part() {
        // A Graviton 3 (Neoverse-V1), two of its cores.
        let graviton = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd40\nCPU revision\t: 1\n\nprocessor\t: 1\nCPU implementer\t: 0x41\nCPU part\t: 0xd40\n";
        assert_eq!(from_cpuinfo(graviton).as_deref(), Some("ARM Neoverse-V1"));
        // big.LITTLE: both kinds, in order of appearance.
        let phone = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd05\n\nprocessor\t: 4\nCPU implementer\t: 0x41\nCPU part\t: 0xd41\n\nprocessor\t: 5\nCPU implementer\t: 0x41\nCPU part\t: 0xd05\n";
        assert_eq!(
            from_cpuinfo(phone).as_deref(),
            Some("ARM Cortex-A55 + ARM Cortex-A78")
        );
        // An unknown part keeps its numbers.
        let other = "CPU implementer\t: 0x61\nCPU part\t: 0x022\n";
        assert_eq!(
            from_cpuinfo(other).as_deref(),
            Some("Apple core (implementer 0x61, part 0x022)")
        );
    }

    #[test]
    fn no_name_anywhere_is_none() {
        assert_eq!(from_cpuinfo(""), None);
        assert_eq!(from_cpuinfo("processor\t: 0\nmodel name\t:\n"), None);
        assert_eq!(from_cpuinfo("CPU part\t: 0xd40\n"), None, "no implementer");
    }
}

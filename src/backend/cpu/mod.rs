//! The CPU backend: every op on the host, each through its own CPU kernel
//! (`src/ops/<op>/cpu.rs`) run by the [`runner`]; here, the host CPU's
//! description (model, threads, the SIMD features kernels dispatch on) and
//! its probed ceilings.

mod ceilings;
pub mod element;
mod name;
pub mod runner;

use super::{Backend, BackendKind, Ceilings, DeviceInfo, DeviceLimits, PreparedOp};
use crate::error::Result;
use crate::ops::op::Inputs;
use crate::workload::Workload;

/// The host CPU as a backend.
pub struct CpuBackend {
    info: DeviceInfo,
}

impl CpuBackend {
    /// Describes the host CPU (model, cores, SIMD features).
    pub fn new() -> Self {
        let threads = rayon::current_num_threads();
        CpuBackend {
            info: DeviceInfo {
                name: cpu_model(),
                api: "native".into(),
                device_type: "host-cpu".into(),
                driver: String::new(),
                software: false,
                features: simd_features(),
                limits: DeviceLimits {
                    threads: Some(threads as u64),
                    ..Default::default()
                },
                vendor_id: None,
                device_id: None,
                pci_bus_id: None,
            },
        }
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

pub use name::cpu_model;

/// The CPU's SIMD features for a line of text; a CPU with none of those the
/// kernels use says so rather than leaving a blank.
pub fn features_line(features: &[String]) -> String {
    if features.is_empty() {
        "none of the SIMD extensions the kernels dispatch on".into()
    } else {
        features.join(" ")
    }
}

fn simd_features() -> Vec<String> {
    #[allow(unused_mut)]
    let mut f: Vec<String> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        for (name, on) in [
            ("avx2", std::is_x86_feature_detected!("avx2")),
            ("fma", std::is_x86_feature_detected!("fma")),
            ("f16c", std::is_x86_feature_detected!("f16c")),
            ("avx512f", std::is_x86_feature_detected!("avx512f")),
        ] {
            if on {
                f.push(name.into());
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        for (name, on) in [
            ("neon", std::arch::is_aarch64_feature_detected!("neon")),
            ("fp16", std::arch::is_aarch64_feature_detected!("fp16")),
            ("bf16", std::arch::is_aarch64_feature_detected!("bf16")),
            (
                "dotprod",
                std::arch::is_aarch64_feature_detected!("dotprod"),
            ),
            ("i8mm", std::arch::is_aarch64_feature_detected!("i8mm")),
            ("sve", std::arch::is_aarch64_feature_detected!("sve")),
        ] {
            if on {
                f.push(name.into());
            }
        }
    }
    f
}

impl Backend for CpuBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Cpu
    }

    fn device(&self) -> &DeviceInfo {
        &self.info
    }

    fn describe(&self, work: &Workload) -> String {
        work.params.cpu_kernel(work.precision)
    }

    fn probe_ceilings(&self) -> Result<Ceilings> {
        Ok(ceilings::probe())
    }

    fn prepare<'a>(
        &'a self,
        work: &Workload,
        inputs: &'a Inputs,
    ) -> Result<Box<dyn PreparedOp + 'a>> {
        work.params.cpu(work.precision, inputs)
    }
}

//! `kernel-lab devices`: every adapter wgpu sees, with the features and limits
//! that matter here, and the CPU.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use kernel_lab::backend::cpu::CpuBackend;
use kernel_lab::backend::gpu::{context, AdapterChoice, GpuBackend, GpuOptions};
use kernel_lab::backend::{Backend, BackendKind, Ceilings, DeviceInfo};
use kernel_lab::gpu_monitor::{self, GpuMonitor};

/// Arguments of `devices`.
#[derive(Args, Debug)]
pub struct DevicesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also measure the copy-bandwidth and FMA ceilings of the default GPU and
    /// the CPU, and the GPU's launch costs (dispatch, submission, readback).
    #[arg(long)]
    probe: bool,
}

pub fn run(args: DevicesArgs) -> anyhow::Result<ExitCode> {
    let adapters: Vec<DeviceInfo> = context::enumerate()
        .iter()
        .map(|a| context::describe(a, a.features(), &a.limits()))
        .collect();
    let cpu_backend = CpuBackend::new();
    let cpu = cpu_backend.device().clone();
    let mut ceilings: BTreeMap<BackendKind, Ceilings> = BTreeMap::new();
    if args.probe {
        if let Ok(gpu) = GpuBackend::open(&AdapterChoice::Best, GpuOptions::default()) {
            ceilings.insert(BackendKind::Gpu, gpu.probe_ceilings()?);
        }
        ceilings.insert(BackendKind::Cpu, cpu_backend.probe_ceilings()?);
    }
    if args.json {
        let mut v = serde_json::json!({ "adapters": adapters, "cpu": cpu });
        if args.probe {
            v["ceilings"] = serde_json::to_value(&ceilings)?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if adapters.is_empty() {
        match context::backend_env_problem() {
            Some(why) => println!("no GPU adapter: {why}"),
            None => println!("no GPU adapter found (no Vulkan/Metal/DX12/GL driver; on Debian: apt-get install mesa-vulkan-drivers)"),
        }
    }
    for (i, a) in adapters.iter().enumerate() {
        let soft = if a.software {
            "  [software device: timings are a CPU imitating a GPU]"
        } else {
            ""
        };
        println!("[{i}] {} — {} {}{soft}", a.name, a.api, a.device_type);
        let pci = match (a.vendor_id, a.device_id) {
            (Some(v), Some(d)) if v <= 0xffff => format!(
                "  PCI {v:04x}:{d:04x}{}",
                a.pci_bus_id
                    .as_ref()
                    .map_or(String::new(), |b| format!(" at {b}"))
            ),
            _ => String::new(),
        };
        println!(
            "    driver: {}{pci}",
            if a.driver.is_empty() { "?" } else { &a.driver }
        );
        println!("    driver readings: {}", driver_readings(a));
        let has = |f: &str| {
            if a.features.iter().any(|x| x == f) {
                "yes"
            } else {
                "no"
            }
        };
        println!(
            "    timestamp-query: {}  shader-f16: {}  subgroup: {}  cooperative-matrix: {}",
            has("timestamp-query"),
            has("shader-f16"),
            has("subgroup"),
            has("cooperative-matrix")
        );
        let l = &a.limits;
        let configs = l.cooperative_matrix_configs.clone().unwrap_or_default();
        println!(
            "    subgroup size: {}..{}  cooperative matrices: {}",
            known(l.min_subgroup_size),
            known(l.max_subgroup_size),
            if configs.is_empty() {
                "unavailable (the adapter offers none; the coop matmul is not run)".to_string()
            } else {
                configs.join(", ")
            }
        );
        println!(
            "    max_storage_buffer_binding_size: {} MiB  max_buffer_size: {} MiB",
            l.max_storage_buffer_binding_size.unwrap_or(0) >> 20,
            l.max_buffer_size.unwrap_or(0) >> 20
        );
    }
    println!(
        "[cpu] {} — {} threads, {}",
        cpu.name,
        known(cpu.limits.threads),
        kernel_lab::backend::cpu::features_line(&cpu.features)
    );
    for (which, c) in &ceilings {
        println!(
            "ceilings ({which}): copy {:.1} GB/s{}, FMA {:.1} GFLOP/s ({})",
            c.copy_gbps,
            c.cache_copy_gbps
                .map_or(String::new(), |g| format!(" (in cache {g:.1} GB/s)")),
            c.fma_gflops,
            c.method
        );
        if let Some(k) = &c.coop {
            println!(
                "cooperative matrices ({which}): {:.1} GFLOP/s with operands in registers, {:.1} GFLOP/s reloading them from workgroup memory ({})",
                k.gflops, k.lds_gflops, k.method
            );
        }
        if let Some(d) = &c.dispatch {
            println!(
                "launch costs ({which}): empty dispatch {:.1} us, per dispatch in one pass {:.2} us, submission round trip {:.1} us, readback round trip {:.1} us ({})",
                d.empty_dispatch_us,
                d.per_dispatch_in_pass_us,
                d.submit_round_trip_us,
                d.readback_round_trip_us,
                d.method
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A limit the device reports, or `?`.
/// What the GPU's driver will tell a run of this adapter: its clocks, power
/// and whether it has an energy counter (energy per point needs one).
fn driver_readings(a: &DeviceInfo) -> String {
    let Some(m) = GpuMonitor::open(a) else {
        return if a.software {
            "none (a software device)".into()
        } else {
            match a.vendor_id {
                Some(gpu_monitor::NVIDIA) => {
                    "none (NVML, libnvidia-ml.so.1, not found or not this card)".into()
                }
                Some(gpu_monitor::AMD | gpu_monitor::INTEL) => {
                    "none (no DRM card under /sys/class/drm is surely this adapter)".into()
                }
                _ => "none (clocks and energy are read on NVIDIA, AMD and Intel cards)".into(),
            }
        };
    };
    let Some(s) = m.state() else {
        return "none (the driver answered nothing)".into();
    };
    let opt = |v: Option<u32>| v.map_or("?".to_string(), |v| v.to_string());
    let watts = |v: Option<f64>| v.map_or("?".to_string(), |w| format!("{w:.0}"));
    format!(
        "{}: SM {} of {} MHz, {} W of {} W, {} C; energy counter: {}",
        s.source.as_deref().unwrap_or("driver"),
        opt(s.sm_clock_mhz),
        opt(s.max_sm_clock_mhz),
        watts(s.power_w),
        watts(s.power_limit_w),
        opt(s.temperature_c),
        if m.energy_mj().is_some() {
            "yes (energy per point is measured)"
        } else {
            "no (no energy per point)"
        }
    )
}

fn known<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("?".to_string(), |v| v.to_string())
}

//! `kernel-lab devices`: every adapter wgpu sees, with the features and limits
//! that matter here, and the CPU.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use kernel_lab::backend::cpu::CpuBackend;
use kernel_lab::backend::gpu::{context, AdapterChoice, GpuBackend, GpuOptions};
use kernel_lab::backend::{Backend, BackendKind, Ceilings, DeviceInfo};

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
        println!(
            "    driver: {}",
            if a.driver.is_empty() { "?" } else { &a.driver }
        );
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
        cpu.features.join(" ")
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
fn known<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("?".to_string(), |v| v.to_string())
}

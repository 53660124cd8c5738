//! `kernel-lab devices`: every adapter wgpu sees, with the features and limits
//! that matter here, and the CPU.

use std::process::ExitCode;

use clap::Args;
use kernel_lab::backend::cpu::CpuBackend;
use kernel_lab::backend::gpu::{context, AdapterChoice, GpuBackend, GpuOptions};
use kernel_lab::backend::{Backend, DeviceInfo};

/// Arguments of `devices`.
#[derive(Args, Debug)]
pub struct DevicesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also measure the copy-bandwidth and FMA ceilings of the default GPU and the CPU.
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
    let mut ceilings = serde_json::Map::new();
    if args.probe {
        if let Ok(gpu) = GpuBackend::open(&AdapterChoice::Best, GpuOptions::default()) {
            ceilings.insert("gpu".into(), serde_json::to_value(gpu.probe_ceilings()?)?);
        }
        ceilings.insert(
            "cpu".into(),
            serde_json::to_value(cpu_backend.probe_ceilings()?)?,
        );
    }
    if args.json {
        let mut v = serde_json::json!({ "adapters": adapters, "cpu": cpu });
        if args.probe {
            v["ceilings"] = serde_json::Value::Object(ceilings);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if adapters.is_empty() {
        println!("no GPU adapter found (no Vulkan/Metal/DX12/GL driver; on Debian: apt-get install mesa-vulkan-drivers)");
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
        let configs: Vec<&str> = a.limits["cooperative_matrix_configs"]
            .as_array()
            .map(|v| v.iter().filter_map(|c| c.as_str()).collect())
            .unwrap_or_default();
        println!(
            "    subgroup size: {}..{}  cooperative matrices: {}",
            a.limits["min_subgroup_size"],
            a.limits["max_subgroup_size"],
            if configs.is_empty() {
                "unavailable (the adapter offers none; the coop matmul is not run)".to_string()
            } else {
                configs.join(", ")
            }
        );
        println!(
            "    max_storage_buffer_binding_size: {} MiB  max_buffer_size: {} MiB",
            a.limits["max_storage_buffer_binding_size"]
                .as_u64()
                .unwrap_or(0)
                >> 20,
            a.limits["max_buffer_size"].as_u64().unwrap_or(0) >> 20
        );
    }
    println!(
        "[cpu] {} — {} threads, {}",
        cpu.name,
        cpu.limits["threads"],
        cpu.features.join(" ")
    );
    for (which, c) in &ceilings {
        println!(
            "ceilings ({which}): copy {:.1} GB/s, FMA {:.1} GFLOP/s ({})",
            c["copy_gbps"].as_f64().unwrap_or(0.0),
            c["fma_gflops"].as_f64().unwrap_or(0.0),
            c["method"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

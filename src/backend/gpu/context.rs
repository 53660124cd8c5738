//! GPU setup in one place: enumerate adapters, pick one, open a device with the
//! adapter's own limits and every feature this lab can use, and describe it.
//!
//! Kernels take the [`GpuContext`]'s device and queue, so tests can share one.

use std::sync::{Arc, Mutex};

use super::options::ShaderChecks;
use super::pipelines::{Compiled, PipelineCache};
use crate::backend::info::{DeviceInfo, DeviceLimits};
use crate::error::{LabError, Result};

/// Features requested whenever the adapter offers them.
const WANTED_FEATURES: wgpu::Features = wgpu::Features::TIMESTAMP_QUERY
    .union(wgpu::Features::SHADER_F16)
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);

/// An open device, its queue, and what it can do.
pub struct GpuContext {
    /// The adapter the device was opened on.
    pub adapter: wgpu::Adapter,
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// Features enabled on the device.
    pub features: wgpu::Features,
    /// Limits granted (the adapter's own).
    pub limits: wgpu::Limits,
    /// The description used in records.
    pub info: DeviceInfo,
    /// The first error the device reported outside an error scope, if any.
    pub uncaptured: Arc<Mutex<Option<String>>>,
    /// Set when the device reports itself lost.
    pub lost: Arc<Mutex<Option<String>>>,
    /// Pipelines compiled on this device (see pipelines.rs).
    pub pipelines: PipelineCache,
    /// Nanoseconds per timestamp tick: the queue's own period, unless
    /// [`super::options::GpuOptions::timestamp_period_ns`] replaces it.
    pub timestamp_period_ns: f32,
}

/// How to choose an adapter: by index in `devices`' list or by a name substring.
#[derive(Clone, Debug, Default)]
pub enum AdapterChoice {
    /// The best real GPU, else any adapter.
    #[default]
    Best,
    /// The adapter at this index of [`enumerate`]'s list.
    Index(usize),
    /// The first adapter whose name contains this (case-insensitive).
    Name(String),
}

impl AdapterChoice {
    /// Parses `--adapter`: a number is an index, anything else a name substring.
    pub fn parse(s: &str) -> Self {
        match s.parse::<usize>() {
            Ok(i) => AdapterChoice::Index(i),
            Err(_) => AdapterChoice::Name(s.to_string()),
        }
    }
}

/// Every adapter wgpu can see on every native backend, best first.
pub fn enumerate() -> Vec<wgpu::Adapter> {
    enumerate_on(wgpu::Backends::all())
}

/// The adapters on `wanted` backends (narrowed further by WGPU_BACKEND), best first.
fn enumerate_on(wanted: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    let backends = desc.backends & wanted;
    let instance = wgpu::Instance::new(desc);
    let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
    adapters.sort_by_key(|a| std::cmp::Reverse(rank(&a.get_info())));
    adapters
}

/// The adapters a choice is made from: Vulkan, Metal and DX12 ones when there
/// are any, else GL. Probing GL only when needed keeps the EGL stack (and the
/// warnings it prints on headless machines) out of the common path.
fn candidates(choice: &AdapterChoice) -> Vec<wgpu::Adapter> {
    if matches!(choice, AdapterChoice::Index(_)) {
        // Indices refer to `devices`' full list.
        return enumerate();
    }
    let primary = enumerate_on(wgpu::Backends::PRIMARY);
    if primary.is_empty() {
        enumerate_on(wgpu::Backends::SECONDARY)
    } else {
        primary
    }
}

/// Preference of an adapter: real GPUs first, then software ones; Vulkan, Metal
/// and DX12 before GL (whose compute support is thinner).
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 1,
        wgpu::DeviceType::Other => 0,
    };
    let api = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 1,
        _ => 0,
    };
    (kind, api)
}

/// Why there may be no adapter: `WGPU_BACKEND` naming no backend wgpu knows
/// (wgpu then enables none), rather than a missing driver.
pub fn backend_env_problem() -> Option<String> {
    let v = std::env::var("WGPU_BACKEND").ok()?;
    (wgpu::Backends::from_comma_list(&v).is_empty()).then(|| {
        format!("WGPU_BACKEND={v} names no backend wgpu knows (vulkan, metal, dx12, gl, or a comma list of them)")
    })
}

/// Picks an adapter as `choice` says, or says why none fits.
pub fn select(choice: &AdapterChoice) -> Result<wgpu::Adapter> {
    if let Some(why) = backend_env_problem() {
        return Err(LabError::NoAdapter(why));
    }
    let mut adapters = candidates(choice);
    if adapters.is_empty() {
        return Err(LabError::NoAdapter(
            "wgpu found none on any backend (no Vulkan/Metal/DX12/GL driver; on Debian install mesa-vulkan-drivers for a software device)"
                .into(),
        ));
    }
    let names = || {
        adapters
            .iter()
            .map(|a| a.get_info().name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let index = match choice {
        AdapterChoice::Best => 0,
        AdapterChoice::Index(i) if *i < adapters.len() => *i,
        AdapterChoice::Index(i) => {
            return Err(LabError::NoAdapter(format!(
                "index {i} out of range, {} adapter(s): {}",
                adapters.len(),
                names()
            )))
        }
        AdapterChoice::Name(n) => {
            let needle = n.to_lowercase();
            adapters
                .iter()
                .position(|a| a.get_info().name.to_lowercase().contains(&needle))
                .ok_or_else(|| {
                    LabError::NoAdapter(format!("none named like `{n}` among: {}", names()))
                })?
        }
    };
    Ok(adapters.swap_remove(index))
}

/// Names of the features this lab cares about that `features` contains.
pub fn feature_names(features: wgpu::Features) -> Vec<String> {
    [
        (wgpu::Features::TIMESTAMP_QUERY, "timestamp-query"),
        (wgpu::Features::SHADER_F16, "shader-f16"),
        (wgpu::Features::SUBGROUP, "subgroup"),
        (
            wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
            "cooperative-matrix",
        ),
    ]
    .into_iter()
    .filter(|(f, _)| features.contains(*f))
    .map(|(_, n)| n.to_string())
    .collect()
}

/// The description of an adapter for records and `devices`.
pub fn describe(
    adapter: &wgpu::Adapter,
    features: wgpu::Features,
    limits: &wgpu::Limits,
) -> DeviceInfo {
    let info = adapter.get_info();
    let device_type = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => "discrete-gpu",
        wgpu::DeviceType::IntegratedGpu => "integrated-gpu",
        wgpu::DeviceType::VirtualGpu => "virtual-gpu",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    };
    DeviceInfo {
        name: info.name.clone(),
        api: info.backend.to_string(),
        device_type: device_type.into(),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        software: info.device_type == wgpu::DeviceType::Cpu,
        features: feature_names(features),
        limits: DeviceLimits {
            max_buffer_size: Some(limits.max_buffer_size),
            max_storage_buffer_binding_size: Some(limits.max_storage_buffer_binding_size),
            max_compute_workgroups_per_dimension: Some(limits.max_compute_workgroups_per_dimension),
            max_compute_invocations_per_workgroup: Some(
                limits.max_compute_invocations_per_workgroup,
            ),
            max_compute_workgroup_storage_size: Some(limits.max_compute_workgroup_storage_size),
            min_subgroup_size: Some(info.subgroup_min_size),
            max_subgroup_size: Some(info.subgroup_max_size),
            cooperative_matrix_configs: Some(coop_configurations(adapter)),
            threads: None,
        },
        vendor_id: Some(info.vendor),
        device_id: Some(info.device),
        pci_bus_id: Some(info.device_pci_bus_id.clone()).filter(|b| !b.is_empty()),
    }
}

impl GpuContext {
    /// Opens a device on the adapter `choice` names.
    pub fn open(choice: &AdapterChoice) -> Result<Self> {
        Self::on_adapter(select(choice)?)
    }

    /// Opens a device on `adapter` with its own limits and the wanted features it has.
    pub fn on_adapter(adapter: wgpu::Adapter) -> Result<Self> {
        let features = adapter.features() & WANTED_FEATURES;
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("kernel-lab"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features:
                if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
                    // SAFETY: the token acknowledges that wgpu's experimental
                    // cooperative-matrix support may have bugs. Only the coop matmul
                    // uses it, and its every result is verified against the f64
                    // reference before it is timed or chosen, and the coop
                    // ceiling probe, which checks its own exact result.
                    unsafe { wgpu::ExperimentalFeatures::enabled() }
                } else {
                    wgpu::ExperimentalFeatures::disabled()
                },
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| {
            LabError::Gpu(format!(
                "request_device on {}: {e}",
                adapter.get_info().name
            ))
        })?;

        // wgpu's default handler panics; keep the first error instead, so the
        // point that caused it becomes a clear error and the process lives on.
        let uncaptured = Arc::new(Mutex::new(None));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string().lines().next().unwrap_or("").to_string());
        }));
        let lost = Arc::new(Mutex::new(None));
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let mut slot = lost_sink.lock().unwrap_or_else(|p| p.into_inner());
            *slot = Some(format!("{reason:?}: {msg}"));
        });

        let info = describe(&adapter, features, &limits);
        let timestamp_period_ns = queue.get_timestamp_period();
        Ok(GpuContext {
            adapter,
            device,
            queue,
            features,
            limits,
            info,
            uncaptured,
            lost,
            pipelines: PipelineCache::default(),
            timestamp_period_ns,
        })
    }

    /// Takes the error the device reported outside a scope since the last call.
    pub fn take_uncaptured(&self) -> Option<String> {
        self.uncaptured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Why the device was lost, if it was.
    pub fn lost_reason(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| LabError::Gpu(format!("waiting for the device: {e}")))
    }

    /// Runs `f` inside validation and out-of-memory error scopes; an error in
    /// either becomes a [`LabError::Gpu`] naming `what`.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        // On a lost device every call fails validation: report the cause, not the symptom.
        if let Some(reason) = self.lost_reason() {
            return Err(LabError::DeviceLost(format!("{what}: {reason}")));
        }
        if let Some(e) = o {
            return Err(LabError::Gpu(format!(
                "{what}: out of memory: {}",
                first_line(&e)
            )));
        }
        if let Some(e) = v {
            return Err(LabError::Gpu(format!("{what}: {}", first_line(&e))));
        }
        out
    }
}

impl GpuContext {
    /// The compute pipeline of `source` (entry point `main`) with `constants`,
    /// from the device's cache or compiled now, with the runtime `checks`
    /// asked for; only kernels that bound every access themselves may ask
    /// for less than full checks (the SAFETY note in `pipelines.rs`). A module
    /// that fails to compile is an error naming `label`, and is not cached.
    pub fn pipeline(
        &self,
        label: &str,
        source: String,
        constants: &[(&str, f64)],
        checks: ShaderChecks,
    ) -> Result<Compiled> {
        self.pipelines
            .get_or_compile(&self.device, source, constants, checks, |compile| {
                self.scoped(&format!("compiling {label}"), || Ok(compile(label)))
            })
    }
}

/// The cooperative-matrix configurations an adapter offers, as `MxNxK A->C`.
pub fn coop_configurations(adapter: &wgpu::Adapter) -> Vec<String> {
    adapter
        .cooperative_matrix_properties()
        .iter()
        .map(|p| {
            format!(
                "{}x{}x{} {:?}->{:?}",
                p.m_size, p.n_size, p.k_size, p.ab_type, p.cr_type
            )
        })
        .collect()
}

fn first_line(e: &wgpu::Error) -> String {
    let s = e.to_string();
    let mut lines = s.lines().map(str::trim).filter(|l| !l.is_empty());
    lines.next().unwrap_or("").to_string()
}

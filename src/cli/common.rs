//! What the subcommands share: choosing and opening a backend (`--backend`,
//! the GPU flags), the parsers of numeric flags, and the columns that
//! identify a point in a table.

use clap::{Args, ValueEnum};
use kernel_lab::backend::cpu::CpuBackend;
use kernel_lab::backend::gpu::{AdapterChoice, GpuBackend, GpuOptions, ShaderChecks};
use kernel_lab::backend::{Backend, BackendKind};
use kernel_lab::ops::matmul::kernels::MatmulVariant;

/// Which backend a command runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// The GPU if an adapter exists, else the CPU (said on stderr).
    Auto,
    /// A wgpu adapter; an error when there is none.
    Gpu,
    /// The host CPU.
    Cpu,
}

/// What FP16 matmuls accumulate in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Accumulate {
    /// f32 accumulators (the default; the tolerance of an f32 dot product).
    #[default]
    F32,
    /// f16 accumulators (SHADER_F16 devices, FP16 points; its own tolerance).
    F16,
}

/// `--shader-checks` (see [`ShaderChecks`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Checks {
    Full,
    #[default]
    NoLoopBounding,
    None,
}

/// Options that choose and tune the GPU backend.
#[derive(Args, Debug, Clone, Default)]
pub struct GpuArgs {
    /// Adapter to use: an index from `kernel-lab devices`, or a name substring.
    #[arg(long)]
    adapter: Option<String>,
    /// Store FP16 packed two to a u32 even where SHADER_F16 exists.
    #[arg(long, hide = true)]
    force_packed_f16: bool,
    /// Pretend the storage-binding limit is this many bytes (exercises chunking).
    #[arg(long, hide = true)]
    max_binding_bytes: Option<u64>,
    /// Use this matmul kernel instead of autotuning: tiled, direct, subgroup,
    /// coop, or a configuration name as records show it (e.g. tiled-128x128x8-8x8).
    #[arg(long, value_parser = parse_variant)]
    matmul_variant: Option<MatmulVariant>,
    /// Accumulate FP16 matmuls in f16 instead of f32 (GPU with shader-f16):
    /// faster on some GPUs, less accurate; records name it `-acc16`.
    #[arg(long, value_enum, default_value_t = Accumulate::F32)]
    accumulate: Accumulate,
    /// wgpu's runtime checks in the matmul kernels: full (bounds checks and
    /// loop counters, which keep drivers from unrolling loops), no-loop-bounding
    /// (bounds checks only), or none (the kernels check their own bounds).
    #[arg(long, value_enum, default_value_t = Checks::NoLoopBounding)]
    shader_checks: Checks,
    /// Shorthand for --shader-checks none.
    #[arg(long)]
    trusted_shaders: bool,
    /// Tune the matmul afresh instead of reusing (and updating) the choices
    /// cached per adapter in $KERNEL_LAB_CACHE_DIR or ~/.cache/kernel-lab.
    #[arg(long)]
    no_tuning_cache: bool,
}

/// A positive, finite number of milliseconds (`--max-time-ms`).
pub fn positive_ms(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("must be a positive, finite number of milliseconds".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A finite number strictly between 0 and 1 (`--alpha`).
pub fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1.0 => Ok(v),
        Ok(_) => Err("must be a finite number between 0 and 1, exclusive".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A finite, non-negative number (`--threshold`).
pub fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err("must be a finite number, 0 or more".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses `--matmul-variant`, listing the accepted names when it fails.
fn parse_variant(name: &str) -> Result<MatmulVariant, String> {
    MatmulVariant::parse(name).ok_or_else(|| {
        format!(
            "unknown matmul variant; one of: {}",
            MatmulVariant::names().join(", ")
        )
    })
}

impl GpuArgs {
    fn options(&self) -> GpuOptions {
        GpuOptions {
            force_packed_f16: self.force_packed_f16,
            max_binding_bytes: self.max_binding_bytes,
            matmul_variant: self.matmul_variant,
            f16_accumulate: self.accumulate == Accumulate::F16,
            shader_checks: if self.trusted_shaders {
                ShaderChecks::None
            } else {
                match self.shader_checks {
                    Checks::Full => ShaderChecks::Full,
                    Checks::NoLoopBounding => ShaderChecks::NoLoopBounding,
                    Checks::None => ShaderChecks::None,
                }
            },
            bounds_guard: false,
            timestamp_period_ns: None,
        }
    }

    /// Opens the GPU these arguments ask for, with the tuning cache unless declined.
    pub fn open(&self) -> kernel_lab::Result<GpuBackend> {
        let cache = if self.no_tuning_cache {
            None
        } else {
            kernel_lab::backend::gpu::tune::cache::default_path()
        };
        Ok(GpuBackend::open(&self.choice(), self.options())?.with_tuning_cache(cache))
    }

    /// The GPU-only flags given, by name (none of them means anything to the CPU).
    pub fn gpu_only_flags(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.adapter.is_some() {
            v.push("--adapter");
        }
        if self.matmul_variant.is_some() {
            v.push("--matmul-variant");
        }
        if self.accumulate != Accumulate::F32 {
            v.push("--accumulate");
        }
        if self.shader_checks != Checks::NoLoopBounding || self.trusted_shaders {
            v.push("--shader-checks/--trusted-shaders");
        }
        if self.force_packed_f16 {
            v.push("--force-packed-f16");
        }
        if self.max_binding_bytes.is_some() {
            v.push("--max-binding-bytes");
        }
        v
    }

    /// Whether FP16 matmuls were asked to accumulate in f16.
    pub fn accumulates_f16(&self) -> bool {
        self.accumulate == Accumulate::F16
    }

    /// Whether an adapter was named (then failing to open it is an error,
    /// not a fall-back).
    pub fn names_adapter(&self) -> bool {
        self.adapter.is_some()
    }

    fn choice(&self) -> AdapterChoice {
        self.adapter
            .as_deref()
            .map_or(AdapterChoice::Best, AdapterChoice::parse)
    }
}

/// Opens the backend `arg` asks for. `auto` falls back to the CPU, saying why.
pub fn open_backend(arg: BackendArg, gpu: &GpuArgs) -> anyhow::Result<Box<dyn Backend>> {
    let open_gpu = || gpu.open();
    let flags = gpu.gpu_only_flags();
    if arg == BackendArg::Cpu && !flags.is_empty() {
        let verb = if flags.len() == 1 { "applies" } else { "apply" };
        eprintln!(
            "note: {} {verb} to the GPU backend only; ignored with --backend cpu",
            flags.join(", ")
        );
    }
    if arg == BackendArg::Auto && gpu.names_adapter() {
        // A named adapter that does not open is an error, not a fall-back.
        return Ok(Box::new(open_gpu()?));
    }
    Ok(match arg {
        BackendArg::Cpu => Box::new(CpuBackend::new()),
        BackendArg::Gpu => Box::new(open_gpu()?),
        BackendArg::Auto => match open_gpu() {
            Ok(b) => Box::new(b),
            Err(e) => {
                eprintln!("note: {e}; falling back to the CPU backend");
                Box::new(CpuBackend::new())
            }
        },
    })
}

/// Header of the columns [`point_columns`] prints.
pub const POINT_HEADER: &str = "op             bknd prec     B     S     D      N";

/// The leading table columns that identify a point: op, backend, precision, B, S, D, N.
pub fn point_columns(r: &kernel_lab::results::Record) -> String {
    format!(
        "{:<14} {:<4} {:<4} {:>5} {:>5} {:>5} {:>6}",
        r.id.op().name(),
        r.id.backend,
        r.id.precision.name(),
        cell(r.id.axis("batch")),
        cell(r.id.axis("seq")),
        cell(r.id.axis("dim")),
        cell(r.id.axis("out_dim").or(r.id.axis("dim")))
    )
}

/// A parameter's value in a cell ("-" where the op has none).
fn cell(v: Option<u32>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// A one-line label for a backend's device, marking software GPUs.
pub fn device_label(b: &dyn Backend) -> String {
    let d = b.device();
    let soft = if d.software {
        ", software device: CPU timings, not GPU"
    } else {
        ""
    };
    match b.kind() {
        BackendKind::Gpu => format!("gpu: {} ({} {}{soft})", d.name, d.api, d.device_type),
        BackendKind::Cpu => format!("cpu: {}", d.name),
    }
}

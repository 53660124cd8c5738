//! Shared test helpers: the binary under test, fresh temporary folders,
//! opening the GPU (or explaining why a GPU test is skipped), and running a
//! workload through a backend into a verified result.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

use kernel_lab::backend::gpu::capability::Unsupported;
use kernel_lab::backend::gpu::{context, AdapterChoice, GpuBackend, GpuContext, GpuOptions};
use kernel_lab::backend::Backend;
use kernel_lab::ops::matmul;
use kernel_lab::ops::matmul::kernels::MatmulVariant;
use kernel_lab::ops::op::Values;
use kernel_lab::ops::Op;
use kernel_lab::precision::Precision;
use kernel_lab::verify::Accuracy;
use kernel_lab::workload::Workload;

/// True when the environment demands a GPU (CI sets it with lavapipe installed).
pub fn gpu_required() -> bool {
    std::env::var("KERNEL_LAB_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// Says why a GPU test cannot run: fails under KERNEL_LAB_REQUIRE_GPU=1, else
/// prints the reason and lets the test skip.
pub fn no_gpu(why: impl std::fmt::Display) {
    assert!(!gpu_required(), "KERNEL_LAB_REQUIRE_GPU=1 but {why}");
    eprintln!("skipping GPU test: {why}");
}

/// The default adapter as a backend, or `None` (with the reason printed).
pub fn gpu(options: GpuOptions) -> Option<GpuBackend> {
    match GpuBackend::open(&AdapterChoice::Best, options) {
        Ok(b) => Some(b),
        Err(e) => {
            no_gpu(e);
            None
        }
    }
}

/// Every adapter wgpu sees, opened (adapters whose device cannot open are reported).
pub fn every_gpu() -> Vec<GpuBackend> {
    every_gpu_with(GpuOptions::default())
}

/// [`every_gpu`] with these backend options.
pub fn every_gpu_with(options: GpuOptions) -> Vec<GpuBackend> {
    let adapters = context::enumerate();
    if adapters.is_empty() {
        no_gpu("wgpu found no adapter");
    }
    adapters
        .into_iter()
        .filter_map(|a| {
            let name = format!("{} ({})", a.get_info().name, a.get_info().backend);
            match GpuContext::on_adapter(a) {
                Ok(ctx) => Some(GpuBackend::new(ctx, options)),
                Err(e) => {
                    eprintln!("adapter {name} could not open a device: {e}");
                    None
                }
            }
        })
        .collect()
}

/// The op named `name`, as the command line names it.
pub fn op(name: &str) -> Op {
    name.parse().unwrap()
}

/// A workload of `op` from named sizes (those the op has; its defaults for
/// the rest).
pub fn sized(op: Op, precision: Precision, sizes: &[(&str, u32)]) -> Workload {
    let mut v = Values::default();
    for &(k, x) in sizes {
        if op.axes().iter().any(|a| a.name == k) {
            v.set(k, x);
        }
    }
    Workload::new(op.params(&v).unwrap(), precision)
}

/// A workload from the seed's parts: batch, seq, dim and (for an op with a
/// table) vocab; a projection is square.
pub fn work(op: Op, precision: Precision, b: u32, s: u32, d: u32, v: u32) -> Workload {
    sized(
        op,
        precision,
        &[("batch", b), ("seq", s), ("dim", d), ("vocab", v)],
    )
}

/// Runs `work` once on `backend` and compares with the f64 reference.
pub fn check(backend: &dyn Backend, work: &Workload) -> Accuracy {
    let inputs = work.inputs(42);
    let mut kernel = backend.prepare(work, &inputs).unwrap_or_else(|e| {
        panic!(
            "{} on {}: {e}",
            backend.describe(work),
            backend.device().name
        )
    });
    kernel.run().unwrap();
    let out = kernel.output().unwrap();
    work.verify(&inputs, &out, kernel.accumulation())
}

/// The rows of each buffer `work`'s output comes back in on `backend` (its
/// row chunks; empty where the backend holds it whole).
pub fn output_chunks(backend: &dyn Backend, work: &Workload) -> Vec<u32> {
    let inputs = work.inputs(42);
    let kernel = backend.prepare(work, &inputs).unwrap();
    kernel.output_chunks()
}

/// Asserts `work` verifies on `backend`, with a message naming the case.
pub fn assert_verified(backend: &dyn Backend, work: &Workload) {
    let acc = check(backend, work);
    assert!(
        acc.verified,
        "{} {:?} on {}: {:?}",
        backend.describe(work),
        work.params,
        backend.device().name,
        acc
    );
}

/// The shapes every op and precision is checked on: none a multiple of a tile,
/// the degenerate 1x1x1, and rows that select each gather variant.
pub const SHAPES: [(u32, u32, u32, u32); 5] = [
    (3, 77, 100, 1000),
    (1, 1, 1, 1),
    (2, 5, 33, 7),
    (1, 65, 129, 300),
    // 64-element rows: the vec4 gather in f16 (and packed f16) too.
    (2, 3, 64, 40),
];

/// A tuning-cache folder private to this test process, so that tests never
/// read or write the user's cache (`KERNEL_LAB_CACHE_DIR` for the binary).
pub fn test_cache_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("kernel-lab-test-cache-{}", std::process::id()))
}

/// The `kernel-lab` binary with `args`, using the test process's private
/// tuning cache.
pub fn kernel_lab(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kernel-lab"));
    c.args(args).env("KERNEL_LAB_CACHE_DIR", test_cache_dir());
    c
}

/// Runs the binary with `args` to completion.
pub fn run(args: &[&str]) -> Output {
    kernel_lab(args).output().expect("the binary runs")
}

/// What a run printed on stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `text` to `path` as an executable script (a stand-in helper).
pub fn write_script(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// A path for a test's files, unique to the test process, emptied (not created).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kernel-lab-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `variant` fitted to `backend`'s adapter (its subgroup width and
/// cooperative fragment).
pub fn fit(backend: &GpuBackend, variant: MatmulVariant) -> MatmulVariant {
    matmul::gpu::fit(backend.context(), variant)
}

/// Why `variant` cannot run `work`'s precision on `backend`, or `Ok`.
pub fn supports(
    backend: &GpuBackend,
    variant: MatmulVariant,
    work: &Workload,
) -> Result<(), Unsupported> {
    matmul::gpu::supports(
        backend.context(),
        variant,
        backend.storage_mode(work.precision),
    )
}

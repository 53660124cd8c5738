//! `kernel-lab bench`: measure one point and print its record (a summary, or
//! exactly one JSON record with `--json`).

use std::process::ExitCode;

use clap::Args;
use kernel_lab::data::{Data, Dist, Scale};
use kernel_lab::measure::Sampling;
use kernel_lab::measure_point::measure_point;
use kernel_lab::models;
use kernel_lab::ops::op::{AxisKind, Values};
use kernel_lab::ops::{all_axes, Op};
use kernel_lab::precision::Precision;
use kernel_lab::results::Record;
use kernel_lab::workload::Workload;

use super::common::{device_label, open_backend, BackendArg, GpuArgs};
use super::output::Format;

/// Arguments of `bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Operation (`kernel-lab ops` lists them with their parameters).
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    op: Option<Op>,
    /// A model preset (`kernel-lab models` lists them), or a model of the
    /// --models-from file; with --layer, instead of --op and the sizes the
    /// layer fixes (the run's, such as --batch and --seq, stay flags).
    #[arg(long, requires = "layer")]
    model: Option<String>,
    /// The model's layer to measure (qkv, attn-out, mlp-up, mlp-down, lm-head, ...).
    #[arg(long, requires = "model")]
    layer: Option<String>,
    /// A TOML file whose `[[model]]` tables --model may name beside the
    /// presets: an experiment file that defines models, or a file of models alone.
    #[arg(long, value_name = "FILE", requires = "model")]
    models_from: Option<std::path::PathBuf>,
    /// The op's own parameters, one flag each.
    #[command(flatten)]
    params: ParamFlags,
    /// Storage precision: f32 (fp32), f16 (fp16, half), bf16 (bfloat16) or
    /// int8 (INT8 weights, FP16 activations: W8A16).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Input data: uniform (the lab's historical data), normal, or llm
    /// (normal with a few 20x outlier channels and spread weight columns).
    #[arg(long, default_value = "uniform")]
    dist: Dist,
    /// Factor on the activations and table rows (push toward FP16's 65504).
    #[arg(long, default_value = "1")]
    scale: Scale,
    /// Backend: auto (GPU if present, else CPU), gpu or cpu.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,
    #[command(flatten)]
    gpu: GpuArgs,
    /// Print exactly one JSON record (the same as --format json).
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// table (the record in words), json (exactly one JSON record) or csv
    /// (a header and one row).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Cheap sampling (a smoke test, not a measurement to quote).
    #[arg(long)]
    quick: bool,
    /// Take at least this many samples (unless --max-time-ms runs out).
    #[arg(long)]
    min_samples: Option<u32>,
    /// Take at most this many samples.
    #[arg(long)]
    max_samples: Option<u32>,
    /// Stop sampling after this many milliseconds.
    #[arg(long, value_parser = super::common::positive_ms)]
    max_time_ms: Option<f64>,
    /// Flush caches before every sample (cold-cache timing).
    #[arg(long)]
    cold_cache: bool,
    /// Warm-up runs before sampling.
    #[arg(long)]
    warmup_runs: Option<u32>,
    /// End-to-end (upload, kernel, readback) requests to time; 0 skips them.
    #[arg(long)]
    phase_runs: Option<u32>,
    /// Skip the back-to-back throughput measurement.
    #[arg(long)]
    no_batch: bool,
}

/// Every op's parameters as flags (`--batch`, `--dim`, `--out-dim`, ...),
/// made from the ops' own declarations: a parameter an op adds is a flag
/// here without touching this file.
#[derive(Clone, Debug, Default)]
pub struct ParamFlags(Values);

impl ParamFlags {
    /// [`ParamFlags::flag`] of a parameter named at run time.
    fn flag_of(name: &str) -> String {
        all_axes().iter().find(|a| a.name == name).map_or_else(
            || name.replace('_', "-"),
            |a| Self::flag(a.name).to_string(),
        )
    }

    /// The flag of parameter `name` (`out_dim` -> `out-dim`; a parameter
    /// that is on by default is turned off by `--no-<name>`), made once.
    fn flag(name: &'static str) -> &'static str {
        static FLAGS: std::sync::OnceLock<Vec<(&'static str, &'static str)>> =
            std::sync::OnceLock::new();
        FLAGS
            .get_or_init(|| {
                all_axes()
                    .iter()
                    .map(|a| {
                        let name = a.name.replace('_', "-");
                        let name = match a.kind {
                            AxisKind::Flag { default: true } => format!("no-{name}"),
                            _ => name,
                        };
                        let flag: &'static str = Box::leak(name.into_boxed_str());
                        (a.name, flag)
                    })
                    .collect()
            })
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(name, |(_, f)| f)
    }
}

impl clap::FromArgMatches for ParamFlags {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = ParamFlags::default();
        flags.update_from_arg_matches(m)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        for a in all_axes() {
            match a.kind {
                AxisKind::Size { .. } => {
                    if let Some(v) = m.get_one::<u32>(a.name) {
                        self.0.set(a.name, *v);
                    }
                }
                AxisKind::Flag { default } => {
                    if m.get_flag(a.name) {
                        self.0.set(a.name, !default);
                    }
                }
                AxisKind::Choice { .. } => {
                    if let Some(v) = m.get_one::<String>(a.name) {
                        self.0.set(a.name, v.clone());
                    }
                }
            }
        }
        Ok(())
    }
}

impl clap::Args for ParamFlags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        all_axes().into_iter().fold(cmd, |cmd, a| {
            let arg = clap::Arg::new(a.name).long(Self::flag(a.name)).help(a.help);
            cmd.arg(match a.kind {
                AxisKind::Size { default } => {
                    let arg = arg.value_parser(clap::value_parser!(u32).range(1..));
                    match default {
                        Some(d) => arg.help(format!("{} (default: {d})", a.help)),
                        None => arg,
                    }
                }
                AxisKind::Flag { .. } => arg.action(clap::ArgAction::SetTrue),
                AxisKind::Choice { options, default } => arg
                    .value_parser(clap::builder::PossibleValuesParser::new(options.iter()))
                    .help(format!("{} (default: {default})", a.help)),
            })
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// The flags of `op`'s own parameters; each other op's size flag given
/// (`--vocab` with `--op matmul`) is left out with a note on stderr, so one
/// command line can be rerun over every op as it always could.
fn own_params(op: Op, given: &Values) -> Values {
    let mut own = Values::default();
    for (k, v) in &given.0 {
        if op.axes().iter().any(|a| a.name == k) {
            own.0.insert(k.clone(), v.clone());
        } else {
            eprintln!(
                "note: --{} ignored: {op} has no such parameter (its parameters: {})",
                ParamFlags::flag_of(k),
                op.axes()
                    .iter()
                    .map(|a| a.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    own
}

impl BenchArgs {
    fn sampling(&self) -> Sampling {
        let mut s = if self.quick {
            Sampling::quick()
        } else {
            Sampling::default()
        };
        if let Some(n) = self.min_samples {
            s.min_samples = n;
            s.max_samples = s.max_samples.max(n);
            // Asking for N samples means N samples, not "until quiet".
            s.target_rel_noise = 0.0;
            s.max_ms = s.max_ms.max(600_000.0);
        }
        if let Some(n) = self.max_samples {
            s.max_samples = n.max(1);
        }
        if let Some(ms) = self.max_time_ms {
            s.max_ms = ms;
        }
        s.cold_cache = self.cold_cache;
        if let Some(n) = self.warmup_runs {
            s.warmup_runs = n;
        }
        if let Some(n) = self.phase_runs {
            s.phase_runs = n;
        }
        s.batch_mode &= !self.no_batch;
        s
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let format = match (args.json, args.format) {
        (true, _) => Format::Json,
        (false, f) => f.unwrap_or_default(),
    };
    let own = match &args.models_from {
        Some(path) => models::load_own(path)?,
        None => Vec::new(),
    };
    let data = Data {
        dist: args.dist,
        scale: args.scale,
    };
    let given = &args.params.0;
    let (params, layer) = match (&args.model, &args.layer, args.op) {
        (Some(model), Some(layer), _) => {
            let model = models::find_in(&own, model).map_err(|e| {
                if own.is_empty() {
                    anyhow::anyhow!(
                        "{e} (a model of your own: --models-from FILE, the file that defines it)"
                    )
                } else {
                    e.into()
                }
            })?;
            let l = model.layer(layer)?;
            // The layer fixes its op's sizes; the run gives the rest.
            let run: Vec<&str> =
                l.op.axes()
                    .iter()
                    .filter(|a| a.run)
                    .map(|a| a.name)
                    .collect();
            if let Some(k) = given.0.keys().find(|k| !run.contains(&k.as_str())) {
                anyhow::bail!(
                    "invalid --{}: {}/{} fixes the layer's sizes; give only {}",
                    k.replace('_', "-"),
                    model.name,
                    l.layer,
                    run.iter()
                        .map(|r| format!("--{}", r.replace('_', "-")))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            (
                l.params(given)?,
                Some(format!("{}/{}", model.name, l.layer)),
            )
        }
        (_, _, Some(op)) => (op.params(&own_params(op, given))?, None),
        _ => anyhow::bail!("give --op and its sizes, or --model and --layer"),
    };
    let work = Workload {
        params,
        precision: args.precision,
        data,
    };
    if let (Some(min), Some(max)) = (args.min_samples, args.max_samples) {
        if min > max {
            anyhow::bail!("invalid --min-samples `{min}`: more than --max-samples `{max}`");
        }
    }
    if args.gpu.accumulates_f16() && work.precision != Precision::F16 {
        eprintln!(
            "note: --accumulate f16 applies to FP16 matmuls only; this point is {}",
            work.precision
        );
    }
    let backend = open_backend(args.backend, &args.gpu)?;
    if format == Format::Table {
        eprintln!("{}", device_label(backend.as_ref()));
        eprintln!("{}", memory_line(&work));
    }
    let mut record = measure_point(backend.as_ref(), &work, &args.sampling(), None);
    record.layer = layer;
    match format {
        Format::Table => print_summary(&record),
        f => super::output::print(std::slice::from_ref(&record), f)?,
    }
    Ok(if record.skipped.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The memory a point needs by the model, said before it runs: the total
/// and each of the op's buffers.
pub fn memory_line(work: &Workload) -> String {
    let m = work.memory_model();
    let mib = |b: u64| b as f64 / 1048576.0;
    let parts: Vec<String> = m
        .parts
        .0
        .iter()
        .map(|(role, b)| format!("{role} {:.1}", mib(*b)))
        .collect();
    format!(
        "memory needed (model): {:.1} MiB ({})",
        mib(m.total),
        parts.join(", ")
    )
}

fn print_summary(r: &Record) {
    let layer = r
        .layer
        .as_ref()
        .map_or(String::new(), |l| format!(" ({l})"));
    let vocab =
        r.id.axis("vocab")
            .map_or(String::new(), |v| format!(" V{v}"));
    println!(
        "{} {} {}{vocab}{layer} on {} [{}]",
        r.id.op(),
        r.id.precision,
        r.id.shape_label(),
        r.adapter,
        r.kernel
    );
    if let (Some(abs), Some(rel), Some(tol)) = (r.max_abs_err, r.max_norm_err, r.tolerance) {
        println!(
            "  verified: {}  max_abs_err {abs:.3e}  max_norm_err {rel:.3e} (tolerance {tol:.3e}, {} rows checked)",
            r.verified,
            r.rows_checked.unwrap_or(0)
        );
    }
    if let Some(n) = r.overflows {
        let format = match r.id.precision {
            Precision::Int8 => "f16 (INT8's output format)",
            p => p.name(),
        };
        println!("  overflow: {n} outputs past {format}'s largest finite value (Inf/NaN, as the format must give)");
    }
    if let Some(c) = &r.precision_cost {
        let top = match (c.top1_agreement, c.top5_agreement) {
            (Some(t1), Some(t5)) => format!(
                "; top-1 agrees on {:.1}% of rows, top-5 on {:.1}%",
                t1 * 100.0,
                t5 * 100.0
            ),
            (Some(t1), None) => format!("; top-1 agrees on {:.1}% of rows", t1 * 100.0),
            _ => String::new(),
        };
        let cosine = match (c.row_cosine_min, c.row_cosine_mean) {
            (Some(lo), Some(mean)) => format!("row cosine min {lo:.6} mean {mean:.6}"),
            _ => "no row with a finite output".to_string(),
        };
        println!(
            "  precision cost vs the full-precision data: relative Frobenius error {:.3e}; per-element normalised error p50 {:.2e} p99 {:.2e} max {:.2e}; {cosine}; {} non-finite of {}{top}",
            c.rel_frobenius_err,
            c.norm_err_p50,
            c.norm_err_p99,
            c.norm_err_max,
            c.non_finite,
            c.elements
        );
    }
    if let Some(reason) = &r.skipped {
        println!("  skipped: {reason}");
    }
    if let Some(m) = &r.measured {
        let l = &m.latency_ms;
        println!(
            "  latency ({:?}, {} samples, stopped by {:?}): p50 {:.4} ms  p95 {:.4}  p99 {:.4}  min {:.4}  max {:.4}  cv {:.1}%",
            m.timing_method, m.samples, m.stop_rule, l.p50, l.p95, l.p99, l.min, l.max, l.cv * 100.0
        );
        println!(
            "  median 95% CI [{:.4}, {:.4}] ms; wall p50 {:.4} ms",
            l.median_ci95[0], l.median_ci95[1], m.wall_latency_ms.p50
        );
        println!(
            "  {:.2} GFLOP/s  {:.2} GB/s  {:.0} tokens/s  (intensity {:.2} FLOP/B)",
            m.gflops, m.gbps, m.tokens_per_s, m.arithmetic_intensity
        );
        if let Some(t) = &m.throughput {
            println!(
                "  sustained: {:.4} ms/dispatch over {} back-to-back ({:.2} GFLOP/s)",
                t.per_dispatch_ms, t.batch.dispatches, t.gflops
            );
        }
        println!(
            "  cold start: prepare {:.2} ms + first run {:.3} ms",
            m.prepare_ms, m.first_run_ms
        );
        if let Some(p) = &m.phases_ms {
            println!(
                "  a request end to end: upload {:.3} ms + kernel {:.3} ms + readback {:.3} ms = {:.3} ms",
                p.upload,
                p.kernel,
                p.readback,
                p.request()
            );
            if let Some(load) = p.model_load {
                println!("  once, at model load: the model's data placed in {load:.3} ms");
            }
        }
        let mem = &m.memory_bytes;
        println!(
            "  memory: model {:.1} MiB, measured {:.1} MiB ({:.3}x)",
            mem.model.total as f64 / 1048576.0,
            mem.measured.total as f64 / 1048576.0,
            mem.measured_over_model
        );
        let mib = |b: Option<u64>| {
            b.map_or("?".to_string(), |b| {
                format!("{:.1} MiB", b as f64 / 1048576.0)
            })
        };
        if mem.process_peak_rss.is_some() || mem.inputs_bytes.is_some() {
            println!(
                "  host: process peak RSS {} = the op's buffers above, plus the harness: inputs {}, verification {} at its peak (the timed phase alone grew the heap by {}), and the runtime",
                mib(mem.process_peak_rss),
                mib(mem.inputs_bytes),
                mib(mem.verification_peak_alloc),
                mib(mem.timed_peak_alloc)
            );
        }
    }
    for w in &r.warnings {
        println!("  warning: {w}");
    }
}

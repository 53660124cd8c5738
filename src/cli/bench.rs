//! `kernel-lab bench`: measure one point and print its record (a summary, or
//! exactly one JSON record with `--json`).

use std::process::ExitCode;

use clap::Args;
use kernel_lab::measure::Sampling;
use kernel_lab::measure_point::measure_point;
use kernel_lab::models;
use kernel_lab::results::Record;
use kernel_lab::workload::{Data, Dist, Op, Precision, Scale, Shape, Workload, DEFAULT_VOCAB};

use super::output::Format;
use super::{device_label, open_backend, BackendArg, GpuArgs};

/// Arguments of `bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Operation: embedding, matmul or embed-project.
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    op: Option<Op>,
    /// A model preset (`kernel-lab models` lists them), or a model of the
    /// --models-from file; with --layer, instead of --op, --dim, --out-dim and
    /// --vocab.
    #[arg(long, requires = "layer")]
    model: Option<String>,
    /// The model's layer to measure (qkv, attn-out, mlp-up, mlp-down, lm-head, ...).
    #[arg(long, requires = "model")]
    layer: Option<String>,
    /// A TOML file whose `[[model]]` tables --model may name beside the
    /// presets: an experiment file that defines models, or a file of models alone.
    #[arg(long, value_name = "FILE", requires = "model")]
    models_from: Option<std::path::PathBuf>,
    /// Batch size.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// Sequence length (1 for a decode step).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    seq: u32,
    /// Model (embedding) dimension: the projection's K.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), required_unless_present = "model", conflicts_with = "model")]
    dim: Option<u32>,
    /// Output width of the projection, N (default: --dim).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "model")]
    out_dim: Option<u32>,
    /// Vocabulary size (rows of the embedding table).
    #[arg(long, default_value_t = DEFAULT_VOCAB, value_parser = clap::value_parser!(u32).range(1..))]
    vocab: u32,
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
    #[arg(long, value_parser = super::positive_ms)]
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
    let (work, layer) = match (&args.model, &args.layer, args.op, args.dim) {
        (Some(model), Some(layer), _, _) => {
            let model = models::find_in(&own, model).map_err(|e| {
                if own.is_empty() {
                    anyhow::anyhow!(
                        "{e} (a model of your own: --models-from FILE, the file that defines it)"
                    )
                } else {
                    e.into()
                }
            })?;
            let layer = model.layer(layer)?;
            let mut work = layer.work(model, args.precision, args.batch, args.seq)?;
            work.data = Data {
                dist: args.dist,
                scale: args.scale,
            };
            (work, Some(format!("{}/{}", model.name, layer.layer)))
        }
        (_, _, Some(op), Some(dim)) => {
            let out_dim = args.out_dim.unwrap_or(dim);
            let shape = Shape::rect(args.batch, args.seq, dim, out_dim, args.vocab)?;
            let work = Workload {
                op,
                precision: args.precision,
                shape,
                data: Data {
                    dist: args.dist,
                    scale: args.scale,
                },
            };
            (work, None)
        }
        _ => anyhow::bail!("give --op and --dim, or --model and --layer"),
    };
    if let (Some(min), Some(max)) = (args.min_samples, args.max_samples) {
        if min > max {
            anyhow::bail!("invalid --min-samples `{min}`: more than --max-samples `{max}`");
        }
    }
    if args.gpu.accumulates_f16() && work.precision != kernel_lab::workload::Precision::F16 {
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

/// The memory a point needs by the model, said before it runs.
pub fn memory_line(work: &Workload) -> String {
    let m = work.memory_model();
    let mib = |b: u64| b as f64 / 1048576.0;
    format!(
        "memory needed (model): {:.1} MiB (table {:.1}, weight {:.1}, activations {:.1}, output {:.1})",
        mib(m.total),
        mib(m.table),
        mib(m.weights),
        mib(m.activations),
        mib(m.output)
    )
}

fn print_summary(r: &Record) {
    let layer = r
        .layer
        .as_ref()
        .map_or(String::new(), |l| format!(" ({l})"));
    println!(
        "{} {} {} V{}{layer} on {} [{}]",
        r.id.op,
        r.id.precision,
        r.id.shape_label(),
        r.id.vocab,
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
            kernel_lab::workload::Precision::Int8 => "f16 (INT8's output format)",
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
                println!("  once, at model load: table and weight placed in {load:.3} ms");
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

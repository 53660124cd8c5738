//! `report.md`: the environment, the findings, the charts and a table of every
//! point, all from the results file.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::analysis::seed_axes;
use crate::ops::op::Roof;
use crate::results::ResultsFile;

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

/// The report's Markdown text.
pub fn report(
    results: &ResultsFile,
    quality: &[String],
    findings: &[String],
    charts: &[PathBuf],
    out: &Path,
) -> String {
    let spec = &results.spec;
    let mut s = String::new();
    let name = spec["name"].as_str().unwrap_or("experiment");
    let _ = writeln!(s, "# kernel-lab report: {name}\n");
    if let Some(d) = spec["description"].as_str().filter(|d| !d.is_empty()) {
        let _ = writeln!(s, "{d}\n");
    }
    if !results.complete {
        let _ = writeln!(
            s,
            "**This run is incomplete** (interrupted or still running): {} points so far.\n",
            results.records.len()
        );
    }
    if !quality.is_empty() {
        let _ = writeln!(s, "## Run quality\n");
        for q in quality {
            let _ = writeln!(s, "- {q}");
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "## Environment\n");
    for line in environment(results) {
        let _ = writeln!(s, "- {line}");
    }
    let _ = writeln!(s);

    let _ = writeln!(s, "## Findings\n");
    if findings.is_empty() {
        let _ = writeln!(
            s,
            "The points of this run support no finding (too few to compare).\n"
        );
    }
    for f in findings {
        let _ = writeln!(s, "- {f}");
    }
    let _ = writeln!(s);

    if !charts.is_empty() {
        let _ = writeln!(s, "## Charts\n");
        for c in charts {
            let rel = c.strip_prefix(out).unwrap_or(c);
            let _ = writeln!(s, "![{}]({})\n", rel.display(), rel.display());
        }
    }

    if let Some(anchors) = &results.anchors {
        s.push_str(&super::anchor_table::section(&results.records, anchors));
    }
    s.push_str(&super::seed_notebooks::markdown(
        &super::seed_notebooks::tables(&results.records),
    ));

    let _ = writeln!(s, "## Points\n");
    let _ = writeln!(
        s,
        "Latency is the per-sample distribution (device timestamps on the GPU where available, wall time on the CPU); \
         throughput figures use the median. Memory is what the backend allocated vs the model.\n"
    );
    // N (and the model layer) only where some point has them, so square runs read as before.
    let rect = results.records.iter().any(|r| !r.id.is_square());
    let layers = results.records.iter().any(|r| r.layer.is_some());
    let (n_head, n_rule) = if rect { (" N |", "---:|") } else { ("", "") };
    let (l_head, l_rule) = if layers {
        (" layer |", "---|")
    } else {
        ("", "")
    };
    let _ = writeln!(
        s,
        "|{l_head} op | backend | prec | B | S | D |{n_head} p50 ms | p99 ms | samples | GFLOP/s | GB/s | % ceiling | tokens/s | MiB (model) | max rel err | verified | note |"
    );
    let _ = writeln!(
        s,
        "|{l_rule}---|---|---|---:|---:|---:|{n_rule}---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    );
    for r in &results.records {
        let lead = if layers {
            format!("| {} ", r.layer.as_deref().unwrap_or("-"))
        } else {
            String::new()
        };
        let id = &r.id;
        // The seed's axes where the op has them ("-" where it has not).
        let cell = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
        let n = if rect {
            format!(" {} |", cell(seed_axes(id).map(|a| a.out_dim)))
        } else {
            String::new()
        };
        let point = format!(
            "{lead}| {} | {} | {} | {} | {} | {} |{n}",
            id.op(),
            id.backend,
            id.precision,
            cell(id.axis("batch")),
            cell(id.axis("seq")),
            cell(id.axis("dim"))
        );
        let err = r.max_norm_err.map_or("-".into(), |e| format!("{e:.1e}"));
        match &r.measured {
            Some(m) => {
                // Against the ceiling the op reads the point by.
                let pct = match r.id.params.roof() {
                    Roof::Compute => m.pct_of_fma_peak,
                    Roof::Memory => m.pct_of_copy_bandwidth,
                };
                let pct = pct.map_or("-".to_string(), |p| format!("{p:.1}%"));
                let _ = writeln!(
                    s,
                    "{point} {:.3} | {} | {} | {:.2} | {:.2} | {pct} | {:.0} | {:.1} ({:.1}) | {err} | {} | {} |",
                    m.latency_ms.p50,
                    p99_text(m),
                    m.samples,
                    m.gflops,
                    m.gbps,
                    m.tokens_per_s,
                    mib(m.memory_bytes.measured.total),
                    mib(m.memory_bytes.model.total),
                    r.verified,
                    r.warnings.join("; ")
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "{point} - | - | 0 | - | - | - | - | - | {err} | {} | {} |",
                    verdict(r),
                    r.skipped
                        .as_ref()
                        .map_or(String::new(), |s| s.to_string().replace('|', "/"))
                );
            }
        }
    }
    s
}

/// The environment's lines: devices, software, ceilings, machine state.
pub fn environment(results: &ResultsFile) -> Vec<String> {
    let env = &results.environment;
    let mut v = Vec::new();
    match &env.gpu {
        Some(g) => {
            let soft = if g.software {
                " — **a software device: its timings are a CPU imitating a GPU, not GPU speed**"
            } else {
                ""
            };
            v.push(format!(
                "GPU: {} ({}, {}, driver {}){soft}",
                g.name, g.api, g.device_type, g.driver
            ));
            v.push(format!("GPU features: {}", g.features.join(", ")));
        }
        None => v.push("GPU: none used".into()),
    }
    let threads = env
        .threads
        .map_or(String::new(), |t| format!(", {t} used by the run"));
    v.push(format!(
        "CPU: {} ({} logical cores{threads}; {})",
        env.cpu.name,
        env.cores,
        crate::backend::cpu::features_line(&env.cpu.features)
    ));
    v.push(format!(
        "{}; kernel-lab {}{}; wgpu {}; started {}",
        env.os,
        env.crate_version,
        env.git_commit
            .as_deref()
            .map_or(String::new(), |c| format!(" (commit {c})")),
        env.wgpu_version,
        crate::results::iso_time(env.timestamp_unix)
    ));
    for (backend, c) in &env.ceilings {
        v.push(format!(
            "{backend} ceilings (probed): copy {:.1} GB/s{}, FMA {:.1} GFLOP/s — {}",
            c.copy_gbps,
            c.cache_copy_gbps.map_or(String::new(), |g| format!(
                " (within the cache {g:.1} GB/s)"
            )),
            c.fma_gflops,
            c.method
        ));
        if let Some(d) = &c.dispatch {
            v.push(format!(
                "{backend} launch costs (probed): empty dispatch {:.1} us, each of many in one pass {:.2} us, submission round trip {:.1} us, readback round trip {:.1} us",
                d.empty_dispatch_us, d.per_dispatch_in_pass_us, d.submit_round_trip_us, d.readback_round_trip_us
            ));
        }
    }
    for (when, state) in [
        ("before", &env.machine_before),
        ("after", &env.machine_after),
    ] {
        if let Some(m) = state {
            v.push(format!("machine {when} the run: {}", machine_line(m)));
        }
    }
    for w in &env.machine_warnings {
        v.push(format!("**warning**: {w}"));
    }
    v
}

/// What a point's verified column says: true, **failed**, or why it was not run.
pub fn verdict(r: &crate::results::Record) -> String {
    match (&r.measured, &r.skipped) {
        (Some(_), _) => r.verified.to_string(),
        (None, Some(s)) if s.kind == crate::results::SkipKind::VerificationFailed => {
            "**failed**".into()
        }
        (None, Some(s)) if s.kind == crate::results::SkipKind::Cut => "not run (cut)".into(),
        _ => "not run".into(),
    }
}

/// A point's p99, or n/a with too few samples to have one.
pub fn p99_text(m: &crate::results::Measured) -> String {
    super::quality::shown_p99(m).map_or("n/a".into(), |p| format!("{p:.3}"))
}

/// One line of a machine state: host load, governor and clock; GPU clocks,
/// power, temperature and throttle reasons where known.
fn machine_line(m: &crate::machine_state::MachineState) -> String {
    let mut parts = Vec::new();
    if let Some([l1, l5, l15]) = m.host.load_avg {
        parts.push(format!("load {l1:.2} {l5:.2} {l15:.2}"));
    }
    if let Some(g) = &m.host.governor {
        parts.push(format!("governor {g}"));
    }
    if let Some(mhz) = m.host.cpu_mhz {
        parts.push(format!("CPU {mhz:.0} MHz"));
    }
    if let Some(n) = m.host.thermal_throttle_events {
        parts.push(format!("CPU thermal throttle events {n} since boot"));
    }
    if let Some(g) = &m.gpu {
        let opt = |v: Option<u32>| v.map_or("?".to_string(), |v| v.to_string());
        parts.push(format!(
            "GPU SM {} of {} MHz, memory {} MHz, {} W of {} W, {} C, {}",
            opt(g.sm_clock_mhz),
            opt(g.max_sm_clock_mhz),
            opt(g.mem_clock_mhz),
            g.power_w.map_or("?".into(), |w| format!("{w:.0}")),
            g.power_limit_w.map_or("?".into(), |w| format!("{w:.0}")),
            opt(g.temperature_c),
            g.throttle_reasons
                .as_ref()
                .map_or("throttle reasons unknown".into(), |r| r.join("+"))
        ));
    }
    if parts.is_empty() {
        "nothing readable".into()
    } else {
        parts.join("; ")
    }
}

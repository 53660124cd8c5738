//! How far a run's numbers can be trusted, said first in every report: how
//! many points are noisy, short of samples, cut or skipped, and whether the
//! machine's probed ceilings moved since the previous run on it (a noisy
//! neighbour halves them).

use std::path::Path;

use crate::results::{ResultsFile, SkipKind};

/// Samples below which a point's p99 is not shown (it would be its maximum).
pub const MIN_SAMPLES_FOR_P99: usize = 10;
/// A point's p99 where it has the samples for one (else it would be its maximum).
pub fn shown_p99(m: &crate::results::Measured) -> Option<f64> {
    (m.samples >= MIN_SAMPLES_FOR_P99).then_some(m.latency_ms.p99)
}

/// A coefficient of variation above this makes a point noisy.
pub const NOISY_CV: f64 = 0.10;

/// The quality summary's items, in words with their numbers.
pub fn summary(results: &ResultsFile, previous: Option<&ResultsFile>) -> Vec<String> {
    let rs = &results.records;
    let measured: Vec<_> = rs
        .iter()
        .filter_map(|r| r.measured.as_ref().map(|m| (r, m)))
        .collect();
    let mut out = vec![format!(
        "{} of {} points measured and verified.",
        measured.len(),
        rs.len()
    )];
    let count = |k: SkipKind| {
        rs.iter()
            .filter(|r| r.measured.is_none() && r.skipped.as_ref().is_some_and(|s| s.kind == k))
            .count()
    };
    for (k, what) in [
        (
            SkipKind::VerificationFailed,
            "**failed verification** (no timing kept)",
        ),
        (
            SkipKind::Cut,
            "cut by the time budget (marked x on the charts)",
        ),
        (SkipKind::NoGpu, "skipped for want of a GPU"),
        (SkipKind::Error, "skipped by an error or a device limit"),
    ] {
        let n = count(k);
        if n > 0 {
            out.push(format!("{n} {what}."));
        }
    }
    if !measured.is_empty() {
        let noisy: Vec<_> = measured
            .iter()
            .filter(|(_, m)| m.latency_ms.cv > NOISY_CV)
            .collect();
        let worst = noisy
            .iter()
            .max_by(|a, b| a.1.latency_ms.cv.total_cmp(&b.1.latency_ms.cv))
            .map_or(String::new(), |(r, m)| {
                format!(
                    "; the worst {:.0}% at {} {} {} {}",
                    m.latency_ms.cv * 100.0,
                    r.id.backend,
                    r.id.op(),
                    r.id.precision,
                    r.id.shape_label()
                )
            });
        out.push(format!(
            "{} of {} measured points are noisy (latency CV over {:.0}%){worst}.",
            noisy.len(),
            measured.len(),
            NOISY_CV * 100.0
        ));
        let pooled = measured.iter().map(|(_, m)| m.rounds).max().unwrap_or(1);
        if pooled > 1 {
            out.push(format!(
                "Points pool up to {pooled} passes over the sweep (`sampling.rounds`), measured minutes apart: \
                 their CV includes the machine's drift between passes, which one pass would hide, and each \
                 median is the pool's."
            ));
        }
        // The SM clock read between samples where the driver gives it (`sample_clocks`).
        let slow = crate::report::analysis::slow_clock_points(rs);
        if let Some((r, c)) = slow.first() {
            out.push(format!(
                "{} of {} measured points were sampled with the GPU's SM clock under {:.0}% of its maximum; the lowest {} MHz{} at {} {} {} {}: **their timings may be the card's state, not the kernel's** (each record's warnings say more).",
                slow.len(),
                measured.len(),
                crate::sample_clocks::SLOW_CLOCK_SHARE * 100.0,
                c.min,
                c.card_max.map_or(String::new(), |m| format!(" of {m}")),
                r.id.backend,
                r.id.op(),
                r.id.precision,
                r.id.shape_label()
            ));
        }
        let short = measured
            .iter()
            .filter(|(_, m)| m.samples < MIN_SAMPLES_FOR_P99)
            .count();
        if short > 0 {
            out.push(format!(
                "{short} measured points have fewer than {MIN_SAMPLES_FOR_P99} samples: their p99 is shown as n/a (it would be their maximum)."
            ));
        }
    }
    if let Some(prev) = previous {
        for (backend, c) in &results.environment.ceilings {
            if let Some(p) = prev.environment.ceilings.get(backend) {
                let (bw, fma) = (c.copy_gbps / p.copy_gbps, c.fma_gflops / p.fma_gflops);
                let moved = !(0.8..=1.25).contains(&bw) || !(0.8..=1.25).contains(&fma);
                out.push(format!(
                    "{backend} ceilings against the previous run on this machine ({}): copy {:.1} vs {:.1} GB/s ({:.2}x), FMA {:.1} vs {:.1} GFLOP/s ({:.2}x){}",
                    crate::results::iso_time(prev.environment.timestamp_unix),
                    c.copy_gbps,
                    p.copy_gbps,
                    bw,
                    c.fma_gflops,
                    p.fma_gflops,
                    fma,
                    if moved {
                        " — **moved by more than 20%: another load on the machine, or another clock; compare the two runs with care**."
                    } else {
                        ": steady."
                    }
                ));
            }
        }
    }
    out
}

/// The newest earlier run on the same machine (CPU and GPU named alike)
/// among the folders beside `out` (the default folders and their archives),
/// that probed ceilings.
pub fn previous_run(out: &Path, results: &ResultsFile) -> Option<ResultsFile> {
    let parent = out.parent()?;
    let me = &results.environment;
    let here = std::fs::canonicalize(out).ok();
    let mut best: Option<ResultsFile> = None;
    for entry in std::fs::read_dir(parent).ok()? {
        let dir = entry.ok()?.path();
        if std::fs::canonicalize(&dir).ok() == here {
            continue;
        }
        let Ok(r) = ResultsFile::load(&dir.join("results.json")) else {
            continue;
        };
        let e = &r.environment;
        let same = e.cpu.name == me.cpu.name
            && e.gpu.as_ref().map(|g| &g.name) == me.gpu.as_ref().map(|g| &g.name)
            && e.timestamp_unix < me.timestamp_unix
            && !e.ceilings.is_empty();
        if same
            && best
                .as_ref()
                .is_none_or(|b| b.environment.timestamp_unix < e.timestamp_unix)
        {
            best = Some(r);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::backend::Backend;
    use crate::precision::Precision;
    use crate::report::testdata::synthetic;

    fn file(rounds: u32) -> ResultsFile {
        let mut r = synthetic("matmul", "cpu", Precision::F32, 1, 8, 64, 1.0);
        r.measured.as_mut().unwrap().rounds = rounds;
        ResultsFile {
            schema_version: crate::results::SCHEMA_VERSION,
            spec: serde_json::Value::Null,
            environment: crate::results::Environment::capture(
                None,
                CpuBackend::new().device().clone(),
            ),
            complete: true,
            records: vec![r],
            anchors: None,
        }
    }

    /// Pooled passes are named, since their CV means something else; a run of
    /// one pass says nothing of them.
    #[test]
    fn pooled_passes_are_said_to_include_drift() {
        let said = |rounds| summary(&file(rounds), None).join(" ");
        assert!(said(3).contains("pool up to 3 passes"), "{}", said(3));
        assert!(!said(1).contains("passes"), "{}", said(1));
    }

    /// Points sampled on a slow GPU clock are counted, the lowest named; a
    /// run without clock readings says nothing of clocks. Planted: the count
    /// dropped -> fails.
    #[test]
    fn slow_clock_points_are_counted() {
        use crate::sample_clocks::SampleClocks;
        let mut f = file(1);
        let said = |f: &ResultsFile| summary(f, None).join(" ");
        assert!(!said(&f).contains("SM clock"), "{}", said(&f));
        let mut slow = f.records[0].clone();
        slow.measured.as_mut().unwrap().sm_clock_mhz =
            SampleClocks::from_readings(&[1410, 1020, 1755], Some(1980));
        let mut fine = f.records[0].clone();
        fine.measured.as_mut().unwrap().sm_clock_mhz =
            SampleClocks::from_readings(&[1980, 1755], Some(1980));
        f.records = vec![slow, fine];
        let text = said(&f);
        assert!(
            text.contains("1 of 2 measured points were sampled with the GPU's SM clock under 80%")
                && text.contains("the lowest 1020 MHz of 1980"),
            "{text}"
        );
    }
}

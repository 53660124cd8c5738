//! Findings computed from the records of a run, each a sentence whose numbers
//! come from the data: how latency scales with dim (fitted exponent against the
//! FLOP model's 2), where batching stops paying, memory model vs measured, tail
//! over median, FP16 error and speedup, and where the GPU overtakes the CPU.

use std::collections::BTreeMap;

use super::analysis::{
    batch_curves, knee, measured, median, p50, request_ms, seed_axes, speedups, speedups_by,
    varying_axis, Along,
};
use crate::backend::{BackendKind, Ceilings};
use crate::ops::op::{Roof, Scaling};
use crate::ops::Op;
use crate::precision::Precision;
use crate::results::{PointId, Record, SkipKind};

/// Points grouped by a key.
type Groups<K, V> = BTreeMap<K, Vec<V>>;
/// (batch, tokens/s, p99 ms) along a batching line.
type Curve = Vec<(u32, f64, f64)>;
/// A batching line: seq, dim, out_dim and its curve.
type BatchLine = (u32, u32, u32, Curve);
/// Backend, op, precision, batch, seq.
type CurveKey = (BackendKind, Op, String, u32, u32);
/// Op, precision, batch, seq: a line along dim.
type DimLine = (Op, String, u32, u32);
/// FP16 speedup over FP32, FP16 error, FP32 error.
type Fp16Pair = (f64, f64, f64);

/// Throughput gain below which batching is said to stop helping.
pub const KNEE_GAIN: f64 = 0.05;

/// Least-squares slope of `ln y` on `ln x`.
pub fn loglog_slope(points: &[(f64, f64)]) -> Option<f64> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.0 > 0.0 && p.1 > 0.0)
        .map(|p| (p.0.ln(), p.1.ln()))
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The least-squares log-log slope with the half-width of its 95% interval
/// (Student's t on the fit's residuals; infinite with two points, which fit
/// any line exactly).
pub fn loglog_fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.0 > 0.0 && p.1 > 0.0)
        .map(|p| (p.0.ln(), p.1.ln()))
        .collect();
    let k = loglog_slope(points)?;
    let n = pts.len();
    if n < 3 {
        return Some((k, f64::INFINITY));
    }
    let nf = n as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / nf,
        pts.iter().map(|p| p.1).sum::<f64>() / nf,
    );
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let rss: f64 = pts
        .iter()
        .map(|p| (p.1 - my - k * (p.0 - mx)).powi(2))
        .sum();
    let se = (rss / (nf - 2.0) / sxx).sqrt();
    // Two-sided 95% t quantiles for 1..=10 degrees of freedom, then ~normal.
    const T: [f64; 10] = [12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23];
    let t = T.get(n - 3).copied().unwrap_or(2.0);
    Some((k, t * se))
}

fn device(records: &[Record], backend: BackendKind) -> String {
    records
        .iter()
        .find(|r| r.id.backend == backend && r.skipped.is_none())
        .map_or(backend.to_string(), |r| {
            let soft = if r.software_device {
                ", a software device whose timings are CPU work"
            } else {
                ""
            };
            format!("{}{soft}", r.adapter)
        })
}

/// The fitted exponent of latency along each op's main axis (dim), per
/// backend, op and precision: one least-squares log-log slope per batch x seq
/// group with three points or more on the op's main line.
pub fn dim_exponents(records: &[Record]) -> BTreeMap<(BackendKind, Op, String), Vec<f64>> {
    dim_fits(records)
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(|f| f.0).collect()))
        .collect()
}

/// [`dim_exponents`] with each slope's 95% half-width.
pub fn dim_fits(records: &[Record]) -> BTreeMap<(BackendKind, Op, String), Vec<(f64, f64)>> {
    fits_along_main_axis(records)
        .into_iter()
        .map(|(k, (_, v))| (k, v))
        .collect()
}

/// Fitted (exponent, 95% half-width) pairs per backend, op and precision,
/// with the op's cost-model scaling they are read against.
type MainAxisFits = BTreeMap<(BackendKind, Op, String), (Scaling, Vec<(f64, f64)>)>;

/// The fits of [`dim_fits`], with what the op's cost model predicts along
/// its main axis. Only points on the op's main line count (a square
/// projection: the D^2 law is about one dim).
fn fits_along_main_axis(records: &[Record]) -> MainAxisFits {
    let mut groups: Groups<CurveKey, (f64, f64)> = BTreeMap::new();
    let mut scaling: BTreeMap<Op, Scaling> = BTreeMap::new();
    for r in measured(records) {
        let s = r.id.params.scaling();
        let Some(x) = r.id.axis(s.axis) else {
            continue;
        };
        if !s.on_line {
            continue;
        }
        // A line: the points alike but along the axis. For an op with the
        // seed's axes, one batch x seq; for another (attention), every other
        // parameter, those that move with the axis on the main line (the
        // context of a prefill with S = L) left out.
        let line = match seed_axes(&r.id) {
            Some(a) => (a.batch, a.seq),
            None => {
                let mut v = serde_json::to_value(r.id.params).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.retain(|k, val| k != s.axis && val.as_u64() != Some(x as u64));
                }
                let text = v.to_string();
                let h = text.bytes().fold(0x811c_9dc5u32, |h, b| {
                    (h ^ b as u32).wrapping_mul(0x0100_0193)
                });
                (h, u32::MAX)
            }
        };
        scaling.insert(r.id.op(), s);
        groups
            .entry((
                r.id.backend,
                r.id.op(),
                r.id.precision.name().into(),
                line.0,
                line.1,
            ))
            .or_default()
            .push((x as f64, p50(r)));
    }
    let mut fits = MainAxisFits::new();
    for ((b, op, p, _, _), pts) in groups {
        if pts.len() >= 3 {
            if let Some(k) = loglog_fit(&pts) {
                fits.entry((b, op, p))
                    .or_insert_with(|| (scaling[&op], Vec::new()))
                    .1
                    .push(k);
            }
        }
    }
    fits
}

/// Latency vs dim: the fitted exponent per op, backend and precision, with
/// its uncertainty: the range over batch x seq groups, or one group's 95%
/// interval. The model is called confirmed only when that interval holds it
/// and is narrow enough (0.5 wide or less) to have told it apart.
fn dim_scaling(records: &[Record]) -> Vec<String> {
    let fits = fits_along_main_axis(records);
    fits.into_iter()
        .map(|((b, op, p), (scaling, fs))| {
            let model = scaling.exponent;
            let axis = scaling.axis;
            let ks: Vec<f64> = fs.iter().map(|f| f.0).collect();
            let m = median(ks.clone());
            let (lo, hi, spread) = if fs.len() == 1 {
                let (k, h) = fs[0];
                (
                    k - h,
                    k + h,
                    format!("one batch x seq group; 95% interval {:.2}..{:.2}", k - h, k + h),
                )
            } else {
                let (lo, hi) = ks
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, c), &k| (a.min(k), c.max(k)));
                (
                    lo,
                    hi,
                    format!("median of {} batch x seq groups, range {lo:.2}..{hi:.2}", ks.len()),
                )
            };
            let verdict = if !(hi - lo).is_finite() || hi - lo > 0.5 {
                format!(
                    "too uncertain to test the model's {model} (the interval spans {:.2})",
                    hi - lo
                )
            } else if (lo..=hi).contains(&model) || (m - model).abs() <= 0.1 {
                "consistent with the cost model".to_string()
            } else if m < model {
                format!("flatter than the model's {model}: fixed overheads dominate the small dims")
            } else {
                format!("steeper than the model's {model}: larger dims fall out of cache")
            };
            format!(
                "Latency of {op} {p} on {b} grows as {axis}^{m:.2} ({spread}); the {} model predicts {axis}^{model}: {verdict}.",
                scaling.model
            )
        })
        .collect()
}

/// Where batching stops paying: the first batch whose throughput gain < 5%.
fn batching(records: &[Record]) -> Vec<String> {
    // One sentence per backend, op and precision: where the seq x dim lines stop
    // gaining, and the largest line's numbers as the example.
    let mut groups: Groups<(BackendKind, Op, String), BatchLine> = BTreeMap::new();
    for ((b, op, p, s, d, n), curve) in batch_curves(records) {
        groups.entry((b, op, p)).or_default().push((s, d, n, curve));
    }
    let gain = KNEE_GAIN * 100.0;
    groups
        .into_iter()
        .map(|((b, op, p), lines)| {
            let mut knees: BTreeMap<Option<u32>, usize> = BTreeMap::new();
            for (_, _, _, curve) in &lines {
                *knees.entry(knee(curve, KNEE_GAIN)).or_default() += 1;
            }
            let n = lines.len();
            let parts: Vec<String> = knees
                .iter()
                .map(|(k, c)| match k {
                    Some(k) => format!("at batch {k} in {c} of {n}"),
                    None => format!("not within the batches measured in {c} of {n}"),
                })
                .collect();
            // The largest seq x dim line (the last of equals), then the widest
            // rectangular output.
            let (s, d, n, curve) = lines
                .iter()
                .max_by_key(|(s, d, n, _)| (*s as u64 * *d as u64, if n == d { 0 } else { *n }))
                .expect("non-empty");
            // D768, or D768 N2304 for a rectangular projection.
            let d = if n == d { format!("{d}") } else { format!("{d} N{n}") };
            let (best_b, best) = curve.iter().map(|c| (c.0, c.1)).fold((0, 0.0), |a, c| if c.1 > a.1 { c } else { a });
            let (first, last) = (curve[0], curve[curve.len() - 1]);
            format!(
                "Batching {op} {p} on {b}: throughput stops growing (no larger batch adds {gain:.0}% or more) {} seq x dim line(s); \
                 at S{s} D{d} it peaks at {best:.0} tokens/s at batch {best_b}, while p99 goes from {:.3} ms at batch {} to {:.3} ms at batch {}.",
                parts.join(", "),
                first.2,
                first.0,
                last.2,
                last.0
            )
        })
        .collect()
}

/// Memory: the model against what backends allocated.
fn memory(records: &[Record]) -> Vec<String> {
    let mut out = Vec::new();
    for backend in BackendKind::ALL {
        let ratios: Vec<(f64, &Record)> = measured(records)
            .filter(|r| r.id.backend == backend)
            .map(|r| {
                (
                    r.measured
                        .as_ref()
                        .expect("filtered")
                        .memory_bytes
                        .measured_over_model,
                    r,
                )
            })
            .collect();
        if ratios.is_empty() {
            continue;
        }
        let (lo, hi) = ratios
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(a, b), (x, _)| {
                (a.min(*x), b.max(*x))
            });
        let big = ratios
            .iter()
            .max_by_key(|(_, r)| {
                r.measured
                    .as_ref()
                    .map_or(0, |m| m.memory_bytes.model.total)
            })
            .expect("non-empty");
        let bm = &big.1.measured.as_ref().expect("filtered").memory_bytes;
        let extra = bm.measured.other as f64 / 1048576.0;
        let what = match backend {
            BackendKind::Gpu => "staging, uniform and timestamp buffers",
            BackendKind::Cpu => "the f32 copies FP16, BF16 and INT8 are widened into",
        };
        // Files written before the cache-flush buffer left `other` counted it.
        let flush = crate::backend::CACHE_FLUSH_BYTES;
        let why = if bm.measured.other == 0 {
            "nothing beyond the modeled buffers".to_string()
        } else if big.1.measured.as_ref().is_some_and(|m| m.cold_cache)
            && bm.measured.other >= flush
        {
            format!(
                "the extra {extra:.1} MiB includes the {} MiB cache-flush buffer of cold-cache timing (counted by this older file; \
                 the harness's, not the op's), the rest {what}",
                flush >> 20
            )
        } else {
            format!("the extra {extra:.1} MiB is {what}, not copies of the data")
        };
        out.push(format!(
            "Memory on {backend}: measured allocations are {lo:.3}x to {hi:.3}x the model across {} points; the largest, {} {} {}, \
             models {:.1} MiB and allocates {:.1} MiB ({:.3}x): {why}.",
            ratios.len(),
            big.1.id.op(),
            big.1.id.precision,
            big.1.id.shape_label(),
            bm.model.total as f64 / 1048576.0,
            bm.measured.total as f64 / 1048576.0,
            big.0
        ));
    }
    out
}

/// The tail: p99 over p50 per backend.
fn tail(records: &[Record]) -> Vec<String> {
    let mut out = Vec::new();
    for backend in BackendKind::ALL {
        let ratios = crate::report::analysis::tail_ratios(records, backend);
        let Some(worst) = crate::report::analysis::worst_tail(records, backend) else {
            continue;
        };
        let med = median(ratios.iter().map(|r| r.0).collect());
        let wl = &worst.1.measured.as_ref().expect("filtered").latency_ms;
        out.push(format!(
            "Tail on {backend}: p99/p50 has a median of {med:.2} over {} points with 20+ samples; the worst is {} {} {} \
             (p50 {:.3} ms, p95 {:.3} ms, p99 {:.3} ms, {} samples, {} Tukey outliers above).",
            ratios.len(),
            worst.1.id.op(),
            worst.1.id.precision,
            worst.1.id.shape_label(),
            wl.p50,
            wl.p95,
            wl.p99,
            wl.count,
            wl.outliers_high
        ));
    }
    out
}

/// FP16 against FP32 on the same points, per backend and op: (FP16 speedup,
/// FP16 error, FP32 error) for every point measured in both precisions.
pub fn fp16_vs_fp32(records: &[Record]) -> Groups<(BackendKind, Op), Fp16Pair> {
    // The point in FP32, whatever its precision.
    let key = |r: &Record| PointId {
        precision: Precision::F32,
        ..r.id
    };
    let f32s: BTreeMap<PointId, &Record> = measured(records)
        .filter(|r| r.id.precision == Precision::F32)
        .map(|r| (key(r), r))
        .collect();
    let mut groups: Groups<(BackendKind, Op), Fp16Pair> = BTreeMap::new();
    for r in measured(records).filter(|r| r.id.precision == Precision::F16) {
        if let Some(base) = f32s.get(&key(r)) {
            groups.entry((r.id.backend, r.id.op())).or_default().push((
                p50(base) / p50(r),
                r.max_norm_err.unwrap_or(0.0),
                base.max_norm_err.unwrap_or(0.0),
            ));
        }
    }
    groups
}

/// FP16 against FP32 on the same points: speedup and error.
fn precision(records: &[Record]) -> Vec<String> {
    let groups = fp16_vs_fp32(records);
    groups
        .into_iter()
        .map(|((b, op), v)| {
            let sp = median(v.iter().map(|x| x.0).collect());
            let (lo, hi) = v.iter().fold((f64::INFINITY, 0.0f64), |(a, c), x| (a.min(x.0), c.max(x.0)));
            let e16 = v.iter().map(|x| x.1).fold(0.0, f64::max);
            let e32 = v.iter().map(|x| x.2).fold(0.0, f64::max);
            format!(
                "FP16 {op} on {b}: {sp:.2}x the FP32 speed (median of {} pairs, {lo:.2}x..{hi:.2}x), max normalised error {e16:.2e} vs {e32:.2e} in FP32.",
                v.len()
            )
        })
        .collect()
}

/// Per op, precision, batch and seq (lines of two dims or more measured on both
/// backends): the first dim where the GPU is faster than the CPU, with its
/// speedup, or `None` when it never is.
pub fn first_gpu_wins(records: &[Record]) -> BTreeMap<DimLine, Option<(u32, f64)>> {
    first_wins(speedups(records))
}

/// [`first_gpu_wins`] for the request end to end (upload, op, readback).
pub fn first_gpu_wins_end_to_end(records: &[Record]) -> BTreeMap<DimLine, Option<(u32, f64)>> {
    first_wins(speedups_by(records, request_ms))
}

fn first_wins(speedups: BTreeMap<PointId, f64>) -> BTreeMap<DimLine, Option<(u32, f64)>> {
    let mut lines: Groups<DimLine, (u32, f64)> = BTreeMap::new();
    for (id, x) in speedups {
        let Some(a) = seed_axes(&id) else { continue };
        let p = id.precision.name().to_string();
        lines
            .entry((id.op(), p, a.batch, a.seq))
            .or_default()
            .push((a.dim, x));
    }
    lines
        .into_iter()
        .filter(|(_, pts)| pts.len() >= 2)
        .map(|(k, mut pts)| {
            pts.sort_by_key(|x| x.0);
            (k, pts.iter().find(|x| x.1 > 1.0).copied())
        })
        .collect()
}

/// Where the GPU overtakes the CPU.
fn crossover(records: &[Record]) -> Vec<String> {
    // Per op and precision: along dim, for every batch x seq measured on both backends.
    let mut groups: Groups<(Op, String), (u32, u32, u32, f64)> = BTreeMap::new();
    for (id, x) in speedups(records) {
        let Some(a) = seed_axes(&id) else { continue };
        groups
            .entry((id.op(), id.precision.name().to_string()))
            .or_default()
            .push((a.batch, a.seq, a.dim, x));
    }
    let wins = first_gpu_wins(records);
    let gpu = device(records, BackendKind::Gpu);
    let mut out = Vec::new();
    for ((op, p), v) in groups {
        let best = v
            .iter()
            .copied()
            .fold((0, 0, 0, 0.0), |a, c| if c.3 > a.3 { c } else { a });
        let smallest =
            |b: u32, s: u32| v.iter().filter(|x| (x.0, x.1) == (b, s)).map(|x| x.2).min();
        let mut crossings = Vec::new();
        let mut never = 0;
        for ((_, _, b, s), win) in
            wins.range((op, p.clone(), 0, 0)..=(op, p.clone(), u32::MAX, u32::MAX))
        {
            match *win {
                Some((d, x)) if Some(d) == smallest(*b, *s) => crossings.push(format!(
                    "B{b} S{s}: already at the smallest dim, {d} ({x:.2}x)"
                )),
                Some((d, x)) => crossings.push(format!("B{b} S{s}: at dim {d} ({x:.2}x)")),
                None => never += 1,
            }
        }
        if crossings.is_empty() && never == 0 {
            continue; // one dim per line: no crossover to find
        }
        let best_at = format!("best {:.2}x at B{} S{} D{}", best.3, best.0, best.1, best.2);
        let text = if crossings.is_empty() {
            format!(
                "the GPU never overtakes the CPU in any of {never} batch x seq lines ({best_at})"
            )
        } else {
            format!(
                "the GPU overtakes the CPU in {} of {} batch x seq lines — {}",
                crossings.len(),
                crossings.len() + never,
                crossings.join("; ")
            )
        };
        let e2e = first_gpu_wins_end_to_end(records);
        let lines: Vec<_> = e2e
            .range((op, p.clone(), 0, 0)..=(op, p.clone(), u32::MAX, u32::MAX))
            .collect();
        let end_to_end = if lines.is_empty() {
            String::new()
        } else {
            let wins: Vec<String> = lines
                .iter()
                .filter_map(|((_, _, b, s), w)| {
                    w.map(|(d, x)| format!("B{b} S{s} at dim {d} ({x:.2}x)"))
                })
                .collect();
            format!(
                " That is by device time; a whole request (upload, op, readback, the model already loaded) \
                 favours the GPU in {} of {} lines{}",
                wins.len(),
                lines.len(),
                if wins.is_empty() {
                    ".".to_string()
                } else {
                    format!(": {}.", wins.join("; "))
                }
            )
        };
        out.push(format!(
            "GPU vs CPU for {op} {p}: {text}; the GPU here is {gpu}.{end_to_end}"
        ));
    }
    out
}

/// What the GPU's launch costs (probed with its ceilings) mean for the
/// crossover: a whole request pays at least a submission round trip and a
/// readback round trip, so a CPU point that finishes sooner than that cannot
/// lose to the GPU end to end, however fast the kernel; and a GPU point whose
/// device time is within twice an empty dispatch is mostly launch cost.
fn launch_floor(records: &[Record], probed: &BTreeMap<BackendKind, Ceilings>) -> Vec<String> {
    let Some(d) = probed
        .get(&BackendKind::Gpu)
        .and_then(|c| c.dispatch.as_ref())
    else {
        return Vec::new();
    };
    let floor_ms = (d.submit_round_trip_us + d.readback_round_trip_us) / 1e3;
    let p50s = |kind: BackendKind| -> Vec<f64> {
        records
            .iter()
            .filter(|r| r.id.backend == kind && r.verified)
            .filter_map(|r| r.measured.as_ref().map(|m| m.latency_ms.p50))
            .collect()
    };
    let (cpu, gpu) = (p50s(BackendKind::Cpu), p50s(BackendKind::Gpu));
    let mut out = Vec::new();
    if !cpu.is_empty() && !gpu.is_empty() {
        let under = cpu.iter().filter(|&&ms| ms < floor_ms).count();
        let verdict = if under == 0 {
            "so submission cost does not set the end-to-end crossover here: the kernels and the copies do".to_string()
        } else {
            "on those points a whole request cannot favour the GPU however fast its kernel: the crossover there is set by submission cost, not by the kernels".to_string()
        };
        out.push(format!(
            "Launch floor: a GPU request pays at least a submission round trip ({:.1} us) and a readback round trip ({:.1} us), {:.3} ms together; the CPU finishes {under} of {} points sooner than that, {verdict}.",
            d.submit_round_trip_us,
            d.readback_round_trip_us,
            floor_ms,
            cpu.len()
        ));
    }
    if !gpu.is_empty() {
        let empty_ms = d.empty_dispatch_us / 1e3;
        let near = gpu.iter().filter(|&&ms| ms < 2.0 * empty_ms).count();
        out.push(format!(
            "An empty dispatch takes {:.1} us of device time on the GPU (each of many in one pass {:.2} us); {near} of {} GPU points take less than twice that, so launching is most of their time.",
            d.empty_dispatch_us,
            d.per_dispatch_in_pass_us,
            gpu.len()
        ));
    }
    out
}

/// A rectangular projection set against square ones of its size.
#[derive(Debug, Clone, PartialEq)]
pub struct RectVsSquare {
    /// The rectangular point.
    pub rect: PointId,
    /// The square points its rate was set against: the two whose K x N
    /// bracket its own, or the one nearest (within 2x) outside them.
    pub squares: Vec<PointId>,
    /// How much faster the squares run per unit of the bound at its size;
    /// above 1, the rectangular point is slower.
    pub ratio: f64,
}

/// Rectangular projections against square ones of the same size class: for
/// each measured rectangular point, the rate that square points on the same
/// backend, precision, batch and seq reach at its size (K x N) — between the
/// square just smaller and the one just larger, interpolated in log size, or
/// the nearest square within 2x where it lies beyond them — per FLOP when
/// several rows share the weight, per byte in decode (one row per sequence,
/// S = 1), where the weight's bytes bound it. Interpolating matters where
/// the squares are far apart: a 1024 x 2304 QKV is 1.8x smaller than the
/// 2048 square and 2.3x larger than the 1024 one, and a larger product runs
/// faster per FLOP, so the nearest square alone favours one side.
pub fn rect_vs_square(records: &[Record]) -> Vec<RectVsSquare> {
    let rate = |r: &Record| {
        let m = r.measured.as_ref().expect("measured");
        if r.id.axis("seq") == Some(1) {
            m.gbps
        } else {
            m.gflops
        }
    };
    // The projections: their weight's K x N is their size.
    let kn = |id: &PointId| id.params.projection();
    let size = |id: &PointId| kn(id).map_or(0.0, |(k, n)| (k as f64 * n as f64).ln());
    let projections = || measured(records).filter(|r| kn(&r.id).is_some());
    let mut squares: Vec<&Record> = projections().filter(|r| r.id.is_square()).collect();
    squares.sort_by(|a, b| size(&a.id).total_cmp(&size(&b.id)));
    let mut out = Vec::new();
    let line = |id: &PointId| {
        (
            id.backend,
            id.op(),
            id.precision,
            id.axis("batch"),
            id.axis("seq"),
        )
    };
    for r in projections().filter(|r| !r.id.is_square()) {
        let same: Vec<&Record> = squares
            .iter()
            .copied()
            .filter(|q| line(&q.id) == line(&r.id))
            .collect();
        let s = size(&r.id);
        let below = same.iter().rev().find(|q| size(&q.id) <= s);
        let above = same.iter().find(|q| size(&q.id) >= s);
        let (squares, square_rate) = match (below, above) {
            (Some(a), Some(b)) if a.id != b.id => {
                let t = (s - size(&a.id)) / (size(&b.id) - size(&a.id));
                let rate = (rate(a).ln() + t * (rate(b).ln() - rate(a).ln())).exp();
                (vec![a.id, b.id], rate)
            }
            (Some(q), _) | (None, Some(q)) if (size(&q.id) - s).abs() <= 2f64.ln() + 1e-9 => {
                (vec![q.id], rate(q))
            }
            _ => continue,
        };
        out.push(RectVsSquare {
            rect: r.id,
            squares,
            ratio: square_rate / rate(r),
        });
    }
    out
}

/// The rectangular-vs-square comparison in words, per backend and precision.
fn rectangular(records: &[Record]) -> Vec<String> {
    let mut groups: Groups<(BackendKind, String), RectVsSquare> = BTreeMap::new();
    for c in rect_vs_square(records) {
        groups
            .entry((c.rect.backend, c.rect.precision.name().to_string()))
            .or_default()
            .push(c);
    }
    groups
        .into_iter()
        .map(|((b, p), v)| {
            let med = median(v.iter().map(|c| c.ratio).collect());
            let worst = v
                .iter()
                .max_by(|a, c| a.ratio.total_cmp(&c.ratio))
                .expect("non-empty");
            let over = v.iter().filter(|c| c.ratio > 1.2).count();
            let against = worst
                .squares
                .iter()
                .map(|q| format!("D{}", q.axis("dim").unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(" and ");
            format!(
                "Rectangular projections {p} on {b}: square projections of the same size (K x N between two squares', \
                 interpolated) run a median {med:.2}x as fast per FLOP (per byte in decode) over {} points, {over} of them \
                 beyond 1.2x; the worst is {} against {against} ({:.2}x).",
                v.len(),
                worst.rect.shape_label(),
                worst.ratio
            )
        })
        .collect()
}

/// Points that were skipped or cut, with their reasons.
fn skipped(records: &[Record]) -> Vec<String> {
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for reason in records.iter().filter_map(|r| r.skipped.as_ref()) {
        // Group "cut" points by their rule rather than by each estimate.
        let key = if reason.kind == SkipKind::Cut {
            "cut by budget.max_run_seconds".to_string()
        } else {
            reason.to_string()
        };
        *reasons.entry(key).or_default() += 1;
    }
    reasons
        .into_iter()
        .map(|(why, n)| format!("{n} point(s) not measured: {why}."))
        .collect()
}

/// How close the kernels come to the probed ceilings, per backend and op.
fn ceilings(records: &[Record], probed: &BTreeMap<BackendKind, Ceilings>) -> Vec<String> {
    let mut out = Vec::new();
    for (backend, c) in probed {
        let mut by_op: BTreeMap<(Op, Roof), Vec<(f64, &Record)>> = BTreeMap::new();
        for r in measured(records).filter(|r| &r.id.backend == backend) {
            let m = r.measured.as_ref().expect("filtered");
            // Each point against the ceiling its op reads it by: arithmetic
            // against the FMA peak, bytes against the copy bandwidth.
            let roof = r.id.params.roof();
            let pct = match roof {
                Roof::Compute => m.pct_of_fma_peak,
                Roof::Memory => m.pct_of_copy_bandwidth,
            };
            if let Some(p) = pct {
                by_op.entry((r.id.op(), roof)).or_default().push((p, r));
            }
        }
        for ((op, roof), v) in by_op {
            let (what, ceiling) = match roof {
                Roof::Compute => ("FMA peak", format!("{:.1} GFLOP/s", c.fma_gflops)),
                Roof::Memory => ("copy bandwidth", format!("{:.1} GB/s", c.copy_gbps)),
            };
            let med = median(v.iter().map(|x| x.0).collect());
            let best = v
                .iter()
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .expect("non-empty");
            // The copy probe streams from memory; a gather whose rows and output
            // stay in cache can move modeled bytes faster than that.
            let note = match (best.0 > 100.0, c.cache_copy_gbps, roof) {
                (true, Some(cache), Roof::Memory) => {
                    let gbps = best.1.measured.as_ref().map_or(0.0, |m| m.gbps);
                    format!(
                        " (over 100%: the bytes it touches fit in cache, where the ceiling is the in-cache copy, {cache:.1} GB/s; against that it reaches {:.1}%)",
                        100.0 * gbps / cache
                    )
                }
                (true, ..) => " (over 100%: the bytes it touches fit in cache, so memory bandwidth does not bound it there)".to_string(),
                _ => String::new(),
            };
            out.push(format!(
                "{op} on {backend} reaches a median {med:.1}% of the probed {what} ({ceiling}) over {} points; best {:.1}% at {} {}{note}.",
                v.len(),
                best.0,
                best.1.id.precision,
                best.1.id.shape_label()
            ));
        }
    }
    out
}

/// A line along one axis: backend, op, precision and the other axes' values.
type AxisLine = (BackendKind, Op, String, u32, u32, u32);

/// Latency against batch and against seq (the seed's other two axes): the
/// fitted exponent where a line holds three values or more of that axis, the
/// others fixed. Both multiply the rows, so the FLOP and byte models say 1;
/// under 1 means the small end pays fixed costs (launch, threads, caches).
fn batch_seq_scaling(records: &[Record]) -> Vec<String> {
    let mut out = Vec::new();
    for along in [Along::Batch, Along::Seq] {
        let mut groups: Groups<AxisLine, (f64, f64)> = BTreeMap::new();
        for r in measured(records) {
            let Some(x) = seed_axes(&r.id) else { continue };
            let (a, b) = match along {
                Along::Batch => (x.seq, x.dim),
                _ => (x.batch, x.dim),
            };
            groups
                .entry((
                    r.id.backend,
                    r.id.op(),
                    r.id.precision.name().into(),
                    a,
                    b,
                    x.out_dim,
                ))
                .or_default()
                .push((along.of(&r.id) as f64, p50(r)));
        }
        let mut fits: Groups<(BackendKind, Op, String), f64> = BTreeMap::new();
        for ((b, op, p, ..), pts) in groups {
            let distinct: std::collections::BTreeSet<u64> =
                pts.iter().map(|p| p.0 as u64).collect();
            if distinct.len() >= 3 {
                if let Some(k) = loglog_slope(&pts) {
                    fits.entry((b, op, p)).or_default().push(k);
                }
            }
        }
        for ((b, op, p), ks) in fits {
            let m = median(ks.clone());
            let (lo, hi) = ks
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, c), &k| {
                    (a.min(k), c.max(k))
                });
            let verdict = if m < 0.8 {
                "sublinear: the small end pays fixed costs, so larger batches amortise them"
            } else if m > 1.2 {
                "superlinear: the larger working sets fall out of cache"
            } else {
                "close to linear, as the FLOP and byte models predict"
            };
            let spread = if ks.len() == 1 {
                "one line".to_string()
            } else {
                format!("median of {} lines, range {lo:.2}..{hi:.2}", ks.len())
            };
            out.push(format!(
                "Latency of {op} {p} on {b} grows as {}^{m:.2} ({spread}): {verdict}.",
                along.name()
            ));
        }
    }
    out
}

/// What the memory is made of (the seed's memory question): the projection's
/// activations and output grow as B*S*D and its weight as D^2; a gather's
/// table (vocab x dim) outweighs everything else. Medians of each part's share
/// of the modeled bytes, per op, and the measured total's exponent in dim.
fn memory_parts(records: &[Record]) -> Vec<String> {
    let mut out = Vec::new();
    let mut by_op: Groups<Op, &Record> = BTreeMap::new();
    for r in measured(records) {
        by_op.entry(r.id.op()).or_default().push(r);
    }
    for (op, rs) in by_op {
        // The op's parts, each the sum of its buffer roles.
        let share = |roles: &[&str]| {
            median(
                rs.iter()
                    .filter_map(|r| {
                        let m = &r.measured.as_ref()?.memory_bytes.model;
                        let part: u64 = roles.iter().map(|role| m.get(role)).sum();
                        (m.total > 0).then(|| 100.0 * part as f64 / m.total as f64)
                    })
                    .collect(),
            )
        };
        let parts: Vec<(&str, f64)> = op
            .memory_parts()
            .iter()
            .map(|(label, roles)| (*label, share(roles)))
            .collect();
        let listed: Vec<String> = parts
            .iter()
            .filter(|p| p.1 >= 0.5)
            .map(|(n, v)| format!("{n} {v:.0}%"))
            .collect();
        let mut ranked = parts.clone();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        // Within two points of each other, two parts share the lead.
        let top = if ranked.len() > 1 && ranked[0].1 - ranked[1].1 <= 2.0 {
            format!("{} and {} dominate", ranked[0].0, ranked[1].0)
        } else {
            format!("{} dominates", ranked[0].0)
        };
        // Measured total vs dim, per backend x precision x batch x seq line.
        let mut lines: Groups<(BackendKind, String, u32, u32), (f64, f64)> = BTreeMap::new();
        for r in rs.iter().filter(|r| r.id.is_square()) {
            let Some(a) = seed_axes(&r.id) else { continue };
            let m = r.measured.as_ref().expect("measured");
            lines
                .entry((r.id.backend, r.id.precision.name().into(), a.batch, a.seq))
                .or_default()
                .push((a.dim as f64, m.memory_bytes.measured.total as f64));
        }
        let ks: Vec<f64> = lines
            .values()
            .filter(|v| v.len() >= 3)
            .filter_map(|v| loglog_slope(v))
            .collect();
        let growth = if ks.is_empty() {
            String::new()
        } else {
            format!(
                "; the measured total grows as dim^{:.2} (median of {} lines)",
                median(ks.clone()),
                ks.len()
            )
        };
        let model = op.memory_note();
        out.push(format!(
            "Memory of {op}: the modeled bytes are {} (medians over {} points), so the {top}; {model}{growth}.",
            listed.join(", "),
            rs.len(),
        ));
    }
    out
}

/// The crossover along batch or seq, where the sweep varies that axis more
/// than dim (the dim crossover is [`crossover`]'s).
fn crossover_along(records: &[Record]) -> Vec<String> {
    let sp = speedups(records);
    let mut by: Groups<(Op, String), PointId> = BTreeMap::new();
    for id in sp.keys() {
        by.entry((id.op(), id.precision.name().into()))
            .or_default()
            .push(*id);
    }
    let mut out = Vec::new();
    for ((op, p), ids) in by {
        let along = varying_axis(ids.iter());
        if along == Along::Dim {
            continue;
        }
        let mut lines: Groups<String, (u32, f64)> = BTreeMap::new();
        for id in &ids {
            lines
                .entry(along.rest(id))
                .or_default()
                .push((along.of(id), sp[id]));
        }
        lines.retain(|_, v| v.len() >= 2);
        if lines.is_empty() {
            continue;
        }
        let mut wins = Vec::new();
        for (line, v) in &mut lines {
            v.sort_by_key(|x| x.0);
            if let Some((x, s)) = v.iter().find(|x| x.1 >= 1.0) {
                wins.push(format!("{line}: at {} {x} ({s:.2}x)", along.name()));
            }
        }
        let text = if wins.is_empty() {
            format!("the GPU overtakes the CPU in none of {} lines", lines.len())
        } else {
            format!(
                "the GPU overtakes the CPU in {} of {} lines — {}",
                wins.len(),
                lines.len(),
                wins.join("; ")
            )
        };
        out.push(format!(
            "GPU vs CPU for {op} {p} along {}: {text}; the GPU here is {}.",
            along.name(),
            device(records, BackendKind::Gpu)
        ));
    }
    out
}

/// Every finding the records support, in report order.
pub fn findings(records: &[Record], probed: &BTreeMap<BackendKind, Ceilings>) -> Vec<String> {
    let mut all = Vec::new();
    all.extend(ceilings(records, probed));
    all.extend(dim_scaling(records));
    all.extend(batch_seq_scaling(records));
    all.extend(batching(records));
    all.extend(memory_parts(records));
    all.extend(memory(records));
    all.extend(tail(records));
    all.extend(precision(records));
    all.extend(crossover(records));
    all.extend(crossover_along(records));
    all.extend(launch_floor(records, probed));
    all.extend(rectangular(records));
    all.extend(skipped(records));
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata::layer;

    /// A rectangular point between two squares is set against the rate the
    /// squares reach at its size (interpolated in log size), one beyond them
    /// against the nearest within 2x, none further; only the same batch,
    /// seq and precision count.
    #[test]
    fn rectangular_points_meet_the_squares_at_their_size() {
        let with = |mut r: Record, gflops: f64| {
            r.measured.as_mut().unwrap().gflops = gflops;
            r
        };
        let sq = |d: u32, g: f64| with(layer("sq", "cpu", (1, 64, d, d), 1.0), g);
        let rect = |k: u32, n: u32, g: f64| with(layer("r", "cpu", (1, 64, k, n), 1.0), g);
        let rs = vec![
            sq(1024, 100.0),
            sq(2048, 400.0),
            // 1024 x 4096 is 2048 x 2048 in size: the square's own rate.
            rect(1024, 4096, 200.0),
            // 1024 x 2048 lies halfway (in log size) from 1024^2 to 2048^2: 200.
            rect(1024, 2048, 100.0),
            // Beyond the largest square by 1.5x: the nearest, 400.
            rect(2048, 3072, 400.0),
            // Beyond it by 4x: no square of its size.
            rect(2048, 8192, 1.0),
            // Another seq: no squares at all.
            with(layer("r", "cpu", (1, 65, 1024, 2048), 1.0), 1.0),
        ];
        let got: Vec<(u32, u32, usize, f64)> = rect_vs_square(&rs)
            .iter()
            .map(|c| {
                let (k, n) = c.rect.params.projection().unwrap();
                (k as u32, n as u32, c.squares.len(), c.ratio)
            })
            .collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!((got[0].0, got[0].1, got[0].2), (1024, 4096, 1), "{got:?}");
        assert!((got[0].3 - 2.0).abs() < 1e-9, "{got:?}");
        assert_eq!((got[1].0, got[1].1, got[1].2), (1024, 2048, 2), "{got:?}");
        assert!((got[1].3 - 2.0).abs() < 1e-9, "{got:?}");
        assert_eq!(got[2], (2048, 3072, 1, 1.0), "{got:?}");
        let text = rectangular(&rs).join(" ");
        assert!(text.contains("median 2.00x"), "{text}");
        assert!(text.contains("2 of them beyond 1.2x"), "{text}");
    }

    /// A p50 of zero (an edited file) makes p99/p50 no number: the tail
    /// finding leaves that point out instead of panicking, and says nothing
    /// of a backend left with no point.
    #[test]
    fn tail_leaves_out_points_whose_ratio_is_no_number() {
        let zero_p50 = |mut r: Record| {
            r.measured.as_mut().unwrap().latency_ms.p50 = 0.0;
            r
        };
        let sound = synthetic("matmul", "cpu", Precision::F32, 1, 8, 64, 1.0);
        let broken = zero_p50(synthetic("matmul", "cpu", Precision::F32, 2, 8, 64, 1.0));
        let text = tail(&[sound.clone(), broken.clone()]).join(" ");
        assert!(text.contains("over 1 points"), "{text}");
        assert!(text.contains(&sound.id.shape_label()), "{text}");
        assert!(tail(&[broken]).is_empty());
    }

    /// The memory finding names what the extra bytes are on each backend,
    /// and in an older cold-cache file the cache-flush buffer it counted.
    #[test]
    fn memory_names_the_extra_bytes_per_backend() {
        let with_other = |backend: &str, other: u64, cold: bool| {
            let mut r = synthetic("matmul", backend, Precision::F32, 1, 8, 64, 1.0);
            let m = r.measured.as_mut().unwrap();
            m.cold_cache = cold;
            m.memory_bytes.measured.other = other;
            r
        };
        let text = |r: Record| memory(&[r]).join(" ");
        let flush = crate::backend::CACHE_FLUSH_BYTES;
        assert!(text(with_other("cpu", 1 << 20, false)).contains("widened into"));
        assert!(text(with_other("gpu", 1 << 20, false)).contains("staging"));
        let old = text(with_other("cpu", flush + (1 << 20), true));
        assert!(old.contains("cache-flush buffer"), "{old}");
        assert!(text(with_other("cpu", 0, true)).contains("nothing beyond"));
    }

    #[test]
    fn slope_of_a_power_law_is_its_exponent() {
        let pts: Vec<(f64, f64)> = [128.0, 256.0, 512.0, 1024.0]
            .iter()
            .map(|&d: &f64| (d, 3.0 * d.powi(2)))
            .collect();
        assert!((loglog_slope(&pts).unwrap() - 2.0).abs() < 1e-12);
        assert_eq!(loglog_slope(&[(1.0, 1.0)]), None);
    }

    /// The seed's other axes: latency linear in batch is called so, a
    /// crossover along batch is found where the sweep varies batch, and the
    /// memory finding names the part that dominates.
    #[test]
    fn batch_scaling_crossover_along_batch_and_memory_parts() {
        let mut rs = Vec::new();
        for b in [1u32, 4, 16, 64] {
            // CPU linear in batch; the GPU flat (launch-bound), so it wins from batch 16.
            rs.push(synthetic(
                "matmul",
                "cpu",
                Precision::F32,
                b,
                128,
                512,
                0.1 * b as f64,
            ));
            rs.push(synthetic("matmul", "gpu", Precision::F32, b, 128, 512, 1.0));
            rs.push(synthetic(
                "embedding",
                "cpu",
                Precision::F32,
                b,
                128,
                512,
                0.01 * b as f64,
            ));
        }
        let scaling = batch_seq_scaling(&rs).join("\n");
        assert!(
            scaling.contains(
                "Latency of matmul f32 on cpu grows as batch^1.00 (one line): close to linear"
            ),
            "{scaling}"
        );
        assert!(
            scaling.contains("matmul f32 on gpu grows as batch^0.00 (one line): sublinear"),
            "{scaling}"
        );
        let along = crossover_along(&rs).join("\n");
        assert!(
            along.contains("matmul f32 along batch: the GPU overtakes the CPU in 1 of 1 lines — S128 D512: at batch 16 (1.60x)"),
            "{along}"
        );
        let mem = memory_parts(&rs).join("\n");
        // The synthetic table has 100 rows against 128 to 8192 output rows.
        assert!(
            mem.contains("Memory of embedding: the modeled bytes are table 10%, output 89%"),
            "{mem}"
        );
        assert!(mem.contains("so the output dominates"), "{mem}");
        assert!(mem.contains("Memory of matmul"), "{mem}");
    }

    /// A gather over the memory copy's ceiling is measured against the
    /// in-cache copy instead, where the run probed it.
    #[test]
    fn a_gather_over_the_memory_ceiling_is_set_against_the_cache_ceiling() {
        let mut r = synthetic("embedding", "cpu", Precision::F32, 8, 512, 128, 0.01);
        let m = r.measured.as_mut().unwrap();
        m.gbps = 60.0;
        m.pct_of_copy_bandwidth = Some(300.0);
        let probed = BTreeMap::from([(
            BackendKind::Cpu,
            Ceilings {
                copy_gbps: 20.0,
                fma_gflops: 100.0,
                method: "test".into(),
                dispatch: None,
                cache_copy_gbps: Some(120.0),
                coop: None,
            },
        )]);
        let text = ceilings(&[r], &probed).join(" ");
        assert!(
            text.contains("the in-cache copy, 120.0 GB/s; against that it reaches 50.0%"),
            "{text}"
        );
    }

    /// A clean power law has a tight interval; three scattered points do not,
    /// and the finding then refuses to call the model confirmed.
    #[test]
    fn an_exponent_from_few_noisy_points_is_called_uncertain() {
        let clean: Vec<(f64, f64)> = [128.0, 256.0, 512.0, 1024.0]
            .iter()
            .map(|&d: &f64| (d, 1e-5 * d * d * (1.0 + 0.01 * (d / 128.0).log2().sin())))
            .collect();
        let (k, h) = loglog_fit(&clean).unwrap();
        assert!((k - 2.0).abs() < 0.05 && h < 0.1, "{k} +- {h}");
        let noisy = [(128.0, 1.0), (256.0, 9.0), (512.0, 6.0)];
        let (_, h) = loglog_fit(&noisy).unwrap();
        assert!(h > 1.0, "{h}");
        let rs: Vec<Record> = noisy
            .iter()
            .map(|&(d, ms)| synthetic("matmul", "cpu", Precision::F32, 8, 512, d as u32, ms))
            .collect();
        let text = dim_scaling(&rs).join(" ");
        assert!(text.contains("too uncertain"), "{text}");
        assert!(!text.contains("consistent with"), "{text}");
    }

    use crate::precision::Precision;
    use crate::report::testdata::{op, synthetic};

    #[test]
    fn findings_state_the_numbers_of_synthetic_data() {
        let mut rs = Vec::new();
        // CPU: a perfect D^2 law; GPU: a fixed 1 ms overhead plus a faster D^2, so it wins from dim 256.
        for d in [64u32, 128, 256, 512] {
            let x = (d as f64 / 64.0).powi(2);
            rs.push(synthetic(
                "matmul",
                "cpu",
                Precision::F32,
                8,
                16,
                d,
                0.5 * x,
            ));
            rs.push(synthetic(
                "matmul",
                "gpu",
                Precision::F32,
                8,
                16,
                d,
                1.0 + 0.05 * x,
            ));
            rs.push(synthetic(
                "matmul",
                "cpu",
                Precision::F16,
                8,
                16,
                d,
                0.25 * x,
            ));
        }
        // Batching: tokens/s doubles until batch 4, then flattens.
        for (b, ms) in [(1u32, 1.0), (2, 1.0), (4, 1.0), (8, 1.95), (16, 3.9)] {
            rs.push(synthetic("embedding", "cpu", Precision::F32, b, 16, 64, ms));
        }
        // The numbers behind the sentences, computed from the records.
        let exps = dim_exponents(&rs);
        let cpu_f32 = &exps[&(BackendKind::Cpu, op("matmul"), "f32".to_string())];
        assert_eq!(cpu_f32.len(), 1);
        assert!((cpu_f32[0] - 2.0).abs() < 1e-9, "{cpu_f32:?}");
        // The GPU's fixed 1 ms makes its curve flatter than D^2.
        let gpu_f32 = &exps[&(BackendKind::Gpu, op("matmul"), "f32".to_string())];
        assert!(gpu_f32[0] < 1.5, "{gpu_f32:?}");
        let pairs = &fp16_vs_fp32(&rs)[&(BackendKind::Cpu, op("matmul"))];
        assert_eq!(pairs.len(), 4);
        for &(speedup, e16, e32) in pairs {
            assert!((speedup - 2.0).abs() < 0.02, "{speedup}");
            assert_eq!((e16, e32), (1e-4, 1e-7));
        }
        // At dim 64 the CPU takes 0.5 ms and the GPU 1.05; at 128, 2.0 vs 1.2 ms.
        let wins = first_gpu_wins(&rs);
        let (d, x) = wins[&(op("matmul"), "f32".to_string(), 8, 16)].expect("the GPU wins");
        assert_eq!(d, 128);
        assert!((x - 2.0 / 1.2).abs() < 0.02, "{x}");
        let curves = batch_curves(&rs);
        let curve = &curves[&(
            BackendKind::Cpu,
            op("embedding"),
            "f32".to_string(),
            16,
            64,
            64,
        )];
        assert_eq!(knee(curve, KNEE_GAIN), Some(4));
        for r in &rs {
            let m = r.measured.as_ref().unwrap();
            assert_eq!(m.memory_bytes.measured_over_model, 1.0);
        }
        // ... and the sentences carry them.
        let f = findings(&rs, &BTreeMap::new()).join("\n");
        assert!(f.contains("matmul f32 on cpu grows as dim^2.00"), "{f}");
        assert!(
            f.contains("FP16 matmul on cpu: 2.00x the FP32 speed"),
            "{f}"
        );
        assert!(f.contains("B8 S16: at dim 128 (1.67x)"), "{f}");
        assert!(f.contains("at batch 4 in 1 of 1"), "{f}");
        assert!(f.contains("1.000x to 1.000x"), "{f}");
    }

    #[test]
    fn knee_is_the_first_batch_no_larger_batch_beats_by_the_gain() {
        let curve = [
            (1, 100.0, 1.0),
            (2, 190.0, 1.0),
            (4, 300.0, 1.0),
            (8, 310.0, 1.0),
            (16, 320.0, 1.0),
        ];
        assert_eq!(knee(&curve, 0.05), Some(8));
        assert_eq!(knee(&curve[..3], 0.05), None);
    }
}

//! Findings about model layers (records labelled with a preset's layer): where
//! a forward pass spends its time, per layer, in each prefill and decode
//! regime; and which regime is bound by memory and which by arithmetic,
//! against the backend's probed ceilings.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::analysis::{measured, median, p50};
use crate::backend::{BackendKind, Ceilings};
use crate::models::{self, Model};
use crate::precision::Precision;
use crate::results::{PointId, Record};

/// One regime of one model on one backend: (model, backend, precision, batch, seq).
pub type Regime = (String, BackendKind, Precision, u32, u32);

/// A forward pass's layers with their ms per pass (p50 x per_pass), or the
/// layers that were not measured.
pub type Breakdown = Result<Vec<(String, f64)>, Vec<String>>;

/// Each layer's share of a forward pass, for every regime whose layers were
/// all measured; `Err` lists the missing ones.
pub fn pass_breakdown(records: &[Record], own: &[Model]) -> BTreeMap<Regime, Breakdown> {
    let mut regimes: BTreeMap<Regime, ()> = BTreeMap::new();
    for r in records {
        if let Some(model) = r.layer.as_deref().and_then(|l| l.split('/').next()) {
            let id = &r.id;
            let (Some(batch), Some(seq)) = (id.axis("batch"), id.axis("seq")) else {
                continue;
            };
            regimes.insert(
                (model.to_string(), id.backend, id.precision, batch, seq),
                (),
            );
        }
    }
    let mut out = BTreeMap::new();
    for (key, ()) in regimes {
        let (model, backend, precision, batch, seq) = &key;
        let Ok(preset) = models::find_in(own, model) else {
            continue;
        };
        let mut times = Vec::new();
        let mut missing = Vec::new();
        // Layers of an op no record of this model ran (an attention layer in
        // a file from before the op, or a sweep that excluded it) are left
        // out of the pass, not counted missing; a file of one op's layers
        // alone (an attention sweep) has no pass to break down.
        let prefix = format!("{model}/");
        let ran: std::collections::BTreeSet<_> = records
            .iter()
            .filter(|r| r.layer.as_deref().is_some_and(|l| l.starts_with(&prefix)))
            .map(|r| r.id.params.op())
            .collect();
        let ops: std::collections::BTreeSet<_> = preset.layers.iter().map(|l| l.op).collect();
        if ran.len() < 2 && ran.len() < ops.len() {
            continue;
        }
        for layer in &preset.layers {
            if !ran.contains(&layer.op) {
                continue;
            }
            let Ok(work) = layer.work(*precision, *batch, *seq) else {
                continue;
            };
            let id = PointId::new(*backend, &work);
            // A shape two layers share (gate and up) is measured once.
            match measured(records).find(|r| r.id == id) {
                Some(r) => times.push((layer.layer.clone(), p50(r) * layer.per_pass as f64)),
                None => missing.push(layer.layer.clone()),
            }
        }
        out.insert(
            key,
            if missing.is_empty() {
                Ok(times)
            } else {
                Err(missing)
            },
        );
    }
    out
}

fn regime_name(batch: u32, seq: u32) -> String {
    if seq == 1 {
        format!("decode B{batch}")
    } else {
        format!("prefill B{batch} S{seq}")
    }
}

/// One sentence per complete regime: the pass's time and each layer's share.
fn breakdown(records: &[Record], own: &[Model]) -> Vec<String> {
    let mut out = Vec::new();
    let mut incomplete: BTreeMap<(String, BackendKind), usize> = BTreeMap::new();
    for ((model, backend, precision, batch, seq), times) in pass_breakdown(records, own) {
        let Ok(mut times) = times else {
            *incomplete.entry((model, backend)).or_default() += 1;
            continue;
        };
        let total: f64 = times.iter().map(|t| t.1).sum();
        times.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut s = format!(
            "{model} {precision} on {backend}, {}: one forward pass's projections and lookup take {total:.3} ms:",
            regime_name(batch, seq)
        );
        for (i, (layer, ms)) in times.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            let _ = write!(s, "{sep}{layer} {:.1}%", 100.0 * ms / total);
        }
        s.push('.');
        out.push(s);
    }
    for ((model, backend), n) in incomplete {
        out.push(format!(
            "{model} on {backend}: {n} regime(s) have no breakdown because some layer was cut or skipped there."
        ));
    }
    out
}

/// Decode against prefill: arithmetic intensity against the ridge point of the
/// probed ceilings, and how close each comes to the ceiling that binds it.
fn regimes(records: &[Record], probed: &BTreeMap<BackendKind, Ceilings>) -> Vec<String> {
    let mut out = Vec::new();
    for (backend, c) in probed {
        if c.copy_gbps <= 0.0 {
            continue;
        }
        let ridge = c.fma_gflops / c.copy_gbps;
        for (phase, decode) in [("decode (S = 1)", true), ("prefill (S > 1)", false)] {
            let rs: Vec<&Record> = measured(records)
                .filter(|r| {
                    r.layer.is_some()
                        && r.id.backend == *backend
                        && r.id.params.projection().is_some()
                        && (r.id.axis("seq") == Some(1)) == decode
                })
                .collect();
            if rs.is_empty() {
                continue;
            }
            fn m<'a>(r: &&'a Record) -> &'a crate::results::Measured {
                r.measured.as_ref().expect("measured")
            }
            let ai: Vec<f64> = rs.iter().map(|r| m(r).arithmetic_intensity).collect();
            let (lo, hi) = ai
                .iter()
                .fold((f64::INFINITY, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
            let below = ai.iter().filter(|&&x| x < ridge).count();
            let bw = median(
                rs.iter()
                    .filter_map(|r| m(r).pct_of_copy_bandwidth)
                    .collect(),
            );
            let fma = median(rs.iter().filter_map(|r| m(r).pct_of_fma_peak).collect());
            let cached = if bw > 100.0 {
                "; over 100% because these weights fit in cache, so DRAM bandwidth does not bound them here"
            } else {
                ""
            };
            let verdict = if below * 2 > rs.len() {
                format!("memory-bound: a median {bw:.1}% of the copy bandwidth ({fma:.1}% of the FMA peak){cached}")
            } else {
                format!("compute-bound: a median {fma:.1}% of the FMA peak ({bw:.1}% of the copy bandwidth)")
            };
            out.push(format!(
                "{phase} on {backend}: the layers' projections do {lo:.1}..{hi:.1} FLOP per byte; {below} of {} lie below the ridge \
                 of {ridge:.1} FLOP/byte ({:.1} GFLOP/s over {:.1} GB/s probed), so the regime is {verdict}.",
                rs.len(),
                c.fma_gflops,
                c.copy_gbps
            ));
        }
    }
    out
}

/// The model-layer findings of a run (none when no record came from a
/// model's layer); `own` holds the spec's own models.
pub fn findings(
    records: &[Record],
    probed: &BTreeMap<BackendKind, Ceilings>,
    own: &[Model],
) -> Vec<String> {
    let mut out = breakdown(records, own);
    out.extend(regimes(records, probed));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata::{layer, resized, synthetic};

    /// GPT-2 small's six layers at decode B1 on the CPU, with chosen medians.
    fn gpt2_decode() -> Vec<Record> {
        let mut table = resized(
            synthetic("embedding", "cpu", Precision::F32, 1, 1, 768, 0.01),
            &[("vocab", 50257)],
        );
        table.layer = Some("gpt2-small/embedding".into());
        let mut rs = vec![table];
        for (name, k, n, ms) in [
            ("qkv", 768, 2304, 0.1),
            ("attn-out", 768, 768, 0.05),
            ("mlp-up", 768, 3072, 0.2),
            ("mlp-down", 3072, 768, 0.2),
            ("lm-head", 768, 50257, 3.4),
        ] {
            let mut r = layer(&format!("gpt2-small/{name}"), "cpu", (1, 1, k, n), ms);
            if let Some(m) = r.measured.as_mut() {
                m.pct_of_copy_bandwidth = Some(60.0);
                m.pct_of_fma_peak = Some(3.0);
            }
            rs.push(r);
        }
        rs
    }

    #[test]
    fn a_pass_is_the_sum_of_each_layer_times_its_runs() {
        let rs = gpt2_decode();
        let all = pass_breakdown(&rs, &[]);
        let key = (
            "gpt2-small".to_string(),
            BackendKind::Cpu,
            Precision::F32,
            1,
            1,
        );
        let times = all[&key].as_ref().expect("every layer measured");
        let ms = |name: &str| times.iter().find(|t| t.0 == name).unwrap().1;
        let median = |name: &str| {
            let r = rs
                .iter()
                .find(|r| r.layer.as_deref().unwrap().ends_with(name))
                .unwrap();
            p50(r)
        };
        // Twelve blocks: QKV twelve times a pass; the LM head and the lookup once.
        assert!((ms("qkv") - 12.0 * median("qkv")).abs() < 1e-12);
        assert!((ms("lm-head") - median("lm-head")).abs() < 1e-12);
        let total: f64 = times.iter().map(|t| t.1).sum();
        // The synthetic medians sit 1% above the values given.
        let want = 1.01 * (0.01 + 1.2 + 0.6 + 2.4 + 2.4 + 3.4);
        assert!((total - want).abs() < 1e-3 * want, "{total} vs {want}");
        let text = findings(&rs, &BTreeMap::new(), &[]).join("\n");
        assert!(
            text.contains("lm-head 34.0%, mlp-up 24.0%, mlp-down 24.0%, qkv 12.0%"),
            "{text}"
        );
        // One op's layers alone (an attention sweep's): no pass at all.
        let lookup_only: Vec<Record> = rs
            .iter()
            .filter(|r| r.layer.as_deref().unwrap().ends_with("embedding"))
            .cloned()
            .collect();
        assert!(pass_breakdown(&lookup_only, &[]).is_empty());
        // One layer missing: no breakdown, said so.
        let partial: Vec<Record> = rs
            .into_iter()
            .filter(|r| !r.layer.as_deref().unwrap().ends_with("qkv"))
            .collect();
        assert_eq!(
            pass_breakdown(&partial, &[])[&key],
            Err(vec!["qkv".to_string()])
        );
        assert!(findings(&partial, &BTreeMap::new(), &[])
            .join("\n")
            .contains("1 regime(s) have no breakdown"));
    }

    /// A spec's own model: its layers break a pass down as a preset's do,
    /// found through the model the results file carries.
    #[test]
    fn a_specs_own_model_is_broken_down_too() {
        let own: Model = toml::from_str(
            r#"
name = "my-net"
blocks = 2
layers = [
    { layer = "up", op = "matmul", dim = 96, out_dim = 384, per_pass = 2 },
    { layer = "down", op = "matmul", dim = 384, out_dim = 96, per_pass = 2 },
]
"#,
        )
        .unwrap();
        let rs = vec![
            layer("my-net/up", "cpu", (1, 1, 96, 384), 3.0),
            layer("my-net/down", "cpu", (1, 1, 384, 96), 1.0),
        ];
        let text = findings(&rs, &BTreeMap::new(), std::slice::from_ref(&own)).join("\n");
        assert!(text.contains("my-net f32 on cpu"), "{text}");
        assert!(text.contains("up 75.0%, down 25.0%"), "{text}");
        // Without the model no breakdown is made up.
        assert!(!findings(&rs, &BTreeMap::new(), &[])
            .join("\n")
            .contains("my-net f32"));
    }

    #[test]
    fn decode_is_memory_bound_below_the_ridge() {
        let ceilings = BTreeMap::from([(
            BackendKind::Cpu,
            Ceilings {
                copy_gbps: 10.0,
                fma_gflops: 100.0,
                method: "test".into(),
                dispatch: None,
                cache_copy_gbps: None,
                coop: None,
            },
        )]);
        let text = regimes(&gpt2_decode(), &ceilings).join("\n");
        assert!(
            text.contains("5 of 5 lie below the ridge of 10.0 FLOP/byte")
                && text.contains("memory-bound: a median 60.0% of the copy bandwidth"),
            "{text}"
        );
    }
}

//! Experiment specs (`experiments/*.toml`): the axes of a sweep, exclusions,
//! sampling, the per-run budget and the charts wanted; parsing with errors that
//! name the file, line and column; `--set axis=v1,v2` overrides; and expansion
//! into the cartesian product of points.
//!
//! ```toml
//! name = "example"
//! [axes]
//! op = ["matmul", "embedding"]
//! backend = ["gpu", "cpu"]
//! precision = ["f32", "f16"]
//! batch = [8, 16]
//! seq = [512]
//! dim = [128, 256]
//! [[exclude]]            # drop every point matching all the keys given
//! backend = "gpu"
//! dim = 256
//! [sampling]             # see measure::Sampling
//! max_ms = 1000
//! [budget]
//! max_run_seconds = 5.0  # cut points whose single run is estimated longer
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backend::BackendKind;
use crate::data::{Data, Dist, Scale};
use crate::error::toml_error;
use crate::error::{LabError, Result};
use crate::measure::Sampling;
use crate::ops::op::{AxisKind, Values};
use crate::ops::{all_axes, Op};
use crate::precision::Precision;
use crate::workload::Workload;

/// The axes of a sweep; the points are their cartesian product. Either `op`
/// and the ops' own parameters (`batch`, `seq`, `dim`, `out_dim`, `vocab`,
/// ...: each op takes the ones it has, its defaults for the rest) give the
/// points, or `model` (and optionally `layer`) takes them from the presets in
/// `experiments/models.toml`, the spec's axes giving what a layer leaves to
/// the run (`batch`, `seq`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Axes {
    /// Ops to run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub op: Vec<Op>,
    /// Backends to run on (default: both).
    #[serde(default = "all_backends")]
    pub backend: Vec<BackendKind>,
    /// Precisions (default: f32).
    #[serde(default = "default_precision")]
    pub precision: Vec<Precision>,
    /// Model presets whose layers to run (instead of `op`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model: Vec<String>,
    /// Which of the models' layers (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layer: Vec<String>,
    /// Input distributions (default: uniform).
    #[serde(default = "default_dist")]
    pub dist: Vec<Dist>,
    /// Factors on the activations and table rows (default: 1).
    #[serde(default = "default_scale")]
    pub scale: Vec<Scale>,
    /// The ops' own parameters, each a list of values (`batch = [8, 16]`;
    /// checked to be lists by [`Spec::parse`], naming the axis).
    #[serde(flatten)]
    pub params: BTreeMap<String, serde_json::Value>,
}

impl Axes {
    /// The values the spec gives parameter `name`, if it gives any.
    pub fn values(&self, name: &str) -> Option<&[serde_json::Value]> {
        self.params
            .get(name)
            .and_then(|v| v.as_array())
            .map(Vec::as_slice)
    }
}

fn all_backends() -> Vec<BackendKind> {
    vec![BackendKind::Gpu, BackendKind::Cpu]
}
fn default_precision() -> Vec<Precision> {
    vec![Precision::F32]
}
fn default_dist() -> Vec<Dist> {
    vec![Dist::Uniform]
}
fn default_scale() -> Vec<Scale> {
    vec![Scale::ONE]
}

/// The axes every spec has besides the ops' own parameters.
const GENERAL_AXES: [&str; 7] = [
    "op",
    "backend",
    "precision",
    "model",
    "layer",
    "dist",
    "scale",
];

/// A partial assignment of axes: points matching every key given are dropped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Exclusion {
    /// Op to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    /// Backend to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendKind>,
    /// Precision to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<Precision>,
    /// Model preset to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Layer to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// Distribution to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dist: Option<Dist>,
    /// Scale to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Scale>,
    /// Parameters of the op to match (`dim = 256`): a point of an op without
    /// the parameter does not match.
    #[serde(flatten)]
    pub params: BTreeMap<String, serde_json::Value>,
}

/// A point's parameters before the op validates them.
struct Raw<'a> {
    op: Op,
    precision: Precision,
    values: &'a Values,
    layer: Option<(&'a str, &'a str)>,
}

impl Exclusion {
    /// Whether every key given other than the backend and data matches `r`
    /// (its parameters as given, with the op's declared defaults).
    fn matches_sizes(&self, r: &Raw) -> bool {
        let (model, layer) = r.layer.unzip();
        let value = |k: &str| {
            r.values.0.get(k).cloned().or_else(|| {
                let axis = r.op.axes().iter().find(|a| a.name == k)?;
                axis.kind.default_value()
            })
        };
        self.model.as_deref().is_none_or(|v| Some(v) == model)
            && self.layer.as_deref().is_none_or(|v| Some(v) == layer)
            && self.op.is_none_or(|v| v == r.op)
            && self.precision.is_none_or(|v| v == r.precision)
            && self
                .params
                .iter()
                .all(|(k, v)| value(k).as_ref() == Some(v))
    }

    /// Whether this exclusion drops the point on every backend (it names no
    /// backend and matches its sizes): such a point is never validated, so an
    /// excluded size that no kernel could address does not stop the sweep.
    fn drops_everywhere(&self, r: &Raw) -> bool {
        self.backend.is_none()
            && self.dist.is_none()
            && self.scale.is_none()
            && self.matches_sizes(r)
    }

    fn matches(&self, p: &Point) -> bool {
        let w = &p.work;
        self.backend.is_none_or(|v| v == p.backend)
            && self.dist.is_none_or(|v| v == w.data.dist)
            && self.scale.is_none_or(|v| v == w.data.scale)
            && self
                .model
                .as_deref()
                .is_none_or(|v| p.layer.is_some_and(|l| l.model == v))
            && self
                .layer
                .as_deref()
                .is_none_or(|v| p.layer.is_some_and(|l| l.layer == v))
            && self.op.is_none_or(|v| v == w.op())
            && self.precision.is_none_or(|v| v == w.precision)
            && self
                .params
                .iter()
                .all(|(k, v)| w.params.axis(k).is_some_and(|x| same_value(x, v)))
    }
}

/// Whether a parameter's value `x` is the value `v` a spec gives (a flag
/// reads as 0 or 1).
fn same_value(x: u32, v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Bool(b) => (x != 0) == *b,
        _ => v.as_u64() == Some(x as u64),
    }
}

/// How much a sweep may spend on slow devices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// A point whose single run is estimated (from the device's measured rate
    /// on earlier points) to take longer than this is cut, and says so.
    pub max_run_seconds: f64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_run_seconds: 10.0,
        }
    }
}

/// The charts a report can draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChartKind {
    /// The seed's figure: memory and latency vs dim, a line per batch, a panel per seq.
    Seed,
    /// Histogram and CDF of one point's samples with p50/p95/p99.
    LatencyDistribution,
    /// GPU over CPU speedup vs dim, with the crossover.
    GpuVsCpu,
    /// Tokens/s and p99 vs batch, the knee marked.
    Batching,
    /// Error and speed vs dim per precision.
    Precision,
    /// Error against the full-precision data vs speed, with the Pareto
    /// front, and the error's CDF per precision.
    PrecisionCost,
    /// Achieved GFLOP/s vs arithmetic intensity against the observed ceilings.
    Roofline,
}

/// An experiment file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Short name (used for the output folder).
    pub name: String,
    /// What the experiment asks.
    #[serde(default)]
    pub description: String,
    /// The sweep.
    pub axes: Axes,
    /// Points to drop.
    #[serde(default)]
    pub exclude: Vec<Exclusion>,
    /// Sampling settings.
    #[serde(default)]
    pub sampling: Sampling,
    /// Cost limits.
    #[serde(default)]
    pub budget: Budget,
    /// Charts to draw (default: every chart the data supports).
    #[serde(default)]
    pub charts: Vec<ChartKind>,
    /// Probe each backend's copy and FMA ceilings before the sweep (default: true).
    #[serde(default = "yes")]
    pub probe_ceilings: bool,
    /// Time a reference library on the same CPU points after the sweep
    /// (`"torch"`: PyTorch, see anchor_helper.rs); absent: no anchor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<crate::results::AnchorKind>,
    /// Models of this file's own (`[[model]]` tables with the presets' fields,
    /// see experiments/models.toml), for the `model` axis beside the presets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model: Vec<crate::models::Model>,
}

fn yes() -> bool {
    true
}

/// One point of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Point {
    /// What to compute.
    pub work: Workload,
    /// Where.
    pub backend: BackendKind,
    /// The model layer it measures, when it comes from a preset.
    pub layer: Option<LayerRef>,
}

/// A layer of a model (a preset or the spec's own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LayerRef {
    /// The model's name.
    pub model: &'static str,
    /// The layer's name.
    pub layer: &'static str,
}

impl LayerRef {
    /// `model/layer`, as records label it.
    pub fn label(&self) -> String {
        format!("{}/{}", self.model, self.layer)
    }
}

impl Point {
    /// Its identity in a results file.
    pub fn id(&self) -> crate::results::PointId {
        crate::results::PointId::new(self.backend, &self.work)
    }
}

/// Every axis a spec or `--set` may name: the general ones, then every op's
/// own parameters.
fn axis_names() -> Vec<&'static str> {
    GENERAL_AXES
        .into_iter()
        .chain(all_axes().iter().map(|a| a.name))
        .collect()
}

/// Parses one `--set axis=v1,v2` into the axis and a TOML array.
fn parse_override(set: &str) -> Result<(String, toml::Value)> {
    let (axis, values) = set
        .split_once('=')
        .ok_or_else(|| LabError::invalid("--set", set, "expected axis=v1,v2,..."))?;
    let axis = axis.trim();
    let names = axis_names();
    if !names.contains(&axis) {
        return Err(LabError::invalid(
            "--set",
            set,
            &format!("unknown axis `{axis}`; axes are {}", names.join(", ")),
        ));
    }
    let param = all_axes().into_iter().find(|a| a.name == axis);
    let mut items = Vec::new();
    for v in values.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        // Each value is checked here, so the error names the axis and the value.
        let bad = |why: &str| LabError::invalid(&format!("--set {axis}"), v, why);
        let name = |r: std::result::Result<&'static str, LabError>| {
            r.map(|n| toml::Value::String(n.into()))
                .map_err(|e| bad(&e.to_string()))
        };
        items.push(match (axis, param.map(|a| a.kind)) {
            ("op", _) => name(v.parse::<Op>().map(Op::name))?,
            ("precision", _) => name(v.parse::<Precision>().map(Precision::name))?,
            ("backend", _) => name(v.parse::<BackendKind>().map(BackendKind::name))?,
            // A name that is no preset may be a model of the file's own, which
            // validation checks.
            ("model" | "layer", _) => toml::Value::String(v.to_string()),
            ("dist", _) => name(v.parse::<Dist>().map(Dist::name))?,
            ("scale", _) => {
                toml::Value::Float(v.parse::<Scale>().map_err(|e| bad(&e.to_string()))?.get())
            }
            (_, Some(AxisKind::Flag { .. })) => toml::Value::Boolean(
                v.parse::<bool>()
                    .map_err(|_| bad("expected true or false"))?,
            ),
            (_, Some(kind @ AxisKind::Choice { options, .. })) => {
                if !options.contains(&v) {
                    return Err(bad(&format!("expected {}", kind.wants())));
                }
                toml::Value::String(v.to_string())
            }
            _ => toml::Value::Integer(
                v.parse::<u32>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad("expected a positive integer"))? as i64,
            ),
        });
    }
    Ok((axis.to_string(), toml::Value::Array(items)))
}

impl Spec {
    /// Parses a spec's text; `origin` names it in errors (a path).
    pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Spec> {
        Self::parse_with_models(text, origin, overrides, &[])
    }

    /// [`Spec::parse`], with `models` (another file's, `run --models-from`)
    /// joining the spec's own before it is checked: its `model` axis (or a
    /// `--set model=...`) may name them, and the results file carries them.
    pub fn parse_with_models(
        text: &str,
        origin: &str,
        overrides: &[String],
        models: &[crate::models::Model],
    ) -> Result<Spec> {
        let syntax = |e: toml::de::Error| toml_error("experiment", text, origin, &e);
        let mut table: toml::Table = toml::from_str(text).map_err(syntax)?;
        if !overrides.is_empty() {
            let axes = table
                .entry("axes")
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .ok_or_else(|| LabError::invalid("experiment", origin, "`axes` must be a table"))?;
            for set in overrides {
                let (axis, values) = parse_override(set)?;
                axes.insert(axis, values);
            }
        }
        // Re-serialising keeps the error positions of a file without overrides
        // exact: parse the original text when nothing was overridden.
        let mut spec: Spec = if overrides.is_empty() {
            toml::from_str(text).map_err(syntax)?
        } else {
            let merged = toml::to_string(&table).expect("a parsed table serialises");
            toml::from_str(&merged).map_err(|e| {
                LabError::invalid(
                    "experiment",
                    &format!("{origin} (with --set)"),
                    e.message().trim(),
                )
            })?
        };
        if models.is_empty() {
            spec.validate(origin)?;
        } else {
            spec.model.extend_from_slice(models);
            spec.validate(&format!("{origin} (with --models-from)"))?;
        }
        Ok(spec)
    }

    /// Reads and parses a spec file.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Spec> {
        Self::load_with_models(path, overrides, &[])
    }

    /// [`Spec::load`] with another file's models ([`Spec::parse_with_models`]).
    pub fn load_with_models(
        path: &Path,
        overrides: &[String],
        models: &[crate::models::Model],
    ) -> Result<Spec> {
        let text = std::fs::read_to_string(path).map_err(|source| LabError::Io {
            path: path.into(),
            source,
        })?;
        Self::parse_with_models(&text, &path.display().to_string(), overrides, models)
    }

    fn validate(&self, origin: &str) -> Result<()> {
        let a = &self.axes;
        crate::models::validate_own(&self.model, origin)?;
        self.validate_models(origin)?;
        let known = axis_names();
        for (name, v) in &a.params {
            if !known.contains(&name.as_str()) {
                return Err(LabError::invalid(
                    &format!("axes.{name}"),
                    origin,
                    &format!("unknown axis `{name}`; axes are {}", known.join(", ")),
                ));
            }
            if !v.is_array() {
                return Err(LabError::invalid(
                    &format!("axes.{name}"),
                    &v.to_string(),
                    &format!("{origin}: an axis is a list of values (`{name} = [...]`)"),
                ));
            }
        }
        let mut lens = vec![
            ("backend", a.backend.len()),
            ("precision", a.precision.len()),
            ("dist", a.dist.len()),
            ("scale", a.scale.len()),
        ];
        if a.model.is_empty() {
            lens.push(("op", a.op.len()));
        }
        lens.extend(
            a.params
                .keys()
                .map(|k| (k.as_str(), a.values(k).map_or(0, <[_]>::len))),
        );
        for (axis, n) in lens {
            if n == 0 {
                return Err(LabError::invalid(
                    &format!("axes.{axis}"),
                    "[]",
                    &format!("{origin}: an axis needs at least one value"),
                ));
            }
        }
        for axis in all_axes() {
            let Some(values) = a.values(axis.name) else {
                continue;
            };
            for v in values {
                let ok = axis.kind.accepts(v);
                if v.as_u64() == Some(0) {
                    return Err(LabError::invalid(
                        &format!("axes.{}", axis.name),
                        "0",
                        &format!("{origin}: sizes must be at least 1"),
                    ));
                }
                if !ok {
                    let want = axis.kind.wants();
                    return Err(LabError::invalid(
                        &format!("axes.{}", axis.name),
                        &v.to_string(),
                        &format!("{origin}: expected {want}"),
                    ));
                }
            }
        }
        // The name becomes a folder under out/: one plain file name.
        let n = &self.name;
        if n.is_empty()
            || n == "."
            || n == ".."
            || n.contains(['/', '\\', '\0'])
            || n.chars().any(char::is_control)
        {
            return Err(LabError::invalid(
                "name",
                n,
                &format!("{origin}: the name is the output folder's name, so a plain file name (no '/', '\\', '..' or control characters)"),
            ));
        }
        let s = &self.sampling;
        for (field, v) in [
            ("sampling.warmup_ms", s.warmup_ms),
            ("sampling.min_ms", s.min_ms),
            ("sampling.max_ms", s.max_ms),
            ("sampling.target_rel_noise", s.target_rel_noise),
            ("budget.max_run_seconds", self.budget.max_run_seconds),
        ] {
            if !v.is_finite() {
                return Err(LabError::invalid(
                    field,
                    &v.to_string(),
                    &format!("{origin}: must be a finite number (JSON cannot hold {v}, so the run could not be resumed)"),
                ));
            }
        }
        if s.max_samples == 0 {
            return Err(LabError::invalid(
                "sampling.max_samples",
                "0",
                &format!("{origin}: at least one sample is needed"),
            ));
        }
        if s.rounds == 0 {
            return Err(LabError::invalid(
                "sampling.rounds",
                "0",
                &format!("{origin}: at least one pass over the points is needed"),
            ));
        }
        if s.max_ms.is_nan()
            || s.max_ms <= 0.0
            || s.min_ms < 0.0
            || s.warmup_ms < 0.0
            || s.target_rel_noise < 0.0
        {
            return Err(LabError::invalid(
                "sampling",
                origin,
                "times must be non-negative and max_ms positive",
            ));
        }
        if self.budget.max_run_seconds.is_nan() || self.budget.max_run_seconds <= 0.0 {
            return Err(LabError::invalid(
                "budget.max_run_seconds",
                &self.budget.max_run_seconds.to_string(),
                "must be positive",
            ));
        }
        // Every shape the axes make, so that an impossible one names the file.
        self.workloads().map_err(|e| match e {
            LabError::Invalid {
                field,
                value,
                reason,
            } => LabError::Invalid {
                field,
                value,
                reason: format!("{origin}: {reason}"),
            },
            other => other,
        })?;
        Ok(())
    }

    /// The model and layer axes: known presets, layers that exist, and no
    /// axes beside them that a layer fixes (its op and the op's sizes: a
    /// model's layers leave only what the run sets, such as batch and seq).
    fn validate_models(&self, origin: &str) -> Result<()> {
        let a = &self.axes;
        if a.model.is_empty() {
            if !a.layer.is_empty() {
                return Err(LabError::invalid(
                    "axes.layer",
                    &a.layer.join(","),
                    &format!("{origin}: layers need a `model` axis"),
                ));
            }
            return Ok(());
        }
        let run = |name: &str| all_axes().iter().any(|x| x.name == name && x.run);
        let fixed = std::iter::once(("op", !a.op.is_empty()))
            .chain(a.params.keys().map(|k| (k.as_str(), !run(k))));
        for (axis, given) in fixed {
            if given {
                return Err(LabError::invalid(
                    &format!("axes.{axis}"),
                    origin,
                    "a `model` axis takes the op and its sizes (dim, out_dim, vocab, ...) from its layers; drop this axis",
                ));
            }
        }
        let models = a
            .model
            .iter()
            .map(|m| crate::models::find_in(&self.model, m))
            .collect::<Result<Vec<_>>>()?;
        for layer in &a.layer {
            if !models.iter().any(|m| m.layer(layer).is_ok()) {
                // The first model's error lists the layers it has.
                models[0].layer(layer)?;
            }
        }
        Ok(())
    }

    /// The product of the data axes (dist, then scale).
    fn data(&self) -> Vec<Data> {
        let a = &self.axes;
        a.dist
            .iter()
            .flat_map(|&dist| a.scale.iter().map(move |&scale| Data { dist, scale }))
            .collect()
    }

    /// The product of the spec's values of `axes` (the outermost first), each
    /// combination added to `base`; an axis the spec does not give is left
    /// to the op (its default, or its error).
    fn product(&self, axes: &[crate::ops::op::Axis], base: &Values) -> Vec<Values> {
        let mut out = vec![base.clone()];
        for axis in axes {
            let Some(values) = self.axes.values(axis.name) else {
                continue;
            };
            out = out
                .into_iter()
                .flat_map(|v| {
                    values.iter().map(move |x| {
                        let mut v = v.clone();
                        v.set(axis.name, x.clone());
                        v
                    })
                })
                .collect();
        }
        out
    }

    /// The workloads of the sweep before backends: the models' layers, or the
    /// product of each op's own axes, in axis order (precision, then op or
    /// model layer, then the op's axes as it orders them, then the data).
    fn workloads(&self) -> Result<Vec<(Workload, Option<LayerRef>)>> {
        let a = &self.axes;
        let mut out = Vec::new();
        let mut push =
            |op: Op, precision, values: Values, layer: Option<(&str, &str)>| -> Result<()> {
                let raw = Raw {
                    op,
                    precision,
                    values: &values,
                    layer,
                };
                if self.exclude.iter().any(|e| e.drops_everywhere(&raw)) {
                    return Ok(());
                }
                let params = op.params(&values)?;
                let label = layer.map(|(m, l)| LayerRef {
                    model: crate::models::intern(m),
                    layer: crate::models::intern(l),
                });
                for data in self.data() {
                    out.push((
                        Workload {
                            params,
                            precision,
                            data,
                        },
                        label,
                    ));
                }
                Ok(())
            };
        for &precision in &a.precision {
            if !a.model.is_empty() {
                for name in &a.model {
                    let model = crate::models::find_in(&self.model, name)?;
                    let layers = model
                        .layers
                        .iter()
                        .filter(|l| a.layer.is_empty() || a.layer.contains(&l.layer));
                    for layer in layers {
                        let run: Vec<_> =
                            layer.op.axes().iter().copied().filter(|x| x.run).collect();
                        for values in self.product(&run, &layer.values()) {
                            push(
                                layer.op,
                                precision,
                                values,
                                Some((&model.name, &layer.layer)),
                            )?;
                        }
                    }
                }
                continue;
            }
            for &op in &a.op {
                for values in self.product(op.axes(), &Values::default()) {
                    push(op, precision, values, None)?;
                }
            }
        }
        Ok(out)
    }

    /// Every point of the sweep, exclusions applied, in axis order (backend,
    /// then op or model layer, precision, then the op's axes: seq, batch,
    /// dim, out_dim, vocab, ...). Shapes are validated here, so an impossible
    /// size is rejected before anything runs. A point that two layers share
    /// is measured once.
    pub fn expand(&self) -> Result<Vec<Point>> {
        let mut works = self.workloads()?;
        // Op-major order within a backend, as the axes read.
        if self.axes.model.is_empty() {
            let order = |op: Op| self.axes.op.iter().position(|&o| o == op);
            works.sort_by_key(|(w, _)| order(w.op()));
        }
        let mut seen = std::collections::HashSet::new();
        let mut points = Vec::new();
        for &backend in &self.axes.backend {
            for &(work, layer) in &works {
                let p = Point {
                    work,
                    backend,
                    layer,
                };
                if !self.exclude.iter().any(|e| e.matches(&p)) && seen.insert(p.id()) {
                    points.push(p);
                }
            }
        }
        Ok(points)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::embedding::params::DEFAULT_VOCAB;
    use crate::report::testdata::op;

    /// A point's parameter `a`.
    fn at(p: &Point, a: &str) -> Option<u32> {
        p.work.params.axis(a)
    }

    /// A projection point's M, K and N.
    fn mkn(p: &Point) -> (u64, u64, u64) {
        let (k, n) = p.work.params.projection().unwrap();
        (p.work.tokens(), k, n)
    }

    #[test]
    fn overrides_parse_every_axis_into_its_canonical_form() {
        use toml::Value::{Array, Float, Integer, String as S};
        let s = |v: &str| S(v.to_string());
        for (set, axis, want) in [
            ("op=matmul", "op", vec![s("matmul")]),
            (
                "precision=fp16, bfloat16",
                "precision",
                vec![s("f16"), s("bf16")],
            ),
            ("backend=cpu", "backend", vec![s("cpu")]),
            ("model=gpt2-small", "model", vec![s("gpt2-small")]),
            ("layer=qkv", "layer", vec![s("qkv")]),
            ("dist=llm", "dist", vec![s("llm")]),
            ("scale=2.5", "scale", vec![Float(2.5)]),
            (" batch = 1,8,", "batch", vec![Integer(1), Integer(8)]),
        ] {
            assert_eq!(
                parse_override(set).unwrap(),
                (axis.to_string(), Array(want)),
                "{set}"
            );
        }
        for bad in ["precision=f64", "batch=0", "nope=1", "batch", "scale=-1"] {
            assert!(parse_override(bad).is_err(), "{bad}");
        }
        // An unknown model is the spec's to know (it may define its own), and
        // validation rejects it.
        let spec = "name = \"t\"\n[axes]\nmodel = [\"gpt2-small\"]\nseq = [1]\nbatch = [1]\n";
        let err = Spec::parse(spec, "t.toml", &["model=gpt5".to_string()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("gpt5") && err.contains("presets are"), "{err}");
    }

    #[test]
    fn layer_labels_read_model_slash_layer() {
        let l = LayerRef {
            model: "gpt2-small",
            layer: "qkv",
        };
        assert_eq!(l.label(), "gpt2-small/qkv");
    }

    #[test]
    fn a_name_that_is_not_a_plain_folder_name_is_refused() {
        // Each name as a TOML string literal.
        let spec = |literal: &str| {
            Spec::parse(
                &format!("name = {literal}\n[axes]\nop = [\"matmul\"]\nbatch = [1]\nseq = [1]\ndim = [8]\n"),
                "n",
                &[],
            )
        };
        for bad in [
            r#""""#,
            r#"".""#,
            r#""..""#,
            r#""a/b""#,
            r#""a\\b""#,
            r#""bell\u0007""#,
        ] {
            let err = spec(bad).unwrap_err().to_string();
            assert!(err.contains("plain file name"), "{bad}: {err}");
        }
        assert!(spec(r#""week-1.b""#).is_ok());
    }

    /// Each sampling and budget bound on its own, at and past its edge.
    #[test]
    fn sampling_and_budget_bounds_are_checked_one_by_one() {
        let spec = |extra: &str| {
            Spec::parse(
                &format!("name = \"s\"\n[axes]\nop = [\"matmul\"]\nbatch = [1]\nseq = [1]\ndim = [8]\n{extra}"),
                "s",
                &[],
            )
        };
        for ok in [
            "[sampling]\nmin_ms = 0.0\nwarmup_ms = 0.0\ntarget_rel_noise = 0.0\n",
            "[sampling]\nmax_ms = 0.001\n",
            "[budget]\nmax_run_seconds = 0.001\n",
        ] {
            assert!(spec(ok).is_ok(), "{ok}");
        }
        for bad in [
            "[sampling]\nmax_ms = 0.0\n",
            "[sampling]\nmin_ms = -1.0\n",
            "[sampling]\nwarmup_ms = -1.0\n",
            "[sampling]\ntarget_rel_noise = -0.01\n",
            "[sampling]\nmax_samples = 0\n",
            "[budget]\nmax_run_seconds = 0.0\n",
        ] {
            assert!(spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn model_and_layer_exclusions_drop_their_layers_only() {
        let axes = "name = \"m\"\n[axes]\nmodel = [\"gpt2-small\", \"gpt2-xl\"]\n\
                    layer = [\"qkv\", \"lm-head\"]\nbackend = [\"cpu\"]\nbatch = [1]\nseq = [1]\n";
        let count = |extra: &str| {
            Spec::parse(&format!("{axes}{extra}"), "m", &[])
                .unwrap()
                .expand()
                .unwrap()
        };
        assert_eq!(count("").len(), 4);
        let two_dists = count("dist = [\"uniform\", \"normal\"]\n");
        assert_eq!(two_dists.len(), 8);
        assert_eq!(
            two_dists
                .iter()
                .filter(|p| p.work.data.dist == Dist::Normal)
                .count(),
            4
        );
        let no_qkv = count("[[exclude]]\nlayer = \"qkv\"\n");
        assert_eq!(no_qkv.len(), 2);
        assert!(no_qkv.iter().all(|p| p.layer.unwrap().layer == "lm-head"));
        let no_xl = count("[[exclude]]\nmodel = \"gpt2-xl\"\n");
        assert_eq!(no_xl.len(), 2);
        assert!(no_xl.iter().all(|p| p.layer.unwrap().model == "gpt2-small"));
        let one = count("[[exclude]]\nmodel = \"gpt2-xl\"\nlayer = \"qkv\"\n");
        assert_eq!(one.len(), 3);
    }

    #[test]
    fn axes_left_out_take_their_defaults() {
        let spec = Spec::parse(
            "name = \"d\"\n[axes]\nop = [\"matmul\"]\nbatch = [1]\nseq = [2]\ndim = [8]\n",
            "d",
            &[],
        )
        .unwrap();
        assert_eq!(spec.axes.backend, [BackendKind::Gpu, BackendKind::Cpu]);
        assert_eq!(spec.axes.precision, [Precision::F32]);
        assert!(!spec.axes.params.contains_key("vocab"));
        assert!(spec.probe_ceilings);
        let points = spec.expand().unwrap();
        assert_eq!(points.len(), 2);
        assert!(points.iter().all(|p| mkn(p) == (2, 8, 8)));
        // Points follow the op axis as written.
        let spec = Spec::parse(
            "name = \"o\"\n[axes]\nop = [\"matmul\", \"embedding\"]\nbackend = [\"cpu\"]\nbatch = [1]\nseq = [2]\ndim = [8]\n",
            "o",
            &[],
        )
        .unwrap();
        let ops: Vec<Op> = spec.expand().unwrap().iter().map(|p| p.work.op()).collect();
        let gather = &spec.expand().unwrap()[1];
        assert_eq!(at(gather, "vocab"), Some(DEFAULT_VOCAB), "the op's default");
        assert_eq!(ops, [op("matmul"), op("embedding")]);
    }

    /// Each exclusion key drops exactly the points with its value: two values
    /// on every axis, one key at a time, half of the points go, and none of
    /// the kept ones has the excluded value.
    #[test]
    fn every_exclusion_key_drops_exactly_its_points() {
        let axes = "[axes]\nop = [\"embed-project\"]\nbackend = [\"cpu\", \"gpu\"]\n\
                    precision = [\"f32\", \"f16\"]\nbatch = [1, 2]\nseq = [3, 4]\ndim = [8, 16]\n\
                    out_dim = [24, 32]\nvocab = [50, 60]\ndist = [\"uniform\", \"normal\"]\nscale = [1.0, 2.0]\n";
        let all = Spec::parse(&format!("name = \"x\"\n{axes}"), "x", &[])
            .unwrap()
            .expand()
            .unwrap();
        assert_eq!(all.len(), 1 << 9);
        type Has = fn(&Point) -> bool;
        let keys: [(&str, &str, Has); 9] = [
            ("backend", "\"gpu\"", |p| p.backend == BackendKind::Gpu),
            ("precision", "\"f16\"", |p| {
                p.work.precision == Precision::F16
            }),
            ("batch", "2", |p| at(p, "batch") == Some(2)),
            ("seq", "3", |p| at(p, "seq") == Some(3)),
            ("dim", "16", |p| at(p, "dim") == Some(16)),
            ("out_dim", "24", |p| at(p, "out_dim") == Some(24)),
            ("vocab", "60", |p| at(p, "vocab") == Some(60)),
            ("dist", "\"normal\"", |p| p.work.data.dist == Dist::Normal),
            ("scale", "2.0", |p| f64::from(p.work.data.scale) == 2.0),
        ];
        for (key, value, has) in keys {
            let text = format!("name = \"x\"\n{axes}[[exclude]]\n{key} = {value}\n");
            let kept = Spec::parse(&text, "x", &[]).unwrap().expand().unwrap();
            assert_eq!(kept.len(), 1 << 8, "{key}");
            assert!(kept.iter().all(|p| !has(p)), "{key}");
            assert_eq!(all.iter().filter(|p| !has(p)).count(), 1 << 8, "{key}");
        }
        // Two keys drop only the points matching both.
        let text = format!("name = \"x\"\n{axes}[[exclude]]\nbatch = 2\nseq = 3\n");
        assert_eq!(
            Spec::parse(&text, "x", &[])
                .unwrap()
                .expand()
                .unwrap()
                .len(),
            384
        );
        // The op key; and a parameter an op does not have drops none of its
        // points (a projection has no vocabulary).
        let two = "name = \"x\"\n[axes]\nop = [\"matmul\", \"embedding\"]\nbackend = [\"cpu\"]\n\
                   batch = [1]\nseq = [1]\ndim = [8]\nvocab = [50, 60]\n";
        let points = |extra: &str| {
            Spec::parse(&format!("{two}{extra}"), "x", &[])
                .unwrap()
                .expand()
                .unwrap()
        };
        assert_eq!(points("").len(), 3, "one projection, two lookups");
        let no_mm = points("[[exclude]]\nop = \"matmul\"\n");
        assert!(no_mm.len() == 2 && no_mm.iter().all(|p| p.work.op() == op("embedding")));
        let no_60 = points("[[exclude]]\nvocab = 60\n");
        assert_eq!(no_60.len(), 2);
        assert!(no_60.iter().any(|p| p.work.op() == op("matmul")));
    }

    #[test]
    fn an_excluded_size_no_kernel_could_address_does_not_stop_the_sweep() {
        let spec = r#"
name = "t"
[axes]
model = ["gpt2-small"]
layer = ["lm-head"]
backend = ["cpu"]
seq = [1, 2048]
batch = [1, 64]
[[exclude]]
batch = 64
seq = 2048
"#;
        let points = Spec::parse(spec, "t", &[]).unwrap().expand().unwrap();
        assert_eq!(points.len(), 3);
        assert!(points.iter().all(|p| mkn(p) != (64 * 2048, 768, 50257)));
        // Without the exclusion the size is rejected, naming it and the file.
        let all = spec.split("[[exclude]]").next().unwrap();
        let err = Spec::parse(all, "t.toml", &[]).unwrap_err().to_string();
        assert!(
            err.contains("B64 S2048 D768 N50257") && err.contains("t.toml"),
            "{err}"
        );
    }

    #[test]
    fn model_axes_expand_to_the_layers_with_labels_and_reject_shape_axes() {
        let spec = r#"
name = "t"
[axes]
model = ["llama-3.2-1b"]
backend = ["cpu", "gpu"]
seq = [1]
batch = [1]
"#;
        let points = Spec::parse(spec, "t", &[]).unwrap().expand().unwrap();
        // Eight layers, gate and up share a shape: seven points per backend.
        assert_eq!(points.len(), 14);
        let qkv = points
            .iter()
            .find(|p| p.layer.is_some_and(|l| l.layer == "qkv"))
            .unwrap();
        assert_eq!(mkn(qkv), (1, 2048, 3072));
        let with_dim = spec.replace("seq = [1]", "seq = [1]\ndim = [64]");
        let err = Spec::parse(&with_dim, "t", &[]).unwrap_err().to_string();
        assert!(err.contains("axes.dim"), "{err}");
        let bad = Spec::parse(spec, "t", &["layer=mlp-sideways".into()])
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("mlp-sideways") && bad.contains("mlp-gate"),
            "{bad}"
        );
    }

    const GOOD: &str = r#"
name = "t"
[axes]
op = ["matmul", "embedding"]
backend = ["cpu"]
precision = ["f32", "f16"]
batch = [1, 2]
seq = [3]
dim = [4, 5]
[[exclude]]
op = "embedding"
precision = "f16"
[sampling]
max_ms = 100
"#;

    /// A model of the file's own: two blocks of a projection pair and a lookup.
    const OWN: &str = r#"
name = "own"
[[model]]
name = "my-net"
blocks = 2
layers = [
    { layer = "embedding", op = "embedding", dim = 96, vocab = 1000, per_pass = 1 },
    { layer = "up", op = "matmul", dim = 96, out_dim = 384, per_pass = 2 },
    { layer = "down", op = "matmul", dim = 384, out_dim = 96, per_pass = 2 },
]
[axes]
model = ["my-net", "gpt2-small"]
backend = ["cpu"]
seq = [1]
batch = [1, 4]
"#;

    #[test]
    fn a_files_own_model_expands_beside_the_presets() {
        let spec = Spec::parse(OWN, "own.toml", &[]).unwrap();
        let points = spec.expand().unwrap();
        let mine: Vec<_> = points
            .iter()
            .filter_map(|p| p.layer.filter(|l| l.model == "my-net"))
            .map(|l| l.label())
            .collect();
        // Three layers at two batches.
        assert_eq!(mine.len(), 6, "{mine:?}");
        assert!(mine.contains(&"my-net/down".to_string()));
        let down = points
            .iter()
            .find(|p| p.layer.is_some_and(|l| l.label() == "my-net/down"))
            .unwrap();
        assert_eq!(mkn(down), (1, 384, 96));
        let table = points
            .iter()
            .find(|p| p.layer.is_some_and(|l| l.label() == "my-net/embedding"))
            .unwrap();
        assert_eq!(at(table, "vocab"), Some(1000), "the layer's vocabulary");
        assert!(points
            .iter()
            .any(|p| p.layer.is_some_and(|l| l.model == "gpt2-small")));
        // The axis may name it with --set, a layer axis picks its layers, and
        // the spec keeps the model for the results file.
        let set = ["model=my-net".to_string(), "layer=up".to_string()];
        let only = Spec::parse(OWN, "own.toml", &set).unwrap();
        let labels: Vec<String> = only
            .expand()
            .unwrap()
            .iter()
            .map(|p| p.layer.unwrap().label())
            .collect();
        assert_eq!(labels, ["my-net/up", "my-net/up"]);
        let json = serde_json::to_value(&only).unwrap();
        assert_eq!(json["model"][0]["name"], "my-net");
        // An unknown name lists the file's models with the presets.
        let err = Spec::parse(OWN, "own.toml", &["model=my-nett".to_string()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("my-nett") && err.contains("my-net,") && err.contains("gpt2-small"),
            "{err}"
        );
    }

    /// The usage guide's example of a model of one's own is a valid one.
    #[test]
    fn the_usage_guides_own_model_parses() {
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/usage.md"))
                .unwrap();
        let block = readme
            .split("```toml")
            .find(|b| b.trim_start().starts_with("[[model]]"))
            .and_then(|b| b.split("```").next())
            .expect("docs/usage.md shows a [[model]] table");
        let text = format!(
            "name = \"r\"\n{block}\n[axes]\nmodel = [\"qwen2.5-0.5b\"]\nseq = [1]\nbatch = [1]\n"
        );
        let points = Spec::parse(&text, "docs/usage.md", &[])
            .unwrap()
            .expand()
            .unwrap();
        assert!(points
            .iter()
            .any(|p| p.layer.is_some_and(|l| l.label() == "qwen2.5-0.5b/lm-head")));
    }

    #[test]
    fn a_files_own_model_is_checked_and_errors_name_the_file() {
        for (from, to, needles) in [
            (
                "name = \"my-net\"",
                "name = \"gpt2-small\"",
                &["gpt2-small", "preset"][..],
            ),
            (
                "name = \"my-net\"",
                "name = \"../x\"",
                &["model.name", "../x"],
            ),
            ("blocks = 2", "blocks = 0", &["model.blocks"]),
            (
                ", out_dim = 96,",
                ",",
                &["layers.out_dim (down)", "need their out_dim"],
            ),
            ("vocab = 1000,", "", &["layers.vocab (embedding)"]),
            (
                "dim = 96, vocab",
                "dim = 96, out_dim = 5, vocab",
                &["layers.out_dim (embedding)"],
            ),
            (
                "layer = \"down\"",
                "layer = \"up\"",
                &["layers.layer", "two layers"],
            ),
            (
                "per_pass = 1 }",
                "per_pass = 0 }",
                &["per_pass", "at least once"],
            ),
            (
                "dim = 384, out_dim",
                "dim = 0, out_dim",
                &["layers.dim (down)"],
            ),
            (
                "op = \"matmul\", dim = 96",
                "op = \"embed-project\", dim = 96",
                &["layers.op (up)"],
            ),
        ] {
            assert!(OWN.contains(from), "{from}");
            let text = OWN.replacen(from, to, 1);
            let err = Spec::parse(&text, "own.toml", &[]).unwrap_err().to_string();
            assert!(err.contains("own.toml"), "{to}: {err}");
            for n in needles {
                assert!(err.contains(n), "{to}: `{n}` not in {err}");
            }
        }
        // Two models of one name.
        let model = OWN
            .split("[axes]")
            .next()
            .unwrap()
            .split("[[model]]")
            .nth(1)
            .unwrap();
        let twice = OWN.replacen("[axes]", &format!("[[model]]{model}[axes]"), 1);
        let err = Spec::parse(&twice, "own.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("two models have this name"), "{err}");
    }

    #[test]
    fn expands_the_cartesian_product_minus_exclusions() {
        let spec = Spec::parse(GOOD, "good.toml", &[]).unwrap();
        let points = spec.expand().unwrap();
        // 2 ops x 2 precisions x 2 batches x 2 dims = 16, minus 4 embedding f16.
        assert_eq!(points.len(), 12);
        assert!(!points
            .iter()
            .any(|p| p.work.op() == op("embedding") && p.work.precision == Precision::F16));
        assert_eq!(spec.sampling.max_ms, 100.0);
        assert_eq!(spec.sampling.min_samples, Sampling::default().min_samples);
        let gather = points
            .iter()
            .find(|p| p.work.op() == op("embedding"))
            .unwrap();
        assert_eq!(at(gather, "vocab"), Some(DEFAULT_VOCAB));
    }

    #[test]
    fn set_overrides_an_axis() {
        let spec =
            Spec::parse(GOOD, "good.toml", &["dim=7,8,9".into(), "op=matmul".into()]).unwrap();
        assert_eq!(spec.axes.params["dim"], serde_json::json!([7, 8, 9]));
        assert_eq!(spec.expand().unwrap().len(), 2 * 2 * 3);
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let err = Spec::parse("name = \"x\"\n[axes\n", "bad.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.toml:2:"), "{err}");
    }

    #[test]
    fn unknown_keys_wrong_types_and_bad_values_are_rejected() {
        let cases = [
            (
                GOOD.replace("seq = [3]", "seq = [3]\nsequence = [4]"),
                "unknown axis `sequence`",
            ),
            (
                GOOD.replace("seq = [3]", "seq = \"long\""),
                "axes.seq `\"long\"`",
            ),
            (GOOD.replace("seq = [3]", "seq = []"), "axes.seq"),
            (GOOD.replace("batch = [1, 2]", "batch = [0]"), "axes.batch"),
            (
                GOOD.replace("seq = [3]", "seq = [3]\nvocab = [0]"),
                "axes.vocab",
            ),
            (GOOD.replace("batch = [1, 2]", "batch = [-1]"), "batch"),
            (
                GOOD.replace("\"matmul\", \"embedding\"", "\"conv\""),
                "conv",
            ),
            (
                GOOD.replace("backend = [\"cpu\"]", "backend = [\"tpu\"]"),
                "tpu",
            ),
            (GOOD.replace("\"f32\", \"f16\"", "\"f8\""), "f8"),
        ];
        for (text, needle) in cases {
            let err = Spec::parse(&text, "case.toml", &[])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(needle) && err.contains("case.toml"),
                "`{needle}` not in: {err}"
            );
            assert_eq!(err.lines().count(), 1, "one line: {err}");
        }
    }

    #[test]
    fn bad_overrides_are_rejected() {
        assert!(Spec::parse(GOOD, "g", &["depth=3".into()])
            .unwrap_err()
            .to_string()
            .contains("unknown axis"));
        assert!(Spec::parse(GOOD, "g", &["dim".into()])
            .unwrap_err()
            .to_string()
            .contains("axis=v1"));
        let zero = Spec::parse(GOOD, "g", &["dim=0".into()])
            .unwrap_err()
            .to_string();
        assert!(
            zero.contains("--set dim") && zero.contains("positive"),
            "{zero}"
        );
        let word = Spec::parse(GOOD, "g", &["batch=1,x".into()])
            .unwrap_err()
            .to_string();
        assert!(
            word.contains("--set batch") && word.contains("`x`"),
            "{word}"
        );
        assert!(Spec::parse(GOOD, "g", &["op=conv".into()])
            .unwrap_err()
            .to_string()
            .contains("conv"));
    }

    #[test]
    fn impossible_shapes_are_rejected_before_running() {
        let text = GOOD
            .replace("seq = [3]", "seq = [70000]")
            .replace("dim = [4, 5]", "dim = [70000]");
        let err = Spec::parse(&text, "big.toml", &[]).unwrap_err().to_string();
        assert!(err.contains("2^32") && err.contains("big.toml"), "{err}");
        // The weight of a square projection names both of its sizes.
        let text = GOOD.replace("dim = [4, 5]", "dim = [70000]");
        let err = Spec::parse(&text, "wide.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("wide.toml") && err.contains("70000 x 70000"),
            "{err}"
        );
    }

    #[test]
    fn shipped_experiments_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            // models.toml holds the model presets, not an experiment.
            if path.extension().is_some_and(|e| e == "toml") && !path.ends_with("models.toml") {
                let spec = Spec::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
                assert!(!spec.expand().unwrap().is_empty(), "{}", path.display());
                n += 1;
            }
        }
        assert!(n >= 6, "expected the shipped experiments, found {n}");
    }
}

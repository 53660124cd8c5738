//! Model presets: real models' inference layers as the lab's ops, read from
//! `experiments/models.toml` (carried in the binary), so a user can measure
//! "my model's layers" by name: `bench --model llama-3-8b --layer qkv`, or the
//! `model` and `layer` axes of a spec. A layer names its op and fixes the
//! op's sizes; the run gives the rest (batch, seq). A spec may define models
//! of its own (`[[model]]` tables, the presets' fields), found before the
//! presets by [`find_in`]; its results file carries them, so its report finds
//! them too.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::ops::op::{Values, BATCH, SEQ};
use crate::ops::{Op, OpParams};
use crate::precision::Precision;
use crate::workload::Workload;

/// The presets file, carried in the binary.
pub const MODELS_TOML: &str = include_str!("../experiments/models.toml");

/// One layer of a model: an op and the sizes it fixes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// Its name within the model (`qkv`, `mlp-down`, `lm-head`, ...).
    pub layer: String,
    /// The op it is (`embedding`, `matmul`, ...).
    pub op: Op,
    /// Times the layer runs in one forward pass.
    pub per_pass: u32,
    /// The op's sizes the layer fixes: every parameter of the op that the
    /// run does not set (a lookup's `dim` and `vocab`, a projection's `dim`
    /// and `out_dim`).
    #[serde(flatten)]
    pub sizes: BTreeMap<String, serde_json::Value>,
}

/// A model: its layers and where their sizes come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Its name (`gpt2-small`, `llama-3-8b`, ...).
    pub name: String,
    /// The published configuration its sizes come from (may be empty in a
    /// spec's own model).
    #[serde(default)]
    pub config: String,
    /// Transformer blocks.
    pub blocks: u32,
    /// Its layers, in the order a forward pass runs them.
    pub layers: Vec<Layer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsFile {
    model: Vec<Model>,
}

/// Every preset, parsed once from the carried file.
pub fn presets() -> &'static [Model] {
    static PRESETS: OnceLock<Vec<Model>> = OnceLock::new();
    PRESETS.get_or_init(|| {
        toml::from_str::<ModelsFile>(MODELS_TOML)
            .expect("experiments/models.toml parses (checked by a unit test)")
            .model
    })
}

/// The preset named `name`.
pub fn find(name: &str) -> Result<&'static Model> {
    presets().iter().find(|m| m.name == name).ok_or_else(|| {
        let names: Vec<&str> = presets().iter().map(|m| m.name.as_str()).collect();
        LabError::invalid(
            "model",
            name,
            &format!("not a preset; presets are {}", names.join(", ")),
        )
    })
}

/// The model named `name`: one of `own` (a spec's models), else a preset.
pub fn find_in<'a>(own: &'a [Model], name: &str) -> Result<&'a Model> {
    if let Some(m) = own.iter().find(|m| m.name == name) {
        return Ok(m);
    }
    find(name).map_err(|e| {
        if own.is_empty() {
            return e;
        }
        let names: Vec<&str> = own
            .iter()
            .chain(presets())
            .map(|m| m.name.as_str())
            .collect();
        LabError::invalid(
            "model",
            name,
            &format!(
                "not a model of this file or a preset; models are {}",
                names.join(", ")
            ),
        )
    })
}

/// Checks a file's own models: each as [`Model::validate`] does, and no two
/// with one name. `origin` names the file in errors.
pub fn validate_own(own: &[Model], origin: &str) -> Result<()> {
    let mut names = HashSet::new();
    for m in own {
        m.validate(origin)?;
        if !names.insert(m.name.as_str()) {
            return Err(LabError::invalid(
                "model.name",
                &m.name,
                &format!("{origin}: two models have this name"),
            ));
        }
    }
    Ok(())
}

/// The `[[model]]` tables of the TOML file at `path` (an experiment file, or
/// a file of models alone; its other tables are not read), checked as
/// [`validate_own`] does: what `bench --models-from` and `models
/// --models-from` know beside the presets.
pub fn load_own(path: &Path) -> Result<Vec<Model>> {
    #[derive(Deserialize)]
    struct Own {
        #[serde(default)]
        model: Vec<Model>,
    }
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LabError::Io {
        path: path.into(),
        source,
    })?;
    let own: Own = toml::from_str(&text)
        .map_err(|e| crate::error::toml_error("models file", &text, &origin, &e))?;
    if own.model.is_empty() {
        return Err(LabError::invalid(
            "models file",
            &origin,
            "it has no [[model]] table",
        ));
    }
    validate_own(&own.model, &origin)?;
    Ok(own.model)
}

/// `s` as a string that lives as long as the program, each distinct one
/// allocated once: the layer labels of a spec's own models (points name
/// their layer by `&'static str`, as the presets do).
pub fn intern(s: &str) -> &'static str {
    static SEEN: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(&known) = seen.get(s) {
        return known;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    seen.insert(leaked);
    leaked
}

impl Model {
    /// Checks a spec's own model: a plain name that no preset has, at least
    /// one layer, layer names unique, and each layer complete for its op
    /// (every size the op takes from a layer — a lookup's dim and vocab, a
    /// projection's dim and out_dim — and none other, each at least 1 and
    /// valid for the op; runs per pass at least 1). `origin` names the file
    /// in errors.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |field: &str, value: &str, why: &str| {
            Err(LabError::invalid(
                &format!("model.{field}"),
                value,
                &format!("{origin}: model `{}`: {why}", self.name),
            ))
        };
        let plain = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if self.name.is_empty() || !self.name.chars().all(plain) || self.name.contains("..") {
            return bad(
                "name",
                &self.name,
                "a name of letters, digits, '-', '_' or '.'",
            );
        }
        if presets().iter().any(|m| m.name == self.name) {
            return bad(
                "name",
                &self.name,
                "a preset has this name; give yours another",
            );
        }
        if self.blocks == 0 {
            return bad("blocks", "0", "a model has at least one block");
        }
        if self.layers.is_empty() {
            return bad("layers", "[]", "a model needs at least one layer");
        }
        let mut names = HashSet::new();
        for l in &self.layers {
            if l.layer.is_empty() || !l.layer.chars().all(plain) {
                return bad(
                    "layers.layer",
                    &l.layer,
                    "a name of letters, digits, '-', '_' or '.'",
                );
            }
            if !names.insert(l.layer.as_str()) {
                return bad("layers.layer", &l.layer, "two layers have this name");
            }
            let what = |field: &str| format!("layers.{field} ({})", l.layer);
            if l.per_pass == 0 {
                return bad(
                    &what("per_pass"),
                    "0",
                    "a layer runs at least once per pass",
                );
            }
            if !l.op.model_layer() {
                return bad(
                    &what("op"),
                    l.op.name(),
                    "a composite op is no model layer; give its parts as layers of their own",
                );
            }
            let fixed: Vec<&str> =
                l.op.axes()
                    .iter()
                    .filter(|a| !a.run)
                    .map(|a| a.name)
                    .collect();
            for (field, v) in &l.sizes {
                if !fixed.contains(&field.as_str()) {
                    return bad(
                        &what(field),
                        &v.to_string(),
                        &format!(
                            "{} layers fix {}; the run sets the rest",
                            l.op,
                            fixed.join(", ")
                        ),
                    );
                }
                if v.as_u64() == Some(0) {
                    return bad(&what(field), "0", "sizes must be at least 1");
                }
            }
            if let Some(missing) = fixed.iter().find(|f| !l.sizes.contains_key(**f)) {
                return bad(
                    &what(missing),
                    "none",
                    &format!("{} layers need their {missing}", l.op),
                );
            }
            // The op's own checks, at the smallest run.
            l.params(&Values::default()).map_err(|e| {
                LabError::invalid(
                    &what("sizes"),
                    &l.layer,
                    &format!("{origin}: model `{}`: {e}", self.name),
                )
            })?;
        }
        Ok(())
    }

    /// Its layer named `name`.
    pub fn layer(&self, name: &str) -> Result<&Layer> {
        self.layers.iter().find(|l| l.layer == name).ok_or_else(|| {
            let names: Vec<&str> = self.layers.iter().map(|l| l.layer.as_str()).collect();
            LabError::invalid(
                "layer",
                name,
                &format!(
                    "{} has no such layer; its layers are {}",
                    self.name,
                    names.join(", ")
                ),
            )
        })
    }
}

impl Layer {
    /// The sizes the layer fixes, as values of its op's parameters.
    pub fn values(&self) -> Values {
        Values(self.sizes.clone())
    }

    /// The layer's parameters at the run's values `run` (batch, seq, ...);
    /// batch and seq are 1 where it does not give them, its other parameters
    /// (an attention's context, causal masking) the op's defaults.
    pub fn params(&self, run: &Values) -> Result<OpParams> {
        let mut values = self.values();
        for axis in self.op.axes().iter().filter(|a| a.run) {
            match run.0.get(axis.name) {
                Some(v) => values.set(axis.name, v.clone()),
                None if [BATCH.name, SEQ.name].contains(&axis.name) => values.set(axis.name, 1),
                None => {}
            }
        }
        self.op.params(&values)
    }

    /// The layer's workload at `batch` x `seq` tokens in `precision`.
    pub fn work(&self, precision: Precision, batch: u32, seq: u32) -> Result<Workload> {
        let mut run = Values::default();
        run.set("batch", batch);
        run.set("seq", seq);
        Ok(Workload::new(self.params(&run)?, precision))
    }

    /// Its sizes in words: `K -> N` for a projection, `V x D` for a lookup.
    pub fn describe_sizes(&self) -> String {
        self.params(&Values::default())
            .map_or_else(|e| e.to_string(), |p| p.sizes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_presets_parse_and_hold_the_models_the_lab_promises() {
        for name in [
            "gpt2-small",
            "gpt2-xl",
            "llama-3.2-1b",
            "llama-3-8b",
            "mixtral-8x7b",
        ] {
            let m = find(name).unwrap();
            for layer in ["embedding", "qkv", "attn-out", "lm-head"] {
                m.layer(layer).unwrap();
            }
            assert!(!m.config.is_empty());
        }
    }

    #[test]
    fn layer_sizes_follow_the_published_configurations() {
        let gpt2 = find("gpt2-small").unwrap();
        let size = |m: &Model, l: &str, axis: &str| m.layer(l).unwrap().sizes[axis].as_u64();
        assert_eq!(
            (size(gpt2, "qkv", "dim"), size(gpt2, "qkv", "out_dim")),
            (Some(768), Some(3 * 768))
        );
        let head = gpt2
            .layer("lm-head")
            .unwrap()
            .work(Precision::F16, 1, 1)
            .unwrap();
        assert_eq!(head.params.projection(), Some((768, 50257)));
        assert_eq!(head.tokens(), 1);
        // Grouped-query attention: 32 query heads and 8 KV heads of 128.
        let llama = find("llama-3-8b").unwrap();
        assert_eq!(size(llama, "qkv", "out_dim"), Some((32 + 2 * 8) * 128));
        assert_eq!(size(llama, "mlp-down", "dim"), Some(14336));
        let table = llama
            .layer("embedding")
            .unwrap()
            .work(Precision::F32, 2, 3)
            .unwrap();
        assert_eq!(
            (
                table.params.axis("vocab"),
                table.params.axis("dim"),
                table.tokens()
            ),
            (Some(128256), Some(4096), 6)
        );
        assert_eq!(llama.layer("qkv").unwrap().describe_sizes(), "4096 -> 6144");
        // Every block layer runs once per block, the rest once per pass.
        for m in presets() {
            for l in &m.layers {
                let once = matches!(l.layer.as_str(), "embedding" | "lm-head");
                assert!(once == (l.per_pass == 1), "{} {}", m.name, l.layer);
                assert!(l.per_pass % m.blocks == 0 || once, "{} {}", m.name, l.layer);
            }
        }
    }

    #[test]
    fn interned_names_are_allocated_once() {
        let a = intern(&String::from("my-net/qkv"));
        let b = intern("my-net/qkv");
        assert_eq!(a, "my-net/qkv");
        assert!(std::ptr::eq(a, b));
        assert!(!std::ptr::eq(a, intern("my-net/up")));
    }

    #[test]
    fn a_files_own_models_come_before_the_presets() {
        let mut own: Model = toml::from_str(
            "name = \"mine\"\nblocks = 1\nlayers = [{ layer = \"up\", op = \"matmul\", dim = 8, out_dim = 16, per_pass = 1 }]",
        )
        .unwrap();
        assert_eq!(
            find_in(std::slice::from_ref(&own), "mine").unwrap().name,
            "mine"
        );
        assert_eq!(
            find_in(std::slice::from_ref(&own), "gpt2-small")
                .unwrap()
                .blocks,
            12
        );
        own.validate("f.toml").unwrap();
        own.name = "llama-3-8b".into();
        assert!(own
            .validate("f.toml")
            .unwrap_err()
            .to_string()
            .contains("preset"));
    }

    #[test]
    fn unknown_names_list_what_exists() {
        let e = find("gpt5").unwrap_err().to_string();
        assert!(e.contains("gpt2-small") && e.contains("llama-3-8b"), "{e}");
        let e = find("gpt2-small")
            .unwrap()
            .layer("mlp-gate")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mlp-up") && e.contains("gpt2-small"), "{e}");
    }
}

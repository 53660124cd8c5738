//! Model presets: real models' inference layers as the lab's ops, read from
//! `experiments/models.toml` (carried in the binary), so a user can measure
//! "my model's layers" by name: `bench --model llama-3-8b --layer qkv`, or the
//! `model` and `layer` axes of a spec. A spec may define models of its own
//! (`[[model]]` tables, the presets' fields), found before the presets by
//! [`find_in`]; its results file carries them, so its report finds them too.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::workload::{Op, Precision, Shape, Workload};

/// The presets file, carried in the binary.
pub const MODELS_TOML: &str = include_str!("../experiments/models.toml");

/// One layer of a model: an op and its sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// Its name within the model (`qkv`, `mlp-down`, `lm-head`, ...).
    pub layer: String,
    /// `embedding` or `matmul`.
    pub op: Op,
    /// The hidden size (a lookup's row width) or the projection's K.
    pub dim: u32,
    /// The projection's N (absent for a lookup).
    #[serde(default)]
    pub out_dim: Option<u32>,
    /// Table rows (a lookup).
    #[serde(default)]
    pub vocab: Option<u32>,
    /// Times the layer runs in one forward pass.
    pub per_pass: u32,
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
        .map_err(|e| crate::experiment::toml_error("models file", &text, &origin, &e))?;
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
    /// (a lookup's vocab, a projection's out_dim, sizes and runs per pass at
    /// least 1). `origin` names the file in errors.
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
            match l.op {
                Op::Embedding => {
                    if l.vocab.is_none() {
                        return bad(&what("vocab"), "none", "a lookup needs its table's rows");
                    }
                    if let Some(n) = l.out_dim {
                        return bad(
                            &what("out_dim"),
                            &n.to_string(),
                            "a lookup is as wide as its table (dim)",
                        );
                    }
                }
                Op::Matmul => {
                    if l.out_dim.is_none() {
                        return bad(
                            &what("out_dim"),
                            "none",
                            "a projection needs its output width",
                        );
                    }
                }
                Op::EmbedProject => {
                    return bad(
                        &what("op"),
                        l.op.name(),
                        "a layer is an embedding or a matmul",
                    );
                }
            }
            for (field, v) in [
                ("dim", Some(l.dim)),
                ("out_dim", l.out_dim),
                ("vocab", l.vocab),
            ] {
                if v == Some(0) {
                    return bad(&what(field), "0", "sizes must be at least 1");
                }
            }
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

    /// The largest table of the model (its vocabulary).
    pub fn vocab(&self) -> u32 {
        self.layers
            .iter()
            .filter_map(|l| l.vocab.or(l.out_dim.filter(|_| l.layer == "lm-head")))
            .max()
            .unwrap_or(crate::workload::DEFAULT_VOCAB)
    }
}

impl Layer {
    /// The layer's workload at `batch` x `seq` tokens in `precision`. A
    /// projection's vocabulary is the model's (unused by the op).
    pub fn work(
        &self,
        model: &Model,
        precision: Precision,
        batch: u32,
        seq: u32,
    ) -> Result<Workload> {
        let vocab = self.vocab.unwrap_or_else(|| model.vocab());
        let shape = match self.op {
            Op::Embedding => Shape::new(batch, seq, self.dim, vocab)?,
            _ => Shape::rect(
                batch,
                seq,
                self.dim,
                self.out_dim.unwrap_or(self.dim),
                vocab,
            )?,
        };
        Ok(Workload {
            op: self.op,
            precision,
            shape,
            data: Default::default(),
        })
    }

    /// `K -> N` for a projection, `V x D` for a lookup.
    pub fn sizes(&self) -> String {
        match (self.op, self.vocab) {
            (Op::Embedding, Some(v)) => format!("{v} x {}", self.dim),
            _ => format!("{} -> {}", self.dim, self.out_dim.unwrap_or(self.dim)),
        }
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
        let qkv = gpt2.layer("qkv").unwrap();
        assert_eq!((qkv.dim, qkv.out_dim), (768, Some(3 * 768)));
        let head = gpt2
            .layer("lm-head")
            .unwrap()
            .work(gpt2, Precision::F16, 1, 1)
            .unwrap();
        assert_eq!(head.mkn(), (1, 768, 50257));
        // Grouped-query attention: 32 query heads and 8 KV heads of 128.
        let llama = find("llama-3-8b").unwrap();
        assert_eq!(
            llama.layer("qkv").unwrap().out_dim,
            Some((32 + 2 * 8) * 128)
        );
        assert_eq!(llama.layer("mlp-down").unwrap().dim, 14336);
        let table = llama
            .layer("embedding")
            .unwrap()
            .work(llama, Precision::F32, 2, 3)
            .unwrap();
        assert_eq!((table.shape.vocab, table.mkn()), (128256, (6, 4096, 4096)));
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

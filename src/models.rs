//! Model presets: real models' inference layers as the lab's ops, read from
//! `experiments/models.toml` (carried in the binary), so a user can measure
//! "my model's layers" by name: `bench --model llama-3-8b --layer qkv`, or the
//! `model` and `layer` axes of a spec.

use std::sync::OnceLock;

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
    /// The published configuration its sizes come from.
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

impl Model {
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

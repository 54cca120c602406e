//! The model families huescan runs from a checkpoint directory, in one table ([`crate::model::FAMILIES`], built
//! by the `families!` list in `model/mod.rs`): each family is one directory under `src/model/` whose `FAMILY`
//! constant names the `config.json` `architectures` / `model_type` it runs, the files its checkpoint needs
//! besides the weights, and its loader. The loader ([`crate::model::load`]) reads `config.json` and dispatches
//! here; nothing else knows which families exist.

use std::path::Path;

use candle_core::{DType, Device};
use serde_json::Value;

use super::{Error, Model};

/// What a family's loader is asked for.
#[derive(Debug, Clone)]
pub struct LoadRequest<'a> {
    /// The checkpoint directory (config.json, weights, tokenizer).
    pub dir: &'a Path,
    /// The identifier the model reports (hub repo id or directory).
    pub id: String,
    pub device: &'a Device,
    pub dtype: DType,
    /// The question asked with every image, for checkpoints with a tokenizer.
    pub question: &'a str,
    /// The prompt as token ids before and after the image, for checkpoints without a tokenizer (a preset's
    /// `prompt_prefix_ids` / `prompt_suffix_ids`).
    pub prompt_ids: Option<(Vec<u32>, Vec<u32>)>,
    /// Image-processor pixel cap; `None`: the checkpoint's own.
    pub max_pixels: Option<usize>,
}

/// One model family: how to recognise its checkpoints and load them.
#[derive(Debug)]
pub struct Family {
    /// The name people use (`Qwen2.5-VL`).
    pub name: &'static str,
    /// `config.json` `model_type` values it runs; the first is the family's own name in presets (`kind`).
    pub model_types: &'static [&'static str],
    /// `config.json` `architectures` entries it runs (the transformers class names).
    pub architectures: &'static [&'static str],
    /// Files its checkpoint needs besides `config.json` and the weights (fetched from the hub, checked in the
    /// cache, fingerprinted into every store).
    pub files: &'static [&'static str],
    /// Files it uses when present.
    pub optional_files: &'static [&'static str],
    /// Builds the model.
    pub load: fn(&LoadRequest) -> crate::model::Result<Box<dyn Model>>,
    /// The checkpoint's sizes, by the family's own `config.json` parser (the one `load` uses), without
    /// loading any weights.
    pub dims: fn(&Path) -> Result<Dims, Error>,
}

/// The sizes of a checkpoint that a plan needs (`huescan scan --dry-run`: disk per image, layers stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Decoder blocks (`num_hidden_layers`); the hidden-state list has one entry more.
    pub blocks: usize,
    /// The decoder's residual width.
    pub d_model: usize,
    /// `(depth, width)` of the vision tower, whose block outputs a `residual` selection stores too; `None` for a
    /// family without one.
    pub vision: Option<(usize, usize)>,
}

impl Family {
    /// The family's `model_type` (what a preset's `kind` names).
    pub fn model_type(&self) -> &'static str {
        self.model_types[0]
    }
}

/// Declares the model-family modules and the `FAMILIES` table from one list: one line per family.
macro_rules! families {
    ($($family:ident),* $(,)?) => {
        $(pub mod $family;)*

        /// Every model family huescan runs from a checkpoint, in lookup order.
        pub static FAMILIES: &[&$crate::model::registry::Family] = &[$(&$family::FAMILY),*];
    };
}
pub(crate) use families;

/// The family that runs a checkpoint with this `config.json`: the first whose `architectures` lists one of
/// the config's, else the first whose `model_type` is the config's; the error is one sentence naming what the
/// config says and what huescan runs.
pub fn for_config(config: &Value) -> Result<&'static Family, String> {
    let archs: Vec<&str> =
        config.get("architectures").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let model_type = config.get("model_type").and_then(Value::as_str).unwrap_or("");
    let families = super::FAMILIES.iter().copied();
    if let Some(f) = families.clone().find(|f| archs.iter().any(|a| f.architectures.contains(a))) {
        return Ok(f);
    }
    if let Some(f) = families.clone().find(|f| f.model_types.contains(&model_type)) {
        return Ok(f);
    }
    let known: Vec<String> = families.map(|f| format!("`{}` ({})", f.model_type(), f.name)).collect();
    Err(format!(
        "model_type is `{model_type}`{}; huescan runs {} checkpoints",
        if archs.is_empty() { String::new() } else { format!(" (architectures {archs:?})") },
        known.join(", ")
    ))
}

/// The family named by a preset's `kind` (a `model_type`).
pub fn by_model_type(model_type: &str) -> Option<&'static Family> {
    super::FAMILIES.iter().copied().find(|f| f.model_types.contains(&model_type))
}

/// The family of the checkpoint in `dir`, from its `config.json`.
pub fn for_dir(dir: &Path) -> Result<&'static Family, Error> {
    let path = dir.join("config.json");
    let bytes = crate::fsx::read(&path).map_err(|e| Error::Config { path: path.clone(), msg: e.to_string() })?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Config { path: path.clone(), msg: format!("is not valid JSON ({e})") })?;
    for_config(&value).map_err(|msg| Error::Config { path, msg })
}

/// The sizes of the checkpoint in `dir`: its family ([`for_dir`]) reads its `config.json`.
pub fn dims(dir: &Path) -> Result<Dims, Error> {
    (for_dir(dir)?.dims)(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_found_by_architecture_then_model_type() {
        let v = serde_json::json!({"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "x"});
        assert_eq!(for_config(&v).unwrap().name, "Qwen2.5-VL");
        let v = serde_json::json!({"model_type": "qwen2_5_vl"});
        assert_eq!(for_config(&v).unwrap().model_type(), "qwen2_5_vl");
        let e =
            for_config(&serde_json::json!({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})).unwrap_err();
        assert!(e.contains("`llama`") && e.contains("LlamaForCausalLM") && e.contains("`qwen2_5_vl`"), "{e}");
    }

    #[test]
    fn each_family_reads_its_own_dims() {
        let fixture = |f: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(f).join("model");
        // Qwen2.5-VL's `vision_config.hidden_size` is the tower's width; Qwen2-VL's is the merger's output, its
        // tower's width `embed_dim`.
        let qwen2_5 = dims(&fixture("qwen-tiny")).unwrap();
        assert_eq!(qwen2_5, Dims { blocks: 3, d_model: 64, vision: Some((4, 32)) });
        let qwen2 = dims(&fixture("qwen2-vl-tiny")).unwrap();
        assert_eq!(qwen2, Dims { blocks: 3, d_model: 64, vision: Some((3, 32)) });
        let e = dims(Path::new("/nonexistent")).unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
    }

    #[test]
    fn every_family_is_named_once() {
        let mut types: Vec<&str> = super::super::FAMILIES.iter().flat_map(|f| f.model_types.iter().copied()).collect();
        let n = types.len();
        types.sort();
        types.dedup();
        assert_eq!(types.len(), n, "a model_type belongs to one family");
        assert!(super::super::FAMILIES.iter().all(|f| !f.model_types.is_empty() && !f.architectures.is_empty()));
    }
}

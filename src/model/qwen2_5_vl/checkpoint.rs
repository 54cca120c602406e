//! A local checkpoint directory: `config.json`, `preprocessor_config.json`, and one `model.safetensors` or many
//! shards listed in `model.safetensors.index.json`, memory-mapped. Tensor names may use the published layout
//! (`model.*`, `visual.*`, `lm_head.*`) or the one transformers >= 4.52 saves (`model.language_model.*`,
//! `model.visual.*`); the layout is found by probing one sentinel tensor per component. Every tensor's shape is
//! checked against the config before anything is loaded, so a bad file names the tensor at fault.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::config::Config;
use super::text::TextModel;
use super::vision::VisionModel;
use crate::model::Error;

const INDEX_FILE: &str = "model.safetensors.index.json";
const SINGLE_FILE: &str = "model.safetensors";
const TEXT_PREFIXES: [&str; 2] = ["model.language_model", "model"];
const VISION_PREFIXES: [&str; 2] = ["model.visual", "visual"];
const LM_HEAD: &str = "lm_head.weight";

/// An opened (mmapped, validated) checkpoint.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub text_prefix: &'static str,
    pub vision_prefix: &'static str,
    /// Whether the checkpoint carries its own `lm_head.weight` (untied head).
    pub has_lm_head: bool,
    tensors: MmapedSafetensors,
}

impl Checkpoint {
    /// Finds the safetensors files of `dir`, maps them and checks names and shapes against `cfg`.
    pub fn open(dir: &Path, cfg: &Config) -> Result<Self, Error> {
        let err = |path: &Path, msg: String| Error::Checkpoint { path: path.to_path_buf(), msg };
        let files = shard_files(dir)?;
        for f in &files {
            // Open each file alone first so a truncated or corrupt shard is named.
            // SAFETY: the mapped files are treated as read-only; modifying them while mapped is the caller's bug.
            unsafe { MmapedSafetensors::new(f) }
                .map_err(|e| err(f, format!("not a readable safetensors file ({e}); re-download this shard")))?;
        }
        // SAFETY: as above.
        let tensors = unsafe { MmapedSafetensors::multi(&files) }.map_err(|e| err(dir, e.to_string()))?;
        let has = |name: &str| tensors.get(name).is_ok();
        let text_prefix = *TEXT_PREFIXES
            .iter()
            .find(|p| has(&format!("{p}.embed_tokens.weight")))
            .ok_or_else(|| err(dir, layout_hint(&tensors, "embed_tokens.weight")))?;
        let vision_prefix = *VISION_PREFIXES
            .iter()
            .find(|p| has(&format!("{p}.patch_embed.proj.weight")))
            .ok_or_else(|| err(dir, layout_hint(&tensors, "patch_embed.proj.weight")))?;
        let has_lm_head = has(LM_HEAD);
        if has_lm_head == cfg.tie_word_embeddings {
            tracing::warn!(
                "config says tie_word_embeddings = {} but the checkpoint {} `{LM_HEAD}`; using {}",
                cfg.tie_word_embeddings,
                if has_lm_head { "has" } else { "lacks" },
                if has_lm_head { "the stored head" } else { "the embedding matrix as the head" }
            );
        }
        let mut expected: Vec<(String, Vec<usize>)> = Vec::new();
        for (n, s) in TextModel::expected_tensors(&cfg.text) {
            expected.push((format!("{text_prefix}.{n}"), s));
        }
        for (n, s) in VisionModel::expected_tensors(&cfg.vision) {
            expected.push((format!("{vision_prefix}.{n}"), s));
        }
        if has_lm_head {
            expected.push((LM_HEAD.into(), vec![cfg.text.vocab_size, cfg.text.hidden_size]));
        }
        for (name, shape) in expected {
            let view = tensors.get(&name).map_err(|_| {
                err(dir, format!("tensor `{name}` is missing; the checkpoint does not match its config.json"))
            })?;
            if view.shape() != shape.as_slice() {
                return Err(Error::TensorShape { name, expected: shape, got: view.shape().to_vec() });
            }
        }
        Ok(Checkpoint { dir: dir.to_path_buf(), files, text_prefix, vision_prefix, has_lm_head, tensors })
    }

    /// A var builder over every tensor, casting to `dtype` on `device`; consumes the mapping.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.tensors), dtype, device.clone())
    }

    /// Loads one tensor by its stored name.
    pub fn load(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        self.tensors.load(name, device)?.to_dtype(dtype)
    }
}

/// The safetensors files of a directory: the shards named by the index, or the single file.
pub fn shard_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let err = |path: &Path, msg: String| Error::Checkpoint { path: path.to_path_buf(), msg };
    if !dir.is_dir() {
        return Err(err(dir, "not a directory; expected a checkpoint folder with config.json and safetensors".into()));
    }
    let index = dir.join(INDEX_FILE);
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| err(&index, format!("cannot read: {e}")))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(&index, format!("not json: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| err(&index, "no `weight_map` object".into()))?;
        let names: BTreeSet<&str> = map.values().filter_map(|f| f.as_str()).collect();
        let files: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
        if let Some(missing) = files.iter().find(|f| !f.exists()) {
            return Err(err(missing, format!("shard listed in {INDEX_FILE} is missing; download it again")));
        }
        if files.is_empty() {
            return Err(err(&index, "the weight map lists no files".into()));
        }
        return Ok(files);
    }
    let single = dir.join(SINGLE_FILE);
    if single.exists() {
        return Ok(vec![single]);
    }
    Err(err(dir, format!("neither {INDEX_FILE} nor {SINGLE_FILE} found")))
}

/// Explains a failed layout probe, recognising the MLX layout that is deliberately unsupported.
fn layout_hint(tensors: &MmapedSafetensors, suffix: &str) -> String {
    let found: Vec<String> =
        tensors.tensors().into_iter().map(|(n, _)| n).filter(|n| n.ends_with(suffix)).take(3).collect();
    let mlx = found.iter().any(|n| n.starts_with("language_model.model.") || n.starts_with("vision_tower."));
    let mut msg =
        format!("no `*.{suffix}` under the known prefixes (model., model.language_model., visual., model.visual.)");
    if mlx {
        msg.push_str("; this looks like an MLX conversion, which is not supported: use the original hub checkpoint");
    } else if !found.is_empty() {
        msg.push_str(&format!("; found {found:?}"));
    }
    msg
}

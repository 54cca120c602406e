//! A local checkpoint directory: `config.json`, `preprocessor_config.json`, and one `model.safetensors` or many
//! shards listed in `model.safetensors.index.json`. Tensor names may use the published layout (`model.*`,
//! `visual.*`, `lm_head.*`) or the one transformers >= 4.52 saves (`model.language_model.*`, `model.visual.*`);
//! the layout is found by probing one sentinel tensor per component. Every header is parsed and every tensor's
//! shape checked against the config before any weight is read, so a bad file names the tensor at fault. The
//! files themselves are read by [`crate::model::nn::safetensors`].

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::arch::VisionTensors;
use super::config::Config;
use super::text::TextModel;
use crate::model::nn::safetensors::{shard_files, Shards};
use crate::model::Error;

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
    tensors: Shards,
}

impl Checkpoint {
    /// Finds the safetensors files of `dir`, parses their headers and checks names and shapes against `cfg`
    /// (the vision tensors as `vision_tensors` lists them for the checkpoint's generation).
    pub fn open(dir: &Path, cfg: &Config, vision_tensors: VisionTensors) -> Result<Self, Error> {
        let err = |path: &Path, msg: String| Error::Checkpoint { path: path.to_path_buf(), msg };
        let files = shard_files(dir)?;
        let tensors = Shards::open(&files)?;
        let has = |name: &str| tensors.index.contains_key(name);
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
        for (n, s) in vision_tensors(&cfg.vision) {
            expected.push((format!("{vision_prefix}.{n}"), s));
        }
        if has_lm_head {
            expected.push((LM_HEAD.into(), vec![cfg.text.vocab_size, cfg.text.hidden_size]));
        }
        for (name, shape) in expected {
            let entry = tensors.index.get(&name).ok_or_else(|| {
                err(dir, format!("tensor `{name}` is missing; the checkpoint does not match its config.json"))
            })?;
            if entry.shape != shape {
                return Err(Error::TensorShape { name, expected: shape, got: entry.shape.clone() });
            }
        }
        Ok(Checkpoint { dir: dir.to_path_buf(), files, text_prefix, vision_prefix, has_lm_head, tensors })
    }

    /// A var builder over every tensor, casting to `dtype` on `device`.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.tensors), dtype, device.clone())
    }

    /// Loads one tensor by its stored name.
    pub fn load(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        self.tensors.read(name, dtype, device)
    }

    /// Stored tensor names, sorted.
    pub fn tensor_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tensors.index.keys().map(String::as_str).collect();
        v.sort();
        v
    }
}

/// Explains a failed layout probe, recognising the MLX layout that is deliberately unsupported.
fn layout_hint(tensors: &Shards, suffix: &str) -> String {
    let found: Vec<String> = tensors.index.keys().filter(|n| n.ends_with(suffix)).take(3).cloned().collect();
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

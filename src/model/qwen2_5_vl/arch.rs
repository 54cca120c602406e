//! What differs between the Qwen-VL generations this runner serves: the `model_type`, the vision keys of
//! `config.json` and the vision tower. The decoder (the same M-RoPE Qwen2 decoder in Qwen2-VL and Qwen2.5-VL;
//! transformers copies one from the other), the image processor, the chat prompt, the hooks and generation are
//! shared, so a generation is an [`Architecture`] value plus its tower, and a model family on top of it is one
//! directory with a registry entry ([`FAMILY`] here).

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde_json::{Map, Value};

use super::config::VisionConfig;
use super::prompt::{ChatPrompt, Prompt};
use super::vision::VisionModel;
use super::Qwen25VlModel;
use crate::model::registry::{Dims, Family, LoadRequest};
use crate::model::{Error, HookPoint, HookSet, Input, Model, TextOutput};

/// A vision tower: pixel patches in, merged image features out, with hook points on the way.
pub trait VisionTower: Send + Sync {
    /// Maps `pixel_values (N, C·T·P·P)` (processor order) to merged features `(N / merge², out_hidden)` in
    /// raster order, images concatenated. For every point where `wanted(point)`, `tap(point, xs)` sees the
    /// activation `(rows, width)` in raster order (merged tokens for the merger) and may return a replacement;
    /// unwanted points cost nothing and a tap returning `None` changes no bit.
    fn forward_hooked(
        &self,
        pixel_values: &Tensor,
        grids: &[[usize; 3]],
        wanted: &dyn Fn(&HookPoint) -> bool,
        tap: &mut dyn FnMut(&HookPoint, &Tensor) -> candle_core::Result<Option<Tensor>>,
    ) -> candle_core::Result<Tensor>;

    /// [`VisionTower::forward_hooked`] without hooks.
    fn forward(&self, pixel_values: &Tensor, grids: &[[usize; 3]]) -> candle_core::Result<Tensor> {
        self.forward_hooked(pixel_values, grids, &|_| false, &mut |_, _| Ok(None))
    }

    /// The number of patch rows (and merged tokens) a hook sees for `grids`.
    fn rows(&self, grids: &[[usize; 3]]) -> (usize, usize);
}

/// Lists every vision tensor of a config as `(name, shape)`, relative to the vision prefix.
pub type VisionTensors = fn(&VisionConfig) -> Vec<(String, Vec<usize>)>;

/// One Qwen-VL generation.
#[derive(Debug)]
pub struct Architecture {
    /// `config.json`'s top-level `model_type`.
    pub model_type: &'static str,
    /// The name in messages (`Qwen2.5-VL`).
    pub name: &'static str,
    /// Reads `vision_config` (either saved layout) and checks it against the decoder width it feeds.
    pub vision_config: fn(&Map<String, Value>, usize) -> Result<VisionConfig, String>,
    /// Every vision tensor as `(name, shape)`, relative to the vision prefix.
    pub vision_tensors: VisionTensors,
    /// Builds the tower from the weights under the vision prefix.
    pub vision_tower: fn(&VisionConfig, VarBuilder) -> candle_core::Result<Box<dyn VisionTower>>,
    /// How transformers orders the rows of its vision blocks' and merger's outputs ([`Model::module_path`]).
    pub vision_rows: &'static str,
}

/// Qwen2.5-VL: RMSNorm vision blocks with a gated SiLU MLP, windowed attention but in
/// `fullatt_block_indexes`.
pub static QWEN2_5_VL: Architecture = Architecture {
    model_type: "qwen2_5_vl",
    name: "Qwen2.5-VL",
    vision_config: super::config::qwen2_5_vision_config,
    vision_tensors: VisionModel::expected_tensors,
    vision_tower: |cfg, vb| Ok(Box::new(VisionModel::new(cfg, vb)?) as Box<dyn VisionTower>),
    vision_rows: "output, rows in window order (un-permute with the inverse of get_vision_window_index)",
};

/// The Qwen2.5-VL family's registry entry.
pub static FAMILY: Family = Family {
    name: "Qwen2.5-VL",
    model_types: &["qwen2_5_vl"],
    architectures: &["Qwen2_5_VLForConditionalGeneration"],
    files: CHECKPOINT_FILES,
    optional_files: OPTIONAL_FILES,
    load: |req| load(&QWEN2_5_VL, req),
    dims: |dir| dims(&QWEN2_5_VL, dir),
};

/// The sizes of a checkpoint of generation `arch` (decoder depth and width, vision tower depth and width), from
/// the config parser its loader uses.
pub fn dims(arch: &Architecture, dir: &std::path::Path) -> Result<Dims, Error> {
    let cfg = super::Config::from_dir_as(arch, dir)?;
    Ok(Dims {
        blocks: cfg.text.num_hidden_layers,
        d_model: cfg.text.hidden_size,
        vision: Some((cfg.vision.depth, cfg.vision.hidden_size)),
    })
}

/// Files a Qwen-VL checkpoint needs besides `config.json` and its weights.
pub const CHECKPOINT_FILES: &[&str] = &["preprocessor_config.json", "tokenizer.json"];
/// Files a Qwen-VL checkpoint uses when present.
pub const OPTIONAL_FILES: &[&str] = &["generation_config.json", "tokenizer_config.json", "chat_template.json"];

impl VisionTower for VisionModel {
    fn forward_hooked(
        &self,
        pixel_values: &Tensor,
        grids: &[[usize; 3]],
        wanted: &dyn Fn(&HookPoint) -> bool,
        tap: &mut dyn FnMut(&HookPoint, &Tensor) -> candle_core::Result<Option<Tensor>>,
    ) -> candle_core::Result<Tensor> {
        VisionModel::forward_hooked(self, pixel_values, grids, wanted, tap)
    }

    fn forward(&self, pixel_values: &Tensor, grids: &[[usize; 3]]) -> candle_core::Result<Tensor> {
        VisionModel::forward(self, pixel_values, grids)
    }

    fn rows(&self, grids: &[[usize; 3]]) -> (usize, usize) {
        VisionModel::rows(self, grids)
    }
}

/// Loads a checkpoint of generation `arch` with the prompt the request asks for: its fixed token ids, else
/// the chat template of its `tokenizer.json` with the request's question.
pub fn load(arch: &'static Architecture, req: &LoadRequest) -> crate::model::Result<Box<dyn Model>> {
    let mut model = Qwen25VlModel::load_as(arch, req.dir, req.dtype, req.device)?
        .with_id(req.id.clone())
        .with_pixel_limits(None, req.max_pixels);
    let tokenizer = req.dir.join("tokenizer.json");
    if let Some((prefix, suffix)) = req.prompt_ids.clone() {
        model = model.with_prompt(Prompt::Ids { prefix, suffix });
    } else if tokenizer.exists() {
        model = model.with_prompt(Prompt::Chat(ChatPrompt::from_file(&tokenizer, req.question)?));
    } else {
        return Err(Error::Checkpoint {
            path: req.dir.to_path_buf(),
            msg: "has no tokenizer.json, so no prompt can be built; use a checkpoint with its tokenizer".into(),
        });
    }
    Ok(Box::new(model))
}

impl TextOutput for Qwen25VlModel {
    fn answer(&self, input: &Input, hooks: &HookSet, max_new_tokens: usize) -> crate::model::Result<(Vec<u32>, String)> {
        let prompt = self.prompt().ok_or_else(|| Error::Msg(format!("`{}` has no prompt to answer", self.id())))?;
        let ids = Qwen25VlModel::generate(self, &self.prepare_input(input)?, max_new_tokens, hooks)?;
        let text = prompt.decode(&ids)?;
        Ok((ids, text))
    }

    fn has_tokenizer(&self) -> bool {
        matches!(self.prompt(), Some(Prompt::Chat(_)))
    }

    fn model_type(&self) -> &str {
        self.architecture().model_type
    }
}

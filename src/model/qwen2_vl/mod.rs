//! Qwen2-VL (2B, 7B, or any size its config describes): the Qwen-VL runner of [`crate::model::qwen2_5_vl`]
//! (image processor, chat prompt, M-RoPE Qwen2 decoder, hooks, generation; transformers' Qwen2.5-VL decoder is
//! a copy of this one) with Qwen2-VL's own vision tower and `vision_config` keys. What differs from
//! Qwen2.5-VL, after transformers' `modeling_qwen2_vl.py`:
//!
//! - vision blocks normalise with LayerNorm (weight and bias, eps 1e-6), not RMSNorm;
//! - their MLP is `fc1 -> QuickGELU -> fc2` with `embed_dim * mlp_ratio` hidden units, not a gated SiLU MLP;
//! - every block attends over the whole image: no windows, so no window permutation;
//! - the merger's `ln_q` is a LayerNorm too;
//! - `vision_config` names the tower width `embed_dim` and its output width `hidden_size`.

mod config;
mod vision;

use std::path::Path;

use candle_core::{DType, Device};

pub use config::vision_config;
use vision::VisionModel;

use crate::model::qwen2_5_vl::arch::{self, CHECKPOINT_FILES, OPTIONAL_FILES};
use crate::model::qwen2_5_vl::{Architecture, Qwen25VlModel, VisionTower};
use crate::model::registry::Family;
use crate::model::Error;

/// The Qwen2-VL generation of the Qwen-VL runner.
pub static QWEN2_VL: Architecture = Architecture {
    model_type: "qwen2_vl",
    name: "Qwen2-VL",
    vision_config,
    vision_tensors: vision::expected_tensors,
    vision_tower: |cfg, vb| Ok(Box::new(VisionModel::new(cfg, vb)?) as Box<dyn VisionTower>),
    vision_rows: "output, rows in processor order (2x2 merge units in raster order)",
};

/// The Qwen2-VL family's registry entry.
pub static FAMILY: Family = Family {
    name: "Qwen2-VL",
    model_types: &["qwen2_vl"],
    architectures: &["Qwen2VLForConditionalGeneration"],
    files: CHECKPOINT_FILES,
    optional_files: OPTIONAL_FILES,
    load: |req| arch::load(&QWEN2_VL, req),
    dims: |dir| arch::dims(&QWEN2_VL, dir),
};

/// Loads a local Qwen2-VL checkpoint directory, as [`Qwen25VlModel::load`] does a Qwen2.5-VL one.
pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Qwen25VlModel, Error> {
    Qwen25VlModel::load_as(&QWEN2_VL, dir, dtype, device)
}

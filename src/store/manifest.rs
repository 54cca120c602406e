//! `manifest.json`: what a store holds and how it was made. Written last, so a directory without it is an
//! unfinished store, never a valid one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Error;

/// The `format` field of every manifest.
pub const FORMAT: &str = "huescan-activations";
/// Bumped on any incompatible change of the layout below. Version 2 added each layer's `component` and
/// `module`; version 1 stores (without them) still read.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this huescan reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// Where the activations came from. Two stores (or shards) can be merged only when these are equal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// Model id: hub repo id, preset name or local path.
    pub model_id: String,
    /// Resolved revision (commit hash) of the checkpoint, when known.
    pub model_revision: Option<String>,
    /// SHA-256 of the model's `config.json` (or of its weights file for small models).
    pub model_config_sha256: Option<String>,
    /// Fingerprints of the rest of the checkpoint (`model::hub::checkpoint_hashes`): `weights` (safetensors
    /// headers and sampled values), `tokenizer.json`, `preprocessor_config.json`, …; empty in stores written
    /// before huescan recorded them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_files_sha256: BTreeMap<String, String>,
    /// Stimulus-set name and SHA-256 of its spec (or of `stimuli.json`).
    pub stimuli_name: String,
    pub stimuli_sha256: String,
    /// How activations were pooled per sample: `image-mean`, `last` or `tokens`.
    pub pooling: String,
    /// Free-form settings that change the numbers (prompt, dtype the model ran in, max_pixels, …), sorted.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// One stored layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerEntry {
    /// Layer index in the model's hook-point list (HF `hidden_states` index for decoders).
    pub index: usize,
    /// TransformerLens-style hook name, e.g. `blocks.4.hook_resid_post`.
    pub hook: String,
    /// File name inside the store directory; the tensor inside is `acts`.
    pub file: String,
    /// `[n_samples, d_model]` (pooled) or `[n_samples, pos, d_model]` (tokens).
    pub shape: Vec<usize>,
    /// SHA-256 of the whole file.
    pub sha256: String,
    /// Which part of the model the point is in: `vision` (positions are image patches in raster order, or
    /// merged tokens at `visual.merger.hook_out`), `language` (prompt tokens) or `other`. Absent in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The same tensor in transformers: module path and which of its inputs/outputs (for
    /// `register_forward_hook` / nnsight users). Absent in version 1 and for models without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

/// One sample (one stimulus image).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleEntry {
    pub id: String,
    pub hue_deg: f64,
}

/// The prompt of one sample, position by position, in a `tokens` store: what row `p` of a language-model
/// point's `[pos, d_model]` is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleTokens {
    /// Token ids of the prompt, in order.
    pub ids: Vec<u32>,
    /// Each id decoded alone, special tokens kept (TransformerLens `to_str_tokens`); absent without a tokenizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strings: Option<Vec<String>>,
    /// Whether each position holds an image feature (an image-pad token).
    pub image_mask: Vec<bool>,
    /// 3-D M-RoPE position of each token: `[temporal, height, width]`, each as long as `ids`.
    pub mrope_positions: [Vec<i64>; 3],
}

/// Set only on a shard: which slice of the full sample list it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardInfo {
    pub index: usize,
    pub count: usize,
    /// Sample count of the whole (unsharded) set.
    pub total_samples: usize,
    /// First sample of this shard in the whole set.
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// huescan version that wrote the store.
    pub tool_version: String,
    /// How layer indices are to be read (see `model::hooks::LAYER_CONVENTION`).
    pub layer_convention: String,
    pub provenance: Provenance,
    /// Storage dtype of the `acts` tensors (`f32`).
    pub dtype: String,
    /// Width of the stored vectors (last dimension) when every layer has the same; `null` when they differ
    /// (then read each layer's `shape`).
    pub d_model: Option<usize>,
    pub layers: Vec<LayerEntry>,
    pub samples: Vec<SampleEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// `tokens` stores (version 2) of models with a token sequence: per sample, in the order of `samples`, its
    /// prompt layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<SampleTokens>>,
}

impl Manifest {
    /// Checks the invariants a reader relies on.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::Manifest { msg });
        if self.format != FORMAT {
            return bad(format!("format is `{}`, expected `{FORMAT}`", self.format));
        }
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&self.format_version) {
            return bad(format!(
                "format_version {} is not supported by this huescan (reads {OLDEST_READABLE_VERSION} to \
                 {FORMAT_VERSION}); re-extract or upgrade",
                self.format_version
            ));
        }
        let n = self.samples.len();
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.samples {
            if !seen.insert(&s.id) {
                return bad(format!("sample id `{}` appears twice", s.id));
            }
            // 360 is accepted as the same hue as 0 (stores converted from other tools label it so).
            if !(0.0..=360.0).contains(&s.hue_deg) {
                return bad(format!("sample `{}` has hue_deg {}, expected a hue in [0, 360]", s.id, s.hue_deg));
            }
        }
        if self.dtype != "f32" {
            return bad(format!("dtype is `{}`, but huescan stores write (and this reader expects) `f32`", self.dtype));
        }
        if let Err(msg) = crate::stimuli::check_set_name(&self.provenance.stimuli_name) {
            return bad(format!("provenance.stimuli_name: {msg}"));
        }
        let mut files = std::collections::BTreeSet::new();
        let mut idx = std::collections::BTreeSet::new();
        for l in &self.layers {
            if !idx.insert(l.index) {
                return bad(format!("layer {} is listed twice", l.index));
            }
            let width_ok = self.d_model.is_none_or(|d| l.shape.last() == Some(&d));
            if l.shape.len() < 2 || l.shape.first() != Some(&n) || !width_ok {
                let width = self.d_model.map_or("d".to_string(), |d| d.to_string());
                return bad(format!(
                    "layer {} has shape {:?}, expected [{n}, …, {width}] for {n} samples of width {width}",
                    l.index, l.shape
                ));
            }
            if l.file.contains('/') || l.file.contains('\\') || l.file.contains("..") || l.file.is_empty() {
                return bad(format!("layer {} file `{}` must be a plain name inside the store", l.index, l.file));
            }
            if !files.insert(&l.file) {
                return bad(format!("layer {} points at `{}`, which another layer already uses", l.index, l.file));
            }
        }
        if let Some(tokens) = &self.tokens {
            if tokens.len() != n {
                return bad(format!("`tokens` has {} entries for {n} samples", tokens.len()));
            }
            for (s, t) in self.samples.iter().zip(tokens) {
                let len = t.ids.len();
                let lens = [t.image_mask.len(), t.mrope_positions[0].len(), t.mrope_positions[1].len()];
                let ragged = lens.iter().chain([&t.mrope_positions[2].len()]).any(|&l| l != len)
                    || t.strings.as_ref().is_some_and(|st| st.len() != len);
                if ragged {
                    return bad(format!(
                        "sample `{}`: its token ids, strings, mask and positions differ in length",
                        s.id
                    ));
                }
            }
            let language = |l: &&LayerEntry| l.component.as_deref() == Some("language") && l.shape.len() == 3;
            if let (Some(l), Some(t)) = (self.layers.iter().find(language), tokens.first()) {
                if l.shape[1] != t.ids.len() {
                    return bad(format!(
                        "layer {} has {} positions but the prompt has {} tokens",
                        l.index,
                        l.shape[1],
                        t.ids.len()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The entry of layer `index`.
    pub fn layer(&self, index: usize) -> Result<&LayerEntry, Error> {
        self.layers.iter().find(|l| l.index == index).ok_or_else(|| Error::NoLayer {
            index,
            available: self.layers.iter().map(|l| l.index.to_string()).collect::<Vec<_>>().join(", "),
        })
    }

    /// Everything that must agree for two shards to be merged: the manifest minus samples, shapes, checksums
    /// and shard info.
    pub(crate) fn compatibility_key(&self) -> serde_json::Value {
        serde_json::json!({
            "format_version": self.format_version,
            "layer_convention": self.layer_convention,
            "provenance": self.provenance,
            "dtype": self.dtype,
            "d_model": self.d_model,
            "layers": self.layers.iter().map(|l| (l.index, &l.hook, &l.shape[1..], &l.module)).collect::<Vec<_>>(),
        })
    }
}

/// File name of layer `index`.
pub fn layer_file_name(index: usize) -> String {
    format!("layer_{index:03}.safetensors")
}

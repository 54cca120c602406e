//! `config.json` and `preprocessor_config.json` of a Qwen2.5-VL checkpoint, in every layout seen in practice:
//! the published hub files (text fields at the top level, `rope_scaling.mrope_section`, `vision_config.in_chans`)
//! and the ones re-saved by transformers >= 4.53 / v5 (nested `text_config`, `rope_parameters`, `in_channels`).
//! Every size and token id the model uses comes from here; nothing is specific to 3B or 7B.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::arch::{Architecture, QWEN2_5_VL};
use crate::model::Error;

/// The decoder ("language model") half of the config.
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// Frequency slots per M-RoPE axis (temporal, height, width) over `head_dim / 2`, chunked, not interleaved.
    pub mrope_section: Vec<usize>,
}

/// The vision tower half of the config.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub depth: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub in_channels: usize,
    pub patch_size: usize,
    pub spatial_merge_size: usize,
    pub temporal_patch_size: usize,
    /// Window side in pixels for the windowed blocks.
    pub window_size: usize,
    pub out_hidden_size: usize,
    /// Blocks that attend over the whole image instead of a window.
    pub fullatt_block_indexes: Vec<usize>,
    /// Base of the 2-D vision rotary (`rope_parameters.rope_theta` in newer saves; 10000 when absent).
    pub rope_theta: f64,
    /// Whether the blocks' MLP is gated (three matrices, Qwen2.5-VL) rather than `fc1`/`fc2` (Qwen2-VL).
    pub gated_mlp: bool,
}

/// Everything the runner needs from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub image_token_id: u32,
    pub vision_start_token_id: u32,
    pub vision_end_token_id: u32,
    /// Generation stops at any of these (config plus `generation_config.json` when present).
    pub eos_token_ids: Vec<u32>,
    /// What the config claims; the loader checks it against the presence of `lm_head.weight`.
    pub tie_word_embeddings: bool,
}

#[derive(Deserialize)]
struct TextWire {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    hidden_act: Option<String>,
    #[serde(default)]
    use_sliding_window: bool,
    eos_token_id: Option<Value>,
    tie_word_embeddings: Option<bool>,
}

fn default_eps() -> f64 {
    1e-6
}

#[derive(Deserialize)]
struct VisionWire {
    depth: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_heads: usize,
    in_channels: Option<usize>,
    in_chans: Option<usize>,
    #[serde(default = "default_patch")]
    patch_size: usize,
    #[serde(default = "default_merge")]
    spatial_merge_size: usize,
    #[serde(default = "default_temporal")]
    temporal_patch_size: usize,
    #[serde(default = "default_window")]
    window_size: usize,
    out_hidden_size: usize,
    #[serde(default)]
    fullatt_block_indexes: Vec<usize>,
    hidden_act: Option<String>,
    rope_theta: Option<f64>,
    rope_parameters: Option<Value>,
}

/// transformers' default base for the vision rotary.
pub(crate) const DEFAULT_VISION_ROPE_THETA: f64 = 10_000.0;

fn default_patch() -> usize {
    14
}
fn default_merge() -> usize {
    2
}
fn default_temporal() -> usize {
    2
}
fn default_window() -> usize {
    112
}

impl Config {
    /// FLOPs of one forward over one image of `patches` patches in a prompt of `seq` tokens, with last-token
    /// logits: matmuls and attention products (2 per multiply-add), no elementwise work, attention counted over
    /// the full square like sdpa. The count of `scripts/bench/qwen_forward.py`, used to estimate run times.
    pub fn forward_flops(&self, patches: usize, seq: usize) -> f64 {
        let (t, v) = (&self.text, &self.vision);
        let (p, seq) = (patches as f64, seq as f64);
        let (h, inter) = (t.hidden_size as f64, t.intermediate_size as f64);
        let q = (t.num_attention_heads * t.head_dim) as f64;
        let kv = (t.num_key_value_heads * t.head_dim) as f64;
        let (vh, vi) = (v.hidden_size as f64, v.intermediate_size as f64);
        let merge = (v.spatial_merge_size * v.spatial_merge_size) as f64;
        let patch_in = (v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size) as f64;
        let window = p.min(((v.window_size / v.patch_size) * (v.window_size / v.patch_size)) as f64);
        let mut macs = p * patch_in * vh;
        for block in 0..v.depth {
            let span = if v.fullatt_block_indexes.contains(&block) { p } else { window };
            let mlp_matrices = if v.gated_mlp { 3.0 } else { 2.0 };
            macs += p * vh * 4.0 * vh + mlp_matrices * p * vh * vi + 2.0 * p * span * vh;
        }
        let merged = (p / merge).floor();
        macs += merged * (merge * vh) * (merge * vh) + merged * merge * vh * v.out_hidden_size as f64;
        let block = seq * h * (2.0 * q + 2.0 * kv) + 3.0 * seq * h * inter + 2.0 * seq * seq * q;
        macs += t.num_hidden_layers as f64 * block + h * t.vocab_size as f64;
        2.0 * macs
    }

    /// Reads `dir/config.json` and, when present, the EOS ids of `dir/generation_config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, Error> {
        Self::from_dir_as(&QWEN2_5_VL, dir)
    }

    /// [`Config::from_dir`] for the Qwen-VL generation `arch`.
    pub fn from_dir_as(arch: &Architecture, dir: &Path) -> Result<Self, Error> {
        let path = dir.join("config.json");
        let mut cfg = Self::from_file_as(arch, &path)?;
        let gen = dir.join("generation_config.json");
        if gen.exists() {
            let v = read_value(&gen)?;
            for id in ids_of(v.get("eos_token_id")) {
                if !cfg.eos_token_ids.contains(&id) {
                    cfg.eos_token_ids.push(id);
                }
            }
        }
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Self, Error> {
        Self::from_file_as(&QWEN2_5_VL, path)
    }

    fn from_file_as(arch: &Architecture, path: &Path) -> Result<Self, Error> {
        Self::from_value_as(arch, &read_value(path)?).map_err(|msg| Error::Config { path: path.to_path_buf(), msg })
    }

    /// Parses a Qwen2.5-VL `config.json` value; the error is a sentence without the path.
    pub fn from_value(v: &Value) -> Result<Self, String> {
        Self::from_value_as(&QWEN2_5_VL, v)
    }

    /// Parses the `config.json` value of Qwen-VL generation `arch`: the decoder and token ids here, the vision
    /// part by `arch`.
    pub fn from_value_as(arch: &Architecture, v: &Value) -> Result<Self, String> {
        let top = v.as_object().ok_or("expected a json object")?;
        check_model_type(arch, top)?;
        // Text fields: the nested text_config wins over the top level, which holds them in the hub layout.
        let mut merged: Map<String, Value> = top.clone();
        if let Some(Value::Object(text)) = top.get("text_config") {
            for (k, val) in text {
                merged.insert(k.clone(), val.clone());
            }
        }
        check_counts(&merged, "", TEXT_COUNTS)?;
        let wire: TextWire =
            serde_json::from_value(Value::Object(merged.clone())).map_err(|e| format!("text fields: {e}"))?;
        let text = text_config(arch, &wire, &merged)?;
        let vision_v = top.get("vision_config").ok_or("no `vision_config`")?;
        let vision_obj = vision_v.as_object().ok_or("`vision_config` is not an object")?;
        let vision = (arch.vision_config)(vision_obj, text.hidden_size)?;
        if !(vision.rope_theta.is_finite() && vision.rope_theta > 0.0) {
            return Err(format!("`vision_config.rope_theta` must be a finite number > 0, got {}", vision.rope_theta));
        }
        let ids = TokenIds::read(top, &merged, &wire, text.vocab_size)?;
        Ok(Config {
            text,
            vision,
            image_token_id: ids.image,
            vision_start_token_id: ids.vision_start,
            vision_end_token_id: ids.vision_end,
            eos_token_ids: ids.eos,
            tie_word_embeddings: top
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .or(wire.tie_word_embeddings)
                .unwrap_or(false),
        })
    }
}

/// Refuses a config of another family: its `model_type` must be `arch`'s.
fn check_model_type(arch: &Architecture, top: &Map<String, Value>) -> Result<(), String> {
    let expected = arch.model_type;
    match top.get("model_type").and_then(Value::as_str) {
        Some(t) if t == expected => Ok(()),
        Some(other) => {
            Err(format!("model_type is `{other}`, expected `{expected}` (this runner reads {} configs)", arch.name))
        }
        None => Err(format!("no `model_type`; expected `{expected}`")),
    }
}

/// The decoder's config from its wire fields (`merged`: the top level with `text_config` laid over it), with
/// the rotary and head layout checked.
fn text_config(arch: &Architecture, text: &TextWire, merged: &Map<String, Value>) -> Result<TextConfig, String> {
    if let Some(act) = &text.hidden_act {
        if act != "silu" {
            return Err(format!("hidden_act `{act}` is not supported; {} uses `silu`", arch.name));
        }
    }
    if text.use_sliding_window {
        return Err(format!("use_sliding_window = true is not supported (no {} checkpoint uses it)", arch.name));
    }
    let rope = merged.get("rope_scaling").or_else(|| merged.get("rope_parameters")).and_then(Value::as_object);
    let mrope_section: Vec<usize> = rope
        .and_then(|r| r.get("mrope_section"))
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .ok_or("no `rope_scaling.mrope_section` (or `rope_parameters.mrope_section`)")?;
    let rope_theta = text
        .rope_theta
        .or_else(|| rope.and_then(|r| r.get("rope_theta")).and_then(Value::as_f64))
        .ok_or("no `rope_theta` at the top level, in text_config or in rope_parameters")?;
    let heads = text.num_attention_heads;
    if heads == 0 || text.hidden_size % heads != 0 && text.head_dim.is_none() {
        return Err(format!("hidden_size {} is not divisible by num_attention_heads {heads}", text.hidden_size));
    }
    let head_dim = text.head_dim.unwrap_or(text.hidden_size / heads);
    let kv_heads = text.num_key_value_heads.unwrap_or(heads);
    if kv_heads == 0 || heads % kv_heads != 0 {
        return Err(format!("num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}"));
    }
    if mrope_section.len() != 3 || mrope_section.iter().sum::<usize>() * 2 != head_dim {
        return Err(format!(
            "mrope_section {mrope_section:?} must have 3 entries summing to head_dim/2 = {}",
            head_dim / 2
        ));
    }
    for (field, x) in [("rms_norm_eps", text.rms_norm_eps), ("rope_theta", rope_theta)] {
        if !(x.is_finite() && x > 0.0) {
            return Err(format!("`{field}` must be a finite number > 0, got {x}"));
        }
    }
    Ok(TextConfig {
        vocab_size: text.vocab_size,
        hidden_size: text.hidden_size,
        intermediate_size: text.intermediate_size,
        num_hidden_layers: text.num_hidden_layers,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        rms_norm_eps: text.rms_norm_eps,
        rope_theta,
        mrope_section,
    })
}

/// The special token ids the prompt and generation need, each checked to lie inside the vocabulary.
struct TokenIds {
    image: u32,
    vision_start: u32,
    vision_end: u32,
    eos: Vec<u32>,
}

impl TokenIds {
    fn read(top: &Map<String, Value>, merged: &Map<String, Value>, text: &TextWire, vocab: usize) -> Result<Self, String> {
        let id = |k: &str| -> Result<u32, String> {
            let v = top.get(k).or_else(|| merged.get(k)).ok_or_else(|| format!("no `{k}`"))?;
            v.as_u64().and_then(|x| u32::try_from(x).ok()).ok_or_else(|| format!("`{k}` must be a token id, got {v}"))
        };
        let eos = ids_of(text.eos_token_id.as_ref());
        if eos.is_empty() {
            return Err("no `eos_token_id`".into());
        }
        let ids = TokenIds {
            image: id("image_token_id")?,
            vision_start: id("vision_start_token_id")?,
            vision_end: id("vision_end_token_id")?,
            eos,
        };
        let named = [
            ("image_token_id", ids.image),
            ("vision_start_token_id", ids.vision_start),
            ("vision_end_token_id", ids.vision_end),
        ];
        let eos = ids.eos.iter().map(|&i| ("eos_token_id", i));
        if let Some((field, i)) = named.into_iter().chain(eos).find(|(_, i)| *i as usize >= vocab) {
            return Err(format!(
                "`{field}` {i} is outside the vocabulary (vocab_size {vocab}); the config does not belong to these weights"
            ));
        }
        Ok(ids)
    }
}

/// The `vision_config` of a Qwen2.5-VL checkpoint, checked against the decoder width `text_hidden` it feeds.
pub fn qwen2_5_vision_config(obj: &Map<String, Value>, text_hidden: usize) -> Result<VisionConfig, String> {
check_counts(obj, "vision_config.", VISION_COUNTS)?;
let vw: VisionWire =
    serde_json::from_value(Value::Object(obj.clone())).map_err(|e| format!("vision_config: {e}"))?;
    if let Some(act) = &vw.hidden_act {
        if act != "silu" {
            return Err(format!("vision_config.hidden_act `{act}` is not supported; expected `silu`"));
        }
    }
    if vw.num_heads == 0 || vw.hidden_size % vw.num_heads != 0 || (vw.hidden_size / vw.num_heads) % 4 != 0 {
        return Err(format!(
            "vision hidden_size {} must split into num_heads {} of a head_dim divisible by 4",
            vw.hidden_size, vw.num_heads
        ));
    }
    if vw.out_hidden_size != text_hidden {
        return Err(format!(
            "vision_config.out_hidden_size {} differs from the text hidden_size {}",
            vw.out_hidden_size, text_hidden
        ));
    }
    let unit = vw.patch_size * vw.spatial_merge_size;
    if unit == 0 || vw.window_size % unit != 0 {
        return Err(format!("window_size {} is not a multiple of patch_size*spatial_merge_size", vw.window_size));
    }
    if let Some(&b) = vw.fullatt_block_indexes.iter().find(|&&b| b >= vw.depth) {
        return Err(format!("fullatt_block_indexes has block {b} but depth is {}", vw.depth));
    }
    Ok(VisionConfig {
        depth: vw.depth,
        hidden_size: vw.hidden_size,
        intermediate_size: vw.intermediate_size,
        num_heads: vw.num_heads,
        in_channels: vw.in_channels.or(vw.in_chans).unwrap_or(3),
        patch_size: vw.patch_size,
        spatial_merge_size: vw.spatial_merge_size,
        temporal_patch_size: vw.temporal_patch_size,
        window_size: vw.window_size,
        out_hidden_size: vw.out_hidden_size,
        fullatt_block_indexes: vw.fullatt_block_indexes,
        gated_mlp: true,
        rope_theta: vw
            .rope_theta
            .or_else(|| vw.rope_parameters.as_ref().and_then(|r| r.get("rope_theta")).and_then(Value::as_f64))
            .unwrap_or(DEFAULT_VISION_ROPE_THETA),
    })
}

/// Most decoder layers or vision blocks a config may declare: far above any released checkpoint (Qwen2.5-VL-72B
/// has 80), low enough that a typo such as 10^9 layers is refused before anything is allocated for it.
pub(crate) const MAX_LAYERS: u64 = 4096;
/// Most units of any width (hidden, intermediate, heads, vocabulary) a config may declare (2^24, ~16.7M).
pub(crate) const MAX_WIDTH: u64 = 1 << 24;
/// Most pixels a patch or window side may declare.
pub(crate) const MAX_PATCH: u64 = 4096;

/// `(key, maximum)` of every count in the text part; each must be a whole number in 1..=maximum.
const TEXT_COUNTS: &[(&str, u64)] = &[
    ("vocab_size", MAX_WIDTH),
    ("hidden_size", MAX_WIDTH),
    ("intermediate_size", MAX_WIDTH),
    ("num_hidden_layers", MAX_LAYERS),
    ("num_attention_heads", MAX_WIDTH),
    ("num_key_value_heads", MAX_WIDTH),
    ("head_dim", MAX_WIDTH),
];
const VISION_COUNTS: &[(&str, u64)] = &[
    ("depth", MAX_LAYERS),
    ("hidden_size", MAX_WIDTH),
    ("intermediate_size", MAX_WIDTH),
    ("num_heads", MAX_WIDTH),
    ("in_channels", MAX_PATCH),
    ("in_chans", MAX_PATCH),
    ("patch_size", MAX_PATCH),
    ("spatial_merge_size", MAX_PATCH),
    ("temporal_patch_size", MAX_PATCH),
    ("window_size", MAX_PATCH),
    ("out_hidden_size", MAX_WIDTH),
];

/// Zero, negative, fractional or absurd sizes are refused with the key named, before serde (whose message
/// does not name the field) and before any division or allocation uses them.
pub(crate) fn check_counts(obj: &Map<String, Value>, prefix: &str, counts: &[(&str, u64)]) -> Result<(), String> {
    for &(key, max) in counts {
        let Some(v) = obj.get(key).filter(|v| !v.is_null()) else { continue };
        match v.as_u64() {
            Some(n) if (1..=max).contains(&n) => {}
            _ => return Err(format!("`{prefix}{key}` must be a whole number in 1..={max}, got {v}")),
        }
    }
    Ok(())
}

fn ids_of(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).map(|x| x as u32).collect(),
        _ => vec![],
    }
}

fn read_value(path: &Path) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config { path: path.to_path_buf(), msg: format!("cannot read: {e}") })?;
    serde_json::from_str(&text).map_err(|e| Error::Config { path: path.to_path_buf(), msg: format!("not json: {e}") })
}

/// `preprocessor_config.json`: the image processor's sizes and normalisation.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessorConfig {
    pub min_pixels: usize,
    pub max_pixels: usize,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge_size: usize,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub rescale_factor: f32,
}

impl Default for ProcessorConfig {
    /// The values of the published Qwen2.5-VL `preprocessor_config.json` (3B and 7B are identical).
    #[allow(clippy::excessive_precision)] // the published decimals verbatim
    fn default() -> Self {
        ProcessorConfig {
            min_pixels: 3136,
            max_pixels: 12_845_056,
            patch_size: 14,
            temporal_patch_size: 2,
            merge_size: 2,
            image_mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
            image_std: [0.268_629_54, 0.261_302_58, 0.275_777_11],
            rescale_factor: 1.0 / 255.0,
        }
    }
}

#[derive(Deserialize)]
struct ProcessorWire {
    min_pixels: Option<usize>,
    max_pixels: Option<usize>,
    size: Option<SizeWire>,
    patch_size: Option<usize>,
    temporal_patch_size: Option<usize>,
    merge_size: Option<usize>,
    image_mean: Option<[f32; 3]>,
    image_std: Option<[f32; 3]>,
    rescale_factor: Option<f32>,
}

#[derive(Deserialize)]
struct SizeWire {
    shortest_edge: Option<usize>,
    longest_edge: Option<usize>,
}

impl ProcessorConfig {
    /// Reads `dir/preprocessor_config.json`, or returns the published defaults when the file is absent.
    pub fn from_dir(dir: &Path) -> Result<Self, Error> {
        let path = dir.join("preprocessor_config.json");
        if !path.exists() {
            return Ok(Self::default());
        }
        let w: ProcessorWire = serde_json::from_value(read_value(&path)?)
            .map_err(|e| Error::Config { path: path.clone(), msg: e.to_string() })?;
        let d = Self::default();
        let size = w.size.as_ref();
        let cfg = ProcessorConfig {
            min_pixels: w.min_pixels.or(size.and_then(|s| s.shortest_edge)).unwrap_or(d.min_pixels),
            max_pixels: w.max_pixels.or(size.and_then(|s| s.longest_edge)).unwrap_or(d.max_pixels),
            patch_size: w.patch_size.unwrap_or(d.patch_size),
            temporal_patch_size: w.temporal_patch_size.unwrap_or(d.temporal_patch_size),
            merge_size: w.merge_size.unwrap_or(d.merge_size),
            image_mean: w.image_mean.unwrap_or(d.image_mean),
            image_std: w.image_std.unwrap_or(d.image_std),
            rescale_factor: w.rescale_factor.unwrap_or(d.rescale_factor),
        };
        if cfg.min_pixels > cfg.max_pixels {
            return Err(Error::Config {
                path,
                msg: format!("min_pixels {} exceeds max_pixels {}", cfg.min_pixels, cfg.max_pixels),
            });
        }
        Ok(cfg)
    }

    /// Checks the processor against the vision tower it feeds.
    pub fn check(&self, vision: &VisionConfig) -> Result<(), String> {
        if self.patch_size != vision.patch_size
            || self.temporal_patch_size != vision.temporal_patch_size
            || self.merge_size != vision.spatial_merge_size
        {
            return Err(format!(
                "preprocessor patch/temporal/merge sizes {}/{}/{} differ from the vision config's {}/{}/{}",
                self.patch_size,
                self.temporal_patch_size,
                self.merge_size,
                vision.patch_size,
                vision.temporal_patch_size,
                vision.spatial_merge_size
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub_3b() -> Value {
        serde_json::json!({
            "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
            "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
            "num_attention_heads": 16, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "hidden_act": "silu",
            "use_sliding_window": false, "sliding_window": 32768, "tie_word_embeddings": true,
            "bos_token_id": 151643, "eos_token_id": 151645, "image_token_id": 151655, "video_token_id": 151656,
            "vision_start_token_id": 151652, "vision_end_token_id": 151653, "vision_token_id": 151654,
            "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                "num_heads": 16, "in_chans": 3, "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2,
                "spatial_patch_size": 14, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
                "tokens_per_second": 2, "temporal_patch_size": 2}
        })
    }

    #[test]
    fn forward_flops_equal_the_benchmark_scripts_count() {
        // Reference numbers printed by scripts/bench/qwen_forward.py's forward_gflop for the same config.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen-tiny/model");
        let cfg = Config::from_dir(&dir).unwrap();
        assert_eq!(cfg.forward_flops(96, 36), 27381760.0);
        assert_eq!(cfg.forward_flops(256, 76), 81121280.0);
    }

    #[test]
    fn published_3b_layout_parses() {
        let c = Config::from_value(&hub_3b()).unwrap();
        assert_eq!(c.text.head_dim, 128);
        assert_eq!(c.text.mrope_section, vec![16, 24, 24]);
        assert_eq!(c.image_token_id, 151655);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.vision.fullatt_block_indexes, vec![7, 15, 23, 31]);
        assert_eq!(c.vision.in_channels, 3);
    }

    #[test]
    fn resaved_nested_layout_parses_to_the_same_config() {
        let hub = hub_3b();
        let mut nested = serde_json::json!({
            "model_type": "qwen2_5_vl", "image_token_id": 151655, "video_token_id": 151656,
            "vision_start_token_id": 151652, "vision_end_token_id": 151653, "tie_word_embeddings": true,
            "vision_config": hub["vision_config"].clone(),
        });
        let mut text = hub.as_object().unwrap().clone();
        for k in ["vision_config", "rope_theta", "rope_scaling", "architectures"] {
            text.remove(k);
        }
        text.insert("model_type".into(), "qwen2_5_vl_text".into());
        text.insert(
            "rope_parameters".into(),
            serde_json::json!({"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0}),
        );
        nested["text_config"] = Value::Object(text);
        let v = nested["vision_config"].as_object_mut().unwrap();
        let chans = v.remove("in_chans").unwrap();
        v.insert("in_channels".into(), chans);
        assert_eq!(Config::from_value(&nested).unwrap(), Config::from_value(&hub).unwrap());
    }

    #[test]
    fn wrong_model_type_and_bad_sections_are_named() {
        let mut v = hub_3b();
        v["model_type"] = "qwen2_vl".into();
        let e = Config::from_value(&v).unwrap_err();
        assert!(e.contains("`qwen2_vl`") && e.contains("qwen2_5_vl"), "{e}");
        let mut v = hub_3b();
        v["rope_scaling"]["mrope_section"] = serde_json::json!([16, 24, 16]);
        assert!(Config::from_value(&v).unwrap_err().contains("mrope_section"));
    }
}

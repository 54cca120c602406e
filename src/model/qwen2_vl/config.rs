//! The `vision_config` of a Qwen2-VL checkpoint, in both saved layouts: the published hub files (`in_chans`,
//! no `hidden_act`) and transformers v5 saves (`in_channels`, `rope_parameters`). The decoder half and the
//! token ids are read by the shared [`crate::model::qwen2_5_vl::Config`].

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::model::qwen2_5_vl::config::{
    check_counts, VisionConfig, DEFAULT_VISION_ROPE_THETA, MAX_LAYERS, MAX_PATCH, MAX_WIDTH,
};

/// `(key, maximum)` of every count in `vision_config`; each must be a whole number in 1..=maximum.
const COUNTS: &[(&str, u64)] = &[
    ("depth", MAX_LAYERS),
    ("embed_dim", MAX_WIDTH),
    ("hidden_size", MAX_WIDTH),
    ("num_heads", MAX_WIDTH),
    ("in_channels", MAX_PATCH),
    ("in_chans", MAX_PATCH),
    ("patch_size", MAX_PATCH),
    ("spatial_merge_size", MAX_PATCH),
    ("temporal_patch_size", MAX_PATCH),
];

/// transformers' `Qwen2VLVisionConfig` defaults where a key may be absent.
#[derive(Deserialize)]
struct Wire {
    depth: usize,
    embed_dim: usize,
    /// The merger's output width (the decoder's hidden size).
    hidden_size: usize,
    num_heads: usize,
    #[serde(default = "default_mlp_ratio")]
    mlp_ratio: f64,
    in_channels: Option<usize>,
    in_chans: Option<usize>,
    #[serde(default = "default_patch")]
    patch_size: usize,
    #[serde(default = "default_two")]
    spatial_merge_size: usize,
    #[serde(default = "default_two")]
    temporal_patch_size: usize,
    hidden_act: Option<String>,
    rope_theta: Option<f64>,
    rope_parameters: Option<Value>,
}

fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_patch() -> usize {
    14
}
fn default_two() -> usize {
    2
}

/// The vision tower's config, checked against the decoder width `text_hidden` it feeds. Every block is a
/// full-attention block (`fullatt_block_indexes` lists all, `window_size` is 0: Qwen2-VL has no windows).
pub fn vision_config(obj: &Map<String, Value>, text_hidden: usize) -> Result<VisionConfig, String> {
    check_counts(obj, "vision_config.", COUNTS)?;
    let w: Wire = serde_json::from_value(Value::Object(obj.clone())).map_err(|e| format!("vision_config: {e}"))?;
    let act = w.hidden_act.as_deref().unwrap_or("quick_gelu");
    if act != "quick_gelu" {
        return Err(format!("vision_config.hidden_act `{act}` is not supported; Qwen2-VL uses `quick_gelu`"));
    }
    // transformers sizes the MLP with `int(embed_dim * mlp_ratio)`, which truncates.
    let intermediate = w.embed_dim as f64 * w.mlp_ratio;
    if !(intermediate.is_finite() && intermediate >= 1.0 && intermediate <= MAX_WIDTH as f64) {
        return Err(format!("vision_config.mlp_ratio {} gives no usable MLP width for embed_dim {}", w.mlp_ratio, w.embed_dim));
    }
    if w.embed_dim % w.num_heads != 0 || (w.embed_dim / w.num_heads) % 4 != 0 {
        return Err(format!(
            "vision embed_dim {} must split into num_heads {} of a head_dim divisible by 4",
            w.embed_dim, w.num_heads
        ));
    }
    if w.hidden_size != text_hidden {
        return Err(format!(
            "vision_config.hidden_size {} (the merger's output) differs from the text hidden_size {text_hidden}",
            w.hidden_size
        ));
    }
    Ok(VisionConfig {
        depth: w.depth,
        hidden_size: w.embed_dim,
        intermediate_size: intermediate as usize,
        num_heads: w.num_heads,
        in_channels: w.in_channels.or(w.in_chans).unwrap_or(3),
        patch_size: w.patch_size,
        spatial_merge_size: w.spatial_merge_size,
        temporal_patch_size: w.temporal_patch_size,
        window_size: 0,
        out_hidden_size: w.hidden_size,
        fullatt_block_indexes: (0..w.depth).collect(),
        rope_theta: w
            .rope_theta
            .or_else(|| w.rope_parameters.as_ref().and_then(|r| r.get("rope_theta")).and_then(Value::as_f64))
            .unwrap_or(DEFAULT_VISION_ROPE_THETA),
        gated_mlp: false,
    })
}

#[cfg(test)]
mod tests {
    use super::super::QWEN2_VL;
    use crate::model::qwen2_5_vl::Config;

    /// Qwen/Qwen2-VL-2B-Instruct's published config.json.
    fn hub_2b() -> serde_json::Value {
        serde_json::json!({
            "architectures": ["Qwen2VLForConditionalGeneration"], "attention_dropout": 0.0,
            "bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652,
            "vision_end_token_id": 151653, "vision_token_id": 151654, "image_token_id": 151655,
            "video_token_id": 151656, "hidden_act": "silu", "hidden_size": 1536, "initializer_range": 0.02,
            "intermediate_size": 8960, "max_position_embeddings": 32768, "max_window_layers": 28,
            "model_type": "qwen2_vl", "num_attention_heads": 12, "num_hidden_layers": 28, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": true,
            "torch_dtype": "bfloat16", "transformers_version": "4.41.2", "use_cache": true,
            "use_sliding_window": false,
            "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_chans": 3,
                "hidden_size": 1536, "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14,
                "temporal_patch_size": 2},
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "vocab_size": 151936
        })
    }

    #[test]
    fn published_2b_layout_parses() {
        let c = Config::from_value_as(&QWEN2_VL, &hub_2b()).unwrap();
        assert_eq!((c.text.hidden_size, c.text.num_hidden_layers, c.text.head_dim), (1536, 28, 128));
        assert_eq!((c.vision.hidden_size, c.vision.intermediate_size, c.vision.out_hidden_size), (1280, 5120, 1536));
        assert_eq!(c.vision.fullatt_block_indexes, (0..32).collect::<Vec<_>>());
        assert_eq!(c.vision.rope_theta, 10_000.0);
        assert!(c.tie_word_embeddings && !c.vision.gated_mlp);
    }

    #[test]
    fn resaved_nested_layout_parses_to_the_same_config() {
        let hub = hub_2b();
        let mut text = hub.as_object().unwrap().clone();
        for k in ["vision_config", "rope_theta", "rope_scaling", "architectures"] {
            text.remove(k);
        }
        text.insert("model_type".into(), "qwen2_vl_text".into());
        text.insert(
            "rope_parameters".into(),
            serde_json::json!({"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0}),
        );
        let mut vision = hub["vision_config"].as_object().unwrap().clone();
        let chans = vision.remove("in_chans").unwrap();
        vision.insert("in_channels".into(), chans);
        vision.insert("hidden_act".into(), "quick_gelu".into());
        vision.insert("rope_parameters".into(), serde_json::json!({"rope_type": "axial", "rope_theta": 10000.0}));
        let nested = serde_json::json!({
            "model_type": "qwen2_vl", "image_token_id": 151655, "video_token_id": 151656,
            "vision_start_token_id": 151652, "vision_end_token_id": 151653, "tie_word_embeddings": true,
            "text_config": text, "vision_config": vision,
        });
        assert_eq!(Config::from_value_as(&QWEN2_VL, &nested).unwrap(), Config::from_value_as(&QWEN2_VL, &hub).unwrap());
    }

    #[test]
    fn qwen2_5_configs_and_bad_vision_keys_are_named() {
        let mut v = hub_2b();
        v["model_type"] = "qwen2_5_vl".into();
        let e = Config::from_value_as(&QWEN2_VL, &v).unwrap_err();
        assert!(e.contains("`qwen2_5_vl`") && e.contains("Qwen2-VL"), "{e}");
        let mut v = hub_2b();
        v["vision_config"]["hidden_act"] = "silu".into();
        assert!(Config::from_value_as(&QWEN2_VL, &v).unwrap_err().contains("quick_gelu"));
        let mut v = hub_2b();
        v["vision_config"]["hidden_size"] = 1280.into();
        assert!(Config::from_value_as(&QWEN2_VL, &v).unwrap_err().contains("merger"));
        let mut v = hub_2b();
        v["vision_config"]["embed_dim"] = 0.into();
        assert!(Config::from_value_as(&QWEN2_VL, &v).unwrap_err().contains("embed_dim"));
    }
}

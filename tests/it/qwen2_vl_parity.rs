//! Qwen2-VL parity against transformers 5.23 (`Qwen2VLForConditionalGeneration`, f32, eager attention) on the
//! committed tiny random-weight fixture (`scripts/make_qwen_fixture.py --family qwen2_vl`), at Qwen2.5-VL's
//! tolerance: max |ours - theirs| / max |theirs| <= 1e-4 per tensor (see `qwen_parity.rs` for why). Every
//! hidden state, the logits, the vision features and every other hook point (vision points in raster order),
//! greedy tokens, steering at the image tokens and at every position while generating, a steered vision
//! block, two images in one prompt; both checkpoint layouts; and `huescan scan` on the fixture's preset.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use huescan::model::qwen2_5_vl::{Qwen25VlModel, Sample};
use huescan::model::{HookPoint, HookSet, Intervention, InterventionOp, Model, Pooling, Positions};

const F32_TOL: f32 = 1e-4;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2-vl-tiny")
}

struct Reference {
    t: HashMap<String, Tensor>,
    meta: serde_json::Value,
}

impl Reference {
    fn load(stem: &str) -> Self {
        let dir = fixture();
        let t = candle_core::safetensors::load(dir.join(format!("{stem}.safetensors")), &Device::Cpu).unwrap();
        let meta = serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{stem}.json"))).unwrap()).unwrap();
        Reference { t, meta }
    }

    fn get(&self, key: &str) -> &Tensor {
        self.t.get(key).unwrap_or_else(|| panic!("reference has no `{key}`"))
    }

    fn ids(&self, key: &str) -> Vec<u32> {
        self.get(key).flatten_all().unwrap().to_vec1::<i64>().unwrap().into_iter().map(|x| x as u32).collect()
    }

    fn sample(&self, s: &str) -> Sample {
        let g = self.get(&format!("{s}.image_grid_thw")).to_vec2::<i64>().unwrap();
        Sample {
            pixel_values: self.get(&format!("{s}.pixel_values")).clone(),
            grids: g.into_iter().map(|r| [r[0] as usize, r[1] as usize, r[2] as usize]).collect(),
            input_ids: self.ids(&format!("{s}.input_ids")),
        }
    }
}

fn load(dir: &Path) -> Qwen25VlModel {
    huescan::model::qwen2_vl::load(dir, DType::F32, &Device::Cpu)
        .unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

/// max |a - b| / max |b|.
fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape");
    let a = a.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale.max(f32::MIN_POSITIVE)
}

fn assert_close(what: &str, a: &Tensor, b: &Tensor) {
    let e = rel_err(a, b);
    eprintln!("qwen2-vl {what}: {e:.3e}");
    assert!(e <= F32_TOL, "{what}: relative error {e:.3e} exceeds {F32_TOL:.0e}");
}

fn check_hidden_states(what: &str, got: &[Tensor], want: &Tensor) {
    assert_eq!(got.len(), want.dim(0).unwrap(), "{what}: L + 1 hidden states");
    for (i, h) in got.iter().enumerate() {
        assert_close(&format!("{what} hidden_states[{i}]"), h, &want.get(i).unwrap());
    }
}

fn check_sample(model: &Qwen25VlModel, r: &Reference, s: &str) {
    let sample = r.sample(s);
    let feats = model.image_features(&sample.pixel_values, &sample.grids).unwrap();
    assert_close(&format!("{s} image features"), &feats, r.get(&format!("{s}.image_features")));
    let out = model
        .forward_hidden_states(&sample.pixel_values, &sample.grids, &sample.input_ids, &HookSet::default())
        .unwrap();
    check_hidden_states(s, &out.hidden_states, r.get(&format!("{s}.hidden_states")));
    assert_close(&format!("{s} logits"), &out.logits, r.get(&format!("{s}.logits")));
}

fn add(point: HookPoint, positions: Positions, vector: Vec<f32>, alpha: f32) -> HookSet {
    HookSet {
        interventions: vec![Intervention { point, positions, sample: None, op: InterventionOp::Add { vector, alpha } }],
        ..HookSet::default()
    }
}

#[test]
fn qwen2_vl_hidden_states_logits_and_vision_match_transformers_in_both_layouts() {
    let r = Reference::load("reference");
    assert_eq!(r.meta["architecture"], "Qwen2VLForConditionalGeneration");
    let model = load(&fixture().join("model"));
    assert_eq!(model.n_layers(), 3);
    for s in ["a", "b"] {
        check_sample(&model, &r, s);
    }
    // The same weights under model.language_model.* / model.visual.*, config in the published flat layout.
    check_sample(&load(&fixture().join("model-newnames")), &r, "b");
}

#[test]
fn qwen2_vl_greedy_tokens_and_steering_match_transformers() {
    let r = Reference::load("reference");
    let model = load(&fixture().join("model"));
    for s in ["a", "b"] {
        let gaps = r.meta[s]["generation_top2_gaps"].as_array().unwrap();
        assert!(gaps.iter().all(|g| g.as_f64().unwrap() > 1e-2), "reference gaps too small: {gaps:?}");
        let want = r.ids(&format!("{s}.generated"));
        assert_eq!(model.generate(&r.sample(s), want.len(), &HookSet::default()).unwrap(), want, "sample {s}");
    }
    // alpha * v after decoder block 1 at the image tokens, then at every position while generating.
    let spec = &r.meta["steering"];
    let block = spec["block"].as_u64().unwrap() as usize;
    let (v, alpha) = (r.get("b.steer.vector").to_vec1::<f32>().unwrap(), spec["alpha"].as_f64().unwrap() as f32);
    let s = r.sample("b");
    let hooks = add(HookPoint::ResidPost(block), Positions::ImageTokens, v.clone(), alpha);
    let out = model.forward_hidden_states(&s.pixel_values, &s.grids, &s.input_ids, &hooks).unwrap();
    check_hidden_states("steered", &out.hidden_states, r.get("b.steer.hidden_states"));
    assert_close("steered logits", &out.logits, r.get("b.steer.logits"));
    assert!(rel_err(&out.logits, r.get("b.logits")) > 1e-2, "the steering must change the logits");
    let want = r.ids("b.steer_all.generated");
    let got = model.generate(&s, want.len(), &add(HookPoint::ResidPost(block), Positions::All, v, alpha)).unwrap();
    assert_eq!(got, want);
    assert_ne!(got, r.ids("b.generated"), "steering must change this generation, or the test proves nothing");
}

#[test]
fn qwen2_vl_two_images_in_one_prompt_match_transformers() {
    let r = Reference::load("reference");
    let model = load(&fixture().join("model"));
    let s = r.sample("ab");
    assert_eq!(s.grids.len(), 2);
    let out = model.forward_hidden_states(&s.pixel_values, &s.grids, &s.input_ids, &HookSet::default()).unwrap();
    check_hidden_states("two-image", &out.hidden_states, r.get("ab.hidden_states"));
    assert_close("two-image logits", &out.logits, r.get("ab.logits"));
}

#[test]
fn qwen2_vl_every_hook_point_and_a_steered_vision_block_match_transformers() {
    let (r, p) = (Reference::load("reference"), Reference::load("reference_points"));
    let model = load(&fixture().join("model"));
    let all = model.all_hook_points();
    assert_eq!(all.len(), 4 + 5 + 3 * 3 + 1, "4 hidden states, patch embed + 3 blocks + merger, 3 per block, raw last");
    let caps = model.forward_samples(&[r.sample("b")], &HookSet::capture(all.clone()), Pooling::Tokens).unwrap();
    for point in &all {
        let name = point.to_string();
        let got = caps.layers[point].squeeze(0).unwrap();
        assert_eq!(got.dim(1).unwrap(), model.width(point).unwrap(), "{name} width");
        let want = match point {
            HookPoint::ResidPre(0) => r.get("b.hidden_states").get(0).unwrap(),
            _ => p.get(&format!("b.point.{name}")).clone(),
        };
        assert_close(&name, &got, &want);
    }
    assert!(model.module_path(&HookPoint::VisualResidPost(0)).unwrap().contains("processor order"));
    let spec = &p.meta["steer_vision"];
    let patches = spec["patches_raster"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let hooks = add(
        spec["hook_point"].as_str().unwrap().parse().unwrap(),
        Positions::Indices(patches),
        p.get("b.steer_vision.vector").to_vec1::<f32>().unwrap(),
        spec["alpha"].as_f64().unwrap() as f32,
    );
    let s = r.sample("b");
    let out = model.forward_hidden_states(&s.pixel_values, &s.grids, &s.input_ids, &hooks).unwrap();
    check_hidden_states("vision-steered", &out.hidden_states, p.get("b.steer_vision.hidden_states"));
    assert_close("vision-steered logits", &out.logits, p.get("b.steer_vision.logits"));
}

#[test]
fn qwen2_vl_is_loaded_through_the_registry_and_a_qwen2_5_loader_refuses_it() {
    let opts = huescan::model::load::LoadOptions {
        device: Device::Cpu,
        dtype: None,
        revision: None,
        max_pixels: None,
        prompt: None,
        hub: huescan::model::hub::HubSettings {
            cache_dir: std::env::temp_dir(),
            token: None,
            offline: true,
            endpoint: None,
        },
        autoencoder_weights: None,
        autoencoder: Default::default(),
    };
    let loaded = huescan::model::load::load("qwen2-vl-tiny-random", &opts).unwrap();
    let text = loaded.model.text_output().expect("Qwen2-VL answers in text");
    assert_eq!(text.model_type(), "qwen2_vl");
    assert!(!text.has_tokenizer(), "the fixture runs a fixed prompt of ids");
    assert_eq!(loaded.model.hook_points().len(), 4);
    let err = Qwen25VlModel::load(&fixture().join("model"), DType::F32, &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("`qwen2_vl`") && err.contains("Qwen2.5-VL"), "{err}");
}

#[test]
fn scan_runs_end_to_end_on_the_qwen2_vl_fixture() {
    let dir = crate::common::fresh_dir("qwen2-vl", "scan");
    let out = crate::common::huescan()
        .args(["scan", "qwen2-vl-tiny-random", "--sets", "gap-teal-blue", "--permutations", "10", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in [
        "run.json",
        "activations/gap-teal-blue/manifest.json",
        "analysis/gap-teal-blue/summary.json",
        "report/index.html",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let manifest = std::fs::read_to_string(dir.join("activations/gap-teal-blue/manifest.json")).unwrap();
    assert!(manifest.contains("qwen2-vl-tiny"), "the store names the Qwen2-VL fixture");
    std::fs::remove_dir_all(dir).unwrap();
}

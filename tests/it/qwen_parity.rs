//! Qwen2.5-VL parity against transformers 5.23 (f32, eager attention) on the committed tiny random-weight
//! fixture (`scripts/make_qwen_fixture.py`). No Python is needed here.
//!
//! Tolerance, f32: max |ours - theirs| / max |theirs| <= 1e-4 per tensor. Both sides compute in f32 with the
//! same operation order up to matmul blocking and transcendental implementations, which differ in the last
//! bits (~1e-7 relative per op); through a few layers that stays below 1e-5 in practice, so 1e-4 leaves margin
//! while any real bug (a wrong rotary section, GELU flavour, norm order, window permutation) shows as 1e-2..1.
//! bf16: 1e-1 relative to the f32 reference. bf16 keeps 8 mantissa bits (~4e-3 per rounding) and this fixture's
//! random weights amplify: transformers' own bf16 run of it lands 2.7e-2 (vision features) to 6.1e-2 (last hidden
//! state) from its f32 run; ours lands 4.0e-2 to 6.9e-2. f16 (11 mantissa bits): 2e-2; ours lands 3.8e-3 to 8.6e-3.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use huescan::model::qwen2_5_vl::{resize_bicubic_pil, ImageProcessor, Prompt, Qwen25VlModel, ResizeFilter, Sample};
use huescan::model::{HookPoint, HookSet, Intervention, InterventionOp, Model, Pooling, Positions};

const F32_TOL: f32 = 1e-4;
const BF16_TOL: f32 = 1e-1;
const F16_TOL: f32 = 2e-2;

use crate::common::qwen_fixture as fixture;

struct Reference {
    t: HashMap<String, Tensor>,
    meta: serde_json::Value,
}

impl Reference {
    fn load() -> Self {
        let t = candle_core::safetensors::load(fixture().join("reference.safetensors"), &Device::Cpu).unwrap();
        let meta = serde_json::from_str(&std::fs::read_to_string(fixture().join("reference.json")).unwrap()).unwrap();
        Reference { t, meta }
    }

    fn get(&self, key: &str) -> &Tensor {
        self.t.get(key).unwrap_or_else(|| panic!("reference has no `{key}`"))
    }

    fn ids(&self, key: &str) -> Vec<u32> {
        self.get(key).flatten_all().unwrap().to_vec1::<i64>().unwrap().into_iter().map(|x| x as u32).collect()
    }

    fn grids(&self, s: &str) -> Vec<[usize; 3]> {
        let g = self.get(&format!("{s}.image_grid_thw")).to_vec2::<i64>().unwrap();
        g.into_iter().map(|r| [r[0] as usize, r[1] as usize, r[2] as usize]).collect()
    }

    fn sample(&self, s: &str) -> Sample {
        Sample {
            pixel_values: self.get(&format!("{s}.pixel_values")).clone(),
            grids: self.grids(s),
            input_ids: self.ids(&format!("{s}.input_ids")),
        }
    }
}

fn load(dir: &Path, dtype: DType) -> Qwen25VlModel {
    Qwen25VlModel::load(dir, dtype, &crate::common::device())
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

fn assert_close(what: &str, a: &Tensor, b: &Tensor, tol: f32) {
    let e = rel_err(a, b);
    eprintln!("{what}: {e:.3e}");
    assert!(e <= tol, "{what}: relative error {e:.3e} exceeds {tol:.0e}");
}

fn check_sample(model: &Qwen25VlModel, r: &Reference, s: &str, tol: f32) {
    let sample = r.sample(s);
    let feats = model.image_features(&sample.pixel_values, &sample.grids).unwrap();
    assert_close(&format!("{s} image features"), &feats, r.get(&format!("{s}.image_features")), tol);
    let out = model
        .forward_hidden_states(&sample.pixel_values, &sample.grids, &sample.input_ids, &HookSet::default())
        .unwrap();
    let want = r.get(&format!("{s}.hidden_states"));
    assert_eq!(out.hidden_states.len(), want.dim(0).unwrap(), "L + 1 hidden states");
    for (i, h) in out.hidden_states.iter().enumerate() {
        assert_close(&format!("{s} hidden_states[{i}]"), h, &want.get(i).unwrap(), tol);
    }
    assert_close(&format!("{s} logits"), &out.logits, r.get(&format!("{s}.logits")), tol);
}

#[test]
fn f32_hidden_states_logits_and_vision_match_transformers_sharded_legacy_names() {
    let r = Reference::load();
    let model = load(&fixture().join("model"), DType::F32);
    assert_eq!(model.n_layers() + 1, 4);
    for s in ["a", "b"] {
        check_sample(&model, &r, s, F32_TOL);
    }
}

#[test]
fn new_tensor_names_and_hub_config_layout_load_the_same_model() {
    let r = Reference::load();
    let model = load(&fixture().join("model-newnames"), DType::F32);
    check_sample(&model, &r, "b", F32_TOL);
}

#[test]
fn mrope_positions_and_delta_match_get_rope_index() {
    use huescan::model::qwen2_5_vl::rope::rope_index;
    let r = Reference::load();
    for s in ["a", "b"] {
        let p = rope_index(&r.ids(&format!("{s}.input_ids")), &r.grids(s), 505, 2).unwrap();
        let want = r.get(&format!("{s}.position_ids")).to_vec3::<i64>().unwrap();
        for (axis, (ours, theirs)) in p.axes.iter().zip(&want).enumerate() {
            assert_eq!(ours, &theirs[0], "sample {s} axis {axis}");
        }
        assert_eq!(p.delta, r.ids(&format!("{s}.rope_delta"))[0] as i32 as i64, "sample {s} delta");
    }
}

#[test]
fn greedy_generation_matches_transformers_token_for_token() {
    let r = Reference::load();
    let model = load(&fixture().join("model"), DType::F32);
    for s in ["a", "b"] {
        // The smallest top-2 logit gap must dwarf the tolerance, or token equality would be luck.
        let gaps = r.meta[s]["generation_top2_gaps"].as_array().unwrap();
        assert!(gaps.iter().all(|g| g.as_f64().unwrap() > 1e-2), "reference gaps too small: {gaps:?}");
        let want = r.ids(&format!("{s}.generated"));
        let got = model.generate(&r.sample(s), want.len(), &HookSet::default()).unwrap();
        assert_eq!(got, want, "sample {s}");
    }
}

fn steering_hooks(r: &Reference) -> HookSet {
    let v = r.get("b.steer.vector").to_vec1::<f32>().unwrap();
    let alpha = r.meta["steering"]["alpha"].as_f64().unwrap() as f32;
    let block = r.meta["steering"]["block"].as_u64().unwrap() as usize;
    HookSet {
        capture: vec![],
        interventions: vec![Intervention {
            point: HookPoint::ResidPost(block),
            positions: Positions::ImageTokens,
            sample: None,
            op: InterventionOp::Add { vector: v, alpha },
        }],
        stop_early: false,
    }
}

#[test]
fn steering_at_block_1_image_tokens_matches_the_wrapped_layer_reference() {
    let r = Reference::load();
    let model = load(&fixture().join("model"), DType::F32);
    let s = r.sample("b");
    let out = model.forward_hidden_states(&s.pixel_values, &s.grids, &s.input_ids, &steering_hooks(&r)).unwrap();
    let want = r.get("b.steer.hidden_states");
    let plain = r.get("b.hidden_states");
    for (i, h) in out.hidden_states.iter().enumerate() {
        assert_close(&format!("steered hidden_states[{i}]"), h, &want.get(i).unwrap(), F32_TOL);
        // Captures are post-intervention: steering at block 1 shows from HF index 2 on, and nowhere before.
        let moved = rel_err(h, &plain.get(i).unwrap()) > 1e-3;
        assert_eq!(moved, i >= 2, "hidden_states[{i}] moved = {moved}");
    }
    assert_close("steered logits", &out.logits, r.get("b.steer.logits"), F32_TOL);
}

#[test]
fn steering_every_position_during_generation_matches_transformers() {
    let r = Reference::load();
    let model = load(&fixture().join("model"), DType::F32);
    let gaps = r.meta["steering_all_positions_generation_top2_gaps"].as_array().unwrap();
    assert!(gaps.iter().all(|g| g.as_f64().unwrap() > 1e-2), "reference gaps too small: {gaps:?}");
    let mut hooks = steering_hooks(&r);
    hooks.interventions[0].positions = Positions::All;
    let want = r.ids("b.steer_all.generated");
    let got = model.generate(&r.sample("b"), want.len(), &hooks).unwrap();
    assert_eq!(got, want);
    assert_ne!(got, r.ids("b.generated"), "steering must change this generation, or the test proves nothing");
}

#[test]
fn two_images_in_one_prompt_match_transformers() {
    use huescan::model::qwen2_5_vl::rope::rope_index;
    let r = Reference::load();
    let model = load(&fixture().join("model"), DType::F32);
    let s = r.sample("ab");
    assert_eq!(s.grids.len(), 2);
    let p = rope_index(&s.input_ids, &s.grids, 505, 2).unwrap();
    let want = r.get("ab.position_ids").to_vec3::<i64>().unwrap();
    for (axis, (ours, theirs)) in p.axes.iter().zip(&want).enumerate() {
        assert_eq!(ours, &theirs[0], "axis {axis}");
    }
    let out = model.forward_hidden_states(&s.pixel_values, &s.grids, &s.input_ids, &HookSet::default()).unwrap();
    let want = r.get("ab.hidden_states");
    for (i, h) in out.hidden_states.iter().enumerate() {
        assert_close(&format!("two-image hidden_states[{i}]"), h, &want.get(i).unwrap(), F32_TOL);
    }
    assert_close("two-image logits", &out.logits, r.get("ab.logits"), F32_TOL);
}

#[test]
fn bf16_and_f16_stay_within_the_loose_tolerance() {
    let r = Reference::load();
    for (dtype, tol) in [(DType::BF16, BF16_TOL), (DType::F16, F16_TOL)] {
        let model = load(&fixture().join("model"), dtype);
        check_sample(&model, &r, "b", tol);
    }
}

#[test]
fn batch_with_padding_equals_batch_of_one() {
    let r = Reference::load();
    let model = load(&fixture().join("model"), DType::F32);
    let points = model.hook_points();
    let hooks = HookSet::capture(points.clone());
    let (a, b) = (r.sample("a"), r.sample("b"));
    assert_ne!(a.input_ids.len(), b.input_ids.len(), "the batch must need padding");
    for pooling in [Pooling::ImageMean, Pooling::Last] {
        let both = model.forward_samples(&[a.clone(), b.clone()], &hooks, pooling).unwrap();
        for (row, s) in [(0, &a), (1, &b)] {
            let one = model.forward_samples(std::slice::from_ref(s), &hooks, pooling).unwrap();
            for p in &points {
                let x = both.layers[p].get(row).unwrap();
                assert_close(&format!("{pooling} {p} row {row}"), &x, &one.layers[p].get(0).unwrap(), 1e-5);
            }
            let (x, y) =
                (both.logits.as_ref().unwrap().get(row).unwrap(), one.logits.as_ref().unwrap().get(0).unwrap());
            assert_close("batched logits", &x, &y, 1e-5);
        }
    }
}

#[test]
fn a_vision_intervention_for_one_sample_of_a_batch_touches_only_that_samples_patches() {
    let r = Reference::load();
    let model = load(&fixture().join("model"), DType::F32);
    let (a, b) = (r.sample("a"), r.sample("b"));
    let steer = |sample: Option<usize>| HookSet {
        capture: vec![HookPoint::VisualResidPost(3), HookPoint::VisualMergerOut, HookPoint::ResidPost(1)],
        interventions: vec![Intervention {
            point: HookPoint::VisualResidPost(1),
            positions: Positions::Indices(vec![0, 3, 7]),
            sample,
            op: InterventionOp::Add { vector: vec![0.5; 32], alpha: 3.0 },
        }],
        stop_early: false,
    };
    let both = model.forward_samples(&[a.clone(), b.clone()], &steer(Some(1)), Pooling::ImageMean).unwrap();
    let a_clean = model.forward_samples(&[a], &HookSet::capture(steer(None).capture), Pooling::ImageMean).unwrap();
    let b_steered = model.forward_samples(std::slice::from_ref(&b), &steer(Some(0)), Pooling::ImageMean).unwrap();
    let b_clean = model.forward_samples(&[b], &HookSet::capture(steer(None).capture), Pooling::ImageMean).unwrap();
    for p in &steer(None).capture {
        assert_close(
            &format!("{p} row 0 (not steered)"),
            &both.layers[p].get(0).unwrap(),
            &a_clean.layers[p].get(0).unwrap(),
            1e-5,
        );
        assert_close(
            &format!("{p} row 1 (steered)"),
            &both.layers[p].get(1).unwrap(),
            &b_steered.layers[p].get(0).unwrap(),
            1e-5,
        );
        assert!(rel_err(&b_steered.layers[p], &b_clean.layers[p]) > 1e-3, "{p}: the intervention changes sample b");
    }
}

#[test]
fn model_trait_runs_processor_prompt_and_pooling_end_to_end() {
    let r = Reference::load();
    let prompt = r.meta["a"]["prompt_ids"].as_array().unwrap();
    let ids: Vec<u32> = prompt.iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let first = ids.iter().position(|&i| i == 505).unwrap();
    let last = ids.iter().rposition(|&i| i == 505).unwrap();
    let model = load(&fixture().join("model"), DType::F32)
        .with_prompt(Prompt::Ids { prefix: ids[..first].to_vec(), suffix: ids[last + 1..].to_vec() });
    assert_eq!(model.hook_points().len(), 4);
    assert_eq!(model.hook_points()[3], HookPoint::LnFinalOut);
    // Image a is 56x56: no resize, so our processor reproduces transformers' pixels and the model its states.
    let img = image::open(fixture().join("image_a.png")).unwrap().to_rgb8();
    let hooks = HookSet::capture(model.hook_points());
    let want = r.get("a.hidden_states");
    let caps = model.forward(std::slice::from_ref(&img), &hooks, Pooling::Last).unwrap();
    for (i, p) in model.hook_points().iter().enumerate() {
        let w = want.get(i).unwrap().i(ids.len() - 1).unwrap().unsqueeze(0).unwrap();
        assert_close(&format!("last-token {p}"), &caps.layers[p], &w, F32_TOL);
    }
    let caps = model.forward(&[img], &hooks, Pooling::ImageMean).unwrap();
    let w = want.get(2).unwrap().narrow(0, first, last + 1 - first).unwrap().mean(0).unwrap().unsqueeze(0).unwrap();
    assert_close("image-mean blocks.1.hook_resid_post", &caps.layers[&HookPoint::ResidPost(1)], &w, F32_TOL);
    let err = model.forward(&[], &HookSet::capture([HookPoint::ResidPost(3)]), Pooling::Last).unwrap_err();
    assert!(err.to_string().contains("blocks.3.hook_resid_post"), "{err}");
    let err = model.forward(&[], &HookSet::capture([HookPoint::VisualResidPost(4)]), Pooling::Last).unwrap_err();
    assert!(err.to_string().contains("visual.blocks.4.hook_resid_post"), "{err}");
    let err = model.forward(&[], &HookSet::capture([HookPoint::ResidPre(1)]), Pooling::Last).unwrap_err();
    assert!(err.to_string().contains("blocks.1.hook_resid_pre"), "{err}");
}

#[test]
fn stopping_after_the_last_captured_block_changes_no_capture_and_drops_only_the_logits() {
    let r = Reference::load();
    let model = load(&fixture().join("model"), DType::F32);
    let s = r.sample("b");
    let early_points = [HookPoint::ResidPre(0), HookPoint::ResidPost(0)];
    let full = model.forward_samples(std::slice::from_ref(&s), &HookSet::capture(model.hook_points()), Pooling::Tokens);
    let full = full.unwrap();
    let hooks = HookSet { stop_early: true, ..HookSet::capture(early_points.clone()) };
    assert_eq!(hooks.blocks_needed(model.n_layers()), Some(1));
    let early = model.forward_samples(std::slice::from_ref(&s), &hooks, Pooling::Tokens).unwrap();
    for p in &early_points {
        // The same blocks ran on the same inputs: bit-identical, not merely close.
        assert_eq!(rel_err(&early.layers[p], &full.layers[p]), 0.0, "{p}");
    }
    assert!(early.logits.is_none(), "an early stop computes no logits");
    assert!(full.logits.is_some());
    // Asking for the final norm runs everything, logits included.
    let hooks = HookSet { stop_early: true, ..HookSet::capture([HookPoint::LnFinalOut]) };
    assert_eq!(hooks.blocks_needed(model.n_layers()), None);
    let last = model.forward_samples(std::slice::from_ref(&s), &hooks, Pooling::Tokens).unwrap();
    assert!(last.logits.is_some());
    assert_eq!(rel_err(&last.layers[&HookPoint::LnFinalOut], &full.layers[&HookPoint::LnFinalOut]), 0.0);
}

/// Largest per-element difference between our pixel values and transformers', in 1/255 levels of the input
/// (the normalised difference times std, per channel).
fn processor_diff_levels(proc: &ImageProcessor, r: &Reference, s: &str) -> f32 {
    let img = image::open(fixture().join(format!("image_{s}.png"))).unwrap().to_rgb8();
    let p = proc.preprocess(&img).unwrap();
    assert_eq!(vec![p.grid_thw], r.grids(s), "sample {s} grid");
    let theirs = r.get(&format!("{s}.pixel_values")).flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let per_channel = p.patch_dim / 3;
    p.pixel_values
        .iter()
        .zip(&theirs)
        .enumerate()
        .map(|(i, (a, b))| (a - b).abs() * proc.cfg.image_std[(i % p.patch_dim) / per_channel] * 255.0)
        .fold(0f32, f32::max)
}

#[test]
fn processor_reproduces_transformers_pil_pixels() {
    let r = Reference::load();
    let model = load(&fixture().join("model"), DType::F32);
    let mut proc = model.processor().clone();
    // Image a needs no resize; image b is shrunk 126x182 -> 112x168 and has per-pixel noise, the hard case.
    // Pillow-exact bicubic: identical bytes, so only f32 normalisation rounding remains (<< 1 level).
    for s in ["a", "b"] {
        let d = processor_diff_levels(&proc, &r, s);
        assert!(d < 1e-3, "sample {s}: {d} levels");
    }
    // The image crate's CatmullRom: same kernel, other rounding; measured 3 levels on image b.
    proc.filter = ResizeFilter::CatmullRom;
    let d = processor_diff_levels(&proc, &r, "b");
    assert!(d <= 3.0 + 1e-3, "catmull-rom: {d} levels");
}

#[test]
fn bicubic_resize_is_bit_exact_with_pillow_12_up_down_one_axis_and_tall() {
    let t = candle_core::safetensors::load(fixture().join("resize_cases.safetensors"), &Device::Cpu).unwrap();
    let n = t.keys().filter(|k| k.ends_with(".src")).count();
    assert!(n >= 8, "fixture has {n} resize cases");
    for i in 0..n {
        let (src, pil) = (&t[&format!("case{i}.src")], &t[&format!("case{i}.pil")]);
        let (h, w, _) = src.dims3().unwrap();
        let (th, tw, _) = pil.dims3().unwrap();
        let img =
            image::RgbImage::from_raw(w as u32, h as u32, src.flatten_all().unwrap().to_vec1::<u8>().unwrap()).unwrap();
        let ours = resize_bicubic_pil(&img, tw as u32, th as u32);
        let want = pil.flatten_all().unwrap().to_vec1::<u8>().unwrap();
        let differing = ours.as_raw().iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "case {i}: {h}x{w} -> {th}x{tw}");
    }
}

#[test]
fn tied_head_reuses_the_embedding_matrix() {
    let r = Reference::load();
    let src = fixture().join("model-newnames");
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(tensors.remove("lm_head.weight").is_some());
    let embed = tensors["model.language_model.embed_tokens.weight"].clone();
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["tie_word_embeddings"] = true.into();
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(src.join("preprocessor_config.json"), dir.path().join("preprocessor_config.json")).unwrap();
    let model = load(dir.path(), DType::F32);
    let s = r.sample("b");
    let out = model.forward_hidden_states(&s.pixel_values, &s.grids, &s.input_ids, &HookSet::default()).unwrap();
    let last = r.get("b.hidden_states").get(3).unwrap();
    let want = last.matmul(&embed.t().unwrap()).unwrap();
    assert_close("tied logits", &out.logits, &want, F32_TOL);
}

/// `reference_points.*`: transformers' forward hooks at every point beyond the hidden states.
fn points_reference() -> Reference {
    let dir = fixture();
    let t = candle_core::safetensors::load(dir.join("reference_points.safetensors"), &Device::Cpu).unwrap();
    let meta = serde_json::from_str(&std::fs::read_to_string(dir.join("reference_points.json")).unwrap()).unwrap();
    Reference { t, meta }
}

fn ids_of(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<i64>().unwrap().into_iter().map(|x| x as u32).collect()
}

#[test]
fn every_hook_point_matches_a_transformers_forward_hook() {
    let (r, p) = (Reference::load(), points_reference());
    let model = load(&fixture().join("model"), DType::F32);
    let all = model.all_hook_points();
    assert_eq!(all.len(), 4 + 6 + 3 * 3 + 1, "4 hidden states, patch embed + 4 blocks + merger, 3 per block, raw last");
    let caps = model.forward_samples(&[r.sample("b")], &HookSet::capture(all.clone()), Pooling::Tokens).unwrap();
    let named: Vec<String> =
        p.meta["points"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    for point in &all {
        let name = point.to_string();
        let got = caps.layers[point].squeeze(0).unwrap();
        assert_eq!(got.dim(1).unwrap(), model.width(point).unwrap(), "{name} width");
        if *point == HookPoint::ResidPre(0) {
            assert_close(&name, &got, &r.get("b.hidden_states").get(0).unwrap(), F32_TOL);
            continue;
        }
        assert!(named.contains(&name), "the fixture has no transformers reference for `{name}`");
        assert_close(&name, &got, p.get(&format!("b.point.{name}")), F32_TOL);
        assert!(model.module_path(point).unwrap().starts_with("model."), "{name}");
    }
    // Image-mean pooling of a vision point is the mean over the image's patches.
    let pooled = model
        .forward_samples(&[r.sample("b")], &HookSet::capture([HookPoint::VisualResidPost(1)]), Pooling::ImageMean)
        .unwrap();
    let want = p.get("b.point.visual.blocks.1.hook_resid_post").mean(0).unwrap().unsqueeze(0).unwrap();
    assert_close("image-mean visual.blocks.1", &pooled.layers[&HookPoint::VisualResidPost(1)], &want, F32_TOL);
    let err = model
        .forward_samples(&[r.sample("b")], &HookSet::capture([HookPoint::VisualMergerOut]), Pooling::Last)
        .unwrap_err();
    assert!(err.to_string().contains("no last prompt token"), "{err}");
}

#[test]
fn capturing_every_point_changes_no_hidden_state_bit() {
    let r = Reference::load();
    let model = load(&fixture().join("model"), DType::F32);
    let s = r.sample("b");
    let plain =
        model.forward_samples(std::slice::from_ref(&s), &HookSet::capture(model.hook_points()), Pooling::Tokens);
    let all = model.forward_samples(&[s], &HookSet::capture(model.all_hook_points()), Pooling::Tokens).unwrap();
    for (p, t) in &plain.unwrap().layers {
        assert_eq!(rel_err(t, &all.layers[p]), 0.0, "{p}");
    }
}

#[test]
fn steering_a_vision_block_at_chosen_patches_matches_transformers() {
    let (r, p) = (Reference::load(), points_reference());
    let model = load(&fixture().join("model"), DType::F32);
    let spec = &p.meta["steer_vision"];
    let point: HookPoint = spec["hook_point"].as_str().unwrap().parse().unwrap();
    let patches: Vec<usize> =
        spec["patches_raster"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let hooks = HookSet {
        interventions: vec![Intervention {
            point,
            positions: Positions::Indices(patches),
            sample: None,
            op: InterventionOp::Add {
                vector: p.get("b.steer_vision.vector").to_vec1::<f32>().unwrap(),
                alpha: spec["alpha"].as_f64().unwrap() as f32,
            },
        }],
        ..HookSet::default()
    };
    let s = r.sample("b");
    let out = model.forward_hidden_states(&s.pixel_values, &s.grids, &s.input_ids, &hooks).unwrap();
    let want = p.get("b.steer_vision.hidden_states");
    let clean = r.get("b.hidden_states");
    for (i, h) in out.hidden_states.iter().enumerate() {
        assert_close(&format!("vision-steered hidden_states[{i}]"), h, &want.get(i).unwrap(), F32_TOL);
    }
    assert!(rel_err(&want.get(0).unwrap(), &clean.get(0).unwrap()) > 1e-2, "the steering must change the prompt");
    assert_close("vision-steered logits", &out.logits, p.get("b.steer_vision.logits"), F32_TOL);
    let mut bad = hooks.clone();
    bad.interventions[0].positions = Positions::Indices(vec![96]);
    let err = model.forward_hidden_states(&s.pixel_values, &s.grids, &s.input_ids, &bad).unwrap_err();
    assert!(err.to_string().contains("96 rows"), "{err}");
}

#[test]
fn steering_the_embeddings_a_block_mlp_and_the_final_norm_applies_in_every_decoding_step() {
    let (r, p) = (Reference::load(), points_reference());
    let model = load(&fixture().join("model"), DType::F32);
    let s = r.sample("b");
    let spec = &p.meta["steer_decode"];
    let vector = p.get("b.steer_decode.vector").to_vec1::<f32>().unwrap();
    let alpha = spec["alpha"].as_f64().unwrap() as f32;
    let n_new = r.ids("b.generated").len();
    for name in spec["points"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()) {
        let steer = |positions: Positions| HookSet {
            interventions: vec![Intervention {
                point: name.parse().unwrap(),
                positions,
                sample: None,
                op: InterventionOp::Add { vector: vector.clone(), alpha },
            }],
            ..HookSet::default()
        };
        let got = model.generate(&s, n_new, &steer(Positions::All)).unwrap();
        assert_eq!(got, ids_of(p.get(&format!("b.steer_decode.{name}.generated"))), "{name}");
        // The same change at the prompt positions only is a different run: the generated steps were steered.
        let prompt_only = model.generate(&s, n_new, &steer(Positions::Indices((0..s.input_ids.len()).collect())));
        assert_ne!(prompt_only.unwrap(), got, "{name}: steering reached the generated tokens");
    }
}

#[test]
fn a_text_only_prompt_matches_transformers() {
    let p = points_reference();
    let model = load(&fixture().join("model"), DType::F32);
    let s = model.text_sample(&ids_of(p.get("text.input_ids")));
    let out = model.forward_hidden_states(&s.pixel_values, &s.grids, &s.input_ids, &HookSet::default()).unwrap();
    let want = p.get("text.hidden_states");
    assert_eq!(out.hidden_states.len(), want.dim(0).unwrap());
    for (i, h) in out.hidden_states.iter().enumerate() {
        assert_close(&format!("text-only hidden_states[{i}]"), h, &want.get(i).unwrap(), F32_TOL);
    }
    assert_close("text-only logits", &out.logits, p.get("text.logits"), F32_TOL);
    let want_gen = ids_of(p.get("text.generated"));
    assert_eq!(model.generate(&s, want_gen.len(), &HookSet::default()).unwrap(), want_gen);
    let err = model.forward_samples(
        std::slice::from_ref(&s),
        &HookSet::capture([HookPoint::VisualPatchEmbed]),
        Pooling::Tokens,
    );
    assert!(err.unwrap_err().to_string().contains("no sample of the batch has an image"));
    for (point, positions) in
        [(HookPoint::VisualResidPost(0), Positions::All), (HookPoint::ResidPost(0), Positions::ImageTokens)]
    {
        let hooks = HookSet {
            interventions: vec![Intervention {
                point: point.clone(),
                positions,
                sample: None,
                op: InterventionOp::Add { vector: vec![1.0; model.width(&point).unwrap()], alpha: 1.0 },
            }],
            ..HookSet::default()
        };
        let err = model.generate(&s, 2, &hooks).unwrap_err().to_string();
        assert!(err.contains("has no image"), "{point}: {err}");
    }
}

#[test]
fn steering_an_attention_output_or_the_mid_stream_matches_transformers() {
    let (r, p) = (Reference::load(), points_reference());
    let model = load(&fixture().join("model"), DType::F32);
    let s = r.sample("b");
    let spec = &p.meta["steer_attn"];
    let want = p.get("b.steer_attn.hidden_states");
    assert!(rel_err(&want.get(1).unwrap(), &r.get("b.hidden_states").get(1).unwrap()) > 1e-2, "a visible change");
    for name in spec["hook_points"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()) {
        let hooks = HookSet {
            interventions: vec![Intervention {
                point: name.parse().unwrap(),
                positions: Positions::ImageTokens,
                sample: None,
                op: InterventionOp::Add {
                    vector: p.get("b.steer_attn.vector").to_vec1::<f32>().unwrap(),
                    alpha: spec["alpha"].as_f64().unwrap() as f32,
                },
            }],
            ..HookSet::default()
        };
        let out = model.forward_hidden_states(&s.pixel_values, &s.grids, &s.input_ids, &hooks).unwrap();
        for (i, h) in out.hidden_states.iter().enumerate() {
            assert_close(&format!("{name}-steered hidden_states[{i}]"), h, &want.get(i).unwrap(), F32_TOL);
        }
        assert_close(&format!("{name}-steered logits"), &out.logits, p.get("b.steer_attn.logits"), F32_TOL);
    }
}

#[test]
fn image_mean_extraction_cut_after_the_image_with_a_shared_prefix_stores_what_the_full_forward_does() {
    let r = Reference::load();
    let model = load(&fixture().join("model"), DType::F32);
    // Two images of different sizes, so the cut prompts are left-padded to one length as the full ones are.
    let batch = [r.sample("a"), r.sample("b")];
    let points = model.all_hook_points();
    let image = model.config().image_token_id;
    let full_hooks = HookSet::capture(points.clone());
    let cut_hooks = HookSet { stop_early: true, ..full_hooks.clone() };
    let cut = model.cut_after_image(&batch, &cut_hooks, Pooling::ImageMean).expect("extraction's case is cut");
    for (s, c) in batch.iter().zip(&cut) {
        let end = s.input_ids.iter().rposition(|&i| i == image).unwrap() + 1;
        assert!(end < s.input_ids.len(), "the fixture prompt has text after the image");
        assert_eq!(c.input_ids, s.input_ids[..end]);
    }
    let full = model.forward_samples(&batch, &full_hooks, Pooling::ImageMean).unwrap();
    let reduced = model.forward_samples(&batch, &cut_hooks, Pooling::ImageMean).unwrap();
    // Causal attention: an image token's state never sees the text after it. The shorter sequence changes only
    // the shapes the products and softmax sums run over, so the tolerance is f32 summation order (1e-5), 10x
    // tighter than the parity tolerance against transformers; vision points are untouched (bit-identical).
    for p in &points {
        let e = rel_err(&reduced.layers[p], &full.layers[p]);
        eprintln!("cut vs full {p}: {e:.3e}");
        let tol = if p.component() == huescan::model::Component::Vision { 0.0 } else { 1e-5 };
        assert!(e <= tol, "{p}: relative error {e:.3e} exceeds {tol:.0e}");
    }
    assert!(reduced.logits.is_none() && full.logits.is_some(), "the cut forward computes no logits");
    // Steering the image tokens (what an image-mean sweep at a decoder point does) cuts too, and matches.
    let steer = |stop_early: bool| HookSet {
        interventions: vec![Intervention {
            point: HookPoint::ResidPost(0),
            positions: Positions::ImageTokens,
            sample: Some(1),
            op: InterventionOp::Add { vector: vec![0.5; model.config().text.hidden_size], alpha: 1.0 },
        }],
        stop_early,
        ..full_hooks.clone()
    };
    assert!(model.cut_after_image(&batch, &steer(true), Pooling::ImageMean).is_some());
    let (a, b) = (
        model.forward_samples(&batch, &steer(false), Pooling::ImageMean).unwrap(),
        model.forward_samples(&batch, &steer(true), Pooling::ImageMean).unwrap(),
    );
    assert!(rel_err(&a.layers[&HookPoint::ResidPost(1)], &full.layers[&HookPoint::ResidPost(1)]) > 1e-3);
    for p in &points {
        assert!(rel_err(&b.layers[p], &a.layers[p]) <= 1e-5, "steered {p}");
    }
    assert_eq!(model.shared_prefix(&cut), None, "prompts of different lengths (padding) share no cached prefix");
    // Two images of one size: the cut prompts have one length, so the prefix before the image runs once and
    // its keys and values serve both; the stored tensors are again the full forward's (same tolerances).
    let b = r.sample("b");
    let dim = Sample { pixel_values: b.pixel_values.affine(0.5, -0.25).unwrap(), ..b.clone() };
    let same = [b, dim];
    let cut = model.cut_after_image(&same, &cut_hooks, Pooling::ImageMean).unwrap();
    let first = same[0].input_ids.iter().position(|&i| i == image).unwrap();
    assert_eq!(model.shared_prefix(&cut), Some(first), "everything before the first image token is shared");
    let full = model.forward_samples(&same, &full_hooks, Pooling::ImageMean).unwrap();
    let reduced = model.forward_samples(&same, &cut_hooks, Pooling::ImageMean).unwrap();
    for p in &points {
        let e = rel_err(&reduced.layers[p], &full.layers[p]);
        eprintln!("shared prefix vs full {p}: {e:.3e}");
        let tol = if p.component() == huescan::model::Component::Vision { 0.0 } else { 1e-5 };
        assert!(e <= tol, "shared prefix {p}: relative error {e:.3e} exceeds {tol:.0e}");
    }
    // The prefix runs as its own batch of one whatever the batch, so a sample's numbers do not depend on it.
    let alone = model.forward_samples(&same[..1], &cut_hooks, Pooling::ImageMean).unwrap();
    for p in &points {
        let (x, y) = (alone.layers[p].get(0).unwrap(), reduced.layers[p].get(0).unwrap());
        assert_eq!(rel_err(&x, &y), 0.0, "{p}: batch of one vs batch of two");
    }
    let p1 = &HookPoint::ResidPost(1);
    assert!(rel_err(&full.layers[p1].get(0).unwrap(), &full.layers[p1].get(1).unwrap()) > 1e-3, "samples differ");
    let (a, b) = (
        model.forward_samples(&same, &steer(false), Pooling::ImageMean).unwrap(),
        model.forward_samples(&same, &steer(true), Pooling::ImageMean).unwrap(),
    );
    for p in &points {
        assert!(rel_err(&b.layers[p], &a.layers[p]) <= 1e-5, "steered with a shared prefix {p}");
    }
    // Whatever needs the later tokens runs the whole prompt.
    assert!(model.cut_after_image(&batch, &full_hooks, Pooling::ImageMean).is_none(), "logits wanted");
    for pooling in [Pooling::Last, Pooling::Tokens] {
        assert!(model.cut_after_image(&batch, &cut_hooks, pooling).is_none(), "{pooling}");
    }
    let mut last = steer(true);
    last.interventions[0].positions = Positions::Last;
    assert!(model.cut_after_image(&batch, &last, Pooling::ImageMean).is_none(), "a last-token intervention");
}

/// The shared prefix runs once per model, not once per batch: a later batch with the same prefix and depth
/// reuses its keys and values, and a batch with another prefix or another depth runs its own. Either way the
/// stored numbers are those of a freshly loaded model, bit for bit.
#[test]
fn the_shared_prefix_is_kept_across_batches_and_rerun_when_the_prefix_or_depth_changes() {
    let r = Reference::load();
    let model = load(&fixture().join("model"), DType::F32);
    let fresh = || load(&fixture().join("model"), DType::F32);
    let points = model.all_hook_points();
    let deep = HookSet { stop_early: true, ..HookSet::capture(points.clone()) };
    let shallow = HookSet { stop_early: true, ..HookSet::capture(vec![HookPoint::ResidPost(0)]) };
    let b = r.sample("b");
    let image = model.config().image_token_id;
    let first = b.input_ids.iter().position(|&i| i == image).unwrap();
    // Another prompt prefix: one token before the image changed to another text token.
    let mut other = b.clone();
    let j = first - 2;
    other.input_ids[j] = if b.input_ids[j] == 10 { 11 } else { 10 };
    let run = |m: &Qwen25VlModel, s: &Sample, hooks: &HookSet| {
        m.forward_samples(std::slice::from_ref(s), hooks, Pooling::ImageMean).unwrap()
    };
    let same = |a: &huescan::model::Captures, b: &huescan::model::Captures| {
        a.layers.len() == b.layers.len() && a.layers.iter().all(|(p, x)| rel_err(x, &b.layers[p]) == 0.0)
    };
    let with_other = run(&model, &other, &deep);
    assert!(same(&with_other, &run(&fresh(), &other, &deep)), "the first prefix run");
    let again = run(&model, &b, &deep);
    assert!(same(&again, &run(&fresh(), &b, &deep)), "another prefix is run, not reused");
    let p = &HookPoint::ResidPost(0);
    assert!(rel_err(&again.layers[p], &with_other.layers[p]) > 1e-4, "the prefix change shows downstream");
    assert!(same(&run(&model, &b, &deep), &again), "the kept prefix serves the next batch");
    // A shallow run first keeps the prefix through fewer blocks, which a deeper run must not reuse.
    let shallow_first = fresh();
    let want = run(&fresh(), &b, &shallow);
    assert!(same(&run(&shallow_first, &b, &shallow), &want), "a shallow prefix run");
    assert!(same(&run(&shallow_first, &b, &deep), &again), "a deeper run after it runs its own prefix");
    assert!(same(&run(&shallow_first, &b, &shallow), &want), "and a shallow one after that");
}

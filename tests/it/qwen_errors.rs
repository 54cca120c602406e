//! Bad Qwen2.5-VL inputs give clear errors that name what is wrong.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use huescan::model::qwen2_5_vl::{Prompt, Qwen25VlModel, Sample};
use huescan::model::{HookSet, Model, Pooling};

use crate::common::qwen_fixture as fixture;

/// A writable copy of a fixture checkpoint folder.
fn copy_of(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixture().join(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

fn load_err(dir: &Path) -> String {
    match Qwen25VlModel::load(dir, DType::F32, &Device::Cpu) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_shard_is_named() {
    let dir = copy_of("model");
    std::fs::remove_file(dir.path().join("model-00002-of-00003.safetensors")).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("model-00002-of-00003.safetensors") && e.contains("missing"), "{e}");
}

#[test]
fn truncated_shard_is_named_as_unreadable() {
    let dir = copy_of("model");
    let shard = dir.path().join("model-00003-of-00003.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("model-00003-of-00003.safetensors") && e.contains("not a readable safetensors"), "{e}");
    std::fs::write(&shard, b"this is not a safetensors file at all").unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("model-00003-of-00003.safetensors") && e.contains("header length"), "{e}");
}

#[test]
fn wrong_model_type_is_refused() {
    let dir = copy_of("model-newnames");
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap().replace("\"qwen2_5_vl\"", "\"qwen2_vl\"");
    std::fs::write(&path, text).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("config.json") && e.contains("`qwen2_vl`") && e.contains("qwen2_5_vl"), "{e}");
}

#[test]
fn wrong_tensor_shape_names_the_tensor() {
    let dir = copy_of("model-newnames");
    let file = dir.path().join("model.safetensors");
    let mut t = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    let name = "model.language_model.layers.1.self_attn.k_proj.weight";
    t.insert(name.into(), Tensor::zeros((16, 64), DType::F32, &Device::Cpu).unwrap());
    candle_core::safetensors::save(&t, &file).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains(name) && e.contains("[16, 64]") && e.contains("[32, 64]"), "{e}");
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_of("model-newnames");
    let file = dir.path().join("model.safetensors");
    let mut t = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    t.remove("model.visual.merger.mlp.2.bias").unwrap();
    candle_core::safetensors::save(&t, &file).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("model.visual.merger.mlp.2.bias") && e.contains("missing"), "{e}");
}

#[test]
fn empty_directory_says_what_it_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture().join("model-newnames/config.json"), dir.path().join("config.json")).unwrap();
    let e = load_err(dir.path());
    assert!(e.contains("model.safetensors.index.json") && e.contains("model.safetensors"), "{e}");
}

#[test]
fn tiny_image_and_prompt_without_image_tokens_are_refused() {
    let model = Qwen25VlModel::load(&fixture().join("model"), DType::F32, &Device::Cpu)
        .unwrap()
        .with_prompt(Prompt::Ids { prefix: vec![1, 502], suffix: vec![503, 2] });
    let tiny = image::RgbImage::new(20, 64);
    let e = model.forward(&[tiny], &HookSet::default(), Pooling::Last).unwrap_err().to_string();
    assert!(e.contains("20") && e.contains("at least 28 px"), "{e}");

    let sample = Sample {
        pixel_values: Tensor::zeros((16, 1176), DType::F32, &Device::Cpu).unwrap(),
        grids: vec![[1, 4, 4]],
        input_ids: vec![1, 2, 3],
    };
    let e = model
        .forward_samples(std::slice::from_ref(&sample), &HookSet::default(), Pooling::Last)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no image tokens"), "{e}");
    let wrong = Sample { input_ids: vec![1, 505, 505, 2], ..sample };
    let e = model.generate(&wrong, 2, &HookSet::default()).unwrap_err().to_string();
    assert!(e.contains("needs 4 image-pad tokens"), "{e}");
}

#[test]
fn model_without_prompt_says_how_to_fix_it() {
    let model = Qwen25VlModel::load(&fixture().join("model"), DType::F32, &Device::Cpu).unwrap();
    let img = image::RgbImage::new(56, 56);
    let e = model.forward(&[img], &HookSet::default(), Pooling::Last).unwrap_err().to_string();
    assert!(e.contains("tokenizer.json") && e.contains("prompt"), "{e}");
    let e = model.with_question("Which colour?").err().unwrap().to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
}

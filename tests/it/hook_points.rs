//! The whole model as hook points, as a user drives it: `extract --hooks` on the Qwen fixture stores vision
//! blocks and every decoder point (different widths in one store), `analyze` and `report` read it without
//! special cases, `steer` steers at a vision block, and a version-1 store still reads.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::huescan;

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed:\n{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned() + &stderr
}

fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{cmd:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn extract(stim: &Path, out: &Path, hooks: &str) -> Command {
    let mut c = huescan();
    c.args(["extract", "--model", "qwen-tiny-random", "--hooks", hooks, "--stimuli"]).arg(stim).arg("--out").arg(out);
    c
}

#[test]
fn a_store_of_every_vision_block_and_decoder_point_is_analysed_reported_and_steered() {
    let dir: PathBuf = crate::common::fresh_dir("hooks", "whole-model");
    let stim = dir.join("stimuli/simple-60");
    ok(huescan().args(["stimuli", "render", "simple-60", "--out"]).arg(&stim));
    let acts = dir.join("activations/simple-60");
    ok(&mut extract(&stim, &acts, "visual.blocks.*,blocks.*"));

    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(acts.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["format_version"], 2);
    assert!(m["d_model"].is_null(), "vision (32) and decoder (64) widths differ");
    let layers = m["layers"].as_array().unwrap();
    let hooks: Vec<&str> = layers.iter().map(|l| l["hook"].as_str().unwrap()).collect();
    let mut want: Vec<String> = vec!["blocks.0.hook_resid_pre".into()];
    want.extend((0..2).map(|l| format!("blocks.{l}.hook_resid_post")));
    want.extend((0..4).map(|i| format!("visual.blocks.{i}.hook_resid_post")));
    for l in 0..3 {
        want.extend(["attn_out", "resid_mid", "mlp_out"].map(|h| format!("blocks.{l}.hook_{h}")));
    }
    want.push("blocks.2.hook_resid_post".into());
    assert_eq!(hooks, want, "every vision block and every decoder point, in index order");
    for l in layers {
        let (hook, vision) = (l["hook"].as_str().unwrap(), l["hook"].as_str().unwrap().starts_with("visual."));
        assert_eq!(l["shape"], serde_json::json!([60, if vision { 32 } else { 64 }]), "{hook}");
        assert_eq!(l["component"], if vision { "vision" } else { "language" }, "{hook}");
        assert!(l["module"].as_str().unwrap().starts_with(if vision {
            "model.visual."
        } else {
            "model.language_model"
        }));
    }
    assert_eq!(layers[0]["index"], 0, "the HF hidden-state indices are unchanged");
    assert_eq!(layers.last().unwrap()["index"], 19, "the raw last block comes last: 4L + D + 3");

    ok(huescan()
        .args(["analyze", "--permutations", "5", "--bootstrap", "20", "--out"])
        .arg(dir.join("analysis"))
        .arg(&acts));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("analysis/simple-60/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["layer_scan"].as_array().unwrap().len(), layers.len(), "the scan covers every stored point");
    ok(huescan().arg("report").arg(&dir));
    let stress = std::fs::read_to_string(dir.join("report/figures/simple-60-stress.svg")).unwrap();
    assert!(stress.contains("vision tower | language model"), "the boundary is marked");

    let said = ok(huescan()
        .args([
            "steer",
            "--model",
            "qwen-tiny-random",
            "--hooks",
            "visual.blocks.2.hook_resid_post,blocks.1.hook_resid_post",
        ])
        .args(["--from", "240", "--to", "0", "--alphas", "0,1", "--direction", "centroid", "--acts"])
        .arg(&acts)
        .arg("--stimuli")
        .arg(&stim)
        .arg("--out")
        .arg(dir.join("steering")));
    assert!(said.contains("layer 7 Blue→Red centroid"), "{said}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("steering/summary.json")).unwrap()).unwrap();
    let probes: Vec<&str> = summary["probes"].as_array().unwrap().iter().map(|p| p["hook"].as_str().unwrap()).collect();
    assert!(!probes.contains(&"visual.blocks.1.hook_resid_post"), "nothing before the steered block: {probes:?}");
    assert_eq!(probes.last(), Some(&"blocks.2.hook_resid_post"), "read out down to the decoder's last point");
    let vector = std::fs::read(dir.join("steering/vectors/L007_240-0_centroid.safetensors")).unwrap();
    let header = String::from_utf8_lossy(&vector[..vector.len().min(4096)]).into_owned();
    assert!(header.contains("model.visual.blocks.2") && header.contains("\"component\":\"vision\""), "{header}");

    // A saved vector applied to a text-only question: the control that asks whether the direction moves the
    // colour concept or only the image.
    let ask = |extra: &[&str], vector: Option<&str>| {
        let mut c = huescan();
        c.args(["ask", "--model", "qwen-tiny-random", "--max-new-tokens", "6"]).args(extra);
        if let Some(v) = vector {
            c.arg("--steer").arg(dir.join("steering/vectors").join(v));
        }
        // The fixture has no tokenizer: its text-only prompt is its fixed ids without the image.
        c
    };
    let lm = Some("L002_240-0_centroid.safetensors");
    let plain = ok(&mut ask(&[], None));
    assert_eq!(plain, ok(&mut ask(&["--alpha", "0", "--positions", "all"], lm)), "alpha 0 is the unsteered model");
    let steered = ok(&mut ask(&["--alpha", "40", "--positions", "all"], lm));
    assert_ne!(plain, steered, "the vector at blocks.1 moves the text-only answer");
    let err = fails(&mut ask(&[], lm));
    assert!(err.contains("steers image tokens") && err.contains("--positions all"), "{err}");
    let err = fails(&mut ask(&["--positions", "all"], Some("L007_240-0_centroid.safetensors")));
    assert!(err.contains("vision tower"), "{err}");

    let err = fails(&mut extract(&stim, &dir.join("nothing"), "visual.blocks.*,blocks.*.hook_attn"));
    assert!(err.contains("`blocks.*.hook_attn` matches no hook point"), "{err}");
    let err = fails(extract(&stim, &dir.join("last"), "visual.merger.hook_out").args(["--pool", "last"]));
    assert!(err.contains("no last prompt token"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_version_1_store_still_reads() {
    let v1 = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/joblib-converted");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(v1.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["format_version"], 1);
    let store = huescan::store::ActivationStore::open(&v1).unwrap();
    assert!(store.manifest().layers.iter().all(|l| l.component.is_none() && l.module.is_none()));
}

#[test]
fn ask_without_an_image_is_a_text_only_prompt_that_answers_as_transformers_does() {
    // qwen-tiny-random has raw-id prompts: without the image its ids are the fixture's text-only prompt, whose
    // greedy answer transformers recorded in reference_points.json.
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(crate::common::qwen_fixture().join("reference_points.json")).unwrap(),
    )
    .unwrap();
    // Without a tokenizer the text-only prompt is the fixture's fixed ids with the vision tokens removed, which
    // is the prompt the reference ran; a question cannot be tokenized and is refused.
    let said = ok(huescan().args(["ask", "--model", "qwen-tiny-random", "--max-new-tokens", "8"]));
    let want: Vec<u64> =
        meta["text"]["generated_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(said.contains(&format!("{want:?}")), "{said}");
    let err = fails(huescan().args(["ask", "--model", "qwen-tiny-random", "What colour is a banana?"]));
    assert!(err.contains("has no tokenizer.json, so a question cannot be tokenized"), "{err}");
}

fn real_tokenizer_chat() -> huescan::model::qwen2_5_vl::ChatPrompt {
    use std::io::Read;
    let gz = std::fs::read(crate::common::qwen_fixture().join("tokenizer.json.gz")).unwrap();
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut json).unwrap();
    let tok = tokenizers::Tokenizer::from_bytes(&json).unwrap();
    huescan::model::qwen2_5_vl::ChatPrompt::new(tok, "What colour is this image?").unwrap()
}

#[test]
fn token_strings_spell_the_prompt_and_the_text_only_template_has_no_vision_block() {
    let chat = real_tokenizer_chat();
    let ids = chat.ids(3).unwrap();
    let strings = chat.token_strings(&ids).unwrap();
    assert_eq!(strings.len(), ids.len());
    assert_eq!(strings.concat(), chat.text().replace("<|image_pad|>", &"<|image_pad|>".repeat(3)));
    assert_eq!(strings.iter().filter(|s| *s == "<|image_pad|>").count(), 3);
    let text_only = chat.text_only_ids("What colour is a banana?").unwrap();
    let spelled = chat.token_strings(&text_only).unwrap().concat();
    assert_eq!(
        spelled,
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat colour is a banana?<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn a_tokens_store_records_each_samples_ids_image_mask_and_mrope_positions() {
    use candle_core::{DType, Device};
    use huescan::model::qwen2_5_vl::{Prompt, Qwen25VlModel};
    use huescan::model::Model;
    // The layout the model reports is transformers' (input ids and get_rope_index of image a).
    let reference =
        candle_core::safetensors::load(crate::common::qwen_fixture().join("reference.safetensors"), &Device::Cpu)
            .unwrap();
    let want_ids: Vec<u32> =
        reference["a.input_ids"].flatten_all().unwrap().to_vec1::<i64>().unwrap().iter().map(|&x| x as u32).collect();
    let (first, last) =
        (want_ids.iter().position(|&i| i == 505).unwrap(), want_ids.iter().rposition(|&i| i == 505).unwrap());
    let prompt = Prompt::Ids { prefix: want_ids[..first].to_vec(), suffix: want_ids[last + 1..].to_vec() };
    let model = Qwen25VlModel::load(&crate::common::qwen_fixture().join("model"), DType::F32, &Device::Cpu)
        .unwrap()
        .with_prompt(prompt);
    let img = image::open(crate::common::qwen_fixture().join("image_a.png")).unwrap().to_rgb8();
    let layout = model.token_layout(&img).unwrap().unwrap();
    assert_eq!(layout.ids, want_ids);
    let pos = reference["a.position_ids"].to_vec3::<i64>().unwrap();
    for (axis, (ours, theirs)) in layout.mrope_positions.iter().zip(&pos).enumerate() {
        assert_eq!(ours, &theirs[0], "axis {axis}");
    }
    assert_eq!(layout.image_mask.iter().filter(|&&m| m).count(), 4, "56x56 = 2x2 merged tokens");

    let dir = crate::common::fresh_dir("hooks", "tokens");
    let stim = dir.join("stimuli");
    ok(huescan().args(["stimuli", "render", "simple-60", "--out"]).arg(&stim));
    let acts = dir.join("acts");
    ok(extract(&stim, &acts, "blocks.1.hook_resid_post,visual.merger.hook_out").args(["--pool", "tokens"]));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(acts.join("manifest.json")).unwrap()).unwrap();
    let tokens = m["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 60);
    let resid = m["layers"].as_array().unwrap().iter().find(|l| l["hook"] == "blocks.1.hook_resid_post").unwrap();
    let merger = m["layers"].as_array().unwrap().iter().find(|l| l["hook"] == "visual.merger.hook_out").unwrap();
    let n_pos = resid["shape"][1].as_u64().unwrap() as usize;
    for t in tokens {
        assert_eq!(t["ids"].as_array().unwrap().len(), n_pos);
        let mask = t["image_mask"].as_array().unwrap();
        let n_image = mask.iter().filter(|b| b.as_bool().unwrap()).count() as u64;
        assert_eq!(merger["shape"][1].as_u64().unwrap(), n_image, "one merged token per image position");
        assert!(t["mrope_positions"].as_array().unwrap().iter().all(|a| a.as_array().unwrap().len() == n_pos));
        assert!(t.get("strings").is_none(), "the fixture has no tokenizer");
    }
    // Two shards merged give the same bytes as one run, token layouts included.
    let sharded = dir.join("sharded");
    for shard in ["0/2", "1/2"] {
        ok(extract(&stim, &sharded, "blocks.1.hook_resid_post,visual.merger.hook_out")
            .args(["--pool", "tokens", "--shard", shard]));
    }
    ok(huescan().arg("merge").arg(&sharded));
    for f in ["manifest.json", "layer_002.safetensors", "layer_009.safetensors"] {
        assert!(std::fs::read(acts.join(f)).unwrap() == std::fs::read(sharded.join(f)).unwrap(), "{f} differs");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

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
        .args(["steer", "--model", "qwen-tiny-random", "--hooks", "visual.blocks.2.hook_resid_post"])
        .args(["--from", "240", "--to", "0", "--alphas", "0,1", "--direction", "centroid", "--acts"])
        .arg(&acts)
        .arg("--stimuli")
        .arg(&stim)
        .arg("--out")
        .arg(dir.join("steering")));
    assert!(said.contains("layer 7 Blue→Red centroid"), "{said}");
    let vector = std::fs::read(dir.join("steering/vectors/L007_240-0_centroid.safetensors")).unwrap();
    let header = String::from_utf8_lossy(&vector[..vector.len().min(4096)]).into_owned();
    assert!(header.contains("model.visual.blocks.2") && header.contains("\"component\":\"vision\""), "{header}");

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
    let said =
        ok(huescan().args(["ask", "--model", "qwen-tiny-random", "--max-new-tokens", "8", "What colour is a banana?"]));
    let want: Vec<u64> =
        meta["text"]["generated_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(said.contains(&format!("{want:?}")), "{said}");
    let err = fails(huescan().args(["ask", "--model", "qwen-tiny-random"]));
    assert!(err.contains("without --image, give the question"), "{err}");
}

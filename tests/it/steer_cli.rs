//! `huescan steer` as a user runs it on the colour autoencoder: render, extract, steer; then bad input.

use std::path::PathBuf;
use std::process::{Command, Output};

fn huescan(dir: &PathBuf, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_huescan")).current_dir(dir).arg("--quiet").args(args).output().unwrap()
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn steer_writes_tables_and_vectors_and_rejects_bad_input() {
    let dir = crate::common::fresh_dir("steer-cli", "");
    std::fs::create_dir_all(&dir).unwrap();
    ok(huescan(&dir, &["stimuli", "render", "simple-60", "--out", "stim"]));
    ok(huescan(
        &dir,
        &["extract", "--model", "colour-autoencoder", "--stimuli", "stim", "--out", "acts", "--pool", "last"],
    ));
    let base = ["steer", "--model", "colour-autoencoder", "--acts", "acts", "--stimuli", "stim"];
    let run = |extra: &[&str]| huescan(&dir, &[&base[..], extra].concat());
    ok(run(&["--layer", "2", "--from", "240", "--to", "0", "--direction", "manifold,random", "--gguf", "--out", "o"]));
    let o = dir.join("o");
    let csv = std::fs::read_to_string(o.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 7, "{csv}");
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(o.join("summary.json")).unwrap()).unwrap();
    let manifold = summary["summary"].as_array().unwrap().iter().find(|s| s["direction"] == "manifold").unwrap();
    assert_eq!(manifold["monotone"], true, "{manifold}");
    assert!(manifold["alpha_reached"].as_f64().is_some_and(|a| a <= 1.0), "{manifold}");
    let v = huescan::steer::SteeringVector::load(&o.join("vectors/L002_240-0_manifold.safetensors")).unwrap();
    assert_eq!((v.recipe.layer_index, v.recipe.model_id.as_str()), (2, "colour-autoencoder"));
    assert!(!o.join("vectors/240-0_manifold.gguf").exists(), "the bottleneck is not a llama.cpp block output");

    for (extra, want) in [
        (vec!["--layer", "9", "--out", "x"], "layer 9"),
        (vec!["--layer", "2", "--from", "243", "--to", "0", "--out", "x"], "hue 243° is not in the stimulus set"),
        (vec!["--layer", "2", "--alphas", "1:0:0.5", "--out", "x"], "stop is below start"),
        (vec!["--layer", "2", "--direction", "sideways", "--out", "x"], "unknown direction `sideways`"),
        (vec!["--layer", "2", "--positions", "image,3", "--out", "x"], "invalid positions"),
    ] {
        let out = run(&extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(want), "{extra:?}: {stderr}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

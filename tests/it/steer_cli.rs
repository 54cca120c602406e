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
    assert_eq!(v.recipe.lift, Some(huescan::steer::Lift::LocalMean), "the default lift is recorded");
    assert!(!o.join("vectors/L002_240-0_manifold.gguf").exists(), "llama.cpp has no autoencoder architecture");

    for (extra, want) in [
        (vec!["--layer", "9", "--out", "x"], "layer 9"),
        (vec!["--layer", "2", "--from", "243", "--to", "0", "--out", "x"], "hue 243° is not in the stimulus set"),
        (vec!["--layer", "2", "--alphas", "1:0:0.5", "--out", "x"], "stop is below start"),
        (vec!["--layer", "2", "--positions", "image,3", "--out", "x"], "invalid positions"),
    ] {
        let out = run(&extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(want), "{extra:?}: {stderr}");
    }
    // The store's own inputs only: another stimulus set, another model.
    ok(huescan(&dir, &["stimuli", "render", "gap-teal-blue", "--out", "stim2"]));
    for ((model, stimuli), want) in [
        (("colour-autoencoder", "stim2"), "--stimuli `stim2` (set `gap-teal-blue`"),
        (
            ("qwen-tiny-random", "stim"),
            "the store was extracted from `colour-autoencoder`, but --model loads `qwen-tiny",
        ),
    ] {
        let args = ["steer", "--model", model, "--acts", "acts", "--stimuli", stimuli, "--layer", "2", "--out", "x"];
        let out = huescan(&dir, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code() == Some(1) && stderr.contains(want), "{stderr}");
    }
    // A flag that takes one of a set is a usage error (exit 2) naming the values it takes.
    for (extra, want) in [
        (
            vec!["--layer", "2", "--direction", "centroid,sideways", "--out", "x"],
            "[possible values: all, centroid, manifold, random]",
        ),
        (vec!["--layer", "2", "--lift", "up", "--out", "x"], "[possible values: pattern, min-norm, local-mean]"),
        (vec!["--layer", "2", "--normalise", "l2", "--out", "x"], "[possible values: none, unit]"),
    ] {
        let out = run(&extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let bad = extra[3].rsplit(',').next().unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(&format!("invalid value '{bad}' for '{}", extra[2])), "{extra:?}: {stderr}");
        assert!(stderr.contains(want), "{extra:?}: {stderr}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--gguf` on a Qwen checkpoint: one control vector per steered layer, llama.cpp's architecture as the model
/// hint, the steered positions in the metadata, and a warning that llama.cpp steers every position.
#[test]
fn gguf_export_writes_one_file_per_layer_with_the_position_mode() {
    let dir = crate::common::fresh_dir("steer-cli", "gguf");
    std::fs::create_dir_all(&dir).unwrap();
    ok(huescan(&dir, &["stimuli", "render", "simple-60", "--out", "stim"]));
    ok(huescan(
        &dir,
        &["extract", "--model", "qwen-tiny-random", "--stimuli", "stim", "--out", "acts", "--layers", "0-3"],
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_huescan"))
        .current_dir(&dir)
        .args(["steer", "--model", "qwen-tiny-random", "--acts", "acts", "--stimuli", "stim", "--layer", "1-3"])
        .args(["--from", "240", "--to", "0", "--direction", "centroid", "--alphas", "0,1", "--gguf", "--out", "o"])
        .args(["--max-new-tokens", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v = dir.join("o/vectors");
    // The fixture has two blocks: index 1 is block 0's output, which llama.cpp cannot steer, and index 3 is the
    // final norm, no block output; index 2 (block 1) gets its own file, the others a warning each.
    assert!(!v.join("L001_240-0_centroid.gguf").exists() && !v.join("L003_240-0_centroid.gguf").exists());
    assert!(stderr.contains("warning: left out of the GGUF files") && stderr.contains("block 0"), "{stderr}");
    assert!(stderr.contains("ln_final.hook_out"), "{stderr}");
    let written: Vec<_> = std::fs::read_dir(&v)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "gguf"))
        .collect();
    assert_eq!(written.len(), 1, "one file per exportable layer");
    {
        let bytes = std::fs::read(v.join("L002_240-0_centroid.gguf")).unwrap();
        let cv = huescan::steer::gguf::from_bytes(&bytes).unwrap();
        assert_eq!(cv.directions.keys().copied().collect::<Vec<_>>(), vec![1], "block 1 only: one layer per file");
        let s = |k: &str| cv.metadata[k].clone();
        assert_eq!(s("controlvector.model_hint"), huescan::steer::gguf::Value::String("qwen2vl".into()));
        assert_eq!(s("controlvector.layer_count"), huescan::steer::gguf::Value::U32(1));
        assert_eq!(s("huescan.positions"), huescan::steer::gguf::Value::String("image".into()));
    }
    assert!(stderr.contains("warning: llama.cpp adds a control vector at every token position"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

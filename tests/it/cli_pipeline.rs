//! The pipeline as a user runs it: render a stimulus set, extract the colour autoencoder's activations,
//! inspect the store, analyse it.

use std::path::PathBuf;
use std::process::Command;

use crate::common::huescan;

fn tmp(name: &str) -> PathBuf {
    crate::common::fresh_dir("pipeline", name)
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed:\n{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned() + &stderr
}

#[test]
fn render_extract_inspect_analyze_with_the_autoencoder() {
    let dir = tmp("ae");
    let stim = dir.join("stimuli");
    ok(huescan().args(["stimuli", "render", "simple-60", "--out"]).arg(&stim));
    assert_eq!(std::fs::read_dir(&stim).unwrap().count(), 61);
    let acts = dir.join("acts");
    let weights = dir.join("ae.safetensors");
    let extract = |out: &PathBuf, extra: &[&str]| {
        let mut c = huescan();
        c.args(["extract", "--model", "colour-autoencoder", "--ae-epochs", "200", "--stimuli"])
            .arg(&stim)
            .arg("--out")
            .arg(out)
            .arg("--ae-weights")
            .arg(&weights)
            .args(extra);
        ok(&mut c)
    };
    let said = extract(&acts, &[]);
    assert!(said.contains("computed 60, resumed 0"), "{said}");
    assert!(weights.exists(), "trained weights are cached");
    // Same command again: nothing to do.
    let said = extract(&acts, &[]);
    assert!(said.contains("computed 0, resumed 60"), "{said}");
    // Two shards + merge give the same files as the single run.
    let sharded = dir.join("sharded");
    extract(&sharded, &["--shard", "0/2"]);
    extract(&sharded, &["--shard", "1/2"]);
    ok(huescan().arg("merge").arg(&sharded));
    for f in ["manifest.json", "layer_000.safetensors", "layer_002.safetensors", "layer_004.safetensors"] {
        assert!(std::fs::read(acts.join(f)).unwrap() == std::fs::read(sharded.join(f)).unwrap(), "{f} differs");
    }
    let inspect = ok(huescan().args(["store", "inspect"]).arg(&acts));
    assert!(inspect.contains("bottleneck") && inspect.contains("verified    all 5 layers"), "{inspect}");
    let analysis = dir.join("analysis");
    let said = ok(huescan()
        .args(["analyze", "--layers", "2", "--permutations", "20", "--bootstrap", "50", "--out"])
        .arg(&analysis)
        .arg(&acts));
    assert!(said.contains("winner CircularShape"), "the bottleneck is a circle: {said}");
    for f in ["layer_scan.csv", "discovery.csv", "heldout.csv", "arbitration.csv", "summary.json"] {
        assert!(analysis.join("simple-60").join(f).exists(), "{f}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn extract_explains_bad_inputs() {
    let dir = tmp("bad");
    let out = huescan()
        .args(["extract", "--model", "no-such-model", "--stimuli"])
        .arg(&dir)
        .arg("--out")
        .arg(dir.join("x"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = huescan()
        .args(["extract", "--model", "no-such-model", "--stimuli"])
        .arg(&dir)
        .arg("--out")
        .arg(dir.join("x"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("render a set first"));
    let stim = dir.join("s");
    ok(huescan().args(["stimuli", "render", "gap-teal-blue", "--out"]).arg(&stim));
    let out = huescan()
        .args(["extract", "--model", "no-such-model", "--stimuli"])
        .arg(&stim)
        .arg("--out")
        .arg(dir.join("x"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a preset") && stderr.contains("qwen2.5-vl-3b"), "{stderr}");
    let offline = huescan()
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", dir.join("empty-cache"))
        .args(["extract", "--model", "Qwen/Qwen2.5-VL-3B-Instruct", "--stimuli"])
        .arg(&stim)
        .arg("--out")
        .arg(dir.join("x"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&offline.stderr);
    assert!(
        stderr.contains("Qwen/Qwen2.5-VL-3B-Instruct") && stderr.contains("`main`") && stderr.contains("empty-cache"),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn slurm_array_scripts_shard_merge_and_analyse() {
    // Runs the sbatch scripts as Slurm would run each array task (the scheduler itself is not needed to test
    // what the scripts do): SLURM_ARRAY_TASK_ID/COUNT pick the shard, then the dependent job merges + analyses.
    let dir = tmp("slurm");
    let stim = dir.join("stimuli");
    ok(huescan().args(["stimuli", "render", "simple-60", "--out"]).arg(&stim));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let store = dir.join("acts");
    let extra = format!("--ae-weights {} --ae-epochs 100", dir.join("ae.safetensors").display());
    for task in 0..3 {
        ok(Command::new("bash")
            .arg(root.join("scripts/slurm/scan-array.sbatch"))
            .args(["colour-autoencoder"])
            .arg(&stim)
            .arg(&store)
            .env("SLURM_ARRAY_TASK_ID", task.to_string())
            .env("SLURM_ARRAY_TASK_COUNT", "3")
            .env("HUESCAN", env!("CARGO_BIN_EXE_huescan"))
            .env("DEVICE", "cpu")
            .env("EXTRA_ARGS", &extra));
    }
    assert_eq!(std::fs::read_dir(store.join("shards")).unwrap().count(), 3);
    ok(Command::new("bash")
        .arg(root.join("scripts/slurm/merge-analyze.sbatch"))
        .arg(&store)
        .arg(dir.join("analysis"))
        .env("HUESCAN", env!("CARGO_BIN_EXE_huescan")));
    assert!(dir.join("analysis/simple-60/arbitration.csv").exists());
    let single = dir.join("single");
    ok(huescan()
        .args(["extract", "--model", "colour-autoencoder", "--ae-epochs", "100", "--ae-weights"])
        .arg(dir.join("ae.safetensors"))
        .arg("--stimuli")
        .arg(&stim)
        .arg("--out")
        .arg(&single));
    for f in ["manifest.json", "layer_000.safetensors", "layer_004.safetensors"] {
        assert!(std::fs::read(store.join(f)).unwrap() == std::fs::read(single.join(f)).unwrap(), "{f} differs");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn demo_runs_offline_and_writes_a_report_whose_figures_exist() {
    let dir = tmp("demo");
    // The autoencoder act alone (the whole demo, VLM first, is `qwen_colour::the_demo_*`).
    let demo =
        || ok(huescan().args(["demo", "--model", "colour-autoencoder", "--permutations", "20", "--out"]).arg(&dir));
    let said = demo();
    assert!(said.contains("winner CircularShape"), "{said}");
    let index = std::fs::read_to_string(dir.join("report/index.html")).unwrap();
    let mut figures = 0;
    for part in index.split("src=\"").skip(1) {
        let file = &part[..part.find('"').unwrap()];
        assert!(dir.join("report").join(file).exists(), "the page links a missing figure {file}");
        figures += 1;
    }
    assert!(figures >= 16, "stimuli, stress, projections, joystick, steering and swatches per set; got {figures}");
    assert!(index.contains("In-model steering") && index.contains("Blue→Red at layer"), "steering is reported");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("steering/gap-teal-blue/summary.json")).unwrap()).unwrap();
    let pairs: Vec<&str> =
        summary["options"]["pairs"].as_array().unwrap().iter().map(|p| p["label"].as_str().unwrap()).collect();
    assert_eq!(pairs.len(), 3, "blue (240°, held out) snaps to the nearest hue the gap set holds: {pairs:?}");
    assert!(index.contains("simple-60") && index.contains("gap-teal-blue") && index.contains("Arbitration"));
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["model"], "colour-autoencoder");
    // A second run resumes: nothing is re-rendered or re-extracted.
    let said = demo();
    assert!(said.contains("computed 0, resumed 60") && !said.contains("rendered"), "{said}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_qwen_fixture_runs_through_the_cli_and_answers_like_transformers() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("tests/fixtures/qwen-tiny/reference.json")).unwrap()).unwrap();
    let expected: Vec<u64> =
        reference["a"]["generated_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    let out = huescan()
        .args(["ask", "--model", "qwen-tiny-random", "--max-new-tokens"])
        .arg(expected.len().to_string())
        .arg("--image")
        .arg(root.join("tests/fixtures/qwen-tiny/image_a.png"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    let got: Vec<u64> = printed.trim().trim_matches(['[', ']']).split(", ").map(|t| t.parse().unwrap()).collect();
    assert_eq!(got, expected, "greedy tokens through `huescan ask` equal transformers' generate()");

    let dir = tmp("qwen");
    let stim = dir.join("stimuli");
    ok(huescan().args(["stimuli", "render", "gap-teal-blue", "--out"]).arg(&stim));
    let acts = dir.join("acts");
    let said = ok(huescan()
        .args(["extract", "--model", "qwen-tiny-random", "--batch-size", "3", "--stimuli"])
        .arg(&stim)
        .arg("--out")
        .arg(&acts));
    assert!(said.contains("44 samples x 4 layers (d_model 64)"), "{said}");
    let inspect = ok(huescan().args(["store", "inspect"]).arg(&acts));
    assert!(inspect.contains("ln_final.hook_out") && inspect.contains("blocks.1.hook_resid_post"), "{inspect}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn scan_plans_and_runs_the_fixture_end_to_end() {
    let plan = ok(huescan().args(["scan", "qwen2.5-vl-7b", "--dry-run"]));
    assert!(plan.contains("wild-360") && plan.contains("360 images") && plan.contains("Qwen2.5-VL-7B"), "{plan}");
    // The 7B is not on disk here, so no time estimate; the fixture's config is, so it gets one.
    assert!(plan.contains("not estimated (the checkpoint's config.json is not on disk yet)"), "{plan}");
    let plan = ok(huescan().args(["scan", "qwen-tiny-random", "--sets", "simple-60", "--dry-run"]));
    assert!(plan.contains("to extract (0.00 TFLOP at") && plan.contains("GFLOP/s"), "{plan}");
    let dir = tmp("scan");
    ok(huescan()
        .args(["scan", "qwen-tiny-random", "--sets", "gap-teal-blue", "--permutations", "10", "--out"])
        .arg(&dir));
    for f in [
        "run.json",
        "activations/gap-teal-blue/manifest.json",
        "analysis/gap-teal-blue/summary.json",
        "report/index.html",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_killed_extract_resumes_and_ends_byte_identical() {
    let dir = tmp("kill");
    let stim = dir.join("stimuli");
    ok(huescan().args(["stimuli", "render", "simple-60", "--out"]).arg(&stim));
    let run = |out: &PathBuf| {
        let mut c = huescan();
        c.args(["extract", "--model", "qwen-tiny-random", "--batch-size", "1", "--stimuli"])
            .arg(&stim)
            .arg("--out")
            .arg(out);
        c
    };
    let killed = dir.join("killed");
    let mut child =
        run(&killed).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Kill -9 as soon as the first chunk is on disk (or the run finished, on a very fast machine).
    let first = killed.join(".partial/chunk_00000.sha256");
    let started = std::time::Instant::now();
    while !first.exists() && child.try_wait().unwrap().is_none() {
        assert!(started.elapsed().as_secs() < 120, "extraction made no progress");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().unwrap();
    let said = ok(&mut run(&killed));
    let resumed: usize = said.split("resumed ").nth(1).unwrap().trim().parse().unwrap();
    assert!(resumed >= 32 || said.contains("computed 0"), "finished chunks are not recomputed: {said}");
    let fresh = dir.join("fresh");
    ok(&mut run(&fresh));
    for f in ["manifest.json", "layer_000.safetensors", "layer_003.safetensors"] {
        assert!(std::fs::read(killed.join(f)).unwrap() == std::fs::read(fresh.join(f)).unwrap(), "{f} differs");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Out of space mid-write: a per-process file-size limit (`ulimit -f`, which needs no root, unlike a small
/// filesystem) makes every file above 20 KiB fail with EFBIG, as a full disk fails with ENOSPC. The extraction
/// must say so, keep its finished chunks, and a re-run without the limit must end byte-identical.
#[test]
fn out_of_space_is_explained_and_a_rerun_finishes_byte_identical() {
    let dir = tmp("nospace");
    let stim = dir.join("stimuli");
    ok(huescan().args(["stimuli", "render", "wild-360", "--out"]).arg(&stim));
    let args = |out: &PathBuf| {
        vec![
            "extract".into(),
            "--model".into(),
            "colour-autoencoder".into(),
            "--quiet".into(),
            "--stimuli".into(),
            stim.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ]
    };
    let limited = dir.join("limited");
    // `trap "" XFSZ` ignores the signal the kernel sends with EFBIG; ignored signals survive exec.
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"ulimit -f 20; trap "" XFSZ; exec "$@""#)
        .arg("bash")
        .arg(env!("CARGO_BIN_EXE_huescan"))
        .args(args(&limited))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("out of space") && err.contains("re-run the same command"), "{err}");
    assert_eq!(err.matches("os error").count(), 1, "the OS reason once: {err}");
    assert!(limited.join(".partial/chunk_00000.sha256").exists(), "finished chunks are kept");
    assert!(!limited.join("manifest.json").exists(), "no manifest: the store does not read as finished");
    ok(huescan().args(args(&limited)));
    let fresh = dir.join("fresh");
    ok(huescan().args(args(&fresh)));
    let mut files: Vec<_> = std::fs::read_dir(&fresh).unwrap().map(|e| e.unwrap().file_name()).collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for f in files {
        let (a, b) = (std::fs::read(limited.join(&f)).unwrap(), std::fs::read(fresh.join(&f)).unwrap());
        assert!(a == b, "{f:?} differs");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn offline_analysis_and_report_of_a_store_converted_from_the_notebook_pickles() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tmp("offline");
    let said = ok(huescan()
        .args(["analyze", "--permutations", "10", "--bootstrap", "20", "--out"])
        .arg(dir.join("analysis"))
        .arg(root.join("tests/fixtures/joblib-converted")));
    assert!(said.contains("tiny_scan"), "{said}");
    let said = ok(huescan().arg("report").arg(&dir));
    assert!(said.contains("1 set(s) (tiny_scan)"), "{said}");
    assert!(std::fs::read_to_string(dir.join("report/index.html")).unwrap().contains("tiny_scan"));
    // The analysis folder itself works too; a folder with no analysis is explained.
    ok(huescan().arg("report").arg(dir.join("analysis")));
    let out = huescan().arg("report").arg(dir.join("report")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("run `huescan analyze` first"));
    std::fs::remove_dir_all(dir).unwrap();
}

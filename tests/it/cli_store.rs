//! `huescan store inspect` and `huescan merge` run as a user would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use huescan::store::{shard_dir, shard_range, Provenance, SampleEntry, ShardInfo, StoreSpec, StoreWriter};
use ndarray::{ArrayD, IxDyn};

use crate::common::huescan;

fn tmp(name: &str) -> PathBuf {
    crate::common::fresh_dir("cli", name)
}

fn write(dir: &Path, samples: Vec<SampleEntry>, shard: Option<ShardInfo>, offset: usize) {
    let spec = StoreSpec {
        layer_convention: huescan::model::LAYER_CONVENTION.to_string(),
        provenance: Provenance {
            model_id: "test/model".into(),
            model_revision: None,
            model_config_sha256: None,
            model_files_sha256: Default::default(),
            stimuli_name: "synthetic".into(),
            stimuli_sha256: "0123456789abcdef".into(),
            pooling: "image-mean".into(),
            settings: BTreeMap::new(),
        },
        layers: vec![(0, "blocks.0.hook_resid_pre".into()), (1, "blocks.0.hook_resid_post".into())],
        samples,
        shard,
    };
    let mut w = StoreWriter::create(dir, spec, 4).unwrap();
    for c in w.pending_chunks() {
        let n = c.range.len();
        let acts = [0usize, 1]
            .iter()
            .map(|&l| {
                let data = (0..n * 3).map(|k| (l * 100 + (offset + c.range.start) * 3 + k) as f32).collect();
                (l, ArrayD::from_shape_vec(IxDyn(&[n, 3]), data).unwrap())
            })
            .collect();
        w.write_chunk(&c, &acts).unwrap();
    }
    w.finish().unwrap();
}

fn samples(n: usize) -> Vec<SampleEntry> {
    (0..n).map(|i| SampleEntry { id: format!("hue_{:03}", i * 36), hue_deg: (i * 36) as f64 }).collect()
}

#[test]
fn inspect_prints_a_summary_and_verifies() {
    let dir = tmp("inspect");
    write(&dir, samples(10), None, 0);
    let out = huescan().args(["store", "inspect"]).arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("samples     10 (hue 0..324 deg)"), "{stdout}");
    assert!(stdout.contains("blocks.0.hook_resid_post"), "{stdout}");
    assert!(stdout.contains("verified    all 2 layers"), "{stdout}");

    let json = huescan().args(["store", "inspect", "--json", "--no-verify"]).arg(&dir).output().unwrap();
    let m: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(m["d_model"], 3);
    assert!(m["layer_convention"].as_str().unwrap().starts_with("hf_hidden_states"));

    // A damaged layer makes inspect fail with exit code 1 and name the layer.
    let f = dir.join("layer_001.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 4]).unwrap();
    let out = huescan().args(["store", "inspect"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("layer 1") && stderr.contains("checksum"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn inspect_explains_a_missing_or_unfinished_store() {
    let out = huescan().args(["store", "inspect", "/nonexistent/store"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a runtime failure, not a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let dir = tmp("unfinished");
    std::fs::create_dir_all(&dir).unwrap();
    let out = huescan().args(["store", "inspect"]).arg(&dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("re-run the same command to resume"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn merge_joins_shards_in_place() {
    let root = tmp("merge");
    let single = tmp("merge-single");
    write(&single, samples(10), None, 0);
    for i in 0..3 {
        let r = shard_range(10, i, 3);
        let info = ShardInfo { index: i, count: 3, total_samples: 10, offset: r.start };
        write(&shard_dir(&root, i, 3), samples(10)[r.clone()].to_vec(), Some(info), r.start);
    }
    let out = huescan().arg("merge").arg(&root).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["manifest.json", "layer_000.safetensors", "layer_001.safetensors"] {
        assert_eq!(std::fs::read(root.join(f)).unwrap(), std::fs::read(single.join(f)).unwrap(), "{f}");
    }
    let empty = tmp("merge-empty");
    std::fs::create_dir_all(empty.join("shards")).unwrap();
    let out = huescan().arg("merge").arg(&empty).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no shards found"));
    for d in [root, single, empty] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

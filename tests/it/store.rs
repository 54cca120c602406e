//! The activation store: round trip, resume after a kill, shard + merge equals a single run byte for byte,
//! and every way a store can be broken is reported clearly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use huescan::store::{
    self, merge, shard_dir, shard_range, ActivationStore, Provenance, SampleEntry, ShardInfo, StoreSpec, StoreWriter,
};
use ndarray::{ArrayD, IxDyn};

const N: usize = 23;
const D: usize = 5;
const LAYERS: [usize; 3] = [0, 2, 4];

fn tmp(name: &str) -> PathBuf {
    crate::common::fresh_dir("store", name)
}

fn provenance() -> Provenance {
    Provenance {
        model_id: "test/model".into(),
        model_revision: Some("abc123".into()),
        model_config_sha256: None,
        model_files_sha256: Default::default(),
        stimuli_name: "synthetic".into(),
        stimuli_sha256: "00".into(),
        pooling: "image-mean".into(),
        settings: BTreeMap::from([("prompt".to_string(), "what colour?".to_string())]),
    }
}

fn samples() -> Vec<SampleEntry> {
    (0..N).map(|i| SampleEntry { id: format!("hue_{:03}", i * 15), hue_deg: (i * 15) as f64 }).collect()
}

/// A deterministic activation for (layer, sample, dim).
fn value(layer: usize, sample: usize, dim: usize) -> f32 {
    ((layer * 1000 + sample * 10 + dim) as f32).sin()
}

fn acts_for(range: std::ops::Range<usize>) -> BTreeMap<usize, ArrayD<f32>> {
    LAYERS
        .iter()
        .map(|&l| {
            let data: Vec<f32> = range.clone().flat_map(|s| (0..D).map(move |d| value(l, s, d))).collect();
            (l, ArrayD::from_shape_vec(IxDyn(&[range.len(), D]), data).unwrap())
        })
        .collect()
}

fn spec(samples: Vec<SampleEntry>, shard: Option<ShardInfo>) -> StoreSpec {
    StoreSpec {
        layer_convention: huescan::model::LAYER_CONVENTION.to_string(),
        provenance: provenance(),
        layers: LAYERS.iter().map(|&l| (l, format!("blocks.{l}.hook_resid_pre"))).collect(),
        samples,
        shard,
    }
}

/// Writes a store (or shard) the way `huescan extract` does; `offset` = first sample's global index.
fn write_store(dir: &Path, spec: StoreSpec, offset: usize, chunk: usize) -> ActivationStore {
    let mut w = StoreWriter::create(dir, spec, chunk).unwrap();
    for c in w.pending_chunks() {
        let acts = acts_for((offset + c.range.start)..(offset + c.range.end));
        w.write_chunk(&c, &acts).unwrap();
    }
    w.finish().unwrap()
}

fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn round_trip_reads_each_layer_back_exactly() {
    let dir = tmp("roundtrip");
    let store = write_store(&dir, spec(samples(), None), 0, 4);
    assert_eq!(store.layer_indices(), LAYERS.to_vec());
    assert_eq!(store.hue_deg().len(), N);
    for &l in &LAYERS {
        let a = store.layer_2d(l).unwrap();
        assert_eq!(a.dim(), (N, D));
        for s in 0..N {
            for d in 0..D {
                assert_eq!(a[[s, d]], value(l, s, d));
            }
        }
    }
    assert!(!dir.join(".partial").exists(), "work files are removed");
    // Python readers need only json + safetensors: the layer file holds one `acts` tensor.
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["layers"][1]["file"], "layer_002.safetensors");
    assert_eq!(m["layer_convention"].as_str().unwrap().split(':').next().unwrap(), "hf_hidden_states");
    let err = store.layer(1).unwrap_err().to_string();
    assert!(err.contains("no layer 1") && err.contains("0, 2, 4"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sharded_then_merged_is_byte_identical_to_one_run() {
    let single = tmp("single");
    write_store(&single, spec(samples(), None), 0, 4);
    let root = tmp("sharded");
    let n_shards = 3;
    let mut dirs = Vec::new();
    for i in 0..n_shards {
        let r = shard_range(N, i, n_shards);
        let info = ShardInfo { index: i, count: n_shards, total_samples: N, offset: r.start };
        let dir = shard_dir(&root, i, n_shards);
        write_store(&dir, spec(samples()[r.clone()].to_vec(), Some(info)), r.start, 4);
        dirs.push(dir);
    }
    assert_eq!(store::find_shards(&root).unwrap(), dirs);
    dirs.reverse(); // order of arguments does not matter
    merge(&dirs, &root).unwrap();
    let (a, b) = (files_of(&single), files_of(&root));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{name} differs between the single run and the merged shards");
    }
    // Missing and duplicate shards are refused.
    let err = merge(&dirs[..2], &tmp("merge-missing")).unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
    let dup = vec![dirs[0].clone(), dirs[0].clone(), dirs[1].clone()];
    let err = merge(&dup, &tmp("merge-dup")).unwrap_err().to_string();
    assert!(err.contains("twice"), "{err}");
    // An unsharded store is not a shard.
    let err = merge(std::slice::from_ref(&single), &tmp("merge-notshard")).unwrap_err().to_string();
    assert!(err.contains("not a shard"), "{err}");
    std::fs::remove_dir_all(single).unwrap();
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn merge_refuses_shards_from_different_inputs() {
    let root = tmp("incompatible");
    let mut dirs = Vec::new();
    for i in 0..2 {
        let r = shard_range(N, i, 2);
        let info = ShardInfo { index: i, count: 2, total_samples: N, offset: r.start };
        let mut s = spec(samples()[r.clone()].to_vec(), Some(info));
        if i == 1 {
            s.provenance.model_revision = Some("different".into());
        }
        let dir = shard_dir(&root, i, 2);
        write_store(&dir, s, r.start, 8);
        dirs.push(dir);
    }
    let err = merge(&dirs, &root).unwrap_err().to_string();
    assert!(err.contains("different model"), "{err}");
    assert!(!root.join("manifest.json").exists(), "nothing is written when shards do not fit");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_killed_run_resumes_and_redoes_only_broken_chunks() {
    let dir = tmp("resume");
    let chunk = 5;
    let mut w = StoreWriter::create(&dir, spec(samples(), None), chunk).unwrap();
    let chunks = w.pending_chunks();
    assert_eq!(chunks.len(), N.div_ceil(chunk));
    // "Kill" after three chunks; the third one was cut off mid-write after its rename (e.g. a copy that
    // truncated it), and a temp file of a fourth write is left behind.
    for c in &chunks[..3] {
        w.write_chunk(c, &acts_for(c.range.clone())).unwrap();
    }
    drop(w);
    let partial = dir.join(".partial");
    let third = partial.join("chunk_00002.safetensors");
    let bytes = std::fs::read(&third).unwrap();
    std::fs::write(&third, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(partial.join(".chunk_00003.safetensors.tmp.999"), b"garbage").unwrap();

    let mut w = StoreWriter::create(&dir, spec(samples(), None), chunk).unwrap();
    let pending: Vec<usize> = w.pending_chunks().iter().map(|c| c.index).collect();
    assert_eq!(pending, vec![2, 3, 4], "finished chunks are skipped, the truncated one is redone");
    for c in w.pending_chunks() {
        w.write_chunk(&c, &acts_for(c.range.clone())).unwrap();
    }
    w.finish().unwrap();
    let fresh = tmp("resume-fresh");
    write_store(&fresh, spec(samples(), None), 0, chunk);
    assert_eq!(files_of(&dir), files_of(&fresh), "a resumed run equals an uninterrupted one");

    // Re-running a finished store does nothing; other inputs are refused instead of overwriting.
    let w = StoreWriter::create(&dir, spec(samples(), None), chunk).unwrap();
    assert!(w.is_complete() && w.pending_chunks().is_empty());
    let mut other = spec(samples(), None);
    other.provenance.pooling = "last".into();
    let err = StoreWriter::create(&dir, other, chunk).err().unwrap().to_string();
    assert!(err.contains("different inputs"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(fresh).unwrap();
}

#[test]
fn partial_chunks_of_other_inputs_are_discarded() {
    let dir = tmp("stale");
    let mut w = StoreWriter::create(&dir, spec(samples(), None), 5).unwrap();
    let c = w.pending_chunks()[0].clone();
    w.write_chunk(&c, &acts_for(c.range.clone())).unwrap();
    drop(w);
    let mut other = spec(samples(), None);
    other.provenance.settings.insert("prompt".into(), "another prompt".into());
    let w = StoreWriter::create(&dir, other, 5).unwrap();
    assert_eq!(w.pending_chunks().len(), N.div_ceil(5), "chunk from another prompt is not reused");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn corrupt_truncated_and_missing_files_are_reported() {
    let dir = tmp("corrupt");
    let store = write_store(&dir, spec(samples(), None), 0, 8);
    let file = dir.join("layer_002.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40; // one flipped bit
    std::fs::write(&file, &bytes).unwrap();
    let err = store.layer(2).unwrap_err().to_string();
    assert!(err.contains("checksum") && err.contains("layer_002"), "{err}");
    std::fs::write(&file, &bytes[..100]).unwrap();
    let err = store.layer(2).unwrap_err().to_string();
    assert!(err.contains("checksum"), "{err}");
    assert!(store.layer(0).is_ok(), "other layers stay readable");
    std::fs::remove_file(&file).unwrap();
    let err = ActivationStore::open(&dir).unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
    std::fs::remove_file(dir.join("manifest.json")).unwrap();
    let err = ActivationStore::open(&dir).unwrap_err().to_string();
    assert!(err.contains("not a finished activation store"), "{err}");
    std::fs::write(dir.join("manifest.json"), b"{\"format\": 3").unwrap();
    let err = ActivationStore::open(&dir).unwrap_err().to_string();
    assert!(err.contains("manifest.json"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_activations_are_refused_with_layer_and_sample() {
    let dir = tmp("badacts");
    let mut w = StoreWriter::create(&dir, spec(samples(), None), 5).unwrap();
    let c = w.pending_chunks()[1].clone();
    let mut acts = acts_for(c.range.clone());
    acts.get_mut(&2).unwrap()[[3, 1]] = f32::NAN;
    let err = w.write_chunk(&c, &acts).unwrap_err().to_string();
    assert!(err.contains("layer 2") && err.contains(&format!("hue_{:03}", (5 + 3) * 15)), "{err}");
    // Once a chunk fixed a layer's width, another chunk cannot change it.
    let first = w.pending_chunks()[0].clone();
    w.write_chunk(&first, &acts_for(first.range.clone())).unwrap();
    let mut acts = acts_for(c.range.clone());
    acts.insert(4, ArrayD::zeros(IxDyn(&[c.range.len(), D + 1])));
    let err = w.write_chunk(&c, &acts).unwrap_err().to_string();
    assert!(err.contains("per-sample shape of layer 4"), "{err}");
    let mut acts = acts_for(c.range.clone());
    acts.insert(0, ArrayD::zeros(IxDyn(&[c.range.len() - 1, D])));
    let err = w.write_chunk(&c, &acts).unwrap_err().to_string();
    assert!(err.contains("sample count"), "{err}");
    let mut acts = acts_for(c.range.clone());
    acts.remove(&4);
    let err = w.write_chunk(&c, &acts).unwrap_err().to_string();
    assert!(err.contains("layer 4"), "{err}");
    let err = w.finish().err().unwrap().to_string();
    assert!(err.contains("missing"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn manifest_rejects_label_sample_mismatch() {
    let dir = tmp("mismatch");
    write_store(&dir, spec(samples(), None), 0, 8);
    let path = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["samples"].as_array_mut().unwrap().pop();
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    let err = ActivationStore::open(&dir).unwrap_err().to_string();
    assert!(err.contains("expected [22"), "{err}");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["samples"][0]["id"] = m["samples"][1]["id"].clone();
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    let err = ActivationStore::open(&dir).unwrap_err().to_string();
    assert!(err.contains("twice") || err.contains("expected [22"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_store_converted_from_the_notebook_pickle_reads_back() {
    // Written by scripts/convert_joblib_scan.py (see scripts/make_joblib_fixture.py), i.e. by Python alone.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/joblib-converted");
    let store = ActivationStore::open(&dir).unwrap();
    store.verify().unwrap();
    assert_eq!(store.hue_deg(), (0..12).map(|i| (i * 30) as f64).collect::<Vec<_>>());
    let a = store.layer_2d(1).unwrap();
    let raw = std::fs::read(dir.join("expected_layer_001.f32le")).unwrap();
    let expected: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(a.iter().copied().collect::<Vec<_>>(), expected);
    assert_eq!(store.manifest().layers[1].hook, "pickle.layer_1");
}

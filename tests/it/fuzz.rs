//! A small, bounded mutation fuzzer for the four formats huescan reads from users: stimulus-spec TOML,
//! `config.json`, `manifest.json` and safetensors headers. Seeded (ChaCha8), so a failure reproduces; every
//! mutated input must parse or be refused, never panic. It runs inside `cargo test` in a few seconds; raise
//! `HUESCAN_FUZZ_CASES` for a longer run.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use huescan::store::{serialize_f32, F32Tensor, MappedFile};

fn cases() -> usize {
    std::env::var("HUESCAN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400)
}

/// Values that have broken parsers before: zero, negatives, overflow, non-finite, empty and huge strings.
const NASTY: &[&str] = &[
    "0",
    "-1",
    "-0",
    "1e16",
    "1e309",
    "-1e309",
    "nan",
    "inf",
    "4294967296",
    "18446744073709551616",
    "0.0001",
    "\"\"",
    "\"<script>\"",
    "[]",
    "{}",
    "null",
    "true",
    "999999999999",
    "1e-320",
];

/// One random edit of `input`: flip, insert, delete, duplicate, truncate, or replace a number by a nasty value.
fn mutate(rng: &mut ChaCha8Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..rng.random_range(1..4) {
        let n = b.len().max(1);
        match rng.random_range(0..6) {
            0 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let i = rng.random_range(0..=b.len());
                b.insert(i, rng.random());
            }
            2 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                let j = (i + rng.random_range(1..16)).min(b.len());
                b.drain(i..j);
            }
            3 if !b.is_empty() => {
                let i = rng.random_range(0..b.len());
                let j = (i + rng.random_range(1..32)).min(b.len());
                let chunk = b[i..j].to_vec();
                b.splice(i..i, chunk);
            }
            4 => b.truncate(rng.random_range(0..n)),
            _ => {
                let digits: Vec<usize> = (0..b.len()).filter(|&i| b[i].is_ascii_digit()).collect();
                if let Some(&start) = digits.get(rng.random_range(0..digits.len().max(1))) {
                    let end = (start..b.len()).find(|&i| !b[i].is_ascii_digit() && b[i] != b'.').unwrap_or(b.len());
                    let nasty = NASTY[rng.random_range(0..NASTY.len())].as_bytes();
                    b.splice(start..end, nasty.iter().copied());
                }
            }
        }
    }
    b
}

/// Runs `check` on `cases()` mutations of each seed; a panic fails the test naming the input.
fn fuzz(target: &str, seeds: &[Vec<u8>], check: impl Fn(&[u8])) {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    for seed in seeds {
        check(seed);
        for case in 0..cases() {
            let input = mutate(&mut rng, seed);
            if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
                panic!("{target}: case {case} panicked on input:\n{}", String::from_utf8_lossy(&input));
            }
        }
    }
}

#[test]
fn spec_toml_never_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stimuli");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    seeds.sort();
    seeds.push(crate::reliability::SPEC_12.as_bytes().to_vec());
    fuzz("spec toml", &seeds, |bytes| {
        let Ok(text) = std::str::from_utf8(bytes) else { return };
        if let Ok(spec) = huescan::stimuli::StimulusSpec::from_toml_str(text, "fuzz.toml".as_ref()) {
            let hues = spec.hue_mdegs();
            assert!(!hues.is_empty() && hues.iter().all(|h| (0..360_000).contains(h)), "{hues:?}");
        }
    });
}

#[test]
fn config_json_never_panics() {
    let fixture = crate::common::qwen_fixture();
    let seeds: Vec<Vec<u8>> = ["model/config.json", "model-newnames/config.json"]
        .iter()
        .map(|p| std::fs::read(fixture.join(p)).unwrap())
        .collect();
    fuzz("config.json", &seeds, |bytes| {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
            let _ = huescan::model::qwen2_5_vl::Config::from_value(&v);
        }
    });
}

const MANIFEST: &str = r#"{
  "format": "huescan-activations", "format_version": 1, "tool_version": "0.1.0",
  "layer_convention": "hidden_states", "dtype": "f32", "d_model": 3,
  "provenance": {"model_id": "m", "model_revision": null, "model_config_sha256": null, "stimuli_name": "s",
                 "stimuli_sha256": "00", "pooling": "last", "settings": {"dtype": "f32"}},
  "layers": [{"index": 0, "hook": "blocks.0.hook_resid_post", "file": "layer_000.safetensors", "shape": [2, 3],
              "sha256": "00"},
             {"index": 1, "hook": "blocks.1.hook_resid_post", "file": "layer_001.safetensors", "shape": [2, 3],
              "sha256": "00"}],
  "samples": [{"id": "hue_000", "hue_deg": 0.0}, {"id": "hue_180", "hue_deg": 180.0}],
  "shard": {"index": 0, "count": 1, "total_samples": 2, "offset": 0}
}"#;

#[test]
fn manifest_json_never_panics() {
    fuzz("manifest.json", &[MANIFEST.as_bytes().to_vec()], |bytes| {
        if let Ok(m) = serde_json::from_slice::<huescan::store::Manifest>(bytes) {
            let _ = m.validate();
        }
    });
}

#[test]
fn safetensors_headers_never_panic() {
    let data = [1.0f32, -2.0, 3.5, 0.25, 8.0, -0.5];
    let meta = BTreeMap::from([("hook".to_string(), "blocks.0".to_string())]);
    let seed = serialize_f32(&[F32Tensor { name: "acts", shape: &[2, 3], data: &data }], &meta);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.safetensors");
    // Mutations land in the header (the first ~150 bytes) far more often than in the data.
    let header_only = seed[..seed.len() - 24].to_vec();
    fuzz("safetensors", &[seed.clone(), header_only], |bytes| {
        let mut file = bytes.to_vec();
        if file.len() < seed.len() {
            file.extend_from_slice(&seed[file.len().min(seed.len())..]);
        }
        std::fs::write(&path, &file).unwrap();
        if let Ok(f) = MappedFile::open(&path) {
            let _ = f.names();
            let _ = f.metadata();
            let _ = f.read_f32("acts");
        }
    });
}

//! Extraction with a stand-in model whose activations depend only on each image: sharding, resume after a
//! crash, batch-size invariance, bad inputs.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use huescan::extract::{extract, ExtractPlan, SampleInput};
use huescan::model::{Captures, HookPoint, HookSet, Model, Pooling};
use huescan::store::{self, Provenance};

struct FakeModel {
    calls: Cell<usize>,
    fail_after: Option<usize>,
    /// Batches larger than this fail like a GPU out of memory.
    max_batch: Option<usize>,
}

impl Model for FakeModel {
    fn id(&self) -> &str {
        "fake"
    }
    fn hook_points(&self) -> Vec<HookPoint> {
        vec![HookPoint::ResidPre(0), HookPoint::ResidPost(0), HookPoint::LnFinalOut]
    }
    fn width(&self, _: &HookPoint) -> Option<usize> {
        Some(4)
    }
    fn forward(&self, images: &[image::RgbImage], hooks: &HookSet, _: Pooling) -> huescan::model::Result<Captures> {
        let n = self.calls.get() + 1;
        self.calls.set(n);
        if self.fail_after.is_some_and(|k| n > k) {
            return Err(huescan::model::Error::Msg("simulated crash".into()));
        }
        if self.max_batch.is_some_and(|m| images.len() > m) {
            return Err(huescan::model::Error::Msg("DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into()));
        }
        let mut layers = BTreeMap::new();
        for (li, point) in self.hook_points().iter().enumerate() {
            if !hooks.wants(point) {
                continue;
            }
            let rows: Vec<f32> = images
                .iter()
                .flat_map(|img| {
                    let p = img.get_pixel(0, 0).0;
                    (0..4).map(move |d| (p[d % 3] as f32 + li as f32 * 0.5) * (d as f32 + 1.0))
                })
                .collect();
            layers.insert(point.clone(), Tensor::from_vec(rows, (images.len(), 4), &Device::Cpu).unwrap());
        }
        Ok(Captures { layers, logits: None })
    }
}

fn fake() -> FakeModel {
    FakeModel { calls: Cell::new(0), fail_after: None, max_batch: None }
}

fn tmp(name: &str) -> PathBuf {
    let dir = crate::common::fresh_dir("extract", name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn images(dir: &Path, n: usize) -> Vec<SampleInput> {
    (0..n)
        .map(|i| {
            let path = dir.join(format!("hue_{i:03}.png"));
            let c = [(i * 7 % 256) as u8, (i * 13 % 256) as u8, (i * 29 % 256) as u8];
            image::RgbImage::from_pixel(8, 8, image::Rgb(c)).save(&path).unwrap();
            SampleInput { id: format!("hue_{i:03}"), hue_deg: ((i * 5) % 360) as f64, image: path, text: None }
        })
        .collect()
}

fn plan(samples: Vec<SampleInput>, out: &Path, batch: usize, shard: Option<(usize, usize)>) -> ExtractPlan {
    ExtractPlan {
        samples,
        layers: vec![0, 2],
        pooling: Pooling::ImageMean,
        batch_size: batch,
        adaptive: false,
        shard,
        provenance: Provenance {
            model_id: "fake".into(),
            model_revision: None,
            model_config_sha256: None,
            model_files_sha256: Default::default(),
            stimuli_name: "test".into(),
            stimuli_sha256: "x".into(),
            pooling: "image-mean".into(),
            settings: BTreeMap::new(),
        },
        out: out.to_path_buf(),
    }
}

fn store_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    ["manifest.json", "layer_000.safetensors", "layer_002.safetensors"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
        .collect()
}

#[test]
fn shards_merged_equal_one_run_and_batch_size_does_not_matter() {
    let dir = tmp("shards");
    let samples = images(&dir, 70);
    let single = dir.join("single");
    let out = extract(&fake(), &plan(samples.clone(), &single, 8, None), &|_, _| {}).unwrap();
    assert_eq!(out.computed, 70);
    let other_batch = dir.join("batch3");
    extract(&fake(), &plan(samples.clone(), &other_batch, 3, None), &|_, _| {}).unwrap();
    assert_eq!(store_files(&single), store_files(&other_batch));
    let sharded = dir.join("sharded");
    for i in 0..4 {
        extract(&fake(), &plan(samples.clone(), &sharded, 5, Some((i, 4))), &|_, _| {}).unwrap();
    }
    store::merge(&store::find_shards(&sharded).unwrap(), &sharded).unwrap();
    assert_eq!(store_files(&single), store_files(&sharded));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_crashed_run_resumes_where_it_stopped() {
    let dir = tmp("resume");
    let samples = images(&dir, 100);
    let out = dir.join("store");
    // Batches of 8 in chunks of 32: the crash in the 10th batch (chunk 2) loses only that chunk.
    let crashing = FakeModel { calls: Cell::new(0), fail_after: Some(9), max_batch: None };
    let err = extract(&crashing, &plan(samples.clone(), &out, 8, None), &|_, _| {}).unwrap_err();
    assert!(err.to_string().contains("simulated crash"));
    let model = fake();
    let result = extract(&model, &plan(samples.clone(), &out, 8, None), &|_, _| {}).unwrap();
    assert_eq!((result.resumed, result.computed), (64, 36));
    assert_eq!(model.calls.get(), 5, "only the unfinished chunks are recomputed");
    let fresh = dir.join("fresh");
    extract(&fake(), &plan(samples.clone(), &fresh, 8, None), &|_, _| {}).unwrap();
    assert_eq!(store_files(&out), store_files(&fresh));
    // A finished store is not recomputed.
    let again = fake();
    let result = extract(&again, &plan(samples, &out, 8, None), &|_, _| {}).unwrap();
    assert_eq!((result.computed, again.calls.get()), (0, 0));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_layers_and_unreadable_images_are_explained() {
    let dir = tmp("bad");
    let mut samples = images(&dir, 5);
    let mut p = plan(samples.clone(), &dir.join("a"), 2, None);
    p.layers = vec![0, 7];
    let err = extract(&fake(), &p, &|_, _| {}).unwrap_err().to_string();
    assert!(err.contains("layer 7 does not exist") && err.contains("0..=2"), "{err}");
    std::fs::write(&samples[3].image, b"not a png").unwrap();
    let err = extract(&fake(), &plan(samples.clone(), &dir.join("b"), 2, None), &|_, _| {}).unwrap_err().to_string();
    assert!(err.contains("cannot read image") && err.contains("hue_003"), "{err}");
    samples.clear();
    let err = extract(&fake(), &plan(samples, &dir.join("c"), 2, None), &|_, _| {}).unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn out_of_memory_halves_an_automatic_batch_and_not_a_chosen_one() {
    let dir = tmp("oom");
    let samples = images(&dir, 40);
    let small = FakeModel { calls: Cell::new(0), fail_after: None, max_batch: Some(3) };
    let mut p = plan(samples.clone(), &dir.join("auto"), 16, None);
    p.adaptive = true;
    let out = extract(&small, &p, &|_, _| {}).unwrap();
    assert_eq!(out.computed, 40);
    let reference = dir.join("reference");
    extract(&fake(), &plan(samples.clone(), &reference, 3, None), &|_, _| {}).unwrap();
    assert_eq!(store_files(&dir.join("auto")), store_files(&reference), "the batch size never changes the numbers");
    let err = extract(&small, &plan(samples, &dir.join("fixed"), 16, None), &|_, _| {}).unwrap_err();
    assert!(huescan::extract::is_out_of_memory(&err), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

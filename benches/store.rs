//! Store throughput: write and read 36 layers x 360 samples x 2048 f32 (the 3B model's pooled scan of the
//! wild-360 set), next to a plain copy of the same number of bytes on the same disk.
//!
//! Run: `cargo bench --bench store` (prints a Markdown table for BENCHMARKS.md). Not a test: no asserts on time.

use std::collections::BTreeMap;
use std::time::Instant;

use huescan::store::{ActivationStore, Provenance, SampleEntry, StoreSpec, StoreWriter};
use ndarray::{ArrayD, IxDyn};

const LAYERS: usize = 36;
const SAMPLES: usize = 360;
const D: usize = 2048;
const CHUNK: usize = 32;

fn main() {
    let root = std::env::temp_dir().join(format!("huescan-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let bytes = (LAYERS * SAMPLES * D * 4) as f64;
    let mb = bytes / 1e6;

    // Same bytes as a plain file, written then copied.
    let data: Vec<u8> = (0..LAYERS * SAMPLES * D).flat_map(|i| ((i % 9973) as f32 * 1e-3).to_le_bytes()).collect();
    std::fs::create_dir_all(&root).unwrap();
    let plain = root.join("plain.bin");
    let t = Instant::now();
    std::fs::write(&plain, &data).unwrap();
    std::fs::File::open(&plain).unwrap().sync_all().unwrap();
    let plain_write = t.elapsed().as_secs_f64();
    let t = Instant::now();
    std::fs::copy(&plain, root.join("copy.bin")).unwrap();
    std::fs::File::open(root.join("copy.bin")).unwrap().sync_all().unwrap();
    let plain_copy = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let back = std::fs::read(&plain).unwrap();
    let plain_read = t.elapsed().as_secs_f64();
    assert_eq!(back.len(), data.len());
    drop(back);

    let spec = StoreSpec {
        layer_convention: huescan::model::LAYER_CONVENTION.to_string(),
        provenance: Provenance {
            model_id: "bench".into(),
            model_revision: None,
            model_config_sha256: None,
            model_files_sha256: Default::default(),
            stimuli_name: "bench".into(),
            stimuli_sha256: "0".into(),
            pooling: "image-mean".into(),
            settings: BTreeMap::new(),
        },
        layers: (0..LAYERS).map(|l| (l, format!("blocks.{l}.hook_resid_pre"))).collect(),
        samples: (0..SAMPLES).map(|i| SampleEntry { id: format!("hue_{i:03}"), hue_deg: i as f64 }).collect(),
        shard: None,
    };
    let dir = root.join("store");
    let t = Instant::now();
    let mut w = StoreWriter::create(&dir, spec, CHUNK).unwrap();
    for c in w.pending_chunks() {
        let n = c.range.len();
        let acts: BTreeMap<usize, ArrayD<f32>> = (0..LAYERS)
            .map(|l| {
                let v = (0..n * D).map(|k| ((l * 7 + c.range.start * D + k) % 9973) as f32 * 1e-3).collect();
                (l, ArrayD::from_shape_vec(IxDyn(&[n, D]), v).unwrap())
            })
            .collect();
        w.write_chunk(&c, &acts).unwrap();
    }
    let store = w.finish().unwrap();
    let store_write = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let store = ActivationStore::open(store.dir()).unwrap();
    let mut checksum = 0f64;
    for l in store.layer_indices() {
        let a = store.layer_2d(l).unwrap();
        checksum += a[[0, 0]] as f64;
    }
    let store_read = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let a = store.layer_2d(17).unwrap();
    let one_layer = t.elapsed().as_secs_f64();
    assert_eq!(a.dim(), (SAMPLES, D));

    println!("| operation ({LAYERS} layers x {SAMPLES} samples x {D} f32 = {mb:.0} MB) | seconds | MB/s |");
    println!("|---|---|---|");
    println!("| plain file write + fsync | {plain_write:.3} | {:.0} |", mb / plain_write);
    println!("| plain file copy + fsync (`std::fs::copy`) | {plain_copy:.3} | {:.0} |", mb / plain_copy);
    println!("| plain file read | {plain_read:.3} | {:.0} |", mb / plain_read);
    println!(
        "| store write: chunks of {CHUNK} + NaN check + sha256 + assemble layers + fsync | {store_write:.3} | {:.0} |",
        mb / store_write
    );
    println!("| store read: all layers, sha256 verified, NaN check | {store_read:.3} | {:.0} |", mb / store_read);
    println!(
        "| store read: one layer ({:.1} MB) | {one_layer:.4} | {:.0} |",
        mb / LAYERS as f64,
        mb / LAYERS as f64 / one_layer
    );
    eprintln!("(checksum {checksum})");
    std::fs::remove_dir_all(&root).unwrap();
}

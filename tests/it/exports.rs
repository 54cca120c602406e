//! What leaves huescan for other tools: the `.npz` export read back array by array (with a reader written
//! here from the ZIP and NPY specs, not huescan's writer), the `datasets` image folder, and the saved SMDS
//! projection matrix projecting activations to the coordinates the analysis reports.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{fresh_dir, huescan};

fn ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed:\n{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned() + &stderr
}

fn u16_at(b: &[u8], i: usize) -> usize {
    u16::from_le_bytes([b[i], b[i + 1]]) as usize
}

fn u32_at(b: &[u8], i: usize) -> usize {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize
}

/// The members of a stored ZIP, found through its central directory (as Python's zipfile does).
fn unzip(b: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let eocd = b.len() - 22;
    assert_eq!(u32_at(b, eocd), 0x0605_4b50, "end of central directory");
    let (count, mut at) = (u16_at(b, eocd + 10), u32_at(b, eocd + 16));
    let mut out = BTreeMap::new();
    for _ in 0..count {
        assert_eq!(u32_at(b, at), 0x0201_4b50);
        assert_eq!(u16_at(b, at + 10), 0, "stored, not compressed");
        let (size, name_len, local) = (u32_at(b, at + 24), u16_at(b, at + 28), u32_at(b, at + 42));
        let name = String::from_utf8(b[at + 46..at + 46 + name_len].to_vec()).unwrap();
        let data_at = local + 30 + u16_at(b, local + 26) + u16_at(b, local + 28);
        out.insert(name, b[data_at..data_at + size].to_vec());
        at += 46 + name_len;
    }
    out
}

/// (descr, shape, data) of an NPY 1.0 file.
fn npy(b: &[u8]) -> (String, Vec<usize>, Vec<u8>) {
    assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16_at(b, 8);
    let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
    let field = |k: &str| {
        let rest = &header[header.find(k).unwrap() + k.len()..];
        rest.to_string()
    };
    let descr = field("'descr': '").split('\'').next().unwrap().to_string();
    let shape_text = field("'shape': (");
    let shape = shape_text[..shape_text.find(')').unwrap()]
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    assert!(header.contains("'fortran_order': False"));
    (descr, shape, b[10 + hlen..].to_vec())
}

fn f64s(b: &[u8]) -> Vec<f64> {
    b.chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
}

#[test]
fn npz_export_reads_back_by_name_and_is_byte_identical() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let store_dir = root.join("tests/fixtures/joblib-converted");
    let dir = fresh_dir("exports", "npz");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("acts.npz");
    ok(huescan().args(["store", "export"]).arg(&store_dir).args(["--layers", "0,2", "--out"]).arg(&out));
    let bytes = std::fs::read(&out).unwrap();
    let files = unzip(&bytes);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(names, ["X_0.npy", "X_2.npy", "hook.npy", "hue_deg.npy", "layer_index.npy", "sample_id.npy"]);
    let store = huescan::store::ActivationStore::open(&store_dir).unwrap();
    for index in [0usize, 2] {
        let (descr, shape, data) = npy(&files[&format!("X_{index}.npy")]);
        let x = store.layer_2d(index).unwrap();
        assert_eq!((descr.as_str(), shape), ("<f4", vec![x.nrows(), x.ncols()]));
        let got: Vec<f32> = data.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(got, x.iter().copied().collect::<Vec<f32>>(), "layer {index} row-major, bit for bit");
    }
    let (descr, _, data) = npy(&files["hue_deg.npy"]);
    assert_eq!((descr.as_str(), f64s(&data)), ("<f8", store.hue_deg()));
    let (descr, shape, data) = npy(&files["layer_index.npy"]);
    assert_eq!((descr.as_str(), shape), ("<i8", vec![2]));
    assert_eq!(data.chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>(), [0, 2]);
    let (descr, shape, data) = npy(&files["sample_id.npy"]);
    let width: usize = descr.trim_start_matches("<U").parse().unwrap();
    let ids: Vec<String> = data
        .chunks(width * 4)
        .map(|c| {
            c.chunks(4)
                .map(|u| u32::from_le_bytes(u.try_into().unwrap()))
                .filter(|&u| u != 0)
                .filter_map(char::from_u32)
                .collect()
        })
        .collect();
    assert_eq!((shape, ids), (vec![store.sample_ids().len()], store.sample_ids()));
    ok(huescan().args(["store", "export"]).arg(&store_dir).args(["--layers", "0,2", "--out"]).arg(&out));
    assert!(std::fs::read(&out).unwrap() == bytes, "the same store gives the same bytes");
    let bad = huescan()
        .args(["store", "export"])
        .arg(&store_dir)
        .args(["--layers", "7", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && stderr.contains("layer 7 does not exist"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn datasets_folder_has_every_image_and_a_metadata_line_per_image() {
    let dir = fresh_dir("exports", "datasets");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    ok(huescan().args(["stimuli", "render", "simple-60", "--out"]).arg(dir.join("stim")));
    let out = dir.join("hf");
    ok(huescan()
        .args(["store", "export"])
        .arg(root.join("tests/fixtures/joblib-converted"))
        .args(["--format", "datasets", "--stimuli"])
        .arg(dir.join("stim"))
        .arg("--out")
        .arg(&out));
    let meta = std::fs::read_to_string(out.join("metadata.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = meta.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 60);
    for r in &rows {
        assert!(out.join(r["file_name"].as_str().unwrap()).is_file());
        assert!(r["seed"].is_string(), "seeds as strings keep every digit in JSON readers: {r}");
        assert!(r["hue_deg"].is_number());
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_saved_projection_matrix_maps_activations_to_the_reported_coordinates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let store_dir = root.join("tests/fixtures/joblib-converted");
    let dir = fresh_dir("exports", "projection");
    ok(huescan().args(["analyze", "--permutations", "0", "--bootstrap", "0", "--out"]).arg(&dir).arg(&store_dir));
    let bytes = std::fs::read(dir.join("tiny_scan/projection.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let get = |name: &str| {
        let t = st.tensor(name).unwrap();
        (t.shape().to_vec(), f64s(t.data()))
    };
    let (wshape, w) = get("weight");
    let (_, mean) = get("mean");
    let (cshape, coords) = get("coords");
    let (k, d) = (wshape[0], wshape[1]);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("tiny_scan/summary.json")).unwrap()).unwrap();
    let layer = summary["projection"]["layer"].as_u64().unwrap() as usize;
    let x = huescan::store::ActivationStore::open(&store_dir).unwrap().layer_2d(layer).unwrap();
    assert_eq!((x.ncols(), cshape[1]), (d, k));
    let mut worst = 0.0f64;
    for i in 0..x.nrows() {
        for c in 0..k {
            let z: f64 = (0..d).map(|j| (f64::from(x[[i, j]]) - mean[j]) * w[c * d + j]).sum();
            worst = worst.max((z - coords[i * k + c]).abs());
        }
    }
    // Dual and primal forms of the same ridge fit agree to rounding (f64, n = 12 rows).
    assert!(worst < 1e-8, "max |(x - mean) W^T - coords| = {worst}");
    std::fs::remove_dir_all(dir).unwrap();
}

//! Full `manifold::analyze` on 36 layers x 360 samples x 2048 dims: layer scan (in-sample Circular fit + 5-fold
//! CV of every candidate shape per layer), periodic split, discovery of three shapes on train, held-out refit,
//! arbitration and projection. `scripts/bench/smds_bench.py` runs it next to the Python package on the same data.
//!
//! Data: `HUESCAN_BENCH_DATA` = a safetensors file with `layer.{l}` `[n, d]` f32 tensors and `hue_deg` `[n]` f64
//! (the script writes it), read one layer at a time; without it a deterministic planted-circle set is generated in
//! memory (then all layers are resident). Prints one JSON line per configuration.

use std::time::Instant;

use huescan::manifold::{analyze, AnalyzeOptions, LabelMode};
use ndarray::Array2;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM")).map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn read_header(path: &str) -> (serde_json::Value, u64) {
    use std::io::Read;
    let mut f = std::fs::File::open(path).expect("bench data");
    let mut len = [0u8; 8];
    f.read_exact(&mut len).unwrap();
    let len = u64::from_le_bytes(len);
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).unwrap();
    (serde_json::from_slice(&buf).unwrap(), 8 + len)
}

fn read_tensor(path: &str, header: &serde_json::Value, base: u64, name: &str) -> (Vec<usize>, Vec<u8>) {
    use std::io::{Read, Seek, SeekFrom};
    let info = &header[name];
    let shape: Vec<usize> = serde_json::from_value(info["shape"].clone()).unwrap();
    let off: Vec<u64> = serde_json::from_value(info["data_offsets"].clone()).unwrap();
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(base + off[0])).unwrap();
    let mut buf = vec![0u8; (off[1] - off[0]) as usize];
    f.read_exact(&mut buf).unwrap();
    (shape, buf)
}

fn synthetic(n_layers: usize, n: usize, d: usize) -> (Vec<Array2<f32>>, Vec<f64>) {
    let hue: Vec<f64> = (0..n).map(|i| i as f64 * 360.0 / n as f64).collect();
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut normal = move || {
        // splitmix64 + Box-Muller; only needs to be deterministic, not match numpy.
        let mut next = || {
            state = state.wrapping_add(0x9e3779b97f4a7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let (u, v) = (next().max(1e-300), next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    };
    let layers = (0..n_layers)
        .map(|l| {
            let amp = 3.0 * l as f64 / n_layers as f64;
            Array2::from_shape_fn((n, d), |(i, j)| {
                let th = hue[i].to_radians();
                let sig = match j {
                    0 => amp * th.cos(),
                    1 => amp * th.sin(),
                    _ => 0.0,
                };
                (sig + normal()) as f32
            })
        })
        .collect();
    (layers, hue)
}

fn run(
    name: &str,
    layers: impl Iterator<Item = huescan::manifold::Result<(usize, Array2<f32>)>>,
    hue: &[f64],
    opts: &AnalyzeOptions,
) {
    let t0 = Instant::now();
    let a = analyze(layers, hue, opts).expect("analysis");
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{{\"config\":\"{name}\",\"seconds\":{secs:.3},\"layers\":{},\"chosen_layer\":{},\"winner\":\"{}\",\"peak_rss_mb\":{:.1},\"threads\":{}}}",
        a.layer_scan.len(),
        a.choice.layer,
        a.winner,
        peak_rss_mb(),
        rayon::current_num_threads()
    );
}

fn main() {
    let compat =
        AnalyzeOptions { n_permutations: 0, n_bootstrap: 0, joystick: None, ..AnalyzeOptions::notebook("bench") };
    let periodic = AnalyzeOptions { dataset: "bench".into(), mode: LabelMode::Periodic, ..Default::default() };
    match std::env::var("HUESCAN_BENCH_DATA") {
        Ok(path) => {
            // Layers are read from the file one at a time (plain reads, no mmap), so the peak RSS below is the
            // analysis' own working set, not the page cache of the whole file.
            let (header, base) = read_header(&path);
            let hue: Vec<f64> = read_tensor(&path, &header, base, "hue_deg")
                .1
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let mut names: Vec<usize> = header
                .as_object()
                .unwrap()
                .keys()
                .filter_map(|n| n.strip_prefix("layer.").and_then(|l| l.parse().ok()))
                .collect();
            names.sort_unstable();
            let layer = |l: usize| {
                let (shape, bytes) = read_tensor(&path, &header, base, &format!("layer.{l}"));
                let v: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
                Ok((l, Array2::from_shape_vec((shape[0], shape[1]), v).unwrap()))
            };
            run("compat_notebook_pipeline", names.iter().map(|&l| layer(l)), &hue, &compat);
            run("periodic_default_100perm_1000boot", names.iter().map(|&l| layer(l)), &hue, &periodic);
        }
        Err(_) => {
            let (layers, hue) = synthetic(36, 360, 2048);
            run("compat_notebook_pipeline", layers.clone().into_iter().enumerate().map(Ok), &hue, &compat);
            run("periodic_default_100perm_1000boot", layers.into_iter().enumerate().map(Ok), &hue, &periodic);
        }
    }
}

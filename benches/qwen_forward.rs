//! Forward-pass timing of the Qwen2.5-VL runner, the Rust half of `scripts/bench/qwen_forward.py` (which runs
//! transformers on the same checkpoint and inputs and prints both side by side).
//!
//!     cargo bench --bench qwen_forward -- [CHECKPOINT_DIR INPUTS.safetensors [REPS [f32|bf16|f16 [BATCH [DEVICE]]]]]
//!
//! With no arguments it times the committed test fixture on its sample `b`. One timed forward = vision tower +
//! decoder with every hidden state captured (last-token pooling) + last-token logits, the extraction workload.
//! With BATCH > 1 the sample is repeated BATCH times in one forward (images/s = BATCH / median_s). Prints one
//! JSON line. DEVICE is `cpu` (default) or `cuda[:N]` (build with `--features cuda`); GPU timings include the
//! copy of the captures back to the host, which synchronises the device.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Tensor};
use huescan::model::qwen2_5_vl::{Qwen25VlModel, Sample};
use huescan::model::{estimate, HookSet, Model, Pooling};

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`, clock ticks of 10 ms). On a
/// shared machine wall time swings with other load; CPU time much less.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 overall.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest.split_whitespace().skip(11).take(2).filter_map(|x| x.parse().ok()).collect();
    if f.len() == 2 {
        (f[0] + f[1]) / 100.0
    } else {
        f64::NAN
    }
}

/// `(m, k, n)` of the extraction job's matmuls (`x · Wᵀ` as a `Linear` runs them): the vision tower over one
/// 224x224 image (256 patches), the decoder over ~96 tokens, and both at batch 8. Same list as
/// `scripts/bench/extract_job.py`, which times them in torch.
const JOB_GEMMS: [(usize, usize, usize); 5] =
    [(256, 1280, 3420), (256, 1280, 3840), (96, 2048, 11008), (2048, 1280, 3420), (768, 2048, 11008)];

/// GFLOP/s of one `x (m, k) · W (n, k)ᵀ` per shape, median of 5 after a warm-up: through candle's matmul (the
/// `gemm` crate) and through the model's own Linear (faer on the CPU in f32 unless `HUESCAN_PLAIN_KERNELS`).
fn job_gemm_rates(device: &candle_core::Device, dtype: DType) -> anyhow::Result<serde_json::Value> {
    use candle_core::Module;
    let median_rate = |flops: f64, f: &dyn Fn() -> candle_core::Result<Tensor>| -> anyhow::Result<f64> {
        f()?;
        let mut t = Vec::with_capacity(5);
        for _ in 0..5 {
            let s = Instant::now();
            std::hint::black_box(f()?);
            device.synchronize()?;
            t.push(s.elapsed().as_secs_f64());
        }
        t.sort_by(f64::total_cmp);
        Ok(flops / t[2] / 1e9)
    };
    let mut out = serde_json::Map::new();
    for (m, k, n) in JOB_GEMMS {
        let x = Tensor::randn(0f32, 1.0, (m, k), device)?.to_dtype(dtype)?;
        let w = Tensor::randn(0f32, 1.0, (n, k), device)?.to_dtype(dtype)?;
        let flops = 2.0 * (m * k * n) as f64;
        let candle = median_rate(flops, &|| x.matmul(&w.t()?))?;
        let layer = huescan::model::nn::kernels::Linear::new(w.clone(), None);
        let model = median_rate(flops, &|| layer.forward(&x))?;
        out.insert(format!("{m}x{k}x{n}"), serde_json::json!({"candle": candle, "linear": model}));
    }
    Ok(out.into())
}

fn main() -> anyhow::Result<()> {
    // As the binary does, so the vision tower is timed under the same candle pool setting as the job.
    huescan::env::limit_candle_spinning();
    huescan::model::nn::kernels::keep_freed_buffers();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen-tiny");
    let (dir, inputs, prefix) = match args.as_slice() {
        [] => (fixture.join("model"), fixture.join("reference.safetensors"), "b."),
        [d, i, ..] => (PathBuf::from(d), PathBuf::from(i), ""),
        _ => anyhow::bail!(
            "usage: qwen_forward [CHECKPOINT_DIR INPUTS.safetensors [REPS [f32|bf16|f16 [BATCH [DEVICE]]]]]"
        ),
    };
    let reps: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let dtype = match args.get(3).map(String::as_str) {
        None | Some("f32") => DType::F32,
        Some("bf16") => DType::BF16,
        Some("f16") => DType::F16,
        Some(d) => anyhow::bail!("unknown dtype {d}"),
    };
    let batch_size: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(1).max(1);
    let device = huescan::model::device::parse_device(args.get(5).map(String::as_str).unwrap_or("cpu"))?;
    let t0 = Instant::now();
    let model = Qwen25VlModel::load(&dir, dtype, &device)?;
    let load_s = t0.elapsed().as_secs_f64();
    let t = candle_core::safetensors::load(&inputs, &device)?;
    let get = |k: &str| t.get(&format!("{prefix}{k}")).ok_or_else(|| anyhow::anyhow!("inputs lack `{prefix}{k}`"));
    let grids: Vec<[usize; 3]> = get("image_grid_thw")?
        .to_vec2::<i64>()?
        .into_iter()
        .map(|r| [r[0] as usize, r[1] as usize, r[2] as usize])
        .collect();
    let input_ids: Vec<u32> =
        get("input_ids")?.flatten_all()?.to_vec1::<i64>()?.into_iter().map(|x| x as u32).collect();
    let pixel_values: Tensor = get("pixel_values")?.clone();
    let sample = Sample { pixel_values, grids, input_ids };
    let hooks = HookSet::capture(model.hook_points());
    let batch = vec![sample; batch_size];
    model.forward_samples(&batch, &hooks, Pooling::Last)?; // warm-up
    let mut times = Vec::with_capacity(reps);
    let mut cpu = Vec::with_capacity(reps);
    for _ in 0..reps {
        let (t, c) = (Instant::now(), cpu_seconds());
        let caps = model.forward_samples(&batch, &hooks, Pooling::Last)?;
        std::hint::black_box(caps);
        times.push(t.elapsed().as_secs_f64());
        cpu.push(cpu_seconds() - c);
    }
    let (mut vision, mut vision_cpu) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for _ in 0..reps {
        let (t, c) = (Instant::now(), cpu_seconds());
        std::hint::black_box(model.image_features(&batch[0].pixel_values, &batch[0].grids)?);
        device.synchronize()?;
        vision.push(t.elapsed().as_secs_f64());
        vision_cpu.push(cpu_seconds() - c);
    }
    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    // The ceiling: one GEMM (in the model dtype) of the vision MLP's shape through the same matmul the model
    // uses, timed as `scan --dry-run` times it. The Python side times the same shape in torch, so each runner's
    // forward can be read as a fraction of its own GEMM rate.
    let (m, k, n) = estimate::GEMM_SHAPE;
    let gemm_gflops = estimate::gemm_flops_per_second(&device, dtype)? / 1e9;
    println!(
        "{}",
        serde_json::json!({
            "runner": "huescan-candle",
            "checkpoint": dir.display().to_string(),
            "dtype": format!("{dtype:?}").to_lowercase(),
            "seq_len": batch[0].input_ids.len(),
            "batch": batch_size,
            "patches": batch[0].pixel_values.dim(0)?,
            "load_s": load_s,
            "times_s": times,
            "median_s": median(&times),
            "cpu_s": cpu,
            "median_cpu_s": median(&cpu),
            "vision_median_s": median(&vision),
            "vision_median_cpu_s": median(&vision_cpu),
            "peak_rss_mib": peak_rss_mib(),
            "threads": candle_core::utils::get_num_threads(),
            "device": format!("{:?}", device.location()),
            "gemm_shape": [m, k, n],
            "gemm_gflops": gemm_gflops,
            "gemm_shapes_gflops": job_gemm_rates(&device, dtype)?,
        })
    );
    Ok(())
}

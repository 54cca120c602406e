//! Run-time estimates for `huescan scan --dry-run`: the FLOPs an extraction needs, counted from the checkpoint's
//! config, divided by what this device's matmul actually delivers, measured on the spot.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use super::qwen2_5_vl::{ChatPrompt, Config, ImageProcessor, ProcessorConfig, DEFAULT_QUESTION};
use super::Error;

/// Share of its GEMM rate that a whole Qwen2.5-VL forward reaches: 77-92 % for huescan and transformers on CPU
/// at real width (BENCHMARKS.md). The lower end, so estimates err long. Calibrated on CPUs only: on a GPU,
/// small batches reach less of the matmul rate, so there the estimate is a lower bound until GPU runs say more.
pub const FORWARD_GEMM_EFFICIENCY: f64 = 0.75;

/// The reference GEMM (M, K, N): 1024 patches through the 3B vision MLP's 1280 -> 3420 projection; the benchmark
/// scripts time the same shape.
pub const GEMM_SHAPE: (usize, usize, usize) = (1024, 1280, 3420);

/// FLOPs of one forward per image of the given `(height, width)` sizes, each in a prompt of `text_tokens`
/// tokens besides its image pads, for the Qwen2.5-VL checkpoint in `dir` (`config.json`, and
/// `preprocessor_config.json` when present). `max_pixels` overrides the processor's, as `--max-pixels` does.
pub fn qwen_forward_flops(
    dir: &Path,
    sizes: &[(usize, usize)],
    max_pixels: Option<usize>,
    text_tokens: usize,
) -> Result<f64, Error> {
    let cfg = Config::from_dir(dir)?;
    let mut pcfg = if dir.join("preprocessor_config.json").exists() {
        ProcessorConfig::from_dir(dir)?
    } else {
        Default::default()
    };
    if let Some(max) = max_pixels {
        pcfg.max_pixels = max;
    }
    let merge = pcfg.merge_size * pcfg.merge_size;
    let patch = pcfg.patch_size;
    let processor = ImageProcessor::new(pcfg);
    let mut flops = 0.0;
    for &(height, width) in sizes {
        let (h, w) = processor.target_size(height, width)?;
        let patches = (h / patch) * (w / patch);
        flops += cfg.forward_flops(patches, text_tokens + patches / merge);
    }
    Ok(flops)
}

/// Tokens of the default chat prompt besides the image pads, from `dir/tokenizer.json`.
pub fn chat_text_tokens(dir: &Path) -> Result<usize, Error> {
    let chat = ChatPrompt::from_file(&dir.join("tokenizer.json"), DEFAULT_QUESTION)?;
    Ok(chat.ids(1)?.len() - 1)
}

/// The FLOP/s of one GEMM of the reference shape on `device` in `dtype`, median of seven after a warm-up (about
/// 0.3 s on two CPU cores; fewer runs swung by a third on a shared machine).
pub fn gemm_flops_per_second(device: &Device, dtype: DType) -> Result<f64, Error> {
    let (m, k, n) = GEMM_SHAPE;
    let a = Tensor::randn(0f32, 1.0, (m, k), device)?.to_dtype(dtype)?;
    let b = Tensor::randn(0f32, 1.0, (k, n), device)?.to_dtype(dtype)?;
    a.matmul(&b)?;
    device.synchronize()?;
    let mut times = Vec::with_capacity(7);
    for _ in 0..7 {
        let t = Instant::now();
        std::hint::black_box(a.matmul(&b)?);
        device.synchronize()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(2.0 * (m * k * n) as f64 / times[times.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_flops_of_the_fixture_follow_its_prompt_and_image_size() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen-tiny/model");
        let cfg = Config::from_dir(&dir).unwrap();
        // 56x56 needs no resize: 4x4 patches, 4 image tokens after the 2x2 merge.
        let one = qwen_forward_flops(&dir, &[(56, 56)], None, 12).unwrap();
        assert_eq!(one, cfg.forward_flops(16, 16));
        let two = qwen_forward_flops(&dir, &[(56, 56), (56, 56)], None, 12).unwrap();
        assert_eq!(two, 2.0 * one);
        // Capping the pixels shrinks a 224x224 image and its cost.
        let full = qwen_forward_flops(&dir, &[(224, 224)], None, 12).unwrap();
        let capped = qwen_forward_flops(&dir, &[(224, 224)], Some(56 * 56), 12).unwrap();
        assert!(capped < full, "{capped} !< {full}");
    }

    #[test]
    fn chat_text_tokens_equal_transformers_prompt_less_its_image_pad() {
        use std::io::Read;
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen-tiny");
        let mut json = Vec::new();
        let gz = std::fs::File::open(fixtures.join("tokenizer.json.gz")).unwrap();
        flate2::read::GzDecoder::new(gz).read_to_end(&mut json).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), json).unwrap();
        // transformers' chat template for DEFAULT_QUESTION, with one unexpanded <|image_pad|>.
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixtures.join("tokenizer_reference.json")).unwrap()).unwrap();
        assert_eq!(r["question"], DEFAULT_QUESTION);
        let want = r["chat_ids_unexpanded"].as_array().unwrap().len() - 1;
        assert_eq!(chat_text_tokens(dir.path()).unwrap(), want);
    }

    #[test]
    fn gemm_rate_is_positive_and_finite() {
        let r = gemm_flops_per_second(&Device::Cpu, DType::F32).unwrap();
        assert!(r.is_finite() && r > 0.0, "{r}");
    }
}

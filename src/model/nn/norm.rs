//! Normalisation layers in transformers' rounding order.

use candle_core::{DType, Tensor, D};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::kernels::{with_f32, ELEMENTWISE_CHUNK};

/// RMSNorm as transformers computes it: normalise in f32, round to the model dtype, then scale by the weight
/// (candle's fused `rms_norm` multiplies before rounding).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(RmsNorm { weight: vb.get(size, "weight")?, eps })
    }

    pub fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        if let Some(fused) = rms_norm_f32(xs, &self.weight, self.eps) {
            return fused;
        }
        let dtype = xs.dtype();
        let x = xs.to_dtype(DType::F32)?;
        let inv_rms = (x.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?.sqrt()?.recip()?;
        x.broadcast_mul(&inv_rms)?.to_dtype(dtype)?.broadcast_mul(&self.weight)
    }
}

/// [`RmsNorm`] on contiguous f32 CPU data in one pass per row, rows in parallel on rayon; `None` for other
/// inputs (or with `HUESCAN_PLAIN_KERNELS`), which take candle's ops.
///
/// candle's ops made five passes over the activation (square, row sums, the scale, the weight), the row sums
/// on one thread while the other core waited. Same formula in f32: the mean of squares, `1 / sqrt(mean +
/// eps)`, `x · inv` then `· weight` (transformers' order). The row sum runs in [`LANES`] interleaved partial
/// sums (candle's sums in its own SIMD order), so results differ from candle's by float rounding only
/// (within 1e-6 relative of candle's ops and of the f64 definition in the tests); each row's bits depend only
/// on that row, never on the batch.
fn rms_norm_f32(xs: &Tensor, weight: &Tensor, eps: f64) -> Option<candle_core::Result<Tensor>> {
    let width = *xs.dims().last()?;
    if width == 0 || weight.dims() != [width] || xs.dtype() != DType::F32 || weight.dtype() != DType::F32 {
        return None;
    }
    let out = with_f32(xs, |x| {
        with_f32(weight, |w| {
            let mut out = vec![0f32; x.len()];
            let rows = ELEMENTWISE_CHUNK.div_ceil(width);
            out.par_chunks_mut(rows * width).zip(x.par_chunks(rows * width)).for_each(|(o, x)| {
                for (o, x) in o.chunks_exact_mut(width).zip(x.chunks_exact(width)) {
                    rms_norm_row(o, x, w, eps as f32);
                }
            });
            out
        })
    })??;
    Some(Tensor::from_vec(out, xs.shape().clone(), xs.device()))
}

/// Partial sums of the row sum of squares (whole AVX-512 registers; the same bits in any vector width).
const LANES: usize = 16;

/// One row, compiled for AVX2 when the CPU has it (plain multiplies and adds, so the same bits either way).
fn rms_norm_row(o: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { rms_norm_row_avx2(o, x, w, eps) };
    }
    rms_norm_row_portable(o, x, w, eps)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rms_norm_row_avx2(o: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    rms_norm_row_portable(o, x, w, eps)
}

#[inline(always)]
fn rms_norm_row_portable(o: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let mut lanes = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v * v;
        }
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            lanes[i] += lanes[i + width];
        }
    }
    let mean = (lanes[0] + tail) / x.len() as f32;
    let inv = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &w) in o.iter_mut().zip(x).zip(w) {
        *o = v * inv * w;
    }
}

/// `nn.LayerNorm` with weight and bias as torch computes it: mean, variance and the affine map in f32, one
/// rounding to the input dtype at the end (torch's kernels upcast bf16/f16 the same way).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        let weight = vb.get(size, "weight")?.to_dtype(DType::F32)?;
        let bias = vb.get(size, "bias")?.to_dtype(DType::F32)?;
        Ok(LayerNorm { weight, bias, eps })
    }

    pub fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = xs.dtype();
        let x = xs.to_dtype(DType::F32)?;
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let inv_std = (centred.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?.sqrt()?.recip()?;
        let normed = centred.broadcast_mul(&inv_std)?;
        normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?.to_dtype(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The fused pass against candle's ops (the path other dtypes take) and the f64 definition, on rows
    /// longer than the lanes with a remainder, and more rows than one parallel block; row bits do not depend
    /// on the rows around them.
    #[test]
    fn fused_rms_norm_equals_candles_ops_and_the_definition() {
        let dev = Device::Cpu;
        let width = 1283;
        let x = Tensor::randn(0f32, 3.0, (2, 40, width), &dev).unwrap();
        let w = Tensor::randn(1f32, 0.5, width, &dev).unwrap();
        let vb = VarBuilder::from_tensors([("weight".to_string(), w.clone())].into(), DType::F32, &dev);
        let norm = RmsNorm::new(width, 1e-6, vb).unwrap();
        let got = norm.forward(&x).unwrap();
        let vb = VarBuilder::from_tensors([("weight".to_string(), w.clone())].into(), DType::F64, &dev);
        let norm64 = RmsNorm::new(width, 1e-6, vb).unwrap();
        let f64s = norm64.forward(&x.to_dtype(DType::F64).unwrap()).unwrap().to_dtype(DType::F32).unwrap();
        let rel = |a: &Tensor, b: &Tensor| {
            let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            d / b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
        };
        assert!(rel(&got, &f64s) < 1e-6, "{}", rel(&got, &f64s));
        let xs = x.flatten_to(1).unwrap();
        let inv_rms =
            (xs.sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + 1e-6).unwrap().sqrt().unwrap().recip().unwrap();
        let candle = xs.broadcast_mul(&inv_rms).unwrap().broadcast_mul(&w).unwrap().reshape(x.shape()).unwrap();
        assert!(rel(&got, &candle) < 1e-6, "{}", rel(&got, &candle));
        let one_row = norm.forward(&x.get(1).unwrap().narrow(0, 7, 1).unwrap().contiguous().unwrap()).unwrap();
        let in_batch = got.get(1).unwrap().narrow(0, 7, 1).unwrap();
        let bits = |t: &Tensor| {
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(bits(&one_row), bits(&in_batch));
    }

    #[test]
    fn layer_norm_matches_the_definition() {
        let dev = Device::Cpu;
        let vb = VarBuilder::from_tensors(
            [
                ("weight".to_string(), Tensor::new(&[1.0f32, 2.0, 0.5], &dev).unwrap()),
                ("bias".to_string(), Tensor::new(&[0.0f32, 1.0, -1.0], &dev).unwrap()),
            ]
            .into(),
            DType::F32,
            &dev,
        );
        let ln = LayerNorm::new(3, 0.0, vb).unwrap();
        let out = ln.forward(&Tensor::new(&[[1.0f32, 2.0, 3.0]], &dev).unwrap()).unwrap().to_vec2::<f32>().unwrap();
        // mean 2, variance 2/3: normalised (-1.2247, 0, 1.2247).
        let want = [-1.224_744_9f32, 1.0, -1.0 + 0.5 * 1.224_744_9];
        for (o, w) in out[0].iter().zip(want) {
            assert!((o - w).abs() < 1e-5, "{o} vs {w}");
        }
    }
}

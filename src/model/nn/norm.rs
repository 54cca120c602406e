//! Normalisation layers in transformers' rounding order.

use candle_core::{DType, Tensor, D};
use candle_nn::VarBuilder;

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
        let dtype = xs.dtype();
        let x = xs.to_dtype(DType::F32)?;
        let inv_rms = (x.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?.sqrt()?.recip()?;
        x.broadcast_mul(&inv_rms)?.to_dtype(dtype)?.broadcast_mul(&self.weight)
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

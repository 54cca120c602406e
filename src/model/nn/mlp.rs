//! The gated SiLU MLP of Qwen2-style decoders and of Qwen2.5-VL's vision blocks.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::kernels::{linear, linear_no_bias, silu_mul, Linear};

/// `down_proj(silu(gate_proj(x)) * up_proj(x))`; the decoders store no biases, Qwen2.5-VL's vision MLP does.
pub struct GatedMlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl GatedMlp {
    pub fn new(hidden: usize, intermediate: usize, bias: bool, vb: VarBuilder) -> candle_core::Result<Self> {
        let lin: fn(usize, usize, VarBuilder) -> candle_core::Result<Linear> =
            if bias { linear } else { linear_no_bias };
        Ok(GatedMlp {
            gate_proj: lin(hidden, intermediate, vb.pp("gate_proj"))?,
            up_proj: lin(hidden, intermediate, vb.pp("up_proj"))?,
            down_proj: lin(intermediate, hidden, vb.pp("down_proj"))?,
        })
    }

    pub fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.down_proj.forward(&silu_mul(&self.gate_proj.forward(xs)?, &self.up_proj.forward(xs)?)?)
    }
}

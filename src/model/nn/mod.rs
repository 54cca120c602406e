//! Building blocks every model family shares: the safetensors checkpoint reader and the layers that appear in
//! more than one architecture (RMSNorm, LayerNorm, the gated SiLU MLP), each computing in transformers'
//! rounding order so a family built from them keeps parity in every dtype.

pub mod attention;
pub mod kernels;
mod mlp;
mod norm;
pub mod safetensors;

pub use mlp::GatedMlp;
pub use norm::{LayerNorm, RmsNorm};

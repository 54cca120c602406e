//! The Qwen2 decoder of Qwen2.5-VL, forked in spirit from candle-transformers' `qwen2.rs`: q/k/v with bias, o
//! without, GQA, SiLU MLP, RMSNorm in transformers' rounding order, M-RoPE tables supplied by the caller, no
//! sliding window, an explicit KV cache, and a per-block callback where hooks capture and intervene.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{embedding, Embedding, VarBuilder};

use super::config::TextConfig;
use crate::model::nn::kernels::{linear, linear_no_bias, Linear};
use crate::model::nn::{GatedMlp, RmsNorm};
use crate::model::HookPoint;

/// Added to masked attention scores. Finite, so a row with every key masked (a padding query) stays a
/// harmless uniform average instead of NaN that would leak into real rows through the next layer.
const MASKED: f32 = -1e30;
/// Query rows per attention product.
const QUERY_CHUNK: usize = 1024;

/// Keys and values of every layer so far, `(batch, kv_heads, len, head_dim)` each, rotary already applied.
#[derive(Debug, Default, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    pub fn new(n_layers: usize) -> Self {
        KvCache { layers: vec![None; n_layers] }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layers.first().and_then(|l| l.as_ref()).map(|(k, _)| k.dim(2).unwrap_or(0)).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cache of one sequence repeated for `n` sequences (a prompt prefix every sample of a batch shares).
    pub fn repeat(&self, n: usize) -> candle_core::Result<KvCache> {
        let layers = self
            .layers
            .iter()
            .map(|l| l.as_ref().map(|(k, v)| Ok((k.repeat((n, 1, 1, 1))?, v.repeat((n, 1, 1, 1))?))).transpose())
            .collect::<candle_core::Result<_>>()?;
        Ok(KvCache { layers })
    }
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &TextConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        Ok(Attention {
            q_proj: linear(h, nh * hd, vb.pp("q_proj"))?,
            k_proj: linear(h, nkv * hd, vb.pp("k_proj"))?,
            v_proj: linear(h, nkv * hd, vb.pp("v_proj"))?,
            o_proj: linear_no_bias(nh * hd, h, vb.pp("o_proj"))?,
            num_heads: nh,
            num_kv_heads: nkv,
            head_dim: hd,
        })
    }

    /// Scores, softmax and the value product run in f32 whatever the model dtype (closest to the f32
    /// accumulation of sdpa/flash kernels); rotary runs in the model dtype as in transformers.
    fn forward(
        &self,
        xs: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
    ) -> candle_core::Result<Tensor> {
        let (b, s, _) = xs.dims3()?;
        let dtype = xs.dtype();
        let heads = |t: Tensor, n: usize| t.reshape((b, s, n, self.head_dim))?.transpose(1, 2)?.contiguous();
        let q = heads(self.q_proj.forward(xs)?, self.num_heads)?;
        let k = heads(self.k_proj.forward(xs)?, self.num_kv_heads)?;
        let v = heads(self.v_proj.forward(xs)?, self.num_kv_heads)?;
        let q = candle_nn::rotary_emb::rope(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&k, cos, sin)?;
        let (k, v) = match cache {
            Some(slot) => {
                let kv = match slot.take() {
                    Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                    None => (k, v),
                };
                *slot = Some(kv.clone());
                kv
            }
            None => (k, v),
        };
        let rep = self.num_heads / self.num_kv_heads;
        let k = candle_transformers::utils::repeat_kv(k, rep)?.contiguous()?.to_dtype(DType::F32)?;
        let v = candle_transformers::utils::repeat_kv(v, rep)?.contiguous()?.to_dtype(DType::F32)?;
        let q = q.to_dtype(DType::F32)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let out = chunked_attention(&q, &k, &v, mask, scale, QUERY_CHUNK)?;
        let out = out.to_dtype(dtype)?;
        let out = out.transpose(1, 2)?.reshape((b, s, self.num_heads * self.head_dim))?;
        self.o_proj.forward(&out)
    }
}

/// `softmax(q kᵀ · scale + mask) v` over `(batch, heads, rows, head_dim)` inputs, with query rows in chunks of
/// `chunk`, which bounds the score matrix of long image prompts.
fn chunked_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f64,
    chunk: usize,
) -> candle_core::Result<Tensor> {
    let s = q.dim(2)?;
    let kt = k.t()?;
    let mut rows = Vec::with_capacity(s.div_ceil(chunk));
    for q0 in (0..s).step_by(chunk) {
        let n = chunk.min(s - q0);
        let mut att = (q.narrow(2, q0, n)?.matmul(&kt)? * scale)?;
        if let Some(m) = mask {
            att = att.broadcast_add(&m.narrow(2, q0, n)?)?;
        }
        rows.push(candle_nn::ops::softmax_last_dim(&att)?.matmul(v)?);
    }
    if rows.len() == 1 {
        Ok(rows.pop().expect("one chunk"))
    } else {
        Tensor::cat(&rows, 2)
    }
}

struct DecoderLayer {
    self_attn: Attention,
    mlp: GatedMlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    fn new(cfg: &TextConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(DecoderLayer {
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            mlp: GatedMlp::new(cfg.hidden_size, cfg.intermediate_size, false, vb.pp("mlp"))?,
            input_layernorm: RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
            post_attention_layernorm: RmsNorm::new(
                cfg.hidden_size,
                cfg.rms_norm_eps,
                vb.pp("post_attention_layernorm"),
            )?,
        })
    }

    /// Block `l`; `on_point` sees (and may replace) its attention output, mid stream, MLP output and output.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        l: usize,
        xs: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
        on_point: &mut dyn FnMut(&HookPoint, Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Tensor> {
        let residual = xs;
        let attn = self.self_attn.forward(&self.input_layernorm.forward(xs)?, cos, sin, mask, cache)?;
        let attn = on_point(&HookPoint::AttnOut(l), attn)?;
        let xs = on_point(&HookPoint::ResidMid(l), (attn + residual)?)?;
        let mlp = on_point(&HookPoint::MlpOut(l), self.mlp.forward(&self.post_attention_layernorm.forward(&xs)?)?)?;
        on_point(&HookPoint::ResidPost(l), (mlp + &xs)?)
    }
}

/// Token embedding, decoder blocks, final norm and LM head.
pub struct TextModel {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
}

impl TextModel {
    /// `vb` points at the decoder prefix (`model.` or `model.language_model.`); `lm_head` is the untied head
    /// weight, or `None` to reuse the embedding matrix.
    pub fn new(cfg: &TextConfig, vb: VarBuilder, lm_head: Option<Tensor>) -> candle_core::Result<Self> {
        let embed_tokens = embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("embed_tokens"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(cfg, vb.pp("layers").pp(i)))
            .collect::<candle_core::Result<_>>()?;
        let head = lm_head.unwrap_or_else(|| embed_tokens.embeddings().clone());
        Ok(TextModel {
            embed_tokens,
            layers,
            norm: RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("norm"))?,
            lm_head: Linear::new(head, None),
        })
    }

    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    pub fn embed(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        self.embed_tokens.forward(ids)
    }

    /// Runs the first `blocks` decoder blocks (all when `None`) on `xs` (`(batch, seq, hidden)`). At every point
    /// of a block (`blocks.{l}.hook_attn_out`, `hook_resid_mid`, `hook_mlp_out`, `hook_resid_post`),
    /// `on_point(point, xs)` may replace the tensor (interventions) and record it (captures). Returns the
    /// final-norm output (before any hook at `ln_final.hook_out`) when every block ran, `None` when it stopped
    /// early.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_embeds(
        &self,
        xs: Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
        blocks: Option<usize>,
        on_point: &mut dyn FnMut(&HookPoint, Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Option<Tensor>> {
        let dtype = xs.dtype();
        let (cos, sin) = (cos.to_dtype(dtype)?, sin.to_dtype(dtype)?);
        let run = blocks.unwrap_or(self.layers.len()).min(self.layers.len());
        let mut xs = xs;
        for (l, layer) in self.layers.iter().take(run).enumerate() {
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[l]);
            xs = layer.forward(l, &xs, &cos, &sin, mask, slot, on_point)?;
        }
        if run < self.layers.len() {
            return Ok(None);
        }
        self.norm.forward(&xs).map(Some)
    }

    pub fn logits(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.lm_head.forward(xs)
    }

    /// The expected `(name, shape)` of every decoder tensor, relative to the decoder prefix.
    pub fn expected_tensors(cfg: &TextConfig) -> Vec<(String, Vec<usize>)> {
        let (h, i, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
        let (q, kv) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
        let mut v = vec![("embed_tokens.weight".to_string(), vec![cfg.vocab_size, h]), ("norm.weight".into(), vec![h])];
        for l in 0..cfg.num_hidden_layers {
            for (name, shape) in [
                ("self_attn.q_proj.weight", vec![q, h]),
                ("self_attn.q_proj.bias", vec![q]),
                ("self_attn.k_proj.weight", vec![kv, h]),
                ("self_attn.k_proj.bias", vec![kv]),
                ("self_attn.v_proj.weight", vec![kv, h]),
                ("self_attn.v_proj.bias", vec![kv]),
                ("self_attn.o_proj.weight", vec![h, q]),
                ("mlp.gate_proj.weight", vec![i, h]),
                ("mlp.up_proj.weight", vec![i, h]),
                ("mlp.down_proj.weight", vec![h, i]),
                ("input_layernorm.weight", vec![h]),
                ("post_attention_layernorm.weight", vec![h]),
            ] {
                v.push((format!("layers.{l}.{name}"), shape));
            }
        }
        v
    }
}

/// Additive attention mask `(batch, 1, seq, past + seq)` f32: causal over the whole cached sequence, with the
/// first `pad[b]` positions of row `b` (left padding) hidden from every query.
pub fn causal_mask(pad: &[usize], seq: usize, past: usize, device: &Device) -> candle_core::Result<Tensor> {
    let total = past + seq;
    let mut m = vec![0f32; pad.len() * seq * total];
    for (b, &p) in pad.iter().enumerate() {
        for i in 0..seq {
            for j in 0..total {
                if j > past + i || j < p {
                    m[(b * seq + i) * total + j] = MASKED;
                }
            }
        }
    }
    Tensor::from_vec(m, (pad.len(), 1, seq, total), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_attention_with_padding_mask_equals_one_chunk() {
        let dev = Device::Cpu;
        let shape = (2, 3, 11, 4);
        let q = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
        let mask = causal_mask(&[0, 4], 11, 0, &dev).unwrap();
        let whole = chunked_attention(&q, &k, &v, Some(&mask), 0.5, 64).unwrap();
        let parts = chunked_attention(&q, &k, &v, Some(&mask), 0.5, 3).unwrap();
        let diff = (whole - parts).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-6, "{diff}");
    }

    #[test]
    fn causal_mask_hides_the_future_and_left_padding() {
        let m = causal_mask(&[1], 3, 1, &Device::Cpu).unwrap().squeeze(0).unwrap().to_vec3::<f32>().unwrap();
        // Row i may see keys 1..=1+i (key 0 is padding, the last key is one ahead of the cached position).
        let seen: Vec<Vec<bool>> = m[0].iter().map(|r| r.iter().map(|&x| x == 0.0).collect()).collect();
        assert_eq!(seen[0], vec![false, true, false, false]);
        assert_eq!(seen[2], vec![false, true, true, true]);
    }
}

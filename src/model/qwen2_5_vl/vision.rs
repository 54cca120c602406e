//! The Qwen2.5-VL vision tower (`Qwen2_5_VisionTransformerPretrainedModel`): Conv3d patch embedding as a linear
//! map, 2-D rotary, windowed / full attention per segment, RMSNorm blocks with a gated SiLU MLP, and the 2x2
//! patch merger with exact-erf GELU. Patches are permuted into window order before the blocks and the merged
//! tokens are put back into raster order after the merger.

use candle_core::{DType, Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use super::config::VisionConfig;
use super::rope::{full_cu_seqlens, vision_cos_sin, vision_patch_positions, window_index};
use super::text::RmsNorm;

/// transformers builds every vision RMSNorm with this eps, whatever the config says.
const VISION_NORM_EPS: f64 = 1e-6;
/// Query rows per attention product (scores take `heads x rows x segment` floats).
const QUERY_CHUNK: usize = 1024;

/// Conv3d with kernel = stride = one patch: on flattened patches it is one matrix product.
struct PatchEmbed {
    weight: Tensor,
}

impl PatchEmbed {
    fn new(cfg: &VisionConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let (p, t) = (cfg.patch_size, cfg.temporal_patch_size);
        let w = vb.get((cfg.hidden_size, cfg.in_channels, t, p, p), "proj.weight")?;
        Ok(PatchEmbed { weight: w.reshape((cfg.hidden_size, cfg.in_channels * t * p * p))? })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        xs.to_dtype(self.weight.dtype())?.matmul(&self.weight.t()?)
    }
}

struct VisionMlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl VisionMlp {
    fn new(cfg: &VisionConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(VisionMlp {
            gate_proj: linear(h, i, vb.pp("gate_proj"))?,
            up_proj: linear(h, i, vb.pp("up_proj"))?,
            down_proj: linear(i, h, vb.pp("down_proj"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let gate = self.gate_proj.forward(xs)?.silu()?;
        self.down_proj.forward(&(gate * self.up_proj.forward(xs)?)?)
    }
}

struct VisionAttention {
    qkv: Linear,
    proj: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl VisionAttention {
    fn new(cfg: &VisionConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        Ok(VisionAttention {
            qkv: linear(h, 3 * h, vb.pp("qkv"))?,
            proj: linear(h, h, vb.pp("proj"))?,
            num_heads: cfg.num_heads,
            head_dim: h / cfg.num_heads,
        })
    }

    /// Non-causal attention inside each `[cu[i], cu[i+1])` segment. Rotary, scores, softmax and the value
    /// product run in f32 (transformers upcasts q and k for the rotary; sdpa accumulates in f32).
    fn forward(&self, xs: &Tensor, cu: &[usize], cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        let (n, hidden) = xs.dims2()?;
        let dtype = xs.dtype();
        let qkv = self.qkv.forward(xs)?.reshape((n, 3, self.num_heads, self.head_dim))?;
        let qkv = qkv.permute((1, 2, 0, 3))?.to_dtype(DType::F32)?; // (3, heads, n, head_dim)
        let part = |i: usize| qkv.get(i)?.unsqueeze(0)?.contiguous();
        let q = candle_nn::rotary_emb::rope(&part(0)?, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&part(1)?, cos, sin)?;
        // transformers rounds q and k back to the model dtype after the rotary.
        let (q, k) = (q.to_dtype(dtype)?.to_dtype(DType::F32)?, k.to_dtype(dtype)?.to_dtype(DType::F32)?);
        let v = part(2)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let out = segment_attention(&q, &k, &v, cu, scale, QUERY_CHUNK)?; // (1, heads, n, head_dim)
        let out = out.squeeze(0)?.transpose(0, 1)?.reshape((n, hidden))?.to_dtype(dtype)?;
        self.proj.forward(&out)
    }
}

/// Softmax attention of `q, k, v` (`(1, heads, n, head_dim)`) inside each segment `[cu[i], cu[i+1])`.
/// Consecutive segments of one length (the full windows) go through one batched product, and query rows go in
/// chunks of `chunk`, which bounds the score matrix of a full-attention block over a large image.
fn segment_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    cu: &[usize],
    scale: f64,
    chunk: usize,
) -> candle_core::Result<Tensor> {
    let (_, heads, _, head_dim) = q.dims4()?;
    let mut outs = Vec::with_capacity(cu.len());
    let mut i = 0;
    while i + 1 < cu.len() {
        let (start, len) = (cu[i], cu[i + 1] - cu[i]);
        let mut count = 1;
        while i + count + 1 < cu.len() && cu[i + count + 1] - cu[i + count] == len && len <= chunk {
            count += 1;
        }
        i += count;
        if len == 0 {
            continue;
        }
        let span = |t: &Tensor| t.narrow(2, start, len * count)?.reshape((heads, count, len, head_dim));
        let (qs, ks, vs) = (span(q)?, span(k)?, span(v)?);
        let kt = ks.t()?;
        let mut rows = Vec::new();
        for q0 in (0..len).step_by(chunk) {
            let qc = qs.narrow(2, q0, chunk.min(len - q0))?;
            let att = candle_nn::ops::softmax_last_dim(&(qc.matmul(&kt)? * scale)?)?;
            rows.push(att.matmul(&vs)?);
        }
        let out = if rows.len() == 1 { rows.pop().expect("one chunk") } else { Tensor::cat(&rows, 2)? };
        outs.push(out.reshape((1, heads, len * count, head_dim))?);
    }
    Tensor::cat(&outs, 2)
}

struct VisionBlock {
    norm1: RmsNorm,
    norm2: RmsNorm,
    attn: VisionAttention,
    mlp: VisionMlp,
}

impl VisionBlock {
    fn new(cfg: &VisionConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(VisionBlock {
            norm1: RmsNorm::new(cfg.hidden_size, VISION_NORM_EPS, vb.pp("norm1"))?,
            norm2: RmsNorm::new(cfg.hidden_size, VISION_NORM_EPS, vb.pp("norm2"))?,
            attn: VisionAttention::new(cfg, vb.pp("attn"))?,
            mlp: VisionMlp::new(cfg, vb.pp("mlp"))?,
        })
    }

    fn forward(&self, xs: &Tensor, cu: &[usize], cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        let xs = (xs + self.attn.forward(&self.norm1.forward(xs)?, cu, cos, sin)?)?;
        &xs + self.mlp.forward(&self.norm2.forward(&xs)?)?
    }
}

/// `ln_q` per patch, then each 2x2 block of patches concatenated and projected to the decoder width.
struct PatchMerger {
    ln_q: RmsNorm,
    mlp0: Linear,
    mlp2: Linear,
    merged_width: usize,
}

impl PatchMerger {
    fn new(cfg: &VisionConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let merged_width = cfg.hidden_size * cfg.spatial_merge_size * cfg.spatial_merge_size;
        Ok(PatchMerger {
            ln_q: RmsNorm::new(cfg.hidden_size, VISION_NORM_EPS, vb.pp("ln_q"))?,
            mlp0: linear(merged_width, merged_width, vb.pp("mlp.0"))?,
            mlp2: linear(merged_width, cfg.out_hidden_size, vb.pp("mlp.2"))?,
            merged_width,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let xs = self.ln_q.forward(xs)?.reshape(((), self.merged_width))?;
        // nn.GELU() is the exact erf form; candle's `gelu` would be the tanh approximation.
        self.mlp2.forward(&self.mlp0.forward(&xs)?.gelu_erf()?)
    }
}

/// The vision tower; `forward` maps `pixel_values (N, C·T·P·P)` to merged features `(N / merge², out_hidden)`
/// in raster order, images concatenated.
pub struct VisionModel {
    patch_embed: PatchEmbed,
    blocks: Vec<VisionBlock>,
    merger: PatchMerger,
    cfg: VisionConfig,
}

impl VisionModel {
    pub fn new(cfg: &VisionConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let blocks =
            (0..cfg.depth).map(|i| VisionBlock::new(cfg, vb.pp("blocks").pp(i))).collect::<candle_core::Result<_>>()?;
        Ok(VisionModel {
            patch_embed: PatchEmbed::new(cfg, vb.pp("patch_embed"))?,
            blocks,
            merger: PatchMerger::new(cfg, vb.pp("merger"))?,
            cfg: cfg.clone(),
        })
    }

    pub fn forward(&self, pixel_values: &Tensor, grids: &[[usize; 3]]) -> candle_core::Result<Tensor> {
        let cfg = &self.cfg;
        let merge = cfg.spatial_merge_size;
        let unit = merge * merge;
        let n: usize = grids.iter().map(|g| g.iter().product::<usize>()).sum();
        let (rows, _) = pixel_values.dims2()?;
        if rows != n {
            candle_core::bail!("pixel_values has {rows} patches but the grids {grids:?} describe {n}");
        }
        let device = pixel_values.device();
        let wi = window_index(grids, merge, cfg.window_size, cfg.patch_size);
        let order: Vec<u32> = (0..n).map(|k| (wi.index[k / unit] * unit + k % unit) as u32).collect();
        let order_t = Tensor::from_vec(order.clone(), n, device)?;

        let xs = self.patch_embed.forward(pixel_values)?.index_select(&order_t, 0)?;
        let positions = vision_patch_positions(grids, merge);
        let permuted: Vec<(usize, usize)> = order.iter().map(|&k| positions[k as usize]).collect();
        let head_dim = cfg.hidden_size / cfg.num_heads;
        let (cos, sin) = vision_cos_sin(&permuted, head_dim, cfg.rope_theta, device)?;
        let full = full_cu_seqlens(grids);

        let mut xs = xs;
        for (i, block) in self.blocks.iter().enumerate() {
            let cu = if cfg.fullatt_block_indexes.contains(&i) { &full } else { &wi.cu_seqlens };
            xs = block.forward(&xs, cu, &cos, &sin)?;
        }
        let merged = self.merger.forward(&xs)?;
        let mut inverse = vec![0u32; wi.index.len()];
        for (slot, &token) in wi.index.iter().enumerate() {
            inverse[token] = slot as u32;
        }
        merged.index_select(&Tensor::from_vec(inverse, wi.index.len(), device)?, 0)
    }

    /// The expected `(name, shape)` of every vision tensor, relative to the vision prefix.
    pub fn expected_tensors(cfg: &VisionConfig) -> Vec<(String, Vec<usize>)> {
        let (h, i, p, t) = (cfg.hidden_size, cfg.intermediate_size, cfg.patch_size, cfg.temporal_patch_size);
        let mw = h * cfg.spatial_merge_size * cfg.spatial_merge_size;
        let mut v = vec![("patch_embed.proj.weight".to_string(), vec![h, cfg.in_channels, t, p, p])];
        for b in 0..cfg.depth {
            let pre = format!("blocks.{b}.");
            for (name, shape) in [
                ("norm1.weight", vec![h]),
                ("norm2.weight", vec![h]),
                ("attn.qkv.weight", vec![3 * h, h]),
                ("attn.qkv.bias", vec![3 * h]),
                ("attn.proj.weight", vec![h, h]),
                ("attn.proj.bias", vec![h]),
                ("mlp.gate_proj.weight", vec![i, h]),
                ("mlp.gate_proj.bias", vec![i]),
                ("mlp.up_proj.weight", vec![i, h]),
                ("mlp.up_proj.bias", vec![i]),
                ("mlp.down_proj.weight", vec![h, i]),
                ("mlp.down_proj.bias", vec![h]),
            ] {
                v.push((format!("{pre}{name}"), shape));
            }
        }
        v.push(("merger.ln_q.weight".into(), vec![h]));
        v.push(("merger.mlp.0.weight".into(), vec![mw, mw]));
        v.push(("merger.mlp.0.bias".into(), vec![mw]));
        v.push(("merger.mlp.2.weight".into(), vec![cfg.out_hidden_size, mw]));
        v.push(("merger.mlp.2.bias".into(), vec![cfg.out_hidden_size]));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// One segment at a time, all query rows at once: the plain definition.
    fn naive(q: &Tensor, k: &Tensor, v: &Tensor, cu: &[usize], scale: f64) -> Tensor {
        let outs: Vec<Tensor> = cu
            .windows(2)
            .filter(|w| w[1] > w[0])
            .map(|w| {
                let (s, l) = (w[0], w[1] - w[0]);
                let (qs, ks, vs) = (q.narrow(2, s, l).unwrap(), k.narrow(2, s, l).unwrap(), v.narrow(2, s, l).unwrap());
                let att = candle_nn::ops::softmax_last_dim(&(qs.matmul(&ks.t().unwrap()).unwrap() * scale).unwrap());
                att.unwrap().matmul(&vs).unwrap()
            })
            .collect();
        Tensor::cat(&outs, 2).unwrap()
    }

    #[test]
    fn batched_and_chunked_segments_equal_the_plain_definition() {
        let dev = Device::Cpu;
        // Three equal windows, a short one, an empty one, then a long segment split into query chunks.
        let cu = [0, 8, 16, 24, 29, 29, 49];
        let shape = (1, 2, 49, 4);
        let (q, k, v) = (
            Tensor::randn(0f32, 1.0, shape, &dev).unwrap(),
            Tensor::randn(0f32, 1.0, shape, &dev).unwrap(),
            Tensor::randn(0f32, 1.0, shape, &dev).unwrap(),
        );
        let want = naive(&q, &k, &v, &cu, 0.5);
        for chunk in [3, 8, 64] {
            let got = segment_attention(&q, &k, &v, &cu, 0.5, chunk).unwrap();
            let diff = (got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-6, "chunk {chunk}: {diff}");
        }
    }
}

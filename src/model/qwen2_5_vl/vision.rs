//! The Qwen2.5-VL vision tower (`Qwen2_5_VisionTransformerPretrainedModel`): Conv3d patch embedding as a linear
//! map, 2-D rotary, windowed / full attention per segment, RMSNorm blocks with a gated SiLU MLP, and the 2x2
//! patch merger with exact-erf GELU. Patches are permuted into window order before the blocks and the merged
//! tokens are put back into raster order after the merger.
//!
//! Hook points see the patches in row-major raster order (`t`, patch row, patch column of each image, images
//! one after another), whatever order the tower holds them in: the processor emits them grouped by 2x2 merge
//! units and the blocks run in window order. A hook that changes a tensor is mapped back into that order.

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;

use super::config::VisionConfig;
use crate::model::nn::attention::qkv_segment_attention;
use crate::model::nn::kernels::{linear, Linear};
use super::rope::{full_cu_seqlens, vision_cos_sin, vision_patch_positions, window_index};
use crate::model::nn::{GatedMlp, RmsNorm};
use crate::model::HookPoint;

/// transformers builds every vision RMSNorm with this eps, whatever the config says.
const VISION_NORM_EPS: f64 = 1e-6;
/// Query rows per attention product (scores take `heads x rows x segment` floats).
const QUERY_CHUNK: usize = 1024;

/// Conv3d with kernel = stride = one patch: on flattened patches it is one matrix product (a bias-free linear
/// layer over the flattened kernel).
pub(crate) struct PatchEmbed {
    proj: Linear,
    dtype: DType,
}

impl PatchEmbed {
    pub(crate) fn new(cfg: &VisionConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let (p, t) = (cfg.patch_size, cfg.temporal_patch_size);
        let w = vb.get((cfg.hidden_size, cfg.in_channels, t, p, p), "proj.weight")?;
        let dtype = w.dtype();
        Ok(PatchEmbed { proj: Linear::new(w.reshape((cfg.hidden_size, cfg.in_channels * t * p * p))?, None), dtype })
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.proj.forward(&xs.to_dtype(self.dtype)?)
    }
}

pub(crate) struct VisionAttention {
    qkv: Linear,
    proj: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl VisionAttention {
    pub(crate) fn new(cfg: &VisionConfig, vb: VarBuilder) -> candle_core::Result<Self> {
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
    pub(crate) fn forward(&self, xs: &Tensor, cu: &[usize], cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        let (n, hidden) = xs.dims2()?;
        let dtype = xs.dtype();
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let qkv = self.qkv.forward(xs)?;
        if let Some(fused) = qkv_segment_attention(&qkv, self.num_heads, cos, sin, cu, scale, QUERY_CHUNK) {
            return self.proj.forward(&fused?);
        }
        let qkv = qkv.reshape((n, 3, self.num_heads, self.head_dim))?;
        let qkv = qkv.permute((1, 2, 0, 3))?.to_dtype(DType::F32)?; // (3, heads, n, head_dim)
        let part = |i: usize| qkv.get(i)?.unsqueeze(0)?.contiguous();
        let q = candle_nn::rotary_emb::rope(&part(0)?, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&part(1)?, cos, sin)?;
        // transformers rounds q and k back to the model dtype after the rotary.
        let (q, k) = (q.to_dtype(dtype)?.to_dtype(DType::F32)?, k.to_dtype(dtype)?.to_dtype(DType::F32)?);
        let v = part(2)?;
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
    if let Some(fused) = crate::model::nn::attention::segment_attention(q, k, v, cu, scale, chunk) {
        return fused;
    }
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
    mlp: GatedMlp,
}

impl VisionBlock {
    fn new(cfg: &VisionConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(VisionBlock {
            norm1: RmsNorm::new(cfg.hidden_size, VISION_NORM_EPS, vb.pp("norm1"))?,
            norm2: RmsNorm::new(cfg.hidden_size, VISION_NORM_EPS, vb.pp("norm2"))?,
            attn: VisionAttention::new(cfg, vb.pp("attn"))?,
            mlp: GatedMlp::new(cfg.hidden_size, cfg.intermediate_size, true, vb.pp("mlp"))?,
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
        self.forward_hooked(pixel_values, grids, &|_| false, &mut |_, _| Ok(None))
    }

    /// [`VisionModel::forward`] with hook points: for every point where `wanted(point)`, `tap(point, xs)` sees
    /// the activation `(patches, width)` in raster order (merged tokens for the merger) and may return a
    /// replacement. Unwanted points cost nothing and a tap returning `None` changes no bit.
    pub fn forward_hooked(
        &self,
        pixel_values: &Tensor,
        grids: &[[usize; 3]],
        wanted: &dyn Fn(&HookPoint) -> bool,
        tap: &mut dyn FnMut(&HookPoint, &Tensor) -> candle_core::Result<Option<Tensor>>,
    ) -> candle_core::Result<Tensor> {
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
        // Raster row r is processor row raster[r]; window row j is processor row order[j].
        let raster = raster_to_processor(grids, merge);
        let mut hook = |point: HookPoint, xs: Tensor, to_raster: &[u32]| -> candle_core::Result<Tensor> {
            if !wanted(&point) {
                return Ok(xs);
            }
            let ix = Tensor::from_vec(to_raster.to_vec(), to_raster.len(), device)?;
            let Some(changed) = tap(&point, &xs.index_select(&ix, 0)?)? else { return Ok(xs) };
            changed.index_select(&Tensor::from_vec(inverse(to_raster), to_raster.len(), device)?, 0)
        };

        let xs = hook(HookPoint::VisualPatchEmbed, self.patch_embed.forward(pixel_values)?, &raster)?;
        let xs = xs.index_select(&order_t, 0)?;
        let positions = vision_patch_positions(grids, merge);
        let permuted: Vec<(usize, usize)> = order.iter().map(|&k| positions[k as usize]).collect();
        let head_dim = cfg.hidden_size / cfg.num_heads;
        let (cos, sin) = vision_cos_sin(&permuted, head_dim, cfg.rope_theta, device)?;
        let full = full_cu_seqlens(grids);

        let window_of = inverse(&order);
        let raster_in_window: Vec<u32> = raster.iter().map(|&p| window_of[p as usize]).collect();
        let mut xs = xs;
        for (i, block) in self.blocks.iter().enumerate() {
            let cu = if cfg.fullatt_block_indexes.contains(&i) { &full } else { &wi.cu_seqlens };
            xs = hook(HookPoint::VisualResidPost(i), block.forward(&xs, cu, &cos, &sin)?, &raster_in_window)?;
        }
        let merged = self.merger.forward(&xs)?;
        let slots: Vec<u32> = wi.index.iter().map(|&t| t as u32).collect();
        let merged = merged.index_select(&Tensor::from_vec(inverse(&slots), wi.index.len(), device)?, 0)?;
        // Merged tokens are already in raster order of the merged grid.
        let identity: Vec<u32> = (0..wi.index.len() as u32).collect();
        hook(HookPoint::VisualMergerOut, merged, &identity)
    }

    /// The number of patch rows (and merged tokens) a hook sees for `grids`.
    pub fn rows(&self, grids: &[[usize; 3]]) -> (usize, usize) {
        let n: usize = grids.iter().map(|g| g.iter().product::<usize>()).sum();
        (n, n / (self.cfg.spatial_merge_size * self.cfg.spatial_merge_size))
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

/// For each patch in row-major raster order (per image: `t`, row, column), its row in the processor's order,
/// which groups patches by `merge x merge` unit (units in raster order, rows within a unit in raster order).
pub(crate) fn raster_to_processor(grids: &[[usize; 3]], merge: usize) -> Vec<u32> {
    let mut out = Vec::new();
    let mut base = 0;
    for &[t, h, w] in grids {
        for tt in 0..t {
            for r in 0..h {
                for c in 0..w {
                    let unit = (r / merge) * (w / merge) + c / merge;
                    out.push((base + tt * h * w + unit * merge * merge + (r % merge) * merge + c % merge) as u32);
                }
            }
        }
        base += t * h * w;
    }
    out
}

/// The inverse of a permutation.
pub(crate) fn inverse(perm: &[u32]) -> Vec<u32> {
    let mut inv = vec![0u32; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p as usize] = i as u32;
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn raster_order_walks_rows_across_merge_units() {
        // One 1x4x4 image, merge 2: processor rows 0..4 are the top-left unit (0,0) (0,1) (1,0) (1,1).
        let r = raster_to_processor(&[[1, 4, 4]], 2);
        assert_eq!(&r[..8], &[0, 1, 4, 5, 2, 3, 6, 7]);
        assert_eq!(inverse(&r)[4], 2, "processor row 4 is raster (0, 2)");
        let two = raster_to_processor(&[[1, 2, 2], [1, 2, 4]], 2);
        assert_eq!(two, vec![0, 1, 2, 3, 4, 5, 8, 9, 6, 7, 10, 11]);
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
        // f32 on the CPU takes the fused pass; f64 takes candle's batched path (the one other dtypes and
        // devices take), which the fused pass would otherwise hide from this test.
        for dtype in [DType::F32, DType::F64] {
            let (q, k, v) = (q.to_dtype(dtype).unwrap(), k.to_dtype(dtype).unwrap(), v.to_dtype(dtype).unwrap());
            let want = crate::model::nn::attention::candle_reference(&q, &k, &v, &cu, 0.5);
            for chunk in [3, 8, 64] {
                let got = segment_attention(&q, &k, &v, &cu, 0.5, chunk).unwrap();
                let diff = (got - &want).unwrap().abs().unwrap().max_all().unwrap();
                let diff = diff.to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap();
                assert!(diff < 1e-6, "{dtype:?}, chunk {chunk}: {diff}");
            }
        }
    }
}

//! The Qwen2-VL vision tower (`Qwen2VisionTransformerPretrainedModel`): the Conv3d patch embedding and the
//! 2-D rotary attention of Qwen2.5-VL's tower (shared from there), LayerNorm blocks with a QuickGELU MLP,
//! full attention over each image in every block, and the 2x2 patch merger with a LayerNorm `ln_q` and
//! exact-erf GELU. Without windows the blocks run in the processor's order (patches grouped by 2x2 merge unit);
//! hook points see them in row-major raster order, as for Qwen2.5-VL, and a hook's change is mapped back.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::model::nn::kernels::{linear, Linear};
use crate::model::nn::LayerNorm;
use crate::model::qwen2_5_vl::config::VisionConfig;
use crate::model::qwen2_5_vl::rope::{full_cu_seqlens, vision_cos_sin, vision_patch_positions};
use crate::model::qwen2_5_vl::vision::{inverse, raster_to_processor, PatchEmbed, VisionAttention};
use crate::model::qwen2_5_vl::VisionTower;
use crate::model::HookPoint;

/// transformers builds every vision LayerNorm with this eps.
const NORM_EPS: f64 = 1e-6;

/// `fc2(quick_gelu(fc1(x)))`.
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn new(cfg: &VisionConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Mlp { fc1: linear(h, i, vb.pp("fc1"))?, fc2: linear(i, h, vb.pp("fc2"))? })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.fc1.forward(xs)?;
        // transformers' QuickGELUActivation: x * sigmoid(1.702 x).
        let act = (&h * candle_nn::ops::sigmoid(&(&h * 1.702)?)?)?;
        self.fc2.forward(&act)
    }
}

struct Block {
    norm1: LayerNorm,
    norm2: LayerNorm,
    attn: VisionAttention,
    mlp: Mlp,
}

impl Block {
    fn new(cfg: &VisionConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Block {
            norm1: LayerNorm::new(cfg.hidden_size, NORM_EPS, vb.pp("norm1"))?,
            norm2: LayerNorm::new(cfg.hidden_size, NORM_EPS, vb.pp("norm2"))?,
            attn: VisionAttention::new(cfg, vb.pp("attn"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
        })
    }

    fn forward(&self, xs: &Tensor, cu: &[usize], cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        let xs = (xs + self.attn.forward(&self.norm1.forward(xs)?, cu, cos, sin)?)?;
        &xs + self.mlp.forward(&self.norm2.forward(&xs)?)?
    }
}

/// `ln_q` per patch, then each 2x2 unit of patches concatenated and projected to the decoder width.
struct Merger {
    ln_q: LayerNorm,
    mlp0: Linear,
    mlp2: Linear,
    merged_width: usize,
}

impl Merger {
    fn new(cfg: &VisionConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let merged_width = cfg.hidden_size * cfg.spatial_merge_size * cfg.spatial_merge_size;
        Ok(Merger {
            ln_q: LayerNorm::new(cfg.hidden_size, NORM_EPS, vb.pp("ln_q"))?,
            mlp0: linear(merged_width, merged_width, vb.pp("mlp.0"))?,
            mlp2: linear(merged_width, cfg.out_hidden_size, vb.pp("mlp.2"))?,
            merged_width,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let xs = self.ln_q.forward(xs)?.reshape(((), self.merged_width))?;
        // nn.GELU() is the exact erf form.
        self.mlp2.forward(&self.mlp0.forward(&xs)?.gelu_erf()?)
    }
}

/// The tower: `pixel_values (N, C·T·P·P)` to merged features `(N / merge², out_hidden)` in raster order.
pub struct VisionModel {
    patch_embed: PatchEmbed,
    blocks: Vec<Block>,
    merger: Merger,
    cfg: VisionConfig,
}

impl VisionModel {
    pub fn new(cfg: &VisionConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let blocks =
            (0..cfg.depth).map(|i| Block::new(cfg, vb.pp("blocks").pp(i))).collect::<candle_core::Result<_>>()?;
        Ok(VisionModel {
            patch_embed: PatchEmbed::new(cfg, vb.pp("patch_embed"))?,
            blocks,
            merger: Merger::new(cfg, vb.pp("merger"))?,
            cfg: cfg.clone(),
        })
    }
}

impl VisionTower for VisionModel {
    fn forward_hooked(
        &self,
        pixel_values: &Tensor,
        grids: &[[usize; 3]],
        wanted: &dyn Fn(&HookPoint) -> bool,
        tap: &mut dyn FnMut(&HookPoint, &Tensor) -> candle_core::Result<Option<Tensor>>,
    ) -> candle_core::Result<Tensor> {
        let cfg = &self.cfg;
        let merge = cfg.spatial_merge_size;
        let (n, _) = self.rows(grids);
        let (rows, _) = pixel_values.dims2()?;
        if rows != n {
            candle_core::bail!("pixel_values has {rows} patches but the grids {grids:?} describe {n}");
        }
        let device = pixel_values.device();
        // Raster row r is processor row raster[r]; the blocks hold processor rows.
        let raster = raster_to_processor(grids, merge);
        let raster_t = Tensor::from_vec(raster.clone(), n, device)?;
        let back = Tensor::from_vec(inverse(&raster), n, device)?;
        let mut hook = |point: HookPoint, xs: Tensor| -> candle_core::Result<Tensor> {
            if !wanted(&point) {
                return Ok(xs);
            }
            let Some(changed) = tap(&point, &xs.index_select(&raster_t, 0)?)? else { return Ok(xs) };
            changed.index_select(&back, 0)
        };
        let mut xs = hook(HookPoint::VisualPatchEmbed, self.patch_embed.forward(pixel_values)?)?;
        let head_dim = cfg.hidden_size / cfg.num_heads;
        let (cos, sin) = vision_cos_sin(&vision_patch_positions(grids, merge), head_dim, cfg.rope_theta, device)?;
        let full = full_cu_seqlens(grids);
        for (i, block) in self.blocks.iter().enumerate() {
            xs = hook(HookPoint::VisualResidPost(i), block.forward(&xs, &full, &cos, &sin)?)?;
        }
        // Merge units come in raster order of the merged grid, so the merged tokens need no reordering.
        let merged = self.merger.forward(&xs)?;
        if !wanted(&HookPoint::VisualMergerOut) {
            return Ok(merged);
        }
        Ok(tap(&HookPoint::VisualMergerOut, &merged)?.unwrap_or(merged))
    }

    fn rows(&self, grids: &[[usize; 3]]) -> (usize, usize) {
        let n: usize = grids.iter().map(|g| g.iter().product::<usize>()).sum();
        (n, n / (self.cfg.spatial_merge_size * self.cfg.spatial_merge_size))
    }
}

/// The expected `(name, shape)` of every vision tensor, relative to the vision prefix.
pub fn expected_tensors(cfg: &VisionConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i, p, t) = (cfg.hidden_size, cfg.intermediate_size, cfg.patch_size, cfg.temporal_patch_size);
    let mw = h * cfg.spatial_merge_size * cfg.spatial_merge_size;
    let mut v = vec![("patch_embed.proj.weight".to_string(), vec![h, cfg.in_channels, t, p, p])];
    for b in 0..cfg.depth {
        for (name, shape) in [
            ("norm1.weight", vec![h]),
            ("norm1.bias", vec![h]),
            ("norm2.weight", vec![h]),
            ("norm2.bias", vec![h]),
            ("attn.qkv.weight", vec![3 * h, h]),
            ("attn.qkv.bias", vec![3 * h]),
            ("attn.proj.weight", vec![h, h]),
            ("attn.proj.bias", vec![h]),
            ("mlp.fc1.weight", vec![i, h]),
            ("mlp.fc1.bias", vec![i]),
            ("mlp.fc2.weight", vec![h, i]),
            ("mlp.fc2.bias", vec![h]),
        ] {
            v.push((format!("blocks.{b}.{name}"), shape));
        }
    }
    for (name, shape) in [
        ("merger.ln_q.weight", vec![h]),
        ("merger.ln_q.bias", vec![h]),
        ("merger.mlp.0.weight", vec![mw, mw]),
        ("merger.mlp.0.bias", vec![mw]),
        ("merger.mlp.2.weight", vec![cfg.out_hidden_size, mw]),
        ("merger.mlp.2.bias", vec![cfg.out_hidden_size]),
    ] {
        v.push((name.to_string(), shape));
    }
    v
}

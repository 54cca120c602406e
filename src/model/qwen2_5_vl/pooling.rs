//! Where each sample of a left-padded batch sits, and the reductions of captured activations to what the store
//! keeps (image-mean, last token, tokens), computed on the model's device so only the pooled result comes back.

use candle_core::{DType, Device, IndexOp, Tensor};

use crate::model::{Component, Error, HookPoint, HookSet, Pooling, Positions};

/// Where each sample sits in a left-padded batch, and in the vision tower's rows.
pub(super) struct Layout {
    pub(super) seq: usize,
    pub(super) pad: Vec<usize>,
    pub(super) image_pos: Vec<Vec<usize>>,
    /// Per sample, its rows among the batch's image patches (raster order) and merged tokens.
    pub(super) patch_rows: Vec<std::ops::Range<usize>>,
    pub(super) merged_rows: Vec<std::ops::Range<usize>>,
    /// Captured vision points, `(rows, width)` in the model dtype on the model's device, raster order, every
    /// sample's rows (pooled per sample by [`pool_vision`]).
    pub(super) vision: std::collections::BTreeMap<HookPoint, Tensor>,
}

impl Layout {
    /// Positions (padded coordinates) of batch row `b` that `p` selects.
    pub(super) fn select(&self, b: usize, p: &Positions) -> Vec<usize> {
        let pad = self.pad[b];
        match p {
            Positions::ImageTokens => self.image_pos[b].clone(),
            Positions::All => (pad..self.seq).collect(),
            Positions::Last => vec![self.seq - 1],
            Positions::Indices(ix) => ix.iter().map(|i| i + pad).collect(),
        }
    }

    /// The vision rows of sample `b` at `point` (patches, or merged tokens for the merger).
    pub(super) fn vision_rows(&self, point: &HookPoint, b: usize) -> std::ops::Range<usize> {
        if *point == HookPoint::VisualMergerOut {
            self.merged_rows[b].clone()
        } else {
            self.patch_rows[b].clone()
        }
    }

    /// Rows of sample `b` at vision `point` that `p` selects: `image` and `all` are every patch of the sample's
    /// images, `last` its last patch, indices count patches in raster order.
    pub(super) fn select_vision(&self, point: &HookPoint, b: usize, p: &Positions) -> candle_core::Result<Vec<usize>> {
        let rows = self.vision_rows(point, b);
        match p {
            Positions::ImageTokens | Positions::All => Ok(rows.collect()),
            Positions::Last => Ok(rows.last().into_iter().collect()),
            Positions::Indices(ix) => ix
                .iter()
                .map(|&i| {
                    if i >= rows.len() {
                        candle_core::bail!(
                            "position {i} at `{point}`: sample {b} has {} rows there (image patches in raster order)",
                            rows.len()
                        );
                    }
                    Ok(rows.start + i)
                })
                .collect(),
        }
    }
}

/// An intervention at a vision point, or at the image tokens, of a sample without an image would change nothing
/// and look like a result; it is refused instead.
pub(super) fn refuse_image_interventions_without_image(hooks: &HookSet, layout: &Layout) -> Result<(), Error> {
    let n = layout.pad.len();
    for iv in &hooks.interventions {
        let needs_image = iv.point.component() == Component::Vision || iv.positions == Positions::ImageTokens;
        let samples = iv.sample.map_or(0..n, |b| b..(b + 1).min(n));
        if let Some(b) = samples.into_iter().find(|&b| needs_image && layout.image_pos[b].is_empty()) {
            return Err(Error::Msg(format!(
                "the intervention at `{}` changes image {}, but sample {b} has no image; steer a text-only prompt \
                 at a decoder point with positions `all`, `last` or indices",
                iv.point,
                if iv.point.component() == Component::Vision { "patches" } else { "tokens" }
            )));
        }
    }
    Ok(())
}

/// Reduces `(batch, seq, hidden)` per sample on its device and moves only the result to the CPU, f32: the rows a
/// pooling reads are gathered in the model dtype and cast to f32 before any arithmetic (the mean accumulates in
/// f32), so the numbers are those of casting the whole tensor first.
pub(super) fn pool(xs: &Tensor, layout: &Layout, pooling: Pooling) -> candle_core::Result<Tensor> {
    if pooling == Pooling::Tokens && layout.pad.iter().any(|&p| p > 0) {
        candle_core::bail!(
            "token pooling needs prompts of one length in a batch; these images give different token counts, \
             use batch size 1 or resize the images to one size"
        );
    }
    let pooled = match pooling {
        Pooling::ImageMean => {
            let rows = (0..layout.pad.len())
                .map(|b| {
                    let ix: Vec<u32> = layout.image_pos[b].iter().map(|&p| p as u32).collect();
                    let n = ix.len();
                    if n == 0 {
                        candle_core::bail!(
                            "image-mean pooling of a prompt without an image; use --pool last for text-only prompts"
                        );
                    }
                    xs.get(b)?.index_select(&Tensor::from_vec(ix, n, xs.device())?, 0)?.to_dtype(DType::F32)?.mean(0)
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            Tensor::stack(&rows, 0)?
        }
        Pooling::Last => xs.i((.., layout.seq - 1, ..))?.to_dtype(DType::F32)?,
        // No padding (checked above): every row is the whole prompt.
        Pooling::Tokens => xs.to_dtype(DType::F32)?,
    };
    to_host(&pooled)
}

/// `t` on the CPU, copying only its elements: a view (one position of a batch, a sample's rows) would carry
/// its whole device buffer along, since `to_device` copies storage, not the view.
pub(super) fn to_host(t: &Tensor) -> candle_core::Result<Tensor> {
    if t.device().is_cpu() {
        return Ok(t.clone());
    }
    t.force_contiguous()?.to_device(&Device::Cpu)
}

/// Reduces a vision point's `(rows, width)` per sample on its device (f32, as [`pool`]) and moves the result to
/// the CPU: `image-mean` is the mean over the sample's patches (merged tokens at the merger), `tokens` keeps
/// them in raster order; `last` (a prompt token) has no meaning in the vision tower and is refused.
pub(super) fn pool_vision(point: &HookPoint, xs: &Tensor, layout: &Layout, pooling: Pooling) -> candle_core::Result<Tensor> {
    let rows = (0..layout.pad.len())
        .map(|b| {
            let r = layout.vision_rows(point, b);
            if r.is_empty() {
                candle_core::bail!("`{point}` is a vision-tower point, but sample {b} has no image");
            }
            let part = xs.narrow(0, r.start, r.len())?.to_dtype(DType::F32)?;
            match pooling {
                Pooling::ImageMean => part.mean(0),
                Pooling::Tokens => Ok(part),
                Pooling::Last => candle_core::bail!(
                    "`{point}` is in the vision tower, which has no last prompt token; pool vision points with \
                     image-mean or tokens"
                ),
            }
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    if pooling == Pooling::Tokens && rows.windows(2).any(|w| w[0].dims() != w[1].dims()) {
        candle_core::bail!(
            "token pooling at `{point}` needs images with one patch count in a batch; use batch size 1 or resize \
             the images to one size"
        );
    }
    to_host(&Tensor::stack(&rows, 0)?)
}

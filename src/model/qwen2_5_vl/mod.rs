//! Qwen2.5-VL (3B, 7B, or any size its config describes) in candle, computing what transformers computes:
//! image processor, vision tower with window attention, M-RoPE Qwen2 decoder, all `L + 1` hidden states with
//! transformers' `output_hidden_states` semantics, hooks at every residual point, and greedy generation.
//!
//! Hook points are HF's hidden-state list (see [`crate::model::hooks`]): `blocks.0.hook_resid_pre` (embeddings
//! with image features merged), `blocks.{l}.hook_resid_post` for `l < L - 1`, `ln_final.hook_out`.
//! Interventions run at each point before its capture, so captures are post-intervention.

pub mod checkpoint;
pub mod config;
pub mod kernels;
pub mod processor;
pub mod prompt;
mod reduce;
mod resize;
pub mod rope;
mod text;
mod vision;

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use image::RgbImage;

pub use checkpoint::Checkpoint;
pub use config::{Config, ProcessorConfig, TextConfig, VisionConfig};
pub use processor::{smart_resize, ImageProcessor, ProcessedImage, ResizeFilter};
pub use prompt::{ChatPrompt, Prompt, DEFAULT_QUESTION};
pub use resize::resize_bicubic_pil;
pub use rope::MropePositions;
pub use text::KvCache;

use crate::model::{Captures, Component, Error, HookPoint, HookSet, Input, Pooling, Positions};
use text::{causal_mask, TextModel};
use vision::VisionModel;

/// transformers gives padding positions this position id on every M-RoPE axis.
const PAD_POSITION: i64 = 1;

/// One prompt with its images, ready for the model.
#[derive(Debug, Clone)]
pub struct Sample {
    /// `(n_patches, patch_dim)` f32, every image of the sample concatenated.
    pub pixel_values: Tensor,
    pub grids: Vec<[usize; 3]>,
    pub input_ids: Vec<u32>,
}

/// What [`Qwen25VlModel::forward_hidden_states`] returns for one sample.
#[derive(Debug)]
pub struct HiddenStates {
    /// `L + 1` tensors `(seq, hidden)` f32, HF's `hidden_states` order (post-intervention).
    pub hidden_states: Vec<Tensor>,
    /// `(seq, vocab)` f32.
    pub logits: Tensor,
    pub positions: MropePositions,
}

/// Where each sample sits in a left-padded batch, and in the vision tower's rows.
struct Layout {
    seq: usize,
    pad: Vec<usize>,
    image_pos: Vec<Vec<usize>>,
    /// Per sample, its rows among the batch's image patches (raster order) and merged tokens.
    patch_rows: Vec<std::ops::Range<usize>>,
    merged_rows: Vec<std::ops::Range<usize>>,
    /// Captured vision points, `(rows, width)` f32 in raster order, every sample's rows.
    vision: std::collections::BTreeMap<HookPoint, Tensor>,
}

impl Layout {
    /// Positions (padded coordinates) of batch row `b` that `p` selects.
    fn select(&self, b: usize, p: &Positions) -> Vec<usize> {
        let pad = self.pad[b];
        match p {
            Positions::ImageTokens => self.image_pos[b].clone(),
            Positions::All => (pad..self.seq).collect(),
            Positions::Last => vec![self.seq - 1],
            Positions::Indices(ix) => ix.iter().map(|i| i + pad).collect(),
        }
    }

    /// The vision rows of sample `b` at `point` (patches, or merged tokens for the merger).
    fn vision_rows(&self, point: &HookPoint, b: usize) -> std::ops::Range<usize> {
        if *point == HookPoint::VisualMergerOut {
            self.merged_rows[b].clone()
        } else {
            self.patch_rows[b].clone()
        }
    }

    /// Rows of sample `b` at vision `point` that `p` selects: `image` and `all` are every patch of the sample's
    /// images, `last` its last patch, indices count patches in raster order.
    fn select_vision(&self, point: &HookPoint, b: usize, p: &Positions) -> candle_core::Result<Vec<usize>> {
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

/// A loaded Qwen2.5-VL checkpoint.
pub struct Qwen25VlModel {
    id: String,
    cfg: Config,
    processor: ImageProcessor,
    vision: VisionModel,
    text: TextModel,
    device: Device,
    dtype: DType,
    prompt: Option<Prompt>,
}

impl Qwen25VlModel {
    /// Loads a local checkpoint directory. A `tokenizer.json` there enables the chat prompt with
    /// [`DEFAULT_QUESTION`]; otherwise set a prompt with [`Self::with_prompt`] before calling the [`Model`] API.
    ///
    /// [`Model`]: crate::model::Model
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self, Error> {
        let cfg = Config::from_dir(dir)?;
        let proc_cfg = ProcessorConfig::from_dir(dir)?;
        proc_cfg.check(&cfg.vision).map_err(|msg| Error::Config { path: dir.join("preprocessor_config.json"), msg })?;
        let ckpt = Checkpoint::open(dir, &cfg)?;
        let lm_head = if ckpt.has_lm_head { Some(ckpt.load("lm_head.weight", dtype, device)?) } else { None };
        let (text_prefix, vision_prefix) = (ckpt.text_prefix, ckpt.vision_prefix);
        let vb = ckpt.into_var_builder(dtype, device);
        let text = TextModel::new(&cfg.text, vb.pp(text_prefix), lm_head)?;
        let vision = VisionModel::new(&cfg.vision, vb.pp(vision_prefix))?;
        let tok = dir.join("tokenizer.json");
        let prompt = if tok.exists() {
            let chat = ChatPrompt::from_file(&tok, DEFAULT_QUESTION)?;
            if chat.image_pad_id() != cfg.image_token_id {
                return Err(Error::Config {
                    path: tok,
                    msg: format!(
                        "`<|image_pad|>` is id {} in the tokenizer but image_token_id is {} in config.json",
                        chat.image_pad_id(),
                        cfg.image_token_id
                    ),
                });
            }
            Some(Prompt::Chat(chat))
        } else {
            None
        };
        Ok(Qwen25VlModel {
            id: dir.display().to_string(),
            cfg,
            processor: ImageProcessor::new(proc_cfg),
            vision,
            text,
            device: device.clone(),
            dtype,
            prompt,
        })
    }

    pub fn with_prompt(mut self, prompt: Prompt) -> Self {
        self.prompt = Some(prompt);
        self
    }

    /// Asks `question` in the chat prompt instead of [`DEFAULT_QUESTION`]; needs the checkpoint's tokenizer.
    pub fn with_question(mut self, question: &str) -> Result<Self, Error> {
        match &mut self.prompt {
            Some(Prompt::Chat(c)) => {
                c.question = question.to_string();
                Ok(self)
            }
            _ => Err(Error::Msg(
                "a question needs the chat prompt, which needs the checkpoint's tokenizer.json; this checkpoint has none"
                    .into(),
            )),
        }
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Overrides the processor's pixel limits (the same override must be given to any Python reference).
    pub fn with_pixel_limits(mut self, min_pixels: Option<usize>, max_pixels: Option<usize>) -> Self {
        if let Some(m) = min_pixels {
            self.processor.cfg.min_pixels = m;
        }
        if let Some(m) = max_pixels {
            self.processor.cfg.max_pixels = m;
        }
        self
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn processor(&self) -> &ImageProcessor {
        &self.processor
    }

    pub fn prompt(&self) -> Option<&Prompt> {
        self.prompt.as_ref()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn n_layers(&self) -> usize {
        self.text.n_layers()
    }

    /// Runs the processor and the prompt on one image.
    pub fn prepare(&self, img: &RgbImage) -> Result<Sample, Error> {
        let prompt = self.prompt.as_ref().ok_or_else(|| {
            Error::Msg("no prompt: the checkpoint has no tokenizer.json and no prompt ids were given".into())
        })?;
        let p = self.processor.preprocess(img)?;
        let ids = prompt.ids(p.n_tokens(self.cfg.vision.spatial_merge_size), self.cfg.image_token_id)?;
        let pixel_values = Tensor::from_vec(p.pixel_values, (p.n_patches, p.patch_dim), &self.device)?;
        Ok(Sample { pixel_values, grids: vec![p.grid_thw], input_ids: ids })
    }

    /// A prompt without an image (text-only controls): `input_ids` must hold no image-pad token.
    pub fn text_sample(&self, input_ids: &[u32]) -> Sample {
        let v = &self.cfg.vision;
        let patch_dim = v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size;
        let pixel_values = Tensor::zeros((0, patch_dim), DType::F32, &self.device).expect("an empty tensor");
        Sample { pixel_values, grids: vec![], input_ids: input_ids.to_vec() }
    }

    /// The prompt without its image (a text-only control): the chat template asking `question`, or, for a
    /// raw-id prompt, its ids without the vision start/end tokens (the question is then not used, as with
    /// images).
    pub fn prepare_text(&self, question: &str) -> Result<Sample, Error> {
        let ids = match &self.prompt {
            Some(Prompt::Chat(c)) => c.text_only_ids(question)?,
            Some(Prompt::Ids { prefix, suffix }) => {
                let vision = [self.cfg.vision_start_token_id, self.cfg.vision_end_token_id, self.cfg.image_token_id];
                prefix.iter().chain(suffix).copied().filter(|id| !vision.contains(id)).collect()
            }
            None => {
                return Err(Error::Msg(
                    "no prompt: the checkpoint has no tokenizer.json and no prompt ids were given".into(),
                ))
            }
        };
        Ok(self.text_sample(&ids))
    }

    /// [`Self::prepare`] for an image, [`Self::prepare_text`] for a text-only prompt.
    pub fn prepare_input(&self, input: &Input) -> Result<Sample, Error> {
        match input {
            Input::Image(img) => self.prepare(img),
            Input::Text(t) => match (&self.prompt, &t.ids) {
                (Some(Prompt::Ids { .. }), Some(ids)) => {
                    let vocab = self.cfg.text.vocab_size as u32;
                    let vision =
                        [self.cfg.vision_start_token_id, self.cfg.vision_end_token_id, self.cfg.image_token_id];
                    if let Some(bad) = ids.iter().find(|&&i| i >= vocab || vision.contains(&i)) {
                        return Err(Error::Msg(format!(
                            "text prompt id {bad} is not a text token of this model (vocabulary 0..{vocab}, vision \
                             ids {vision:?} excluded)"
                        )));
                    }
                    if ids.is_empty() {
                        return Err(Error::Msg("a text prompt's `ids` is empty".into()));
                    }
                    Ok(self.text_sample(ids))
                }
                _ => self.prepare_text(&t.text),
            },
        }
    }

    /// The vision tower's merged features `(Σ tokens, hidden)` in the model dtype, raster order.
    pub fn image_features(&self, pixel_values: &Tensor, grids: &[[usize; 3]]) -> Result<Tensor, Error> {
        Ok(self.vision.forward(&pixel_values.to_device(&self.device)?, grids)?)
    }

    /// Every hidden state and the logits of one sample, as transformers' `output_hidden_states=True`.
    pub fn forward_hidden_states(
        &self,
        pixel_values: &Tensor,
        grids: &[[usize; 3]],
        input_ids: &[u32],
        hooks: &HookSet,
    ) -> Result<HiddenStates, Error> {
        let sample =
            Sample { pixel_values: pixel_values.clone(), grids: grids.to_vec(), input_ids: input_ids.to_vec() };
        let positions = self.positions(&sample)?;
        let mut hidden = Vec::with_capacity(self.n_layers() + 1);
        let n_blocks = self.n_layers();
        let (last, _) = self.prefill(std::slice::from_ref(&sample), hooks, None, None, 0, &mut |point, xs, _| {
            if point.hidden_state_index(n_blocks).is_some() {
                hidden.push(xs.i(0)?.to_dtype(DType::F32)?);
            }
            Ok(())
        })?;
        let last = last.expect("prefill without a block limit runs every block");
        let logits = self.text.logits(&last)?.i(0)?.to_dtype(DType::F32)?;
        Ok(HiddenStates { hidden_states: hidden, logits, positions })
    }

    /// Greedy decoding with a KV cache until an EOS id of the config or `max_new_tokens`. Interventions with
    /// [`Positions::All`] at a decoder point (the embeddings, any block point, the final norm) also apply to every
    /// generated token; other position modes, and vision-tower points, touch the prompt only.
    pub fn generate(&self, sample: &Sample, max_new_tokens: usize, hooks: &HookSet) -> Result<Vec<u32>, Error> {
        let positions = self.positions(sample)?;
        let mut cache = KvCache::new(self.n_layers());
        let (last, _) =
            self.prefill(std::slice::from_ref(sample), hooks, Some(&mut cache), None, 0, &mut |_, _, _| Ok(()))?;
        let last = last.expect("prefill without a block limit runs every block");
        let seq = sample.input_ids.len();
        let mut next_logits = self.text.logits(&last.i((.., seq - 1..seq, ..))?)?;
        let mut out = Vec::new();
        for _ in 0..max_new_tokens {
            let flat = next_logits.flatten_all()?.to_dtype(DType::F32)?;
            // argmax over NaN logits returns token 0 every step: an answer that looks valid and is wrong.
            let sum = flat.sum_all()?.to_scalar::<f32>()?;
            if !sum.is_finite() && flat.to_vec1::<f32>()?.iter().any(|v| !v.is_finite()) {
                return Err(Error::Msg(format!(
                    "the logits of generated token {} are not finite (NaN/Inf); the checkpoint's weights or the \
                     activations are broken{}",
                    out.len() + 1,
                    if self.dtype == DType::F32 { "" } else { " (try --dtype f32)" }
                )));
            }
            let token = flat.argmax(0)?.to_scalar::<u32>()?;
            out.push(token);
            if self.cfg.eos_token_ids.contains(&token) {
                break;
            }
            let pos = cache.len() as i64 + positions.delta;
            let axes = [vec![pos], vec![pos], vec![pos]];
            let (cos, sin) = rope::mrope_cos_sin(
                &[&axes],
                self.cfg.text.head_dim,
                self.cfg.text.rope_theta,
                &self.cfg.text.mrope_section,
                &self.device,
            )?;
            let decode_sel = |_: usize, p: &Positions| match p {
                Positions::All => vec![0],
                _ => vec![],
            };
            let xs = self.text.embed(&Tensor::new(&[[token]], &self.device)?)?;
            let xs = hooks.apply(&HookPoint::ResidPre(0), &xs, &decode_sel)?;
            let normed = self.text.forward_embeds(xs, &cos, &sin, None, Some(&mut cache), None, &mut |point, xs| {
                hooks.apply(point, &xs, &decode_sel)
            })?;
            let normed =
                hooks.apply(&HookPoint::LnFinalOut, &normed.expect("decoding runs every block"), &decode_sel)?;
            next_logits = self.text.logits(&normed)?;
        }
        Ok(out)
    }

    fn positions(&self, s: &Sample) -> Result<MropePositions, Error> {
        rope::rope_index(&s.input_ids, &s.grids, self.cfg.image_token_id, self.cfg.vision.spatial_merge_size)
    }

    /// Embeds a left-padded batch, merges image features, runs the first `blocks` blocks (all when `None`) with
    /// hooks. `on_point` sees each hook point's `(batch, seq, hidden)` tensor after interventions. Returns the
    /// final-norm output, or `None` when it stopped before the last block. With `past > 0` the first `past`
    /// positions of every (unpadded) prompt are already in `cache` (a shared prefix, see
    /// [`Self::shared_prefix`]): only the rest runs, and positions in `on_point` and the layout count from there.
    fn prefill(
        &self,
        batch: &[Sample],
        hooks: &HookSet,
        cache: Option<&mut KvCache>,
        blocks: Option<usize>,
        past: usize,
        on_point: &mut dyn FnMut(&HookPoint, &Tensor, &Layout) -> candle_core::Result<()>,
    ) -> Result<(Option<Tensor>, Layout), Error> {
        let image_id = self.cfg.image_token_id;
        let seq = batch.iter().map(|s| s.input_ids.len()).max().unwrap_or(0);
        if seq == 0 {
            return Err(Error::Msg("empty prompt".into()));
        }
        let (mut ids, mut pad, mut image_pos, mut axes_all) =
            (Vec::with_capacity(batch.len() * seq), vec![], vec![], vec![]);
        let (mut grids, mut pixels, mut patch_rows, mut merged_rows) = (vec![], vec![], vec![], vec![]);
        let (mut patches, mut merged) = (0, 0);
        for s in batch {
            let p = seq - s.input_ids.len();
            let n_pad_tokens = s.input_ids.iter().filter(|&&i| i == image_id).count();
            let (n_patches, want) = self.vision.rows(&s.grids);
            if n_pad_tokens == 0 && want > 0 {
                return Err(Error::Msg(format!(
                    "the prompt has no image tokens (id {image_id}) but {} image(s) that give {want} vision features; \
                     put the image placeholder in the prompt",
                    s.grids.len()
                )));
            }
            if n_pad_tokens != want {
                return Err(Error::Msg(format!(
                    "the prompt has {n_pad_tokens} image tokens (id {image_id}) but its {} image(s) give {want} vision \
                     features; a text-only prompt must have none",
                    s.grids.len()
                )));
            }
            let pos = self.positions(s)?;
            let mut axes = pos.axes.clone();
            for a in &mut axes {
                a.splice(0..0, std::iter::repeat_n(PAD_POSITION, p));
            }
            axes_all.push(axes);
            ids.extend(std::iter::repeat_n(self.cfg.eos_token_ids[0], p));
            ids.extend(&s.input_ids);
            image_pos.push(
                s.input_ids.iter().enumerate().filter(|(_, &i)| i == image_id).map(|(j, _)| j + p).collect::<Vec<_>>(),
            );
            pad.push(p);
            patch_rows.push(patches..patches + n_patches);
            merged_rows.push(merged..merged + want);
            (patches, merged) = (patches + n_patches, merged + want);
            if !s.grids.is_empty() {
                grids.extend(s.grids.iter().copied());
                pixels.push(s.pixel_values.to_device(&self.device)?);
            }
        }
        let b = batch.len();
        let mut layout = Layout { seq, pad, image_pos, patch_rows, merged_rows, vision: Default::default() };
        refuse_image_interventions_without_image(hooks, &layout)?;
        let ids_t = Tensor::from_vec(ids.clone(), (b, seq), &self.device)?;
        let embeds = self.text.embed(&ids_t)?;
        let xs = if pixels.is_empty() {
            embeds
        } else {
            let features = self.vision_features(&Tensor::cat(&pixels, 0)?, &grids, hooks, &mut layout)?;
            self.merge_features(&embeds, &features, &ids, &layout)?
        };

        let refs: Vec<&[Vec<i64>; 3]> = axes_all.iter().collect();
        let tc = &self.cfg.text;
        let (cos, sin) = rope::mrope_cos_sin(&refs, tc.head_dim, tc.rope_theta, &tc.mrope_section, &self.device)?;
        let [xs, cos, sin] = reduce::skip_cached(&mut layout, past, [xs, cos, sin])?;
        let mask = if layout.seq > 1 || past > 0 {
            Some(causal_mask(&layout.pad, layout.seq, past, &self.device)?)
        } else {
            None
        };

        let sel = |bi: usize, p: &Positions| layout.select(bi, p);
        let point = HookPoint::ResidPre(0);
        let xs = hooks.apply(&point, &xs, &sel)?;
        on_point(&point, &xs, &layout)?;
        let normed = self.text.forward_embeds(xs, &cos, &sin, mask.as_ref(), cache, blocks, &mut |point, xs| {
            let xs = hooks.apply(point, &xs, &sel)?;
            on_point(point, &xs, &layout)?;
            Ok(xs)
        })?;
        let Some(normed) = normed else { return Ok((None, layout)) };
        let point = HookPoint::LnFinalOut;
        let normed = hooks.apply(&point, &normed, &sel)?;
        on_point(&point, &normed, &layout)?;
        Ok((Some(normed), layout))
    }

    /// The prompt embeddings `(batch, seq, hidden)` with the image features put at the image positions, in order:
    /// one gather from [token embeddings; image features].
    fn merge_features(
        &self,
        embeds: &Tensor,
        features: &Tensor,
        ids: &[u32],
        layout: &Layout,
    ) -> Result<Tensor, Error> {
        let (b, seq) = (layout.pad.len(), layout.seq);
        let embeds = embeds.reshape((b * seq, ()))?;
        let mut src = Vec::with_capacity(b * seq);
        let mut next_feature = (b * seq) as u32;
        for (r, &id) in ids.iter().enumerate() {
            let is_image = layout.image_pos[r / seq].binary_search(&(r % seq)).is_ok() && id == self.cfg.image_token_id;
            if is_image {
                src.push(next_feature);
                next_feature += 1;
            } else {
                src.push(r as u32);
            }
        }
        let table = Tensor::cat(&[&embeds, &features.to_dtype(embeds.dtype())?], 0)?;
        Ok(table.index_select(&Tensor::from_vec(src, b * seq, &self.device)?, 0)?.reshape((b, seq, ()))?)
    }

    /// The vision tower on a batch's patches with its hook points: interventions are applied per sample and the
    /// captured points land in `layout.vision` (f32, raster order).
    fn vision_features(
        &self,
        pixels: &Tensor,
        grids: &[[usize; 3]],
        hooks: &HookSet,
        layout: &mut Layout,
    ) -> Result<Tensor, Error> {
        let n_samples = layout.pad.len();
        let wanted = |p: &HookPoint| p.component() == Component::Vision && (hooks.wants(p) || hooks.intervenes_at(p));
        let mut captured = std::collections::BTreeMap::new();
        let view: &Layout = layout;
        let features = self.vision.forward_hooked(pixels, grids, &wanted, &mut |point, xs| {
            let rows = |b: usize, p: &Positions| view.select_vision(point, b, p);
            let changed =
                hooks.intervenes_at(point).then(|| hooks.apply_rows(point, xs, n_samples, &rows)).transpose()?;
            if hooks.wants(point) {
                captured.insert(point.clone(), changed.as_ref().unwrap_or(xs).to_dtype(DType::F32)?);
            }
            Ok(changed)
        })?;
        layout.vision = captured;
        Ok(features)
    }

    /// Runs a batch of prepared samples and pools the requested captures (f32, CPU). Samples are left-padded to
    /// one length and masked, so each equals its batch-of-one result up to float summation order. With
    /// [`HookSet::stop_early`] it runs only the blocks the hooks need and returns no logits.
    ///
    /// With `stop_early` and `image-mean` pooling (what extraction of an image set asks for) each prompt is also
    /// cut after its last image token: with causal attention no state at an image token depends on a later
    /// token, so the pooled captures are those of the whole prompt (up to float summation order) without the
    /// text after the image; the prefix every prompt shares before its image then runs once and its keys and
    /// values serve the batch ([`Self::shared_prefix`]).
    pub fn forward_samples(&self, batch: &[Sample], hooks: &HookSet, pooling: Pooling) -> Result<Captures, Error> {
        let cut = self.cut_after_image(batch, hooks, pooling);
        let batch = cut.as_deref().unwrap_or(batch);
        let mut caps = Captures::default();
        let blocks = hooks.blocks_needed(self.n_layers());
        let mut on_point = |point: &HookPoint, xs: &Tensor, layout: &Layout| {
            if hooks.wants(point) {
                let pooled = pool(xs, layout, pooling)?;
                caps.layers.insert(point.clone(), pooled);
            }
            Ok(())
        };
        let (normed, layout) = match cut.as_ref().and_then(|c| self.shared_prefix(c)) {
            Some(past) => {
                // The prefix holds no image token, so no capture is pooled there and no intervention (vision
                // points, image tokens only, as for the cut) changes it: one run serves every sample.
                let mut head = KvCache::new(self.n_layers());
                let prefix = self.text_sample(&batch[0].input_ids[..past]);
                let quiet = HookSet::default();
                self.prefill(std::slice::from_ref(&prefix), &quiet, Some(&mut head), blocks, 0, &mut |_, _, _| Ok(()))?;
                let mut cache = head.repeat(batch.len())?;
                self.prefill(batch, hooks, Some(&mut cache), blocks, past, &mut on_point)?
            }
            None => self.prefill(batch, hooks, None, blocks, 0, &mut on_point)?,
        };
        for point in hooks.capture.iter().filter(|p| p.component() == Component::Vision) {
            let xs = layout.vision.get(point).ok_or_else(|| {
                Error::Msg(format!("`{point}` is a vision-tower point, but no sample of the batch has an image"))
            })?;
            caps.layers.insert(point.clone(), pool_vision(point, xs, &layout, pooling)?);
        }
        // A cut prompt's last position is its last image token, whose logits nobody asked for.
        if let Some(normed) = normed.filter(|_| cut.is_none()) {
            let last = normed.i((.., layout.seq - 1, ..))?.contiguous()?;
            caps.logits = Some(self.text.logits(&last)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?);
        }
        Ok(caps)
    }
}

/// An intervention at a vision point, or at the image tokens, of a sample without an image would change nothing
/// and look like a result; it is refused instead.
fn refuse_image_interventions_without_image(hooks: &HookSet, layout: &Layout) -> Result<(), Error> {
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

/// Reduces `(batch, seq, hidden)` per sample in f32 and moves it to the CPU.
fn pool(xs: &Tensor, layout: &Layout, pooling: Pooling) -> candle_core::Result<Tensor> {
    let xs = xs.to_dtype(DType::F32)?;
    let rows = (0..layout.pad.len())
        .map(|b| {
            let row = xs.get(b)?;
            match pooling {
                Pooling::ImageMean => {
                    let ix: Vec<u32> = layout.image_pos[b].iter().map(|&p| p as u32).collect();
                    let n = ix.len();
                    if n == 0 {
                        candle_core::bail!(
                            "image-mean pooling of a prompt without an image; use --pool last for text-only prompts"
                        );
                    }
                    row.index_select(&Tensor::from_vec(ix, n, xs.device())?, 0)?.mean(0)
                }
                Pooling::Last => row.get(layout.seq - 1),
                Pooling::Tokens => row.narrow(0, layout.pad[b], layout.seq - layout.pad[b]),
            }
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    if pooling == Pooling::Tokens && layout.pad.iter().any(|&p| p > 0) {
        candle_core::bail!(
            "token pooling needs prompts of one length in a batch; these images give different token counts, \
             use batch size 1 or resize the images to one size"
        );
    }
    Tensor::stack(&rows, 0)?.to_device(&Device::Cpu)
}

/// Reduces a vision point's `(rows, width)` per sample: `image-mean` is the mean over the sample's patches
/// (merged tokens at the merger), `tokens` keeps them in raster order; `last` (a prompt token) has no meaning
/// in the vision tower and is refused.
fn pool_vision(point: &HookPoint, xs: &Tensor, layout: &Layout, pooling: Pooling) -> candle_core::Result<Tensor> {
    let rows = (0..layout.pad.len())
        .map(|b| {
            let r = layout.vision_rows(point, b);
            if r.is_empty() {
                candle_core::bail!("`{point}` is a vision-tower point, but sample {b} has no image");
            }
            let part = xs.narrow(0, r.start, r.len())?;
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
    Tensor::stack(&rows, 0)?.to_device(&Device::Cpu)
}

impl crate::model::Model for Qwen25VlModel {
    fn id(&self) -> &str {
        &self.id
    }

    fn hook_points(&self) -> Vec<HookPoint> {
        let n = self.n_layers();
        (0..=n).filter_map(|i| HookPoint::from_hidden_state_index(i, n)).collect()
    }

    /// The vision tower (patch embedding, every block, merger), then per decoder block its attention output,
    /// mid stream and MLP output, and last the raw output of the last block.
    fn extra_hook_points(&self) -> Vec<HookPoint> {
        let n = self.n_layers();
        let mut v = vec![HookPoint::VisualPatchEmbed];
        v.extend((0..self.cfg.vision.depth).map(HookPoint::VisualResidPost));
        v.push(HookPoint::VisualMergerOut);
        for l in 0..n {
            v.extend([HookPoint::AttnOut(l), HookPoint::ResidMid(l), HookPoint::MlpOut(l)]);
        }
        v.extend(n.checked_sub(1).map(HookPoint::ResidPost));
        v
    }

    fn width(&self, point: &HookPoint) -> Option<usize> {
        let known = self.all_hook_points().contains(point);
        known.then_some(match point {
            HookPoint::VisualPatchEmbed | HookPoint::VisualResidPost(_) => self.cfg.vision.hidden_size,
            HookPoint::VisualMergerOut => self.cfg.vision.out_hidden_size,
            _ => self.cfg.text.hidden_size,
        })
    }

    fn module_path(&self, point: &HookPoint) -> Option<String> {
        let (lm, vis) = ("model.language_model", "model.visual");
        let window = "output, rows in window order (un-permute with the inverse of get_vision_window_index)";
        Some(match point {
            HookPoint::ResidPre(0) => format!("{lm}: input `inputs_embeds` (image features merged)"),
            HookPoint::ResidPost(l) => format!("{lm}.layers.{l}: output"),
            HookPoint::AttnOut(l) => format!("{lm}.layers.{l}.self_attn: output[0]"),
            HookPoint::ResidMid(l) => format!("{lm}.layers.{l}.post_attention_layernorm: input[0]"),
            HookPoint::MlpOut(l) => format!("{lm}.layers.{l}.mlp: output"),
            HookPoint::LnFinalOut => format!("{lm}.norm: output"),
            HookPoint::VisualPatchEmbed => format!("{vis}.patch_embed: output, rows in processor order"),
            HookPoint::VisualResidPost(i) => format!("{vis}.blocks.{i}: {window}"),
            HookPoint::VisualMergerOut => format!("{vis}.merger: {window}"),
            HookPoint::ResidPre(_) | HookPoint::Named(_) => return None,
        })
    }

    fn generate(
        &self,
        images: &[RgbImage],
        hooks: &HookSet,
        max_new_tokens: usize,
    ) -> crate::Result<Option<Vec<String>>> {
        let inputs: Vec<Input> = images.iter().cloned().map(Input::Image).collect();
        self.generate_inputs(&inputs, hooks, max_new_tokens)
    }

    fn generate_inputs(
        &self,
        inputs: &[Input],
        hooks: &HookSet,
        max_new_tokens: usize,
    ) -> crate::Result<Option<Vec<String>>> {
        let Some(prompt) = self.prompt() else { return Ok(None) };
        let mut out = Vec::with_capacity(inputs.len());
        for input in inputs {
            let ids = Qwen25VlModel::generate(self, &self.prepare_input(input)?, max_new_tokens, hooks)?;
            out.push(prompt.decode(&ids)?);
        }
        Ok(Some(out))
    }

    fn token_ids(&self, words: &[String]) -> crate::Result<Option<Vec<Vec<u32>>>> {
        let Some(Prompt::Chat(chat)) = self.prompt() else { return Ok(None) };
        let mut all = Vec::with_capacity(words.len());
        for w in words {
            // By chars, not bytes: `w[..1]` panicked on an empty word and would on a non-ASCII first letter.
            let mut chars = w.chars();
            let Some(first) = chars.next() else {
                return Err(Error::Msg("a colour word is empty; expected a non-empty word".into()).into());
            };
            let cap = first.to_uppercase().collect::<String>() + chars.as_str();
            let mut ids = Vec::new();
            for variant in [w.clone(), cap.clone(), format!(" {w}"), format!(" {cap}")] {
                if let [id] = chat.word_ids(&variant)?[..] {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
            all.push(ids);
        }
        Ok(Some(all))
    }

    fn token_layout(&self, image: &RgbImage) -> crate::Result<Option<crate::model::TokenLayout>> {
        self.input_token_layout(&Input::Image(image.clone()))
    }

    fn input_token_layout(&self, input: &Input) -> crate::Result<Option<crate::model::TokenLayout>> {
        let sample = self.prepare_input(input)?;
        let positions = self.positions(&sample)?;
        let strings = match &self.prompt {
            Some(Prompt::Chat(c)) => Some(c.token_strings(&sample.input_ids)?),
            _ => None,
        };
        let image_mask = sample.input_ids.iter().map(|&id| id == self.cfg.image_token_id).collect();
        Ok(Some(crate::model::TokenLayout {
            ids: sample.input_ids,
            strings,
            image_mask,
            mrope_positions: positions.axes,
        }))
    }

    fn forward(&self, images: &[RgbImage], hooks: &HookSet, pooling: Pooling) -> crate::Result<Captures> {
        let inputs: Vec<Input> = images.iter().cloned().map(Input::Image).collect();
        self.forward_inputs(&inputs, hooks, pooling)
    }

    fn forward_inputs(&self, inputs: &[Input], hooks: &HookSet, pooling: Pooling) -> crate::Result<Captures> {
        // Only the canonical names are emitted (`blocks.{l}.hook_resid_pre` for l > 0 is the same tensor as
        // `blocks.{l-1}.hook_resid_post` and is never produced), so anything else is refused, not left empty.
        let points = self.all_hook_points();
        let asked = hooks.capture.iter().chain(hooks.interventions.iter().map(|iv| &iv.point));
        if let Some(p) = asked.into_iter().find(|p| !points.contains(p)) {
            return Err(
                Error::NoSuchHook { point: p.to_string(), available: crate::model::summarize_points(&points) }.into()
            );
        }
        if pooling == Pooling::ImageMean && inputs.iter().any(|i| matches!(i, Input::Text(_))) {
            return Err(Error::Msg(
                "image-mean pooling averages over image tokens, and a text prompt has none; pool text prompts \
                 with `last` or `tokens`"
                    .into(),
            )
            .into());
        }
        let batch = inputs.iter().map(|i| self.prepare_input(i)).collect::<Result<Vec<_>, _>>()?;
        Ok(self.forward_samples(&batch, hooks, pooling)?)
    }
}

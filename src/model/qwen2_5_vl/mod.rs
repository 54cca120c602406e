//! Qwen2.5-VL (3B, 7B, or any size its config describes) in candle, computing what transformers computes:
//! image processor, vision tower with window attention, M-RoPE Qwen2 decoder, all `L + 1` hidden states with
//! transformers' `output_hidden_states` semantics, hooks at every residual point, and greedy generation.
//!
//! Hook points are HF's hidden-state list (see [`crate::model::hooks`]): `blocks.0.hook_resid_pre` (embeddings
//! with image features merged), `blocks.{l}.hook_resid_post` for `l < L - 1`, `ln_final.hook_out`.
//! Interventions run at each point before its capture, so captures are post-intervention.

pub mod arch;
pub mod checkpoint;
pub mod config;
#[cfg(test)]
mod host_copies;
mod model_impl;
mod pooling;
pub mod processor;
pub mod prompt;
mod reduce;
mod resize;
pub mod rope;
mod text;
pub(crate) mod vision;

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use image::RgbImage;

pub use arch::{Architecture, VisionTower, FAMILY, QWEN2_5_VL};
pub use checkpoint::Checkpoint;
pub use config::{Config, ProcessorConfig, TextConfig, VisionConfig};
pub use processor::{smart_resize, ImageProcessor, ProcessedImage, ResizeFilter};
pub use prompt::{ChatPrompt, Prompt, DEFAULT_QUESTION};
pub use resize::resize_bicubic_pil;
pub use rope::MropePositions;
pub use text::KvCache;

use crate::model::nn::kernels::on_compute_threads;
use crate::model::{Captures, Component, Error, HookPoint, HookSet, Input, Pooling, Positions};
use pooling::{pool, pool_vision, refuse_image_interventions_without_image, to_host, Layout};
use text::{causal_mask, TextModel};

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

/// A loaded Qwen2.5-VL checkpoint, or one of another Qwen-VL generation that shares this runner (its
/// [`Architecture`]: Qwen2-VL).
pub struct Qwen25VlModel {
    id: String,
    arch: &'static Architecture,
    cfg: Config,
    processor: ImageProcessor,
    vision: Box<dyn VisionTower>,
    text: TextModel,
    device: Device,
    dtype: DType,
    prompt: Option<Prompt>,
    /// The keys and values of the last shared prompt prefix run ([`Self::prefix_cache`]).
    prefix_kv: std::sync::Mutex<Option<reduce::PrefixKv>>,
}

impl Qwen25VlModel {
    /// Loads a local checkpoint directory. A `tokenizer.json` there enables the chat prompt with
    /// [`DEFAULT_QUESTION`]; otherwise set a prompt with [`Self::with_prompt`] before calling the [`Model`] API.
    ///
    /// [`Model`]: crate::model::Model
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self, Error> {
        Self::load_as(&QWEN2_5_VL, dir, dtype, device)
    }

    /// [`Self::load`] for a checkpoint of the Qwen-VL generation `arch`.
    pub fn load_as(arch: &'static Architecture, dir: &Path, dtype: DType, device: &Device) -> Result<Self, Error> {
        let cfg = Config::from_dir_as(arch, dir)?;
        let proc_cfg = ProcessorConfig::from_dir(dir)?;
        proc_cfg.check(&cfg.vision).map_err(|msg| Error::Config { path: dir.join("preprocessor_config.json"), msg })?;
        let ckpt = Checkpoint::open(dir, &cfg, arch.vision_tensors)?;
        let lm_head = if ckpt.has_lm_head { Some(ckpt.load("lm_head.weight", dtype, device)?) } else { None };
        let (text_prefix, vision_prefix) = (ckpt.text_prefix, ckpt.vision_prefix);
        let vb = ckpt.into_var_builder(dtype, device);
        let text = TextModel::new(&cfg.text, vb.pp(text_prefix), lm_head)?;
        let vision = (arch.vision_tower)(&cfg.vision, vb.pp(vision_prefix))?;
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
            arch,
            cfg,
            processor: ImageProcessor::new(proc_cfg),
            vision,
            text,
            device: device.clone(),
            dtype,
            prompt,
            prefix_kv: Default::default(),
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

    /// The Qwen-VL generation this checkpoint is.
    pub fn architecture(&self) -> &'static Architecture {
        self.arch
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
        on_compute_threads(&self.device, || {
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
        })
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
    /// captured points land in `layout.vision` (model dtype, on the device, raster order).
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
                captured.insert(point.clone(), changed.as_ref().unwrap_or(xs).clone());
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
    /// values serve the batch and every later batch with the same prefix ([`Self::shared_prefix`],
    /// `prefix_cache`).
    pub fn forward_samples(&self, batch: &[Sample], hooks: &HookSet, pooling: Pooling) -> Result<Captures, Error> {
        on_compute_threads(&self.device, || {
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
                    let mut cache = self.prefix_cache(&batch[0].input_ids[..past], blocks)?.repeat(batch.len())?;
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
                caps.logits = Some(to_host(&self.text.logits(&last)?.to_dtype(DType::F32)?)?);
            }
            Ok(caps)
        })
    }
}

//! Qwen2.5-VL (3B, 7B, or any size its config describes) in candle, computing what transformers computes:
//! image processor, vision tower with window attention, M-RoPE Qwen2 decoder, all `L + 1` hidden states with
//! transformers' `output_hidden_states` semantics, hooks at every residual point, and greedy generation.
//!
//! Hook points are HF's hidden-state list (see [`crate::model::hooks`]): `blocks.0.hook_resid_pre` (embeddings
//! with image features merged), `blocks.{l}.hook_resid_post` for `l < L - 1`, `ln_final.hook_out`.
//! Interventions run at each point before its capture, so captures are post-intervention.

pub mod checkpoint;
pub mod config;
pub mod processor;
pub mod prompt;
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

use crate::model::{Captures, Error, HookPoint, HookSet, Pooling, Positions};
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

/// Where each sample sits in a left-padded batch.
struct Layout {
    seq: usize,
    pad: Vec<usize>,
    image_pos: Vec<Vec<usize>>,
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
        let (last, _) = self.prefill(std::slice::from_ref(&sample), hooks, None, None, &mut |point, xs, _| {
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
    /// [`Positions::All`] also apply to every generated token; other position modes touch the prompt only.
    pub fn generate(&self, sample: &Sample, max_new_tokens: usize, hooks: &HookSet) -> Result<Vec<u32>, Error> {
        let positions = self.positions(sample)?;
        let mut cache = KvCache::new(self.n_layers());
        let (last, _) =
            self.prefill(std::slice::from_ref(sample), hooks, Some(&mut cache), None, &mut |_, _, _| Ok(()))?;
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
            let xs = self.text.embed(&Tensor::new(&[[token]], &self.device)?)?;
            let layout = Layout { seq: 1, pad: vec![0], image_pos: vec![vec![]] };
            let decode_sel = |b: usize, p: &Positions| match p {
                Positions::All => layout.select(b, p),
                _ => vec![],
            };
            let normed = self.text.forward_embeds(xs, &cos, &sin, None, Some(&mut cache), None, &mut |l, xs| {
                hooks.apply(&HookPoint::ResidPost(l), &xs, &decode_sel)
            })?;
            next_logits = self.text.logits(&normed.expect("decoding runs every block"))?;
        }
        Ok(out)
    }

    fn positions(&self, s: &Sample) -> Result<MropePositions, Error> {
        rope::rope_index(&s.input_ids, &s.grids, self.cfg.image_token_id, self.cfg.vision.spatial_merge_size)
    }

    /// Embeds a left-padded batch, merges image features, runs the first `blocks` blocks (all when `None`) with
    /// hooks. `on_point` sees each hook point's `(batch, seq, hidden)` tensor after interventions. Returns the
    /// final-norm output, or `None` when it stopped before the last block.
    fn prefill(
        &self,
        batch: &[Sample],
        hooks: &HookSet,
        cache: Option<&mut KvCache>,
        blocks: Option<usize>,
        on_point: &mut dyn FnMut(&HookPoint, &Tensor, &Layout) -> candle_core::Result<()>,
    ) -> Result<(Option<Tensor>, Layout), Error> {
        let image_id = self.cfg.image_token_id;
        let seq = batch.iter().map(|s| s.input_ids.len()).max().unwrap_or(0);
        if seq == 0 {
            return Err(Error::Msg("empty prompt".into()));
        }
        let mut ids = Vec::with_capacity(batch.len() * seq);
        let mut pad = Vec::new();
        let mut image_pos = Vec::new();
        let mut axes_all = Vec::new();
        let mut grids = Vec::new();
        let mut pixels = Vec::new();
        for s in batch {
            let p = seq - s.input_ids.len();
            let n_pad_tokens = s.input_ids.iter().filter(|&&i| i == image_id).count();
            if n_pad_tokens == 0 {
                return Err(Error::Msg(format!(
                    "the prompt has no image tokens (id {image_id}); put the image placeholder in the prompt"
                )));
            }
            let want: usize = s.grids.iter().map(|g| g.iter().product::<usize>()).sum::<usize>()
                / (self.cfg.vision.spatial_merge_size * self.cfg.vision.spatial_merge_size);
            if n_pad_tokens != want {
                return Err(Error::Msg(format!(
                    "the prompt has {n_pad_tokens} image tokens but its images give {want} vision features"
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
            grids.extend(s.grids.iter().copied());
            pixels.push(s.pixel_values.to_device(&self.device)?);
        }
        let b = batch.len();
        let layout = Layout { seq, pad, image_pos };
        let features = self.vision.forward(&Tensor::cat(&pixels, 0)?, &grids)?;
        let ids_t = Tensor::from_vec(ids.clone(), (b, seq), &self.device)?;
        let embeds = self.text.embed(&ids_t)?.reshape((b * seq, ()))?;
        // One gather from [token embeddings; image features] puts features at the image positions, in order.
        let mut src = Vec::with_capacity(b * seq);
        let mut next_feature = (b * seq) as u32;
        for (r, &id) in ids.iter().enumerate() {
            let is_image = layout.image_pos[r / seq].binary_search(&(r % seq)).is_ok() && id == image_id;
            if is_image {
                src.push(next_feature);
                next_feature += 1;
            } else {
                src.push(r as u32);
            }
        }
        let table = Tensor::cat(&[&embeds, &features.to_dtype(embeds.dtype())?], 0)?;
        let xs = table.index_select(&Tensor::from_vec(src, b * seq, &self.device)?, 0)?.reshape((b, seq, ()))?;

        let refs: Vec<&[Vec<i64>; 3]> = axes_all.iter().collect();
        let tc = &self.cfg.text;
        let (cos, sin) = rope::mrope_cos_sin(&refs, tc.head_dim, tc.rope_theta, &tc.mrope_section, &self.device)?;
        let mask = if seq > 1 { Some(causal_mask(&layout.pad, seq, 0, &self.device)?) } else { None };

        let sel = |bi: usize, p: &Positions| layout.select(bi, p);
        let point = HookPoint::ResidPre(0);
        let xs = hooks.apply(&point, &xs, &sel)?;
        on_point(&point, &xs, &layout)?;
        let normed = self.text.forward_embeds(xs, &cos, &sin, mask.as_ref(), cache, blocks, &mut |l, xs| {
            let point = HookPoint::ResidPost(l);
            let xs = hooks.apply(&point, &xs, &sel)?;
            on_point(&point, &xs, &layout)?;
            Ok(xs)
        })?;
        let Some(normed) = normed else { return Ok((None, layout)) };
        let point = HookPoint::LnFinalOut;
        let normed = hooks.apply(&point, &normed, &sel)?;
        on_point(&point, &normed, &layout)?;
        Ok((Some(normed), layout))
    }

    /// Runs a batch of prepared samples and pools the requested captures (f32, CPU). Samples are left-padded to
    /// one length and masked, so each equals its batch-of-one result up to float summation order. With
    /// [`HookSet::stop_early`] it runs only the blocks the hooks need and returns no logits.
    pub fn forward_samples(&self, batch: &[Sample], hooks: &HookSet, pooling: Pooling) -> Result<Captures, Error> {
        let mut caps = Captures::default();
        let blocks = hooks.blocks_needed(self.n_layers());
        let (normed, layout) = self.prefill(batch, hooks, None, blocks, &mut |point, xs, layout| {
            if hooks.wants(point) {
                let pooled = pool(xs, layout, pooling)?;
                caps.layers.insert(point.clone(), pooled);
            }
            Ok(())
        })?;
        if let Some(normed) = normed {
            let last = normed.i((.., layout.seq - 1, ..))?.contiguous()?;
            caps.logits = Some(self.text.logits(&last)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?);
        }
        Ok(caps)
    }
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

impl crate::model::Model for Qwen25VlModel {
    fn id(&self) -> &str {
        &self.id
    }

    fn hook_points(&self) -> Vec<HookPoint> {
        let n = self.n_layers();
        (0..=n).filter_map(|i| HookPoint::from_hidden_state_index(i, n)).collect()
    }

    fn width(&self, point: &HookPoint) -> Option<usize> {
        point.hidden_state_index(self.n_layers()).map(|_| self.cfg.text.hidden_size)
    }

    fn generate(
        &self,
        images: &[RgbImage],
        hooks: &HookSet,
        max_new_tokens: usize,
    ) -> crate::Result<Option<Vec<String>>> {
        let Some(prompt) = self.prompt() else { return Ok(None) };
        let mut out = Vec::with_capacity(images.len());
        for img in images {
            let ids = Qwen25VlModel::generate(self, &self.prepare(img)?, max_new_tokens, hooks)?;
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

    fn forward(&self, images: &[RgbImage], hooks: &HookSet, pooling: Pooling) -> crate::Result<Captures> {
        // Only the canonical names are emitted (`blocks.{l}.hook_resid_pre` for l > 0 is the same tensor as
        // `blocks.{l-1}.hook_resid_post` and is never produced), so anything else is refused, not left empty.
        let points = self.hook_points();
        if let Some(p) = hooks.capture.iter().find(|p| !points.contains(p)) {
            return Err(Error::NoSuchHook {
                point: p.to_string(),
                available: crate::model::summarize_points(&self.hook_points()),
            }
            .into());
        }
        let batch = images.iter().map(|img| self.prepare(img)).collect::<Result<Vec<_>, _>>()?;
        Ok(self.forward_samples(&batch, hooks, pooling)?)
    }
}

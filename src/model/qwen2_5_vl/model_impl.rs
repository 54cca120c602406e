//! Qwen2.5-VL behind huescan's [`crate::model::Model`] trait: its hook points and their widths and
//! transformers modules, the prompt's token layout, colour-word ids, generation and the hooked forward.

use image::RgbImage;

use super::{Prompt, Qwen25VlModel};
use crate::model::{Captures, Error, HookPoint, HookSet, Input, Pooling};

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
        let window = self.arch.vision_rows;
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
    ) -> crate::model::Result<Option<Vec<String>>> {
        let inputs: Vec<Input> = images.iter().cloned().map(Input::Image).collect();
        self.generate_inputs(&inputs, hooks, max_new_tokens)
    }

    fn generate_inputs(
        &self,
        inputs: &[Input],
        hooks: &HookSet,
        max_new_tokens: usize,
    ) -> crate::model::Result<Option<Vec<String>>> {
        let Some(prompt) = self.prompt() else { return Ok(None) };
        let mut out = Vec::with_capacity(inputs.len());
        for input in inputs {
            let ids = Qwen25VlModel::generate(self, &self.prepare_input(input)?, max_new_tokens, hooks)?;
            out.push(prompt.decode(&ids)?);
        }
        Ok(Some(out))
    }

    fn token_ids(&self, words: &[String]) -> crate::model::Result<Option<Vec<Vec<u32>>>> {
        let Some(Prompt::Chat(chat)) = self.prompt() else { return Ok(None) };
        let mut all = Vec::with_capacity(words.len());
        for w in words {
            // By chars, not bytes: `w[..1]` panicked on an empty word and would on a non-ASCII first letter.
            let mut chars = w.chars();
            let Some(first) = chars.next() else {
                return Err(Error::Msg("a colour word is empty; expected a non-empty word".into()));
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

    fn token_layout(&self, image: &RgbImage) -> crate::model::Result<Option<crate::model::TokenLayout>> {
        self.input_token_layout(&Input::Image(image.clone()))
    }

    fn text_output(&self) -> Option<&dyn crate::model::TextOutput> {
        self.prompt.is_some().then_some(self as &dyn crate::model::TextOutput)
    }

    fn input_token_layout(&self, input: &Input) -> crate::model::Result<Option<crate::model::TokenLayout>> {
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

    fn forward(&self, images: &[RgbImage], hooks: &HookSet, pooling: Pooling) -> crate::model::Result<Captures> {
        let inputs: Vec<Input> = images.iter().cloned().map(Input::Image).collect();
        self.forward_inputs(&inputs, hooks, pooling)
    }

    fn forward_inputs(&self, inputs: &[Input], hooks: &HookSet, pooling: Pooling) -> crate::model::Result<Captures> {
        // Only the canonical names are emitted (`blocks.{l}.hook_resid_pre` for l > 0 is the same tensor as
        // `blocks.{l-1}.hook_resid_post` and is never produced), so anything else is refused, not left empty.
        let points = self.all_hook_points();
        let asked = hooks.capture.iter().chain(hooks.interventions.iter().map(|iv| &iv.point));
        if let Some(p) = asked.into_iter().find(|p| !points.contains(p)) {
            return Err(
                Error::NoSuchHook { point: p.to_string(), available: crate::model::summarize_points(&points) }
            );
        }
        if pooling == Pooling::ImageMean && inputs.iter().any(|i| matches!(i, Input::Text(_))) {
            return Err(Error::Msg(
                "image-mean pooling averages over image tokens, and a text prompt has none; pool text prompts \
                 with `last` or `tokens`"
                    .into(),
            ));
        }
        let batch = inputs.iter().map(|i| self.prepare_input(i)).collect::<Result<Vec<_>, _>>()?;
        self.forward_samples(&batch, hooks, pooling)
    }
}

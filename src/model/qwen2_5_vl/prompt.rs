//! Prompts: the Qwen chat template for one image and one question, tokenised with the checkpoint's
//! `tokenizer.json`, or a raw id prefix/suffix (for checkpoints without a tokenizer, such as the test fixture).
//! In both, the single image placeholder is expanded to one image-pad token per merged vision token.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::model::Error;

/// The question the default prompt asks.
pub const DEFAULT_QUESTION: &str = crate::settings::PROMPT;
/// The system prompt Qwen's template injects when the conversation has none.
pub const DEFAULT_SYSTEM: &str = "You are a helpful assistant.";
const IMAGE_PAD: &str = "<|image_pad|>";

/// How the token ids around the image are made.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)] // one per model
pub enum Prompt {
    /// The chat template rendered with a tokenizer.
    Chat(ChatPrompt),
    /// Fixed ids before and after the image-pad run (which must include any vision start/end tokens).
    Ids { prefix: Vec<u32>, suffix: Vec<u32> },
}

impl Prompt {
    /// The prompt ids with `n_image_tokens` image-pad tokens.
    pub fn ids(&self, n_image_tokens: usize, image_pad_id: u32) -> Result<Vec<u32>, Error> {
        match self {
            Prompt::Chat(c) => c.ids(n_image_tokens),
            Prompt::Ids { prefix, suffix } => {
                let mut ids = prefix.clone();
                ids.extend(std::iter::repeat_n(image_pad_id, n_image_tokens));
                ids.extend(suffix);
                Ok(ids)
            }
        }
    }

    /// Text of generated ids, or the ids themselves when there is no tokenizer.
    pub fn decode(&self, ids: &[u32]) -> Result<String, Error> {
        match self {
            Prompt::Chat(c) => c.decode(ids),
            Prompt::Ids { .. } => Ok(format!("{ids:?}")),
        }
    }
}

/// The Qwen2.5-VL chat template for one image followed by one question, with the generation prompt.
#[derive(Clone)]
pub struct ChatPrompt {
    tokenizer: Tokenizer,
    pub question: String,
    image_pad_id: u32,
}

impl ChatPrompt {
    pub fn from_file(path: &Path, question: &str) -> Result<Self, Error> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| Error::Config { path: path.to_path_buf(), msg: format!("not a tokenizer.json: {e}") })?;
        Self::new(tokenizer, question)
    }

    pub fn new(tokenizer: Tokenizer, question: &str) -> Result<Self, Error> {
        let image_pad_id = tokenizer
            .token_to_id(IMAGE_PAD)
            .ok_or_else(|| Error::Msg(format!("the tokenizer has no `{IMAGE_PAD}` token; is it a Qwen tokenizer?")))?;
        Ok(ChatPrompt { tokenizer, question: question.to_string(), image_pad_id })
    }

    pub fn image_pad_id(&self) -> u32 {
        self.image_pad_id
    }

    /// The rendered template with one `<|image_pad|>` placeholder.
    pub fn text(&self) -> String {
        format!(
            "<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\n<|vision_start|>{IMAGE_PAD}<|vision_end|>{}<|im_end|>\n<|im_start|>assistant\n",
            self.question
        )
    }

    /// The template with `question` and no image (a text-only control), tokenised.
    pub fn text_only_ids(&self, question: &str) -> Result<Vec<u32>, Error> {
        let text = format!(
            "<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
        );
        let enc =
            self.tokenizer.encode(text, false).map_err(|e| Error::Msg(format!("cannot tokenise the prompt: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Tokenises the template and expands its one image-pad id to `n_image_tokens` copies (the pad is an atomic
    /// added token, so this equals tokenising the expanded string).
    pub fn ids(&self, n_image_tokens: usize) -> Result<Vec<u32>, Error> {
        let enc = self
            .tokenizer
            .encode(self.text(), false)
            .map_err(|e| Error::Msg(format!("cannot tokenise the prompt: {e}")))?;
        let mut out = Vec::with_capacity(enc.len() + n_image_tokens);
        for &id in enc.get_ids() {
            if id == self.image_pad_id {
                out.extend(std::iter::repeat_n(id, n_image_tokens));
            } else {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Each id decoded alone with special tokens kept (TransformerLens' `to_str_tokens`).
    pub fn token_strings(&self, ids: &[u32]) -> Result<Vec<String>, Error> {
        ids.iter()
            .map(|&id| {
                self.tokenizer.decode(&[id], false).map_err(|e| Error::Msg(format!("cannot decode id {id}: {e}")))
            })
            .collect()
    }

    /// Ids of a word without special tokens (e.g. colour words whose logits steering reads).
    pub fn word_ids(&self, word: &str) -> Result<Vec<u32>, Error> {
        let enc =
            self.tokenizer.encode(word, false).map_err(|e| Error::Msg(format!("cannot tokenise `{word}`: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes generated ids, skipping special tokens; ids past the tokenizer's vocabulary (padding rows of the
    /// embedding matrix) are dropped rather than failing.
    pub fn decode(&self, ids: &[u32]) -> Result<String, Error> {
        let vocab = self.tokenizer.get_vocab_size(true) as u32;
        let ids: Vec<u32> = ids.iter().copied().filter(|&i| i < vocab).collect();
        self.tokenizer.decode(&ids, true).map_err(|e| Error::Msg(format!("cannot decode {ids:?}: {e}")))
    }
}

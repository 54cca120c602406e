//! Models huescan can run live, behind one [`Model`] trait: capture activations at named hook points and
//! apply interventions on the way ([`hooks`]).
//!
//! Every model takes images (`image::RgbImage`); what it makes of them is its own business (Qwen2.5-VL
//! runs its image processor and chat prompt, the colour autoencoder reads the stimulus colour).

pub mod autoencoder;
pub mod device;
pub mod estimate;
pub mod hooks;
pub mod hub;
pub mod load;
pub mod nn;
pub mod preset;
pub mod registry;

// The model families run from checkpoints: one line each (its directory under src/model/ and its entry in
// `registry::FAMILIES`).
registry::families! {
    qwen2_5_vl,
    qwen2_vl,
}

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::Tensor;
use image::RgbImage;

pub use hooks::{
    select_points, Component, HookPoint, HookSet, Intervention, InterventionOp, Pooling, Positions, LAYER_CONVENTION,
};

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of model loading and running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("unknown hook point `{name}`: expected e.g. `blocks.3.hook_resid_post`, `ln_final.hook_out` or a model's named point")]
    HookName { name: String },
    #[error("invalid positions `{spec}`: expected `image`, `all`, `last` or comma-separated token indices")]
    Positions { spec: String },
    #[error("invalid pooling `{spec}`: expected `image-mean`, `last` or `tokens`")]
    Pooling { spec: String },
    #[error("hook pattern `{pattern}` matches no hook point; the model has {available} (e.g. `visual.blocks.*`, `blocks.*.hook_resid_post`, `ln_final.hook_out`)")]
    HookPattern { pattern: String, available: String },
    #[error("model has no hook point `{point}`; it has {available}")]
    NoSuchHook { point: String, available: String },
    #[error("config `{path}`: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("checkpoint `{path}`: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error("tensor `{name}` has shape {got:?}, expected {expected:?}")]
    TensorShape { name: String, expected: Vec<usize>, got: Vec<usize> },
    #[error("image {what}: {msg}")]
    Image { what: String, msg: String },
    #[error("invalid autoencoder option `{field}`: {msg}")]
    TrainOption { field: &'static str, msg: String },
    #[error("{0}")]
    Msg(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Fs(#[from] crate::fsx::Error),
}

/// What one forward pass returns.
#[derive(Debug, Default)]
pub struct Captures {
    /// Captured activations per hook point: `[batch, d_model]` when pooled, `[batch, pos, d_model]` for
    /// [`Pooling::Tokens`]; f32, on the CPU.
    pub layers: BTreeMap<HookPoint, Tensor>,
    /// Next-token logits at the last prompt position, `[batch, d_vocab]` f32, for models with a vocabulary.
    pub logits: Option<Tensor>,
}

/// The prompt of one sample, position by position, for token-level stores: the ids, their strings (each id
/// decoded alone, special tokens kept, as TransformerLens' `to_str_tokens`), which positions hold image features,
/// and the 3-D M-RoPE position (temporal, height, width) of each.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLayout {
    pub ids: Vec<u32>,
    /// `None` without a tokenizer.
    pub strings: Option<Vec<String>>,
    pub image_mask: Vec<bool>,
    pub mrope_positions: [Vec<i64>; 3],
}

/// One sample's input: an image (asked with the model's prompt) or a text-only prompt (a control without an
/// image, e.g. "What colour is a banana?").
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Image(RgbImage),
    Text(TextInput),
}

/// A text-only prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct TextInput {
    /// The question, put in the model's chat template without the vision block.
    pub text: String,
    /// The whole prompt as token ids, for a model without a tokenizer (raw-id prompts, like the test fixture),
    /// which cannot spell `text`; a model with a tokenizer uses `text`.
    pub ids: Option<Vec<u32>>,
}

impl Input {
    /// A text-only prompt from its question.
    pub fn text(question: impl Into<String>) -> Input {
        Input::Text(TextInput { text: question.into(), ids: None })
    }
}

/// The images of `inputs`, or a clear error naming `model` when one is a text prompt.
fn images_only(model: &str, inputs: &[Input]) -> Result<Vec<RgbImage>> {
    inputs
        .iter()
        .map(|i| match i {
            Input::Image(img) => Ok(img.clone()),
            Input::Text(_) => Err(Error::Msg(format!(
                "`{model}` takes images only, so it cannot run a text prompt; text prompts need a language model \
                 (Qwen2.5-VL)"
            ))),
        })
        .collect()
}

/// What a model that answers in text can do besides [`Model`]'s captures: `huescan ask`, the steering readout
/// of generated colour words, text-only prompts.
pub trait TextOutput {
    /// Greedy answer to `input` (up to `max_new_tokens` tokens, stopping at the end-of-turn token) with
    /// `hooks.interventions` applied: the generated ids and their decoding.
    fn answer(&self, input: &Input, hooks: &HookSet, max_new_tokens: usize) -> Result<(Vec<u32>, String)>;

    /// Whether prompts are spelled by a tokenizer; `false` for a fixed prompt of token ids (a checkpoint without
    /// `tokenizer.json`, like the test fixtures), whose text prompts cannot use their text.
    fn has_tokenizer(&self) -> bool;

    /// The decoder's `config.json` `model_type` (what llama.cpp's GGUF architecture is looked up by).
    fn model_type(&self) -> &str;
}

/// A model huescan can scan and steer.
pub trait Model {
    /// A stable identifier for manifests (repo id, preset or path).
    fn id(&self) -> &str;

    /// The indexed capture points, in order. The position of a point in this list is its *layer index* in the
    /// activation store; for transformer decoders the list is HF's `hidden_states` order (see [`hooks`]).
    fn hook_points(&self) -> Vec<HookPoint>;

    /// Capture points beyond [`Model::hook_points`] (vision tower, attention and MLP outputs, the raw last
    /// block): their layer indices continue after it, `hook_points().len() + k` for the `k`-th.
    fn extra_hook_points(&self) -> Vec<HookPoint> {
        Vec::new()
    }

    /// Every capture point: [`Model::hook_points`] then [`Model::extra_hook_points`]; indexed by layer index.
    fn all_hook_points(&self) -> Vec<HookPoint> {
        let mut all = self.hook_points();
        all.extend(self.extra_hook_points());
        all
    }

    /// The module path of the same tensor in the transformers implementation (for `register_forward_hook` /
    /// nnsight users), with how to read it when it is not a module's plain output; `None` when there is none.
    fn module_path(&self, _point: &HookPoint) -> Option<String> {
        None
    }

    /// How the indices of [`Model::hook_points`] are to be read; recorded in every store.
    fn layer_convention(&self) -> String {
        LAYER_CONVENTION.to_string()
    }

    /// Width of the activation at `point`.
    fn width(&self, point: &HookPoint) -> Option<usize>;

    /// Runs one batch: every image is one sample. Captures `hooks.capture` pooled by `pooling` and applies
    /// `hooks.interventions` where they are registered.
    fn forward(&self, images: &[RgbImage], hooks: &HookSet, pooling: Pooling) -> Result<Captures>;

    /// Greedy-generates up to `max_new_tokens` answer tokens per image with `hooks.interventions` applied (at
    /// the prompt positions they select), returning one decoded answer per image; `None` for models without
    /// text output. Steering calls it with one image and interventions addressed to every sample (`None`).
    fn generate(&self, _images: &[RgbImage], _hooks: &HookSet, _max_new_tokens: usize) -> Result<Option<Vec<String>>> {
        Ok(None)
    }

    /// The token ids of each word as a next token after the prompt (every spelling the tokenizer gives a single
    /// token, e.g. `red`, ` red`, `Red`); `None` for models without a vocabulary.
    fn token_ids(&self, _words: &[String]) -> Result<Option<Vec<Vec<u32>>>> {
        Ok(None)
    }

    /// The prompt layout of `image`'s sample (what the positions of a `tokens` capture are); `None` for models
    /// without a token sequence.
    fn token_layout(&self, _image: &RgbImage) -> Result<Option<TokenLayout>> {
        Ok(None)
    }

    /// [`Model::forward`] over images and text-only prompts: a text prompt is the model's prompt without the
    /// image. Models without a language model refuse text prompts.
    fn forward_inputs(&self, inputs: &[Input], hooks: &HookSet, pooling: Pooling) -> Result<Captures> {
        self.forward(&images_only(self.id(), inputs)?, hooks, pooling)
    }

    /// [`Model::generate`] over images and text-only prompts.
    fn generate_inputs(&self, inputs: &[Input], hooks: &HookSet, max_new_tokens: usize) -> Result<Option<Vec<String>>> {
        self.generate(&images_only(self.id(), inputs)?, hooks, max_new_tokens)
    }

    /// [`Model::token_layout`] of an image or a text-only prompt.
    fn input_token_layout(&self, input: &Input) -> Result<Option<TokenLayout>> {
        match input {
            Input::Image(img) => self.token_layout(img),
            Input::Text(_) => Ok(None),
        }
    }

    /// The model's text output (generation, a chat or raw-id prompt), when it has one.
    fn text_output(&self) -> Option<&dyn TextOutput> {
        None
    }

    /// For a model whose output is itself a colour (the autoencoder), the hook point holding that RGB output;
    /// steering then reads the output's hue instead of a probe's.
    fn colour_output(&self) -> Option<HookPoint> {
        None
    }

    /// The layer index of `point`, or a clear error listing what exists.
    fn layer_index(&self, point: &HookPoint) -> Result<usize, Error> {
        let points = self.all_hook_points();
        points
            .iter()
            .position(|p| p == point)
            .ok_or_else(|| Error::NoSuchHook { point: point.to_string(), available: summarize_points(&points) })
    }
}

/// A shared model is a model (so one loaded checkpoint can serve the `Model` API and its own extras).
impl<T: Model + ?Sized> Model for std::sync::Arc<T> {
    fn id(&self) -> &str {
        (**self).id()
    }
    fn hook_points(&self) -> Vec<HookPoint> {
        (**self).hook_points()
    }
    fn extra_hook_points(&self) -> Vec<HookPoint> {
        (**self).extra_hook_points()
    }
    fn all_hook_points(&self) -> Vec<HookPoint> {
        (**self).all_hook_points()
    }
    fn module_path(&self, point: &HookPoint) -> Option<String> {
        (**self).module_path(point)
    }
    fn layer_convention(&self) -> String {
        (**self).layer_convention()
    }
    fn width(&self, point: &HookPoint) -> Option<usize> {
        (**self).width(point)
    }
    fn forward(&self, images: &[RgbImage], hooks: &HookSet, pooling: Pooling) -> Result<Captures> {
        (**self).forward(images, hooks, pooling)
    }
    fn generate(&self, images: &[RgbImage], hooks: &HookSet, max_new_tokens: usize) -> Result<Option<Vec<String>>> {
        (**self).generate(images, hooks, max_new_tokens)
    }
    fn token_ids(&self, words: &[String]) -> Result<Option<Vec<Vec<u32>>>> {
        (**self).token_ids(words)
    }
    fn token_layout(&self, image: &RgbImage) -> Result<Option<TokenLayout>> {
        (**self).token_layout(image)
    }
    fn forward_inputs(&self, inputs: &[Input], hooks: &HookSet, pooling: Pooling) -> Result<Captures> {
        (**self).forward_inputs(inputs, hooks, pooling)
    }
    fn generate_inputs(&self, inputs: &[Input], hooks: &HookSet, max_new_tokens: usize) -> Result<Option<Vec<String>>> {
        (**self).generate_inputs(inputs, hooks, max_new_tokens)
    }
    fn input_token_layout(&self, input: &Input) -> Result<Option<TokenLayout>> {
        (**self).input_token_layout(input)
    }
    fn text_output(&self) -> Option<&dyn TextOutput> {
        (**self).text_output()
    }
    fn colour_output(&self) -> Option<HookPoint> {
        (**self).colour_output()
    }
}

/// `blocks.0.hook_resid_pre, blocks.0.hook_resid_post, … ln_final.hook_out (37 points)`.
pub fn summarize_points(points: &[HookPoint]) -> String {
    match points {
        [] => "no hook points".into(),
        [a] => a.to_string(),
        [a, b] => format!("{a} and {b}"),
        [a, b, .., z] => format!("{a}, {b}, … {z} ({} points)", points.len()),
    }
}

//! In-model steering: build a direction from cached activations, add it inside the running model at one layer
//! (a residual-stream hook), let every later layer run, and read out what the model then represents and says.
//!
//! The seed notebook's "neural joystick" only moved a vector in front of a linear decoder outside the model
//! ([`crate::manifold::joystick`]); that shows what a readout does with interpolated vectors, not what the model
//! does. Here the change goes *into* the forward pass, and the joystick runs on the same activations beside it so
//! the two can be compared row by row.
//!
//! - [`direction`]: centroid difference between two hues, rotation along the fitted SMDS circle (lifted back to
//!   the residual stream), and a seeded random control of the same norm; every direction carries its full
//!   recipe ([`Recipe`]) and is saved as safetensors ([`SteeringVector`]) or exported as a llama.cpp control
//!   vector ([`gguf`]).
//! - [`readout`]: ridge probes to (cos, sin) of hue at every later layer, colour-word next-token probabilities
//!   from the model's logits, generated text, and the hue of an RGB output (the colour autoencoder).
//! - [`sweep`]: alpha × pair × layer sweeps, one batch holding every alpha of a pair (per-sample
//!   interventions), written as CSV + JSON with a success summary.
//! - [`inputs`]: the checks that the stimulus set, the model and the layers are the ones the store was made
//!   from.
//!
//! Layer numbering: a *layer index* is a position in [`crate::model::Model::hook_points`], which for decoders
//! is HF's `hidden_states` index. Steering at index `i = l + 1` adds to `blocks.{l}.hook_resid_post`, i.e. the
//! output of block `l`, which is what llama.cpp's `direction.{l}` tensor means (see [`gguf`]).

//! What a model provides (the [`crate::model::Model`] trait): `hook_points`/`width` (the steering point must
//! have the store's hook name and width), `forward` applying `HookSet::interventions` per sample and returning
//! pooled captures (same pooling as the store) and, for models with a vocabulary, `Captures.logits`
//! `[batch, d_vocab]` at the last prompt position; `token_ids(words)` for the colour words; and
//! `generate(images, hooks, max_new_tokens)` for greedy answers under the same interventions. The colour
//! autoencoder provides none of the text parts and is read out by the hue of its RGB `output` instead.

pub mod direction;
pub mod gguf;
pub mod inputs;
pub mod layers;
pub mod readout;
pub mod sweep;
mod table;
mod vector;

pub use direction::{centroid, manifold_rotation, random_control, rows_at_hue, Direction, DirectionContext};
pub use layers::{answer_flips, default_steering_layers, AnswerFlip};
pub use readout::{ColourWords, HueProbe, DEFAULT_COLOUR_WORDS};
pub use sweep::{
    parse_alphas, parse_pair, run_sweep, PairSpec, ProbeInfo, SummaryRow, SweepInput, SweepOptions, SweepRecord,
    SweepResult, SweepRow,
};
pub use table::{summary_csv, sweep_csv, write_sweep, write_vectors, SummaryFile, SweepFile};
pub use vector::{DirectionKind, Lift, Normalisation, Recipe, SteeringVector};

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of steering. Messages are lower-case, say what was expected and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("hue {hue_deg}° is not in the stimulus set: the nearest sample hue is {nearest_deg}°, more than {tolerance_deg}° away (a quarter of the median hue spacing); pick a hue the set holds")]
    HueNotInSet { hue_deg: f64, nearest_deg: f64, tolerance_deg: f64 },
    #[error(
        "invalid alphas `{spec}`: {msg}; expected `start:stop:step` (e.g. `-0.25:1.25:0.25`) or a comma-separated list"
    )]
    Alphas { spec: String, msg: String },
    #[error("invalid pair `{spec}`: expected `FROM:TO` in degrees, e.g. `240:0`")]
    Pair { spec: String },
    #[error("{what} has width {got}, expected {expected}")]
    Width { what: String, expected: usize, got: usize },
    #[error("layer {index}: {msg}")]
    Layer { index: usize, msg: String },
    #[error("steering vector `{path}`: {msg}")]
    VectorFile { path: std::path::PathBuf, msg: String },
    #[error("cannot export a llama.cpp control vector: {msg}")]
    Gguf { msg: String },
    #[error("{0}")]
    Msg(String),
    #[error(transparent)]
    Fs(#[from] crate::fsx::Error),
    #[error(transparent)]
    Model(#[from] crate::model::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Manifold(#[from] crate::manifold::Error),
    #[error(transparent)]
    Extract(#[from] crate::extract::Error),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

//! Manifold discovery on cached activations: Supervised Multi-Dimensional Scaling (SMDS) and the seed notebook's
//! analysis (layer scan, periodic split, k-fold discovery, held-out refit, seam closure, arbitration, 3-D
//! projection, decoder-only "neural joystick"), plus what the notebook lacks: cross-validated layer choice,
//! shuffled-label baselines, permutation p-values and bootstrap intervals.
//!
//! Reference: the Python package `smds` 1.6.6 (UKPLab/supervised-multidimensional-scaling, arXiv 2510.01025), as
//! specified in `shared/reference/smds.md`. SMDS is a two-stage fit:
//!
//! 1. ideal embedding: classical MDS of the shape's ideal distances, $B = -\tfrac12 J (D \circ D) J$,
//!    $Y = V_k \sqrt{\max(\Lambda_k, 0)}$;
//! 2. a ridge map from centred activations, $W = Y_c^\top X_c (X_c^\top X_c + \alpha I_d)^{-1}$, solved here in
//!    its dual $n \times n$ form $W = Y_c^\top (X_c X_c^\top + \alpha I_n)^{-1} X_c$ (same $W$, far cheaper when
//!    $n < d$).
//!
//! Two label modes ([`LabelMode`]): `Periodic` (huescan's default: hue as a true fraction of a turn, no min-max,
//! shuffled seeded folds) and `Compat` (the package number for number: min-max label normalisation, unshuffled
//! contiguous k-fold). Every output row carries its mode.
//!
//! This module never touches candle, models or the store: `huescan analyze` runs with no model. All maths is
//! in `f64`; `f32` activations are widened on entry (the notebook also casts to float64).

mod analyze;
mod cv;
mod gram;
mod joystick;
mod metrics;
mod output;
mod pca;
mod projection_map;
mod shapes;
mod smds;
mod stats;

pub use analyze::{
    analyze, global_winner, Analysis, AnalyzeOptions, ArbitrationRow, DiscoveryRow, GlobalShapeRow, HeldoutRow,
    LayerChoice, LayerScanRow, Projection,
};
pub use cv::{kfold_contiguous, kfold_shuffled, n_folds_for, periodic_train_test_split, Fold};
pub use joystick::{joystick, rgb_to_hue_deg, Joystick, JoystickOptions, JoystickRow, SteeringPair};
pub use metrics::{score_distances, Metric, Scores};
pub use output::{write_analysis, write_global};
pub use pca::principal_components;
pub use projection_map::ProjectionMap;
pub use shapes::{circle_template_3d, hue_turns, LabelMode, Shape};
pub use smds::{Smds, SmdsParams, SmdsValidParams, Stage1};
pub use stats::{bootstrap_interval, coverage_ratio, periodicity_score, seam_closure_ratio};

/// Fewest samples the analysis accepts (the notebook's split guard).
pub const MIN_SAMPLES: usize = 8;

/// Sample counts under which results are flagged as noisy (the package prints the same warning).
pub const SMALL_N_WARNING: usize = 100;

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in manifold analysis. Messages are lower-case, say what was expected and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("too few samples: got {got}, need at least {min} (render more hues or merge stimulus sets)")]
    TooFewSamples { got: usize, min: usize },
    #[error("label count {labels} does not match sample count {samples} (hue_deg must have one entry per row)")]
    LabelCount { labels: usize, samples: usize },
    #[error("label {index} is {value}, expected a finite number (check hue_deg in the store manifest)")]
    NonFiniteLabel { index: usize, value: f64 },
    #[error("all {n} labels are equal ({value}); a shape needs at least two distinct labels")]
    ConstantLabels { n: usize, value: f64 },
    #[error("label {index} is {value} but shape {shape} needs non-negative labels")]
    NegativeLabel { shape: &'static str, index: usize, value: f64 },
    #[error("{what}: value {value} at row {row}, column {col} is not finite (NaN or Inf in activations)")]
    NonFiniteActivation { what: String, row: usize, col: usize, value: f64 },
    #[error("{what}: {got} features, expected {expected} (every row of a layer must have the same width d_model)")]
    FeatureCount { what: String, got: usize, expected: usize },
    #[error("layer {layer} has {got} rows but {expected} hue labels were given")]
    LayerRows { layer: usize, got: usize, expected: usize },
    #[error("n_components {k} exceeds the number of samples {n}; use at most {n} components")]
    TooManyComponents { k: usize, n: usize },
    #[error("template has {rows} rows but {n} samples were given; a template needs one row per sample")]
    TemplateRows { rows: usize, n: usize },
    #[error("invalid parameter `{name}` = {value}: expected {expected}")]
    InvalidParam { name: &'static str, value: String, expected: &'static str },
    #[error("unknown shape `{0}`; expected one of circular, semicircular, euclidean, discrete_circular, spiral, log_linear, cluster")]
    UnknownShape(String),
    #[error("no layers were given; the activation store has no layers to analyse")]
    NoLayers,
    #[error("every layer is unusable ({0}); check the activations for constant layers")]
    NoUsableLayer(String),
    #[error("linear algebra failed: {0}")]
    Linalg(String),
    #[error(transparent)]
    Fs(#[from] crate::fsx::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("projection has {rows} rows but there are {labels} hue labels")]
    ProjectionRows { rows: usize, labels: usize },
}

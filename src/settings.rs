//! Every default that a command-line flag and a stage's options share, written once.
//!
//! The clap structs of the binary (`default_value_t = settings::BOOTSTRAP`), the library's `Default` impls
//! (`AnalyzeOptions`, `SweepOptions`, `JoystickOptions`), `huescan scan` and `huescan demo` all read these
//! constants, so a default changes in one place. `tests/it/settings.rs` fails when one of these literals is
//! written anywhere else in `src/`. A leaf module: it depends on nothing in the crate.

/// The question asked with every image unless a preset or `--prompt` says otherwise: it makes the answer
/// position predict a colour word.
pub const PROMPT: &str = "What colour is this image? Answer with one word.";

/// Steering strengths, as `--alphas` spells them (`start:stop:step`); [`ALPHAS`] is the same list.
pub const ALPHAS_SPEC: &str = "-0.25:1.25:0.25";
/// The steering strengths of [`ALPHAS_SPEC`], as the notebook's joystick lists them.
pub const ALPHAS: [f64; 7] = [-0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25];

/// The notebook's steering pairs `(source°, target°, label)`: Blue→Red, Red→Green, Green→Blue.
pub const PAIRS: [(f64, f64, &str); 3] =
    [(240.0, 0.0, "Blue→Red"), (0.0, 120.0, "Red→Green"), (120.0, 240.0, "Green→Blue")];

/// Ridge penalty of the notebook's own SMDS fits: the layer scan, the refit on the training split, the
/// projection, and the circle behind `--direction manifold`.
pub const SMDS_ALPHA: f64 = 1e-4;

/// How a rotation along the fitted circle is carried back to the activations (`steer::Lift`, whose
/// `Default` is the same lift: a unit test in `steer::vector` checks they agree).
pub const LIFT: &str = "local-mean";

/// A steered hue within this many degrees of the target counts as reached.
pub const TOLERANCE_DEG: f64 = 30.0;

/// Label permutations per layer (and per shape in discovery) for the p-values.
pub const PERMUTATIONS: usize = 100;

/// Bootstrap resamples for the held-out score intervals.
pub const BOOTSTRAP: usize = 1000;

/// Composite weight of the held-out score; the periodicity score gets `1 - W_TEST`.
pub const W_TEST: f64 = 0.7;

/// Seed of folds, permutations, bootstraps and random control directions.
pub const SEED: u64 = 0;

/// Candidate shapes of `huescan analyze`, as `--shapes` spells them (the notebook's three).
pub const SHAPES: &str = "circular,semicircular,euclidean";

/// Answer tokens generated per image by every command that generates (`steer`, `scan`, `demo`, `ask`): enough
/// for the one-word colour answer [`PROMPT`] asks for.
pub const MAX_NEW_TOKENS: usize = 4;

/// The stimulus sets `huescan scan` and the demo's main act run on.
pub const SCAN_SETS: &str = "simple-60,wild-360";

/// Which layers are stored, scanned or offered for steering: every one.
pub const LAYERS: &str = "all";

/// How `huescan scan` pools each image's positions into one vector per layer.
pub const POOL: &str = "image-mean";

/// Where a model runs unless `--device` says otherwise.
pub const DEVICE: &str = "cpu";

//! huescan: where, and in what shape, does a vision-language model hold colour hue, and is that shape causal?
//!
//! Data flows one way through the modules:
//!
//! ```text
//! stimuli ──render──▶ images + stimuli.json
//!    │
//! model (Qwen2.5-VL | colour autoencoder) ──forward with hooks──▶ store (safetensors + manifest.json)
//!    │                                                               │ one layer at a time (mmap)
//!    ▼                                                               ▼
//! steer (in-model interventions, readouts) ◀── directions ── manifold (SMDS, layer scan, discovery)
//!    │
//!    ▼
//! report (HTML + figures + CSV/JSON)
//! ```
//!
//! `manifold` and `stimuli` are leaves: `huescan analyze` needs no model. `colour` (HSV, OKLCH, hue
//! differences, circular means, the chromatic threshold) is the leaf under all of them.

pub mod colour;
pub mod env;
pub mod error;
pub mod extract;
pub mod fsx;
pub mod manifold;
pub mod model;
pub mod nan_json;
pub mod report;
pub mod runinfo;
pub mod settings;
pub mod steer;
pub mod stimuli;
pub mod store;

pub use error::{Error, Result};

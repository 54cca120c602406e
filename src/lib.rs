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
//! differences, circular means, the chromatic threshold), `fsx` (atomic writes, checksums, I/O errors that
//! name their path) and `tensor_file` (deterministic safetensors bytes) are leaves under all of them.
//!
//! Each module returns its own error type (`stimuli::Error`, `model::Error`, …), wrapping the errors of the
//! stages it calls; [`Error`] wraps them all for callers that mix stages, and no module uses it, so the module
//! graph has no cycle (`tests/it/module_graph.rs`).

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
pub mod tensor_file;

pub use error::{Error, Result};

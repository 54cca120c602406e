//! Stimulus sets.

/// Errors of stimulus specs and rendering.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0}")]
    Msg(String),
}

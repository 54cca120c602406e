//! The activation store.

/// Errors of the activation store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0}")]
    Msg(String),
}

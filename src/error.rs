//! The library error. Each module owns a structured error enum; this one wraps them so callers can use `?`
//! across module boundaries and the binary prints the whole chain once with `{:#}`.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the library reports. Messages are lower-case, carry the path or value that failed, and say
/// what was expected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on a named path.
    #[error("{action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file that does not parse or does not match its schema.
    #[error("cannot parse `{path}`: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Stimuli(#[from] crate::stimuli::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Model(#[from] crate::model::Error),
    #[error(transparent)]
    Manifold(#[from] crate::manifold::Error),
    #[error(transparent)]
    Steer(#[from] crate::steer::Error),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Anything else, with a sentence that says what went wrong.
    #[error("{0}")]
    Msg(String),
}

impl Error {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { action, path: path.into(), source }
    }
}

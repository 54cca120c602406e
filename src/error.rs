//! The crate-level error, for library users who want one type: it wraps each module's own error. No module
//! of the library uses it (each returns its own `Result`), so this file depends on the modules and none on
//! it; `tests/it/module_graph.rs` checks that the module graph stays free of cycles.

/// Result alias for callers that mix stages.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any failure of the library, by the module that reported it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Fs(#[from] crate::fsx::Error),
    #[error(transparent)]
    Stimuli(#[from] crate::stimuli::Error),
    #[error(transparent)]
    Model(#[from] crate::model::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Extract(#[from] crate::extract::Error),
    #[error(transparent)]
    Manifold(#[from] crate::manifold::Error),
    #[error(transparent)]
    Steer(#[from] crate::steer::Error),
    #[error(transparent)]
    Report(#[from] crate::report::Error),
}

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
    /// An I/O error on a named path. The OS reason is the source, printed after it in the error chain.
    #[error("{action} `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Out of space while writing: the disk is full, or a quota or file-size limit was reached.
    #[error(
        "{action} `{path}`: out of space (disk full, or a quota or file-size limit); free space or write \
         elsewhere, then re-run the same command"
    )]
    NoSpace {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file that does not parse or does not match its schema.
    #[error("cannot parse `{path}`")]
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
    /// An I/O error on `path`; out-of-space errors (ENOSPC, EDQUOT, EFBIG) become [`Error::NoSpace`], which
    /// says what to do about them.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        const EFBIG: i32 = 27;
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        match source.raw_os_error() {
            Some(EFBIG | ENOSPC | EDQUOT) => Error::NoSpace { action, path: path.into(), source },
            _ => Error::Io { action, path: path.into(), source },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(e: &(dyn std::error::Error + 'static)) -> String {
        let mut parts = vec![e.to_string()];
        let mut cur = e.source();
        while let Some(c) = cur {
            parts.push(c.to_string());
            cur = c.source();
        }
        parts.join(": ")
    }

    #[test]
    fn io_errors_name_the_path_once_and_the_reason_once() {
        let e = Error::io("cannot read", "/x/y", std::io::Error::from_raw_os_error(2));
        let text = chain(&e);
        assert!(text.starts_with("cannot read `/x/y`: "), "{text}");
        assert_eq!(text.matches("os error 2").count(), 1, "{text}");
    }

    #[test]
    fn out_of_space_says_what_to_do() {
        for code in [27, 28, 122] {
            let e = Error::io("cannot write", "/x/y", std::io::Error::from_raw_os_error(code));
            assert!(matches!(e, Error::NoSpace { .. }), "{code}");
            let text = chain(&e);
            assert!(text.contains("out of space") && text.contains("re-run the same command"), "{text}");
        }
    }
}

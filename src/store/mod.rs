//! The activation store: per-layer hidden states `[n_samples, d_model]` (or `[n_samples, pos, d_model]`)
//! with their labels, on disk as plain safetensors files plus a `manifest.json`.
//!
//! ```text
//! <store>/manifest.json              written last: its presence means the store is complete
//! <store>/layer_000.safetensors      tensor `acts`, f32, one file per layer (read one layer = map one file)
//! <store>/.partial/chunk_00000.*     work in progress (resume), removed by `finish`
//! <store>/shards/shard-0003-of-0008/ a complete store holding one slice of the samples, for `merge`
//! ```
//!
//! Every file is written to a temporary name and renamed; a re-run with the same inputs skips finished
//! chunks, and merged shards are byte-identical to a single run.

pub mod export;
mod format;
pub mod manifest;
mod merge;
mod reader;
mod writer;

use std::ops::Range;
use std::path::PathBuf;

pub use format::{serialize_f32, serialize_raw, F32Tensor, MappedFile, RawTensor};
pub use manifest::{layer_file_name, LayerEntry, Manifest, Provenance, SampleEntry, SampleTokens, ShardInfo};
pub use merge::{find_shards, merge};
pub use reader::ActivationStore;
pub use writer::{stack_rows, Chunk, StoreSpec, StoreWriter};

/// Name of the tensor inside every layer file.
pub const ACTS: &str = "acts";

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the activation store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("`{path}` is not a finished activation store (no manifest.json); if a run was interrupted, re-run the same command to resume it")]
    Unfinished { path: PathBuf },
    #[error("invalid manifest: {msg}")]
    Manifest { msg: String },
    #[error("store has no layer {index}; it holds layers {available}")]
    NoLayer { index: usize, available: String },
    #[error("`{path}` is corrupt: {msg}; delete it and re-run the command that wrote it")]
    Corrupt { path: PathBuf, msg: String },
    #[error("`{path}` failed its checksum (expected sha256 {expected}, got {got}); the file was changed or truncated after it was written: re-run the command that wrote it")]
    Checksum { path: PathBuf, expected: String, got: String },
    #[error("non-finite value ({value}) in layer {layer} ({hook}) for sample `{sample}`; {hint}")]
    NonFinite { layer: usize, hook: String, sample: String, value: f32, hint: String },
    #[error("{what}: expected {expected}, got {got}")]
    Mismatch { what: String, expected: String, got: String },
    #[error("cannot merge: {msg}")]
    Merge { msg: String },
    #[error(
        "`{path}` already holds a finished store made from different inputs ({msg}); choose another --out or delete it"
    )]
    Conflict { path: PathBuf, msg: String },
    #[error("invalid shard `{spec}`: expected `i/n` with 0 <= i < n, e.g. `0/4`")]
    ShardSpec { spec: String },
    #[error(transparent)]
    Fs(#[from] crate::fsx::Error),
    #[error(transparent)]
    Stimuli(#[from] crate::stimuli::Error),
    /// A store export that cannot be written in the asked format.
    #[error("cannot export: {msg}")]
    Export { msg: String },
}

/// What to say about NaN/Inf activations of a run that computed in `dtype` (the provenance setting): a
/// half-precision run may have overflowed, an f32 run has broken weights or inputs.
pub(crate) fn non_finite_hint(dtype: Option<&str>) -> String {
    match dtype {
        Some("f32") => "the model run is numerically broken in f32 (check the checkpoint's weights for NaN/Inf)".into(),
        Some(_) => "the model run is numerically broken (try --dtype f32)".into(),
        None => "the stored activations are numerically broken; re-extract them".into(),
    }
}

/// The contiguous slice of `total` samples that shard `index` of `count` processes. Shards are contiguous
/// blocks so that concatenating them in index order gives the unsharded order.
pub fn shard_range(total: usize, index: usize, count: usize) -> Range<usize> {
    assert!(count > 0 && index < count, "shard {index}/{count}");
    (total * index / count)..(total * (index + 1) / count)
}

/// Parses `i/n`.
pub fn parse_shard(spec: &str) -> Result<(usize, usize), Error> {
    let bad = || Error::ShardSpec { spec: spec.to_string() };
    let (i, n) = spec.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// The directory a shard writes into, inside the final store directory.
pub fn shard_dir(store: &std::path::Path, index: usize, count: usize) -> PathBuf {
    store.join("shards").join(format!("shard-{index:04}-of-{count:04}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_hint_suggests_f32_only_to_runs_that_were_not_f32() {
        assert!(!non_finite_hint(Some("f32")).contains("--dtype f32"));
        assert!(non_finite_hint(Some("bf16")).contains("try --dtype f32"));
        assert!(!non_finite_hint(None).contains("--dtype"));
    }

    #[test]
    fn shards_tile_the_samples() {
        for total in [0, 1, 7, 60, 361] {
            for count in 1..9 {
                let mut next = 0;
                for i in 0..count {
                    let r = shard_range(total, i, count);
                    assert_eq!(r.start, next);
                    next = r.end;
                }
                assert_eq!(next, total);
            }
        }
        assert_eq!(parse_shard("2/4").unwrap(), (2, 4));
        assert!(parse_shard("4/4").is_err());
        assert!(parse_shard("x").is_err());
        assert!(parse_shard("1/0").is_err());
    }
}

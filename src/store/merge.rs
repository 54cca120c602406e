//! Merging shard stores into one. Shards are validated against each other first (same inputs, every shard
//! present once, no sample twice), and nothing is written unless all of them fit.

use std::path::{Path, PathBuf};

use super::manifest::{Manifest, SampleEntry, ShardInfo};
use super::reader::ActivationStore;
use super::writer::{write_layer, write_manifest};
use super::Error;

/// Shard directories under `<store>/shards/`, sorted by name (which sorts by shard index).
pub fn find_shards(store: &Path) -> crate::store::Result<Vec<PathBuf>> {
    let dir = store.join("shards");
    let entries = std::fs::read_dir(&dir).map_err(|e| crate::fsx::Error::io("cannot list shards in", &dir, e))?;
    let mut shards: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("shard-")))
        .collect();
    shards.sort();
    Ok(shards)
}

/// Merges finished shard stores into a store at `out`, whose files are byte-identical to those of a single
/// unsharded run with the same inputs.
pub fn merge(shards: &[PathBuf], out: &Path) -> crate::store::Result<ActivationStore> {
    let stores = open_shards(shards)?;
    let first = stores[0].manifest().clone();
    let info0 = check_shards_fit(&stores, &first)?;
    let samples = merged_samples(&stores, info0)?;
    let _lock = crate::fsx::DirLock::acquire(out, "merge")?;
    if let Some(done) = existing_merge(out, &first, &samples)? {
        return Ok(done);
    }
    crate::fsx::remove_stale_temps(out)?;
    let mut layers = Vec::with_capacity(first.layers.len());
    for entry in &first.layers {
        let mut data = Vec::new();
        for s in &stores {
            data.extend(s.layer(entry.index)?.iter().copied());
        }
        let mut shape = entry.shape.clone();
        shape[0] = samples.len();
        let mut merged = write_layer(out, entry.index, &entry.hook, &shape, &data)?;
        merged.module = entry.module.clone();
        layers.push(merged);
    }
    // Every shard of a `tokens` store records its samples' layouts; the merge keeps them in sample order.
    let tokens: Option<Vec<_>> =
        stores.iter().map(|s| s.manifest().tokens.clone()).collect::<Option<Vec<_>>>().map(|t| t.concat());
    write_manifest(out, &first.provenance, &first.layer_convention, layers, samples, None, tokens)?;
    ActivationStore::open(out)
}

/// Opens every shard store, sorted by shard index; each must be a finished shard.
fn open_shards(shards: &[PathBuf]) -> crate::store::Result<Vec<ActivationStore>> {
    if shards.is_empty() {
        return Err(Error::Merge { msg: "no shard stores given".into() });
    }
    let mut stores = Vec::with_capacity(shards.len());
    for dir in shards {
        let store = ActivationStore::open(dir).map_err(|e| Error::Merge {
            msg: format!("shard `{}` is not usable ({e}); re-run that shard", dir.display()),
        })?;
        if store.manifest().shard.is_none() {
            return Err(Error::Merge {
                msg: format!("`{}` is not a shard (its manifest has no shard info)", dir.display()),
            });
        }
        stores.push(store);
    }
    stores.sort_by_key(|s| s.manifest().shard.map(|i| i.index));
    Ok(stores)
}

/// The shards were made from the same inputs, belong to one split, and each index is there exactly once;
/// returns the first shard's split.
fn check_shards_fit(stores: &[ActivationStore], first: &Manifest) -> crate::store::Result<ShardInfo> {
    let info0 = first.shard.expect("checked");
    let key = first.compatibility_key();
    for s in &stores[1..] {
        let m = s.manifest();
        if m.compatibility_key() != key {
            return Err(Error::Merge {
                msg: format!(
                    "shard `{}` was made with different model, stimuli, settings or layers than `{}`",
                    s.dir().display(),
                    stores[0].dir().display()
                ),
            });
        }
        let info = m.shard.expect("checked");
        if info.count != info0.count || info.total_samples != info0.total_samples {
            return Err(Error::Merge {
                msg: format!(
                    "shard `{}` belongs to a split into {} shards, others to {}",
                    s.dir().display(),
                    info.count,
                    info0.count
                ),
            });
        }
    }
    let indices: Vec<usize> = stores.iter().map(|s| s.manifest().shard.expect("checked").index).collect();
    for w in indices.windows(2) {
        if w[0] == w[1] {
            return Err(Error::Merge { msg: format!("shard {} is given twice", w[0]) });
        }
    }
    let missing: Vec<usize> = (0..info0.count).filter(|i| !indices.contains(i)).collect();
    if !missing.is_empty() {
        return Err(Error::Merge { msg: format!("shards {missing:?} of {} are missing; run them first", info0.count) });
    }
    Ok(info0)
}

/// The samples of all shards in order; each shard must start where the one before ended, and no sample may be
/// in two shards.
fn merged_samples(stores: &[ActivationStore], info0: ShardInfo) -> crate::store::Result<Vec<SampleEntry>> {
    let mut samples = Vec::with_capacity(info0.total_samples);
    for s in stores {
        let info = s.manifest().shard.expect("checked");
        if info.offset != samples.len() {
            return Err(Error::Merge {
                msg: format!("shard {} starts at sample {}, expected {}", info.index, info.offset, samples.len()),
            });
        }
        samples.extend(s.manifest().samples.iter().cloned());
    }
    if samples.len() != info0.total_samples {
        return Err(Error::Merge {
            msg: format!("shards hold {} samples, the set has {}", samples.len(), info0.total_samples),
        });
    }
    let mut ids = std::collections::BTreeSet::new();
    if let Some(dup) = samples.iter().find(|s| !ids.insert(&s.id)) {
        return Err(Error::Merge { msg: format!("sample `{}` is in more than one shard", dup.id) });
    }
    Ok(samples)
}

/// A finished store already in `out`: the same merge done before (returned as it is, nothing rewritten), or a
/// different store, which a merge must not overwrite.
fn existing_merge(
    out: &Path,
    first: &Manifest,
    samples: &[SampleEntry],
) -> crate::store::Result<Option<ActivationStore>> {
    if !out.join("manifest.json").exists() {
        return Ok(None);
    }
    let conflict = |msg: String| Error::Conflict { path: out.to_path_buf(), msg };
    let existing =
        ActivationStore::open(out).map_err(|e| conflict(format!("its manifest does not read as a store: {e}")))?;
    let m = existing.manifest();
    let same = m.provenance == first.provenance
        && m.layer_convention == first.layer_convention
        && m.samples == samples
        && m.shard.is_none()
        && m.layers.iter().map(|l| (l.index, &l.hook)).eq(first.layers.iter().map(|l| (l.index, &l.hook)));
    if !same {
        return Err(conflict(format!(
            "made from `{}` on `{}`, the shards from `{}` on `{}`",
            m.provenance.model_id, m.provenance.stimuli_name, first.provenance.model_id, first.provenance.stimuli_name
        )));
    }
    // A layer that fails verification is rewritten by the merge rather than trusted.
    Ok(existing.verify().is_ok().then_some(existing))
}

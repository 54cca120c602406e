//! What a steering run checks before it steers: directions and probes come from an activation store, so the
//! stimulus set, the model and the steered layers must be the ones the store was made from. Each check is one
//! sentence naming both sides and what to pass instead.

use std::collections::HashMap;
use std::path::Path;

use super::Error;
use crate::extract::SampleInput;
use crate::store::ActivationStore;

/// At most this many hex digits of a hash in a message.
fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// The stimulus set (`name`, and `sha256` of its `stimuli.json`, which pins every PNG, or of its text prompt
/// file) must be the very set the store was extracted from: its hash is the store's `stimuli_sha256` (`huescan
/// extract` records it), so another set with matching ids is refused. `shown` is the set's path as given.
pub fn check_stimuli(store: &ActivationStore, name: &str, sha256: &str, shown: &Path) -> Result<(), Error> {
    let p = &store.manifest().provenance;
    if name != p.stimuli_name || sha256 != p.stimuli_sha256 {
        return Err(Error::Msg(format!(
            "--stimuli `{}` (set `{name}`, sha256 {}) is not the set the store was extracted from (set `{}`, sha256 \
             {}); pass that stimulus set",
            shown.display(),
            short(sha256),
            p.stimuli_name,
            short(&p.stimuli_sha256)
        )));
    }
    Ok(())
}

/// The stimulus of every store row, in store order, found by sample id in `samples` (the set at `shown`).
pub fn store_rows<'a>(
    store: &ActivationStore,
    samples: &'a [SampleInput],
    shown: &Path,
) -> Result<Vec<&'a SampleInput>, Error> {
    let by_id: HashMap<&str, &SampleInput> = samples.iter().map(|s| (s.id.as_str(), s)).collect();
    store
        .sample_ids()
        .iter()
        .map(|id| {
            by_id.get(id.as_str()).copied().ok_or_else(|| {
                Error::Msg(format!(
                    "store sample `{id}` is not in the stimulus set `{}`; pass the set the store was extracted from",
                    shown.display()
                ))
            })
        })
        .collect()
}

/// The model (`id`, and the sha256 of its config or weights where known) must be the checkpoint the store was
/// extracted from.
pub fn check_model(store: &ActivationStore, id: &str, config_sha256: Option<&str>) -> Result<(), Error> {
    let p = &store.manifest().provenance;
    if p.model_id != id {
        return Err(Error::Msg(format!(
            "the store was extracted from `{}`, but --model loads `{id}`; steer the model the store came from",
            p.model_id
        )));
    }
    if let (Some(a), Some(b)) = (p.model_config_sha256.as_deref(), config_sha256) {
        if a != b {
            return Err(Error::Msg(format!(
                "`{id}` is not the checkpoint the store was extracted from (config/weights sha256 {} there, {} \
                 here); steer the model the store came from",
                short(a),
                short(b)
            )));
        }
    }
    Ok(())
}

/// Every steered layer must be stored: its directions come from the stored activations of that layer. `shown`
/// is the store's path as given.
pub fn check_layers_stored(store: &ActivationStore, layers: &[usize], shown: &Path) -> Result<(), Error> {
    let stored = store.layer_indices();
    if let Some(l) = layers.iter().find(|l| !stored.contains(l)) {
        return Err(Error::Msg(format!(
            "steering layer {l} is not in the store `{}` (it holds {stored:?}); directions come from the stored \
             activations of the steered layer",
            shown.display()
        )));
    }
    Ok(())
}

/// The layers `--layer all` steers: every point the store holds that the model has (`n_points` hook points).
pub fn stored_points(store: &ActivationStore, n_points: usize) -> Vec<usize> {
    store.layer_indices().into_iter().filter(|&i| i < n_points).collect()
}

/// Images per steering forward pass when none is asked for: 8 on CPU, 32 on GPUs.
pub fn default_batch_size(cpu: bool) -> usize {
    if cpu {
        8
    } else {
        32
    }
}

//! Doing only the work the stored outputs need (issue 17): an image-mean extraction cuts each prompt after its
//! image and runs the prompt prefix the samples share once per run. Both are exact up to float summation order
//! because attention is causal; tests/it/qwen_parity.rs compares them with the full forward.

use candle_core::Tensor;

use super::{KvCache, Layout, Qwen25VlModel, Sample};
use crate::model::{Component, Error, HookSet, Intervention, Pooling, Positions};

/// The keys and values of one prompt prefix run alone, and what they depend on besides the weights.
#[derive(Debug)]
pub(super) struct PrefixKv {
    ids: Vec<u32>,
    blocks: Option<usize>,
    cache: KvCache,
}

impl Qwen25VlModel {
    /// The batch [`Self::forward_samples`] runs instead of `batch`: every prompt cut after its last image token,
    /// when nothing stored or changed needs a later token: `stop_early` (no logits), `image-mean` pooling, and
    /// interventions only at vision points or image tokens (`last`, `all` or indices would address other
    /// positions in a shorter prompt). `None` when the full prompts are needed, or a sample has no image (its
    /// error then comes from the full forward).
    pub fn cut_after_image(&self, batch: &[Sample], hooks: &HookSet, pooling: Pooling) -> Option<Vec<Sample>> {
        let image_only =
            |iv: &Intervention| iv.point.component() == Component::Vision || iv.positions == Positions::ImageTokens;
        if !(hooks.stop_early && pooling == Pooling::ImageMean && hooks.interventions.iter().all(image_only)) {
            return None;
        }
        let image_id = self.cfg.image_token_id;
        batch
            .iter()
            .map(|s| {
                let end = s.input_ids.iter().rposition(|&id| id == image_id)? + 1;
                Some(Sample { input_ids: s.input_ids[..end].to_vec(), ..s.clone() })
            })
            .collect()
    }

    /// How many leading tokens every prompt of a cut batch shares before its first image token (the system and
    /// user turn up to `<|vision_start|>`), when reusing their keys and values is sound: prompts of one length
    /// (no padding, so the prefix has the same positions everywhere). `None` otherwise. A batch of one takes it
    /// too: the prefix then always runs as its own batch of one, so the stored numbers do not depend on the
    /// batch size (byte-identical stores at `--batch-size 1` and 8).
    pub fn shared_prefix(&self, cut: &[Sample]) -> Option<usize> {
        let first = cut.first()?;
        if cut.iter().any(|s| s.input_ids.len() != first.input_ids.len()) {
            return None;
        }
        let image_id = self.cfg.image_token_id;
        let n = (0..first.input_ids.len())
            .take_while(|&j| first.input_ids[j] != image_id && cut.iter().all(|s| s.input_ids[j] == first.input_ids[j]))
            .count();
        (n > 0).then_some(n)
    }

    /// The keys and values of the prompt prefix `ids` through the first `blocks` blocks (all when `None`), run
    /// as a batch of one with no hooks, or the copy kept from the last call with the same arguments.
    ///
    /// The prefix holds no image token, so no capture is pooled there and no intervention of a cut batch
    /// (vision points, image tokens) changes it: one run serves every batch of an extraction. At batch 1 that
    /// takes a prefill of the ~15 prefix tokens, which streams every decoder weight from memory once more, out
    /// of each image's forward. The kept copy is the very tensors the first run made, so the stored numbers
    /// do not depend on the batch or on the order of the batches.
    pub(super) fn prefix_cache(&self, ids: &[u32], blocks: Option<usize>) -> Result<KvCache, Error> {
        let mut kept = self.prefix_kv.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = kept.as_ref().filter(|p| p.ids == ids && p.blocks == blocks) {
            return Ok(p.cache.clone());
        }
        let mut cache = KvCache::new(self.n_layers());
        let prefix = self.text_sample(ids);
        let quiet = HookSet::default();
        self.prefill(std::slice::from_ref(&prefix), &quiet, Some(&mut cache), blocks, 0, &mut |_, _, _| Ok(()))?;
        *kept = Some(PrefixKv { ids: ids.to_vec(), blocks, cache: cache.clone() });
        Ok(cache)
    }
}

/// Drops the first `past` positions (already in the KV cache) of the `(batch, seq, _)` tensors and shifts the
/// layout to count from there; every prompt must be unpadded and have its image after `past`.
pub(super) fn skip_cached(layout: &mut Layout, past: usize, ts: [Tensor; 3]) -> Result<[Tensor; 3], Error> {
    if past == 0 {
        return Ok(ts);
    }
    let rest = layout.seq.checked_sub(past).filter(|&r| r > 0);
    let sound = layout.pad.iter().all(|&p| p == 0) && layout.image_pos.iter().flatten().all(|&i| i >= past);
    let Some(rest) = rest.filter(|_| sound) else {
        return Err(Error::Msg(format!("cannot reuse a {past}-token prefix of this batch (a bug in huescan)")));
    };
    layout.seq = rest;
    for pos in &mut layout.image_pos {
        pos.iter_mut().for_each(|i| *i -= past);
    }
    let [a, b, c] = ts;
    let tail = |t: Tensor| t.narrow(1, past, rest)?.contiguous();
    Ok([tail(a)?, tail(b)?, tail(c)?])
}

//! Running a model over a stimulus set into the activation store: batches, shards, resume.
//!
//! The work is cut into fixed chunks of [`CHUNK_SAMPLES`] samples (the resume unit, independent of the batch
//! size, so changing `--batch-size` keeps finished work), each chunk into batches of `batch_size` images. A
//! shard (`--shard i/n`) is a contiguous block of the sample list and writes a complete store of its own under
//! `<out>/shards/`, which `huescan merge` joins.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::Tensor;
use ndarray::{ArrayD, IxDyn};

use crate::model::{HookPoint, HookSet, Input, Model, Pooling, TextInput};
use crate::store::{self, ActivationStore, Provenance, SampleEntry, ShardInfo, StoreSpec, StoreWriter};

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an extraction could not run or finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Fs(#[from] crate::fsx::Error),
    #[error(transparent)]
    Model(#[from] crate::model::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A plan or capture that cannot be stored, with a sentence that says what was expected.
    #[error("{0}")]
    Msg(String),
}

/// Samples per resumable chunk.
pub const CHUNK_SAMPLES: usize = 32;

/// One stimulus to run.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleInput {
    pub id: String,
    pub hue_deg: f64,
    /// The image file; unused (empty) for a text prompt.
    pub image: PathBuf,
    /// A text-only prompt (a text control asked without an image) instead of the image.
    pub text: Option<TextInput>,
}

/// Everything `extract` needs besides the model.
#[derive(Debug, Clone)]
pub struct ExtractPlan {
    /// The whole set, in order (a shard takes its slice itself).
    pub samples: Vec<SampleInput>,
    /// Layer indices (positions in `Model::all_hook_points`) to store.
    pub layers: Vec<usize>,
    pub pooling: Pooling,
    /// Images per forward pass; with `adaptive`, the starting size, halved whenever the device runs out of
    /// memory (down to 1) and kept at the size that worked.
    pub batch_size: usize,
    pub adaptive: bool,
    /// `(index, count)`.
    pub shard: Option<(usize, usize)>,
    pub provenance: Provenance,
    /// The store directory (a shard writes into `<out>/shards/shard-i-of-n`).
    pub out: PathBuf,
}

/// What happened.
#[derive(Debug)]
pub struct ExtractOutcome {
    pub store: ActivationStore,
    /// Samples computed in this run (0 when everything was already done).
    pub computed: usize,
    /// Samples skipped because an earlier run finished them.
    pub resumed: usize,
}

/// Runs `model` over the plan's samples (or its shard of them) and writes the store, resuming earlier work.
/// `progress(done, total)` is called after every batch.
pub fn extract(model: &dyn Model, plan: &ExtractPlan, progress: &dyn Fn(usize, usize)) -> Result<ExtractOutcome> {
    if plan.samples.is_empty() {
        return Err(Error::Msg("the stimulus set is empty".into()));
    }
    if plan.batch_size == 0 {
        return Err(Error::Msg("--batch-size must be at least 1".into()));
    }
    let layers = requested_points(model, &plan.layers)?;
    let (range, shard, dir) = match plan.shard {
        Some((i, n)) => {
            let r = store::shard_range(plan.samples.len(), i, n);
            let info = ShardInfo { index: i, count: n, total_samples: plan.samples.len(), offset: r.start };
            (r, Some(info), store::shard_dir(&plan.out, i, n))
        }
        None => (0..plan.samples.len(), None, plan.out.clone()),
    };
    let inputs = &plan.samples[range];
    let spec = StoreSpec {
        provenance: plan.provenance.clone(),
        layer_convention: model.layer_convention(),
        layers: layers.iter().map(|(i, p)| (*i, p.to_string())).collect(),
        samples: inputs.iter().map(|s| SampleEntry { id: s.id.clone(), hue_deg: s.hue_deg }).collect(),
        shard,
    };
    let modules = layers.iter().filter_map(|(i, p)| Some((*i, model.module_path(p)?))).collect();
    let mut writer = StoreWriter::create(&dir, spec, CHUNK_SAMPLES)?.with_modules(modules);
    if plan.pooling == Pooling::Tokens && inputs.iter().any(|s| s.text.is_some()) {
        check_one_token_count(model, inputs)?;
    }
    let pending = writer.pending_chunks();
    let todo: usize = pending.iter().map(|c| c.range.len()).sum();
    let resumed = inputs.len() - todo;
    // The store holds hidden states only: blocks past the last requested layer and the LM head are skipped.
    let hooks = HookSet { stop_early: true, ..HookSet::capture(layers.iter().map(|(_, p)| p.clone())) };
    let mut done = 0;
    let mut batch_size = plan.batch_size;
    progress(0, todo);
    for chunk in pending {
        let batches = Batches { model, plan, inputs, layers: &layers, hooks: &hooks, todo, progress };
        let acts = batches.run_chunk(&chunk, &mut batch_size, &mut done)?;
        writer.write_chunk(&chunk, &acts)?;
    }
    if plan.pooling == Pooling::Tokens && !writer.is_complete() {
        if let Some(tokens) = token_layouts(model, inputs)? {
            writer.set_tokens(tokens);
        }
    }
    let store = writer.finish()?;
    Ok(ExtractOutcome { store, computed: todo, resumed })
}

/// Every sample's prompt layout, for a `tokens` store (recomputed from the images, so a resumed run has them
/// for the chunks an earlier run did); `None` for models without a token sequence.
fn token_layouts(model: &dyn Model, inputs: &[SampleInput]) -> Result<Option<Vec<store::SampleTokens>>> {
    let mut out = Vec::with_capacity(inputs.len());
    for s in inputs {
        let Some(t) = model.input_token_layout(&load_input(s)?)? else { return Ok(None) };
        out.push(store::SampleTokens {
            ids: t.ids,
            strings: t.strings,
            image_mask: t.image_mask,
            mrope_positions: t.mrope_positions,
        });
    }
    Ok(Some(out))
}

/// The requested store layers as `(index, point)`, each index checked against the model's points.
fn requested_points(model: &dyn Model, indices: &[usize]) -> Result<Vec<(usize, HookPoint)>> {
    let points = model.all_hook_points();
    let mut layers = Vec::with_capacity(indices.len());
    for &index in indices {
        let point = points.get(index).ok_or_else(|| {
            Error::Msg(format!(
                "layer {index} does not exist: `{}` has layers 0..={} ({})",
                model.id(),
                points.len().saturating_sub(1),
                crate::model::summarize_points(&points)
            ))
        })?;
        layers.push((index, point.clone()));
    }
    Ok(layers)
}

/// What every batch of a run shares.
struct Batches<'a> {
    model: &'a dyn Model,
    plan: &'a ExtractPlan,
    inputs: &'a [SampleInput],
    layers: &'a [(usize, HookPoint)],
    hooks: &'a HookSet,
    todo: usize,
    progress: &'a dyn Fn(usize, usize),
}

impl Batches<'_> {
    /// Runs one resumable chunk in batches of `batch_size` (halved on out-of-memory when the plan allows it) and
    /// returns its activations per layer `[chunk samples, ...]`; `done` counts the samples computed so far.
    fn run_chunk(
        &self,
        chunk: &store::Chunk,
        batch_size: &mut usize,
        done: &mut usize,
    ) -> Result<BTreeMap<usize, ArrayD<f32>>> {
        let Batches { model, plan, inputs, layers, hooks, todo, progress } = *self;
        let mut per_layer: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
        let mut sample_shape: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut next = chunk.range.start;
        while next < chunk.range.end {
            let batch = &inputs[next..(next + *batch_size).min(chunk.range.end)];
            let started = std::time::Instant::now();
            let images = batch.iter().map(load_input).collect::<Result<Vec<_>>>()?;
            let captures = match model.forward_inputs(&images, hooks, plan.pooling) {
                Ok(c) => c,
                Err(e) if plan.adaptive && *batch_size > 1 && is_out_of_memory(&e) => {
                    *batch_size /= 2;
                    tracing::warn!(
                        batch_size = *batch_size,
                        "the device ran out of memory; retrying with a smaller batch"
                    );
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            next += batch.len();
            for (index, point) in layers {
                let t = captured(&captures.layers, point, images.len())?;
                sample_shape.insert(*index, t.dims()[1..].to_vec());
                per_layer.entry(*index).or_default().extend(t.flatten_all()?.to_vec1::<f32>()?);
            }
            *done += batch.len();
            // Read by scripts/bench/extract_job.py (`-v` or RUST_LOG=huescan::extract=debug): the time per batch
            // without start-up, model load and store writes.
            tracing::debug!(images = batch.len(), seconds = started.elapsed().as_secs_f64(), "batch done");
            progress(*done, todo);
        }
        per_layer
            .into_iter()
            .map(|(index, data)| {
                let mut shape = vec![chunk.range.len()];
                shape.extend(&sample_shape[&index]);
                let a = ArrayD::from_shape_vec(IxDyn(&shape), data)
                    .map_err(|e| Error::Msg(format!("layer {index}: ragged activations across a chunk ({e})")))?;
                Ok((index, a))
            })
            .collect::<Result<BTreeMap<_, _>>>()
    }
}

/// A `tokens` store keeps one `[positions, width]` array per point, so text prompts (whose lengths differ,
/// unlike images of one size) must all have one token count; refused before any work with the range found.
fn check_one_token_count(model: &dyn Model, inputs: &[SampleInput]) -> Result<()> {
    let mut lens = Vec::with_capacity(inputs.len());
    for s in inputs {
        if let Some(t) = model.input_token_layout(&load_input(s)?)? {
            lens.push((t.ids.len(), s.id.as_str()));
        }
    }
    let (Some(min), Some(max)) = (lens.iter().min(), lens.iter().max()) else { return Ok(()) };
    if min.0 != max.0 {
        return Err(Error::Msg(format!(
            "--pool tokens stores one [positions, width] array per point, so every prompt needs the same token \
             count, but `{}` has {} tokens and `{}` has {}; pool text prompts of different lengths with `last`",
            min.1, min.0, max.1, max.0
        )));
    }
    Ok(())
}

fn captured<'a>(layers: &'a BTreeMap<HookPoint, Tensor>, point: &HookPoint, batch: usize) -> Result<&'a Tensor> {
    let t = layers
        .get(point)
        .ok_or_else(|| Error::Msg(format!("the model did not capture `{point}` although it was asked to")))?;
    if t.dims().first() != Some(&batch) {
        return Err(Error::Msg(format!("capture `{point}` has shape {:?}, expected {batch} samples first", t.dims())));
    }
    Ok(t)
}

/// Whether an error is the device running out of memory (CUDA, Metal and the CPU allocator say it so).
pub fn is_out_of_memory(e: &(impl std::fmt::Debug + std::fmt::Display)) -> bool {
    let msg = format!("{e:?} {e}").to_ascii_lowercase();
    msg.contains("out of memory") || msg.contains("out_of_memory") || msg.contains("memory allocation")
}

/// A starting batch size for `device_is_cpu`: on the CPU one image per 2 GiB of available memory (MemAvailable,
/// Linux), at most 8 (larger batches do not run faster on a CPU); on GPUs 32, halved on out-of-memory.
pub fn default_batch_size(device_is_cpu: bool) -> usize {
    if !device_is_cpu {
        return 32;
    }
    let available_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kib| kib / (1024 * 1024));
    available_gib.map_or(4, |g| (g / 2).clamp(1, 8) as usize)
}

/// The sample's model input: its text prompt, or its image opened as 8-bit RGB.
pub fn load_input(sample: &SampleInput) -> Result<Input> {
    match &sample.text {
        Some(t) => Ok(Input::Text(t.clone())),
        None => Ok(Input::Image(load_image(sample)?)),
    }
}

/// Opens an image as 8-bit RGB, naming the file in any error.
pub fn load_image(sample: &SampleInput) -> Result<image::RgbImage> {
    let bytes = crate::fsx::read(&sample.image)?;
    let img = image::load_from_memory(&bytes).map_err(|e| {
        Error::Msg(format!("cannot read image `{}` of stimulus `{}`: {e}", sample.image.display(), sample.id))
    })?;
    Ok(img.to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_batch_sizes_are_sane_and_oom_is_recognised() {
        let cpu = default_batch_size(true);
        assert!((1..=8).contains(&cpu), "{cpu}");
        assert_eq!(default_batch_size(false), 32);
        assert!(is_out_of_memory(&Error::Msg("DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into())));
        assert!(!is_out_of_memory(&Error::Msg("shape mismatch".into())));
    }
}

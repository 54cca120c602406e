//! `huescan extract`: run a model over a rendered stimulus set into an activation store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::cli::{existing, Progress};
use crate::env::{self, Env, ProcessEnv};
use crate::extract::{self, ExtractPlan, SampleInput};
use crate::model::autoencoder::{HueRange, TrainConfig};
use crate::model::hub::HubSettings;
use crate::model::load::{self, LoadOptions, LoadedModel};
use crate::model::{device, Component, HookPoint, Model, Pooling, TextInput};
use crate::stimuli::{StimulusManifest, TextPromptSet, MANIFEST_FILE};
use crate::store::{self, Provenance};

/// Where and how a model runs; shared by every command that runs one.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// `cpu`, `cuda`, `cuda:N` or `metal` (GPU backends need the `cuda`/`metal` cargo feature).
    #[arg(long, default_value = crate::settings::DEVICE)]
    pub device: String,
    /// Compute dtype [default: the preset's on GPUs, f32 on CPU].
    #[arg(long, value_enum)]
    pub dtype: Option<device::Dtype>,
    /// Hub revision: branch, tag or commit [default: the preset's, else main].
    #[arg(long)]
    pub revision: Option<String>,
}

impl Default for RuntimeArgs {
    /// The flags' own defaults (what an empty command line gives).
    fn default() -> Self {
        crate::cli::flag_defaults()
    }
}

/// Options shared by every command that loads a model.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// A preset (`qwen2.5-vl-3b`, `qwen2.5-vl-7b`, `qwen-tiny-random`, `colour-autoencoder`), a local
    /// checkpoint directory, or a Hugging Face repo id (`Qwen/Qwen2.5-VL-3B-Instruct`).
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Cap on image pixels after resizing [default: the preset's, else preprocessor_config.json].
    #[arg(long)]
    pub max_pixels: Option<usize>,
    /// The question asked with every image.
    #[arg(long)]
    pub prompt: Option<String>,
    #[command(flatten)]
    pub ae: AutoencoderArgs,
}

/// The colour autoencoder's training options: only commands that can run it list them (`ask` cannot).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Colour autoencoder")]
pub struct AutoencoderArgs {
    /// Colour autoencoder: where its trained weights are cached [default: <out>/autoencoder.safetensors].
    #[arg(long)]
    pub ae_weights: Option<PathBuf>,
    /// Colour autoencoder: training seed.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub ae_seed: u64,
    /// Colour autoencoder: training epochs.
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub ae_epochs: usize,
    /// Colour autoencoder: train on all hues (no held-out teal-blue slice).
    #[arg(long)]
    pub ae_no_hold_out: bool,
}

impl Default for AutoencoderArgs {
    fn default() -> Self {
        let t = TrainConfig::default();
        AutoencoderArgs { ae_weights: None, ae_seed: t.seed, ae_epochs: t.epochs, ae_no_hold_out: false }
    }
}

impl ModelArgs {
    pub fn load(&self, default_weights_dir: &Path) -> anyhow::Result<LoadedModel> {
        let device = device::parse_device(&self.runtime.device)?;
        let dtype = self.runtime.dtype.map(device::Dtype::candle);
        let autoencoder = TrainConfig {
            seed: self.ae.ae_seed,
            epochs: self.ae.ae_epochs,
            held_out: if self.ae.ae_no_hold_out { vec![] } else { vec![HueRange::TEAL_BLUE] },
            ..TrainConfig::default()
        };
        let opts = LoadOptions {
            device,
            dtype,
            revision: self.runtime.revision.clone(),
            max_pixels: self.max_pixels,
            prompt: self.prompt.clone(),
            hub: HubSettings::from_env(&ProcessEnv),
            autoencoder_weights: Some(
                self.ae.ae_weights.clone().unwrap_or_else(|| default_weights_dir.join("autoencoder.safetensors")),
            ),
            autoencoder,
        };
        load::load(&self.model, &opts).with_context(|| format!("loading model `{}`", self.model))
    }
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A rendered stimulus folder (holding stimuli.json), the stimuli.json file, or a text prompt set (a `.toml`
    /// of `[[prompt]]` entries with an id, a hue label and a text, asked without an image; e.g.
    /// stimuli/text/colour-objects.toml).
    #[arg(long)]
    pub stimuli: PathBuf,
    /// The activation store to write (resumed if it holds unfinished work of the same inputs).
    #[arg(long)]
    pub out: PathBuf,
    /// Layers to store: `all` (HF hidden_states indices 0..=L), `residual` (those and every vision block's
    /// output), indices and ranges like `0,4,8-12`, or hook names and globs as in --hooks. The model runs only
    /// up to the deepest one.
    #[arg(long, default_value = crate::settings::LAYERS)]
    pub layers: String,
    /// Hook points to store by name or glob, comma-separated (`visual.blocks.*,blocks.*`,
    /// `blocks.*.hook_resid_post`, `ln_final.hook_out`); see the README's hook table. Replaces the default
    /// `--layers all`; with an explicit --layers both are stored.
    #[arg(long)]
    pub hooks: Option<String>,
    /// Per-sample pooling: image-mean (mean over image tokens), last (last prompt token) or tokens (all)
    /// [default: image-mean; last for a text prompt set, which has no image tokens].
    #[arg(long, value_enum)]
    pub pool: Option<Pooling>,
    /// Images per forward pass [default: from available memory on CPU (at most 8), 32 on GPUs; halved
    /// automatically whenever the device runs out of memory].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Process only shard i of n (a contiguous block) into OUT/shards/; then `huescan merge OUT`.
    /// Defaults to SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT when those are set.
    #[arg(long)]
    pub shard: Option<String>,
}

/// Reads a rendered set: `stimuli.json` (validated, checksums of the PNGs included) and the image paths.
pub fn read_stimuli(path: &Path) -> anyhow::Result<(StimulusManifest, PathBuf, Vec<SampleInput>)> {
    let path = existing(path, "stimulus set")?;
    let dir = if path.is_dir() { path } else { path.parent().map(Path::to_path_buf).unwrap_or_default() };
    if !dir.join(MANIFEST_FILE).exists() {
        anyhow::bail!("`{}` has no {MANIFEST_FILE}; render a set first with `huescan stimuli render`", dir.display());
    }
    let manifest = StimulusManifest::load(&dir)?;
    let samples = manifest
        .stimuli
        .iter()
        .map(|s| SampleInput { id: s.id.clone(), hue_deg: s.hue_deg, image: dir.join(&s.file), text: None })
        .collect();
    Ok((manifest, dir, samples))
}

/// A stimulus set as `extract` and `steer` read it: a rendered image set or a text prompt set.
#[derive(Debug)]
pub struct StimulusSet {
    pub name: String,
    /// SHA-256 of `stimuli.json` (which pins every PNG) or of the text prompt file.
    pub sha256: String,
    /// Image sets: SHA-256 of the spec's TOML.
    pub spec_sha256: Option<String>,
    pub is_text: bool,
    pub samples: Vec<SampleInput>,
}

/// Reads `--stimuli`: a text prompt set when it is a `.toml` file, otherwise a rendered image set.
pub fn read_stimulus_set(path: &Path) -> anyhow::Result<StimulusSet> {
    let path = existing(path, "stimulus set")?;
    if TextPromptSet::is_text_set(&path) {
        let set = TextPromptSet::from_path(&path)?;
        let samples = set
            .prompts
            .iter()
            .map(|p| SampleInput {
                id: p.id.clone(),
                hue_deg: p.hue_deg,
                image: PathBuf::new(),
                text: Some(TextInput { text: p.text.clone(), ids: p.ids.clone() }),
            })
            .collect();
        return Ok(StimulusSet { name: set.name, sha256: set.sha256, spec_sha256: None, is_text: true, samples });
    }
    let (manifest, dir, samples) = read_stimuli(&path)?;
    Ok(StimulusSet {
        name: manifest.spec_name.clone(),
        // stimuli.json records every PNG's hash, so its own hash pins the exact images (photos included).
        sha256: crate::fsx::sha256_file(&dir.join(MANIFEST_FILE))?,
        spec_sha256: Some(manifest.spec_sha256),
        is_text: false,
        samples,
    })
}

/// Refuses what a text prompt set cannot give: image-mean pooling, and vision-tower points (never run).
pub fn check_text_selection(pooling: Pooling, layers: &[usize], model: &dyn Model) -> anyhow::Result<()> {
    if pooling == Pooling::ImageMean {
        anyhow::bail!(
            "--pool image-mean averages over image tokens, and a text prompt set has none; use --pool last (the \
             default for text prompts) or --pool tokens"
        );
    }
    let all = model.all_hook_points();
    if let Some(p) = layers.iter().filter_map(|&i| all.get(i)).find(|p| p.component() == Component::Vision) {
        anyhow::bail!(
            "`{p}` is in the vision tower, which a text prompt never runs; select decoder points for a text prompt \
             set (e.g. --layers all or --hooks 'blocks.*')"
        );
    }
    Ok(())
}

/// `all` or `0,4,8-12`, each index below `n_points` (the model's hook points or the store's layers). Bounds
/// are checked before a range is expanded, so `0-4000000000` is a sentence, not a 32 GB allocation.
pub fn parse_layers(spec: &str, n_points: usize) -> anyhow::Result<Vec<usize>> {
    if spec == "all" {
        return Ok((0..n_points).collect());
    }
    let mut out = Vec::new();
    let in_range = |i: usize| -> anyhow::Result<usize> {
        if i < n_points {
            Ok(i)
        } else {
            anyhow::bail!(
                "--layers `{spec}`: layer {i} does not exist; there are {n_points} (0..={})",
                n_points.saturating_sub(1)
            )
        }
    };
    for part in spec.split(',').map(str::trim) {
        let bad = || anyhow::anyhow!("invalid --layers `{spec}`: expected `all` or indices/ranges like `0,4,8-12`");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                out.extend(in_range(a)?..=in_range(b)?);
            }
            None => out.push(in_range(part.parse().map_err(|_| bad())?)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Layer indices (positions in `Model::all_hook_points`) that a selection names: comma-separated items, each
/// `all` (the HF hidden-state list), `residual` (that list and every vision block's output), an index or range
/// (`0,4,8-12`), or a hook name or glob (`visual.blocks.*`, `blocks.*.hook_mlp_out`). Sorted, no repeats.
pub fn parse_points(spec: &str, model: &dyn Model) -> anyhow::Result<Vec<usize>> {
    let all = model.all_hook_points();
    let n_indexed = model.hook_points().len();
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim) {
        match item {
            "all" => out.extend(0..n_indexed),
            "residual" => {
                out.extend((0..all.len()).filter(|&i| i < n_indexed || matches!(all[i], HookPoint::VisualResidPost(_))))
            }
            _ if item.starts_with(|c: char| c.is_ascii_digit()) => out.extend(parse_layers(item, all.len())?),
            _ => {
                for p in crate::model::select_points(item, &all)? {
                    out.extend(all.iter().position(|q| *q == p));
                }
            }
        }
    }
    if let Some(&bad) = out.iter().find(|&&i| i >= all.len()) {
        anyhow::bail!(
            "layer {bad} does not exist: `{}` has layers 0..={} ({})",
            model.id(),
            all.len().saturating_sub(1),
            crate::model::summarize_points(&all)
        );
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The points `extract` stores: `--hooks` alone, `--layers` alone, or both.
pub fn selected_points(layers: &str, hooks: Option<&str>, model: &dyn Model) -> anyhow::Result<Vec<usize>> {
    let spec = match hooks {
        None => layers.to_string(),
        Some(h) if layers == "all" => h.to_string(),
        Some(h) => format!("{layers},{h}"),
    };
    parse_points(&spec, model)
}

/// A model with raw-id prompts (no tokenizer, e.g. the test fixture) cannot spell a text prompt: a prompt without
/// `ids` becomes the model's fixed ids without the vision block, so such texts are all one input. Said, not hidden.
pub fn warn_if_prompt_text_unused(loaded: &LoadedModel, samples: &[SampleInput], progress: &Progress) {
    let raw_ids = loaded.model.text_output().is_some_and(|t| !t.has_tokenizer());
    if raw_ids && samples.iter().any(|s| s.text.as_ref().is_some_and(|t| t.ids.is_none())) {
        progress.say(format!(
            "warning: `{}` has a raw-id prompt and no tokenizer, so every text prompt runs as the same ids (its \
             prompt without the vision block); the prompt texts are not used (give each prompt `ids` to vary it)",
            loaded.id
        ));
    }
}

/// `--shard`, else the Slurm array variables, else none.
pub fn resolve_shard(flag: Option<&str>, env: &dyn Env) -> anyhow::Result<Option<(usize, usize)>> {
    if let Some(s) = flag {
        return Ok(Some(store::parse_shard(s)?));
    }
    match (env.var(env::SLURM_ARRAY_TASK_ID), env.var(env::SLURM_ARRAY_TASK_COUNT)) {
        (Some(i), Some(n)) => {
            Ok(Some(store::parse_shard(&format!("{i}/{n}")).context("from SLURM_ARRAY_TASK_ID/COUNT")?))
        }
        _ => Ok(None),
    }
}

pub fn run(args: &ExtractArgs, progress: &Progress) -> anyhow::Result<ExitCode> {
    let set = read_stimulus_set(&args.stimuli)?;
    let pooling = args.pool.unwrap_or(if set.is_text { Pooling::Last } else { Pooling::default() });
    let shard = resolve_shard(args.shard.as_deref(), &ProcessEnv)?;
    crate::fsx::create_dir_all(&args.out)?;
    let loaded = args.model.load(&args.out)?;
    let layers = selected_points(&args.layers, args.hooks.as_deref(), loaded.model.as_ref())?;
    if set.is_text {
        check_text_selection(pooling, &layers, loaded.model.as_ref())?;
        warn_if_prompt_text_unused(&loaded, &set.samples, progress);
    }
    let batch_size = args.batch_size.unwrap_or_else(|| extract::default_batch_size(args.model.runtime.device == "cpu"));
    let plan = ExtractPlan {
        samples: set.samples,
        layers,
        pooling,
        batch_size,
        adaptive: args.batch_size.is_none(),
        shard,
        provenance: Provenance {
            model_id: loaded.id.clone(),
            model_revision: loaded.revision.clone(),
            model_config_sha256: loaded.config_sha256.clone(),
            model_files_sha256: loaded.file_hashes.clone(),
            stimuli_name: set.name.clone(),
            stimuli_sha256: set.sha256.clone(),
            pooling: pooling.to_string(),
            settings: {
                let mut s = loaded.settings.clone();
                match &set.spec_sha256 {
                    Some(sha) => s.insert("stimuli_spec_sha256".into(), sha.clone()),
                    None => s.insert("stimuli_kind".into(), "text prompts (no image)".into()),
                };
                s
            },
        },
        out: args.out.clone(),
    };
    let bar = progress.bar(0, "extracting");
    let tick = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let outcome = extract::extract(loaded.model.as_ref(), &plan, &tick).map_err(|e| {
        let oom = extract::is_out_of_memory(&e);
        let err = anyhow::Error::new(e);
        match (oom, plan.adaptive) {
            (true, false) => {
                err.context(format!("the device ran out of memory at --batch-size {batch_size}; lower --batch-size"))
            }
            (true, true) => err.context(
                "the device ran out of memory even one image at a time; lower --max-pixels or use --dtype bf16",
            ),
            _ => err,
        }
    })?;
    bar.finish_and_clear();
    let m = outcome.store.manifest();
    progress.say(format!(
        "{}: {} samples x {} layers (d_model {}) from `{}`; computed {}, resumed {}",
        outcome.store.dir().display(),
        m.samples.len(),
        m.layers.len(),
        m.d_model.map_or("per layer".to_string(), |d| d.to_string()),
        loaded.id,
        outcome.computed,
        outcome.resumed
    ));
    if let Some((i, n)) = shard {
        progress.say(format!("shard {i}/{n} done; when all {n} are, run `huescan merge {}`", args.out.display()));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Two decoder blocks and a two-block vision tower, points only.
    struct Points;

    impl Model for Points {
        fn id(&self) -> &str {
            "points"
        }
        fn hook_points(&self) -> Vec<HookPoint> {
            vec![HookPoint::ResidPre(0), HookPoint::ResidPost(0), HookPoint::LnFinalOut]
        }
        fn extra_hook_points(&self) -> Vec<HookPoint> {
            vec![
                HookPoint::VisualResidPost(0),
                HookPoint::VisualResidPost(1),
                HookPoint::MlpOut(0),
                HookPoint::ResidPost(1),
            ]
        }
        fn width(&self, _: &HookPoint) -> Option<usize> {
            Some(1)
        }
        fn forward(
            &self,
            _: &[image::RgbImage],
            _: &crate::model::HookSet,
            _: Pooling,
        ) -> crate::model::Result<crate::model::Captures> {
            unreachable!("selection never runs the model")
        }
    }

    #[test]
    fn points_select_by_index_keyword_and_glob() {
        let m = Points;
        assert_eq!(parse_points("all", &m).unwrap(), vec![0, 1, 2]);
        assert_eq!(parse_points("residual", &m).unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(parse_points("visual.blocks.*,blocks.*", &m).unwrap(), vec![0, 1, 3, 4, 5, 6]);
        assert_eq!(parse_points("blocks.*.hook_resid_post,6", &m).unwrap(), vec![1, 6]);
        assert_eq!(
            selected_points("all", Some("ln_final.hook_out"), &m).unwrap(),
            vec![2],
            "--hooks replaces the default"
        );
        assert_eq!(selected_points("0", Some("blocks.0.hook_mlp_out"), &m).unwrap(), vec![0, 5], "both: the union");
        let err = parse_points("7", &m).unwrap_err().to_string();
        assert!(err.contains("layer 7 does not exist") && err.contains("0..=6"), "{err}");
        let err = parse_points("visual.merger.*", &m).unwrap_err().to_string();
        assert!(err.contains("matches no hook point"), "{err}");
    }

    #[test]
    fn layer_lists_and_shards_parse() {
        assert_eq!(parse_layers("all", 3).unwrap(), vec![0, 1, 2]);
        assert_eq!(parse_layers("8-10,0,9", 37).unwrap(), vec![0, 8, 9, 10]);
        assert!(parse_layers("3-1", 5).is_err());
        assert!(parse_layers("x", 5).is_err());
        let e = parse_layers("0-4000000000", 5).unwrap_err().to_string();
        assert!(e.contains("layer 4000000000 does not exist") && e.contains("0..=4"), "{e}");
        let slurm: HashMap<&str, &str> = HashMap::from([("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "8")]);
        assert_eq!(resolve_shard(None, &slurm).unwrap(), Some((3, 8)));
        assert_eq!(resolve_shard(Some("1/2"), &slurm).unwrap(), Some((1, 2)));
        assert_eq!(resolve_shard(None, &HashMap::<&str, &str>::new()).unwrap(), None);
        let bad: HashMap<&str, &str> = HashMap::from([("SLURM_ARRAY_TASK_ID", "8"), ("SLURM_ARRAY_TASK_COUNT", "8")]);
        assert!(resolve_shard(None, &bad).is_err());
    }
}

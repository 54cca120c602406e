//! `huescan steer`: steer inside a model at one or more layers with directions built from an activation store,
//! and write the sweep tables, the steering vectors (safetensors, and llama.cpp control vectors with `--gguf`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::extract::{
    check_text_selection, parse_points, read_stimulus_set, warn_if_prompt_text_unused, ModelArgs, StimulusSet,
};
use crate::cli::{existing, flag_defaults, values, Progress};
use crate::extract::load_image;
use crate::model::load::LoadedModel;
use crate::model::Positions;
use crate::settings;
use crate::steer::{
    self, gguf, parse_alphas, parse_pair, ColourWords, DirectionKind, PairSpec, SteeringVector, SweepInput,
    SweepOptions, DEFAULT_COLOUR_WORDS,
};
use crate::store::ActivationStore;

#[derive(Debug, Args)]
pub struct SteerArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The activation store the directions and probes come from (made by `huescan extract` with this model).
    #[arg(long)]
    pub acts: PathBuf,
    /// The stimulus set the store was extracted from (a rendered image set, or a text prompt set `.toml`); the
    /// source-hue samples are steered.
    #[arg(long)]
    pub stimuli: PathBuf,
    /// Steering point(s): an index, a list or ranges like `4,8-10` (store layer indices), hook names or globs
    /// (`visual.blocks.2.hook_resid_post`, `blocks.*.hook_mlp_out`), or `all` (every point the store holds).
    #[arg(long, alias = "hooks")]
    pub layer: String,
    /// Source hue in degrees (with --to); without both, the pairs 240:0, 0:120, 120:240.
    #[arg(long, requires = "to", allow_hyphen_values = true, value_parser = values::finite)]
    pub from: Option<f64>,
    /// Target hue in degrees.
    #[arg(long, requires = "from", allow_hyphen_values = true, value_parser = values::finite)]
    pub to: Option<f64>,
    /// Several pairs instead of --from/--to: `FROM:TO` comma-separated, e.g. `240:0,0:120`.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub pairs: Option<String>,
    /// Token positions steered: image, all (also every generated token), last or indices `i,j` [default: image;
    /// last for a text prompt set, which has no image tokens].
    #[arg(long)]
    pub positions: Option<String>,
    #[command(flatten)]
    pub settings: SteerSettings,
    /// Images per forward pass [default: 8 on CPU, 32 on GPUs].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Also export each (pair, direction) as a llama.cpp control vector (GGUF), where the layers allow it.
    #[arg(long)]
    pub gguf: bool,
    /// Output directory: sweep.csv/json, summary.csv/json, vectors/.
    #[arg(long)]
    pub out: PathBuf,
}

/// How `huescan steer` sweeps: the flags `huescan scan` shares (it overrides only `max_new_tokens`).
#[derive(Debug, Clone, Args)]
pub struct SteerSettings {
    /// Alphas: `start:stop:step` or a list.
    #[arg(long, default_value = settings::ALPHAS_SPEC, allow_hyphen_values = true)]
    pub alphas: String,
    /// Directions: centroid, manifold, random (comma-separated) or all.
    #[arg(long, default_value = "all")]
    pub direction: String,
    /// Vector scaling: none (alpha 1 = source centroid moved onto the target) or unit.
    #[arg(long, default_value = "none")]
    pub normalise: String,
    /// Seed of the random control directions.
    #[arg(long, default_value_t = settings::SEED)]
    pub seed: u64,
    /// Ridge penalty of the SMDS Circular fit behind --direction manifold (the notebook's fits use 1e-4).
    #[arg(long, default_value_t = settings::SMDS_ALPHA, value_parser = values::positive)]
    pub smds_alpha: f64,
    /// How --direction manifold carries the rotation back to the activations: `pattern` (the change the data
    /// go with along the fitted circle, the regression of the activations on its coordinates) or `min-norm`
    /// (the pseudo-inverse of the SMDS map, along its filter rows only), both moving the fitted coordinates
    /// exactly onto the rotated point, or `local-mean` (from the source's kernel-weighted mean of the
    /// activations to the mean at the rotated fitted angle, through the intermediate hues' means).
    #[arg(long, default_value = settings::LIFT)]
    pub lift: String,
    /// A hue within this many degrees of the target counts as reached in the summary.
    #[arg(long, default_value_t = settings::TOLERANCE_DEG, value_parser = values::positive)]
    pub tolerance: f64,
    /// Answer tokens to generate per steered image (models with text output; 0 = none).
    #[arg(long, default_value_t = settings::MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
}

impl Default for SteerSettings {
    /// The flags' own defaults (what an empty command line gives).
    fn default() -> Self {
        flag_defaults()
    }
}

/// One llama.cpp control vector per steered layer (`L{index}_{pair}_{kind}.gguf`): llama.cpp applies every
/// direction in a file at once, and the sweep measured one layer at a time. Layers llama.cpp cannot steer
/// (block 0, non-block points) are left out with a warning, and so is everything when llama.cpp has no
/// architecture for the model.
fn export_gguf(files: &[(String, &SteeringVector)], dir: &std::path::Path, loaded: &LoadedModel) -> anyhow::Result<()> {
    let Some(hint) = loaded.model.text_output().and_then(|t| gguf::llama_cpp_architecture(t.model_type())) else {
        tracing::warn!("no GGUF control vectors written: llama.cpp has no architecture for `{}`", loaded.id);
        return Ok(());
    };
    let mut refused = std::collections::BTreeSet::new();
    let mut positions = std::collections::BTreeSet::new();
    for (stem, v) in files {
        match gguf::block_index(&v.recipe.hook) {
            Ok(_) => {
                crate::fsx::write_atomic(&dir.join(format!("{stem}.gguf")), &gguf::to_bytes(&[*v], hint)?)?;
                positions.insert(v.recipe.positions.clone());
            }
            Err(e) => {
                refused.insert(e.to_string());
            }
        }
    }
    for reason in refused {
        tracing::warn!("left out of the GGUF files: {reason}");
    }
    for p in positions.iter().filter(|p| *p != "all") {
        tracing::warn!(
            "llama.cpp adds a control vector at every token position, but these were measured steering `{p}` \
             positions only (recorded as `{}` in each file); re-run with --positions all for vectors that mean \
             in llama.cpp what the sweep measured",
            gguf::POSITIONS_KEY
        );
    }
    Ok(())
}

/// `centroid,manifold` or `all`.
fn parse_kinds(spec: &str) -> anyhow::Result<Vec<DirectionKind>> {
    if spec == "all" {
        return Ok(DirectionKind::ALL.to_vec());
    }
    let mut kinds = spec.split(',').map(|s| s.trim().parse()).collect::<Result<Vec<DirectionKind>, _>>()?;
    kinds.sort();
    kinds.dedup();
    Ok(kinds)
}

fn pairs(args: &SteerArgs) -> anyhow::Result<Vec<PairSpec>> {
    Ok(match (&args.pairs, args.from, args.to) {
        (Some(p), _, _) => p.split(',').map(|s| parse_pair(s.trim())).collect::<Result<_, _>>()?,
        (None, Some(a), Some(b)) => vec![PairSpec::new(a, b)],
        _ => PairSpec::defaults(),
    })
}

/// The stimulus set must be the very set the store was extracted from: its hash (of `stimuli.json`, which pins
/// every PNG, or of the text prompt file) is the store's `stimuli_sha256` (`huescan extract` records it), so
/// another set with matching ids is refused.
fn check_stimuli_provenance(store: &ActivationStore, set: &StimulusSet, path: &std::path::Path) -> anyhow::Result<()> {
    let p = &store.manifest().provenance;
    if set.name != p.stimuli_name || set.sha256 != p.stimuli_sha256 {
        anyhow::bail!(
            "--stimuli `{}` (set `{}`, sha256 {}) is not the set the store was extracted from (set `{}`, sha256 \
             {}); pass that stimulus set",
            path.display(),
            set.name,
            &set.sha256[..set.sha256.len().min(12)],
            p.stimuli_name,
            &p.stimuli_sha256[..p.stimuli_sha256.len().min(12)]
        );
    }
    Ok(())
}

pub fn run(args: &SteerArgs, progress: &Progress) -> anyhow::Result<ExitCode> {
    let store = ActivationStore::open(&existing(&args.acts, "activation store")?)?;
    let s = &args.settings;
    let n = s.max_new_tokens;
    values::check_cap("--max-new-tokens", n as u64, values::MAX_NEW_TOKENS as u64, &format!("{n} decoder steps"))?;
    let set = read_stimulus_set(&args.stimuli)?;
    check_stimuli_provenance(&store, &set, &args.stimuli)?;
    let _lock = crate::fsx::DirLock::acquire(&args.out, "steer")?;
    let samples = &set.samples;
    let by_id: HashMap<&str, &crate::extract::SampleInput> = samples.iter().map(|s| (s.id.as_str(), s)).collect();
    let rows: Vec<&crate::extract::SampleInput> = store
        .sample_ids()
        .iter()
        .map(|id| {
            by_id.get(id.as_str()).copied().ok_or_else(|| {
                anyhow::anyhow!(
                    "store sample `{id}` is not in the stimulus set `{}`; pass the set the store was extracted from",
                    args.stimuli.display()
                )
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let loaded = args.model.load(&args.acts)?;
    let made_by = &store.manifest().provenance.model_id;
    if *made_by != loaded.id {
        anyhow::bail!(
            "the store was extracted from `{made_by}`, but --model loads `{}`; steer the model the store came from",
            loaded.id
        );
    }
    let stored_config = &store.manifest().provenance.model_config_sha256;
    if let (Some(a), Some(b)) = (stored_config, &loaded.config_sha256) {
        if a != b {
            anyhow::bail!(
                "`{}` is not the checkpoint the store was extracted from (config/weights sha256 {} there, {} \
                 here); steer the model the store came from",
                loaded.id,
                &a[..a.len().min(12)],
                &b[..b.len().min(12)]
            );
        }
    }
    let model = loaded.model.as_ref();
    let default_positions = if set.is_text { "last" } else { "image" };
    let positions: Positions = args.positions.as_deref().unwrap_or(default_positions).parse()?;
    if set.is_text {
        if positions == Positions::ImageTokens {
            anyhow::bail!("--positions image steers image tokens, and a text prompt set has none; use last or all");
        }
        warn_if_prompt_text_unused(&loaded, samples, progress);
    }
    let n_points = model.all_hook_points().len();
    let layers: Vec<usize> = if args.layer == "all" {
        store.layer_indices().into_iter().filter(|&i| i < n_points).collect()
    } else {
        parse_points(&args.layer, model)?
    };
    let stored = store.layer_indices();
    if let Some(l) = layers.iter().find(|l| !stored.contains(l)) {
        anyhow::bail!(
            "steering layer {l} is not in the store `{}` (it holds {stored:?}); directions come from the stored \
             activations of the steered layer",
            args.acts.display()
        );
    }
    if set.is_text {
        let pooling: crate::model::Pooling = store.manifest().provenance.pooling.parse()?;
        check_text_selection(pooling, &layers, model)?;
    }
    let words: Vec<String> = DEFAULT_COLOUR_WORDS.iter().map(|(w, _)| w.to_string()).collect();
    let colour_words = model.token_ids(&words)?.map(|ids| ColourWords::new(words, ids)).transpose()?;
    let opts = SweepOptions {
        layers,
        pairs: pairs(args)?,
        alphas: parse_alphas(&s.alphas)?,
        kinds: parse_kinds(&s.direction)?,
        positions,
        normalisation: s.normalise.parse()?,
        seed: s.seed,
        smds_alpha: s.smds_alpha,
        lift: s.lift.parse()?,
        tolerance_deg: s.tolerance,
        max_new_tokens: s.max_new_tokens,
        batch_size: args.batch_size.unwrap_or(if args.model.runtime.device == "cpu" { 8 } else { 32 }),
        output_rgb: loaded.model.colour_output(),
        colour_words,
        text_prompts: if set.is_text { rows.iter().filter_map(|s| s.text.clone()).collect() } else { vec![] },
        ..SweepOptions::default()
    };
    let image = |row: usize| load_image(rows[row]);
    let input = SweepInput { model, store: &store, image: &image };
    let bar = progress.bar(0, "steering");
    let tick = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let result = steer::run_sweep(&input, &opts, &tick).context("steering sweep")?;
    bar.finish_and_clear();
    steer::write_sweep(&args.out, &result)?;
    let vec_dir = args.out.join("vectors");
    let mut files = Vec::new();
    for v in &result.vectors {
        let r = &v.recipe;
        let stem = format!("L{:03}_{}-{}_{}", r.layer_index, r.source_hue_deg, r.target_hue_deg, r.kind);
        v.save(&vec_dir.join(format!("{stem}.safetensors")))?;
        files.push((stem, v));
    }
    if args.gguf {
        export_gguf(&files, &vec_dir, &loaded)?;
    }
    for s in &result.summary {
        let a = |x: Option<f64>| x.map_or("never".to_string(), |v| format!("alpha {v}"));
        progress.say(format!(
            "layer {} {} {}: within {}° of the target at {}; decoder-only joystick at {}; monotone {}{}",
            s.layer,
            s.pair,
            s.direction,
            s.tolerance_deg,
            a(s.alpha_reached),
            a(s.joystick_alpha_reached),
            s.monotone,
            s.target_word.as_ref().map_or(String::new(), |w| format!("; answer `{w}` at {}", a(s.alpha_word_flip)))
        ));
    }
    progress.say(format!("wrote {} rows to {}", result.rows.len(), args.out.display()));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_lists_parse() {
        assert_eq!(parse_kinds("all").unwrap(), DirectionKind::ALL.to_vec());
        assert_eq!(parse_kinds("random,centroid").unwrap(), vec![DirectionKind::Centroid, DirectionKind::Random]);
        assert!(parse_kinds("sideways").is_err());
    }
}

//! `huescan steer`: steer inside a model at one or more layers with directions built from an activation store,
//! and write the sweep tables, the steering vectors (safetensors, and llama.cpp control vectors with `--gguf`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::builder::PossibleValue;
use clap::{Args, ValueEnum};

use super::extract::{
    check_text_selection, parse_points, read_stimulus_set, warn_if_prompt_text_unused, ModelArgs, StimulusSet,
};
use crate::cli::{existing, flag_defaults, values, Progress};
use crate::extract::{load_image, SampleInput};
use crate::model::load::LoadedModel;
use crate::model::{Model, Positions};
use crate::settings;
use crate::steer::{
    self, gguf, inputs, parse_alphas, parse_pair, ColourWords, DirectionKind, Lift, Normalisation, PairSpec,
    SweepInput, SweepOptions, SweepResult, DEFAULT_COLOUR_WORDS,
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

/// How `huescan steer` sweeps: the flags `huescan scan` shares (it overrides only `max_new_tokens` and `lift`).
#[derive(Debug, Clone, Args)]
pub struct SteerSettings {
    /// Alphas: `start:stop:step` or a list.
    #[arg(long, default_value = settings::ALPHAS_SPEC, allow_hyphen_values = true)]
    pub alphas: String,
    /// Directions: centroid, manifold, random (comma-separated) or all.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Directions::spelling(&DirectionKind::ALL))]
    pub direction: Vec<Directions>,
    /// Vector scaling: none (alpha 1 = source centroid moved onto the target) or unit.
    #[arg(long, value_enum, default_value_t = Normalisation::default())]
    pub normalise: Normalisation,
    /// Seed of the random control directions.
    #[arg(long, default_value_t = settings::SEED)]
    pub seed: u64,
    /// Ridge penalty of the SMDS Circular fit behind --direction manifold (the notebook's fits use 1e-4).
    #[arg(long, default_value_t = settings::SMDS_ALPHA, value_parser = values::positive)]
    pub smds_alpha: f64,
    /// How --direction manifold carries the rotation along the fitted circle back to the activations.
    ///
    /// `local-mean` walks the activations' kernel-weighted means around the circle (through the intermediate
    /// hues' means); `pattern` and `min-norm` are linear lifts that move the fitted coordinates exactly onto the
    /// rotated point (the regression of the activations on the coordinates; the pseudo-inverse of the map).
    #[arg(long, value_enum, default_value_t = Lift::default())]
    pub lift: Lift,
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

/// One item of `--direction`: a [`DirectionKind`], or `all` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directions {
    All,
    Kind(DirectionKind),
}

impl Directions {
    const VARIANTS: [Directions; 4] = [
        Directions::All,
        Directions::Kind(DirectionKind::ALL[0]),
        Directions::Kind(DirectionKind::ALL[1]),
        Directions::Kind(DirectionKind::ALL[2]),
    ];

    /// How `--direction` spells a set of kinds: `all` for every kind, else the kinds.
    pub fn spelling(kinds: &[DirectionKind]) -> Vec<Directions> {
        if DirectionKind::ALL.iter().all(|k| kinds.contains(k)) {
            vec![Directions::All]
        } else {
            kinds.iter().copied().map(Directions::Kind).collect()
        }
    }

    /// The kinds a `--direction` list names, sorted, each once.
    pub fn kinds(items: &[Directions]) -> Vec<DirectionKind> {
        let mut kinds: Vec<DirectionKind> = items
            .iter()
            .flat_map(|d| match d {
                Directions::All => DirectionKind::ALL.to_vec(),
                Directions::Kind(k) => vec![*k],
            })
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }
}

impl ValueEnum for Directions {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::VARIANTS
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        match self {
            Directions::All => Some(PossibleValue::new("all").help("Every kind")),
            Directions::Kind(k) => k.to_possible_value(),
        }
    }
}

fn pairs(args: &SteerArgs) -> anyhow::Result<Vec<PairSpec>> {
    Ok(match (&args.pairs, args.from, args.to) {
        (Some(p), _, _) => p.split(',').map(|s| parse_pair(s.trim())).collect::<Result<_, _>>()?,
        (None, Some(a), Some(b)) => vec![PairSpec::new(a, b)],
        _ => PairSpec::defaults(),
    })
}

pub fn run(args: &SteerArgs, progress: &Progress) -> anyhow::Result<ExitCode> {
    // The inputs: the store, the very stimulus set it was extracted from, and the model it came from.
    let store = ActivationStore::open(&existing(&args.acts, "activation store")?)?;
    let n = args.settings.max_new_tokens;
    values::check_cap("--max-new-tokens", n as u64, values::MAX_NEW_TOKENS as u64, &format!("{n} decoder steps"))?;
    let set = read_stimulus_set(&args.stimuli)?;
    inputs::check_stimuli(&store, &set.name, &set.sha256, &args.stimuli)?;
    let _lock = crate::fsx::DirLock::acquire(&args.out, "steer")?;
    let rows = inputs::store_rows(&store, &set.samples, &args.stimuli)?;
    let loaded = args.model.load(&args.acts)?;
    inputs::check_model(&store, &loaded.id, loaded.config_sha256.as_deref())?;
    // Where to steer, and how.
    let positions = steering_positions(args, &set, &loaded, progress)?;
    let layers = steering_layers(args, &store, &set, loaded.model.as_ref())?;
    let opts = sweep_options(args, &loaded, &set, &rows, layers, positions)?;
    // The sweep.
    let image = |row: usize| Ok(load_image(rows[row])?);
    let input = SweepInput { model: loaded.model.as_ref(), store: &store, image: &image };
    let bar = progress.bar(0, "steering");
    let tick = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let result = steer::run_sweep(&input, &opts, &tick).context("steering sweep")?;
    bar.finish_and_clear();
    // What it wrote and found.
    write_outputs(args, &result, &loaded)?;
    say_summary(&result, progress);
    progress.say(format!("wrote {} rows to {}", result.rows.len(), args.out.display()));
    Ok(ExitCode::SUCCESS)
}

/// `--positions`, by default the image tokens (the last token for a text prompt set, which has none).
fn steering_positions(
    args: &SteerArgs,
    set: &StimulusSet,
    loaded: &LoadedModel,
    progress: &Progress,
) -> anyhow::Result<Positions> {
    let default_positions = if set.is_text { "last" } else { "image" };
    let positions: Positions = args.positions.as_deref().unwrap_or(default_positions).parse()?;
    if set.is_text {
        if positions == Positions::ImageTokens {
            anyhow::bail!("--positions image steers image tokens, and a text prompt set has none; use last or all");
        }
        warn_if_prompt_text_unused(loaded, &set.samples, progress);
    }
    Ok(positions)
}

/// `--layer`: every stored point the model has (`all`) or a selection, each of them in the store.
fn steering_layers(
    args: &SteerArgs,
    store: &ActivationStore,
    set: &StimulusSet,
    model: &dyn Model,
) -> anyhow::Result<Vec<usize>> {
    let layers = if args.layer == "all" {
        inputs::stored_points(store, model.all_hook_points().len())
    } else {
        parse_points(&args.layer, model)?
    };
    inputs::check_layers_stored(store, &layers, &args.acts)?;
    if set.is_text {
        let pooling: crate::model::Pooling = store.manifest().provenance.pooling.parse()?;
        check_text_selection(pooling, &layers, model)?;
    }
    Ok(layers)
}

/// The sweep's options from the flags and the model's read-outs (colour words, RGB output).
fn sweep_options(
    args: &SteerArgs,
    loaded: &LoadedModel,
    set: &StimulusSet,
    rows: &[&SampleInput],
    layers: Vec<usize>,
    positions: Positions,
) -> anyhow::Result<SweepOptions> {
    let s = &args.settings;
    let model = loaded.model.as_ref();
    let words: Vec<String> = DEFAULT_COLOUR_WORDS.iter().map(|(w, _)| w.to_string()).collect();
    let colour_words = model.token_ids(&words)?.map(|ids| ColourWords::new(words, ids)).transpose()?;
    Ok(SweepOptions {
        layers,
        pairs: pairs(args)?,
        alphas: parse_alphas(&s.alphas)?,
        kinds: Directions::kinds(&s.direction),
        positions,
        normalisation: s.normalise,
        seed: s.seed,
        smds_alpha: s.smds_alpha,
        lift: s.lift,
        tolerance_deg: s.tolerance,
        max_new_tokens: s.max_new_tokens,
        batch_size: args.batch_size.unwrap_or(inputs::default_batch_size(args.model.runtime.device == "cpu")),
        output_rgb: model.colour_output(),
        colour_words,
        text_prompts: if set.is_text { rows.iter().filter_map(|s| s.text.clone()).collect() } else { vec![] },
        ..SweepOptions::default()
    })
}

/// The tables, the vectors as safetensors and, with `--gguf`, as llama.cpp control vectors; what llama.cpp
/// cannot take is said.
fn write_outputs(args: &SteerArgs, result: &SweepResult, loaded: &LoadedModel) -> anyhow::Result<()> {
    steer::write_sweep(&args.out, result)?;
    let vec_dir = args.out.join("vectors");
    steer::write_vectors(&vec_dir, &result.vectors)?;
    if !args.gguf {
        return Ok(());
    }
    let Some(hint) = gguf::model_hint(loaded.model.as_ref()) else {
        tracing::warn!("no GGUF control vectors written: llama.cpp has no architecture for `{}`", loaded.id);
        return Ok(());
    };
    let export = gguf::write_per_vector(&vec_dir, &result.vectors, hint)?;
    for reason in &export.left_out {
        tracing::warn!("left out of the GGUF files: {reason}");
    }
    for p in export.positions.iter().filter(|p| *p != "all") {
        tracing::warn!(
            "llama.cpp adds a control vector at every token position, but these were measured steering `{p}` \
             positions only (recorded as `{}` in each file); re-run with --positions all for vectors that mean \
             in llama.cpp what the sweep measured",
            gguf::POSITIONS_KEY
        );
    }
    Ok(())
}

/// One line per (layer, pair, direction): where the steered hue reached the target, and the answer flipped.
fn say_summary(result: &SweepResult, progress: &Progress) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_lists_parse() {
        let parse = |s: &str| -> Result<Vec<DirectionKind>, String> {
            let items: Result<Vec<Directions>, String> =
                s.split(',').map(|item| Directions::from_str(item, false)).collect();
            items.map(|d| Directions::kinds(&d))
        };
        assert_eq!(parse("all").unwrap(), DirectionKind::ALL.to_vec());
        assert_eq!(parse("random,centroid").unwrap(), vec![DirectionKind::Centroid, DirectionKind::Random]);
        assert_eq!(parse("manifold,all").unwrap(), DirectionKind::ALL.to_vec());
        assert!(parse("sideways").is_err());
        assert_eq!(Directions::spelling(&DirectionKind::ALL), vec![Directions::All]);
        assert_eq!(Directions::spelling(&[DirectionKind::Random]), vec![Directions::Kind(DirectionKind::Random)]);
    }
}

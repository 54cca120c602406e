//! `huescan scan`: render -> extract -> analyse -> steer -> report for a checkpoint, in one resumable command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::cli::commands::analyze::{self, AnalyzeArgs, AnalyzeSettings};
use crate::cli::commands::extract::{self, AutoencoderArgs, ExtractArgs, ModelArgs, RuntimeArgs};
use crate::cli::commands::steer::{self, SteerArgs, SteerSettings};
use crate::cli::commands::stimuli::{self as stimuli_cmd, RenderArgs};
use crate::cli::Progress;
use crate::model::Pooling;
use crate::settings;
use crate::steer::{Lift, PairSpec};
use crate::stimuli::StimulusSpec;

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// A preset (`qwen2.5-vl-3b`, `qwen2.5-vl-7b`, `qwen-tiny-random`, `colour-autoencoder`), a local
    /// checkpoint directory, or a Hugging Face repo id (`Qwen/Qwen2.5-VL-3B-Instruct`).
    pub model: String,
    /// Stimulus sets (bundled names or spec files), comma-separated.
    #[arg(long, default_value = settings::SCAN_SETS, value_delimiter = ',')]
    pub sets: Vec<String>,
    /// Run folder [default: runs/<model name>]. Re-running the same command resumes where it stopped.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub run: PipelineArgs,
    /// Print the plan (sets, samples, layers, disk, memory, estimated extraction time) and stop.
    #[arg(long)]
    pub dry_run: bool,
}

/// Settings shared by `scan` and `demo`.
#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Images per forward pass [default: chosen from the device memory, halved on out-of-memory].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Per-sample pooling: image-mean, last or tokens.
    #[arg(long, value_enum, default_value_t = Pooling::default())]
    pub pool: Pooling,
    /// Points to store and scan: `residual` (every vision block's output and the HF hidden states), `all` (the
    /// hidden states only), indices/ranges like `0,4,8-12`, or hook names and globs (`visual.blocks.*,blocks.*`).
    #[arg(long, alias = "hooks", default_value = "residual")]
    pub layers: String,
    /// Label permutations per layer and shape for p-values (0 = off).
    #[arg(long, default_value_t = settings::PERMUTATIONS)]
    pub permutations: usize,
    /// Answer tokens generated per steered image (models with text output), so the report shows answers.
    #[arg(long, default_value_t = settings::MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// Lift of the steering's rotation along the fitted circle: pattern, min-norm or local-mean (see
    /// `huescan steer --help`).
    #[arg(long, value_enum, default_value_t = Lift::default())]
    pub lift: Lift,
}

impl Default for PipelineArgs {
    /// The flags' own defaults (what an empty command line gives).
    fn default() -> Self {
        crate::cli::flag_defaults()
    }
}

/// `--pairs` for the notebook's pairs snapped to the hues of the set ([`PairSpec::defaults_snapped_to`]).
fn default_pairs(hues: &[f64]) -> String {
    let pairs = PairSpec::defaults_snapped_to(hues);
    pairs.iter().map(|p| format!("{}:{}", p.source_deg, p.target_deg)).collect::<Vec<_>>().join(",")
}

impl PipelineArgs {
    fn model_args(&self, model: &str, run: &Path) -> ModelArgs {
        ModelArgs {
            model: model.to_string(),
            runtime: self.runtime.clone(),
            max_pixels: None,
            prompt: None,
            ae: AutoencoderArgs { ae_weights: Some(run.join("autoencoder.safetensors")), ..Default::default() },
        }
    }
}

/// The run folder's name for a model spec: `Qwen/Qwen2.5-VL-3B-Instruct` -> `Qwen--Qwen2.5-VL-3B-Instruct`.
pub fn default_run_dir(model: &str) -> PathBuf {
    let name: String = model
        .trim_end_matches('/')
        .rsplit_once("/tests/fixtures/")
        .map_or(model, |(_, n)| n)
        .replace('/', "--")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    Path::new("runs").join(if name.is_empty() { "scan".into() } else { name })
}

pub fn run(args: &ScanArgs, progress: &Progress) -> anyhow::Result<ExitCode> {
    let out = args.out.clone().unwrap_or_else(|| default_run_dir(&args.model));
    if args.dry_run {
        return dry_run(args, &out);
    }
    pipeline(&args.model, &args.sets, &out, &args.run, progress)?;
    Ok(ExitCode::SUCCESS)
}

/// Render every set (unless already rendered), extract, analyse all sets together, and write the report.
pub fn pipeline(model: &str, sets: &[String], out: &Path, p: &PipelineArgs, progress: &Progress) -> anyhow::Result<()> {
    crate::fsx::create_dir_all(out)?;
    crate::fsx::remove_stale_temps(out)?;
    crate::runinfo::write(out, model, sets)?;
    let mut stores = Vec::new();
    for set in sets {
        let name = StimulusSpec::resolve(set)?.name;
        let stim = out.join("stimuli").join(&name);
        if !stim.join(crate::stimuli::MANIFEST_FILE).exists() {
            stimuli_cmd::render(&RenderArgs { spec: set.clone(), out: stim.clone(), photos: None }, progress)?;
        }
        let acts = out.join("activations").join(&name);
        let extract_args = ExtractArgs {
            model: p.model_args(model, out),
            stimuli: stim,
            out: acts.clone(),
            layers: p.layers.clone(),
            hooks: None,
            pool: Some(p.pool),
            batch_size: p.batch_size,
            shard: None,
        };
        extract::run(&extract_args, progress)?;
        stores.push(acts);
    }
    let analyze_args = AnalyzeArgs {
        stores,
        out: out.join("analysis"),
        settings: AnalyzeSettings { permutations: p.permutations, ..AnalyzeSettings::default() },
    };
    analyze::run(&analyze_args, progress)?;
    for (set, acts) in sets.iter().zip(&analyze_args.stores) {
        let name = StimulusSpec::resolve(set)?.name;
        let analysis: crate::manifold::Analysis =
            crate::nan_json::read(&out.join("analysis").join(&name).join("summary.json"))?;
        let store = crate::store::ActivationStore::open(acts)?;
        let layers = crate::steer::default_steering_layers(Some(analysis.choice.layer), &store.layer_indices());
        let steer_args = SteerArgs {
            model: p.model_args(model, out),
            acts: acts.clone(),
            stimuli: out.join("stimuli").join(&name),
            layer: layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(","),
            from: None,
            to: None,
            pairs: Some(default_pairs(&store.hue_deg())),
            positions: Some("image".into()),
            settings: SteerSettings { max_new_tokens: p.max_new_tokens, lift: p.lift, ..SteerSettings::default() },
            batch_size: p.batch_size,
            gguf: false,
            out: out.join("steering").join(&name),
        };
        steer::run(&steer_args, &progress.quieter())?;
    }
    let report = crate::report::build(out, &out.join("report"))?;
    progress.say(format!("done: tables in {}, report {}", out.join("analysis").display(), report.index.display()));
    Ok(())
}

fn dry_run(args: &ScanArgs, out: &Path) -> anyhow::Result<ExitCode> {
    outln!("plan for `{}` into {}", args.model, out.display());
    // The sets: how many images, of which sizes.
    let mut image_sizes = Vec::new();
    for set in &args.sets {
        let spec = StimulusSpec::resolve(set)?;
        let n = crate::stimuli::render::stimuli(&spec, spec.variants).len();
        image_sizes.extend(std::iter::repeat_n((spec.height as usize, spec.width as usize), n));
        outln!("  set {:<16} {n:>5} images  ({})", spec.name, spec.description);
    }
    // The model, and its checkpoint if it is on disk already.
    let preset = crate::model::preset::find(&args.model);
    match &preset {
        Some(p) => outln!("  model        preset {} ({})", p.name, p.description),
        None => outln!("  model        {}", args.model),
    }
    let hub = crate::model::hub::HubSettings {
        offline: true,
        ..crate::model::hub::HubSettings::from_env(&crate::env::ProcessEnv)
    };
    let dir = local_checkpoint(args, preset.as_ref(), &hub).filter(|d| d.join("config.json").exists());
    let checkpoint = CheckpointSizes::of(preset.as_ref(), dir.as_deref());
    match &dir {
        Some(dir) => outln!("  checkpoint   {} (on disk)", dir.display()),
        None => {
            outln!("  checkpoint   not on disk yet: it is downloaded into {} on first use", hub.cache_dir.display())
        }
    }
    // What it costs: disk, memory, time.
    say_disk(&checkpoint, image_sizes.len(), &args.run.layers)?;
    say_memory(checkpoint.weights_gb)?;
    outln!(
        "  steps        render -> extract (resumable) -> analyze -> steer -> report; re-run the same command to resume"
    );
    match estimate_extract_seconds(args, preset.as_ref(), dir.as_deref(), &image_sizes) {
        Ok(e) => outln!(
            "  time         about {} to extract ({:.2} TFLOP at {:.0} GFLOP/s: {:.0} % of the {} matmul rate measured \
             just now on {}); analysis and steering come on top",
            human_duration(e.seconds),
            e.flops / 1e12,
            e.rate / 1e9,
            100.0 * crate::model::estimate::FORWARD_GEMM_EFFICIENCY,
            e.dtype,
            args.run.runtime.device,
        ),
        Err(why) => outln!(
            "  time         not estimated ({why:#}); the progress bar shows images/s and the ETA after the first batch"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The checkpoint directory if it is on disk already: a preset's path, a directory, or the hub cache (offline).
fn local_checkpoint(
    args: &ScanArgs,
    preset: Option<&crate::model::preset::Preset>,
    hub: &crate::model::hub::HubSettings,
) -> Option<PathBuf> {
    let resolve = |repo: &str, revision: Option<&str>| {
        crate::model::hub::resolve_repo(repo, revision.unwrap_or("main"), hub).ok().map(|c| c.dir)
    };
    match preset {
        Some(p) if p.path.is_some() => p.local_dir(),
        Some(p) => p.repo.as_deref().and_then(|r| resolve(r, p.revision.as_deref())),
        None if Path::new(&args.model).is_dir() => Some(PathBuf::from(&args.model)),
        None => resolve(&args.model, args.run.runtime.revision.as_deref()),
    }
}

/// What the plan knows of a checkpoint's size: from its config and weight files when on disk (the model
/// registry's parser of its family), else what its preset says the published checkpoint holds.
#[derive(Debug, Default)]
struct CheckpointSizes {
    blocks: Option<u64>,
    d_model: Option<u64>,
    weights_gb: Option<f64>,
    /// `(depth, width)` of the vision tower, whose block outputs the default `residual` selection stores too.
    vision: Option<(u64, u64)>,
}

impl CheckpointSizes {
    fn of(preset: Option<&crate::model::preset::Preset>, dir: Option<&Path>) -> CheckpointSizes {
        let mut sizes = CheckpointSizes {
            blocks: preset.and_then(|p| p.expect_blocks),
            d_model: preset.and_then(|p| p.expect_d_model),
            weights_gb: preset.and_then(|p| p.expect_weights_gb),
            vision: None,
        };
        let Some(dir) = dir else { return sizes };
        match crate::model::registry::dims(dir) {
            Ok(d) => {
                sizes.blocks = Some(d.blocks as u64);
                sizes.d_model = Some(d.d_model as u64);
                sizes.vision = d.vision.map(|(n, w)| (n as u64, w as u64));
            }
            Err(e) => tracing::warn!("the plan uses the preset's sizes: {e}"),
        }
        let files = crate::model::hub::weight_files(dir).unwrap_or_default();
        let bytes: u64 = files.iter().filter_map(|f| std::fs::metadata(dir.join(f)).ok()).map(|m| m.len()).sum();
        if bytes > 0 {
            sizes.weights_gb = Some(bytes as f64 / 1e9);
        }
        sizes
    }
}

/// The activations' disk size: every stored layer of every image, pooled, in f32.
fn say_disk(c: &CheckpointSizes, images: usize, layers: &str) -> anyhow::Result<()> {
    match (c.blocks, c.d_model) {
        (Some(l), Some(d)) => {
            let (vision_floats, vision_note) = match (layers, c.vision) {
                ("residual", Some((n, w))) => (n * w, format!(" + {n} vision blocks x {w}")),
                ("residual", None) => (0, " + the vision blocks (their size needs the config on disk)".into()),
                _ => (0, String::new()),
            };
            let bytes = images as u64 * ((l + 1) * d + vision_floats) * 4;
            outln!(
                "  disk         {:.1} MB of activations ({} layers x d_model {d}{vision_note}, f32, pooled) + stimuli",
                bytes as f64 / 1e6,
                l + 1
            );
        }
        _ => outln!("  disk         (layers + 1) x d_model x 4 bytes per image of activations, plus stimuli"),
    }
    Ok(())
}

/// The weights' memory, as stored.
fn say_memory(weights_gb: Option<f64>) -> anyhow::Result<()> {
    match weights_gb {
        Some(w) if w < 1.0 => {
            outln!("  memory       about {:.1} MB of weights (as stored) plus one batch of activations", w * 1e3)
        }
        Some(w) => outln!("  memory       about {w:.1} GB of weights (as stored) plus one batch of activations"),
        None => outln!("  memory       the checkpoint's weights plus one batch of activations"),
    }
    Ok(())
}

struct Estimate {
    seconds: f64,
    flops: f64,
    rate: f64,
    dtype: &'static str,
}

/// Extraction FLOPs from the checkpoint's config and the stimulus sizes, over this device's measured matmul
/// rate scaled to what a whole forward reaches (BENCHMARKS.md).
fn estimate_extract_seconds(
    args: &ScanArgs,
    preset: Option<&crate::model::preset::Preset>,
    dir: Option<&Path>,
    sizes: &[(usize, usize)],
) -> anyhow::Result<Estimate> {
    use crate::model::{device, estimate};
    if preset.is_some_and(|p| p.kind == crate::model::preset::ModelKind::Autoencoder) {
        anyhow::bail!("the colour autoencoder runs in seconds");
    }
    let Some(dir) = dir.filter(|d| d.join("config.json").exists()) else {
        anyhow::bail!("the checkpoint's config.json is not on disk yet");
    };
    let text_tokens = match preset.and_then(|p| p.prompt_prefix_ids.as_ref().zip(p.prompt_suffix_ids.as_ref())) {
        Some((prefix, suffix)) => prefix.len() + suffix.len(),
        None if !dir.join("tokenizer.json").exists() => {
            anyhow::bail!("{} has no tokenizer.json to count the prompt's tokens", dir.display())
        }
        None => estimate::chat_text_tokens(dir)?,
    };
    let flops = estimate::qwen_forward_flops(dir, sizes, None, text_tokens)?;
    let dev = device::parse_device(&args.run.runtime.device)?;
    let dtype = match args.run.runtime.dtype {
        Some(d) => d.candle(),
        None => device::default_dtype(&dev, preset.and_then(|p| p.dtype.as_deref())),
    };
    let rate = estimate::gemm_flops_per_second(&dev, dtype)? * estimate::FORWARD_GEMM_EFFICIENCY;
    Ok(Estimate { seconds: flops / rate, flops, rate, dtype: device::dtype_name(dtype) })
}

/// `under a second`, `42 s`, `12 min`, `3.5 h`.
fn human_duration(seconds: f64) -> String {
    match seconds {
        s if s < 1.0 => "under a second".to_string(),
        s if s < 90.0 => format!("{s:.0} s"),
        s if s < 5400.0 => format!("{:.0} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}

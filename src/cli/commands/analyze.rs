//! `huescan analyze`: manifold discovery on stored activations, no model needed.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::builder::{PossibleValue, StringValueParser, TypedValueParser};
use clap::Args;

use crate::cli::commands::extract::parse_layers;
use crate::cli::{existing, flag_defaults, values, Progress};
use crate::manifold::{self, AnalyzeOptions, JoystickOptions, LabelMode, Shape};
use crate::settings;
use crate::store::ActivationStore;

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// One or more activation stores (one per stimulus set); several sets also get a global winner.
    #[arg(required = true)]
    pub stores: Vec<PathBuf>,
    /// Output folder: one sub-folder per set with layer_scan.csv, discovery.csv, heldout.csv,
    /// arbitration.csv, joystick.csv, projection.safetensors and summary.json; global.csv across sets.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub settings: AnalyzeSettings,
}

/// How `huescan analyze` analyses: the flags `huescan scan` shares (it overrides only `permutations`).
#[derive(Debug, Clone, Args)]
pub struct AnalyzeSettings {
    /// Candidate shapes, comma-separated (the package's class names, `CircularShape`, and any case work too).
    #[arg(long, value_delimiter = ',', default_value = settings::SHAPES, value_parser = ShapeParser)]
    pub shapes: Vec<Shape>,
    /// Layers to scan: `all` or indices/ranges like `0,4,8-12`.
    #[arg(long, default_value = settings::LAYERS)]
    pub layers: String,
    /// `periodic`: true hue angles, shuffled seeded folds; `compat`: the Python package number for number
    /// (min-max labels, contiguous folds).
    #[arg(long, value_enum, ignore_case = true, default_value_t = LabelMode::default())]
    pub mode: LabelMode,
    /// Analyse this layer instead of choosing the best one by cross-validated score.
    #[arg(long)]
    pub layer: Option<usize>,
    /// Label permutations per layer and shape for the p-values (0 = off).
    #[arg(long, default_value_t = settings::PERMUTATIONS)]
    pub permutations: usize,
    /// Bootstrap resamples for the held-out score intervals (0 = off).
    #[arg(long, default_value_t = settings::BOOTSTRAP)]
    pub bootstrap: usize,
    /// Seed of folds, permutations and bootstraps.
    #[arg(long, default_value_t = settings::SEED)]
    pub seed: u64,
    /// Composite weight of the held-out score (the periodicity weight is 1 minus this).
    #[arg(long, default_value_t = settings::W_TEST, value_parser = crate::cli::values::fraction)]
    pub w_test: f64,
}

impl Default for AnalyzeSettings {
    /// The flags' own defaults (what an empty command line gives).
    fn default() -> Self {
        flag_defaults()
    }
}

/// One `--shapes` item: any spelling [`Shape`]'s `FromStr` takes (`circular`, `CircularShape`,
/// `discrete-circular`, any case); `--help` lists the short names.
#[derive(Debug, Clone, Copy)]
struct ShapeParser;

impl TypedValueParser for ShapeParser {
    type Value = Shape;

    fn parse_ref(&self, cmd: &clap::Command, arg: Option<&clap::Arg>, value: &OsStr) -> Result<Shape, clap::Error> {
        StringValueParser::new().try_map(|s| s.parse::<Shape>()).parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(Shape::ALL.iter().map(|s| PossibleValue::new(s.short_name()))))
    }
}

/// Refuses a store given twice (it would count as two sets agreeing) and resample counts past the cap.
fn check_inputs(args: &AnalyzeArgs) -> anyhow::Result<()> {
    let s = &args.settings;
    let mut seen = std::collections::BTreeMap::new();
    for dir in &args.stores {
        let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
        if let Some(first) = seen.insert(key, dir) {
            anyhow::bail!(
                "the store `{}` is given twice (also as `{}`); each set must be analysed once",
                dir.display(),
                first.display()
            );
        }
    }
    let work = |n: usize| format!("{n} refits per layer and shape");
    values::check_cap("--bootstrap", s.bootstrap as u64, values::MAX_RESAMPLES as u64, &work(s.bootstrap))?;
    values::check_cap("--permutations", s.permutations as u64, values::MAX_RESAMPLES as u64, &work(s.permutations))
}

pub fn run(args: &AnalyzeArgs, progress: &Progress) -> anyhow::Result<ExitCode> {
    let s = &args.settings;
    let mode = s.mode;
    check_inputs(args)?;
    // Taken before the first write, not before the first check, so a refused run leaves no folder behind.
    let mut lock = None;
    let mut analyses = Vec::with_capacity(args.stores.len());
    for dir in &args.stores {
        let dir = existing(dir, "activation store")?;
        let store = ActivationStore::open(&dir)?;
        let m = store.manifest();
        let name = m.provenance.stimuli_name.clone();
        let stored = store.layer_indices();
        let wanted = parse_layers(&s.layers, stored.iter().max().map_or(0, |m| m + 1))?;
        let layers: Vec<usize> = stored.iter().copied().filter(|l| wanted.contains(l)).collect();
        if layers.is_empty() {
            anyhow::bail!("`{}` holds none of the layers asked for ({}); it has {stored:?}", dir.display(), s.layers);
        }
        let opts = AnalyzeOptions {
            dataset: name.clone(),
            mode,
            shapes: s.shapes.clone(),
            seed: s.seed,
            n_permutations: s.permutations,
            n_bootstrap: s.bootstrap,
            w_test: s.w_test,
            w_periodicity: 1.0 - s.w_test,
            layer: s.layer,
            joystick: Some(JoystickOptions::default()),
            ..AnalyzeOptions::default()
        };
        let bar = progress.bar(layers.len() as u64, &name);
        let hue = store.hue_deg();
        let iter = layers.iter().map(|&l| {
            let x = store.layer_2d(l);
            bar.inc(1);
            x.map(|x| (l, x)).map_err(Into::into)
        });
        let mut analysis =
            manifold::analyze(iter, &hue, &opts).with_context(|| format!("analysing `{}`", dir.display()))?;
        bar.finish_and_clear();
        let p = &analysis.projection;
        let x = store.layer_2d(p.layer)?;
        let map = manifold::ProjectionMap::fit(x.view(), &hue, p.shape, opts.alpha_fit)?;
        analysis.projection.map = Some(map);
        let set_dir = args.out.join(&name);
        if lock.is_none() {
            lock = Some(crate::fsx::DirLock::acquire(&args.out, "analyze")?);
        }
        manifold::write_analysis(&set_dir, &analysis)?;
        for w in &analysis.warnings {
            tracing::warn!("{name}: {w}");
        }
        let best = &analysis.arbitration[0];
        progress.say(format!(
            "{name}: layer {} chosen ({} mode); winner {} (held-out score {:.3}, composite {:.3}) -> {}",
            analysis.choice.layer,
            analysis.mode,
            analysis.winner,
            best.test_score,
            best.composite_score,
            set_dir.display()
        ));
        analyses.push(analysis);
    }
    if analyses.len() > 1 {
        manifold::write_global(&args.out, &analyses)?;
        let global = manifold::global_winner(&analyses);
        if let Some(g) = global.first() {
            progress.say(format!("global winner across {} sets: {}", analyses.len(), g.shape));
        }
    }
    drop(lock);
    Ok(ExitCode::SUCCESS)
}

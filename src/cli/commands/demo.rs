//! `huescan demo`: the whole pipeline offline on a model whose answer is known (the colour autoencoder), or
//! on the random-weight Qwen2.5-VL fixture to show the real runner's path end to end.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::cli::commands::analyze::{self, AnalyzeArgs};
use crate::cli::commands::extract::{self, ExtractArgs, ModelArgs};
use crate::cli::commands::stimuli::{self as stimuli_cmd, RenderArgs};
use crate::cli::Progress;
use crate::model::preset::{self, ModelKind};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run folder: stimuli/, activations/, analysis/ and run.json go here. Re-running resumes.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// `colour-autoencoder` (known answer) or `qwen-tiny-random` (the real runner on random weights).
    #[arg(long, default_value = "colour-autoencoder")]
    pub model: String,
    /// Stimulus sets to run (bundled names).
    #[arg(long, default_value = "simple-60,gap-teal-blue", value_delimiter = ',')]
    pub sets: Vec<String>,
    /// Label permutations per layer for p-values.
    #[arg(long, default_value_t = 100)]
    pub permutations: usize,
}

pub fn run(args: &DemoArgs, progress: &Progress) -> anyhow::Result<ExitCode> {
    let kind = preset::find(&args.model).map(|p| p.kind);
    if kind == Some(ModelKind::Qwen2_5Vl) && args.model.starts_with("qwen2.5-vl") {
        anyhow::bail!(
            "`huescan demo` runs offline models; for a real checkpoint use `huescan extract` (or `huescan scan`)"
        );
    }
    if args.model == "qwen-tiny-random" {
        progress.say("note: qwen-tiny-random has random weights; its numbers exercise the runner and mean nothing");
    }
    crate::fsx::create_dir_all(&args.out)?;
    crate::runinfo::write(&args.out, &args.model, &args.sets)?;
    let mut stores = Vec::new();
    for set in &args.sets {
        let stim = args.out.join("stimuli").join(set);
        if !stim.join(crate::stimuli::MANIFEST_FILE).exists() {
            stimuli_cmd::render(&RenderArgs { spec: set.clone(), out: stim.clone(), photos: None }, progress)?;
        }
        let acts = args.out.join("activations").join(set);
        extract::run(&extract_args(&args.model, &args.out, &stim, &acts), progress)?;
        stores.push(acts);
    }
    let analyze_args = AnalyzeArgs {
        stores,
        out: args.out.join("analysis"),
        shapes: "circular,semicircular,euclidean".into(),
        layers: "all".into(),
        mode: "periodic".into(),
        layer: None,
        permutations: args.permutations,
        bootstrap: 1000,
        seed: 0,
        w_test: 0.7,
    };
    analyze::run(&analyze_args, progress)?;
    let report = crate::report::build(&args.out, &args.out.join("report"))?;
    progress.say(format!(
        "demo finished: tables in {}, report {}",
        args.out.join("analysis").display(),
        report.index.display()
    ));
    Ok(ExitCode::SUCCESS)
}

fn extract_args(model: &str, run: &Path, stimuli: &Path, out: &Path) -> ExtractArgs {
    ExtractArgs {
        model: ModelArgs {
            model: model.to_string(),
            device: "cpu".into(),
            dtype: None,
            revision: None,
            max_pixels: None,
            prompt: None,
            ae_weights: Some(run.join("autoencoder.safetensors")),
            ae_seed: 0,
            ae_epochs: 500,
            ae_no_hold_out: false,
        },
        stimuli: stimuli.to_path_buf(),
        out: out.to_path_buf(),
        layers: "all".into(),
        pool: "image-mean".into(),
        batch_size: None,
        shard: None,
    }
}

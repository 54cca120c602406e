//! `huescan demo`: the whole pipeline offline on a model whose answer is known (the colour autoencoder), or
//! on the random-weight Qwen2.5-VL fixture to show the real runner's path end to end.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cli::commands::extract::RuntimeArgs;
use crate::cli::commands::scan::{pipeline, PipelineArgs};
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
        anyhow::bail!("`huescan demo` runs offline models; for a real checkpoint use `huescan scan {}`", args.model);
    }
    if args.model == "qwen-tiny-random" {
        progress.say("note: qwen-tiny-random has random weights; its numbers exercise the runner and mean nothing");
    }
    let p = PipelineArgs {
        runtime: RuntimeArgs::default(),
        batch_size: None,
        pool: "image-mean".into(),
        layers: "all".into(),
        permutations: args.permutations,
        max_new_tokens: crate::cli::commands::steer::DEFAULT_MAX_NEW_TOKENS,
    };
    pipeline(&args.model, &args.sets, &args.out, &p, progress)?;
    Ok(ExitCode::SUCCESS)
}

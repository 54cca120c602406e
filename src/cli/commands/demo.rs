//! `huescan demo`: the whole pipeline offline on models whose answer is known. Main act: the trained
//! colour-naming Qwen2.5-VL (`qwen-colour`, committed in the repo) on `simple-60` and `wild-360`, steered at
//! every layer, its findings printed and put in the report. Second act (seconds): the colour autoencoder of
//! seed 003 in `<out>/autoencoder`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cli::commands::extract::RuntimeArgs;
use crate::cli::commands::scan::{pipeline, PipelineArgs};
use crate::cli::Progress;
use crate::model::preset::{self, ModelKind};

/// The demo's main act and the sets it runs on.
pub const DEMO_MODEL: &str = "qwen-colour";
const DEMO_SETS: &str = "simple-60,wild-360";
const AUTOENCODER: &str = "colour-autoencoder";
const AUTOENCODER_SETS: &str = "simple-60,gap-teal-blue";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run folder of the main act: stimuli/, activations/, analysis/, steering/, report/, run.json, findings.md.
    /// The autoencoder act goes to <out>/autoencoder. Re-running resumes.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Run only this model: `qwen-colour` (trained VLM), `colour-autoencoder` or `qwen-tiny-random` (the real
    /// runner on random weights) [default: qwen-colour, then the autoencoder].
    #[arg(long)]
    pub model: Option<String>,
    /// Stimulus sets (bundled names) [default: simple-60,wild-360; the autoencoder: simple-60,gap-teal-blue].
    #[arg(long, value_delimiter = ',')]
    pub sets: Option<Vec<String>>,
    /// Label permutations per layer for p-values.
    #[arg(long, default_value_t = 100)]
    pub permutations: usize,
}

pub fn run(args: &DemoArgs, progress: &Progress) -> anyhow::Result<ExitCode> {
    if let Some(model) = &args.model {
        let kind = preset::find(model).map(|p| p.kind);
        if kind == Some(ModelKind::Qwen2_5Vl) && model.starts_with("qwen2.5-vl") {
            anyhow::bail!("`huescan demo` runs offline models; for a real checkpoint use `huescan scan {model}`");
        }
        if model == "qwen-tiny-random" {
            progress.say("note: qwen-tiny-random has random weights; its numbers exercise the runner and mean nothing");
        }
    }
    let p = PipelineArgs {
        runtime: RuntimeArgs::default(),
        batch_size: None,
        pool: "image-mean".into(),
        layers: "all".into(),
        permutations: args.permutations,
        max_new_tokens: crate::cli::commands::steer::DEFAULT_MAX_NEW_TOKENS,
        lift: crate::steer::Lift::default().to_string(),
    };
    let default_sets = |model: &str| -> Vec<String> {
        let sets = if model == AUTOENCODER { AUTOENCODER_SETS } else { DEMO_SETS };
        sets.split(',').map(str::to_string).collect()
    };
    let main = args.model.clone().unwrap_or_else(|| DEMO_MODEL.to_string());
    let sets = args.sets.clone().unwrap_or_else(|| default_sets(&main));
    let t = std::time::Instant::now();
    pipeline(&main, &sets, &args.out, &p, progress)?;
    if preset::find(&main).is_some_and(|p| p.kind == ModelKind::Qwen2_5Vl) {
        let findings = crate::report::findings::markdown(&args.out)?;
        crate::fsx::write_atomic(&args.out.join("findings.md"), findings.as_bytes())?;
        progress.say(format!("{main}: what the demo finds ({:.0} s)\n{findings}", t.elapsed().as_secs_f64()));
    }
    if args.model.is_none() {
        let t = std::time::Instant::now();
        let out = args.out.join("autoencoder");
        progress.say(format!("second act: the colour autoencoder of seed 003 into {}", out.display()));
        pipeline(AUTOENCODER, &default_sets(AUTOENCODER), &out, &p, progress)?;
        progress.say(format!("autoencoder act: {:.0} s", t.elapsed().as_secs_f64()));
    }
    Ok(ExitCode::SUCCESS)
}

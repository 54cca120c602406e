//! `huescan ask`: one image, one question, the model's greedy answer.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cli::commands::extract::{AutoencoderArgs, ModelArgs, RuntimeArgs};
use crate::cli::{existing, Progress};
use crate::model::HookSet;

/// The model options that apply to a question: `ask` runs Qwen2.5-VL only, so the autoencoder's training
/// options are not offered.
#[derive(Debug, Clone, Args)]
pub struct AskModelArgs {
    /// A Qwen2.5-VL preset (`qwen2.5-vl-3b`, `qwen2.5-vl-7b`, `qwen-tiny-random`), a local checkpoint
    /// directory, or a Hugging Face repo id (`Qwen/Qwen2.5-VL-3B-Instruct`).
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Cap on image pixels after resizing [default: the preset's, else preprocessor_config.json].
    #[arg(long)]
    pub max_pixels: Option<usize>,
}

#[derive(Debug, Args)]
pub struct AskArgs {
    #[command(flatten)]
    pub model: AskModelArgs,
    /// The image to ask about.
    #[arg(long)]
    pub image: PathBuf,
    /// Most tokens to generate (generation also stops at the checkpoint's EOS ids; raise it for questions
    /// with longer answers). Greedy decoding with no repetition penalty: transformers applies
    /// generation_config.json's penalty unless told `repetition_penalty=1.0`, so compare with that.
    #[arg(long, default_value_t = crate::cli::commands::steer::DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// The question [default: the model's prompt, "What colour is this image? Answer with one word."].
    pub question: Option<String>,
}

pub fn run(args: &AskArgs, progress: &Progress) -> anyhow::Result<ExitCode> {
    let image_path = existing(&args.image, "image")?;
    let model_args = ModelArgs {
        model: args.model.model.clone(),
        runtime: args.model.runtime.clone(),
        max_pixels: args.model.max_pixels,
        prompt: args.question.clone(),
        ae: AutoencoderArgs::default(),
    };
    let tmp = std::env::temp_dir();
    let loaded = model_args.load(&tmp)?;
    let Some(qwen) = &loaded.qwen else {
        anyhow::bail!("`{}` does not generate text; `huescan ask` needs a Qwen2.5-VL model", loaded.id);
    };
    let image = image::open(&image_path)
        .map_err(|e| anyhow::anyhow!("cannot read image `{}`: {e}", image_path.display()))?
        .to_rgb8();
    let sample = qwen.prepare(&image)?;
    let ids = qwen.generate(&sample, args.max_new_tokens, &HookSet::default())?;
    let prompt = qwen.prompt().expect("a loaded Qwen model always has a prompt");
    let answer = prompt.decode(&ids)?;
    progress.say(format!("{} ({} tokens):", loaded.id, ids.len()));
    println!("{}", answer.trim());
    Ok(ExitCode::SUCCESS)
}

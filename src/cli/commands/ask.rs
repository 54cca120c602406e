//! `huescan ask`: one image (or none, a text-only control), one question, the model's greedy answer.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cli::commands::extract::ModelArgs;
use crate::cli::{existing, Progress};
use crate::model::HookSet;

#[derive(Debug, Args)]
pub struct AskArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The image to ask about; without it the question is asked alone (a text-only control such as "What colour
    /// is a banana?").
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Most tokens to generate (generation also stops at the checkpoint's EOS ids). Greedy decoding with no
    /// repetition penalty: transformers applies generation_config.json's penalty unless told
    /// `repetition_penalty=1.0`, so compare with that.
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    /// The question [default: the model's prompt, "What colour is this image? Answer with one word."].
    pub question: Option<String>,
}

pub fn run(args: &AskArgs, progress: &Progress) -> anyhow::Result<ExitCode> {
    let image_path = args.image.as_deref().map(|p| existing(p, "image")).transpose()?;
    if image_path.is_none() && args.question.is_none() {
        anyhow::bail!(
            "without --image, give the question to ask, e.g. `huescan ask --model M \"What colour is a banana?\"`"
        );
    }
    let mut model_args = args.model.clone();
    if args.question.is_some() {
        model_args.prompt = args.question.clone();
    }
    let tmp = std::env::temp_dir();
    let loaded = model_args.load(&tmp)?;
    let Some(qwen) = &loaded.qwen else {
        anyhow::bail!("`{}` does not generate text; `huescan ask` needs a Qwen2.5-VL model", loaded.id);
    };
    let sample = match &image_path {
        Some(path) => {
            let image = image::open(path)
                .map_err(|e| anyhow::anyhow!("cannot read image `{}`: {e}", path.display()))?
                .to_rgb8();
            qwen.prepare(&image)?
        }
        None => qwen.prepare_text(args.question.as_deref().unwrap_or_default())?,
    };
    let ids = qwen.generate(&sample, args.max_new_tokens, &HookSet::default())?;
    let prompt = qwen.prompt().expect("a loaded Qwen model always has a prompt");
    let answer = prompt.decode(&ids)?;
    progress.say(format!("{} ({} tokens):", loaded.id, ids.len()));
    println!("{}", answer.trim());
    Ok(ExitCode::SUCCESS)
}

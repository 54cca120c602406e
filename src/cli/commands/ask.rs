//! `huescan ask`: one image, one question, the model's greedy answer.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cli::commands::extract::ModelArgs;
use crate::cli::{existing, values, Progress};
use crate::model::HookSet;

#[derive(Debug, Args)]
pub struct AskArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The image to ask about.
    #[arg(long)]
    pub image: PathBuf,
    /// Most tokens to generate (generation also stops at the checkpoint's EOS ids). Greedy decoding with no
    /// repetition penalty: transformers applies generation_config.json's penalty unless told
    /// `repetition_penalty=1.0`, so compare with that.
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    /// The question [default: the model's prompt, "What colour is this image? Answer with one word."].
    pub question: Option<String>,
}

pub fn run(args: &AskArgs, progress: &Progress) -> anyhow::Result<ExitCode> {
    let image_path = existing(&args.image, "image")?;
    let n = args.max_new_tokens;
    values::check_cap("--max-new-tokens", n as u64, values::MAX_NEW_TOKENS as u64, &format!("{n} decoder steps"))?;
    let mut model_args = args.model.clone();
    if args.question.is_some() {
        model_args.prompt = args.question.clone();
    }
    let tmp = std::env::temp_dir();
    let loaded = model_args.load(&tmp)?;
    let Some(qwen) = &loaded.qwen else {
        anyhow::bail!("`{}` does not generate text; `huescan ask` needs a Qwen2.5-VL model", loaded.id);
    };
    let image = image::load_from_memory(&crate::fsx::read(&image_path)?)
        .map_err(|e| anyhow::anyhow!("cannot read image `{}`: {e}", image_path.display()))?
        .to_rgb8();
    let sample = qwen.prepare(&image)?;
    let ids = qwen.generate(&sample, args.max_new_tokens, &HookSet::default())?;
    let prompt = qwen.prompt().expect("a loaded Qwen model always has a prompt");
    let answer = prompt.decode(&ids)?;
    progress.say(format!("{} ({} tokens):", loaded.id, ids.len()));
    outln!("{}", answer.trim());
    Ok(ExitCode::SUCCESS)
}

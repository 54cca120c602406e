//! `huescan ask`: one image (or none, a text-only control), one question, the model's greedy answer.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cli::commands::extract::{AutoencoderArgs, ModelArgs, RuntimeArgs};
use crate::cli::{existing, values, Progress};
use crate::model::{Component, HookPoint, HookSet, Input, Intervention, InterventionOp, Model, Positions, TextOutput};
use crate::steer::SteeringVector;

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
    /// The image to ask about; without it the question is asked alone (a text-only control such as "What colour
    /// is a banana?").
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Most tokens to generate (generation also stops at the checkpoint's EOS ids; raise it for questions
    /// with longer answers). Greedy decoding with no repetition penalty: transformers applies
    /// generation_config.json's penalty unless told `repetition_penalty=1.0`, so compare with that.
    #[arg(long, default_value_t = crate::settings::MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// The question [default: the model's prompt, else the default prompt].
    pub question: Option<String>,
    /// A steering vector (from `huescan steer`) added while answering, at its own hook point. With a text-only
    /// question it is a control: does the direction move the colour concept, or only what the image shows?
    #[arg(long)]
    pub steer: Option<PathBuf>,
    /// Scale of --steer.
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true, requires = "steer")]
    pub alpha: f32,
    /// Positions --steer changes: image, all (also every generated token), last or indices [default: the
    /// vector's own].
    #[arg(long, requires = "steer")]
    pub positions: Option<String>,
}

/// The intervention of `--steer`: the vector at its recorded point, checked against the model and the prompt.
fn steering(args: &AskArgs, model: &dyn Model, text_only: bool) -> anyhow::Result<HookSet> {
    let Some(path) = &args.steer else { return Ok(HookSet::default()) };
    let v = SteeringVector::load(&existing(path, "steering vector")?)?;
    let point: HookPoint = v.recipe.hook.parse()?;
    match model.width(&point) {
        Some(w) if w == v.vector.len() => {}
        Some(w) => anyhow::bail!(
            "the vector has width {} but `{point}` of `{}` has width {w}; it was made for another model",
            v.vector.len(),
            model.id()
        ),
        None => {
            anyhow::bail!("`{}` has no hook point `{point}` (the vector's); it was made for another model", model.id())
        }
    }
    let positions: Positions = args.positions.as_deref().unwrap_or(&v.recipe.positions).parse()?;
    if text_only && point.component() == Component::Vision {
        anyhow::bail!("the vector is at `{point}` in the vision tower, which a question without --image never runs");
    }
    if text_only && positions == Positions::ImageTokens {
        anyhow::bail!(
            "the vector steers image tokens, which a question without --image has none of; add --positions all or last"
        );
    }
    Ok(HookSet {
        interventions: vec![Intervention {
            point,
            positions,
            sample: None,
            op: InterventionOp::Add { vector: v.vector, alpha: args.alpha },
        }],
        ..HookSet::default()
    })
}

pub fn run(args: &AskArgs, progress: &Progress) -> anyhow::Result<ExitCode> {
    let image_path = args.image.as_deref().map(|p| existing(p, "image")).transpose()?;
    let n = args.max_new_tokens;
    values::check_cap("--max-new-tokens", n as u64, values::MAX_NEW_TOKENS as u64, &format!("{n} decoder steps"))?;
    let model_args = ModelArgs {
        model: args.model.model.clone(),
        runtime: args.model.runtime.clone(),
        max_pixels: args.model.max_pixels,
        // With an image the question replaces the model's prompt; without one it is the whole text prompt.
        prompt: args.question.clone().filter(|_| image_path.is_some()),
        ae: AutoencoderArgs::default(),
    };
    let tmp = std::env::temp_dir();
    let loaded = model_args.load(&tmp)?;
    let Some(text) = loaded.model.text_output() else {
        anyhow::bail!("`{}` does not generate text; `huescan ask` needs a vision-language model", loaded.id);
    };
    let input = match &image_path {
        Some(path) => Input::Image(
            image::load_from_memory(&crate::fsx::read(path)?)
                .map_err(|e| anyhow::anyhow!("cannot read image `{}`: {e}", path.display()))?
                .to_rgb8(),
        ),
        None => Input::text(text_question(text, args.question.as_deref(), &loaded.id)?),
    };
    let hooks = steering(args, loaded.model.as_ref(), image_path.is_none())?;
    let (ids, answer) = text.answer(&input, &hooks, args.max_new_tokens)?;
    progress.say(format!("{} ({} tokens):", loaded.id, ids.len()));
    outln!("{}", answer.trim());
    Ok(ExitCode::SUCCESS)
}

/// The question of a text-only prompt. A checkpoint with a tokenizer needs one; a checkpoint without one runs
/// its fixed prompt of token ids with the image removed, so a question could not be used and is refused.
fn text_question(text: &dyn TextOutput, question: Option<&str>, id: &str) -> anyhow::Result<String> {
    match (text.has_tokenizer(), question) {
        (false, None) => Ok(String::new()),
        (false, Some(_)) => anyhow::bail!(
            "`{id}` has no tokenizer.json, so a question cannot be tokenized; without --image and without a \
             question it answers its fixed prompt of token ids with the image removed"
        ),
        (_, Some(q)) => Ok(q.to_string()),
        (_, None) => anyhow::bail!(
            "without --image, give the question to ask, e.g. `huescan ask --model M \"What colour is a banana?\"`"
        ),
    }
}

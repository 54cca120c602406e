//! `--model` → a running [`Model`]: a preset name, a local checkpoint directory or a hub repo id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use super::autoencoder::{Autoencoder, TrainConfig};
use super::hub::{self, Checkpoint, HubSettings};
use super::preset::{self, ModelKind, Preset};
use super::registry::{self, LoadRequest};
use super::{device, Error, Model};
use crate::fsx;

/// Options that apply when loading any model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    /// `None`: the preset's dtype on GPUs, f32 on CPU.
    pub dtype: Option<DType>,
    /// Hub revision (branch, tag or commit); `None`: the preset's, else `main`.
    pub revision: Option<String>,
    /// Image-processor pixel cap; `None`: the preset's, else the checkpoint's `preprocessor_config.json`.
    pub max_pixels: Option<usize>,
    /// Question asked with every image; `None`: the preset's, else [`DEFAULT_PROMPT`].
    pub prompt: Option<String>,
    pub hub: HubSettings,
    /// Where the colour autoencoder's trained weights are cached (trained on first use).
    pub autoencoder_weights: Option<PathBuf>,
    pub autoencoder: TrainConfig,
}

/// The question huescan asks by default: it makes the answer position predict a colour word.
pub const DEFAULT_PROMPT: &str = crate::settings::PROMPT;

/// A loaded model and what the activation store must record about it. What the model can do (text output,
/// a colour output) is asked through [`Model`].
pub struct LoadedModel {
    pub model: Box<dyn Model>,
    pub id: String,
    pub revision: Option<String>,
    pub config_sha256: Option<String>,
    /// Fingerprints of the weights, tokenizer and preprocessor config ([`hub::checkpoint_hashes`]).
    pub file_hashes: BTreeMap<String, String>,
    /// Settings that change the numbers (dtype, prompt, max_pixels, training options).
    pub settings: BTreeMap<String, String>,
}

/// Loads the model `spec` names.
pub fn load(spec: &str, opts: &LoadOptions) -> crate::model::Result<LoadedModel> {
    if let Some(p) = preset::find(spec) {
        return load_preset(&p, opts);
    }
    let path = Path::new(spec);
    if path.is_dir() {
        return load_dir(spec, &Checkpoint { dir: path.to_path_buf(), repo: None, revision: None }, None, opts);
    }
    if hub::is_repo_id(spec) {
        let revision = opts.revision.clone().unwrap_or_else(|| "main".into());
        let ck = hub::resolve_repo(spec, &revision, &opts.hub)?;
        return load_dir(spec, &ck, None, opts);
    }
    let names: Vec<String> = preset::bundled().into_iter().map(|p| p.name).collect();
    Err(Error::Msg(format!(
        "`{spec}` is not a preset ({}), an existing checkpoint directory, or a hub repo id like `Qwen/Qwen2.5-VL-3B-Instruct`",
        names.join(", ")
    )))
}

fn load_preset(p: &Preset, opts: &LoadOptions) -> crate::model::Result<LoadedModel> {
    match &p.kind {
        ModelKind::Autoencoder => load_autoencoder(p, opts),
        ModelKind::Checkpoint(_) => {
            let ck = match (&p.repo, p.local_dir()) {
                (Some(repo), _) => {
                    let revision =
                        opts.revision.clone().or_else(|| p.revision.clone()).unwrap_or_else(|| "main".into());
                    hub::resolve_repo(repo, &revision, &opts.hub)?
                }
                (None, Some(dir)) => Checkpoint { dir, repo: None, revision: None },
                (None, None) => unreachable!("presets are validated to have repo or path"),
            };
            load_dir(&p.name, &ck, Some(p), opts)
        }
    }
}

fn load_autoencoder(p: &Preset, opts: &LoadOptions) -> crate::model::Result<LoadedModel> {
    // The autoencoder reads pixels only, at its own size: a prompt or a pixel cap would be silently ignored.
    let ignored = [("--prompt", opts.prompt.is_some()), ("--max-pixels", opts.max_pixels.is_some())];
    if let Some((flag, _)) = ignored.iter().find(|(_, given)| *given) {
        return Err(Error::Msg(format!(
            "{flag} does not apply to `{}`, which takes no text and no image size",
            p.name
        )));
    }
    let mut cfg = opts.autoencoder.clone();
    if let Some(seed) = p.seed {
        if cfg == TrainConfig::default() {
            cfg.seed = seed;
        }
    }
    let model = Autoencoder::train_or_load(opts.autoencoder_weights.as_deref(), &cfg, None)?;
    let cfg_json = serde_json::to_string(&cfg).expect("plain data");
    let settings = BTreeMap::from([("autoencoder_train_config".to_string(), cfg_json.clone())]);
    Ok(LoadedModel {
        model: Box::new(model),
        id: p.name.clone(),
        revision: None,
        config_sha256: Some(fsx::sha256_hex(cfg_json.as_bytes())),
        // The trained weights are written deterministically, so their file hash names them exactly.
        file_hashes: match opts.autoencoder_weights.as_deref().filter(|p| p.exists()) {
            Some(path) => BTreeMap::from([("weights".to_string(), fsx::sha256_file(path)?)]),
            None => BTreeMap::new(),
        },
        settings,
    })
}

/// Reads `architectures`/`model_type` from a checkpoint's config.json and loads it with the family the
/// registry names for them.
fn load_dir(
    id: &str,
    ck: &Checkpoint,
    preset: Option<&Preset>,
    opts: &LoadOptions,
) -> crate::model::Result<LoadedModel> {
    let config_path = ck.dir.join("config.json");
    if !config_path.exists() {
        return Err(Error::Checkpoint { path: ck.dir.clone(), msg: "has no config.json".into() });
    }
    let config_bytes = fsx::read(&config_path)?;
    let value: serde_json::Value = serde_json::from_slice(&config_bytes)
        .map_err(|e| Error::Config { path: config_path.clone(), msg: format!("is not valid JSON ({e})") })?;
    let family = registry::for_config(&value).map_err(|msg| Error::Config { path: config_path.clone(), msg })?;
    if let Some((p, ModelKind::Checkpoint(kind))) = preset.map(|p| (p, &p.kind)) {
        if !family.model_types.contains(&kind.as_str()) {
            return Err(Error::Config {
                path: config_path,
                msg: format!(
                    "is a {} checkpoint (`{}`), but preset `{}` says kind `{kind}`; fix the preset's kind",
                    family.name,
                    family.model_type(),
                    p.name
                ),
            });
        }
    }
    let dtype =
        opts.dtype.unwrap_or_else(|| device::default_dtype(&opts.device, preset.and_then(|p| p.dtype.as_deref())));
    let prompt =
        opts.prompt.clone().or_else(|| preset.and_then(|p| p.prompt.clone())).unwrap_or_else(|| DEFAULT_PROMPT.into());
    let max_pixels = opts.max_pixels.or_else(|| preset.and_then(|p| p.max_pixels));
    let mut settings = BTreeMap::from([
        ("dtype".to_string(), device::dtype_name(dtype).to_string()),
        ("prompt".to_string(), prompt.clone()),
    ]);
    if let Some(mp) = max_pixels {
        settings.insert("max_pixels".into(), mp.to_string());
    }
    let ids_prompt = preset.and_then(|p| Some((p.prompt_prefix_ids.clone()?, p.prompt_suffix_ids.clone()?)));
    if ids_prompt.is_some() && opts.prompt.is_some() {
        return Err(Error::Msg(format!(
            "--prompt does not apply to `{id}`: it has no tokenizer.json and runs a fixed prompt of token ids; drop \
             --prompt or use a checkpoint with its tokenizer"
        )));
    }
    if let Some((pre, suf)) = &ids_prompt {
        settings.insert("prompt".into(), format!("ids {pre:?} <image> {suf:?}"));
    }
    let request = LoadRequest {
        dir: &ck.dir,
        id: ck.repo.clone().unwrap_or_else(|| ck.dir.display().to_string()),
        device: &opts.device,
        dtype,
        question: &prompt,
        prompt_ids: ids_prompt,
        max_pixels,
    };
    let files: Vec<&str> = family.files.iter().chain(family.optional_files).copied().collect();
    Ok(LoadedModel {
        model: (family.load)(&request)?,
        id: ck.repo.clone().unwrap_or_else(|| id.to_string()),
        revision: ck.revision.clone().or_else(|| hub::local_revision(&ck.dir)),
        config_sha256: Some(fsx::sha256_hex(&config_bytes)),
        file_hashes: hub::checkpoint_hashes(&ck.dir, &files)?,
        settings,
    })
}

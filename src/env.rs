//! Every environment variable huescan reads, in one table (uv's `EnvVars` rule), with Python
//! `huggingface_hub`'s meaning, so an existing Hugging Face cache and login are reused as they are.
//!
//! The Rust `hf-hub` crate reads few of these itself (0.5 reads only `HF_HOME` and `HF_ENDPOINT`), so huescan
//! resolves them here and passes the cache dir and token to it explicitly.

use std::path::PathBuf;

/// Root of the Hugging Face token and caches; default `~/.cache/huggingface` (or `$XDG_CACHE_HOME/huggingface`).
pub const HF_HOME: &str = "HF_HOME";
/// The hub cache (`models--org--name/…`); default `$HF_HOME/hub`.
pub const HF_HUB_CACHE: &str = "HF_HUB_CACHE";
/// Older name of `HF_HUB_CACHE`, still honoured by huggingface_hub.
pub const HUGGINGFACE_HUB_CACHE: &str = "HUGGINGFACE_HUB_CACHE";
pub const XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";
/// Access token; overrides the token file.
pub const HF_TOKEN: &str = "HF_TOKEN";
/// Where the token file is; default `$HF_HOME/token`.
pub const HF_TOKEN_PATH: &str = "HF_TOKEN_PATH";
/// `1`/`true`/`yes`/`on`: never touch the network, use the cache only.
pub const HF_HUB_OFFLINE: &str = "HF_HUB_OFFLINE";
/// Alternative hub endpoint (mirrors).
pub const HF_ENDPOINT: &str = "HF_ENDPOINT";
/// Slurm array task index and count: the default `--shard`.
pub const SLURM_ARRAY_TASK_ID: &str = "SLURM_ARRAY_TASK_ID";
pub const SLURM_ARRAY_TASK_COUNT: &str = "SLURM_ARRAY_TASK_COUNT";

/// A source of environment variables; the process environment in production, a map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment. Empty values count as unset, as in huggingface_hub.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl<S: std::hash::BuildHasher> Env for std::collections::HashMap<&str, &str, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| v.to_string()).filter(|v| !v.is_empty())
    }
}

/// Truthy as huggingface_hub reads booleans.
pub fn is_truthy(value: Option<String>) -> bool {
    value.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub fn hf_home(env: &dyn Env) -> PathBuf {
    if let Some(home) = env.var(HF_HOME) {
        return PathBuf::from(home);
    }
    if let Some(xdg) = env.var(XDG_CACHE_HOME) {
        return PathBuf::from(xdg).join("huggingface");
    }
    home_dir(env).join(".cache").join("huggingface")
}

fn home_dir(env: &dyn Env) -> PathBuf {
    env.var("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

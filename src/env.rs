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

/// Set (non-empty): no colour on any stream (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";
/// Set (non-empty, not `0`): colour even when the stream is not a terminal.
pub const CLICOLOR_FORCE: &str = "CLICOLOR_FORCE";

/// Set (non-empty, not `0`): candle's ops everywhere instead of huescan's CPU kernels (`model::nn::kernels`,
/// `model::nn::attention`), to time the two side by side.
pub const HUESCAN_PLAIN_KERNELS: &str = "HUESCAN_PLAIN_KERNELS";
/// How long (in pause instructions) a worker of candle's CPU elementwise pool spins after each op before it
/// parks; candle's default is 25 000. Read by candle once, when its pool starts.
pub const CANDLE_BARRIER_POOL_SPIN_LIMIT: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
/// glibc's own arena limit. When it is set, huescan leaves the arena count to it instead of pinning every
/// thread to one arena (`model::nn::kernels::keep_freed_buffers`).
pub const MALLOC_ARENA_MAX: &str = "MALLOC_ARENA_MAX";
/// huescan's [`CANDLE_BARRIER_POOL_SPIN_LIMIT`] where the user set none ([`limit_candle_spinning`]).
pub const CANDLE_SPIN_LIMIT: u32 = 1000;

/// Sets [`CANDLE_BARRIER_POOL_SPIN_LIMIT`] to [`CANDLE_SPIN_LIMIT`] unless the user set it. Call it first
/// thing in `main`, before any thread starts (setting a variable races with other threads reading one).
///
/// candle 0.11 runs its elementwise ops on a pool of its own next to rayon's, whose worker spins for 25 000
/// pauses (a fraction of a millisecond) after every op. The products that follow run on rayon's workers, so
/// on a machine with as many cores as threads that spinner takes a core from one half of the next product
/// while the other half finishes and waits (`perf record -a` of the extraction job, BENCHMARKS.md). With
/// ~1 000 pauses it parks after tens of microseconds, still long enough to catch the next op of a run of
/// elementwise ops.
pub fn limit_candle_spinning() {
    if std::env::var_os(CANDLE_BARRIER_POOL_SPIN_LIMIT).is_none() {
        std::env::set_var(CANDLE_BARRIER_POOL_SPIN_LIMIT, CANDLE_SPIN_LIMIT.to_string());
    }
}

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

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`; `~` and `$VAR` expanded as
/// huggingface_hub expands them ([`expand_path`]).
pub fn hf_home(env: &dyn Env) -> PathBuf {
    if let Some(home) = env.var(HF_HOME) {
        return expand_path(&home, env);
    }
    if let Some(xdg) = env.var(XDG_CACHE_HOME) {
        return expand_path(&xdg, env).join("huggingface");
    }
    home_dir(env).join(".cache").join("huggingface")
}

/// Python's `os.path.expandvars(os.path.expanduser(p))`, which huggingface_hub applies to `HF_HOME` and
/// `HF_HUB_CACHE`: a leading `~` or `~/` becomes `$HOME`; `$NAME` and `${NAME}` become the variable's value,
/// and stay as written when it is unset (as in Python). `~user` is left alone.
pub fn expand_path(p: &str, env: &dyn Env) -> PathBuf {
    let p = match p.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{}{rest}", home_dir(env).display()),
        _ => p.to_string(),
    };
    let mut out = String::with_capacity(p.len());
    let mut rest = p.as_str();
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..end], end)
        };
        match (name.is_empty(), env.var(name)) {
            (false, Some(v)) => out.push_str(&v),
            _ => out.push_str(&rest[i..i + 1 + len]),
        }
        rest = &rest[i + 1 + len..];
    }
    out.push_str(rest);
    PathBuf::from(out)
}

fn home_dir(env: &dyn Env) -> PathBuf {
    env.var("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn tilde_and_variables_expand_as_huggingface_hub_does() {
        let env: HashMap<&str, &str> = HashMap::from([("HOME", "/home/ada"), ("SCRATCH", "/scratch/ada")]);
        let x = |p: &str| expand_path(p, &env).display().to_string();
        assert_eq!(x("~/hf"), "/home/ada/hf");
        assert_eq!(x("~"), "/home/ada");
        assert_eq!(x("$SCRATCH/hf"), "/scratch/ada/hf");
        assert_eq!(x("${SCRATCH}/hub"), "/scratch/ada/hub");
        assert_eq!(x("$UNSET/hf"), "$UNSET/hf", "unset variables stay, as in os.path.expandvars");
        assert_eq!(x("~bob/hf"), "~bob/hf");
        assert_eq!(x("/a$/b"), "/a$/b");
        let env: HashMap<&str, &str> = HashMap::from([("HOME", "/home/ada"), (HF_HOME, "~/hf-home")]);
        assert_eq!(hf_home(&env), PathBuf::from("/home/ada/hf-home"));
    }
}

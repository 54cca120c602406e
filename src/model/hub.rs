//! Finding a checkpoint: a local directory, or a Hugging Face hub repo through the cache shared with Python's
//! `huggingface_hub` (`<cache>/models--org--name/{refs,snapshots,blobs}`), downloading only the files a
//! model needs. Offline (`HF_HUB_OFFLINE=1`, or no network) the cache alone is used, and a miss fails with one
//! sentence naming the repo, the revision and the cache path.

use std::path::{Path, PathBuf};

use crate::env::{self, Env};
use crate::model::Error;

/// The hub settings, resolved once from flags and the environment in huggingface_hub's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSettings {
    pub cache_dir: PathBuf,
    pub token: Option<String>,
    pub offline: bool,
    pub endpoint: Option<String>,
}

impl HubSettings {
    /// cache: `HF_HUB_CACHE` > `HUGGINGFACE_HUB_CACHE` > `$HF_HOME/hub` > `$XDG_CACHE_HOME/huggingface/hub` >
    /// `~/.cache/huggingface/hub`; token: `HF_TOKEN` > file at `HF_TOKEN_PATH` > `$HF_HOME/token`.
    pub fn from_env(env: &dyn Env) -> Self {
        let home = env::hf_home(env);
        let cache_dir = env
            .var(env::HF_HUB_CACHE)
            .or_else(|| env.var(env::HUGGINGFACE_HUB_CACHE))
            .map(|p| env::expand_path(&p, env))
            .unwrap_or_else(|| home.join("hub"));
        let token = env.var(env::HF_TOKEN).or_else(|| {
            let path =
                env.var(env::HF_TOKEN_PATH).map(|p| env::expand_path(&p, env)).unwrap_or_else(|| home.join("token"));
            std::fs::read_to_string(path).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
        });
        HubSettings {
            cache_dir,
            token,
            offline: env::is_truthy(env.var(env::HF_HUB_OFFLINE)),
            endpoint: env.var(env::HF_ENDPOINT),
        }
    }
}

/// A checkpoint on disk, ready to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Directory holding config.json, the tokenizer and the safetensors files.
    pub dir: PathBuf,
    /// `org/name` for hub checkpoints.
    pub repo: Option<String>,
    /// The resolved commit hash, when the checkpoint came from the hub cache.
    pub revision: Option<String>,
}

/// The files the family of `dir`'s config.json needs besides config.json and its weights (required, then used
/// when present), from the registry; none when config.json names no family, which the loader then explains.
fn family_files(dir: &Path) -> (&'static [&'static str], &'static [&'static str]) {
    match crate::model::registry::for_dir(dir) {
        Ok(f) => (f.files, f.optional_files),
        Err(_) => (&[], &[]),
    }
}
const INDEX: &str = "model.safetensors.index.json";
const SINGLE: &str = "model.safetensors";

/// Fingerprints of what makes a checkpoint itself besides `config.json` (hashed on its own), keyed by what they
/// cover: `weights` and the SHA-256 of every file of `files` (the family's checkpoint files) that is present.
///
/// `weights` is a SHA-256 over each weight file (sorted by name) of its name, its size, its whole safetensors
/// header and 1 MiB of tensor data at the start, middle and end (all of it for files under 3 MiB). Hashing
/// every byte of a 15 GB checkpoint on every run would cost tens of seconds; any fine-tune changes values in
/// every tensor, so the samples tell two of them apart while the header pins names, dtypes and shapes.
pub fn checkpoint_hashes(dir: &Path, files: &[&str]) -> Result<std::collections::BTreeMap<String, String>, Error> {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Seek, SeekFrom};
    let mut out = std::collections::BTreeMap::new();
    for f in files.iter().filter(|f| **f != "config.json") {
        let path = dir.join(f);
        if path.exists() {
            let hash = crate::fsx::sha256_file(&path).map_err(|e| Error::Msg(e.to_string()))?;
            out.insert(f.to_string(), hash);
        }
    }
    let Ok(files) = weight_files(dir) else { return Ok(out) };
    let mut hasher = Sha256::new();
    const SAMPLE: u64 = 1 << 20;
    for name in &files {
        let path = dir.join(name);
        let io = |e: std::io::Error| Error::Checkpoint { path: path.clone(), msg: format!("cannot read ({e})") };
        let mut f = std::fs::File::open(&path).map_err(io)?;
        let size = f.metadata().map_err(io)?.len();
        let mut len = [0u8; 8];
        f.read_exact(&mut len).map_err(io)?;
        let header_len = u64::from_le_bytes(len).min(size.saturating_sub(8));
        hasher.update(name.as_bytes());
        hasher.update(size.to_le_bytes());
        let mut header = vec![0u8; header_len as usize];
        f.read_exact(&mut header).map_err(io)?;
        hasher.update(&header);
        let data = 8 + header_len;
        let body = size - data;
        let starts: Vec<u64> =
            if body <= 3 * SAMPLE { vec![data] } else { vec![data, data + body / 2 - SAMPLE / 2, size - SAMPLE] };
        for start in starts {
            let n = if body <= 3 * SAMPLE { body } else { SAMPLE };
            f.seek(SeekFrom::Start(start)).map_err(io)?;
            let mut buf = vec![0u8; n as usize];
            f.read_exact(&mut buf).map_err(io)?;
            hasher.update(&buf);
        }
    }
    let digest = hasher.finalize();
    out.insert("weights".into(), digest.iter().map(|b| format!("{b:02x}")).collect());
    Ok(out)
}

/// The revision of a local checkpoint directory, when it says: the commit of a hub snapshot folder
/// (`…/models--org--name/snapshots/<commit>`), or the checked-out commit of a git clone of the repo
/// (`git clone https://huggingface.co/org/name`: a `.git` in the directory itself, not in a parent).
pub fn local_revision(dir: &Path) -> Option<String> {
    let is_commit = |s: &str| s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit());
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let parent = abs.parent()?;
    let name = abs.file_name()?.to_string_lossy().into_owned();
    if is_commit(&name) && parent.file_name().is_some_and(|p| p == "snapshots") {
        return Some(name);
    }
    let git = abs.join(".git");
    let head = std::fs::read_to_string(git.join("HEAD")).ok()?;
    let head = head.trim();
    let commit = match head.strip_prefix("ref: ") {
        None => head.to_string(),
        Some(r) => std::fs::read_to_string(git.join(r)).map(|c| c.trim().to_string()).ok().or_else(|| {
            let packed = std::fs::read_to_string(git.join("packed-refs")).ok()?;
            packed.lines().find_map(|l| l.strip_suffix(r).map(|c| c.trim().to_string()))
        })?,
    };
    is_commit(&commit).then_some(commit)
}

/// Whether `s` looks like a hub repo id (`org/name`).
pub fn is_repo_id(s: &str) -> bool {
    let mut parts = s.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none() && !s.starts_with('.')
}

/// Resolves a hub repo to a local snapshot directory, downloading missing files unless offline.
pub fn resolve_repo(repo: &str, revision: &str, settings: &HubSettings) -> Result<Checkpoint, Error> {
    let repo_dir = settings.cache_dir.join(format!("models--{}", repo.replace('/', "--")));
    let missing = match cached_snapshot(&repo_dir, repo, revision)? {
        Snapshot::Complete(ck) => return Ok(ck),
        Snapshot::Partial { dir, missing } => Some((dir, missing)),
        Snapshot::Absent => None,
    };
    if settings.offline {
        return Err(match missing {
            Some((dir, files)) => Error::Msg(format!(
                "model `{repo}` at revision `{revision}` is in the Hugging Face cache (`{}`) but lacks {}, and \
                 HF_HUB_OFFLINE is set; download the missing file(s) with network (e.g. `huggingface-cli download \
                 {repo} {}`), or pass a local directory that has them",
                dir.display(),
                files.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", "),
                files.join(" ")
            )),
            None => not_cached(repo, revision, &settings.cache_dir, "HF_HUB_OFFLINE is set"),
        });
    }
    download(repo, revision, settings).map_err(|e| match e {
        Error::Msg(msg) => not_cached(repo, revision, &settings.cache_dir, &format!("the download failed: {msg}")),
        other => other,
    })
}

fn not_cached(repo: &str, revision: &str, cache: &Path, why: &str) -> Error {
    Error::Msg(format!(
        "model `{repo}` at revision `{revision}` is not in the Hugging Face cache `{}` and {why}; download it on a machine with network (same HF_HOME/HF_HUB_CACHE), or pass a local directory",
        cache.display()
    ))
}

/// What the cache holds of one revision.
enum Snapshot {
    Absent,
    /// The snapshot directory exists but lacks these files.
    Partial {
        dir: PathBuf,
        missing: Vec<String>,
    },
    Complete(Checkpoint),
}

/// The snapshot for `revision` (a branch/tag name in `refs/`, or a commit hash), and whether every needed file
/// is there.
fn cached_snapshot(repo_dir: &Path, repo: &str, revision: &str) -> Result<Snapshot, Error> {
    let commit = if revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit()) {
        revision.to_string()
    } else {
        match std::fs::read_to_string(repo_dir.join("refs").join(revision)) {
            Ok(c) => c.trim().to_string(),
            Err(_) => return Ok(Snapshot::Absent),
        }
    };
    let dir = repo_dir.join("snapshots").join(&commit);
    if !dir.is_dir() {
        return Ok(Snapshot::Absent);
    }
    let needed: Vec<&str> = match dir.join("config.json").exists() {
        true => family_files(&dir).0.to_vec(),
        false => vec!["config.json"],
    };
    let mut missing: Vec<String> = needed.iter().filter(|f| !dir.join(f).exists()).map(|f| f.to_string()).collect();
    match weight_files(&dir) {
        Ok(files) => missing.extend(files.into_iter().filter(|f| !dir.join(f).exists())),
        Err(_) => missing.push(format!("{SINGLE} (or {INDEX} and its shards)")),
    }
    Ok(if missing.is_empty() {
        Snapshot::Complete(Checkpoint { dir, repo: Some(repo.to_string()), revision: Some(commit) })
    } else {
        Snapshot::Partial { dir, missing }
    })
}

/// The safetensors files of a checkpoint directory: the shards listed in `model.safetensors.index.json`, or
/// the single `model.safetensors`.
pub fn weight_files(dir: &Path) -> Result<Vec<String>, Error> {
    let index = dir.join(INDEX);
    if index.exists() {
        let text = std::fs::read_to_string(&index)
            .map_err(|e| Error::Checkpoint { path: index.clone(), msg: format!("cannot read ({e})") })?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Checkpoint { path: index.clone(), msg: format!("is not valid JSON ({e})") })?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::Checkpoint { path: index.clone(), msg: "has no `weight_map` object".into() })?;
        let mut files: Vec<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
        files.sort();
        files.dedup();
        if files.is_empty() {
            return Err(Error::Checkpoint { path: index, msg: "lists no weight files".into() });
        }
        return Ok(files);
    }
    if dir.join(SINGLE).exists() {
        return Ok(vec![SINGLE.to_string()]);
    }
    Err(Error::Checkpoint {
        path: dir.to_path_buf(),
        msg: format!("has neither `{INDEX}` nor `{SINGLE}`; is this a safetensors checkpoint directory?"),
    })
}

fn download(repo: &str, revision: &str, settings: &HubSettings) -> Result<Checkpoint, Error> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Repo, RepoType};
    let mut builder = ApiBuilder::new()
        .with_cache_dir(settings.cache_dir.clone())
        .with_token(settings.token.clone())
        .with_progress(true);
    if let Some(endpoint) = &settings.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    let api = builder.build().map_err(|e| Error::Msg(e.to_string()))?;
    let api_repo = api.repo(Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string()));
    let get = |file: &str| api_repo.get(file).map_err(|e| Error::Msg(format!("`{file}`: {e}")));
    let config = get("config.json")?;
    let dir = config.parent().expect("snapshot file has a parent").to_path_buf();
    let (required, optional) = family_files(&dir);
    for f in required {
        get(f)?;
    }
    for f in optional {
        let _ = api_repo.get(f); // optional: absence is fine
    }
    let weights = match get(INDEX) {
        Ok(_) => weight_files(&dir)?,
        Err(_) => vec![SINGLE.to_string()],
    };
    for f in &weights {
        get(f)?;
    }
    let commit = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    Ok(Checkpoint { dir, repo: Some(repo.to_string()), revision: commit })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn cache_and_token_follow_huggingface_hub_precedence() {
        let env: HashMap<&str, &str> = HashMap::from([("HOME", "/home/u")]);
        let s = HubSettings::from_env(&env);
        assert_eq!(s.cache_dir, PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert!(!s.offline);
        let env: HashMap<&str, &str> = HashMap::from([("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")]);
        assert_eq!(HubSettings::from_env(&env).cache_dir, PathBuf::from("/xdg/huggingface/hub"));
        let env: HashMap<&str, &str> =
            HashMap::from([("XDG_CACHE_HOME", "/xdg"), ("HF_HOME", "/hf"), ("HF_HUB_OFFLINE", "True")]);
        let s = HubSettings::from_env(&env);
        assert_eq!(s.cache_dir, PathBuf::from("/hf/hub"));
        assert!(s.offline);
        let env: HashMap<&str, &str> =
            HashMap::from([("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/old"), ("HF_TOKEN", "tok")]);
        let s = HubSettings::from_env(&env);
        assert_eq!(s.cache_dir, PathBuf::from("/old"));
        assert_eq!(s.token.as_deref(), Some("tok"));
        let env: HashMap<&str, &str> = HashMap::from([("HF_HUB_CACHE", "/new"), ("HUGGINGFACE_HUB_CACHE", "/old")]);
        assert_eq!(HubSettings::from_env(&env).cache_dir, PathBuf::from("/new"));
    }

    #[test]
    fn repo_ids_are_recognised() {
        assert!(is_repo_id("Qwen/Qwen2.5-VL-3B-Instruct"));
        assert!(!is_repo_id("qwen2.5-vl-3b"));
        assert!(!is_repo_id("a/b/c"));
        assert!(!is_repo_id("./x"));
    }

    #[test]
    fn offline_miss_names_repo_revision_and_cache() {
        let cache = std::env::temp_dir().join(format!("huescan-hub-{}", std::process::id()));
        let settings = HubSettings { cache_dir: cache.clone(), token: None, offline: true, endpoint: None };
        let err = resolve_repo("Qwen/Qwen2.5-VL-3B-Instruct", "main", &settings).unwrap_err().to_string();
        assert!(err.contains("Qwen/Qwen2.5-VL-3B-Instruct") && err.contains("`main`"), "{err}");
        assert!(err.contains(&cache.display().to_string()) && err.contains("HF_HUB_OFFLINE"), "{err}");
    }

    #[test]
    fn a_cached_snapshot_is_found_by_ref_or_commit() {
        let cache = std::env::temp_dir().join(format!("huescan-hubcache-{}", std::process::id()));
        let repo_dir = cache.join("models--org--tiny");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let snap = repo_dir.join("snapshots").join(commit);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
        std::fs::write(repo_dir.join("refs/main"), commit).unwrap();
        for f in ["preprocessor_config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::write(snap.join(f), b"{}").unwrap();
        }
        std::fs::write(snap.join("config.json"), br#"{"model_type": "qwen2_5_vl"}"#).unwrap();
        let settings = HubSettings { cache_dir: cache.clone(), token: None, offline: true, endpoint: None };
        let ck = resolve_repo("org/tiny", "main", &settings).unwrap();
        assert_eq!(ck.dir, snap);
        assert_eq!(ck.revision.as_deref(), Some(commit));
        assert_eq!(resolve_repo("org/tiny", commit, &settings).unwrap().dir, snap);
        // A snapshot missing a needed file counts as not cached, and the message names the file.
        std::fs::remove_file(snap.join("tokenizer.json")).unwrap();
        let msg = resolve_repo("org/tiny", "main", &settings).unwrap_err().to_string();
        assert!(msg.contains("lacks `tokenizer.json`") && msg.contains("HF_HUB_OFFLINE"), "{msg}");
        assert!(!msg.contains("preprocessor_config.json"), "only the missing file is named: {msg}");
        // A snapshot folder names its own revision.
        assert_eq!(local_revision(&snap).as_deref(), Some(commit));
        std::fs::remove_dir_all(cache).unwrap();
    }
}

#[cfg(test)]
mod provenance_tests {
    use super::*;

    #[test]
    fn a_git_clone_names_its_commit_and_weights_fingerprints_differ_when_values_do() {
        let dir = std::env::temp_dir().join(format!("huescan-hub-prov-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(".git/refs/heads")).unwrap();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        std::fs::write(dir.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(dir.join(".git/packed-refs"), format!("# pack-refs\n{commit} refs/heads/main\n")).unwrap();
        assert_eq!(local_revision(&dir).as_deref(), Some(commit));
        std::fs::write(dir.join(".git/refs/heads/main"), "fedcba9876543210fedcba9876543210fedcba98\n").unwrap();
        assert_eq!(local_revision(&dir).as_deref(), Some("fedcba9876543210fedcba9876543210fedcba98"));
        assert_eq!(local_revision(&dir.join(".git")), None, "only the folder's own .git counts");
        // Two "checkpoints" with the same header and different values (a fine-tune) differ.
        let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let file = |v: f32| {
            let mut b = (header.len() as u64).to_le_bytes().to_vec();
            b.extend_from_slice(header);
            b.extend_from_slice(&v.to_le_bytes());
            b.extend_from_slice(&v.to_le_bytes());
            b
        };
        std::fs::write(dir.join("model.safetensors"), file(1.0)).unwrap();
        std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
        let files = ["preprocessor_config.json", "tokenizer.json"];
        let a = checkpoint_hashes(&dir, &files).unwrap();
        assert_eq!(a["tokenizer.json"], crate::fsx::sha256_hex(b"{}"));
        assert!(!a.contains_key("preprocessor_config.json"), "absent files are not listed");
        std::fs::write(dir.join("model.safetensors"), file(2.0)).unwrap();
        let b = checkpoint_hashes(&dir, &files).unwrap();
        assert_ne!(a["weights"], b["weights"]);
        assert_eq!(b, checkpoint_hashes(&dir, &files).unwrap(), "deterministic");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
